"""Tokens people can manage: list, revoke, expiry and repo scopes, checked on two nodes sharing one catalog.

Two ``weightvault serve`` processes share a PostgreSQL catalog and one local
folder; a token revoked or expired through one catalog is refused by both at once.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone

import pytest

from conftest import run_cli
from test_api_rest import make_tokens, running, store_env, upload

pytestmark = pytest.mark.slow


def cli(env, *args) -> str:
    return run_cli(*args, env=env).stdout.strip()


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, postgres_server):
    import uuid

    import psycopg

    db = "wv_" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres_server + "/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {db}")
    postgres_url = f"{postgres_server}/{db}"
    data = tmp_path_factory.mktemp("tokens") / "shared"
    env_a = store_env(data, WEIGHTVAULT_DATABASE_URL=postgres_url, WEIGHTVAULT_ANONYMOUS_READS="1")
    env_b = {**env_a}
    tokens = make_tokens(env_a)
    with running(env_a, "--anonymous-reads", tokens=tokens) as a, \
            running(env_b, "--anonymous-reads", tokens=tokens) as b:
        with a.client() as c:
            for name, private in (("org/open", False), ("org/secret", True), ("other/secret", True)):
                assert c.post("/api/v1/repos", json={"name": name, "private": private}).status_code == 201
                sha = upload(c, name, name.encode() * 1000, "f.bin")
                assert c.post(f"/api/v1/repos/{name}/commits", json={"add": {"f.bin": sha}}).status_code == 200
        yield a, b


def test_list_and_revoke_reach_every_node(nodes):
    a, b = nodes
    secret = cli(a.env, "token", "create", "--scope", "write", "--name", "ci")
    listed = json.loads(cli(a.env, "token", "list", "--json"))
    mine = [t for t in listed if t["name"] == "ci"]
    assert len(mine) == 1 and mine[0]["scope"] == "write" and mine[0]["expires"] == "never"
    assert secret not in json.dumps(listed)
    for node in (a, b):
        with node.client(secret) as c:
            assert c.get("/api/v1/repos/org/secret/files").status_code == 200
    # An LFS upload URL signed by the token, taken before the revocation.
    with a.client(secret) as c:
        data = b"signed before revoke" * 50
        oid = hashlib.sha256(data).hexdigest()
        batch = c.post("/org/open.git/info/lfs/objects/batch",
                       json={"operation": "upload", "objects": [{"oid": oid, "size": len(data)}]}).json()
        href = batch["objects"][0]["actions"]["upload"]["href"]
    assert "revoked" in cli(a.env, "token", "revoke", str(mine[0]["id"]))
    for node in (a, b):
        with node.client(secret) as c:
            r = c.get("/api/v1/repos/org/secret/files")
            assert r.status_code == 401 and r.headers["X-Error-Code"] == "Unauthorized"
    with b.client(None) as c:
        assert c.put(href.replace(a.url, b.url), content=data).status_code == 403
    # Revoking by the secret itself works too.
    other = cli(a.env, "token", "create", "--scope", "read")
    cli(a.env, "token", "revoke", other)
    with b.client(other) as c:
        assert c.get("/api/v1/repos").status_code == 401
    assert run_cli("token", "revoke", "99999", env=a.env, check=False).returncode != 0


def test_expired_tokens_are_refused(nodes, monkeypatch):
    from weightvault.dedup.tokens import create_token
    from weightvault.store import Vault

    a, b = nodes
    monkeypatch.setenv("WEIGHTVAULT_DATABASE_URL", a.env["WEIGHTVAULT_DATABASE_URL"])
    soon = cli(a.env, "token", "create", "--scope", "read", "--expires", "2h")
    vault = Vault.open(a.env["WEIGHTVAULT_DATA_DIR"])
    try:
        with vault.catalog.write_session() as s:
            past = create_token(s, "write", "old", expires_at=datetime.now(timezone.utc) - timedelta(minutes=1))
    finally:
        vault.close()
    for node in (a, b):
        with node.client(soon) as c:
            assert c.get("/api/v1/repos/org/secret/files").status_code == 200
        with node.client(past) as c:
            assert c.get("/api/v1/repos").status_code == 401
            assert c.post("/api/v1/repos", json={"name": "org/new"}).status_code == 401
    listed = {t["name"]: t for t in json.loads(cli(a.env, "token", "list", "--json"))}
    assert listed["old"]["expired"] is True


def test_repo_scopes(nodes):
    a, b = nodes
    org_writer = cli(a.env, "token", "create", "--scope", "write", "--repo", "org/*")
    one_reader = cli(a.env, "token", "create", "--scope", "read", "--repo", "other/secret")
    with a.client(org_writer) as c:
        assert c.get("/api/v1/repos/org/secret/files").status_code == 200
        missing = c.get("/api/v1/repos/nobody/here/files")
        hidden = c.get("/api/v1/repos/other/secret/files")
        assert hidden.status_code == 404 == missing.status_code
        assert hidden.json()["error"].replace("other/secret", "X") == missing.json()["error"].replace("nobody/here", "X")
        assert c.post("/api/v1/repos", json={"name": "org/made"}).status_code == 201
        r = c.post("/api/v1/repos", json={"name": "other/made"})
        assert r.status_code == 403 and r.headers["X-Error-Code"] == "Forbidden"
        r = c.post("/api/repos/create", json={"name": "made2", "organization": "other"})
        assert r.status_code == 403
        r = c.post("/api/models/other/secret/preupload/main", json={"files": []})
        assert r.status_code == 403
        names = {r["name"] for r in c.get("/api/v1/repos").json()}
        assert "org/secret" in names and "other/secret" not in names
    with b.client(one_reader) as c:
        assert c.get("/api/v1/repos/other/secret/files").status_code == 200
        assert c.get("/api/v1/repos/org/secret/files").status_code == 404
        assert c.post("/api/v1/repos", json={"name": "other/x"}).status_code == 403


def test_private_and_missing_repos_look_the_same_and_reports_hide_private_bytes(nodes):
    a, _ = nodes
    with a.client(None) as anon, a.client() as full:
        hidden = anon.get("/api/models/org/secret")
        missing = anon.get("/api/models/org/nothing")
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json()["error"] == missing.json()["error"].replace("org/nothing", "org/secret")
        assert hidden.headers["X-Error-Code"] == missing.headers["X-Error-Code"]
        public = anon.get("/api/v1/report").json()
        everything = full.get("/api/v1/report").json()
    names = {r["name"] for r in public["repos"]}
    assert "org/open" in names and not names & {"org/secret", "other/secret"}
    assert public["overall"]["raw_bytes"] == sum(r["raw_bytes"] for r in public["repos"])
    assert everything["overall"]["raw_bytes"] - public["overall"]["raw_bytes"] == \
        len(b"org/secret") * 1000 + len(b"other/secret") * 1000
    assert not {ev["repo"] for ev in public["timeline"]} & {"org/secret", "other/secret"}


def test_dashboard_sessions_expire(nodes):
    a, _ = nodes
    with a.client(None) as c:
        r = c.post("/ui/login", data={"token": a.read_token, "next": "/"})
    cookie = r.headers["set-cookie"]
    max_age = int(cookie.split("Max-Age=")[1].split(";")[0])
    assert 0 < max_age <= 12 * 3600
