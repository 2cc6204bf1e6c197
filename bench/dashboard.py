"""How fast the dashboard answers on a store with many repos.

    python bench/dashboard.py [--repos 1000] [--requests 20] [--json bench/results/dashboard.json]

Ingests ``--repos`` small synthetic repos (one tiny safetensors file, a card and
a config each) in families of twenty: a base, fine-tunes of it (some naming the
base in their card, some not) and exact re-uploads. Then starts ``weightvault
serve`` on that store and times the overview page, a family page, a repo page
and ``/api/v1/report`` over keep-alive HTTP: the first request, then ``--requests`` more
after a warm-up.
Prints a table and writes JSON. Nothing is asserted: this reports what it measured.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import ROOT, free_port, wait_port  # noqa: E402
FAMILY_SIZE = 20


def safetensors(tensors: dict[str, np.ndarray]) -> bytes:
    """A safetensors file of F32 tensors, in name order."""
    header, chunks, offset = {}, [], 0
    for name, array in sorted(tensors.items()):
        raw = np.ascontiguousarray(array, dtype=np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(chunks)


def synthetic_repo(folder: Path, index: int, families: int) -> tuple[str, str | None]:
    """Write repo ``index`` into ``folder``; returns its name and the base its card names, if any."""
    family, member = index % families, index // families
    base_name = f"fam{family:03d}/base"
    # Each family its own width, so tensor signatures (and so families) differ.
    rng = np.random.default_rng(family)
    w = (rng.standard_normal((64, 96 + family)) * 0.02).astype(np.float32)
    b = (rng.standard_normal(96 + family) * 0.01).astype(np.float32)
    if member == 0:
        name, card_base = base_name, None
    elif member % 5 == 0:  # an exact re-upload of the base weights
        name, card_base = f"fam{family:03d}/mirror-{member:02d}", None
    else:  # a short fine-tune: the base plus small noise
        tune = np.random.default_rng(10_000 + index)
        w = w + (tune.standard_normal(w.shape) * 2e-4).astype(np.float32)
        name, card_base = f"fam{family:03d}/ft-{member:02d}", base_name if member % 2 else None
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors").write_bytes(safetensors({"layer.weight": w, "layer.bias": b}))
    card = f"---\nbase_model: {card_base}\n---\n" if card_base else ""
    (folder / "README.md").write_text(card + f"# {name}\n")
    (folder / "config.json").write_text(json.dumps({"model_type": "tiny", "hidden_size": 96 + family}))
    return name, card_base


def time_get(client, url: str, requests: int) -> dict:
    """The first request (a page computes the report anew after any catalog change) and the
    steady state after one more warm-up request (the dashboard reuses the report while the catalog is unchanged)."""
    t0 = time.perf_counter()
    client.get(url).raise_for_status()
    first = time.perf_counter() - t0
    client.get(url).raise_for_status()
    times, size = [], 0
    for _ in range(requests):
        t0 = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - t0)
        response.raise_for_status()
        size = len(response.content)
    times.sort()
    return {"url": url, "requests": requests, "bytes": size, "first_ms": 1000 * first,
            "median_ms": 1000 * statistics.median(times),
            "p95_ms": 1000 * times[min(len(times) - 1, round(0.95 * (len(times) - 1)))],
            "min_ms": 1000 * times[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repos", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "dashboard.json")
    args = ap.parse_args()

    import httpx

    from weightvault.dedup.ingest import ingest_folder
    from weightvault.dedup.report import build_report
    from weightvault.store import Vault

    families = max(1, args.repos // FAMILY_SIZE)
    work = Path(tempfile.mkdtemp(prefix="wv-bench-dash-"))
    proc = None
    try:
        store = work / "store"
        vault = Vault.open(store)
        t0 = time.perf_counter()
        for i in range(args.repos):
            folder = work / "src" / str(i)
            name, _ = synthetic_repo(folder, i, families)
            ingest_folder(vault, folder, name)
            shutil.rmtree(folder)
            if (i + 1) % 100 == 0:
                print(f"ingested {i + 1}/{args.repos} repos ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
        ingest_s = time.perf_counter() - t0
        report_times = []
        for _ in range(5):
            t0 = time.perf_counter()
            with vault.catalog.read_session() as s:
                report = build_report(s)
            report_times.append(time.perf_counter() - t0)
        vault.close()

        port = free_port()
        env = {**os.environ, "WEIGHTVAULT_DATA_DIR": str(store), "WEIGHTVAULT_DATABASE_URL": "",
               "WEIGHTVAULT_S3_BUCKET": ""}
        proc = subprocess.Popen([sys.executable, "-m", "weightvault.api.cli", "serve", "--port", str(port),
                                 "--anonymous-reads"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port)
        fam = report.families[0]
        member = fam.members[-1]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            pages = [time_get(client, url, args.requests) for url in
                     ("/", f"/ui/families/{fam.name}", f"/ui/repos/{member}", "/api/v1/report")]
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    result = {
        "repos": len(report.repos), "families": len(report.families), "ingest_events": len(report.timeline),
        "raw_bytes": report.overall.raw_bytes, "stored_bytes": report.overall.stored_bytes,
        "ingest_seconds": ingest_s, "build_report_median_ms": 1000 * statistics.median(report_times),
        "pages": pages, "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                    "platform": platform.platform(),
                                    # A shared machine: other work running during the timings shows here.
                                    "load_average_1_5_15": os.getloadavg()},
    }
    print(f"{result['repos']} repos in {result['families']} families, ingested in {ingest_s:.0f} s; "
          f"build_report median {result['build_report_median_ms']:.0f} ms")
    print(f"{'page':<40} {'bytes':>10} {'first ms':>9} {'median ms':>10} {'p95 ms':>8} {'min ms':>8}")
    for p in pages:
        print(f"{p['url'][:40]:<40} {p['bytes']:>10,} {p['first_ms']:>9.1f} {p['median_ms']:>10.1f} "
              f"{p['p95_ms']:>8.1f} {p['min_ms']:>8.1f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
