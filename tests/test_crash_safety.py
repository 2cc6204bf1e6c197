"""SIGKILL an ingest at several points: the store must pass verify and hold the repo whole or not at all."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import run_cli
from helpers import make_repo, small_model, tree_sha256

# Runs the real ingest in a child that kills itself with SIGKILL on the Nth call of a
# chosen function: before or after a pack is shipped, inside the catalog transaction,
# or after it committed. The hook lives here, in the test, not in the product.
CHILD = textwrap.dedent("""
    import os, signal, sys
    from weightvault.store import packs, db
    from weightvault.dedup import commits
    where, nth = sys.argv[1], int(sys.argv[2])
    calls = [0]
    def killer(fn):
        def wrapped(*a, **k):
            calls[0] += 1
            if calls[0] >= nth and where.endswith("before"):
                os.kill(os.getpid(), signal.SIGKILL)
            out = fn(*a, **k)
            if calls[0] >= nth and where.endswith("after"):
                os.kill(os.getpid(), signal.SIGKILL)
            return out
        return wrapped
    if where.startswith("ship"):
        packs.PackWriter._ship = killer(packs.PackWriter._ship)
    elif where.startswith("commit"):  # inside the catalog transaction, before it commits
        import weightvault.dedup.ingest as ingest
        ingest.write_commit = killer(commits.write_commit)
    elif where.startswith("landed"):  # once the transaction has committed
        import weightvault.dedup.ingest as ingest
        ingest.retrying = killer(commits.retrying)
    from weightvault.api.cli import main
    sys.argv = ["weightvault"] + sys.argv[3:]
    main()
""")


def big_repo(root):
    files = {f"model-{i}.safetensors": small_model(i) for i in range(6)}
    files["config.json"] = b'{"a": 1}'
    return make_repo(root, files)


@pytest.mark.parametrize("where,nth", [("ship-before", 1), ("ship-after", 1), ("ship-after", 3),
                                        ("commit-before", 1), ("commit-after", 1), ("landed-after", 1)])
def test_sigkill_leaves_store_consistent(tmp_path, where, nth, monkeypatch):
    env = {"WEIGHTVAULT_DATA_DIR": str(tmp_path / "store"), "WEIGHTVAULT_PACK_BYTES": "40000"}
    for k in ("WEIGHTVAULT_DATABASE_URL", "WEIGHTVAULT_S3_BUCKET"):
        monkeypatch.delenv(k, raising=False)
    src = big_repo(tmp_path / "src")
    run_cli("ingest", str(make_repo(tmp_path / "first", {"a.txt": b"first repo"})), "--repo", "org/first", env=env)
    proc = subprocess.run([sys.executable, "-c", CHILD, where, str(nth), "ingest", str(src), "--repo", "org/crash"],
                          env={**os.environ, **env}, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert json.loads(run_cli("verify", "--json", env=env).stdout)["ok"]
    repos = {r["repo"] for r in json.loads(run_cli("ls", "--json", env=env).stdout)}
    if "org/crash" in repos:  # killed after the commit: the repo must be whole
        run_cli("get", "org/crash", "--out", str(tmp_path / "out"), env=env)
        assert tree_sha256(tmp_path / "out") == tree_sha256(src)
    else:
        assert where != "landed-after"
    if where.startswith("commit"):
        assert "org/crash" not in repos
    # Whatever the crash left behind is garbage that gc can take, and the store stays sound.
    run_cli("gc", "--grace-minutes", "0", env=env)
    after = json.loads(run_cli("verify", "--json", env=env).stdout)
    assert after["ok"] and after["leftovers"] == [], after  # no spool, temp object or orphan pack survives gc
    run_cli("ingest", str(src), "--repo", "org/crash", env=env)
    run_cli("get", "org/crash", "--out", str(tmp_path / "again"), env=env)
    assert tree_sha256(tmp_path / "again") == tree_sha256(src)
