"""Content-defined chunking: Xet's boundaries, and opaque bytes deduplicated by chunk against
everything stored before (blobs and tensors), bit-exact on every backend."""
from __future__ import annotations

import os
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import func, select

from helpers import make_repo, safetensors_bytes, tree_sha256
from weightvault.codec import chunking
from weightvault.dedup.commits import delete_repo
from weightvault.dedup.ingest import ingest_folder
from weightvault.dedup.restore import restore
from weightvault.dedup.verify import verify
from weightvault.store import Vault
from weightvault.store.gc import collect
from weightvault.store.models import Chunk, File, Segment

GEAR = None


def reference_cuts(data: bytes) -> list[int]:
    """Xet spec/chunking.md's pseudocode, byte by byte (the oracle for the skip-ahead C loop)."""
    table = _gear_table()
    mask, out, h, start = 0xFFFF000000000000, [], 0, 0
    for i, b in enumerate(data):
        h = ((h << 1) + table[b]) & 0xFFFFFFFFFFFFFFFF
        size = i + 1 - start
        if size < chunking.MIN_CHUNK:
            continue
        if size >= chunking.MAX_CHUNK or not h & mask:
            out.append(i + 1)
            start, h = i + 1, 0
    if start < len(data):
        out.append(len(data))
    return out


def _gear_table() -> list[int]:
    """The gear table, read from the C source's literals (checked at both ends against rust-gearhash)."""
    global GEAR
    if GEAR is None:
        from pathlib import Path
        src = (Path(__file__).resolve().parents[1] / "native" / "src" / "cdc.c").read_text()
        body = src[src.index("gear[256] = {"):src.index("};", src.index("gear[256] = {"))]
        GEAR = [int(tok.strip().rstrip("ull"), 16) for tok in body.split("{", 1)[1].split(",") if tok.strip()]
        assert len(GEAR) == 256 and GEAR[0] == 0xB088D3A9E840F559 and GEAR[255] == 0x63C7A906C1DD187B
    return GEAR


@pytest.mark.parametrize("size", [0, 1, 8191, 8192, 8193, 131072, 300_000])
def test_cut_points_follow_xet_spec(size):
    rng = np.random.default_rng(size)
    data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    assert chunking.chunk_ends(data).tolist() == reference_cuts(data)


def test_long_runs_cut_at_max_and_text_at_content():
    zeros = bytes(400_000)  # gear of 0x00 never reaches the mask: forced cuts
    assert chunking.chunk_ends(zeros).tolist() == reference_cuts(zeros)
    text = b"".join(b"line %d of a tokenizer file\n" % i for i in range(12_000))
    assert chunking.chunk_ends(text).tolist() == reference_cuts(text)


def test_chunks_are_the_xet_clients(tmp_path):
    """hf_xet (the hub's own client) hashes a file from its chunks: equal file hashes mean equal
    cut points and chunk hashes."""
    hf_xet = pytest.importorskip("hf_xet")
    from weightvault.dedup.xet import hashing
    data = os.urandom(3_000_000) + bytes(300_000) + b"".join(b"line %d\n" % i for i in range(50_000))
    (tmp_path / "f").write_bytes(data)
    ours = [(chunking.chunk_hash(data[a:b]), b - a) for a, b, _ in chunking.chunks(data)]
    assert hashing.to_hex(hashing.file_hash(ours)) == hf_xet.hash_files([str(tmp_path / "f")])[0].hash


def test_chunks_survive_a_shift():
    # Seeded: with os.urandom the cuts resynchronised within two chunks in most runs, not all.
    body = np.random.default_rng(7).bytes(2_000_000)
    a = {h for _, _, h in chunking.chunks(body)}
    b = {h for _, _, h in chunking.chunks(b"new header bytes" + body)}
    assert len(a & b) >= len(a) - 2


