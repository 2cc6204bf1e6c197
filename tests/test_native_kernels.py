"""Every SIMD kernel is bit-identical to its scalar reference, tails included."""
from __future__ import annotations

import numpy as np
import pytest

from weightvault import codec
from weightvault.codec import _lib
from weightvault.codec._native import ffi, lib
from weightvault.codec.dtypes import dtype_code
from weightvault.codec.registry import CODECS

SIZES = [0, 1, 2, 7, 31, 32, 33, 63, 64, 65, 255, 1000, 4097, 65537]


def test_crc32c_known_answer() -> None:
    assert lib.wv_crc32c(0, b"123456789", 9) == 0xE3069283
    assert lib.wv_crc32c_scalar(0, b"123456789", 9) == 0xE3069283
    assert lib.wv_crc32c(0, b"", 0) == 0


# 256..: the folding path (whole 256-byte steps, 64- and 16-byte remainders, tail bytes)
@pytest.mark.parametrize("size", SIZES + [256, 257, 271, 320, 336, 511, 3 * 8192 * 2 + 13, 300000])
def test_crc32c_hardware_matches_scalar(size: int) -> None:
    data = np.random.default_rng(size).integers(0, 256, size + 8, dtype=np.uint8).tobytes()
    for start in (0, 1, 3, 7):
        buf = data[start:start + size]
        assert lib.wv_crc32c(0, buf, len(buf)) == lib.wv_crc32c_scalar(0, buf, len(buf))
        # chaining: crc(a + b) == crc(crc(a), b)
        half = len(buf) // 2
        assert lib.wv_crc32c(lib.wv_crc32c(0, buf[:half], half), buf[half:], len(buf) - half) == \
            lib.wv_crc32c(0, buf, len(buf))


@pytest.mark.parametrize("k", [1, 2, 4, 8])
@pytest.mark.parametrize("rot", [0, 1])
@pytest.mark.parametrize("n", SIZES)
def test_split_merge_match_reference(k: int, rot: int, n: int) -> None:
    src = np.random.default_rng(n * 16 + k).integers(0, 256, n * k, dtype=np.uint8).tobytes()
    planes = [ffi.new("uint8_t[]", max(n, 1)) for _ in range(k)]
    ref = [ffi.new("uint8_t[]", max(n, 1)) for _ in range(k)]
    lib.wv_split(src, n, k, rot, ffi.new("uint8_t *[]", planes))
    lib.wv_split_ref(src, n, k, rot, ffi.new("uint8_t *[]", ref))
    assert [ffi.buffer(p, n)[:] for p in planes] == [ffi.buffer(p, n)[:] for p in ref]
    out, out_ref = bytearray(n * k), bytearray(n * k)
    lib.wv_merge(ffi.from_buffer(out), n, k, rot, ffi.new("uint8_t *[]", planes))
    lib.wv_merge_ref(ffi.from_buffer(out_ref), n, k, rot, ffi.new("uint8_t *[]", ref))
    assert bytes(out) == bytes(out_ref) == src
    if k == 2 and rot and n:  # plane 0 holds the exponent of BF16
        words = np.frombuffer(src, np.uint16)
        assert ffi.buffer(planes[0], n)[:] == ((words >> 7) & 0xFF).astype(np.uint8).tobytes()


@pytest.fixture
def kernels():
    """The rANS kernels this CPU has; restores the default afterwards."""
    available = [k for k in (0, 1, 2) if lib.wv_rans_select_kernel(k) == k]
    yield available
    lib.wv_rans_select_kernel(-1)


def _corpus() -> list[tuple[bytes, str, bytes | None]]:
    rng = np.random.default_rng(3)
    w = (rng.standard_normal(FRAME := 70001) * 0.02).astype(np.float32)
    bf16 = (w.view(np.uint32) >> 16).astype(np.uint16)
    tuned = ((w + rng.standard_normal(FRAME).astype(np.float32) * 1e-4).view(np.uint32) >> 16).astype(np.uint16)
    return [(w.tobytes(), "F32", None), (bf16.tobytes(), "BF16", None), (tuned.tobytes(), "BF16", w.tobytes()),
            (rng.integers(0, 4, 100003, dtype=np.uint8).tobytes(), None, None)]


