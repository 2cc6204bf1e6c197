"""A base found by content: tensor fingerprints, their index, and a repo's earlier revisions as bases."""
from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

import formats_build as fb
from helpers import make_repo, safetensors_bytes, tree_sha256
from weightvault.dedup import fingerprints
from weightvault.dedup.choice import MAX_DEPTH
from weightvault.dedup.ingest import ingest_folder
from weightvault.dedup.restore import restore
from weightvault.store import Vault
from weightvault.store.models import Object


@pytest.fixture
def any_vault(store_env):
    """A fresh store on each backend (SQLite or PostgreSQL catalog, folder or S3 packs)."""
    v = Vault.open()
    yield v
    v.close()


def to_bf16(a: np.ndarray) -> np.ndarray:
    bits = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def layers(seed: int, n: int = 4, shape=(256, 256)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"encoder.layer.{i}.weight": (rng.standard_normal(shape) * 0.05).astype(np.float32) for i in range(n)}


def nudged(tensors: dict[str, np.ndarray], seed: int, scale: float = 1e-4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: (v + rng.standard_normal(v.shape) * scale * v.std()).astype(np.float32) for k, v in tensors.items()}


def st(tensors: dict[str, np.ndarray]) -> bytes:
    return safetensors_bytes({k: ("F32", v) for k, v in tensors.items()})


def reasons(vault, repo: str) -> dict[str, str]:
    """tensor name -> why its object was coded as it was, for the repo's main branch."""
    from weightvault.dedup.families import stored_tensors
    from weightvault.store.models import Repo
    with vault.catalog.read_session() as s:
        rid = s.scalar(select(Repo.id).where(Repo.name == repo))
        return {n: s.scalar(select(Object.reason).where(Object.id == t.object_id))
                for n, t in stored_tensors(s, rid).items()}


def assert_restores(vault, repo: str, folder, tmp_path) -> None:
    out = tmp_path / ("restored-" + repo.replace("/", "-"))
    restore(vault, repo, "main", out)
    assert tree_sha256(out) == tree_sha256(folder)


def test_fingerprint_sees_through_casts_and_tells_tensors_apart():
    w = layers(0, 2)
    a, b = w["encoder.layer.0.weight"], w["encoder.layer.1.weight"]
    fa = fingerprints.of(memoryview(a.tobytes()), "F32")
    assert len(fa) == 128
    cast = fingerprints.of(memoryview(to_bf16(a).tobytes()), "BF16")
    half = fingerprints.of(memoryview(a.astype(np.float16).tobytes()), "F16")
    for other, dtype in ((cast, "BF16"), (half, "F16")):
        agree, lead = fingerprints.score(other, fa, dtype)
        assert agree >= 0.95 and lead == 16  # the cast of the base is the base, in the member's dtype
    assert fingerprints.bands(cast) == fingerprints.bands(fa)
    fine = fingerprints.of(memoryview(nudged({"x": a}, 1)["x"].tobytes()), "F32")
    unrelated = fingerprints.of(memoryview(b.tobytes()), "F32")
    assert fingerprints.score(fine, fa, "F32")[1] > fingerprints.score(unrelated, fa, "F32")[1] + 8
    assert fingerprints.score(unrelated, fa, "F32")[0] < fingerprints.SIMILAR_ENOUGH
    assert not set(fingerprints.bands(unrelated)) & set(fingerprints.bands(fa))
    assert fingerprints.bands(fingerprints.of(memoryview(np.ones(4096, np.float32).tobytes()), "F32")) == [None] * 4
    assert fingerprints.of(memoryview(b"\0" * 64), "I64") is None


def test_renamed_and_recontainered_finetunes_find_their_base_by_fingerprint(any_vault, tmp_path):
    """Keys no name rule maps (renamed and reordered), in torch.save and .npz containers: each
    tensor is coded against its base found by content, as cheaply as under the original names."""
    pytest.importorskip("torch")
    vault = any_vault
    base = layers(1)
    ingest_folder(vault, make_repo(tmp_path / "base", {"model.safetensors": st(base)}), "org/base")
    tuned = nudged(base, 2, 1e-3)
    same = ingest_folder(vault, make_repo(tmp_path / "same", {"model.safetensors": st(tuned)}), "org/same-names")
    # other fine-tunes of the same size (the one above is stored already: a duplicate costs nothing)
    renamed = {f"blocks.{3 - i}.w": v for i, v in enumerate(nudged(base, 3, 1e-3).values())}
    renamed2 = {f"h.{i}.kernel": v for i, v in enumerate(nudged(base, 4, 1e-3).values())}
    pt = make_repo(tmp_path / "pt", {"pytorch_model.bin": fb.torch_bin(renamed)})
    npz = make_repo(tmp_path / "npz", {"weights.npz": fb.npz_bytes(renamed2)})
    for folder, name in ((pt, "org/renamed-pt"), (npz, "org/renamed-npz")):
        got = ingest_folder(vault, folder, name)
        assert got.new_stored_bytes <= 1.1 * same.new_stored_bytes, name
        assert (got.family, got.base) == ("org/base", "org/base"), got.family_reason  # placed by fingerprint votes
        why = reasons(vault, name)
        assert why and all("fingerprint match" in r for r in why.values()), why
        assert_restores(vault, name, folder, tmp_path)


