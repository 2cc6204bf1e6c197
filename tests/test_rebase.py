"""Re-basing family members on a sibling ingested after them."""
from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import select

from helpers import make_repo, safetensors_bytes, tree_sha256
from weightvault.dedup.choice import MAX_DEPTH
from weightvault.dedup.families import stored_tensors
from weightvault.dedup.ingest import ingest_folder
from weightvault.dedup.rebase import Rebaser
from weightvault.dedup.restore import restore
from weightvault.store import Vault
from weightvault.store.gc import collect, compact
from weightvault.store.models import Object, Repo

SHAPES = {"a.weight": (256, 256), "b.weight": (128, 256)}


def bf16(a: np.ndarray) -> np.ndarray:
    bits = a.view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def model(tensors: dict[str, np.ndarray], dtype: str) -> bytes:
    return safetensors_bytes({n: (dtype, bf16(a) if dtype == "BF16" else a) for n, a in tensors.items()})


def ingest(vault, root, name: str, tensors: dict[str, np.ndarray], dtype: str, *, card_base: str | None = None,
           rebase: bool = True):
    files = {"model.safetensors": model(tensors, dtype)}
    if card_base:
        files["README.md"] = f"---\nbase_model: {card_base}\n---\n".encode()
    return ingest_folder(vault, make_repo(root / name, files), name, rebase=rebase)


def stored(vault, repo: str) -> int:
    with vault.catalog.read_session() as s:
        from weightvault.dedup.families import stored_tensors

        rid = s.scalar(select(Repo.id).where(Repo.name == repo))
        ids = [t.object_id for t in stored_tensors(s, rid).values()]
        return sum(s.scalars(select(Object.stored_size).where(Object.id.in_(ids))))


def assert_restores(vault, root, names: list[str]) -> None:
    for name in names:
        out = root / "out" / name
        restore(vault, name, "main", out)
        assert tree_sha256(out) == tree_sha256(root / name)


def family(seed: int = 0) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    base = {n: (rng.standard_normal(s) * 0.02).astype(np.float32) for n, s in SHAPES.items()}
    tuned = {n: (a + rng.standard_normal(a.shape) * 1e-3).astype(np.float32) for n, a in base.items()}
    return base, tuned


@pytest.fixture
def any_vault(store_env):
    """A fresh store on each backend (SQLite or PostgreSQL catalog, folder or S3 packs)."""
    v = Vault.open()
    yield v
    v.close()


def test_rebase_recodes_an_earlier_cast_on_the_later_fine_tune_it_was_cast_from(any_vault, tmp_path):
    vault = any_vault
    base, tuned = family()
    ingest(vault, tmp_path, "org/base", base, "F32")
    ingest(vault, tmp_path, "org/tuned-bf16", tuned, "BF16")  # arrives before the run's FP32 weights
    ingest(vault, tmp_path, "org/tuned", tuned, "F32", rebase=False)  # the operator's way: `weightvault rebase`
    before = stored(vault, "org/tuned-bf16")

    dry = Rebaser(vault, dry_run=True).run()
    assert [m.repo for m in dry.members] == ["org/tuned-bf16"] and stored(vault, "org/tuned-bf16") == before

    result = Rebaser(vault).run()
    assert [(m.repo, m.base, m.tensors) for m in result.members] == [("org/tuned-bf16", "org/tuned", 2)]
    chains(vault)
    after = stored(vault, "org/tuned-bf16")
    assert after < 0.05 * before and result.bytes_saved == before - after
    with vault.catalog.read_session() as s:
        repo = s.scalar(select(Repo).where(Repo.name == "org/tuned-bf16"))
        assert s.get(Repo, repo.base_repo_id).name == "org/tuned" and "re-based on org/tuned" in repo.family_reason

    assert Rebaser(vault).run().members == []  # nothing left to gain
    collect(vault.catalog, vault.backend, timedelta(0))
    compact(vault.catalog, vault.backend, vault.pack_writer())
    collect(vault.catalog, vault.backend, timedelta(0))
    assert_restores(vault, tmp_path, ["org/base", "org/tuned-bf16", "org/tuned"])


