"""Ingest and restore on the embedded store with small synthetic repos."""
from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import func, select

from helpers import make_repo, safetensors_bytes, small_model, tree_sha256
from weightvault.dedup.ingest import ingest_folder
from weightvault.dedup.names import InvalidName
from weightvault.dedup.report import build_report
from weightvault.dedup.restore import restore
from weightvault.dedup.verify import verify
from weightvault.store.gc import collect
from weightvault.store.models import Commit, File, Object


def repo_files(seed=0):
    return {
        "config.json": json.dumps({"hidden_size": 96, "seed": seed}).encode(),
        "README.md": b"---\nlicense: mit\n---\n# tiny\n",
        "tokenizer/vocab.txt": "\n".join(f"tok{i}" for i in range(500)).encode(),
        "model.safetensors": small_model(seed),
        "empty.txt": b"",
    }


def test_round_trip_is_bit_exact(vault, tmp_path):
    src = make_repo(tmp_path / "src", repo_files())
    result = ingest_folder(vault, src, "org/tiny")
    assert len(result.commit) == 40
    restore(vault, "org/tiny", "main", tmp_path / "out")
    assert tree_sha256(tmp_path / "out") == tree_sha256(src)
    assert verify(vault).ok


def test_duplicate_repo_adds_no_objects(vault, tmp_path):
    src = make_repo(tmp_path / "a", repo_files())
    ingest_folder(vault, src, "org/a")
    with vault.catalog.read_session() as s:
        before = s.scalar(select(func.count(Object.id)))
    copy = make_repo(tmp_path / "b", {**repo_files(), "README.md": b"# another card\n"})
    result = ingest_folder(vault, copy, "other/b")
    with vault.catalog.read_session() as s:
        assert s.scalar(select(func.count(Object.id))) == before  # the new card is small: kept inline
        rep = build_report(s)
    b = next(r for r in rep.repos if r.name == "other/b")
    assert b.savings.file_dedup >= len(small_model(0))
    assert result.new_stored_bytes < 100


def test_tensor_dedup_across_different_files(vault, tmp_path):
    rng = np.random.default_rng(1)
    shared = rng.standard_normal((128, 128)).astype(np.float32)
    one = safetensors_bytes({"a": ("F32", shared), "b": ("F32", rng.standard_normal(10).astype(np.float32))})
    two = safetensors_bytes({"a": ("F32", shared), "c": ("F32", rng.standard_normal(12).astype(np.float32))})
    ingest_folder(vault, make_repo(tmp_path / "1", {"model.safetensors": one}), "org/one")
    ingest_folder(vault, make_repo(tmp_path / "2", {"model.safetensors": two}), "org/two")
    with vault.catalog.read_session() as s:
        rep = build_report(s)
    assert next(r for r in rep.repos if r.name == "org/two").savings.tensor_dedup == shared.nbytes
    restore(vault, "org/two", "main", tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == two


def test_revisions_and_commit_ids(vault, tmp_path):
    first = ingest_folder(vault, make_repo(tmp_path / "v1", repo_files(1)), "org/m")
    second = ingest_folder(vault, make_repo(tmp_path / "v2", repo_files(2)), "org/m")
    dev = ingest_folder(vault, make_repo(tmp_path / "v3", repo_files(3)), "org/m", "dev/v1")
    assert len({first.commit, second.commit, dev.commit}) == 3
    restore(vault, "org/m", first.commit, tmp_path / "o1")
    assert tree_sha256(tmp_path / "o1") == tree_sha256(tmp_path / "v1")
    restore(vault, "org/m", first.commit[:10], tmp_path / "o1b")
    restore(vault, "org/m", "dev/v1", tmp_path / "o3")
    assert tree_sha256(tmp_path / "o3") == tree_sha256(tmp_path / "v3")


@pytest.mark.parametrize("name", ["noslash", "a/b/c", "../etc", "org/..", "org/name/", "/abs", "org/na me", ""])
def test_bad_repo_names_rejected(vault, tmp_path, name):
    src = make_repo(tmp_path / "src", repo_files())
    with pytest.raises(InvalidName):
        ingest_folder(vault, src, name)


def _store_is_empty(vault):
    with vault.catalog.read_session() as s:
        return s.scalar(select(func.count(File.id))) == 0 and s.scalar(select(func.count(Object.id))) == 0


def _stored_opaque(vault, tmp_path, data: bytes, why: str) -> None:
    """A ``model.safetensors`` that does not parse is stored as one blob, warned about, restored bit-exactly."""
    from weightvault.dedup.restore import restore

    src = make_repo(tmp_path / "src", {"model.safetensors": data, "config.json": b"{}"})
    result = ingest_folder(vault, src, "org/bad")
    assert len(result.warnings) == 1 and why in result.warnings[0] and "opaque" in result.warnings[0]
    with vault.catalog.read_session() as s:
        assert s.scalar(select(File.format).where(File.size == len(data))) == "blob"
    restore(vault, "org/bad", "main", tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == data


def test_truncated_safetensors_stored_opaque(vault, tmp_path):
    data = small_model()
    _stored_opaque(vault, tmp_path, data[: len(data) - 100], "data section")


def test_header_larger_than_file_stored_opaque(vault, tmp_path):
    data = bytearray(small_model())
    data[:8] = (10**6).to_bytes(8, "little")
    _stored_opaque(vault, tmp_path, bytes(data), "header claims")


@pytest.mark.parametrize("header", [
    {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}},
    {"a": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}},
    {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}},
])
def test_overlapping_tensors_and_bad_dtype_stored_opaque(vault, tmp_path, header):
    import struct

    h = json.dumps(header).encode()
    _stored_opaque(vault, tmp_path, struct.pack("<Q", len(h)) + h + bytes(16), "tensor")