def test_distilled_model_renumbered_layers_find_their_own_layer(vault, tmp_path):
    """Every other layer kept and renumbered: by name, layer.1 would be coded against the base's
    layer.1; by content it finds the base's layer.2, and the delta is far smaller."""
    base = layers(4)
    ingest_folder(vault, make_repo(tmp_path / "base", {"model.safetensors": st(base)}), "org/base")
    kept = nudged({f"encoder.layer.{i}.weight": base[f"encoder.layer.{2 * i}.weight"] for i in range(2)}, 5)
    folder = make_repo(tmp_path / "d", {"model.safetensors": st(kept)})
    got = ingest_folder(vault, folder, "org/distilled")
    assert got.base == "org/base"
    raw = sum(v.nbytes for v in kept.values())
    assert got.new_stored_bytes < 0.6 * raw
    why = reasons(vault, "org/distilled")
    assert "fingerprint match" in why["encoder.layer.1.weight"], why  # by name it would be the base's layer 1
    assert_restores(vault, "org/distilled", folder, tmp_path)


def chains(vault) -> dict[int, int]:
    """object id -> base references followed to restore it; fails on a cycle."""
    with vault.catalog.read_session() as s:
        base_of = dict(s.execute(select(Object.id, Object.base_id)).all())
        depth_of = dict(s.execute(select(Object.id, Object.depth)).all())
    out = {}
    for oid in base_of:
        seen, at = [], oid
        while base_of[at] is not None:
            assert at not in seen, f"cycle through object {at}"
            seen.append(at)
            at = base_of[at]
        out[oid] = len(seen)
        assert depth_of[oid] == len(seen)
    return out


def test_successive_revisions_are_coded_against_the_previous_one_within_the_depth_bound(vault, tmp_path):
    """A training run pushing model.safetensors to one repo, commit after commit: each revision is
    coded against the one before (not alone), never deeper than MAX_DEPTH, never in a cycle, and
    every revision restores bit-exactly."""
    weights = layers(6)
    folders, costs = [], []
    for step in range(MAX_DEPTH + 3):
        weights = nudged(weights, 100 + step, 1e-3)
        folder = make_repo(tmp_path / f"rev{step}", {"model.safetensors": st(weights), "step.txt": str(step).encode()})
        folders.append(folder)
        costs.append(ingest_folder(vault, folder, "org/run").new_stored_bytes)
        assert max(chains(vault).values()) <= MAX_DEPTH
    raw = sum(v.nbytes for v in weights.values())
    assert costs[0] > 0.75 * raw  # the first revision has nothing to predict it
    assert all(c < 0.75 * costs[0] for c in costs[1:])  # 0.66 here: F32 nudged by 1e-3 of its spread
    assert all("previous revision" in r or "fingerprint" in r for r in reasons(vault, "org/run").values())
    from weightvault.dedup.commits import resolve
    from weightvault.store.models import Commit
    with vault.catalog.read_session() as s:
        oids = [c.oid for c in s.scalars(select(Commit).order_by(Commit.id))]
    for oid, folder in zip(oids, folders):
        out = tmp_path / f"out-{oid[:8]}"
        restore(vault, "org/run", oid, out)
        assert tree_sha256(out) == tree_sha256(folder)


def test_checkpoint_folders_pushed_one_commit_at_a_time(any_vault, tmp_path):
    """checkpoint-<step>/ folders uploaded one per commit (as hub clients do): each new checkpoint's
    tensors find the previous checkpoint's by fingerprint, under the same names in another folder."""
    vault = any_vault
    from weightvault.dedup.uploads import Changes, commit_changes, store_file
    weights = layers(7)
    sizes = []
    for step in (10, 20, 30):
        weights = nudged(weights, step, 1e-3)
        path = tmp_path / f"ckpt{step}.safetensors"
        path.write_bytes(st(weights))
        before = _stored_total(vault)
        sha, _ = store_file(vault, "org/trainer", path, f"checkpoint-{step}/model.safetensors")
        sizes.append(_stored_total(vault) - before)
        commit_changes(vault, "org/trainer", "main", Changes(add_stored={f"checkpoint-{step}/model.safetensors": sha}),
                       f"step {step}", create_repo=True)
    assert sizes[1] < 0.75 * sizes[0] and sizes[2] < 0.75 * sizes[0]
    out = tmp_path / "out"
    restore(vault, "org/trainer", "main", out)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-10", "checkpoint-20", "checkpoint-30"]
    assert (out / "checkpoint-30" / "model.safetensors").read_bytes() == path.read_bytes()


