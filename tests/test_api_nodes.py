"""Two ``serve`` processes sharing one PostgreSQL catalog and one S3 bucket act as one store.

Each node has its own local data dir (temp files only); whatever one node
accepts, the other serves, including uploads whose parts were sent to one node
and completed on the other, and LFS upload URLs signed by one node.
"""
from __future__ import annotations

import hashlib
import sys

import httpx
import pytest

from helpers import make_repo, small_model
from test_api_rest import make_tokens, running, store_env, upload
from test_hub_client import hub_env, run_client

pytestmark = pytest.mark.slow

UPLOAD = r'''
import json, sys
from huggingface_hub import HfApi

a = json.loads(sys.argv[1])
api = HfApi(endpoint=a["endpoint"], token=a["token"])
api.create_repo(a["repo"])
print(json.dumps({"commit": api.upload_folder(folder_path=a["src"], repo_id=a["repo"]).oid}))
'''

DOWNLOAD = r'''
import hashlib, json, sys
from pathlib import Path
from huggingface_hub import snapshot_download

a = json.loads(sys.argv[1])
snap = Path(snapshot_download(a["repo"], cache_dir=a["cache"], token=a["token"]))
print(json.dumps({p.relative_to(snap).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                  for p in sorted(snap.rglob("*")) if p.is_file()}))
'''


def test_two_nodes_one_catalog_one_bucket(tmp_path, postgres_url, s3_bucket, s3_server):
    shared = {"WEIGHTVAULT_DATABASE_URL": postgres_url, "WEIGHTVAULT_S3_BUCKET": s3_bucket,
              "WEIGHTVAULT_S3_ENDPOINT_URL": s3_server}
    env_a = store_env(tmp_path / "node-a", **shared)
    env_b = store_env(tmp_path / "node-b", **shared)
    tokens = make_tokens(env_a)
    files = {"model.safetensors": small_model(11), "config.json": b'{"n": 2}', "vocab.txt": b"a\nb\n"}
    src = make_repo(tmp_path / "src", files)
    with running(env_a, tokens=tokens) as a, running(env_b, tokens=tokens) as b:
        up = run_client(sys.executable, UPLOAD, {"endpoint": a.url, "token": a.token, "repo": "acme/nodes",
                                                 "src": str(src)}, hub_env(tmp_path, a.url))
        got = run_client(sys.executable, DOWNLOAD, {"repo": "acme/nodes", "cache": str(tmp_path / "cache"),
                                                    "token": b.read_token}, hub_env(tmp_path, b.url))
        assert got == {p: hashlib.sha256(d).hexdigest() for p, d in files.items()}

        # Parts sent to node A, completed and committed on node B, listed and downloaded on A.
        big = small_model(12) * 3
        with a.client() as ca, b.client() as cb:
            upload_id = ca.post("/api/v1/uploads").json()["upload_id"]
            for n, off in enumerate(range(0, len(big), 30_000), 1):
                assert ca.put(f"/api/v1/uploads/{upload_id}/parts/{n}", content=big[off:off + 30_000]).status_code == 200
            r = cb.post(f"/api/v1/uploads/{upload_id}/complete", json={"repo": "acme/nodes", "path": "blob.bin"})
            assert r.status_code == 201, r.text
            r = cb.post("/api/v1/repos/acme/nodes/commits",
                        json={"add": {"blob.bin": r.json()["sha256"]}, "parent": up["commit"]})
            assert r.status_code == 200, r.text
            head = ca.get("/api/models/acme/nodes").json()["sha"]
            assert head == r.json()["commit"]
            assert ca.get("/acme/nodes/resolve/main/blob.bin").content == big
            assert cb.get("/acme/nodes/resolve/main/config.json").content == files["config.json"]
            sha = upload(cb, "acme/nodes", b"via b", "x.txt")
            assert ca.post("/api/v1/repos/acme/nodes/commits", json={"add": {"x.txt": sha}}).status_code == 200

            # An LFS upload URL signed by node A is honoured by node B (the key is in the shared catalog).
            data = b"lfs object " * 500
            oid = hashlib.sha256(data).hexdigest()
            batch = ca.post("/acme/nodes.git/info/lfs/objects/batch", json={
                "operation": "upload", "objects": [{"oid": oid, "size": len(data)}]}).json()
            href = batch["objects"][0]["actions"]["upload"]["href"]
            assert httpx.put(href.replace(a.url, b.url), content=data).status_code == 200
            assert ca.post(f"/api/v1/lfs/model/acme/nodes/{oid}/verify", json={"oid": oid}).status_code == 200