def test_siblings_never_end_up_coded_against_each_other(vault, tmp_path):
    base, tuned = family(1)
    rng = np.random.default_rng(2)
    close = {n: np.where(rng.random(a.shape) < 0.01, a * np.float32(1.01), a).astype(np.float32) for n, a in tuned.items()}
    ingest(vault, tmp_path, "org/base", base, "F32")
    ingest(vault, tmp_path, "org/one", tuned, "BF16")
    ingest(vault, tmp_path, "org/two", close, "BF16")

    with vault.catalog.read_session() as s:
        two = s.scalar(select(Repo).where(Repo.name == "org/two"))
        assert s.get(Repo, two.base_repo_id).name == "org/one"  # ingest already picked the closer sibling

    # one would code far better against two than against the base, but two is coded against it
    assert Rebaser(vault).run().members == []
    with vault.catalog.read_session() as s:
        for oid in s.scalars(select(Object.id)):
            seen = []
            while oid is not None:
                assert oid not in seen and len(seen) <= MAX_DEPTH
                seen.append(oid)
                oid = s.scalar(select(Object.base_id).where(Object.id == oid))
    assert_restores(vault, tmp_path, ["org/base", "org/one", "org/two"])


def chains(vault) -> dict[int, list[int]]:
    """Every object's base chain (itself first), asserting none loops or exceeds the depth bound
    and every recorded depth is its chain's length."""
    with vault.catalog.read_session() as s:
        rows = s.execute(select(Object.id, Object.base_id, Object.depth)).all()
    bases = {oid: base for oid, base, _ in rows}
    out = {}
    for oid, _, depth in rows:
        chain, at = [], oid
        while at is not None:
            assert at not in chain and len(chain) <= MAX_DEPTH, chain
            chain.append(at)
            at = bases[at]
        assert depth == len(chain) - 1, (oid, depth, chain)
        out[oid] = chain
    return out


def base_of(vault, repo: str) -> str:
    with vault.catalog.read_session() as s:
        row = s.scalar(select(Repo).where(Repo.name == repo))
        return s.get(Repo, row.base_repo_id).name


def test_ingest_rebases_an_earlier_cast_on_the_fine_tune_it_was_cast_from(any_vault, tmp_path):
    """No `rebase` run: the ingest of the FP32 weights re-codes the BF16 cast stored before them."""
    vault = any_vault
    base, tuned = family()
    ingest(vault, tmp_path, "org/base", base, "F32")
    assert ingest(vault, tmp_path, "org/tuned-bf16", tuned, "BF16").rebased == []  # nothing it predicts better
    before = stored(vault, "org/tuned-bf16")
    assert_restores(vault, tmp_path, ["org/base", "org/tuned-bf16"])

    result = ingest(vault, tmp_path, "org/tuned", tuned, "F32")
    after = stored(vault, "org/tuned-bf16")
    assert result.rebased == [("org/tuned-bf16", 2, before - after)] and result.rebase_deferred == []
    assert after < 0.05 * before
    assert base_of(vault, "org/tuned-bf16") == "org/tuned" and base_of(vault, "org/tuned") == "org/base"
    assert Rebaser(vault).run().members == []  # the operator's pass finds nothing left
    chains(vault)
    assert_restores(vault, tmp_path, ["org/base", "org/tuned-bf16", "org/tuned"])
    collect(vault.catalog, vault.backend, timedelta(0))  # the replaced frames go; the new ones stay
    assert_restores(vault, tmp_path, ["org/base", "org/tuned-bf16", "org/tuned"])


def test_ingest_rebasing_reads_the_store_for_a_tensor_changed_after_hashing(vault, tmp_path, monkeypatch):
    """Re-basing takes the newcomer's tensors from its folder only while they hold the bytes the ingest
    hashed (CRC32C): a tensor rewritten in between is decoded from the store, so the member re-coded
    against it still restores bit for bit."""
    from weightvault.dedup import ingest as ingest_module

    base, tuned = family()
    ingest(vault, tmp_path, "org/base", base, "F32")
    ingest(vault, tmp_path, "org/tuned-bf16", tuned, "BF16")
    real = ingest_module.onto_landed

    def rewrite_then_rebase(vault, repo, local=None, local_crcs=None):
        with open(tmp_path / "org/tuned" / "model.safetensors", "r+b") as f:
            f.seek(-4096, 2)  # inside the last tensor
            f.write(bytes(4096))
        return real(vault, repo, local, local_crcs)

    monkeypatch.setattr(ingest_module, "onto_landed", rewrite_then_rebase)
    result = ingest(vault, tmp_path, "org/tuned", tuned, "F32")
    assert [repo for repo, _, _ in result.rebased] == ["org/tuned-bf16"]
    assert base_of(vault, "org/tuned-bf16") == "org/tuned"
    assert_restores(vault, tmp_path, ["org/base", "org/tuned-bf16"])
    restore(vault, "org/tuned", "main", tmp_path / "out" / "tuned")
    assert (tmp_path / "out" / "tuned" / "model.safetensors").read_bytes() == model(tuned, "F32")


