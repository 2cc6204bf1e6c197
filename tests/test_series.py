"""A real training checkpoint series through the store: coded against the previous checkpoint,
restored bit-exactly (weights, optimizer state, optimizer.pt, trainer_state.json), and a corrupt
checkpoint named by verify without taking down the checkpoints that don't depend on it."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from conftest import run_cli
from helpers import tree_sha256

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def series(checkpoint_series):
    return checkpoint_series


def test_series_round_trip_and_corruption(series, tmp_path, monkeypatch):
    env = {"WEIGHTVAULT_DATA_DIR": str(tmp_path / "store")}
    for k in ("WEIGHTVAULT_DATABASE_URL", "WEIGHTVAULT_S3_BUCKET"):
        monkeypatch.delenv(k, raising=False)
    run_cli("ingest", str(series), "--repo", "lab/run", "--keyframe-every", "3", env=env)
    run_cli("get", "lab/run", "--out", str(tmp_path / "out"), env=env)
    assert tree_sha256(tmp_path / "out") == tree_sha256(series)

    report = json.loads(run_cli("report", "--json", env=env).stdout)
    assert report["repos"][0]["checkpoint_delta"] > 0

    # Corrupt one byte of a frame of checkpoint-20's weights (the 2nd checkpoint: it has a base,
    # and checkpoint-30 depends on it; checkpoint-40 is the next keyframe).
    monkeypatch.setenv("WEIGHTVAULT_DATA_DIR", env["WEIGHTVAULT_DATA_DIR"])
    from weightvault.store import Vault
    from weightvault.store.models import Frame, Object, Pack, Segment, TreeEntry

    vault = Vault.open(env["WEIGHTVAULT_DATA_DIR"])
    with vault.catalog.read_session() as s:
        frame = s.execute(
            select(Pack.name, Frame.pack_offset, Frame.size).join(Frame, Frame.pack_id == Pack.id)
            .join(Object, Object.id == Frame.object_id).join(Segment, Segment.object_id == Object.id)
            .join(TreeEntry, TreeEntry.file_id == Segment.file_id)
            .where(TreeEntry.path == "checkpoint-20/model.safetensors", Object.mechanism == "checkpoint_delta")
            .order_by(Object.raw_size.desc()).limit(1)).one()
    vault.close()
    pack = tmp_path / "store" / "objects" / frame.name
    data = bytearray(pack.read_bytes())
    data[frame.pack_offset + frame.size // 2] ^= 0x40
    pack.write_bytes(bytes(data))

    result = run_cli("verify", "--json", env=env, check=False)
    assert result.returncode == 1
    problems = json.loads(result.stdout)["problems"]
    named = " ".join(problems)
    assert "checkpoint-20/model.safetensors" in named
    assert "checkpoint-10/" not in named and "checkpoint-40/" not in named and "checkpoint-50/" not in named


def test_previous_links_separately_ingested_checkpoints(tmp_path, monkeypatch):
    import numpy as np

    from helpers import make_repo, safetensors_bytes

    env = {"WEIGHTVAULT_DATA_DIR": str(tmp_path / "store")}
    for k in ("WEIGHTVAULT_DATABASE_URL", "WEIGHTVAULT_S3_BUCKET"):
        monkeypatch.delenv(k, raising=False)
    rng = np.random.default_rng(3)
    w = (rng.standard_normal((256, 256)) * 0.02).astype(np.float32)
    steps = []
    for step in range(3):
        steps.append(make_repo(tmp_path / f"step{step}", {"model.safetensors": safetensors_bytes({"w": ("F32", w)})}))
        w = (w - 1e-3 * np.sign(rng.standard_normal(w.shape)) * np.abs(w)).astype(np.float32)
    run_cli("ingest", str(steps[0]), "--repo", "lab/step0", env=env)
    for i in (1, 2):
        run_cli("ingest", str(steps[i]), "--repo", f"lab/step{i}", "--previous", f"lab/step{i - 1}", env=env)
    repos = {r["name"]: r for r in json.loads(run_cli("report", "--json", env=env).stdout)["repos"]}
    assert repos["lab/step2"]["checkpoint_delta"] > 0
    assert repos["lab/step2"]["stored_bytes"] < 0.8 * repos["lab/step0"]["stored_bytes"]
    for i in range(3):
        run_cli("get", f"lab/step{i}", "--out", str(tmp_path / f"out{i}"), env=env)
        assert tree_sha256(tmp_path / f"out{i}") == tree_sha256(steps[i])