def test_rans_kernels_identical(kernels) -> None:
    """Scalar (0), AVX2 (1) and AVX-512 (2) kernels write identical streams and decode each other's."""
    for data, dtype, base in _corpus():
        kw = {"codec": "xor", "base": base, "base_dtype": "F32"} if base else {}
        outputs = []
        for k in kernels:
            lib.wv_rans_select_kernel(k)
            outputs.append(codec.encode(data, dtype, **kw))
        assert all(o == outputs[0] for o in outputs), dtype
        for k in kernels:  # each kernel decodes every kernel's output
            lib.wv_rans_select_kernel(k)
            assert bytes(codec.decode(outputs[0], base=base)) == data


def test_dtype_tables_agree() -> None:
    """codec/dtypes.py and native/src/dtype.c code the same element sizes."""
    from weightvault.codec.dtypes import DTYPES, dtype_code, itemsize
    for name in DTYPES:
        assert lib.wv_dtype_size(dtype_code(name)) == itemsize(name), name
    assert lib.wv_dtype_size(0) == 1  # opaque bytes
    assert lib.wv_dtype_size(max(map(dtype_code, DTYPES)) + 1) == 0


@pytest.mark.parametrize("n", [0, 1, 2, 63, 64, 65, 127, 1000, 4097])
@pytest.mark.parametrize("escapes", [0, 3])
def test_pairs_expand_matches_reference(n: int, escapes: int) -> None:
    """PAIRS planes: the AVX2 expansion equals the scalar one, escapes and errors included."""
    rng = np.random.default_rng(n * 7 + escapes)
    nd = 12
    dict_ = rng.integers(0, 256, 16, dtype=np.uint8).tobytes()
    codes = rng.integers(0, nd, n + 1, dtype=np.uint8)
    if n:
        codes[rng.integers(0, n, escapes)] = 15
    codes[n] = 0  # padding code of an odd count
    m = (n + 1) // 2
    pairs = (codes[0:2 * m:2] << 4 | codes[1:2 * m + 1:2]).astype(np.uint8).tobytes() if m else b""
    esc = bytes(range(100, 100 + int((codes[:n] == 15).sum())))

    def expand(pairs_: bytes, esc_: bytes, ref: int):
        out = ffi.new("uint8_t[]", max(n, 1))
        src = ffi.new("uint8_t[]", pairs_ + bytes(64))
        e = ffi.new("uint8_t[]", esc_ + b"\0")
        cur = ffi.new("uint8_t **", e)
        rc = lib.wv_pairs_expand(out, n, src, dict_, nd, ffi.cast("const uint8_t **", cur), e + len(esc_), ref)
        return (None if lib.wv_isError(rc) else ffi.buffer(out, n)[:]), int(ffi.cast("uint8_t *", cur[0]) - e)

    it = iter(esc)
    want = bytes(next(it) if c == 15 else dict_[c] for c in codes[:n])
    assert expand(pairs, esc, 1) == expand(pairs, esc, 0) == (want, len(esc))
    if escapes and n > 1:  # too few escape bytes, or an invalid code: an error on both paths
        assert expand(pairs, esc[:-1], 0)[0] is None and expand(pairs, esc[:-1], 1)[0] is None
    if m:
        bad = bytes([pairs[0] & 0xF0 | 13]) + pairs[1:]
        if n > 1:
            assert expand(bad, esc, 0)[0] is None and expand(bad, esc, 1)[0] is None


def _distance_cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Members against F32 bases that exercise every symbol class of a distance payload:
    unchanged elements, small and large moves, sign changes through zero, NaN, inf."""
    rng = np.random.default_rng(11)
    n = 70001  # odd: a tail after the 8-element steps and unequal rANS halves
    base = (rng.standard_normal(n) * 0.02).astype(np.float32)
    base[:6] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40]
    scale = np.where(rng.random(n) < 0.5, 0, 10.0 ** rng.integers(-9, 1, n)).astype(np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        f32 = (base + rng.standard_normal(n).astype(np.float32) * scale).astype(np.float32)
    f32[6:9] = [-base[6], np.nan, -np.inf]
    bf16 = ((f32.view(np.uint32).astype(np.uint64) + 0x7FFF) >> 16).astype(np.uint16)
    with np.errstate(over="ignore"):
        f16 = f32.astype(np.float16)
    return [("F32", f32, base), ("BF16", bf16, base), ("F16", f16, base)]


@pytest.mark.parametrize("dtype,member,base", _distance_cases(), ids=["F32", "BF16", "F16"])
def test_distance_rebuild_kernels_identical(dtype, member, base) -> None:
    """The scalar, AVX2 and AVX-512 rebuild of distance payloads (frame version 3) decode the same frames
    to the member's exact bytes."""
    blob = codec.encode(member, dtype, codec="xor", base=base, base_dtype="F32")
    frames = list(codec.iter_frames(blob))
    assert {f[32 + 1] for f in frames} == {4}, "every frame is a distance payload (Plane_Flags MAG)"
    try:
        for k in [k for k in (0, 1, 2) if lib.wv_mag_select_kernel(k) == k]:
            lib.wv_mag_select_kernel(k)
            assert bytes(codec.decode(blob, base=base)) == member.tobytes(), k
    finally:
        lib.wv_mag_select_kernel(-1)


