"""Pull-through mirror: a second weightvault instance is the upstream hub.

A miss on the mirror is fetched from the upstream, stored, and served; once
stored, it is served with the upstream gone. ``weightvault mirror`` fetches
ahead of time. Uses one real shared repo (BF16 MiniLM, 45 MB).
"""
from __future__ import annotations

import hashlib
import json
import sys

import httpx
import pytest

from conftest import run_cli
from helpers import make_repo, small_model
from test_api_rest import running, store_env
from test_hub_client import hub_env, run_client

pytestmark = pytest.mark.slow

SNAPSHOT = r'''
import hashlib, json, sys
from pathlib import Path
from huggingface_hub import snapshot_download
from safetensors.torch import load_file  # BF16 needs torch, not numpy

a = json.loads(sys.argv[1])
snap = Path(snapshot_download(a["repo"], cache_dir=a["cache"]))
print(json.dumps({"files": {p.relative_to(snap).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                            for p in sorted(snap.rglob("*")) if p.is_file()},
                  "tensors": len(load_file(snap / "model.safetensors"))}))
'''


def file_hashes(root) -> dict[str, str]:
    # helpers.tree_sha256 skips any path with a ".cache" part, which the shared repos' own location has.
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_pull_through_mirror(shared_repos, tmp_path):
    real = shared_repos / "acme" / "all-MiniLM-L6-v2-bf16"
    up_env = store_env(tmp_path / "upstream")
    run_cli("ingest", str(real), "--repo", "acme/minilm", env=up_env)
    run_cli("ingest", str(make_repo(tmp_path / "small", {"model.safetensors": small_model(2), "a.txt": b"a"})),
            "--repo", "acme/small", env=up_env)
    mirror_env = store_env(tmp_path / "mirror")
    with running(up_env, "--anonymous-reads") as upstream:
        with running(mirror_env, "--anonymous-reads", "--upstream", upstream.url) as mirror:
            env = hub_env(tmp_path, mirror.url)
            env["HF_HUB_ETAG_TIMEOUT"] = "300"  # the first HEAD waits for the whole fetch and ingest
            got = run_client(sys.executable, SNAPSHOT, {"repo": "acme/minilm", "cache": str(tmp_path / "c1")}, env)
            assert got["files"] == file_hashes(real) and got["tensors"] > 50
            with httpx.Client(base_url=mirror.url) as c:
                r = c.get("/api/models/acme/does-not-exist")
                assert (r.status_code, r.headers["x-error-code"]) == (404, "RepoNotFound")
            run_cli("mirror", "acme/small", "--upstream", upstream.url, "--json", env=mirror_env)
    # The upstream is gone: everything fetched is still served, from the mirror's own store.
    with running(mirror_env, "--anonymous-reads", "--upstream", "http://127.0.0.1:9") as mirror:
        env = hub_env(tmp_path, mirror.url)
        got = run_client(sys.executable, SNAPSHOT, {"repo": "acme/minilm", "cache": str(tmp_path / "c2")}, env)
        assert got["files"] == file_hashes(real)
        with httpx.Client(base_url=mirror.url) as c:
            assert c.get("/acme/small/resolve/main/a.txt").content == b"a"
    listing = json.loads(run_cli("ls", "--json", env=mirror_env).stdout)
    assert {r["repo"] for r in listing} == {"acme/minilm", "acme/small"}
