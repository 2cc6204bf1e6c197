"""dedup/formats/torchzip.py: torch zips split into tensor/raw segments, exactly, without unpickling."""
from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from weightvault.dedup.formats.torchzip import Segment, parse_torch_zip, storage_dtypes

torch = pytest.importorskip("torch")

@pytest.fixture(scope="module")
def series(checkpoint_series) -> Path:
    return checkpoint_series


def check_cover(data: bytes, segs: list[Segment]) -> None:
    pos = 0
    for s in segs:
        assert s.offset == pos and s.length > 0 and s.kind in ("tensor", "raw")
        assert s.dtype is None or s.kind == "tensor"
        pos += s.length
    assert pos == len(data)
    assert b"".join(data[s.offset:s.offset + s.length] for s in segs) == data


def saved(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def test_optimizer_pt_segments(series):
    from safetensors.numpy import load_file
    for ck in ("checkpoint-10", "checkpoint-20"):
        data = (series / ck / "optimizer.pt").read_bytes()
        segs = parse_torch_zip(data)
        check_cover(data, segs)
        tensors = [s for s in segs if s.kind == "tensor"]
        assert tensors and all(s.dtype == "F32" for s in tensors)
        assert sum(s.length for s in tensors) > 0.95 * len(data)
        # every Adam moment in optimizer.safetensors is one of the storages, byte for byte
        blobs = {data[s.offset:s.offset + s.length] for s in tensors}
        moments = load_file(str(series / ck / "optimizer.safetensors"))
        assert all(v.tobytes() in blobs for v in moments.values())


def test_dtypes_from_the_pickle():
    t = {"f32": torch.randn(7), "bf16": torch.randn(5, dtype=torch.bfloat16), "f16": torch.randn(3).half(),
         "i64": torch.arange(4), "i32": torch.arange(6, dtype=torch.int32), "u8": torch.ones(9, dtype=torch.uint8),
         "b": torch.tensor([True, False]), "f64": torch.randn(2, dtype=torch.float64),
         "shared": None, "empty": torch.empty(0)}
    t["shared"] = t["f32"][2:]                         # a view: same storage, no second entry
    data = saved(t)
    segs = parse_torch_zip(data)
    check_cover(data, segs)
    got = sorted((s.dtype, s.length) for s in segs if s.kind == "tensor")
    assert got == sorted([("F32", 28), ("BF16", 10), ("F16", 6), ("I64", 32), ("I32", 24), ("U8", 9),
                          ("BOOL", 2), ("F64", 16)])


def test_pickle_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    data = saved({"x": torch.ones(4), "evil": Evil()})
    segs = parse_torch_zip(data)
    check_cover(data, segs)
    assert not marker.exists()
    assert [s.dtype for s in segs if s.kind == "tensor"] == ["F32"]


def test_storage_dtypes_on_garbage_pickles():
    assert storage_dtypes(pickle.dumps({"a": 1})) == {}
    with pytest.raises(Exception):
        storage_dtypes(b"\x80\x02garbage")


def _zip(entries: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as z:
        for name, body in entries.items():
            z.writestr(name, body)
    return buf.getvalue()


def test_plain_stored_zip_with_unknown_pickle():
    data = _zip({"arch/data.pkl": pickle.dumps([1, 2]), "arch/data/0": b"\x01" * 40, "arch/version": b"3\n"})
    segs = parse_torch_zip(data)
    check_cover(data, segs)
    assert [(s.kind, s.dtype, s.length) for s in segs if s.kind == "tensor"] == [("tensor", None, 40)]


def _central(data: bytes) -> int:
    return data.rfind(b"PK\x01\x02")


def test_unsafe_zips_raise():
    good = saved({"x": torch.ones(100)})
    with pytest.raises(ValueError, match="compressed"):
        parse_torch_zip(_zip({"a/data.pkl": pickle.dumps(1), "a/data/0": b"\0" * 1000}, zipfile.ZIP_DEFLATED))
    with pytest.raises(ValueError, match="encrypted"):
        bad = bytearray(good)
        cd = good.find(b"PK\x01\x02")
        bad[cd + 8] |= 0x01                                    # general purpose flag: encrypted
        parse_torch_zip(bytes(bad))
    with pytest.raises(ValueError):
        bad = bytearray(good)
        cd = _central(good)
        bad[cd + 42:cd + 46] = struct.pack("<I", len(good) + 10)  # local header offset past the end
        parse_torch_zip(bytes(bad))
    with pytest.raises(ValueError, match="overlap|local header"):
        bad = bytearray(good)
        first = good.find(b"PK\x01\x02")
        (off0,) = struct.unpack_from("<I", good, first + 42)
        cd = _central(good)
        bad[cd + 42:cd + 46] = struct.pack("<I", off0)           # two entries share a local header
        parse_torch_zip(bytes(bad))
    with pytest.raises(ValueError):
        parse_torch_zip(good[:-30])                              # truncated
    with pytest.raises(ValueError):
        parse_torch_zip(b"not a zip at all" * 10)
    with pytest.raises(ValueError):
        parse_torch_zip(b"")


def test_overlapping_data_raises():
    a, b = b"\x11" * 64, b"\x22" * 64
    data = bytearray(_zip({"m/data.pkl": pickle.dumps(0), "m/data/0": a, "m/data/1": b}))
    # grow entry 0's sizes in the central directory so its data runs over entry 1's header
    pos = data.find(b"PK\x01\x02")
    while pos >= 0:
        (nlen,) = struct.unpack_from("<H", data, pos + 28)
        if bytes(data[pos + 46:pos + 46 + nlen]) == b"m/data/0":
            data[pos + 20:pos + 28] = struct.pack("<II", 200, 200)
        pos = data.find(b"PK\x01\x02", pos + 4)
    with pytest.raises(ValueError, match="overlap|central directory"):
        parse_torch_zip(bytes(data))


def test_random_corruption_never_crashes():
    good = saved({"x": torch.ones(64), "y": torch.arange(3)})
    rng = np.random.default_rng(0)
    for _ in range(300):
        bad = bytearray(good)
        for i in rng.integers(0, len(bad), 4):
            bad[i] = int(rng.integers(0, 256))
        try:
            segs = parse_torch_zip(bytes(bad))
        except ValueError:
            continue
        check_cover(bytes(bad), segs)