@pytest.mark.parametrize("dtype,member,base", _distance_cases(), ids=["F32", "BF16", "F16"])
@pytest.mark.parametrize("sparse", [0, 1, 2], ids=["sparse-off", "sparse-rule", "sparse-forced"])
def test_distance_encode_kernels_identical(dtype, member, base, sparse) -> None:
    """The scalar and AVX-512 encoders of distance symbols (codes, raw bits and the count of moved
    elements the sparse rule reads) write the same frames, which decode to the member's exact bytes:
    also for a near-identical member (mode SPARSE) and one whose length leaves a scalar tail."""
    near = member.copy()
    pred = np.empty(len(base), member.dtype)
    codec.cast(base, "F32", dtype, pred)
    near[:] = pred
    near[::97] = member[::97]
    ctx = lib.wv_ctx_create()
    try:
        for data in (member, near, member[:1000 + 13]):
            b = base[:len(data)]
            out = {}
            for k in [k for k in (0, 1, 2) if lib.wv_mag_select_kernel(k) == k]:
                lib.wv_mag_select_kernel(k)
                lib.wv_ctx_set_sparse(ctx, sparse)
                frames = []
                for off in range(0, len(data), 65536):
                    piece, bp = data[off:off + 65536], b[off:off + 65536]
                    cap = lib.wv_frame_bound(piece.nbytes)
                    buf = ffi.new("uint8_t[]", cap)
                    size = lib.wv_encode_frame(ctx, CODECS["xor"], buf, cap, ffi.from_buffer(piece), piece.nbytes,
                                               dtype_code(dtype), ffi.from_buffer(bp), bp.nbytes, dtype_code("F32"))
                    assert not lib.wv_isError(size)
                    frames.append(bytes(ffi.buffer(buf, size)))
                out[k] = frames
            assert len({tuple(f) for f in out.values()}) == 1
            lib.wv_mag_select_kernel(-1)
            for frame, off in zip(out[0], range(0, len(data), 65536)):
                bp = b[off:off + 65536]
                assert bytes(codec.decode_frame(frame, base=bp)) == data[off:off + 65536].tobytes()
    finally:
        lib.wv_mag_select_kernel(-1)
        lib.wv_ctx_free(ctx)


def test_distance_payload_codes_unchanged_frames_as_one_symbol() -> None:
    base = (np.random.default_rng(2).standard_normal(65536) * 0.02).astype(np.float32)
    (frame,) = codec.encode_frames(base, "F32", codec="xor", base=base)
    assert len(frame) == 32 + 2 + 9 + 1  # header, [count][flags], [mode][sizes], the symbol 0
    assert bytes(codec.decode_frame(frame, base=base)) == base.tobytes()


@pytest.mark.parametrize("moved", [0.004, 0.99], ids=["near-identical", "mostly-moved"])
def test_one_table_distance_kernels_identical(kernels, moved) -> None:
    """A member whose distance payloads have one rANS table (a near-identical BF16 member, coded
    in mode RANS: mode SPARSE off): the AVX-512 steps that skip the gather when all 16 lanes
    decode the table's top symbol (symbol 0, or another one when most elements moved) decode what
    the scalar reference does."""
    rng = np.random.default_rng(5)
    n = 200003
    base = (rng.standard_normal(n) * 0.02).astype(np.float32)
    pred = np.empty(n, np.uint16)
    codec.cast(base, "F32", "BF16", pred)
    up = np.where(pred >> 15, np.uint16(0xFFFF), np.uint16(1))  # one step up in value, either sign
    member = np.where(rng.random(n) < moved, pred + up, pred).astype(np.uint16)
    ctx = _lib.context().ctx
    lib.wv_ctx_set_sparse(ctx, 0)
    try:
        blob = codec.encode(member, "BF16", codec="xor", base=base, base_dtype="F32")
    finally:
        lib.wv_ctx_set_sparse(ctx, 1)
    frames = list(codec.iter_frames(blob))
    assert {f[32 + 2] for f in frames} == {2}, "mode RANS"
    assert {f[32 + 2 + 9] for f in frames} == {1}, "one table per frame"
    for k in kernels:
        lib.wv_rans_select_kernel(k)
        assert bytes(codec.decode(blob, base=base)) == member.tobytes(), k