def test_ingest_rebasing_drops_its_coding_when_the_folder_changes_under_it(vault, tmp_path, monkeypatch):
    """A newcomer's tensor rewritten in its folder after its CRC32C was checked, while a member is
    coded against it: the coding is dropped, the member keeps its base and restores bit for bit."""
    from weightvault.dedup.rebase import Rebaser

    base, tuned = family()
    ingest(vault, tmp_path, "org/base", base, "F32")
    ingest(vault, tmp_path, "org/tuned-bf16", tuned, "BF16")
    real = Rebaser._raw

    def raw_then_rewrite(self, t):
        data = real(self, t)
        place = self.local.get(t.object_id)
        if self.mapped_used and place is not None:
            with open(place.path, "r+b") as f:
                f.seek(place.start)
                f.write(bytes(4096))
        return data

    monkeypatch.setattr(Rebaser, "_raw", raw_then_rewrite)
    result = ingest(vault, tmp_path, "org/tuned", tuned, "F32")
    assert result.rebased == []
    assert base_of(vault, "org/tuned-bf16") == "org/base"
    assert_restores(vault, tmp_path, ["org/base", "org/tuned-bf16"])


def test_ingest_rebasing_never_builds_a_cycle(vault, tmp_path):
    """org/two is coded against org/one at its ingest; org/one, far better predicted by org/two,
    stays on the base rather than close a loop."""
    base, tuned = family(1)
    rng = np.random.default_rng(2)
    close = {n: np.where(rng.random(a.shape) < 0.01, a * np.float32(1.01), a).astype(np.float32) for n, a in tuned.items()}
    ingest(vault, tmp_path, "org/base", base, "F32")
    ingest(vault, tmp_path, "org/one", tuned, "BF16")
    assert ingest(vault, tmp_path, "org/two", close, "BF16").rebased == []
    assert base_of(vault, "org/two") == "org/one" and base_of(vault, "org/one") == "org/base"
    chains(vault)
    assert_restores(vault, tmp_path, ["org/base", "org/one", "org/two"])


def test_ingest_rebasing_stops_at_the_depth_bound(vault, tmp_path):
    """A chain of fine-tunes, each naming the previous as its base, reaches MAX_DEPTH; a member
    stored early, closest to the last step, is re-based along the chain by the ingests while a
    step is allowed, and no chain ever grows past the bound."""
    rng = np.random.default_rng(3)
    base = {n: (rng.standard_normal(s) * 0.02).astype(np.float32) for n, s in SHAPES.items()}
    steps = [base]
    for _ in range(MAX_DEPTH):  # each step changes a tenth of the values by 1%
        prev = steps[-1]
        steps.append({n: np.where(rng.random(a.shape) < 0.1, a * np.float32(1.01), a).astype(np.float32)
                      for n, a in prev.items()})
    late = {n: np.where(rng.random(a.shape) < 0.01, a * np.float32(1.01), a).astype(np.float32)
            for n, a in steps[-1].items()}  # closest to the last step
    ingest(vault, tmp_path, "org/base", base, "BF16")
    ingest(vault, tmp_path, "org/early", late, "BF16", card_base="org/base")
    names, rebased = ["org/base"], []
    for i, tensors in enumerate(steps[1:], 1):
        rebased += ingest(vault, tmp_path, f"org/step{i}", tensors, "BF16", card_base=names[-1]).rebased
        names.append(f"org/step{i}")
    assert "org/early" in [m for m, _, _ in rebased]
    with vault.catalog.read_session() as s:
        depths = set(s.scalars(select(Object.depth)))
    assert max(depths) == MAX_DEPTH  # the bound was reached, and never passed:
    chains(vault)
    assert_restores(vault, tmp_path, [*names, "org/early"])


