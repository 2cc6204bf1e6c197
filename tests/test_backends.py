"""The local backend's reads: copies for small ranges, slices of kept whole-pack maps for large ones."""
from __future__ import annotations

import os

import pytest

from weightvault.errors import ObjectMissing
from weightvault.store import backends
from weightvault.store.backends import MAP_MIN_BYTES, LocalBackend


def _put(backend: LocalBackend, tmp_path, name: str, data: bytes) -> None:
    src = tmp_path / f"src-{name.replace('/', '-')}"
    src.write_bytes(data)
    backend.put_file(name, src)


def test_large_reads_share_one_map_and_small_ones_copy(tmp_path):
    backend = LocalBackend(tmp_path / "objects")
    data = bytes(range(256)) * (3 * MAP_MIN_BYTES // 256)
    _put(backend, tmp_path, "packs/aa/one", data)
    first = backend.view("packs/aa/one", 7, MAP_MIN_BYTES)
    second = backend.view("packs/aa/one", MAP_MIN_BYTES + 1, MAP_MIN_BYTES)
    assert first.obj is second.obj  # both slices of the one kept map
    assert bytes(first) == data[7:7 + MAP_MIN_BYTES]
    assert bytes(second) == data[MAP_MIN_BYTES + 1:2 * MAP_MIN_BYTES + 1]
    assert backend.read("packs/aa/one", 5, 10) == data[5:15]
    with pytest.raises(ObjectMissing):
        backend.view("packs/aa/one", 2 * MAP_MIN_BYTES + 1, MAP_MIN_BYTES)


def test_kept_maps_are_bounded_and_deleted_packs_let_go(tmp_path, monkeypatch):
    monkeypatch.setattr(backends, "MAP_CACHE_BYTES", 3 * MAP_MIN_BYTES)
    backend = LocalBackend(tmp_path / "objects")
    for name in ("a", "b"):
        _put(backend, tmp_path, f"packs/{name}", name.encode() * (2 * MAP_MIN_BYTES))
        backend.view(f"packs/{name}", 0, MAP_MIN_BYTES)
    assert backend._maps._bytes == 2 * MAP_MIN_BYTES  # "a" went first: both did not fit
    held = backend.view("packs/b", 0, MAP_MIN_BYTES)
    backend.delete("packs/b")
    assert backend._maps._bytes == 0
    assert bytes(held[:3]) == b"bbb"  # a view outlives its map's place in the cache
    with pytest.raises(ObjectMissing):
        backend.view("packs/b", 0, MAP_MIN_BYTES)


def test_a_pack_cut_short_or_gone_under_a_kept_map_is_missing_not_a_crash(tmp_path):
    backend = LocalBackend(tmp_path / "objects")
    _put(backend, tmp_path, "packs/c", b"c" * (3 * MAP_MIN_BYTES))
    assert bytes(backend.view("packs/c", 0, MAP_MIN_BYTES)[:1]) == b"c"  # the map is kept
    os.truncate(backend._path("packs/c"), MAP_MIN_BYTES)
    with pytest.raises(ObjectMissing):  # reading the kept map there would be SIGBUS
        backend.view("packs/c", 2 * MAP_MIN_BYTES, MAP_MIN_BYTES)
    backend._path("packs/c").unlink()
    with pytest.raises(ObjectMissing):
        backend.view("packs/c", 0, MAP_MIN_BYTES)
