"""Serving throughput: weightvault streaming out of its compressed store vs the same file raw from disk.

    python bench/serve.py [--size-mb 1024] [--clients 4] [--json bench/results/serve.json]

Builds one BF16 safetensors file of ``--size-mb`` (normal weights, as a model
has), ingests it, then runs two servers under the same uvicorn: ``weightvault
serve`` (decoding frame by frame from packs) and a Starlette ``FileResponse``
of the original file, plus the weightvault app with issue 14's request guards
taken out (body limits, NUL check, catch-all error middleware) to show what they cost. For each: download MB/s with one client and with
``--clients`` at once, time to first byte, the latency of 1 MiB Range reads at
random offsets, and the server's peak resident memory (VmHWM) next to the file
size. Downloads use curl; clients run on the same machine and share its cores
with the server. uvicorn serves with whatever HTTP parser is installed (h11, or
httptools/uvloop with ``uvicorn[standard]``): the table header says which.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import free_port  # noqa: E402
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TENSOR_MB = 64

RAW_APP = r'''
import sys
from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Route
import uvicorn

path = sys.argv[1]
app = Starlette(routes=[Route("/file", lambda request: FileResponse(path), methods=["GET", "HEAD"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
'''


#: The weightvault app under uvicorn as ``weightvault serve`` runs it; with ``bare``, the request guards
#: of issue 14 are taken out (body limits, NUL check, the catch-all error middleware), so one run shows
#: what they cost on the download path. Both servers start the same way, so only the guards differ.
WV_APP = r'''
import sys
import uvicorn
from weightvault.api.app import create_app
from weightvault.api.errors import Unexpected
from weightvault.api.limits import BodyLimit

app = create_app()
if sys.argv[2] == "bare":
    app.user_middleware = [m for m in app.user_middleware if m.cls not in (BodyLimit, Unexpected)]
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
'''


def make_model(path: Path, size_mb: int) -> None:
    """A BF16 safetensors file of normal(0, 0.02) weights, written tensor by tensor."""
    n_tensors = max(size_mb // TENSOR_MB, 1)
    elems = TENSOR_MB * 1024 * 1024 // 2
    header, offset = {}, 0
    for i in range(n_tensors):
        header[f"layers.{i}.weight"] = {"dtype": "BF16", "shape": [elems // 1024, 1024],
                                        "data_offsets": [offset, offset + 2 * elems]}
        offset += 2 * elems
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for _ in range(n_tensors):
            w = (rng.standard_normal(elems, dtype=np.float32) * 0.02).view(np.uint32)
            f.write((w >> 16).astype(np.uint16).tobytes())


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise TimeoutError(url)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def download(url: str, headers: dict[str, str]) -> tuple[int, float, float]:
    """(bytes, seconds to the first byte, seconds in all) of one GET, by curl so the client is not the limit."""
    cmd = ["curl", "-sS", "--fail", "-o", "/dev/null", "-w", "%{size_download} %{time_starttransfer} %{time_total}"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    n, first, total = subprocess.run([*cmd, url], check=True, capture_output=True, text=True).stdout.split()
    return int(n), float(first), float(total)


def measure(name: str, url: str, headers: dict[str, str], size: int, pid: int, clients: int, ranges: int,
            repeat: int) -> dict:
    httpx.get(url, headers={**headers, "Range": "bytes=0-0"}, timeout=60)  # warm up: lazy imports, connections
    rss_idle = peak_rss_mb(pid)
    single = []
    for _ in range(repeat):
        n, ttfb, secs = download(url, headers)
        assert n == size, f"{name}: got {n} bytes of {size}"
        single.append((secs, ttfb))
    walls = []
    for _ in range(repeat):
        results: list[tuple[int, float, float]] = []
        threads = [threading.Thread(target=lambda: results.append(download(url, headers))) for _ in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        walls.append(time.perf_counter() - t0)
        assert len(results) == clients and all(r[0] == size for r in results)
    # Best of the repeats: the machine is shared, the best run is the least disturbed one.
    secs, ttfb = min(t for t, _ in single), min(f for _, f in single)
    wall = min(walls)
    rnd = random.Random(1)
    lat = []
    with httpx.Client(headers=headers, timeout=60) as c:
        for _ in range(ranges):
            start = rnd.randrange(0, size - (1 << 20))
            t = time.perf_counter()
            r = c.get(url, headers={"Range": f"bytes={start}-{start + (1 << 20) - 1}"})
            lat.append(time.perf_counter() - t)
            assert r.status_code == 206 and len(r.content) == 1 << 20
    lat.sort()
    return {"server": name, "file_mb": size / 1e6, "one_client_mb_s": size / secs / 1e6, "ttfb_ms": ttfb * 1e3,
            f"{clients}_clients_total_mb_s": clients * size / wall / 1e6, "range_1mib_p50_ms": statistics.median(lat) * 1e3,
            "range_1mib_p95_ms": lat[int(0.95 * (len(lat) - 1))] * 1e3, "idle_rss_mb": rss_idle,
            "peak_rss_mb": peak_rss_mb(pid)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--ranges", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3, help="downloads per figure; the best is kept")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "serve.json")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="wv-bench-serve-"))
    procs: list[subprocess.Popen] = []
    try:
        src = work / "src"
        src.mkdir()
        model = src / "model.safetensors"
        make_model(model, args.size_mb)
        size = model.stat().st_size
        env = {**os.environ, "WEIGHTVAULT_DATA_DIR": str(work / "store")}
        for k in ("WEIGHTVAULT_DATABASE_URL", "WEIGHTVAULT_S3_BUCKET"):
            env.pop(k, None)
        cli = [sys.executable, "-m", "weightvault.api.cli"]
        t0 = time.perf_counter()
        subprocess.run([*cli, "ingest", str(src), "--repo", "bench/big"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        ingest_s = time.perf_counter() - t0
        token = subprocess.run([*cli, "token", "create", "--scope", "read"], env=env, check=True,
                               capture_output=True, text=True).stdout.strip()
        stored = sum(p.stat().st_size for p in (work / "store" / "objects").rglob("*") if p.is_file())

        wv_port, raw_port, bare_port = free_port(), free_port(), free_port()
        procs.append(subprocess.Popen([sys.executable, "-c", WV_APP, str(wv_port), "guarded"], env=env))
        procs.append(subprocess.Popen([sys.executable, "-c", RAW_APP, str(model), str(raw_port)]))
        procs.append(subprocess.Popen([sys.executable, "-c", WV_APP, str(bare_port), "bare"], env=env))
        wv_url = f"http://127.0.0.1:{wv_port}/bench/big/resolve/main/model.safetensors"
        bare_url = wv_url.replace(str(wv_port), str(bare_port))
        raw_url = f"http://127.0.0.1:{raw_port}/file"
        wait_http(f"http://127.0.0.1:{wv_port}/docs")
        wait_http(f"http://127.0.0.1:{bare_port}/docs")
        wait_http(raw_url.replace("/file", "/"))
        auth = {"Authorization": f"Bearer {token}"}
        rows = [
            measure("weightvault (decoded from packs)", wv_url, auth, size,
                    procs[0].pid, args.clients, args.ranges, args.repeat),
            measure("weightvault without request limits", bare_url, auth, size,
                    procs[2].pid, args.clients, args.ranges, args.repeat),
            measure("raw file (Starlette FileResponse)", raw_url, {}, size, procs[1].pid, args.clients, args.ranges,
                    args.repeat),
        ]
    finally:
        for p in procs:
            p.terminate()
            p.wait(30)
        shutil.rmtree(work, ignore_errors=True)

    import importlib.util

    parser = "httptools+uvloop" if importlib.util.find_spec("httptools") and importlib.util.find_spec("uvloop") else "h11"
    result = {"http": parser, "file_bytes": size, "stored_bytes": stored, "stored_ratio": stored / size, "ingest_s": ingest_s,
              "clients": args.clients, "cpus": os.cpu_count(), "rows": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    cols = ["one_client_mb_s", "ttfb_ms", f"{args.clients}_clients_total_mb_s", "range_1mib_p50_ms",
            "range_1mib_p95_ms", "idle_rss_mb", "peak_rss_mb"]
    print(f"file {size / 1e6:.0f} MB BF16 safetensors, stored {stored / 1e6:.0f} MB ({stored / size:.3f}); "
          f"{os.cpu_count()} cores shared by server and clients; uvicorn with {parser}")
    print("| server | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for r in rows:
        print(f"| {r['server']} | " + " | ".join(f"{r[c]:.1f}" for c in cols) + " |")
    print(f"JSON in {args.json}")


if __name__ == "__main__":
    main()
