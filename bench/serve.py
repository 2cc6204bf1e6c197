"""Serving throughput: weightvault's /resolve beside nginx serving the same files raw, same run.

    python bench/serve.py [--size-mb 1024] [--clients 4] [--repeat 3] [--json bench/results/serve.json]

Stores the six shared repos (../shared/data) and one synthetic BF16 model of
``--size-mb`` in a fresh embedded store, then starts two servers on 127.0.0.1:
``weightvault serve`` (decoding from packs) and nginx (Debian's ``nginx-light``,
``sendfile on``) over a folder of the raw files. For the FP32 base, its BF16
cast, a BF16 fine-tune, the FP32 fine-tune's big shard and the synthetic model
it prints, per server: MB/s of one curl download (the first, "cold", and the
best of ``--repeat``), time to first byte, MB/s of ``--clients`` downloads at
once, the median 1 MiB Range latency, and the best MB/s of a third server
running the same app without issue 14's request guards; then the ratios the targets are stated
in (weightvault / nginx, and each delta-coded file / weightvault's own base) and
weightvault's resident memory after each file (all, and anonymous: without mapped
file pages), to show it flat with file size. Last, each server's MB per CPU second over
the downloads after the first (nginx: master and workers): what the two cost, which load
from other processes on the machine hardly changes.

Clients run on the same machine and share its cores with the servers. The bases
of delta frames are kept decoded (in their members' dtype) in a bounded
process-wide cache (WEIGHTVAULT_BASE_CACHE_MB), so the first download of a member
after the server starts (cold) decodes its base too and later ones (best) do not.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import REPOS, SHARED, free_port, make_bf16_model, materialized, wait_port  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

#: (label, repo, file, the label of the file it is delta-coded against or None)
FILES = [
    ("FP32 base", "sentence-transformers/all-MiniLM-L6-v2", "model.safetensors", None),
    ("BF16 cast of the base", "acme/all-MiniLM-L6-v2-bf16", "model.safetensors", "FP32 base"),
    ("BF16 fine-tune", "acme/minilm-codesearch-bf16", "model.safetensors", "FP32 base"),
    ("FP32 fine-tune, big shard", "lab/minilm-codesearch-fp32", "model-00002-of-00002.safetensors", "FP32 base"),
    ("synthetic BF16 model", "bench/big", "model.safetensors", None),
]

#: The weightvault app under uvicorn; with ``bare``, issue 14's request guards (body limits,
#: NUL check, the catch-all error middleware) are taken out, so the same run shows what they
#: cost on the download path. Both weightvault servers start this way, so only the guards differ.
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

NGINX_CONF = """
user root;
worker_processes 2;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path {work}/nginx-tmp;
    proxy_temp_path {work}/nginx-tmp;
    fastcgi_temp_path {work}/nginx-tmp;
    uwsgi_temp_path {work}/nginx-tmp;
    scgi_temp_path {work}/nginx-tmp;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


def nginx_binary() -> str:
    for cand in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if cand and os.access(cand, os.X_OK):
            return cand
    sys.exit("nginx not found: run scripts/setup.sh as root, or apt-get install nginx-light")


