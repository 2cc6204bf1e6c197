"""The HTTP API over a real uvicorn process: REST uploads and commits, downloads, ranges, errors, auth.

``Server`` (used by the other test_api_* / test_hub_* modules too) runs
``weightvault serve`` in a subprocess on 127.0.0.1 and stops it at teardown.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from conftest import free_port, listening, run_cli
from helpers import make_repo, small_model

pytestmark = pytest.mark.slow

STORE_VARS = ("WEIGHTVAULT_DATABASE_URL", "WEIGHTVAULT_S3_BUCKET", "WEIGHTVAULT_S3_ENDPOINT_URL",
              "WEIGHTVAULT_UPSTREAM", "WEIGHTVAULT_ANONYMOUS_READS")


class Server:
    """A running ``weightvault serve``: its URL, store environment and a write token."""

    def __init__(self, url: str, env: dict[str, str], token: str, read_token: str) -> None:
        self.url, self.env, self.token, self.read_token = url, env, token, read_token

    def client(self, token: str | None = "write") -> httpx.Client:
        secret = {"write": self.token, "read": self.read_token}.get(token, token)
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


def store_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in STORE_VARS}
    return {**env, "WEIGHTVAULT_DATA_DIR": str(data_dir), **extra}


def make_tokens(env: dict[str, str]) -> tuple[str, str]:
    write = run_cli("token", "create", "--scope", "write", env=env).stdout.strip()
    read = run_cli("token", "create", "--scope", "read", env=env).stdout.strip()
    return write, read


@contextmanager
def running(env: dict[str, str], *args: str, tokens: tuple[str, str] | None = None) -> Iterator[Server]:
    """Start ``weightvault serve`` on a free port with ``env``; yields a Server, kills it at exit."""
    tokens = tokens or make_tokens(env)
    port = free_port()
    cmd = [sys.executable, "-m", "weightvault.api.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    with open(Path(env["WEIGHTVAULT_DATA_DIR"]).parent / f"serve-{port}.log", "w") as log, \
            listening(cmd, port, env, log) as url:
        yield Server(url, env, *tokens)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    # Small tree pages, so that listings exercise the Link-header pagination.
    env = store_env(tmp_path_factory.mktemp("api") / "store", WEIGHTVAULT_TREE_PAGE="10")
    with running(env) as srv:
        yield srv


def upload(c: httpx.Client, repo: str, data: bytes, path: str, part_size: int = 1 << 20) -> str:
    """Upload ``data`` through the REST API in parts; returns its sha256."""
    upload_id = c.post("/api/v1/uploads").json()["upload_id"]
    for n, off in enumerate(range(0, max(len(data), 1), part_size), 1):
        r = c.put(f"/api/v1/uploads/{upload_id}/parts/{n}", content=data[off:off + part_size])
        assert r.status_code == 200, r.text
    r = c.post(f"/api/v1/uploads/{upload_id}/complete",
               json={"repo": repo, "path": path, "sha256": hashlib.sha256(data).hexdigest()})
    assert r.status_code == 201, r.text
    return r.json()["sha256"]


def test_rest_upload_commit_list_download(server):
    model, config = small_model(3), b'{"hidden": 64}'
    with server.client() as c:
        assert c.post("/api/v1/repos", json={"name": "acme/rest"}).status_code == 201
        assert c.post("/api/v1/repos", json={"name": "acme/rest"}).status_code == 409
        added = {"model.safetensors": upload(c, "acme/rest", model, "model.safetensors", part_size=7000),
                 "config.json": upload(c, "acme/rest", config, "config.json")}
        r = c.post("/api/v1/repos/acme/rest/commits", json={"revision": "dev/v1", "message": "weights", "add": added})
        assert r.status_code == 200, r.text
        commit = r.json()["commit"]
        files = c.get("/api/v1/repos/acme/rest/files", params={"revision": "dev/v1"}).json()
        assert files["commit"] == commit
        assert {f["path"]: f["sha256"] for f in files["files"]} == added
        got = c.get("/api/v1/repos/acme/rest/files/model.safetensors", params={"revision": "dev/v1"})
        assert got.status_code == 200 and got.content == model
        part = c.get("/api/v1/repos/acme/rest/files/model.safetensors", params={"revision": commit[:10]},
                     headers={"Range": "bytes=100-"})
        assert part.status_code == 206 and part.content == model[100:]
        revs = c.get("/api/v1/repos/acme/rest/revisions").json()
        assert {b["name"] for b in revs["branches"]} == {"main", "dev/v1"}
        assert [x["name"] for x in c.get("/api/v1/repos").json()] == ["acme/rest"]
        assert c.get("/api/v1/report").json()["overall"]["raw_bytes"] >= len(model)
        r = c.post("/api/v1/repos/acme/rest/commits",
                   json={"revision": "dev/v1", "delete": ["config.json"], "parent": "0" * 40})
        assert r.status_code == 412 and r.headers["x-error-code"] == "CommitConflict"
        r = c.post("/api/v1/repos/acme/rest/commits", json={"revision": "dev/v1", "delete": ["config.json"],
                                                            "parent": commit})
        assert r.status_code == 200
        assert [f["path"] for f in c.get("/api/v1/repos/acme/rest/files?revision=dev/v1").json()["files"]] == \
            ["model.safetensors"]
        assert c.delete("/api/v1/repos/acme/rest").status_code == 204
        assert c.get("/api/v1/repos/acme/rest/revisions").headers["x-error-code"] == "RepoNotFound"
        assert c.get("/docs").status_code == 200 and "/api/v1/uploads" in c.get("/openapi.json").text


def test_upload_with_wrong_sha256_stores_nothing(server):
    with server.client() as c:
        upload_id = c.post("/api/v1/uploads").json()["upload_id"]
        c.put(f"/api/v1/uploads/{upload_id}/parts/1", content=b"some bytes")
        r = c.post(f"/api/v1/uploads/{upload_id}/complete", json={"repo": "acme/x", "sha256": "0" * 64})
        assert r.status_code == 400 and r.headers["x-error-code"] == "ChecksumMismatch"
        assert c.post("/api/v1/repos", json={"name": "acme/x"}).status_code == 201
        r = c.post("/api/v1/repos/acme/x/commits", json={"add": {"f": hashlib.sha256(b"some bytes").hexdigest()}})
        assert r.status_code == 400


@pytest.fixture(scope="module")
def served_repo(server, tmp_path_factory):
    """``acme/tiny`` ingested through the CLI into the server's store, on main and dev/v1."""
    src = make_repo(tmp_path_factory.mktemp("tiny"), {"model.safetensors": small_model(5), "config.json": b'{"a": 1}'})
    run_cli("ingest", str(src), "--repo", "acme/tiny", env=server.env)
    run_cli("ingest", str(src), "--repo", "acme/tiny", "--revision", "dev/v1", env=server.env)
    return src


