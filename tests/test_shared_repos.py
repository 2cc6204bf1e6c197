"""The six real repos through the real CLI, on every backend: SQLite + folder, PostgreSQL, S3."""
from __future__ import annotations

import json

import pytest

from conftest import SHARED_REPOS, run_cli
from helpers import tree_sha256

pytestmark = pytest.mark.slow


def test_ingest_get_verify_all_shared_repos(shared_repos, store_env, tmp_path):
    for name in SHARED_REPOS:
        run_cli("ingest", str(shared_repos / name), "--repo", name, "--json", env=store_env)
    listing = json.loads(run_cli("ls", "--json", env=store_env).stdout)
    assert sorted(r["repo"] for r in listing) == sorted(SHARED_REPOS)
    for name in SHARED_REPOS:
        out = tmp_path / "out" / name
        run_cli("get", name, "--out", str(out), "--json", env=store_env)
        assert tree_sha256(out) == tree_sha256(shared_repos / name), name
    assert json.loads(run_cli("verify", "--json", env=store_env).stdout)["ok"]

    report = json.loads(run_cli("report", "--json", env=store_env).stdout)
    repos = {r["name"]: r for r in report["repos"]}
    base_weights = (shared_repos / SHARED_REPOS[0] / "model.safetensors").stat().st_size
    mirror = repos["mirror-org/all-MiniLM-L6-v2"]
    assert mirror["file_dedup"] >= base_weights  # the exact duplicate adds no weight bytes
    assert mirror["stored_bytes"] < 10_000
    assert report["overall"]["stored_bytes"] < report["overall"]["raw_bytes"]
