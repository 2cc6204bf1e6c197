"""SIGKILL the server at each step of a commit that names Xet-uploaded files: the repo is as it was or whole,
the store verifies, the same upload then commits, and what the crash left behind is what gc sweeps."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from conftest import free_port, run_cli, wait_port
from test_api_rest import make_tokens, running, store_env
import xet_build

pytestmark = pytest.mark.slow

# A server that kills itself with SIGKILL before or after a chosen step of the commit; the hook lives
# here, in the test, not in the product.
CHILD = textwrap.dedent("""
    import os, signal, sys
    from weightvault.api import hub_write, xet
    from weightvault.dedup.xet import staging
    where = sys.argv[1]
    def killer(fn, when):
        def wrapped(*a, **k):
            if when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            out = fn(*a, **k)
            os.kill(os.getpid(), signal.SIGKILL)
        return wrapped
    step, when = where.rsplit("-", 1)
    if step == "store":  # the rebuilt file lands in the store
        xet.store_file = killer(xet.store_file, when)
    elif step == "index":  # the dropped xorbs' chunks are pointed at the stored file
        staging.index_file = killer(staging.index_file, when)
    elif step == "commit":  # the commit lands; staging is dropped after it
        hub_write.commit_changes = killer(hub_write.commit_changes, when)
    from weightvault.api.cli import main
    sys.argv = ["weightvault"] + sys.argv[2:]
    main()
""")


def _commit(url: str, token: str, path: str, oid: str) -> httpx.Response:
    lines = [{"key": "header", "value": {"summary": "xet"}},
             {"key": "lfsFile", "value": {"path": path, "algo": "sha256", "oid": oid}}]
    return httpx.post(f"{url}/api/models/acme/crash/commit/main", content="\n".join(json.dumps(x) for x in lines),
                      headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}, timeout=60)


@pytest.mark.parametrize("where", ["store-after", "index-after", "commit-before", "commit-after"])
def test_sigkill_during_a_xet_commit(tmp_path, where):
    env = store_env(tmp_path / "store")
    tokens = make_tokens(env)
    chunks = [os.urandom(50_000), struct.pack("<9000f", *range(9000))]
    data = b"".join(chunks)
    name, body = xet_build.xorb(chunks, [1, 2])
    shard = xet_build.shard([(data, [(name, chunks, 0, 2)])], [(name, chunks)])
    port = free_port()
    child = subprocess.Popen([sys.executable, "-c", CHILD, where, "serve", "--host", "127.0.0.1", "--port", str(port)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        url = f"http://127.0.0.1:{port}"
        auth = {"Authorization": f"Bearer {tokens[0]}"}
        assert httpx.post(f"{url}/api/repos/create", json={"name": "crash", "organization": "acme"},
                          headers=auth).status_code == 200
        head = httpx.get(f"{url}/api/models/acme/crash/revision/main", headers=auth).json()["sha"]
        xet_token = httpx.get(f"{url}/api/models/acme/crash/xet-write-token/main", headers=auth).json()["accessToken"]
        cas = {"Authorization": f"Bearer {xet_token}"}
        assert httpx.post(f"{url}/v1/xorbs/default/{name}", content=body, headers=cas).status_code == 200
        assert httpx.post(f"{url}/v1/shards", content=shard, headers=cas).status_code == 200
        with pytest.raises(httpx.TransportError):
            _commit(url, tokens[0], "w.bin", hashlib.sha256(data).hexdigest())
        assert child.wait(30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    assert json.loads(run_cli("verify", "--json", env=env).stdout)["ok"]
    with running(env, tokens=tokens) as srv, srv.client() as c:
        now = c.get("/api/models/acme/crash/revision/main").json()
        landed = now["sha"] != head
        assert landed == (where == "commit-after")
        if landed:  # whole
            assert c.get("/acme/crash/resolve/main/w.bin").content == data
        # The client retries its commit: it lands whatever step the crash interrupted.
        assert _commit(srv.url, srv.token, "w.bin", hashlib.sha256(data).hexdigest()).status_code == 200
        assert c.get("/acme/crash/resolve/main/w.bin").content == data
    assert json.loads(run_cli("verify", "--json", env=env).stdout)["ok"]
    # Left behind at worst: a staged xorb no stored file indexes, which gc sweeps once a day old.
    staged = [p for p in (Path(env["WEIGHTVAULT_DATA_DIR"]) / "objects" / "xet" / "staging").rglob("*") if p.is_file()]
    assert not [p for p in staged if "/files/" in p.as_posix()]
    old = 0
    for p in staged:
        os.utime(p, (old, old))
    run_cli("gc", "--grace-minutes", "0", env=env)
    assert not [p for p in staged if p.exists()]