def test_resolve_headers_ranges_and_errors(server, served_repo):
    model = (served_repo / "model.safetensors").read_bytes()
    size = len(model)
    with server.client("read") as c:
        head = c.head("/acme/tiny/resolve/dev%2Fv1/model.safetensors")
        assert head.status_code == 200
        assert head.headers["etag"].strip('"') == hashlib.sha256(model).hexdigest()
        assert head.headers["x-linked-size"] == head.headers["content-length"] == str(size)
        assert len(head.headers["x-repo-commit"]) == 40 and head.headers["accept-ranges"] == "bytes"
        assert not [h for h in head.headers if h.lower().startswith("x-xet")]
        cfg = c.head("/acme/tiny/resolve/main/config.json")
        git = hashlib.sha1(b"blob %d\x00" % len(b'{"a": 1}') + b'{"a": 1}').hexdigest()
        assert cfg.headers["etag"].strip('"') == git
        for rng, (lo, hi) in [("bytes=0-9", (0, 10)), ("bytes=1000-", (1000, size)), ("bytes=-16", (size - 16, size)),
                              (f"bytes=100-{size + 50}", (100, size))]:
            r = c.get("/acme/tiny/resolve/main/model.safetensors", headers={"Range": rng})
            assert r.status_code == 206 and r.content == model[lo:hi], rng
            assert r.headers["content-range"] == f"bytes {lo}-{hi - 1}/{size}"
        r = c.get("/acme/tiny/resolve/main/model.safetensors", headers={"Range": f"bytes={size}-"})
        assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{size}"

        for url, code in [("/acme/nope/resolve/main/config.json", "RepoNotFound"),
                          ("/acme/tiny/resolve/nope/config.json", "RevisionNotFound"),
                          ("/acme/tiny/resolve/main/nope.json", "EntryNotFound"),
                          ("/api/models/acme/nope", "RepoNotFound"),
                          ("/api/models/acme/tiny/revision/nope", "RevisionNotFound"),
                          ("/api/models/acme/tiny/tree/main/nope", "EntryNotFound")]:
            r = c.get(url)
            assert (r.status_code, r.headers.get("x-error-code")) == (404, code), url
        assert len(c.head("/acme/tiny/resolve/main/nope.json").headers["x-repo-commit"]) == 40
        r = c.get("/acme/tiny/resolve/main/..%2F..%2Fcatalog.sqlite")
        assert r.status_code == 400 and r.headers["x-error-code"] == "InvalidName"
        r = c.get("/acme/tiny/resolve/main/sub/%2E%2E/%2E%2E/x")
        assert r.status_code == 400
    with server.client(None) as anon, server.client("wv_not-a-token") as bad:
        assert anon.get("/api/models/acme/tiny").status_code == 401
        assert bad.get("/api/models/acme/tiny").status_code == 401
        assert bad.head("/acme/tiny/resolve/main/config.json").status_code == 401
    with server.client("read") as c:
        assert c.post("/api/repos/create", json={"name": "x", "organization": "acme"}).status_code == 403