def _tensors(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {f"layer.{i}.weight": ("F32", rng.standard_normal((256, 256)).astype(np.float32)) for i in range(6)}


@pytest.fixture
def any_vault(store_env):
    v = Vault.open()
    yield v
    v.close()


def test_unknown_container_of_stored_tensors_costs_little(any_vault, tmp_path):
    vault = any_vault
    tensors = _tensors(0)
    ingest_folder(vault, make_repo(tmp_path / "a", {"model.safetensors": safetensors_bytes(tensors)}), "org/a")
    # The same tensor bytes in an unparsed container with its own header and padding.
    blob = b"MYFMT\x00" + os.urandom(3000) + b"".join(a.tobytes() + b"\x00" * 7 for _, a in tensors.values())
    src = make_repo(tmp_path / "b", {"weights.bin": blob})
    result = ingest_folder(vault, src, "org/b")
    assert result.new_stored_bytes < 0.05 * len(blob)
    restore(vault, "org/b", "main", tmp_path / "out")
    assert tree_sha256(tmp_path / "out") == tree_sha256(src)
    with vault.catalog.read_session() as s:
        fid = s.scalar(select(File.id).where(File.size == len(blob)))
        assert s.scalar(select(func.count()).select_from(Segment).where(Segment.file_id == fid)) < 40
    assert verify(vault).ok


def test_small_tensors_copied_in_order_are_found_along_the_stored_layout(vault, tmp_path):
    """Tensors smaller than a chunk (biases, norms) between large ones: no chunk of their own finds
    them, so they are found by following the stored file's layout past the large tensor before
    them; and a large tensor whose chunks are cut out of step is matched whole by widening."""
    rng = np.random.default_rng(5)
    tensors = {}
    for i in range(4):
        tensors[f"l{i}.a.weight"] = ("F32", rng.standard_normal((384, 384)).astype(np.float32))
        for part in ("a.bias", "b.bias", "norm.weight", "norm.bias"):
            tensors[f"l{i}.{part}"] = ("F32", rng.standard_normal(1536).astype(np.float32))
    ingest_folder(vault, make_repo(tmp_path / "a", {"model.safetensors": safetensors_bytes(tensors)}), "org/a")
    body = b"".join(a.tobytes() for _, (_, a) in sorted(tensors.items()))  # safetensors_bytes' order
    blob = b"WEIGHTS1" + os.urandom(500) + body
    src = make_repo(tmp_path / "b", {"weights.bin1": blob})
    result = ingest_folder(vault, src, "org/b")
    small = sum(a.nbytes for n, (_, a) in tensors.items() if a.nbytes < 64 * 1024)
    assert result.new_stored_bytes < 0.1 * small  # the header's bytes, not the small tensors'
    restore(vault, "org/b", "main", tmp_path / "out")
    assert tree_sha256(tmp_path / "out") == tree_sha256(src)


def test_opaque_files_share_chunks_and_gc_keeps_what_is_referenced(vault, tmp_path):
    body = os.urandom(1_500_000)
    one = make_repo(tmp_path / "1", {"data.bin": b"v1" + body + b"tail one"})
    two = make_repo(tmp_path / "2", {"data.bin": b"version 2 header" + body[:700_000] + b"edit" + body[700_000:]})
    ingest_folder(vault, one, "org/one")
    second = ingest_folder(vault, two, "org/two")
    assert second.new_stored_bytes < 400_000  # the edit and the chunks around it
    with vault.catalog.write_session() as s:
        delete_repo(s, "org/one")
    collect(vault.catalog, vault.backend, grace=timedelta(0))
    restore(vault, "org/two", "main", tmp_path / "out")
    assert tree_sha256(tmp_path / "out") == tree_sha256(two)
    with vault.catalog.read_session() as s:
        assert s.scalar(select(func.count()).select_from(Chunk)) > 0


def test_embedding_grown_by_new_rows_references_the_stored_rows(vault, tmp_path):
    rng = np.random.default_rng(5)
    emb = (rng.standard_normal((4000, 128)) * 0.02).astype(np.float32)  # 2 MB
    other = (rng.standard_normal((128, 128)) * 0.02).astype(np.float32)
    ingest_folder(vault, make_repo(tmp_path / "a", {"model.safetensors": safetensors_bytes(
        {"emb": ("F32", emb), "w": ("F32", other)})}), "org/base")
    grown = np.concatenate([emb, (rng.standard_normal((50, 128)) * 0.02).astype(np.float32)])
    src = make_repo(tmp_path / "b", {"model.safetensors": safetensors_bytes({"emb": ("F32", grown), "w": ("F32", other)})})
    result = ingest_folder(vault, src, "org/grown")
    assert result.new_stored_bytes < 50 * 128 * 4 * 1.1 + 2000  # the new rows, not the whole embedding
    restore(vault, "org/grown", "main", tmp_path / "out")
    assert tree_sha256(tmp_path / "out") == tree_sha256(src)
    assert verify(vault).ok


def test_references_into_objects_survive_a_catalog_rebuild(vault, tmp_path):
    """Segments that start inside an object (segments.object_offset) are journaled and recovered."""
    from test_recover import drop_catalog
    from weightvault.store.recover import rebuild, scan
    tensors = _tensors(1)
    ingest_folder(vault, make_repo(tmp_path / "a", {"model.safetensors": safetensors_bytes(tensors)}), "org/a")
    body = b"".join(a.tobytes() for _, a in tensors.values())[100_000:]  # starts inside the first tensor
    src = make_repo(tmp_path / "b", {"w.bin": b"HDR" + os.urandom(9000) + body})
    ingest_folder(vault, src, "org/b")
    with vault.catalog.read_session() as s:
        assert s.scalar(select(func.max(Segment.object_offset))) > 0
    fresh = drop_catalog(vault)
    assert rebuild(fresh.catalog, scan(fresh.backend)).problems == []
    restore(fresh, "org/b", "main", tmp_path / "out")
    assert tree_sha256(tmp_path / "out") == tree_sha256(src)
    fresh.close()
