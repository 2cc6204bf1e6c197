"""Several processes writing at once: the same content lands once and the catalog stays sound."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from conftest import run_cli
from helpers import make_repo, small_model, tree_sha256


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_concurrent_ingest_of_same_content(tmp_path, backend, request, monkeypatch):
    env = {"WEIGHTVAULT_DATA_DIR": str(tmp_path / "store")}
    if backend == "postgres":
        env["WEIGHTVAULT_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    else:
        monkeypatch.delenv("WEIGHTVAULT_DATABASE_URL", raising=False)
    monkeypatch.delenv("WEIGHTVAULT_S3_BUCKET", raising=False)
    src = make_repo(tmp_path / "src", {f"m{i}.safetensors": small_model(i) for i in range(4)} | {"c.json": b"{}"})
    run_cli("db", "upgrade", env=env)
    procs = [subprocess.Popen([sys.executable, "-m", "weightvault.api.cli", "ingest", str(src), "--repo", f"org/r{i}"],
                              env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    from weightvault.store import Vault
    from weightvault.store.models import File, Object

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    vault = Vault.open(env["WEIGHTVAULT_DATA_DIR"])
    with vault.catalog.read_session() as s:
        assert s.scalar(select(func.count(File.id))) == 5
        assert s.scalar(select(func.count(Object.id))) == 4  # one weight per model (biases and json are inline)
    vault.close()
    for i in range(4):
        run_cli("get", f"org/r{i}", "--out", str(tmp_path / f"out{i}"), env=env)
        assert tree_sha256(tmp_path / f"out{i}") == tree_sha256(src)
    assert json.loads(run_cli("verify", "--json", env=env).stdout)["ok"]