def _stored_total(vault) -> int:
    from sqlalchemy import func
    with vault.catalog.read_session() as s:
        return int(s.scalar(select(func.coalesce(func.sum(Object.stored_size), 0))))  # PostgreSQL: a Decimal


def test_recover_rebuilds_the_fingerprint_index(vault, tmp_path):
    """Fingerprints are recorded with their objects (columns of the object record), so a catalog
    rebuilt from the bucket alone finds bases by content as the lost one did."""
    from test_recover import drop_catalog
    from weightvault.store.recover import rebuild, scan
    base = layers(8)
    ingest_folder(vault, make_repo(tmp_path / "base", {"model.safetensors": st(base)}), "org/base")
    cols = (Object.digest, Object.fingerprint, *fingerprints.BAND_COLUMNS)
    with vault.catalog.read_session() as s:
        before = set(s.execute(select(*cols)).all())
    assert any(row[1] for row in before)
    fresh = drop_catalog(vault)
    assert rebuild(fresh.catalog, scan(fresh.backend)).problems == []
    with fresh.catalog.read_session() as s:
        assert set(s.execute(select(*cols)).all()) == before
    renamed = {f"x.{i}": v for i, v in enumerate(nudged(base, 9, 1e-3).values())}
    folder = make_repo(tmp_path / "r", {"model.safetensors": st(renamed)})
    ingest_folder(fresh, folder, "org/renamed")
    assert all("fingerprint match" in r for r in reasons(fresh, "org/renamed").values())
    assert_restores(fresh, "org/renamed", folder, tmp_path)
    fresh.close()


def test_tensors_stored_before_fingerprints_are_fingerprinted_by_the_cli(tmp_path):
    """A store upgraded from schema 0004 has tensors without fingerprints: `weightvault db
    fingerprint` computes theirs (from their first frame) as ingest would have."""
    from conftest import run_cli
    env = {"WEIGHTVAULT_DATA_DIR": str(tmp_path / "store")}
    base = layers(10, 2)
    run_cli("ingest", str(make_repo(tmp_path / "b", {"model.safetensors": st(base)})), "--repo", "org/base", env=env)
    vault = Vault.open(tmp_path / "store")
    cols = (Object.id, Object.fingerprint, *fingerprints.BAND_COLUMNS)
    with vault.catalog.write_session() as s:
        before = set(s.execute(select(*cols).where(Object.fingerprint.is_not(None))).all())
        s.execute(Object.__table__.update().values(fingerprint=None, fp_band0=None, fp_band1=None, fp_band2=None,
                                                   fp_band3=None))
    vault.close()
    assert "2 tensors fingerprinted" in run_cli("db", "fingerprint", env=env).stdout
    vault = Vault.open(tmp_path / "store")
    with vault.catalog.read_session() as s:
        assert set(s.execute(select(*cols).where(Object.fingerprint.is_not(None))).all()) == before
    vault.close()


@pytest.mark.slow
def test_real_training_run_pushed_commit_after_commit(checkpoint_series, vault, tmp_path):
    """../shared/data's training run, each checkpoint pushed as the next commit of one repo (model and
    optimizer state at the repo's root, as push_to_hub does): every revision after the first is coded
    against the one before, and each restores bit-exactly."""
    import shutil
    steps = sorted(checkpoint_series.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    costs, raws, commits = [], [], []
    for ckpt in steps:
        folder = tmp_path / ckpt.name
        folder.mkdir()
        for name in ("model.safetensors", "optimizer.safetensors", "trainer_state.json"):
            shutil.copy(ckpt / name, folder / name)
        got = ingest_folder(vault, folder, "lab/pushed-run", message=f"Training in progress, {ckpt.name}")
        costs.append(got.new_stored_bytes)
        raws.append(got.raw_bytes)
        commits.append((got.commit, folder))
    alone = costs[0] / raws[0]
    assert all(c / r < alone for c, r in zip(costs[1:], raws[1:])), (costs, raws)
    assert any("previous revision" in r for r in reasons(vault, "lab/pushed-run").values())
    assert max(chains(vault).values()) <= MAX_DEPTH
    for oid, folder in commits:
        out = tmp_path / f"out-{oid[:8]}"
        restore(vault, "lab/pushed-run", oid, out)
        assert tree_sha256(out) == tree_sha256(folder)