def rss_mb(pid: int) -> tuple[float, float, float]:
    """(resident, of which anonymous, peak resident) memory of a process in MB; resident memory
    also counts pages of files the process maps (packs being read), anonymous does not."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return tuple(int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "RssAnon", "VmHWM"))


def cpu_seconds(pid: int) -> float:
    """CPU time a server has used, its live child processes' too (nginx's workers).

    A process's own threads are summed from their schedstat, in nanoseconds, when it has one
    thread (nginx: its 10 ms clock ticks would be most of what a download costs it); else the
    ticks of /proc/<pid>/stat, which keep the time of threads that have ended (a download's
    producer thread does).
    """
    total = 0.0
    for p in [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]:
        tasks = list(Path(f"/proc/{p}/task").iterdir())
        if len(tasks) == 1:
            total += int((tasks[0] / "schedstat").read_text().split()[0]) / 1e9
        else:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def curl(url: str, headers: dict[str, str]) -> tuple[int, float, float]:
    """(bytes, seconds to the first byte, seconds in all) of one GET; curl, so the client is not the limit."""
    cmd = ["curl", "-sS", "--fail", "-o", "/dev/null", "-w", "%{size_download} %{time_starttransfer} %{time_total}"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    n, first, total = subprocess.run([*cmd, url], check=True, capture_output=True, text=True).stdout.split()
    return int(n), float(first), float(total)


def measure(url: str, headers: dict[str, str], size: int, clients: int, repeat: int, ranges: int,
            server: int) -> dict:
    runs, cpu = [], 0.0
    for i in range(repeat):
        if i == 1:
            cpu = -cpu_seconds(server)
        n, ttfb, secs = curl(url, headers)
        assert n == size, f"{url}: got {n} bytes of {size}"
        runs.append((secs, ttfb))
    cpu += cpu_seconds(server)
    walls = []
    for _ in range(max(repeat - 1, 1)):
        results: list[tuple[int, float, float]] = []
        threads = [threading.Thread(target=lambda: results.append(curl(url, headers))) for _ in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        walls.append(time.perf_counter() - t0)
        assert len(results) == clients and all(r[0] == size for r in results)
    rnd = random.Random(1)
    lat = []
    with httpx.Client(headers=headers, timeout=60) as c:
        for _ in range(ranges):
            start = rnd.randrange(0, max(size - (1 << 20), 1))
            t = time.perf_counter()
            r = c.get(url, headers={"Range": f"bytes={start}-{start + (1 << 20) - 1}"})
            lat.append(time.perf_counter() - t)
            assert r.status_code == 206 and len(r.content) == min(1 << 20, size - start)
    return {"cold_mb_s": size / runs[0][0] / 1e6, "best_mb_s": size / min(s for s, _ in runs) / 1e6,
            "ttfb_ms": min(f for _, f in runs) * 1e3, "clients_mb_s": clients * size / min(walls) / 1e6,
            "range_p50_ms": statistics.median(lat) * 1e3,
            # the server's CPU over the downloads after the first: load on the machine barely moves it
            "mb_per_cpu_s": size * (repeat - 1) / cpu / 1e6 if repeat > 1 and cpu > 0 else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=1024, help="size of the synthetic BF16 model")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3, help="downloads per figure; the best is kept")
    ap.add_argument("--ranges", type=int, default=30, help="1 MiB Range requests per file")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "serve.json")
    args = ap.parse_args()
    if args.ranges < 1 or args.repeat < 1:
        ap.error("--ranges and --repeat must be at least 1 (the table's medians and bests need one)")

    repos = materialized(Path(os.environ.get("WEIGHTVAULT_TEST_REPOS", ROOT / ".cache" / "shared-repos")))
    work = Path(tempfile.mkdtemp(prefix="wv-bench-serve-"))
    procs: list[subprocess.Popen] = []
    try:
        big = work / "big"
        big.mkdir()
        make_bf16_model(big / "model.safetensors", args.size_mb)
        env = {**os.environ, "WEIGHTVAULT_DATA_DIR": str(work / "store")}
        for k in ("WEIGHTVAULT_DATABASE_URL", "WEIGHTVAULT_S3_BUCKET"):
            env.pop(k, None)
        cli = [sys.executable, "-m", "weightvault.api.cli"]
        sources = {repo: repos / repo for repo in REPOS} | {"bench/big": big}
        for repo, folder in sources.items():
            subprocess.run([*cli, "ingest", str(folder), "--repo", repo], env=env, check=True, stdout=subprocess.DEVNULL)
        token = subprocess.run([*cli, "token", "create", "--scope", "read"], env=env, check=True,
                               capture_output=True, text=True).stdout.strip()
        raw_root = work / "raw"
        for repo, folder in sources.items():
            (raw_root / repo).parent.mkdir(parents=True, exist_ok=True)
            (raw_root / repo).symlink_to(folder.resolve())
        (work / "nginx-tmp").mkdir()
        wv_port, bare_port, nginx_port = free_port(), free_port(), free_port()
        conf = work / "nginx.conf"
        conf.write_text(NGINX_CONF.format(work=work, port=nginx_port, root=raw_root))
        procs.append(subprocess.Popen([sys.executable, "-c", WV_APP, str(wv_port), "guarded"], env=env))
        procs.append(subprocess.Popen([nginx_binary(), "-c", str(conf)]))
        procs.append(subprocess.Popen([sys.executable, "-c", WV_APP, str(bare_port), "bare"], env=env))
        wait_port(wv_port)
        wait_port(bare_port)
        wait_port(nginx_port)
        wv_pid = procs[0].pid
        httpx.get(f"http://127.0.0.1:{wv_port}/{REPOS[0]}/resolve/main/config.json",
                  headers={"Authorization": f"Bearer {token}"}, timeout=60)  # warm up: lazy imports

        rows = []
        for label, repo, name, base in FILES:
            size = (sources[repo] / name).stat().st_size
            wv = measure(f"http://127.0.0.1:{wv_port}/{repo}/resolve/main/{name}",
                         {"Authorization": f"Bearer {token}"}, size, args.clients, args.repeat, args.ranges, wv_pid)
            rss, anon, peak = rss_mb(wv_pid)
            nx = measure(f"http://127.0.0.1:{nginx_port}/{repo}/{name}", {}, size, args.clients, args.repeat,
                         args.ranges, procs[1].pid)
            bare = max(size / curl(f"http://127.0.0.1:{bare_port}/{repo}/resolve/main/{name}",
                                   {"Authorization": f"Bearer {token}"})[2] / 1e6 for _ in range(args.repeat))
            rows.append({"file": label, "repo": repo, "name": name, "base": base, "mb": size / 1e6,
                         "weightvault": wv, "nginx": nx, "ratio_vs_nginx": wv["best_mb_s"] / nx["best_mb_s"],
                         "no_guards_mb_s": bare,
                         "rss_mb": rss, "anon_rss_mb": anon, "peak_rss_mb": peak})
        by_label = {r["file"]: r for r in rows}
        for r in rows:
            if r["base"]:
                r["ratio_vs_own_base"] = r["weightvault"]["best_mb_s"] / by_label[r["base"]]["weightvault"]["best_mb_s"]
    finally:
        for p in procs:
            p.terminate()
            p.wait(30)
        shutil.rmtree(work, ignore_errors=True)

    result = {"cpus": os.cpu_count(), "clients": args.clients, "repeat": args.repeat, "shared": str(SHARED),
              "rows": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"{os.cpu_count()} cores shared by both servers and curl; MB/s of one download (cold: the first "
          f"after start; best of {args.repeat}), {args.clients} at once, 1 MiB Range p50")
    print("| file | MB | nginx | wv cold | wv best | wv/nginx | wv/base | "
          f"nginx x{args.clients} | wv x{args.clients} | TTFB ms | Range ms | RSS MB | anon MB | wv without guards"
          " | server MB/cpu-s nginx | wv |")
    print("|---" * 16 + "|")
    for r in rows:
        wv, nx = r["weightvault"], r["nginx"]
        vs_base = f"{r['ratio_vs_own_base']:.2f}" if r["base"] else "-"
        print(f"| {r['file']} | {r['mb']:.0f} | {nx['best_mb_s']:.0f} | {wv['cold_mb_s']:.0f} | {wv['best_mb_s']:.0f}"
              f" | {r['ratio_vs_nginx']:.2f} | {vs_base} | {nx['clients_mb_s']:.0f} | {wv['clients_mb_s']:.0f}"
              f" | {wv['ttfb_ms']:.1f} | {wv['range_p50_ms']:.1f} | {r['rss_mb']:.0f} | {r['anon_rss_mb']:.0f} | {r['no_guards_mb_s']:.0f}"
              f" | {_num(nx['mb_per_cpu_s'])} | {_num(wv['mb_per_cpu_s'])} |")
    print(f"JSON in {args.json}")


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


if __name__ == "__main__":
    main()
