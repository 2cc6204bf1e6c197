"""The frame contract: headers, checksums, errors, base ranges, registry, threads."""
from __future__ import annotations

import numpy as np
import pytest

from weightvault import codec
from weightvault.codec import CODECS, FRAME_SIZE, CodecError
from weightvault.codec._native import ffi, lib


def _bf16_weights(count: int, seed: int = 0) -> np.ndarray:
    w = (np.random.default_rng(seed).standard_normal(count) * 0.05).astype(np.float32)
    return (w.view(np.uint32) >> 16).astype(np.uint16)


def test_constants_and_dtypes() -> None:
    assert FRAME_SIZE == 262144
    assert all(FRAME_SIZE % codec.itemsize(d) == 0 for d in codec.DTYPES)
    assert codec.itemsize(None) == codec.itemsize("NOPE") == 1
    assert codec.itemsize("BF16") == 2 and codec.itemsize("F64") == 8
    assert {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "I64", "I32", "I16", "I8", "U8",
            "BOOL"} <= codec.DTYPES


def test_registry_ids() -> None:
    assert dict(CODECS) == {**dict(CODECS), "raw": 0, "zstd": 1, "planes": 2, "xor": 3}
    assert CODECS.name(2) == "planes"
    with pytest.raises(CodecError):
        CODECS.name(250)
    with pytest.raises(ValueError):
        codec.register("not-ckpt", 4, object())  # id 4 is taken by "ckpt"
    with pytest.raises(ValueError):
        codec.register("planes", 77, object())   # name taken by another id


class _Reverse:
    """A toy Python codec: payload = reversed bytes (never smaller, so it exercises the raw
    fallback) or, for the all-zero input, a single byte."""

    needs_base = False

    def encode(self, piece, dtype, base, base_dtype):
        return b"\x00" if not any(piece) else bytes(piece)[::-1]

    def decode(self, payload, out, dtype, base, base_dtype):
        if bytes(payload) == b"\x00":
            out[:] = bytes(len(out))
        else:
            if len(payload) != len(out):
                raise CodecError("bad size")
            out[:] = bytes(payload)[::-1]


def test_python_codec_plugs_in() -> None:
    codec.register("test-reverse", 251, _Reverse())
    zeros = bytes(1000)
    (frame,) = codec.encode_frames(zeros, None, codec="test-reverse")
    assert codec.frame_info(frame).codec == "test-reverse" and len(frame) == 33
    assert bytes(codec.decode_frame(frame)) == zeros
    (frame,) = codec.encode_frames(b"abc", None, codec="test-reverse")
    assert codec.frame_info(frame).codec == "raw"  # fell back: payload was not smaller


def test_frame_info_and_fallback_to_raw() -> None:
    random = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    (frame,) = codec.encode_frames(random, "BF16")
    info = codec.frame_info(frame)
    assert info == codec.FrameInfo("raw", "BF16", 5000, len(frame), False)
    assert codec.encode_frames(b"", "F32") == []
    frames = codec.encode_frames(_bf16_weights(FRAME_SIZE), "BF16")  # 2 frames
    assert [codec.frame_info(f).raw_size for f in frames] == [FRAME_SIZE, FRAME_SIZE]
    assert all(codec.frame_info(f).codec == "planes" for f in frames)


def test_decode_into_caller_buffer_without_copy() -> None:
    data = _bf16_weights(3000).tobytes()
    (frame,) = codec.encode_frames(data, "BF16")
    out = bytearray(len(data))
    view = codec.decode_frame(frame, out)
    assert view.obj is out and bytes(out) == data
    arr = np.zeros(3000, np.uint16)
    codec.decode_frame(frame, arr)
    assert arr.tobytes() == data
    with pytest.raises(CodecError, match="out has"):
        codec.decode_frame(frame, bytearray(len(data) + 1))
    with pytest.raises(CodecError, match="not writable"):
        codec.decode_frame(frame, bytes(len(data)))


def _corrupt(frame: bytes, pos: int, bit: int) -> bytes:
    b = bytearray(frame)
    b[pos] ^= 1 << bit
    return bytes(b)


@pytest.mark.parametrize("codec_name", ["planes", "zstd", "raw", "xor"])
def test_every_bit_flip_is_caught(codec_name: str) -> None:
    member = _bf16_weights(300)
    base = (member ^ np.uint16(1)) if codec_name == "xor" else None
    (frame,) = codec.encode_frames(member, "BF16", codec=codec_name, base=base)
    kw = {"base": base.tobytes()} if base is not None else {}
    rng = np.random.default_rng(1)
    for pos in range(len(frame)):
        with pytest.raises(CodecError):
            codec.decode_frame(_corrupt(frame, pos, int(rng.integers(8))), **kw)


def test_truncated_trailing_and_garbage() -> None:
    (frame,) = codec.encode_frames(_bf16_weights(3000), "BF16")
    for cut in (0, 1, 31, 32, len(frame) - 1):
        with pytest.raises(CodecError):
            codec.decode_frame(frame[:cut])
    with pytest.raises(CodecError, match="were given"):
        codec.decode_frame(frame + b"\x00")
    with pytest.raises(CodecError):
        codec.frame_info(b"WVF\x01" + bytes(28))
    with pytest.raises(CodecError, match="magic"):
        codec.decode(b"nope" + frame)
    with pytest.raises(CodecError):
        codec.decode(b"WVC\x01" + frame[:-3])


def test_unknown_codec_id_is_a_codec_error() -> None:
    header = ffi.new("wv_frame_header *", {"codec": 200, "dtype": 0, "raw_size": 1, "payload_size": 1,
                                            "payload_crc": lib.wv_crc32c(0, b"x", 1)})
    raw = ffi.new("uint8_t[]", 32)
    lib.wv_frame_write_header(raw, header)
    with pytest.raises(CodecError, match="unknown codec id 200"):
        codec.decode_frame(bytes(ffi.buffer(raw)) + b"x")