def _lfs_size_model(seed: int = 0) -> bytes:
    """A safetensors file of LFS size (>= hashing.LFS_MIN_SIZE): ingest parses it and hashes its tensors
    while its sha256 is taken on the hash thread."""
    from weightvault.dedup.hashing import LFS_MIN_SIZE

    rows = LFS_MIN_SIZE // 4096 + 1
    data = safetensors_bytes({"w": ("F32", np.random.default_rng(seed).standard_normal((rows, 1024)).astype(np.float32))})
    assert len(data) >= LFS_MIN_SIZE
    return data


def test_lfs_size_file_parsed_beside_its_hash(vault, tmp_path):
    """A truncated LFS-size file is stored opaque with one warning; a stored one, ingested again (its
    tensors already hashed when its sha256 is found), adds no object and no warning."""
    good = _lfs_size_model()
    _stored_opaque(vault, tmp_path, good[:-100], "data section")
    again = ingest_folder(vault, make_repo(tmp_path / "again", {"model.safetensors": good[:-100]}), "org/again")
    assert again.warnings == [] and again.new_stored_bytes == 0
    ingest_folder(vault, make_repo(tmp_path / "a", {"model.safetensors": good}), "org/a")
    with vault.catalog.read_session() as s:
        objects = s.scalar(select(func.count(Object.id)))
    mirror = ingest_folder(vault, make_repo(tmp_path / "b", {"model.safetensors": good}), "org/b")
    with vault.catalog.read_session() as s:
        assert s.scalar(select(func.count(Object.id))) == objects
    assert mirror.warnings == [] and mirror.new_stored_bytes == 0
    restore(vault, "org/b", "main", tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == good


def test_unchanged_reingest_adds_no_commit(vault, tmp_path):
    src = make_repo(tmp_path / "src", repo_files())
    first = ingest_folder(vault, src, "org/same")
    again = ingest_folder(vault, src, "org/same")
    assert first.changed and not again.changed and again.commit == first.commit
    with vault.catalog.read_session() as s:
        assert s.scalar(select(func.count(Commit.id))) == 1


def test_symlink_escaping_repo_rejected(vault, tmp_path):
    (tmp_path / "secret.txt").write_text("secret")
    src = make_repo(tmp_path / "src", repo_files())
    (src / "leak.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(InvalidName, match="outside"):
        ingest_folder(vault, src, "org/leaky")
    assert _store_is_empty(vault)


def test_rm_and_gc_reclaim_only_unreferenced(vault, tmp_path):
    ingest_folder(vault, make_repo(tmp_path / "a", repo_files(1)), "org/a")
    ingest_folder(vault, make_repo(tmp_path / "b", repo_files(2)), "org/b")
    from weightvault.dedup.commits import delete_repo
    with vault.catalog.write_session() as s:
        delete_repo(s, "org/a")
    from datetime import timedelta
    first = collect(vault.catalog, vault.backend, timedelta(0))
    assert first.files > 0 and first.objects > 0
    restore(vault, "org/b", "main", tmp_path / "out")
    assert tree_sha256(tmp_path / "out") == tree_sha256(tmp_path / "b")
    assert verify(vault).ok


def test_schema_head_constant_matches_migrations():
    from alembic.script import ScriptDirectory

    from weightvault.store.db import SCHEMA_HEAD, alembic_config

    assert ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head() == SCHEMA_HEAD


def test_gc_compacts_a_half_empty_pack(vault, tmp_path):
    from datetime import timedelta

    from weightvault.dedup.commits import delete_repo
    from weightvault.store.gc import compact

    rng = np.random.default_rng(5)
    big = lambda: safetensors_bytes({"w": ("F32", rng.standard_normal((256, 256)).astype(np.float32))})  # noqa: E731
    # Two files in one pack; the repo goes, a new one keeps one of the files: the pack is half live.
    both = make_repo(tmp_path / "both", {"x.safetensors": big(), "y.safetensors": big()})
    ingest_folder(vault, both, "org/both")
    with vault.catalog.write_session() as s:
        delete_repo(s, "org/both")
    ingest_folder(vault, make_repo(tmp_path / "keep", {"x.safetensors": (both / "x.safetensors").read_bytes()}), "org/keep")
    result = collect(vault.catalog, vault.backend, timedelta(0))
    compact(vault.catalog, vault.backend, vault.pack_writer(), 0.6, result)
    assert result.packs_compacted == 1
    freed = collect(vault.catalog, vault.backend, timedelta(0))
    assert freed.packs_deleted == 1
    assert verify(vault).ok
    restore(vault, "org/keep", "main", tmp_path / "out")
    assert (tmp_path / "out" / "x.safetensors").read_bytes() == (both / "x.safetensors").read_bytes()
