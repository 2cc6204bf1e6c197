"""Nothing left behind: after ``kill -9`` of an ingest or of the server mid-upload, ``verify`` names the
litter, a restart or ``gc`` removes it, and the store reads as before. Owners are told apart by pid and
process start time, so a live process's temp files are never touched."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import free_port, run_cli, wait_port
from test_api_rest import make_tokens, store_env

from weightvault.store import leftovers

pytestmark = pytest.mark.slow


def wait_for(predicate, what: str, proc: subprocess.Popen | None = None) -> None:
    """Poll until ``predicate()``; fails if ``proc`` ends first (no time bound in the assertion itself)."""
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended before {what}")
        time.sleep(0.02)


def files_under(root: Path, pattern: str) -> list[Path]:
    return [p for p in root.rglob(pattern) if p.exists()] if root.exists() else []


def test_owner_tags_tell_live_from_dead():
    mine = leftovers.prefix("body") + "abc"
    assert not leftovers.abandoned(mine, mtime=0)  # our own file: never, however old
    dead = subprocess.run([sys.executable, "-c", "from weightvault.store import leftovers; "
                           "print(leftovers.prefix('body'))"], capture_output=True, text=True).stdout.strip()
    assert leftovers.abandoned(dead + "xyz", mtime=time.time())  # its writer exited: at once
    assert not leftovers.abandoned("body-oldstyle", mtime=time.time())  # untagged: by age only
    assert leftovers.abandoned("body-oldstyle", mtime=time.time() - 2 * leftovers.STALE_AFTER)


@pytest.mark.parametrize("point", ["spooling", "shipping"])
def test_ingest_killed_mid_way(tmp_path, point):
    data = tmp_path / "store"
    env = store_env(data, WEIGHTVAULT_PACK_BYTES=str(1 << 20))
    rng = np.random.default_rng(1)
    first, src = tmp_path / "first", tmp_path / "src"
    first.mkdir()
    src.mkdir()
    (first / "part2.bin").write_bytes(rng.integers(0, 255, 3 << 20, dtype=np.uint8).tobytes())
    run_cli("ingest", str(first), "--repo", "org/first", env=env)  # a repo stored before the crash
    for i in range(3):
        (src / f"part{i}.bin").write_bytes(rng.integers(0, 255, 24 << 20, dtype=np.uint8).tobytes())
    proc = subprocess.Popen([sys.executable, "-m", "weightvault.api.cli", "ingest", str(src), "--repo", "org/killed"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    objects = data / "objects" / "packs"
    before = len(files_under(objects, "*"))
    if point == "spooling":
        wait_for(lambda: files_under(data / "spool", "*") and len(files_under(objects, "*")) > before, "spooling", proc)
    else:
        wait_for(lambda: len(files_under(objects, "*")) > before + 5, "shipping packs", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # Leave a half-written object as a killed upload to the folder backend would.
    dead = subprocess.run([sys.executable, "-c", "from weightvault.store import leftovers; print(leftovers.prefix('tmp'))"],
                          capture_output=True, text=True).stdout.strip()
    (objects / f".{dead}half").write_bytes(b"x" * 1000)

    report = run_cli("verify", "--json", env=env)
    import json
    found = json.loads(report.stdout)
    assert found["ok"] and found["leftovers"], found
    assert any("dead process" in x for x in found["leftovers"])
    gc = json.loads(run_cli("gc", "--json", env=env).stdout)
    assert gc["leftovers_deleted"] >= 1
    assert gc["pending_packs"] >= 1  # the killed ingest's unclaimed packs wait out the grace period
    plain = run_cli("gc", env=env).stdout
    assert "grace period" in plain and "--now" in plain
    gc = json.loads(run_cli("gc", "--now", "--json", env=env).stdout)
    assert gc["packs_deleted"] >= 1 and gc["pending_packs"] == 0
    after = json.loads(run_cli("verify", "--json", env=env).stdout)
    assert after["ok"] and after["leftovers"] == [], after
    assert not files_under(data / "spool", "*") and not files_under(objects, ".tmp-*")
    run_cli("get", "org/first", "--out", str(tmp_path / "out"), env=env)  # the store reads as before
    assert (tmp_path / "out" / "part2.bin").read_bytes() == (first / "part2.bin").read_bytes()


def test_server_killed_mid_upload_is_swept_at_restart(tmp_path):
    data = tmp_path / "store"
    env = store_env(data)
    token, _ = make_tokens(env)
    port = free_port()
    cmd = [sys.executable, "-m", "weightvault.api.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    import httpx

    upload_id = httpx.post(f"http://127.0.0.1:{port}/api/v1/uploads",
                           headers={"Authorization": f"Bearer {token}"}).json()["upload_id"]
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall((f"PUT /api/v1/uploads/{upload_id}/parts/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                  f"Content-Length: {64 << 20}\r\n\r\n").encode() + b"z" * (8 << 20))
    bodies = data / "tmp" / "api"
    wait_for(lambda: any(p.stat().st_size > 0 for p in files_under(bodies, "body-*")), "the body spooling", server)
    server.send_signal(signal.SIGKILL)
    server.wait()
    sock.close()
    left = files_under(bodies, "body-*")
    assert left
    assert json_of(run_cli("verify", "--json", env=env))["leftovers"]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        assert not any(p.exists() for p in left)  # removed by the restart, before it served anything
    finally:
        server.terminate()
        server.wait(20)


def json_of(proc) -> dict:
    import json
    return json.loads(proc.stdout)


def test_rm_then_gc_explains_the_grace_period(tmp_path):
    env = store_env(tmp_path / "store")
    src = tmp_path / "src"
    src.mkdir()
    (src / "w.bin").write_bytes(os.urandom(200_000))
    run_cli("ingest", str(src), "--repo", "org/gone", env=env)
    run_cli("rm", "org/gone", env=env)
    out = run_cli("gc", env=env).stdout
    assert "grace period" in out and "--now" in out
    assert json_of(run_cli("gc", "--now", "--json", env=env))["bytes_freed"] > 0