def test_tree_pagination_and_paths_info(server, tmp_path):
    files = {f"d{i % 3}/f{i:02d}.txt": f"{i}".encode() for i in range(25)}
    run_cli("ingest", str(make_repo(tmp_path / "src", files)), "--repo", "acme/many", env=server.env)
    with server.client("read") as c:
        url, seen = "/api/models/acme/many/tree/main?recursive=true", []
        while url:
            r = c.get(url)
            assert r.status_code == 200
            seen += r.json()
            url = r.links.get("next", {}).get("url")
        assert sorted(e["path"] for e in seen if e["type"] == "file") == sorted(files)
        assert {e["path"] for e in seen if e["type"] == "directory"} == {"d0", "d1", "d2"}
        top = c.get("/api/models/acme/many/tree/main").json()
        assert [e["path"] for e in top] == ["d0", "d1", "d2"]
        sub = c.get("/api/models/acme/many/tree/main/d1").json()
        assert all(e["path"].startswith("d1/") for e in sub) and len(sub) == 8
        info = c.post("/api/models/acme/many/paths-info/main",
                      data={"paths": ["d0/f00.txt", "d1", "missing"], "expand": "false"}).json()
        assert [(e["path"], e["type"]) for e in info] == [("d0/f00.txt", "file"), ("d1", "directory")]


def test_hub_commit_errors(server, served_repo):
    with server.client() as c:
        url = "/api/models/acme/tiny/commit/main"
        ndjson = {"Content-Type": "application/x-ndjson"}
        header = json.dumps({"key": "header", "value": {"summary": "s"}})
        for body in [b"not json\n", header.encode() + b"\n{\"key\": \"file\"}\n",
                     json.dumps({"key": "file", "value": {"path": "a", "content": ""}}).encode(),
                     (header + "\n" + json.dumps({"key": "file", "value": {"path": "a", "content": "%%%"}})).encode(),
                     (header + "\n" + json.dumps({"key": "file", "value": {"path": "../a", "content": ""}})).encode(),
                     (header + "\n" + json.dumps({"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256",
                                                                             "oid": "a" * 64}})).encode()]:
            r = c.post(url, content=body, headers=ndjson)
            assert r.status_code == 400, (body, r.text)
        ok = (header + "\n" + json.dumps({"key": "file", "value": {
            "path": "notes.txt", "content": base64.b64encode(b"hello").decode(), "encoding": "base64"}})).encode()
        r = c.post(url, content=ok, headers=ndjson)
        assert r.status_code == 200 and len(r.json()["commitOid"]) == 40
        assert c.get("/acme/tiny/resolve/main/notes.txt").content == b"hello"
        assert c.post("/api/models/acme/tiny/commit/nope", content=ok, headers=ndjson).status_code == 404


def test_lfs_upload_with_wrong_sha256_is_rejected(server, served_repo):
    data = b"x" * 5000
    oid = hashlib.sha256(data).hexdigest()
    with server.client() as c:
        batch = c.post("/acme/tiny.git/info/lfs/objects/batch", json={
            "operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": len(data)}]}).json()
        href = batch["objects"][0]["actions"]["upload"]["href"]
        # The PUT goes out with no credentials at all, as the hub client sends it.
        assert httpx.put(href, content=b"y" * 5000).status_code == 400
        assert httpx.put(href.replace("sig=", "sig=0"), content=data).status_code == 403
        verify = batch["objects"][0]["actions"]["verify"]["href"]
        assert c.post(verify, json={"oid": oid, "size": len(data)}).status_code == 404
        assert httpx.put(href, content=data).status_code == 200
        assert c.post(verify, json={"oid": oid, "size": len(data)}).status_code == 200
        again = c.post("/acme/tiny.git/info/lfs/objects/batch", json={
            "operation": "upload", "objects": [{"oid": oid, "size": len(data)}]}).json()
        assert "actions" not in again["objects"][0]


def test_head_answers_from_the_catalog_alone(server, served_repo):
    objects = Path(server.env["WEIGHTVAULT_DATA_DIR"]) / "objects"
    away = objects.with_name("objects.away")
    objects.rename(away)
    try:
        with server.client("read") as c:
            head = c.head("/acme/tiny/resolve/main/model.safetensors")
            assert head.status_code == 200 and int(head.headers["content-length"]) > 0
            r = c.get("/acme/tiny/resolve/main/model.safetensors")  # the bytes really are unreachable now
            assert (r.status_code, r.headers["x-error-code"]) == (500, "StorageError")
    finally:
        away.rename(objects)


def test_private_repos_need_a_token_even_with_anonymous_reads(tmp_path):
    with running(store_env(tmp_path / "store"), "--anonymous-reads") as srv:
        with srv.client() as c:
            assert c.post("/api/repos/create", json={"name": "secret", "organization": "acme",
                                                     "private": True}).status_code == 200
            assert c.post("/api/v1/repos", json={"name": "acme/open"}).status_code == 201
        with srv.client(None) as anon, srv.client("read") as reader:
            r = anon.get("/api/models/acme/secret")
            assert (r.status_code, r.headers["x-error-code"]) == (404, "RepoNotFound")
            assert anon.get("/api/models/acme/open").status_code == 200
            assert [x["name"] for x in anon.get("/api/v1/repos").json()] == ["acme/open"]
            assert reader.get("/api/models/acme/secret").json()["private"] is True
            assert anon.post("/api/v1/uploads").status_code == 401
