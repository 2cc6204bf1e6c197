"""Codec "ckpt": checkpoint N coded against checkpoint N-1, bit-exact, frame by frame.

The real series comes from /work/shared/data/make_checkpoints.py (a tiny run, ~20 s);
the rest are small synthetic tensors, special values and hostile payloads.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import weightvault.codec as C
from weightvault.codec import CodecError, base_range, decode_frame, encode_frames, frame_info
from weightvault.codec import ckpt
from weightvault.codec._lib import ffi, lib

CODES = {"F32": 2, "F16": 3, "BF16": 4}


@pytest.fixture(scope="module")
def series(checkpoint_series) -> Path:
    return checkpoint_series


def read_safetensors(path: Path) -> dict[str, tuple[str, bytes]]:
    """name -> (dtype, raw bytes), parsed by hand (the header is JSON)."""
    data = path.read_bytes()
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    return {k: (v["dtype"], body[v["data_offsets"][0]:v["data_offsets"][1]])
            for k, v in header.items() if k != "__metadata__"}


def roundtrip(cur: bytes, prev: bytes, dtype: str, base_dtype: str | None = None) -> list[bytes]:
    base_dtype = base_dtype or dtype
    frames = encode_frames(cur, dtype, codec="ckpt", base=prev, base_dtype=base_dtype)
    out = bytearray()
    pos = 0
    for f in frames:
        info = frame_info(f)
        b = None
        if info.needs_base:
            off, length = base_range(pos, info.raw_size, dtype, base_dtype)
            b = prev[off:off + length]
        out += decode_frame(f, base=b)
        pos += info.raw_size
    assert bytes(out) == cur
    return frames


@pytest.mark.parametrize("fname", ["model.safetensors", "optimizer.safetensors"])
def test_series_roundtrip_every_tensor(series, fname):
    prev = read_safetensors(series / "checkpoint-10" / fname)
    cur = read_safetensors(series / "checkpoint-20" / fname)
    assert prev.keys() == cur.keys()
    coded = raw = 0
    for name, (dtype, data) in cur.items():
        assert prev[name][0] == dtype == "F32"
        frames = roundtrip(data, prev[name][1], dtype)
        coded += sum(len(f) for f in frames)
        raw += len(data)
        # the whole container path decodes too
        assert bytes(C.decode(C.encode(data, dtype, codec="ckpt", base=prev[name][1]), base=prev[name][1])) == data
    assert coded < raw  # it compresses (ratio measured by bench/checkpoints.py)


def test_series_frames_are_ckpt(series):
    prev = read_safetensors(series / "checkpoint-10" / "model.safetensors")
    cur = read_safetensors(series / "checkpoint-20" / "model.safetensors")
    name = max(cur, key=lambda k: len(cur[k][1]))
    frames = encode_frames(cur[name][1], "F32", codec="ckpt", base=prev[name][1])
    assert all(frame_info(f).codec == "ckpt" and frame_info(f).needs_base for f in frames)


def _drift(n: int, seed: int, dtype=np.float32):
    rng = np.random.default_rng(seed)
    prev = (rng.standard_normal(n) * 0.02).astype(np.float32)
    cur = prev + (rng.standard_normal(n) * 1e-3).astype(np.float32)
    return cur.astype(dtype), prev.astype(dtype)


@pytest.mark.parametrize("mode", [ckpt.MODE_AUTO, ckpt.MODE_XOR, ckpt.MODE_MAG, ckpt.MODE_MAG | ckpt.MODE_NEG_RAW,
                                  ckpt.MODE_XOR | ckpt.MODE_FLIP_RAW,
                                  ckpt.MODE_MAG | ckpt.MODE_NEG_RAW | ckpt.MODE_FLIP_RAW])
@pytest.mark.parametrize("dtype", ["F32", "BF16", "F16"])
def test_modes_and_dtypes_multi_frame(mode, dtype):
    n = C.FRAME_SIZE // 2 + 1234                      # several frames of any dtype, last one partial
    cur, prev = _drift(n, 1)
    if dtype == "BF16":
        cur, prev = (np.frombuffer(cur.tobytes(), np.uint32) >> 16).astype(np.uint16), \
                    (np.frombuffer(prev.tobytes(), np.uint32) >> 16).astype(np.uint16)
    elif dtype == "F16":
        cur, prev = cur.astype(np.float16), prev.astype(np.float16)
    codec = ckpt.CkptCodec(mode)
    cb, pb = cur.tobytes(), prev.tobytes()
    payload = codec.encode(memoryview(cb), dtype, memoryview(pb), dtype)
    assert payload is not None and len(payload) < len(cb)
    if mode != ckpt.MODE_AUTO:
        assert ckpt.payload_mode(payload) & ~ckpt.MODE_NO_FLIP == mode
    out = bytearray(len(cb))
    codec.decode(memoryview(payload), memoryview(out), dtype, memoryview(pb), dtype)
    assert bytes(out) == cb
    frames = roundtrip(cb, pb, dtype)
    assert len(frames) > 1
    # a middle frame decodes alone, given only its own base range
    k = 4 if dtype == "F32" else 2
    off, length = base_range(C.FRAME_SIZE, frame_info(frames[1]).raw_size, dtype, dtype)
    assert bytes(decode_frame(frames[1], base=pb[off:off + length])) == cb[C.FRAME_SIZE:C.FRAME_SIZE + length]
    assert length % k == 0


@pytest.mark.parametrize("dtype,base_dtype", [("BF16", "F32"), ("F16", "F32"), ("F32", "BF16"), ("F32", "F16")])
def test_base_of_another_dtype(dtype, base_dtype):
    torch = pytest.importorskip("torch")
    cur32, prev32 = _drift(50_000, 2)
    t = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
    cur = torch.from_numpy(cur32).to(t[dtype]).view(torch.uint8).numpy().tobytes()
    prev = torch.from_numpy(prev32).to(t[base_dtype]).view(torch.uint8).numpy().tobytes()
    frames = roundtrip(cur, prev, dtype, base_dtype)
    assert frame_info(frames[0]).codec == "ckpt" and frame_info(frames[0]).base_dtype == base_dtype


def test_no_sign_change_skips_flips():
    rng = np.random.default_rng(8)
    prev = (rng.random(40_000) * 1e-6).astype(np.float32)          # like exp_avg_sq: never negative
    cur = (prev * 0.9 + (rng.random(40_000) * 1e-7).astype(np.float32)).astype(np.float32)
    cb, pb = cur.tobytes(), prev.tobytes()
    codec = ckpt.CkptCodec()
    payload = codec.encode(memoryview(cb), "F32", memoryview(pb), "F32")
    assert ckpt.payload_mode(payload) & ckpt.MODE_NO_FLIP
    roundtrip(cb, pb, "F32")
    flipped = cur.copy()
    flipped[12345] = -flipped[12345]                                # one sign change: flag off
    fb = flipped.tobytes()
    assert not ckpt.payload_mode(codec.encode(memoryview(fb), "F32", memoryview(pb), "F32")) & ckpt.MODE_NO_FLIP
    roundtrip(fb, pb, "F32")


def test_special_values_and_identical():
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 3.4e38, -3.4e38, 1.0, -1.0],
                        dtype=np.float32)
    bits = np.frombuffer(specials.tobytes(), np.uint32)
    extra = np.array([0x7FC00001, 0xFFFFFFFF, 0x80000000, 0x00000001, 0x7F800001], dtype=np.uint32)
    vals = np.concatenate([bits, extra])
    rng = np.random.default_rng(3)
    cur = rng.choice(vals, 20_000).astype(np.uint32)
    prev = rng.choice(vals, 20_000).astype(np.uint32)
    roundtrip(cur.tobytes(), prev.tobytes(), "F32")
    roundtrip(cur.tobytes(), cur.tobytes(), "F32")                 # unchanged tensor
    z = np.zeros(70_000, np.float32).tobytes()
    frames = roundtrip(z, z, "F32")
    assert sum(map(len, frames)) < 2_000                           # nothing changed: almost nothing stored
    for dtype in ("BF16", "F16"):
        c16 = (cur & 0xFFFF).astype(np.uint16).tobytes()
        p16 = (prev >> 16).astype(np.uint16).tobytes()
        roundtrip(c16, p16, dtype)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["F32", "BF16", "F16"]), st.binary(min_size=0, max_size=3000), st.binary(min_size=0, max_size=3000))
def test_any_bit_patterns(dtype, a, b):
    k = 4 if dtype == "F32" else 2
    n = min(len(a), len(b)) // k * k
    if n == 0:
        return
    cur, prev = a[:n], b[:n]
    cap = lib.wv_ckpt_bound(n)
    out = ffi.new("uint8_t[]", cap)
    for mode in (1, 2, 6, 17, 22):
        r = lib.wv_ckpt_encode(out, cap, cur, prev, n, CODES[dtype], CODES[dtype], mode)
        assert not lib.wv_isError(r)
        dst = ffi.new("uint8_t[]", n)
        assert lib.wv_ckpt_decode(dst, n, out, r, prev, CODES[dtype], CODES[dtype]) == n
        assert ffi.buffer(dst, n)[:] == cur


# ---- hostile payloads: straight into the C decoder, no CRC in front ----

def _decode_raw(payload: bytes, n: int, base: bytes, dtype: str) -> int:
    dst = ffi.new("uint8_t[]", n + 64)
    guard = bytes(ffi.buffer(dst)[n:])
    r = lib.wv_ckpt_decode(dst, n, payload, len(payload), base, CODES[dtype], CODES[dtype])
    assert bytes(ffi.buffer(dst)[n:]) == guard          # nothing written past n
    return r


def test_hostile_payloads_are_rejected_or_contained():
    cur, prev = _drift(20_000, 4)
    cb, pb = cur.tobytes(), prev.tobytes()
    payload = ckpt.CkptCodec().encode(memoryview(cb), "F32", memoryview(pb), "F32")
    n = len(cb)
    assert _decode_raw(payload, n, pb, "F32") == n
    # truncations: every one is an error, never a crash
    for cut in list(range(0, 12)) + [len(payload) // 2, len(payload) - 1]:
        assert lib.wv_isError(_decode_raw(payload[:cut], n, pb, "F32"))
    # bad mode byte, lengths pointing outside the payload
    for patch in (b"\x00", b"\x03", b"\x05", b"\x07", b"\x1a", b"\x20", b"\xff"):
        assert lib.wv_isError(_decode_raw(patch + payload[1:], n, pb, "F32"))
    for field in (1, 5):
        bad = bytearray(payload)
        bad[field:field + 4] = struct.pack("<I", 0xFFFFFFF0)
        assert lib.wv_isError(_decode_raw(bytes(bad), n, pb, "F32"))
    # random corruption and garbage: error or some output, always in bounds
    rng = np.random.default_rng(5)
    for _ in range(200):
        bad = bytearray(payload)
        for i in rng.integers(0, len(bad), 3):
            bad[i] ^= 1 << int(rng.integers(0, 8))
        _decode_raw(bytes(bad), n, pb, "F32")
    for size in (9, 10, 64, 1000):
        for dtype in ("F32", "BF16"):
            junk = bytes([2]) + rng.integers(0, 256, size - 1, dtype=np.uint8).tobytes()
            _decode_raw(junk, n, pb, dtype)


def test_frame_layer_rejects_wrong_base_and_corruption():
    cur, prev = _drift(30_000, 6)
    cb, pb = cur.tobytes(), prev.tobytes()
    (frame,) = encode_frames(cb, "F32", codec="ckpt", base=pb)
    with pytest.raises(CodecError):
        decode_frame(frame)                                       # no base
    with pytest.raises(CodecError):
        decode_frame(frame, base=pb[:-4])                         # wrong size
    wrong = bytearray(pb)
    wrong[100] ^= 0x40
    with pytest.raises(CodecError):
        decode_frame(frame, base=bytes(wrong))                    # another base: raw CRC catches it
    bad = bytearray(frame)
    bad[-10] ^= 0x01
    with pytest.raises(CodecError):
        decode_frame(bytes(bad), base=pb)


def test_no_base_or_other_dtype_falls_back():
    data = np.arange(1000, dtype=np.int32).tobytes()
    assert ckpt.CkptCodec().encode(memoryview(data), "I32", memoryview(data), "I32") is None
    assert ckpt.CkptCodec().encode(memoryview(data), "F32", None, None) is None
    frames = encode_frames(data, "I32", codec="ckpt", base=data)
    assert bytes(decode_frame(frames[0], base=data if frame_info(frames[0]).needs_base else None)) == data


def test_threads_give_the_same_frames():
    cur, prev = _drift(3 * C.FRAME_SIZE // 4 + 17, 7)
    cb, pb = cur.tobytes(), prev.tobytes()
    one = encode_frames(cb, "F32", codec="ckpt", base=pb)
    two = encode_frames(cb, "F32", codec="ckpt", base=pb, threads=2)
    assert one == two and len(one) == 4
    assert bytes(C.decode(C.encode(cb, "F32", codec="ckpt", base=pb), base=pb, threads=2)) == cb
