"""SIGKILL during ingest, record writing, commit, gc compaction, rebase and an ingest's re-basing;
then drop the catalog and recover it from the object store alone: verify passes before and after,
every branch comes back at the same commit, and every file bit-exact."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import run_cli
from helpers import make_repo, small_model, tree_sha256

# As in test_crash_safety: the child kills itself on the Nth call of a chosen function.
CHILD = textwrap.dedent("""
    import os, signal, sys
    from weightvault.store import packs, journal
    from weightvault.dedup import commits
    where, nth = sys.argv[1], int(sys.argv[2])
    calls = [0]
    def killer(fn):
        def wrapped(*a, **k):
            calls[0] += 1
            out = fn(*a, **k)
            if calls[0] >= nth:
                os.kill(os.getpid(), signal.SIGKILL)
            return out
        return wrapped
    if where == "ship":            # a pack uploaded, more to come, nothing committed
        packs.PackWriter._ship = killer(packs.PackWriter._ship)
    elif where == "record":        # the record uploaded inside the transaction, before it commits
        journal.Journal.write = killer(journal.Journal.write)
    elif where == "landed":        # the transaction committed
        import weightvault.dedup.ingest as ingest
        ingest.retrying = killer(commits.retrying)
    elif where == "switch":        # re-basing after an ingest: new frames shipped, the switch not run
        from weightvault.dedup import rebase
        def before(fn):
            def wrapped(*a, **k):
                os.kill(os.getpid(), signal.SIGKILL)
            return wrapped
        rebase.Rebaser._commit = before(rebase.Rebaser._commit)
    from weightvault.api.cli import main
    sys.argv = ["weightvault"] + sys.argv[3:]
    main()
""")


@pytest.mark.parametrize("where,nth,command", [
    ("ship", 2, "ingest"), ("record", 1, "ingest"), ("landed", 1, "ingest"), ("ship", 1, "gc"),
    ("record", 1, "rebase"),
    # the ingest of a repo that predicts an earlier member better re-bases it: killed before the
    # switch, and with the switch's record uploaded but not committed (the ingest's own is the 1st)
    ("switch", 1, "ingest-rebase"), ("record", 2, "ingest-rebase"),
])
def test_kill_then_recover(tmp_path, monkeypatch, where, nth, command):
    env = {"WEIGHTVAULT_DATA_DIR": str(tmp_path / "store"), "WEIGHTVAULT_PACK_BYTES": "40000"}
    for k in ("WEIGHTVAULT_DATABASE_URL", "WEIGHTVAULT_S3_BUCKET"):
        monkeypatch.delenv(k, raising=False)
    first = make_repo(tmp_path / "first", {f"m{i}.safetensors": small_model(10 + i) for i in range(3)})
    run_cli("ingest", str(first), "--repo", "org/first", env=env)
    src = make_repo(tmp_path / "src", {f"m{i}.safetensors": small_model(i) for i in range(4)} | {"c.json": b"{}"})
    sources = {"org/first": first, "org/crash": src}
    if command == "ingest":
        args = ["ingest", str(src), "--repo", "org/crash"]
    elif command == "gc":  # compacting what a removed repo left sparse
        run_cli("ingest", str(src), "--repo", "org/crash", env=env)
        run_cli("rm", "org/first", env=env)
        args = ["gc", "--grace-minutes", "0", "--compact-below", "1"]
    else:  # re-coding an earlier BF16 cast against the FP32 fine-tune that arrived after it
        from test_rebase import family, model

        base, tuned = family()
        for name, tensors, dtype in (("org/base", base, "F32"), ("org/tuned-bf16", tuned, "BF16"),
                                     ("org/tuned", tuned, "F32")):
            sources[name] = make_repo(tmp_path / name, {"model.safetensors": model(tensors, dtype)})
            if name != "org/tuned" or command == "rebase":
                run_cli("ingest", str(sources[name]), "--repo", name, "--no-rebase", env=env)
        args = ["rebase"] if command == "rebase" else ["ingest", str(sources["org/tuned"]), "--repo", "org/tuned"]
    proc = subprocess.run([sys.executable, "-c", CHILD, where, str(nth), *args],
                          env={**os.environ, **env}, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert json.loads(run_cli("verify", "--json", env=env).stdout)["ok"]
    before = {r["repo"] for r in json.loads(run_cli("ls", "--json", env=env).stdout)}
    listing_before = run_cli("ls", "--json", env=env).stdout

    catalog = Path(env["WEIGHTVAULT_DATA_DIR"]) / "catalog.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{catalog}{suffix}").unlink(missing_ok=True)
    report = json.loads(run_cli("recover", "--json", env=env).stdout)
    assert report["ok"], report["problems"]
    after = {r["repo"] for r in json.loads(run_cli("ls", "--json", env=env).stdout)}
    # A record is durable before its transaction commits: an ingest killed between the two comes
    # back whole (its frames were durable first); anything else comes back exactly as it was.
    assert after == before | ({"org/crash"} if where == "record" and command == "ingest" else set())
    if not (where == "record" and command == "ingest"):
        assert run_cli("ls", "--json", env=env).stdout == listing_before
    if command == "ingest-rebase":  # the switch came back whole (its record was durable) or not at all
        members = json.loads(run_cli("rebase", "--json", env=env).stdout)["members"]
        assert [(m["repo"], m["base"], m["tensors"]) for m in members] == \
            ([] if where == "record" else [("org/tuned-bf16", "org/tuned", 2)])
    for repo in after:
        out = tmp_path / "out" / repo
        run_cli("get", repo, "--out", str(out), env=env)
        assert tree_sha256(out) == tree_sha256(sources[repo])
    assert json.loads(run_cli("verify", "--deep", "--json", env=env).stdout)["ok"]
