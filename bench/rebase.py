"""Re-basing at ingest on the shared repos: what it saves and what it costs the ingest.

    python bench/rebase.py [--repos DIR] [--repeat 3] [--json bench/results/rebase.json]

The six repos arrive in the order a hub would receive them (bench/support.REPOS): the BF16
fine-tune before the FP32 weights it was cast from. In one run, each into a fresh embedded store:
- ``--no-rebase`` ingest of the six, then ``weightvault rebase`` (the operator's manual step);
- plain ingest of the six (the ingest of the FP32 weights re-codes the BF16 fine-tune).
Prints stored/raw after ingest alone and after the manual step, and each ingest's CPU and wall
seconds, best of ``--repeat`` (the two ways alternate, so machine load hits both alike).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import REPOS, ROOT, folder_bytes, materialized  # noqa: E402


def one_run(repos: Path, work: Path, rebase: bool) -> dict:
    from weightvault.dedup.ingest import ingest_folder
    from weightvault.dedup.rebase import Rebaser
    from weightvault.store import Vault

    vault = Vault.open(work)
    try:
        rows, raw, stored = [], 0, 0
        for name in REPOS:
            cpu, wall = time.process_time(), time.perf_counter()
            res = ingest_folder(vault, repos / name, name, rebase=rebase)
            rows.append({"repo": name, "cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall,
                         "rebased": res.rebased})
            raw += folder_bytes(repos / name)
            stored += res.new_stored_bytes - sum(saved for _, _, saved in res.rebased)
        out = {"rows": rows, "raw": raw, "after_ingest": stored / raw}
        if not rebase:
            cpu, wall = time.process_time(), time.perf_counter()
            done = Rebaser(vault).run()
            out["manual_rebase"] = {"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall,
                                    "after": (stored - done.bytes_saved) / raw}
        return out
    finally:
        vault.close()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repos", type=Path, default=Path(os.environ.get("WEIGHTVAULT_TEST_REPOS",
                                                                      ROOT / ".cache" / "shared-repos")))
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "rebase.json")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each way; the best time per repo is kept")
    args = ap.parse_args()
    repos = materialized(args.repos)
    work = Path(tempfile.mkdtemp(prefix="wv-bench-rebase-"))
    runs: dict[str, list[dict]] = {"no_rebase": [], "rebase": []}
    try:
        for i in range(args.repeat):  # a new folder per store: the reader's caches are per process and catalog
            runs["no_rebase"].append(one_run(repos, work / f"plain{i}", False))
            runs["rebase"].append(one_run(repos, work / f"rebase{i}", True))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def best(way: str, i: int, key: str) -> float:
        return min(r["rows"][i][key] for r in runs[way])

    print(f"{'repo':40s} {'cpu-s before':>12s} {'cpu-s after':>11s} {'wall before':>11s} {'wall after':>10s}  re-based")
    totals = {k: 0.0 for k in ("cb", "ca", "wb", "wa")}
    for i, name in enumerate(REPOS):
        cb, ca = best("no_rebase", i, "cpu_s"), best("rebase", i, "cpu_s")
        wb, wa = best("no_rebase", i, "wall_s"), best("rebase", i, "wall_s")
        for k, v in zip(totals, (cb, ca, wb, wa)):
            totals[k] += v
        rebased = ", ".join(f"{m} ({t} tensors, {s / 1e6:.2f} MB saved)" for m, t, s in runs["rebase"][0]["rows"][i]["rebased"])
        print(f"{name:40s} {cb:12.2f} {ca:11.2f} {wb:11.2f} {wa:10.2f}  {rebased}")
    print(f"{'six repos':40s} {totals['cb']:12.2f} {totals['ca']:11.2f} {totals['wb']:11.2f} {totals['wa']:10.2f}  "
          f"cpu x{totals['ca'] / totals['cb']:.3f}, wall x{totals['wa'] / totals['wb']:.3f}")
    manual = min(runs["no_rebase"], key=lambda r: r["manual_rebase"]["cpu_s"])["manual_rebase"]
    print(f"stored/raw after ingest alone: {runs['no_rebase'][0]['after_ingest']:.4f} with --no-rebase, "
          f"{runs['rebase'][0]['after_ingest']:.4f} with re-basing at ingest; "
          f"{manual['after']:.4f} after --no-rebase + `weightvault rebase` ({manual['cpu_s']:.2f} cpu-s)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"repos": REPOS, "runs": runs, "totals_best": totals, "manual_rebase": manual},
                                    indent=1))


if __name__ == "__main__":
    main()
