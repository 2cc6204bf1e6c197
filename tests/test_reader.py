"""The read path on delta-coded files: byte ranges that cut frames, cross frame and tensor
boundaries, and land in a member whose frames are coded against a base of another dtype."""
from __future__ import annotations

import random

import numpy as np
import pytest
from sqlalchemy import select

from weightvault import codec
from weightvault.dedup import reader as reader_mod
from weightvault.dedup.base_cache import BaseCache
from weightvault.dedup.commits import resolve, tree_of
from weightvault.dedup.ingest import ingest_folder
from weightvault.dedup.reader import Reader
from weightvault.errors import IntegrityError
from weightvault.store.models import Frame, Object, Pack

from helpers import make_repo, safetensors_bytes

ELEMS = 3 * codec.FRAME_SIZE // 4 + 1000  # an F32 tensor of three frames and a bit; its BF16 cast spans two


def _weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"layer.{i}.weight": (rng.standard_normal(ELEMS) * 0.02).astype(np.float32) for i in range(3)}


def _bf16(a: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even F32 -> BF16 bits, as a cast by torch does."""
    bits = a.view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def _store_pair(vault, tmp_path, base: bytes, member: bytes):
    """org/base and org/ft (its card names the base), each one model.safetensors: the member's
    stored file and the codecs of the objects coded against a base."""
    make_repo(tmp_path / "base", {"model.safetensors": base})
    make_repo(tmp_path / "ft", {"model.safetensors": member, "README.md": b"---\nbase_model: org/base\n---\n"})
    ingest_folder(vault, tmp_path / "base", "org/base")
    ingest_folder(vault, tmp_path / "ft", "org/ft")
    with vault.catalog.read_session() as s:
        file = tree_of(s, resolve(s, "org/ft", "main", "model").commit)["model.safetensors"]
        return file, s.scalars(select(Object.codec).where(Object.base_id.is_not(None))).all()


@pytest.fixture
def family(vault, tmp_path):
    """A FP32 base and a BF16 fine-tune of it (card names the base): the member is xor-coded."""
    base = _weights(0)
    tuned = {k: v + (np.random.default_rng(1).standard_normal(v.shape) * 1e-4).astype(np.float32)
             for k, v in base.items()}
    member = safetensors_bytes({k: ("BF16", _bf16(v)) for k, v in tuned.items()})
    file, deltas = _store_pair(vault, tmp_path, safetensors_bytes({k: ("F32", v) for k, v in base.items()}), member)
    assert deltas and set(deltas) == {"xor"}, "the fine-tune must be delta-coded for this test to mean anything"
    return file, member


def _read(vault, file_id: int, start: int, end: int) -> bytes:
    return b"".join(bytes(p) for p in Reader(vault).iter_file(file_id, start, end))


def test_ranges_across_delta_frame_boundaries(vault, family):
    file, member = family
    header = len(member) - 3 * 2 * ELEMS
    tensor_bytes = 2 * ELEMS
    edges = [header + t * tensor_bytes + f * codec.FRAME_SIZE for t in range(3) for f in range(2)]
    cases = [(e - d, e + d2) for e in edges for d, d2 in ((1, 1), (2, 6), (4096, 17), (0, codec.FRAME_SIZE))]
    rnd = random.Random(7)
    cases += [tuple(sorted(rnd.sample(range(len(member) + 1), 2))) for _ in range(40)]
    for start, end in cases:
        start, end = max(start, 0), min(end, len(member))
        assert _read(vault, file.id, start, end) == member[start:end], (start, end)


def test_whole_file_with_cold_and_warm_base_cache(vault, family, monkeypatch):
    file, member = family
    monkeypatch.setattr(reader_mod, "_bases", BaseCache(codec.FRAME_SIZE))  # room for one unit
    assert b"".join(bytes(p) for p in Reader(vault).verified_file(file)) == member
    monkeypatch.setattr(reader_mod, "_bases", BaseCache(64 << 20))
    for _ in range(2):  # cold, then every base frame from the cache
        assert b"".join(bytes(p) for p in Reader(vault).verified_file(file, once=True)) == member


def test_small_chunks_keep_order(vault, family, monkeypatch):
    """Many chunks in flight on the pool still come back in file order."""
    file, member = family
    monkeypatch.setattr(reader_mod, "CHUNK_BYTES", 1)
    monkeypatch.setattr(reader_mod, "FIRST_CHUNK_BYTES", 1)
    assert _read(vault, file.id, 0, len(member)) == member


def test_object_range_of_a_delta_object(vault, family):
    file, member = family
    with vault.catalog.read_session() as s:
        obj = s.scalars(select(Object).where(Object.base_id.is_not(None))).first()
    data = bytes(Reader(vault).object_range(obj.id, 0, obj.raw_size))
    assert data in member and len(data) == obj.raw_size


@pytest.mark.slow
def test_http_range_across_a_delta_frame_boundary(vault, family, tmp_path):
    from test_api_rest import running, store_env

    file, member = family
    edge = len(member) - 3 * 2 * ELEMS + codec.FRAME_SIZE
    with running(store_env(tmp_path / "store")) as server, server.client("read") as c:
        for start, end in ((edge - 5, edge + 5), (edge - codec.FRAME_SIZE - 3, edge + 2 * codec.FRAME_SIZE)):
            r = c.get("/org/ft/resolve/main/model.safetensors", headers={"Range": f"bytes={start}-{end - 1}"})
            assert r.status_code == 206 and r.content == member[start:end]
        assert c.get("/org/ft/resolve/main/model.safetensors").content == member


def test_member_wider_than_its_base(vault, tmp_path):
    """An FP32 member of a BF16 base: each member frame needs half of a base frame, so base frames
    are cut, decoded whole once and shared by the two member frames over them."""
    base = {k: _bf16(v) for k, v in _weights(2).items()}
    tuned = {k: (v.astype(np.uint32) << 16).view(np.float32) + np.float32(1e-6) for k, v in base.items()}
    member = safetensors_bytes({k: ("F32", v) for k, v in tuned.items()})
    file, deltas = _store_pair(vault, tmp_path, safetensors_bytes({k: ("BF16", v) for k, v in base.items()}), member)
    if not deltas:
        pytest.skip("the FP32 member was not delta-coded against its BF16 base")
    for start, end in ((0, len(member)), (len(member) // 3, len(member) // 3 + codec.FRAME_SIZE + 9)):
        assert _read(vault, file.id, start, end) == member[start:end]


def test_base_held_once_per_dtype_its_members_read_it_in(vault, tmp_path, monkeypatch):
    """A BF16 cast and an FP32 fine-tune of one FP32 base, read in either order: the cache holds
    the base once in FP32 and once cast to BF16, and a second read decodes no base frame."""
    base = _weights(3)
    make_repo(tmp_path / "base", {"model.safetensors": safetensors_bytes({k: ("F32", v) for k, v in base.items()})})
    ingest_folder(vault, tmp_path / "base", "org/base")
    members = {
        "org/cast": safetensors_bytes({k: ("BF16", _bf16(v + np.float32(1e-5))) for k, v in base.items()}),
        "org/f32": safetensors_bytes({k: ("F32", v + np.float32(1e-6)) for k, v in base.items()}),
    }
    for repo, data in members.items():
        make_repo(tmp_path / repo, {"model.safetensors": data, "README.md": b"---\nbase_model: org/base\n---\n"})
        ingest_folder(vault, tmp_path / repo, repo)
    with vault.catalog.read_session() as s:
        files = {repo: tree_of(s, resolve(s, repo, "main", "model").commit)["model.safetensors"] for repo in members}
        deltas = s.scalars(select(Object.codec).where(Object.base_id.is_not(None))).all()
    assert deltas, "the members must be delta-coded for this test to mean anything"
    base_bytes = sum(v.nbytes for v in base.values())
    for order in (["org/cast", "org/f32"], ["org/f32", "org/cast"]):
        monkeypatch.setattr(reader_mod, "_bases", BaseCache(64 << 20))
        for repo in order:
            assert _read(vault, files[repo].id, 0, len(members[repo])) == members[repo]
        held = reader_mod._bases.held
        assert held == base_bytes + base_bytes // 2
        for repo in order:
            assert _read(vault, files[repo].id, 0, len(members[repo])) == members[repo]
        assert reader_mod._bases.held == held


def test_a_damaged_frame_in_a_run_of_delta_frames_is_named(vault, family, monkeypatch):
    """Neighbouring delta frames of a member decode in one call; a damaged one is still named."""
    file, member = family
    with vault.catalog.read_session() as s:
        rows = s.execute(select(Object.digest, Pack.name, Frame.pack_offset, Frame.size)
                         .join(Frame, Frame.object_id == Object.id).join(Pack, Pack.id == Frame.pack_id)
                         .where(Object.base_id.is_not(None), Frame.codec == "xor", Frame.seq == 1)).all()
    for digest, pack, offset, size in rows:  # the second frame of every tensor: payload CRCs no longer match
        path = vault.backend._path(pack)
        data = bytearray(path.read_bytes())
        data[offset + size - 5] ^= 0x40
        path.write_bytes(bytes(data))
    # chunks of 16 frames from the start, so that the first tensor's two frames are one run
    monkeypatch.setattr(reader_mod, "FIRST_CHUNK_BYTES", reader_mod.CHUNK_BYTES)
    monkeypatch.setattr(reader_mod, "_bases", BaseCache(64 << 20))
    with pytest.raises(IntegrityError, match=r"frame 1 \(pack") as exc:
        _read(vault, file.id, 0, len(member))
    assert any(digest[:16] in str(exc.value) for digest, *_ in rows)


def test_chunk_buffers_are_reused_only_when_no_view_is_left():
    pool = reader_mod._Buffers(1024, 2)
    a = pool.take(1000)
    a[:] = b"a" * 1000
    held = a[10:20]  # a consumer keeping part of a chunk (a socket's pending bytes)
    del a
    b = pool.take(1024)
    assert bytes(held) == b"a" * 10  # not handed out again while a view of it lives
    b[:] = b"b" * 1024
    del held, b
    c = pool.take(512)
    assert bytes(c[:4]) == b"aaaa"  # the first buffer again, once nothing refers to it
    assert len(pool.take(4096)) == 4096  # larger than the pool's buffers: a new one


def test_a_read_that_keeps_no_base(vault, family, monkeypatch):
    """``keep_bases=False`` (restore): the same bytes, any range, and nothing left in the cache."""
    file, member = family
    monkeypatch.setattr(reader_mod, "_bases", BaseCache(64 << 20))
    reader = Reader(vault, keep_bases=False)
    assert b"".join(bytes(p) for p in reader.verified_file(file)) == member
    for start, end in ((5, 70000), (len(member) // 2, len(member))):
        assert b"".join(bytes(p) for p in reader.iter_file(file.id, start, end)) == member[start:end]
    assert reader_mod._bases.held == 0



def test_a_read_that_keeps_no_base_decodes_it_in_pooled_buffers(vault, tmp_path, monkeypatch):
    """Without the cache, a BF16 member's F32 base is handed over uncast, twice the member's bytes:
    runs of member frames stop where their base would outgrow a pooled buffer, so every base fits
    one (a larger one would be a fresh allocation, its pages faulted in on every run)."""
    base = (np.random.default_rng(0).standard_normal(5 * codec.FRAME_SIZE // 2) * 0.02).astype(np.float32)
    tuned = base + (np.random.default_rng(1).standard_normal(base.shape) * 1e-4).astype(np.float32)
    member = safetensors_bytes({"w": ("BF16", _bf16(tuned))})  # five BF16 frames
    file, deltas = _store_pair(vault, tmp_path, safetensors_bytes({"w": ("F32", base)}), member)
    assert set(deltas) == {"xor"}
    asked = []

    class Recording(reader_mod._Buffers):
        def take(self, n):
            asked.append(n)
            return super().take(n)
    # Chunks of two member frames (with the file's header in the first), in buffers of three frames.
    monkeypatch.setattr(reader_mod, "_buffers", Recording(3 * codec.FRAME_SIZE, 16))
    monkeypatch.setattr(reader_mod, "CHUNK_BYTES", 2 * codec.FRAME_SIZE)
    monkeypatch.setattr(reader_mod, "FIRST_CHUNK_BYTES", 2 * codec.FRAME_SIZE)
    reader = Reader(vault, keep_bases=False)
    assert b"".join(bytes(p) for p in reader.verified_file(file)) == member
    assert max(asked) <= 3 * codec.FRAME_SIZE
    assert b"".join(bytes(p) for p in reader.iter_file(file.id, 100, len(member) - 100)) == member[100:-100]
