"""Upload throughput into ``weightvault serve``: huggingface_hub through Xet vs through LFS, one client, one run.

    python bench/upload.py [--repo sentence-transformers/all-MiniLM-L6-v2] [--json bench/results/upload.json]

The FP32 base model of ../shared/data (rebuilt once under .cache/shared-repos) is
uploaded with ``HfApi.upload_folder`` by this venv's huggingface_hub (2.x with
hf_xet): once with no setting (Xet: chunking, xorbs, shards, then the server
rebuilds and stores each file) and once with ``HF_HUB_DISABLE_XET=1`` (LFS: one
PUT per file), each into a fresh store and with a fresh client cache. Then the
same folder again into a second repo of the same store (Xet: the client's shard
cache deduplicates; LFS: the batch API reports every object present), and into a
third from an empty client cache, as another machine would (Xet: the server's
answers to global deduplication queries). MB/s is
folder bytes over the wall time of ``upload_folder`` (the repo is created
first, outside the timing); "sent" counts the bytes the client wrote to the
server's socket, through a relay. Client and server share this machine's cores.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import ROOT, CountingRelay, folder_bytes, free_port, materialized, wait_port  # noqa: E402

UPLOAD = r'''
import json, sys, time
from huggingface_hub import HfApi
a = json.loads(sys.argv[1])
api = HfApi(endpoint=a["endpoint"], token=a["token"])
api.create_repo(a["repo"])
t = time.perf_counter()
api.upload_folder(folder_path=a["src"], repo_id=a["repo"])
print(json.dumps({"seconds": time.perf_counter() - t}))
'''


def cli(env: dict, *args: str) -> str:
    return subprocess.run([sys.executable, "-m", "weightvault.api.cli", *args], env=env, check=True,
                          capture_output=True, text=True).stdout


def run(protocol: str, src: Path, work: Path) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEIGHTVAULT_", "HF_", "HUGGINGFACE_"))}
    env["WEIGHTVAULT_DATA_DIR"] = str(work / "store")
    token = cli(env, "token", "create", "--scope", "write").strip()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "weightvault.api.cli", "serve", "--host", "127.0.0.1",
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        relay = CountingRelay(port)
        client_env = {**env, "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
        if protocol == "LFS":
            client_env["HF_HUB_DISABLE_XET"] = "1"
        rows, size = [], folder_bytes(src)
        for label, repo, home in [("first upload", "bench/first", "hf-home"),
                                  ("same folder, new repo", "bench/again", "hf-home"),
                                  ("same, empty client cache", "bench/elsewhere", "hf-home-2")]:
            args = {"endpoint": relay.url, "token": token, "repo": repo, "src": str(src)}
            proc = subprocess.run([sys.executable, "-c", UPLOAD, json.dumps(args)],
                                  env={**client_env, "HF_HOME": str(work / home)}, capture_output=True, text=True,
                                  check=True)
            seconds = json.loads(proc.stdout.strip().splitlines()[-1])["seconds"]
            rows.append({"protocol": protocol, "upload": label, "folder_bytes": size, "seconds": seconds,
                         "mb_per_s": size / 1e6 / seconds, "sent_bytes": relay.take()})
        stored = json.loads(cli(env, "report", "--json"))["overall"]["stored_bytes"]
        for r in rows:
            r["stored_bytes"] = stored
        return rows
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", default="sentence-transformers/all-MiniLM-L6-v2", help="which shared repo to upload")
    ap.add_argument("--repos", type=Path, default=ROOT / ".cache" / "shared-repos")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "upload.json")
    args = ap.parse_args()
    src = materialized(args.repos) / args.repo
    rows = []
    with tempfile.TemporaryDirectory(prefix="wv-upload-") as tmp:
        for protocol in ("Xet", "LFS"):
            rows += run(protocol, src, Path(tmp) / protocol)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"repo": args.repo, "rows": rows}, indent=2))
    print(f"{args.repo}: {rows[0]['folder_bytes'] / 1e6:.1f} MB, huggingface_hub "
          f"{__import__('huggingface_hub').__version__}, one client, fresh store per protocol")
    print("| protocol | upload | seconds | MB/s | sent MB | stored MB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['protocol']} | {r['upload']} | {r['seconds']:.2f} | {r['mb_per_s']:.1f} | "
              f"{r['sent_bytes'] / 1e6:.2f} | {r['stored_bytes'] / 1e6:.1f} |")
    print(f"JSON in {args.json}")


if __name__ == "__main__":
    main()
