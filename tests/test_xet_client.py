"""huggingface_hub 2.x with hf_xet uploads through Xet to a live ``weightvault serve``, with no setting.

No ``HF_HUB_DISABLE_XET``: the client asks ``xet-write-token``, sends xorbs and
shards to this server, then commits by sha256; the server rebuilds each file
from the xorbs and stores it like any other upload. Hostile Xet input gets the
spec's 4xx and leaves nothing behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from helpers import make_repo, safetensors_bytes
from support import CountingRelay
from test_api_rest import running, store_env
from test_hub_client import hub_env, run_client
import xet_build

pytestmark = pytest.mark.slow

HF = str(Path(sys.executable).parent / "hf")

UPLOADS = r'''
import json, sys
from huggingface_hub import CommitOperationAdd, CommitOperationCopy, CommitOperationDelete, HfApi

a = json.loads(sys.argv[1])
api, repo = HfApi(endpoint=a["endpoint"], token=a["token"]), a["repo"]
api.create_repo(repo)
api.upload_folder(folder_path=a["src"], repo_id=repo, commit_message="weights")
api.upload_file(path_or_fileobj=a["extra"], path_in_repo="extra/solo.safetensors", repo_id=repo)
api.create_commit(repo, commit_message="adds, deletes, copies", operations=[
    CommitOperationAdd("added.bin", a["added"]),
    CommitOperationAdd("notes.txt", b"small text goes inline"),
    CommitOperationDelete("config.json"),
    CommitOperationCopy("model-00001-of-00002.safetensors", "copies/first.safetensors"),
])
print(json.dumps({}))
'''

FOLDER = r'''
import json, sys
from huggingface_hub import HfApi

a = json.loads(sys.argv[1])
api = HfApi(endpoint=a["endpoint"], token=a["token"])
api.create_repo(a["repo"], exist_ok=True)
api.upload_folder(folder_path=a["src"], repo_id=a["repo"])
print(json.dumps({}))
'''

PUSH_TO_HUB = r'''
import hashlib, json, sys, tempfile
from pathlib import Path
from transformers import BertConfig, BertModel

a = json.loads(sys.argv[1])
model = BertModel(BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                             vocab_size=1000))
model.push_to_hub(a["repo"], token=a["token"])
with tempfile.TemporaryDirectory() as tmp:
    model.save_pretrained(tmp)
    print(json.dumps({"model.safetensors": hashlib.sha256((Path(tmp) / "model.safetensors").read_bytes()).hexdigest()}))
'''

SNAPSHOT = r'''
import hashlib, json, sys
from pathlib import Path
from huggingface_hub import snapshot_download

a = json.loads(sys.argv[1])
out = {}
for repo in a["repos"]:
    snap = Path(snapshot_download(repo, endpoint=a["endpoint"], token=a["token"], cache_dir=a["cache"]))
    out[repo] = {p.relative_to(snap).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                 for p in sorted(snap.rglob("*")) if p.is_file()}
print(json.dumps(out))
'''


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def weights(seed: int, rows: int) -> bytes:
    rng = np.random.default_rng(seed)
    return safetensors_bytes({f"layer{i}.weight": ("F32", (rng.standard_normal((rows, 256)) * 0.02).astype(np.float32))
                              for i in range(4)})


def model_folder(root: Path) -> dict[str, bytes]:
    """A sharded safetensors model of about 5 MB with its index, config and tokenizer."""
    shards = {"model-00001-of-00002.safetensors": weights(1, 600), "model-00002-of-00002.safetensors": weights(2, 600)}
    index = {"metadata": {}, "weight_map": {f"layer{i}.weight": name for name in shards for i in range(4)}}
    files = {**shards, "model.safetensors.index.json": json.dumps(index).encode(),
             "config.json": b'{"model_type": "bert", "hidden_size": 256}', "tokenizer.json": b'{"vocab": {}}'}
    make_repo(root, files)
    return files


def xet_env(tmp: Path, url: str) -> dict[str, str]:
    env = hub_env(tmp, url)
    assert not any(k.startswith("HF_HUB_DISABLE_XET") for k in env)
    return env


@pytest.fixture(scope="module")
def xet_server(tmp_path_factory):
    with running(store_env(tmp_path_factory.mktemp("xet") / "store")) as srv:
        yield srv


def test_newest_client_uploads_through_xet(xet_server, tmp_path):
    files = model_folder(tmp_path / "src")
    extra, added = weights(3, 300), os.urandom(1_500_000)
    (tmp_path / "extra.safetensors").write_bytes(extra)
    (tmp_path / "added.bin").write_bytes(added)
    env = xet_env(tmp_path, xet_server.url)
    cli = subprocess.run([HF, "upload", "acme/xet-cli", str(tmp_path / "src"), "--token", xet_server.token],
                         capture_output=True, text=True, env=env, timeout=300)
    assert cli.returncode == 0, cli.stderr
    run_client(sys.executable, UPLOADS, {"endpoint": xet_server.url, "token": xet_server.token, "repo": "acme/xet-api",
                                         "src": str(tmp_path / "src"), "extra": str(tmp_path / "extra.safetensors"),
                                         "added": str(tmp_path / "added.bin")}, env)

    pushed = run_client(sys.executable, PUSH_TO_HUB, {"repo": "acme/xet-bert", "token": xet_server.token}, env)

    got = run_client(sys.executable, SNAPSHOT, {"endpoint": xet_server.url, "token": xet_server.read_token,
                                                "repos": ["acme/xet-cli", "acme/xet-api", "acme/xet-bert"],
                                                "cache": str(tmp_path / "cache")}, env)
    assert got["acme/xet-bert"]["model.safetensors"] == pushed["model.safetensors"]  # transformers' push_to_hub
    assert sorted(got["acme/xet-bert"]) == ["README.md", "config.json", "model.safetensors"]
    expected = {p: sha(d) for p, d in files.items()}
    assert got["acme/xet-cli"] == expected
    api = {p: s for p, s in expected.items() if p != "config.json"}
    api |= {"extra/solo.safetensors": sha(extra), "added.bin": sha(added), "notes.txt": sha(b"small text goes inline"),
            "copies/first.safetensors": expected["model-00001-of-00002.safetensors"]}
    assert got["acme/xet-api"] == api
    staged = Path(xet_server.env["WEIGHTVAULT_DATA_DIR"]) / "objects" / "xet" / "staging"
    assert not [p for p in staged.rglob("*") if p.is_file()]  # every xorb was dropped once its files were stored


def stored_bytes(env: dict[str, str]) -> int:
    return json.loads(run_cli("report", "--json", env=env).stdout)["overall"]["stored_bytes"]


def test_xet_upload_stores_what_ingest_stores_and_reuploads_are_nearly_free(tmp_path):
    files = model_folder(tmp_path / "src")
    folder_bytes = sum(map(len, files.values()))
    ingest_env = store_env(tmp_path / "ingested")
    run_cli("ingest", str(tmp_path / "src"), "--repo", "acme/model", env=ingest_env)

    with running(store_env(tmp_path / "store")) as srv:
        relay = CountingRelay(int(srv.url.rsplit(":", 1)[1]))
        env = xet_env(tmp_path, relay.url)
        args = {"endpoint": relay.url, "token": srv.token, "src": str(tmp_path / "src")}
        try:
            run_client(sys.executable, FOLDER, {**args, "repo": "acme/model"}, env)
            first = relay.take()
            assert stored_bytes(srv.env) == stored_bytes(ingest_env)  # the model-aware path ran on every file
            run_client(sys.executable, FOLDER, {**args, "repo": "acme/model"}, env)
            same_repo = relay.take()
            run_client(sys.executable, FOLDER, {**args, "repo": "acme/copy"}, env)
            new_repo = relay.take()
            # One shard edited in the middle: the file is new, most of its chunks sit in xorbs the server
            # dropped after the first commit, so it is rebuilt from the stored files they point into.
            edited = bytearray(files["model-00002-of-00002.safetensors"])
            edited[len(edited) // 2:len(edited) // 2 + 64] = os.urandom(64)
            files["model-00002-of-00002.safetensors"] = bytes(edited)
            make_repo(tmp_path / "src", files)
            run_client(sys.executable, FOLDER, {**args, "repo": "acme/edited"}, env)
            one_edit = relay.take()
            # Another machine (an empty hf_xet cache) uploading the same folder: the server's answers to
            # its global deduplication queries name the xorbs it can skip.
            (tmp_path / "machine2").mkdir()
            run_client(sys.executable, FOLDER, {**args, "repo": "acme/elsewhere"},
                       xet_env(tmp_path / "machine2", relay.url))
            other_machine = relay.take()
            got = run_client(sys.executable, SNAPSHOT, {"endpoint": relay.url, "token": srv.read_token,
                                                        "repos": ["acme/copy", "acme/edited", "acme/elsewhere"],
                                                        "cache": str(tmp_path / "c")}, env)
        finally:
            relay.close()
    print(f"\nXet upload of a {folder_bytes} B folder: {first} B sent; again to the same repo: {same_repo} B; "
          f"to a new repo: {new_repo} B; with 64 bytes of one shard changed: {one_edit} B; "
          f"from another machine: {other_machine} B")
    assert first > folder_bytes * 0.9
    assert same_repo < folder_bytes * 0.02 and new_repo < folder_bytes * 0.02
    assert one_edit < folder_bytes * 0.1 and other_machine < folder_bytes * 0.1
    assert got["acme/edited"] == got["acme/elsewhere"] == {p: sha(d) for p, d in files.items()}
    assert got["acme/copy"] == {p: s for p, s in got["acme/edited"].items()
                                if p != "model-00002-of-00002.safetensors"} | {
        "model-00002-of-00002.safetensors": sha(weights(2, 600))}


def _xet_token(c, repo: str, scope: str) -> str:
    r = c.get(f"/api/models/{repo}/xet-{scope}-token/main")
    assert r.status_code == 200, r.text
    assert r.headers["X-Xet-Access-Token"] == r.json()["accessToken"]
    return r.json()["accessToken"]


def _commit(c, repo: str, path: str, oid: str, size: int):
    lines = [{"key": "header", "value": {"summary": "xet"}},
             {"key": "lfsFile", "value": {"path": path, "algo": "sha256", "oid": oid, "size": size}}]
    return c.post(f"/api/models/{repo}/commit/main", content="\n".join(json.dumps(x) for x in lines),
                  headers={"Content-Type": "application/x-ndjson"})


def test_hostile_xet_input_is_refused_and_leaves_nothing(xet_server):
    import httpx

    repo = "acme/hostile"
    with xet_server.client() as c, xet_server.client("read") as r:
        assert c.post("/api/repos/create", json={"name": "hostile", "organization": "acme"}).status_code == 200
        write, read = _xet_token(c, repo, "write"), _xet_token(r, repo, "read")
        assert r.get(f"/api/models/{repo}/xet-write-token/main").status_code == 403
        head = c.get(f"/api/models/{repo}/revision/main").json()["sha"]
    files_before = json.loads(run_cli("report", "--json", env=xet_server.env).stdout)["overall"]["files"]
    chunks = [os.urandom(40_000), struct.pack("<8000f", *range(8000))]
    name, body = xet_build.xorb(chunks, [0, 2])
    other, _ = xet_build.xorb([b"other"])
    over = xet_build.chunk_record(b"z" * 9000, 1, claim=8000)
    data = b"".join(chunks)

    with httpx.Client(base_url=xet_server.url, timeout=60) as cas:
        def post(path: str, content: bytes, token: str | None = write) -> httpx.Response:
            return cas.post(path, content=content, headers={"Authorization": f"Bearer {token}"} if token else {})

        assert post(f"/v1/xorbs/default/{name}", body, None).status_code == 401
        forged = write[:-2] + ("11" if write.endswith("00") else "00")  # a signature that differs, always
        assert post(f"/v1/xorbs/default/{name}", body, forged).status_code == 401
        assert post(f"/v1/xorbs/default/{name}", body, read).status_code == 403
        assert post("/v1/shards", xet_build.shard([]), read).status_code == 403
        for bad_name, bad_body in [(other, body), (name, body[:len(body) // 2]), (name, over), ("0" * 63, body)]:
            resp = post(f"/v1/xorbs/default/{bad_name}", bad_body)
            assert resp.status_code == 400 and resp.headers["X-Error-Code"], resp.text
        never = xet_build.shard([(data, [(other, [b"other"], 0, 1)])])
        assert post("/v1/shards", never).status_code == 400
        assert post("/v1/shards", b"not a shard").status_code == 400
        assert cas.get(f"/v1/chunks/default-merkledb/{name}",
                       headers={"Authorization": f"Bearer {read}"}).status_code == 404

        assert post(f"/v1/xorbs/default/{name}", body).json() == {"was_inserted": True}
        assert post(f"/v1/xorbs/default/{name}", body).json() == {"was_inserted": False}
        wrong_term = xet_build.shard([(data, [(name, chunks, 0, 1)])])  # claims both chunks' sha256 with one
        lying = xet_build.shard([(data, [(name, chunks, 0, 2)])], sha256=hashlib.sha256(b"something else").digest())
        # the sha256 a file claims is checked when a commit names it (the bytes are rebuilt then)
        assert post("/v1/shards", lying).json() == {"result": 1}
        assert post("/v1/shards", wrong_term).json() == {"result": 1}
    with xet_server.client() as c:
        for claimed in (sha(b"something else"), sha(data)):
            resp = _commit(c, repo, "w.bin", claimed, len(data))
            assert resp.status_code == 400 and resp.headers["X-Error-Code"] == "ChecksumMismatch", resp.text
        resp = _commit(c, repo, "w.bin", sha(b"never described by a shard"), 26)
        assert resp.status_code == 400 and "never uploaded" in resp.text
        assert c.get(f"/api/models/{repo}/revision/main").json()["sha"] == head
    assert json.loads(run_cli("report", "--json", env=xet_server.env).stdout)["overall"]["files"] == files_before
    staged = Path(xet_server.env["WEIGHTVAULT_DATA_DIR"]) / "objects" / "xet" / "staging"
    assert sorted(p.name for p in staged.rglob("xorbs/*")) == [name, name + ".chunks"]


def test_any_node_finishes_a_xet_upload(tmp_path, postgres_url, s3_bucket, s3_server):
    """Xorb to node A, shard to node B, commit on A, download from B: staging lives in the shared bucket.

    Node A bounds staging to one xorb: a second one is refused until the commit drops the first."""
    import httpx

    from test_api_rest import make_tokens

    shared = {"WEIGHTVAULT_DATABASE_URL": postgres_url, "WEIGHTVAULT_S3_BUCKET": s3_bucket,
              "WEIGHTVAULT_S3_ENDPOINT_URL": s3_server}
    chunks = [os.urandom(70_000), struct.pack("<20000f", *[i / 3 for i in range(20000)]), b"tail" * 999]
    data = b"".join(chunks)
    name, body = xet_build.xorb(chunks, [1, 2, 0])
    second, second_body = xet_build.xorb([os.urandom(20_000)])
    env_a = store_env(tmp_path / "a", **shared, WEIGHTVAULT_XET_STAGING_BYTES=str(len(body) + 10_000))
    env_b = store_env(tmp_path / "b", **shared)
    tokens = make_tokens(env_a)
    with running(env_a, tokens=tokens) as a, running(env_b, tokens=tokens) as b:
        with a.client() as ca:
            assert ca.post("/api/repos/create", json={"name": "nodes", "organization": "acme"}).status_code == 200
            write = _xet_token(ca, "acme/nodes", "write")
        auth = {"Authorization": f"Bearer {write}"}
        assert httpx.post(f"{a.url}/v1/xorbs/default/{name}", content=body, headers=auth).status_code == 200
        full = httpx.post(f"{a.url}/v1/xorbs/default/{second}", content=second_body, headers=auth)
        assert full.status_code == 413 and full.headers["X-Error-Code"] == "XetStagingFull"
        shard = xet_build.shard([(data, [(name, chunks, 0, 2), (name, chunks, 2, 3)])], [(name, chunks)])
        assert httpx.post(f"{b.url}/v1/shards", content=shard, headers=auth).status_code == 200
        with a.client() as ca:
            assert _commit(ca, "acme/nodes", "w.bin", sha(data), len(data)).status_code == 200
        assert httpx.post(f"{a.url}/v1/xorbs/default/{second}", content=second_body, headers=auth).status_code == 200
        with b.client("read") as cb:
            assert cb.get("/acme/nodes/resolve/main/w.bin").content == data
