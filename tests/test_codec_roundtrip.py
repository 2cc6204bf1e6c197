"""Property tests: every dtype, size and codec round-trips bit-exactly."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weightvault import codec
from weightvault.codec import FRAME_SIZE, itemsize

DTYPES = sorted(codec.DTYPES) + [None]
CODECS = ["auto", "planes", "zstd", "raw"]
# sizes around the interesting boundaries: empty, one element, odd counts, frame edges
SIZES = st.one_of(st.integers(0, 70), st.sampled_from([FRAME_SIZE - 8, FRAME_SIZE, FRAME_SIZE + 8,
                                                        2 * FRAME_SIZE + 24, 3 * FRAME_SIZE // 2]),
                  st.integers(0, 3 * FRAME_SIZE))
SPECIALS = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45, 1e-40, 3.4e38,
                     6e-8, 65504.0, 1e-5], dtype=np.float64)

settings.register_profile("codec", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile("codec")


def weights(rng: np.random.Generator, count: int, dtype: str | None) -> bytes:
    """Weight-like values of ``dtype`` with NaNs, infinities, zeros and subnormals mixed in."""
    values = rng.standard_normal(count) * 0.05
    mask = rng.random(count) < 0.02
    values[mask] = rng.choice(SPECIALS, size=int(mask.sum()))
    if dtype == "F64":
        return values.tobytes()
    if dtype == "F32":
        return values.astype(np.float32).tobytes()
    if dtype == "F16":
        with np.errstate(over="ignore"):
            return values.astype(np.float16).tobytes()
    if dtype == "BF16":
        return (values.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()
    return rng.integers(0, 256, count * itemsize(dtype), dtype=np.uint8).tobytes()


@st.composite
def tensors(draw) -> tuple[bytes, str | None]:
    dtype = draw(st.sampled_from(DTYPES))
    size = draw(SIZES)
    count = size // itemsize(dtype)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["weights", "random", "constant", "few"]))
    if kind == "weights":
        data = weights(rng, count, dtype)
    elif kind == "random":
        data = rng.integers(0, 256, count * itemsize(dtype), dtype=np.uint8).tobytes()
    elif kind == "constant":
        data = bytes([draw(st.integers(0, 255))]) * (count * itemsize(dtype))
    else:
        data = rng.choice(np.array([0, 1, 2, 255], np.uint8), count * itemsize(dtype)).tobytes()
    return data, dtype


@given(tensors(), st.sampled_from(CODECS))
def test_frames_round_trip(tensor, codec_name) -> None:
    data, dtype = tensor
    frames = codec.encode_frames(data, dtype, codec=codec_name)
    assert len(frames) == -(-len(data) // FRAME_SIZE)
    out = b"".join(bytes(codec.decode_frame(f)) for f in frames)
    assert out == data
    for f in frames:
        info = codec.frame_info(f)
        assert info.frame_size == len(f) and not info.needs_base
        assert info.dtype == (dtype if dtype in codec.DTYPES else None)


@given(tensors(), st.sampled_from(CODECS), st.sampled_from([1, 2]))
def test_container_round_trip(tensor, codec_name, threads) -> None:
    data, dtype = tensor
    blob = codec.encode(data, dtype, codec=codec_name, threads=threads)
    assert bytes(codec.decode(blob, threads=threads)) == data
    out = bytearray(len(data))
    view = codec.decode(blob, out)
    assert bytes(out) == data and view.obj is out


def _bf16(f32: np.ndarray) -> np.ndarray:
    """F32 -> BF16 bits, round to nearest even (NaNs are whatever comes out)."""
    x = f32.view(np.uint32).astype(np.uint64)
    return ((x + 0x7FFF + ((x >> 16) & 1)) >> 16).astype(np.uint16)


def _f16(f32: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return f32.astype(np.float16).view(np.uint16)


def _torch_cast(name: str):
    torch = pytest.importorskip("torch")
    dtype = {"BF16": torch.bfloat16, "F16": torch.float16}[name]
    return lambda f32: torch.from_numpy(f32).to(dtype).view(torch.int16).numpy()


PAIRS = [("BF16", "F32"), ("F16", "F32"), ("F32", "BF16"), ("F32", "F16"), ("F32", "F32"),
         ("BF16", "BF16"), ("I32", "I32"), ("I32", "F32")]


@given(st.sampled_from(PAIRS), st.integers(0, 2**32 - 1), SIZES, st.sampled_from(["finetune", "random"]))
def test_xor_round_trip(pair, seed, size, kind) -> None:
    dtype, base_dtype = pair
    rng = np.random.default_rng(seed)
    count = size // 4
    base32 = np.frombuffer(weights(rng, count, "F32"), np.float32).copy()
    if kind == "finetune":
        with np.errstate(invalid="ignore"):
            member32 = (base32 + rng.standard_normal(count).astype(np.float32) * 1e-4).astype(np.float32)
    else:
        member32 = rng.standard_normal(count).astype(np.float32)
    as_dtype = {"F32": lambda a: a, "BF16": _bf16, "F16": _f16,
                "I32": lambda a: a.view(np.int32)}
    member, base = as_dtype[dtype](member32), as_dtype[base_dtype](base32)
    frames = codec.encode_frames(member, dtype, codec="xor", base=base, base_dtype=base_dtype)
    out = bytearray(member.nbytes)
    view = memoryview(out)
    offset = 0
    for f in frames:
        info = codec.frame_info(f)
        b_off, b_len = codec.base_range(offset, info.raw_size, dtype, base_dtype)
        codec.decode_frame(f, view[offset:offset + info.raw_size],
                           base=base.tobytes()[b_off:b_off + b_len] if info.needs_base else None)
        offset += info.raw_size
    assert bytes(out) == member.tobytes()
    blob = codec.encode(member, dtype, codec="xor", base=base, base_dtype=base_dtype, threads=2)
    assert bytes(codec.decode(blob, base=base, threads=2)) == member.tobytes()


@pytest.mark.parametrize("dtype", ["F32", "BF16"])
def test_xor_against_an_unrelated_base_codes_plain_planes(dtype) -> None:
    """Where the base predicts nothing, every xor frame is retried as plain planes and takes them
    (the retry is skipped only where a sample says plain planes cannot come under the xor payload)."""
    rng = np.random.default_rng(3)
    count = 2 * FRAME_SIZE // itemsize(dtype)
    member, base = weights(rng, count, dtype), weights(rng, count, dtype)
    frames = codec.encode_frames(member, dtype, codec="xor", base=base)
    assert frames == codec.encode_frames(member, dtype, codec="planes")


@pytest.mark.parametrize("dtype", ["BF16", "F16"])
def test_xor_predicts_torch_casts_exactly(dtype) -> None:
    """A member that is the torch cast of its F32 base (NaN, inf, subnormals included)
    costs almost nothing: every predicted element matches bit for bit."""
    cast = _torch_cast(dtype)
    rng = np.random.default_rng(7)
    base = np.frombuffer(weights(rng, FRAME_SIZE // 2, "F32"), np.float32).copy()
    base[:64] = np.array([np.nan, -np.nan, np.inf, -np.inf, 1e-45, -1e-40, 65520.0, 65519.0, 5.96e-8,
                          2.98e-8, 3e-8, 1e-38, -0.0, 3.4e38, 1.0000001, 0.99999994] * 4, np.float32)
    member = cast(base)
    frames = codec.encode_frames(member, dtype, codec="xor", base=base, base_dtype="F32")
    assert sum(map(len, frames)) < 100
    assert bytes(codec.decode(codec.encode(member, dtype, codec="xor", base=base, base_dtype="F32"),
                              base=base)) == member.tobytes()


def test_unknown_dtype_name_is_refused() -> None:
    """A dtype name no table knows is an error (None is the way to say opaque bytes)."""
    from weightvault.errors import UnknownDtype
    with pytest.raises(UnknownDtype):
        codec.encode_frames(b"abcd", "X_UNKNOWN")