def test_rebasing_an_object_others_are_coded_against_moves_their_depth_along(vault, tmp_path):
    """org/derived is coded against the BF16 cast; re-basing the cast on the later FP32 weights makes
    it one step deeper, and what is coded against it follows (bytes unchanged, depths recorded)."""
    base, tuned = family(4)
    rng = np.random.default_rng(5)
    derived = {n: np.where(rng.random(a.shape) < 0.01, a * np.float32(1.01), a).astype(np.float32)
               for n, a in tuned.items()}
    ingest(vault, tmp_path, "org/base", base, "F32")
    ingest(vault, tmp_path, "org/tuned-bf16", tuned, "BF16")
    ingest(vault, tmp_path, "org/derived", derived, "BF16", card_base="org/tuned-bf16")
    assert base_of(vault, "org/derived") == "org/tuned-bf16"
    assert [m for m, _, _ in ingest(vault, tmp_path, "org/tuned", tuned, "F32").rebased] == ["org/tuned-bf16"]
    with vault.catalog.read_session() as s:
        depth = {o.id: o.depth for o in s.scalars(select(Object))}
        base_id = dict(s.execute(select(Object.id, Object.base_id)).all())
        tensors = {n: stored_tensors(s, s.scalar(select(Repo.id).where(Repo.name == n)))
                   for n in ("org/tuned", "org/tuned-bf16", "org/derived")}
    for name, t in tensors["org/tuned-bf16"].items():
        assert base_id[t.object_id] == tensors["org/tuned"][name].object_id and depth[t.object_id] == 2
        d = tensors["org/derived"][name].object_id
        assert base_id[d] == t.object_id and depth[d] == 3
    chains(vault)
    assert_restores(vault, tmp_path, ["org/base", "org/tuned-bf16", "org/derived", "org/tuned"])


def test_a_failed_rebasing_leaves_the_ingest_landed_and_says_what_to_do(vault, tmp_path, monkeypatch):
    from weightvault.dedup import rebase

    base, tuned = family(6)
    ingest(vault, tmp_path, "org/base", base, "F32")
    ingest(vault, tmp_path, "org/tuned-bf16", tuned, "BF16")

    def busy(*a, **k):  # the switch's transaction failing (fault injected, as the crash tests do)
        raise RuntimeError("database is locked")
    monkeypatch.setattr(rebase.Rebaser, "_commit", busy)
    result = ingest(vault, tmp_path, "org/tuned", tuned, "F32")
    assert result.rebased == [] and any("weightvault rebase" in w for w in result.warnings)
    monkeypatch.undo()
    assert [m.repo for m in Rebaser(vault).run().members] == ["org/tuned-bf16"]
    assert_restores(vault, tmp_path, ["org/base", "org/tuned-bf16", "org/tuned"])


def upload(vault, root, name: str, tensors: dict[str, np.ndarray], dtype: str) -> None:
    """The hub client's order: create the repo, upload the weights (LFS or Xet), commit the path."""
    from weightvault.dedup.uploads import Changes, commit_changes, store_file

    commit_changes(vault, name, "main", Changes(add_bytes={"README.md": b"# model\n"}), "create", create_repo=True)
    path = root / name / "model.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model(tensors, dtype))
    sha, _ = store_file(vault, name, path, "model.safetensors")
    commit_changes(vault, name, "main", Changes(add_stored={"model.safetensors": sha}), "weights")


def test_hub_uploads_join_a_family_and_rebase_on_commit(vault, tmp_path):
    """Repos pushed through the hub API are placed in a family by their first weights file, and the
    commit of the FP32 weights re-codes the BF16 cast pushed before them, as ingest does."""
    base, tuned = family()
    upload(vault, tmp_path, "org/base", base, "F32")
    upload(vault, tmp_path, "org/tuned-bf16", tuned, "BF16")
    assert base_of(vault, "org/tuned-bf16") == "org/base"
    before = stored(vault, "org/tuned-bf16")
    upload(vault, tmp_path, "org/tuned", tuned, "F32")
    assert base_of(vault, "org/tuned") == "org/base" and base_of(vault, "org/tuned-bf16") == "org/tuned"
    assert stored(vault, "org/tuned-bf16") < 0.05 * before
    chains(vault)
    for name in ("org/base", "org/tuned-bf16", "org/tuned"):
        out = tmp_path / "out" / name
        restore(vault, name, "main", out)
        assert (out / "model.safetensors").read_bytes() == (tmp_path / name / "model.safetensors").read_bytes()
