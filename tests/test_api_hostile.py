"""Hostile and careless requests against a live ``weightvault serve``: bounded before auth, 4xx never 5xx.

The server runs in a subprocess on 127.0.0.1 (SQLite, and PostgreSQL where the
catalog's limits differ); its memory is read from ``/proc/<pid>/status``.
"""
from __future__ import annotations

import base64
import hashlib
import json
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from conftest import free_port, wait_port
from helpers import small_model
from test_api_rest import Server, make_tokens, store_env, upload

pytestmark = pytest.mark.slow

MiB = 1 << 20


@contextmanager
def serving(env: dict[str, str]) -> Iterator[tuple[Server, subprocess.Popen]]:
    """``weightvault serve`` with ``env``; yields the Server and its process (for /proc)."""
    tokens = make_tokens(env)
    port = free_port()
    log = open(Path(env["WEIGHTVAULT_DATA_DIR"]).parent / f"serve-{port}.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "weightvault.api.cli", "serve", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port)
        yield Server(f"http://127.0.0.1:{port}", env, *tokens), proc
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[tuple[Server, subprocess.Popen]]:
    env = store_env(tmp_path_factory.mktemp("hostile") / "store")
    with serving(env) as pair:
        with pair[0].client() as c:
            assert c.post("/api/v1/repos", json={"name": "org/m"}).status_code == 201
            sha = upload(c, "org/m", b"hello world\n" * 100, "a.txt")
            assert c.post("/api/v1/repos/org/m/commits", json={"add": {"a.txt": sha}}).status_code == 200
        yield pair


@pytest.fixture(scope="module")
def server(live) -> Server:
    return live[0]


def peak_rss(proc: subprocess.Popen) -> int:
    """The process's high-water resident memory (VmHWM) in bytes."""
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def raw_request(url: str, head: str, body_bytes: int, chunk: int = MiB) -> tuple[int, dict[str, str]]:
    """Send ``head`` then up to ``body_bytes`` of JSON-looking bytes (chunked), stopping when the server
    stops reading; returns the status and headers of the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.settimeout(5)
        sock.sendall(head.encode())
        piece = b"[" + b"1," * (chunk // 2 - 1) + b"1"
        sent = 0
        try:
            while sent < body_bytes:
                sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
                sent += len(piece)
            sock.sendall(b"0\r\n\r\n")
        except (socket.timeout, BrokenPipeError, ConnectionResetError):
            pass  # the server answered without reading the rest, as it should
        sock.settimeout(30)
        data = b""
        while b"\r\n\r\n" not in data:
            got = sock.recv(65536)
            if not got:
                break
            data += got
    status_line, *lines = data.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    return int(status_line.split()[1]), {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}


# -- limits --------------------------------------------------------------------------------

def test_300_mib_bodies_are_refused_with_flat_memory(live):
    server, proc = live
    before = peak_rss(proc)
    length_head = ("POST /api/v1/repos HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {300 * MiB}\r\n\r\n")
    chunked = "POST /api/v1/repos HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
    # Declared too large: refused before the app runs.
    status, headers = raw_request(server.url, length_head, 300 * MiB)
    assert status == 413 and headers["x-error-code"] == "PayloadTooLarge"
    # Anonymous, no length: the token is checked from the headers, the body never read.
    status, headers = raw_request(server.url, chunked + "\r\n", 300 * MiB)
    assert status == 401 and headers["x-error-code"] == "Unauthorized"
    # With a valid token and no length: cut off at the JSON limit while streaming.
    status, headers = raw_request(server.url, chunked + f"Authorization: Bearer {server.token}\r\n\r\n", 300 * MiB)
    assert status == 413
    growth = peak_rss(proc) - before
    # Bound: 64 MiB (the JSON limit is 4 MiB; parsing 300 MiB of JSON cost ~1.9 GB before).
    assert growth < 64 * MiB, f"server peak memory grew by {growth / MiB:.0f} MiB"
    with server.client() as c:  # and the server still answers
        assert c.get("/api/v1/repos").status_code == 200


def test_validate_yaml_needs_a_token(server):
    body = {"content": "---\nlicense: mit\n---\n# card"}
    with server.client(None) as anon:
        r = anon.post("/api/validate-yaml", json=body)
        assert r.status_code == 401 and r.headers["X-Error-Code"] == "Unauthorized"
    with server.client("read") as c:
        assert c.post("/api/validate-yaml", json=body).status_code == 200
        r = c.post("/api/validate-yaml", json={"content": "---\n" + "[" * 50_000 + "\n---\n"})
        assert r.status_code == 400 and r.json()["errors"]


# -- one error path --------------------------------------------------------------------------

HUB_BODY_ROUTES = [
    ("POST", "/api/repos/create"),
    ("DELETE", "/api/repos/delete"),
    ("POST", "/api/validate-yaml"),
    ("POST", "/api/models/org/m/preupload/main"),
    ("POST", "/api/models/org/m/branch/dev"),
    ("POST", "/org/m.git/info/lfs/objects/batch"),
    ("POST", "/api/models/org/m/paths-info/main"),
    ("POST", "/api/models/org/m/commit/main"),
    ("POST", "/api/v1/repos"),
    ("POST", "/api/v1/repos/org/m/commits"),
]
MALFORMED = [b"not json", b"[]", b"[1, 2]", b'"text"', b"42", b'{"name": 5, "files": {"a": 1}, "objects": 7, '
             b'"paths": "x", "add": [], "startingPoint": [], "operation": {}, "content": 1}',
             b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe\x00garbage"]


@pytest.mark.parametrize("method, path", HUB_BODY_ROUTES)
def test_malformed_json_is_a_4xx_on_every_write_route(server, method, path):
    with server.client() as c:
        for body in MALFORMED:
            r = c.request(method, path, content=body, headers={"Content-Type": "application/json"})
            assert 400 <= r.status_code < 500, (path, body[:40], r.status_code, r.text[:300])
            assert r.headers.get("X-Error-Code"), (path, body[:40], r.text[:200])
        # Wrong types inside an object: 4xx where the route reads those fields, never a 5xx.
        r = c.request(method, path, content=b'{"files": [{"path": 1, "size": "x"}]}',
                      headers={"Content-Type": "application/json"})
        assert r.status_code < 500, (path, r.text[:300])


def test_commit_lines_of_the_wrong_types_are_400(server):
    header = {"key": "header", "value": {"summary": "x"}}
    bad_lines = [{"key": "header", "value": {"summary": ["not", "text"]}},
                 {"key": "file", "value": {"path": 5, "content": "aGk="}},
                 {"key": "file", "value": {"path": "a.txt", "content": 12}},
                 {"key": "lfsFile", "value": {"path": "b.bin", "oid": "\x00" * 64}},
                 {"key": "header", "value": {"summary": "x", "parentCommit": {"a": 1}}}]
    with server.client() as c:
        for line in bad_lines:
            lines = [header, line] if line["key"] != "header" else [line]
            body = "\n".join(json.dumps(x) for x in lines)
            r = c.post("/api/models/org/m/commit/main", content=body, headers={"Content-Type": "application/x-ndjson"})
            assert r.status_code == 400 and r.headers["X-Error-Code"], (line, r.text)


@pytest.mark.parametrize("path", ["/org/m/resolve/main/中文.txt", "/org/m/resolve/main/caf%C3%A9%0A.txt",
                                  "/api/models/%E4%B8%AD/%E6%96%87", "/%E4%B8%AD/x/resolve/main/a.txt",
                                  "/api/v1/repos/org/m/files/%F0%9F%98%80", "/api/models/org/m/tree/main/%E4%B8%AD",
                                  "/api/models/org%00/m", "/api/models/org/m/revision/ma%00in"])
def test_names_outside_latin1_get_a_clean_404(server, path):
    with server.client() as c:
        r = c.get(path)
    assert r.status_code in (400, 404), (path, r.status_code, r.text)
    r.headers["X-Error-Message"].encode("ascii")
    assert r.headers["X-Error-Code"]


def test_unknown_routes_and_bad_query_parameters_carry_error_codes(server):
    with server.client() as c:
        r = c.get("/no/such/route/at/all/here")
        assert r.status_code == 404 and r.headers["X-Error-Code"] == "NotFound"
        r = c.put("/api/v1/uploads/" + "a" * 32 + "/parts/notanumber", content=b"x")
        assert r.status_code == 422 and r.headers["X-Error-Code"] == "ValidationError"


def test_range_with_a_5000_digit_number(server):
    huge = "9" * 5000
    with server.client() as c:
        r = c.get("/org/m/resolve/main/a.txt", headers={"Range": f"bytes={huge}-"})
        assert r.status_code == 416
        r = c.get("/org/m/resolve/main/a.txt", headers={"Range": f"bytes=0-{huge}"})
        assert r.status_code == 206 and len(r.content) == 1200
        r = c.get("/org/m/resolve/main/a.txt", headers={"Range": f"bytes=-{huge}"})
        assert r.status_code == 206 and len(r.content) == 1200


def test_conditional_downloads(server):
    with server.client() as c:
        full = c.get("/org/m/resolve/main/a.txt")
        etag = full.headers["ETag"]
        r = c.get("/org/m/resolve/main/a.txt", headers={"Range": "bytes=100-", "If-Range": etag})
        assert r.status_code == 206 and r.content == full.content[100:]
        r = c.get("/org/m/resolve/main/a.txt", headers={"Range": "bytes=100-", "If-Range": '"stale"'})
        assert r.status_code == 200 and r.content == full.content  # never a splice of two versions
        r = c.get("/org/m/resolve/main/a.txt", headers={"If-None-Match": etag})
        assert r.status_code == 304 and r.headers["ETag"] == etag and not r.content
        r = c.get("/org/m/resolve/main/a.txt", headers={"If-None-Match": '"other"'})
        assert r.status_code == 200
        r = c.get("/org/m/resolve/main/a.txt", headers={"If-Match": '"other"'})
        assert r.status_code == 412


def test_part_for_an_upload_never_started_is_404(server):
    with server.client() as c:
        r = c.put("/api/v1/uploads/" + "0" * 32 + "/parts/1", content=b"x")
        assert r.status_code == 404 and r.headers["X-Error-Code"] == "UploadNotFound"
        r = c.post("/api/v1/uploads/" + "0" * 32 + "/complete", json={"repo": "org/m"})
        assert r.status_code == 404


def test_non_conforming_safetensors_are_stored_opaque(server):
    deep = b"[" * 100_000 + b"]" * 100_000
    bad = len(deep).to_bytes(8, "little") + deep + b"tail"
    with server.client() as c:
        upload_id = c.post("/api/v1/uploads").json()["upload_id"]
        assert c.put(f"/api/v1/uploads/{upload_id}/parts/1", content=bad).status_code == 200
        r = c.post(f"/api/v1/uploads/{upload_id}/complete", json={"repo": "org/m", "path": "bad.safetensors"})
        assert r.status_code == 201, r.text
        assert "opaque" in r.json()["warnings"][0]
        sha = r.json()["sha256"]
        r = c.post("/api/v1/repos/org/m/commits", json={"add": {"bad.safetensors": sha}})
        assert r.status_code == 200, r.text
        assert c.get("/org/m/resolve/main/bad.safetensors").content == bad


# -- paths refused at the door, on SQLite and PostgreSQL --------------------------------------

BAD_PATHS = ["new\nline.txt", "tab\there", "d/" + "x" * 256, "/".join(["p" * 200] * 6), "../up.txt", "a/./b"]


@pytest.fixture(params=["sqlite", "postgres"], scope="module")
def any_catalog(request, tmp_path_factory) -> Iterator[Server]:
    extra = {}
    if request.param == "postgres":
        import uuid

        import psycopg

        pg = request.getfixturevalue("postgres_server")
        name = "wv_" + uuid.uuid4().hex[:12]
        with psycopg.connect(pg + "/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        extra["WEIGHTVAULT_DATABASE_URL"] = f"{pg}/{name}"
    env = store_env(tmp_path_factory.mktemp(f"paths-{request.param}") / "store", **extra)
    with serving(env) as (server, _):
        with server.client() as c:
            assert c.post("/api/v1/repos", json={"name": "org/p"}).status_code == 201
        yield server


def ndjson_commit(c: httpx.Client, summary: str, files: dict[str, bytes]) -> httpx.Response:
    lines = [{"key": "header", "value": {"summary": summary}}]
    lines += [{"key": "file", "value": {"path": p, "content": base64.b64encode(d).decode(), "encoding": "base64"}}
              for p, d in files.items()]
    return c.post("/api/models/org/p/commit/main", content="\n".join(json.dumps(x) for x in lines),
                  headers={"Content-Type": "application/x-ndjson"})


@pytest.mark.parametrize("path", BAD_PATHS)
def test_paths_that_cannot_be_restored_are_refused(any_catalog, path):
    with any_catalog.client() as c:
        r = ndjson_commit(c, "bad path", {path: b"x"})
        assert r.status_code == 400, r.text
        sha = upload(c, "org/p", b"y" * 10, "f.bin")
        r = c.post("/api/v1/repos/org/p/commits", json={"add": {path: sha}})
        assert r.status_code == 400 and r.headers["X-Error-Code"], r.text


def test_a_file_and_a_folder_of_one_name_are_refused(any_catalog):
    with any_catalog.client() as c:
        r = ndjson_commit(c, "clash", {"a": b"1", "a/b": b"2"})
        assert r.status_code == 400 and "'a' is a file" in r.json()["error"]
        assert ndjson_commit(c, "ok", {"q": b"1"}).status_code == 200
        r = ndjson_commit(c, "clash with the tree", {"q/r": b"2"})
        assert r.status_code == 400


def test_long_paths_and_nul_in_messages(any_catalog):
    with any_catalog.client() as c:
        r = ndjson_commit(c, "long", {"x" * 200 + "/" + "y" * 200 + "/" + "z" * 250 + "/" + "w" * 250 + "/" + "v" * 130: b"1"})
        assert r.status_code == 400 and "1024 bytes" in r.json()["error"]
        r = ndjson_commit(c, "nul\x00here", {"n.txt": b"1"})
        assert r.status_code == 400 and "NUL" in r.json()["error"]
        r = c.get("/api/models/org/p/paths-info/main", params={"paths": "a\x00b"})
        assert r.status_code < 500
        r = c.post("/api/models/org/p/paths-info/main", data={"paths": ["a\x00b", "z" * 2000]})
        assert r.status_code == 200 and r.json() == []
