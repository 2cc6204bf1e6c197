"""Ingest and restore throughput on the shared repos, on the embedded store.

    python bench/ingest.py [--repos DIR] [--json bench/results/ingest.json]

For each repo, in the order a hub would receive them: ingest MB/s, restore MB/s
(every file written and sha256-checked), and the bytes the store added against
the repo's raw size. Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import REPOS, ROOT, folder_bytes, materialized  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repos", type=Path, default=ROOT / ".cache" / "shared-repos")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "ingest.json")
    args = ap.parse_args()

    from weightvault.dedup.ingest import ingest_folder
    from weightvault.dedup.restore import restore
    from weightvault.store import Vault

    repos = materialized(args.repos)
    work = Path(tempfile.mkdtemp(prefix="wv-bench-"))
    rows = []
    try:
        vault = Vault.open(work / "store")
        for name in REPOS:
            src = repos / name
            raw = folder_bytes(src)
            t0 = time.perf_counter()
            result = ingest_folder(vault, src, name)
            t1 = time.perf_counter()
            restore(vault, name, "main", work / "out" / name)
            t2 = time.perf_counter()
            rows.append({"repo": name, "raw_bytes": raw, "stored_bytes": result.new_stored_bytes,
                         "stored_over_raw": result.new_stored_bytes / raw, "base": result.base,
                         "ingest_MBps": raw / (t1 - t0) / 1e6, "restore_MBps": raw / (t2 - t1) / 1e6})
            shutil.rmtree(work / "out" / name)
        total_raw = sum(r["raw_bytes"] for r in rows)
        total_stored = sum(r["stored_bytes"] for r in rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"{'repo':42s} {'raw MB':>8s} {'stored MB':>10s} {'stored/raw':>10s} {'ingest MB/s':>12s} {'restore MB/s':>13s}")
    for r in rows:
        print(f"{r['repo']:42s} {r['raw_bytes'] / 1e6:8.1f} {r['stored_bytes'] / 1e6:10.2f} "
              f"{r['stored_over_raw']:10.4f} {r['ingest_MBps']:12.1f} {r['restore_MBps']:13.1f}")
    print(f"{'all six':42s} {total_raw / 1e6:8.1f} {total_stored / 1e6:10.2f} {total_stored / total_raw:10.4f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"repos": rows, "raw_bytes": total_raw, "stored_bytes": total_stored,
                                     "stored_over_raw": total_stored / total_raw}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