def test_base_range_and_needs_base() -> None:
    assert codec.base_range(FRAME_SIZE, FRAME_SIZE, "BF16", "F32") == (2 * FRAME_SIZE, 2 * FRAME_SIZE)
    assert codec.base_range(8, 4, "F32", "BF16") == (4, 2)
    assert codec.base_range(3, 5, None, None) == (3, 5)
    with pytest.raises(ValueError):
        codec.base_range(1, 2, "BF16", "F32")
    base = (np.random.default_rng(2).standard_normal(1000) * 0.05).astype(np.float32)
    member = (base.view(np.uint32) >> 16).astype(np.uint16)
    member[::5] ^= 3
    (frame,) = codec.encode_frames(member, "BF16", codec="xor", base=base, base_dtype="F32")
    info = codec.frame_info(frame)
    assert (info.codec, info.needs_base, info.base_dtype) == ("xor", True, "F32")
    with pytest.raises(CodecError, match="needs base"):
        codec.decode_frame(frame)
    with pytest.raises(CodecError, match="base has"):
        codec.decode_frame(frame, base=base.tobytes()[:-4])
    with pytest.raises(CodecError, match="F32 base"):
        codec.decode_frame(frame, base=base.tobytes(), base_dtype="F16")
    assert bytes(codec.decode_frame(frame, base=base)) == member.tobytes()
    with pytest.raises(CodecError, match="needs base"):
        codec.encode_frames(member, "BF16", codec="xor")
    with pytest.raises(CodecError, match="base has"):
        codec.encode_frames(member, "BF16", codec="xor", base=base[:-1], base_dtype="F32")


def test_decode_frames_of_a_cast_member_with_its_base() -> None:
    """A run of xor frames of a BF16 member decodes in one call from the F32 base bytes under
    all of them, between a store's entry headers; without the base, or with a short one, it is refused."""
    base = (np.random.default_rng(3).standard_normal(3 * FRAME_SIZE // 2 + 100) * 0.05).astype(np.float32)
    member = (base.view(np.uint32) >> 16).astype(np.uint16)
    member[::7] ^= 5
    frames = codec.encode_frames(member, "BF16", codec="xor", base=base, base_dtype="F32")
    assert len(frames) == 4 and {codec.frame_info(f).codec for f in frames} == {"xor"}
    src, offsets = bytearray(), []
    for f in frames[1:]:  # from the second frame: the base given starts under it
        src += b"entry-header"
        offsets.append(len(src))
        src += f
    b_off, b_len = codec.base_range(FRAME_SIZE, member.nbytes - FRAME_SIZE, "BF16", "F32")
    out = bytearray(member.nbytes - FRAME_SIZE)
    codec.decode_frames(bytes(src), offsets, out, base=base.tobytes()[b_off:b_off + b_len])
    assert bytes(out) == member.tobytes()[FRAME_SIZE:]
    with pytest.raises(CodecError, match="frame 0 of 3"):
        codec.decode_frames(bytes(src), offsets, out)
    with pytest.raises(CodecError, match="frame 2 of 3"):
        codec.decode_frames(bytes(src), offsets, out, base=base.tobytes()[b_off:b_off + b_len - 4])


def test_threads_give_identical_frames() -> None:
    data = _bf16_weights(5 * FRAME_SIZE // 2 + 7)
    assert codec.encode_frames(data, "BF16", threads=2) == codec.encode_frames(data, "BF16")
    assert codec.encode(data, "BF16", threads=2) == codec.encode(data, "BF16")


def test_estimate_size_tracks_coded_size() -> None:
    base = (np.random.default_rng(4).standard_normal(300000) * 0.05).astype(np.float32)
    member = ((base + np.random.default_rng(5).standard_normal(300000).astype(np.float32) * 1e-4)
              .view(np.uint32) >> 16).astype(np.uint16)
    coded = len(codec.encode(member, "BF16", codec="xor", base=base, base_dtype="F32"))
    est = codec.estimate_size(member, "BF16", base=base, base_dtype="F32")
    assert 0.8 * coded < est < 1.2 * coded
    plain = len(codec.encode(member, "BF16"))
    assert 0.9 * plain < codec.estimate_size(member, "BF16") < 1.1 * plain
    assert codec.estimate_size(member, "BF16", sample_frames=1) > 0


def test_iter_frames() -> None:
    data = _bf16_weights(FRAME_SIZE + 5)
    blob = codec.encode(data, "BF16")
    frames = list(codec.iter_frames(blob))
    assert [bytes(f) for f in frames] == codec.encode_frames(data, "BF16")
    assert list(codec.iter_frames(codec.encode(b""))) == []


def test_container_of_a_cast_member_decodes_from_a_base_cast_ahead() -> None:
    """``decode`` of a container takes the base in the dtype ``base_dtype`` names, as
    ``decode_frame`` does: the F32 base, or the same base cast to the member's BF16 once."""
    base = (np.random.default_rng(4).standard_normal(3 * FRAME_SIZE // 2 + 100) * 0.05).astype(np.float32)
    member = (base.view(np.uint32) >> 16).astype(np.uint16)
    member[::7] ^= 5
    blob = codec.encode(member, "BF16", codec="xor", base=base, base_dtype="F32")
    cast = np.empty(len(base), np.uint16)
    codec.cast(base, "F32", "BF16", cast)
    for threads in (1, 2):
        assert bytes(codec.decode(blob, base=base, threads=threads)) == member.tobytes()
        assert bytes(codec.decode(blob, base=cast, base_dtype="BF16", threads=threads)) == member.tobytes()