def _f32_words() -> np.ndarray:
    """Every F32 high half with low halves at and around the BF16 rounding point (ties either
    side of an even or odd high half) and F16's (normal results), so every sign, exponent,
    quiet and signalling NaN, inf, denormal and -0 is there; then random words."""
    hi = np.arange(1 << 16, dtype=np.uint32) << 16
    lows = np.array([0, 1, 0x0FFF, 0x1000, 0x1001, 0x3000, 0x7FFF, 0x8000, 0x8001, 0xC000, 0xFFFF], np.uint32)
    rand = np.random.default_rng(13).integers(0, 1 << 32, 100003, dtype=np.uint64).astype(np.uint32)
    return np.concatenate([(hi[:, None] | lows).ravel(), rand])


def _bf16_rule(words: np.ndarray) -> np.ndarray:
    """docs/FORMAT.md, codec 3: round to nearest even, any NaN -> 0xFFFF."""
    out = ((words.astype(np.uint64) + 0x7FFF + ((words >> 16) & 1)) >> 16).astype(np.uint16)
    out[(words & 0x7FFFFFFF) > 0x7F800000] = 0xFFFF
    return out


@pytest.fixture
def cast_kernels():
    """The F32 -> BF16 / F16 kernels this CPU has; restores the default afterwards."""
    available = [k for k in (0, 1, 2) if lib.wv_cast_select_kernel(k) == k]
    yield available
    lib.wv_cast_select_kernel(-1)


@pytest.mark.parametrize("dtype", ["BF16", "F16"])
def test_f32_cast_kernels_follow_the_rule(cast_kernels, dtype) -> None:
    """Baseline, AVX2 and AVX-512 casts (vcvtne2ps2bf16, which zeroes denormals and keeps NaN
    payloads, plus its fix-up; vcvtps2ph) give the scalar rule bit for bit, at every length, tail
    and alignment.  BF16: docs/FORMAT.md's formula; F16: the scalar kernel, which agrees with
    numpy's RNE cast on every number."""
    words = _f32_words()
    lib.wv_cast_select_kernel(0)
    want = np.empty(len(words), np.uint16)
    codec.cast(words.view(np.float32), "F32", dtype, want)
    if dtype == "BF16":
        assert np.array_equal(want, _bf16_rule(words))
    else:
        num = (words & 0x7FFFFFFF) <= 0x7F800000
        with np.errstate(over="ignore"):
            assert np.array_equal(want[num], words[num].view(np.float32).astype(np.float16).view(np.uint16))
    raw = words.tobytes()
    for k in cast_kernels:
        lib.wv_cast_select_kernel(k)
        out = np.empty(len(words), np.uint16)
        codec.cast(words.view(np.float32), "F32", dtype, out)
        assert np.array_equal(out, want), k
        for start in (0, 1, 3, 40):  # unaligned element starts and byte offsets, every tail length
            for n in [*range(70), 1000, 4097]:
                src = bytearray(4 * n + 3)
                src[start % 4:start % 4 + 4 * n] = raw[4 * start:4 * (start + n)]
                dst = bytearray(2 * n + 2)
                codec.cast(memoryview(src)[start % 4:start % 4 + 4 * n], "F32", dtype,
                           memoryview(dst)[start % 2:start % 2 + 2 * n])
                got = np.frombuffer(bytes(dst[start % 2:start % 2 + 2 * n]), np.uint16)
                assert np.array_equal(got, want[start:start + n]), (k, start, n)
                assert dst[:start % 2] + dst[start % 2 + 2 * n:] == bytes(2), "wrote outside the output"
