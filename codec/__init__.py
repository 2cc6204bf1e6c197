"""weightvault.codec: lossless coding of tensor bytes in self-contained frames.

Public API (other packages code against these names only):

- ``FRAME_SIZE``, ``FrameInfo``, ``encode_frames``, ``decode_frame``, ``decode_frames``,
  ``frame_info``, ``base_range``, ``cast``, ``crc32c`` (codec/frames.py): one frame per 256 KiB
  piece, and the checksum frames carry, of any buffer.
- ``encode``, ``decode``, ``iter_frames`` (codec/container.py): frames back to back.
- ``CODECS``, ``register``, ``CodecImpl`` (codec/registry.py): codec names <-> ids, and
  the protocol a Python codec (codec/ckpt.py) implements to plug in.
- ``DTYPES``, ``itemsize`` (codec/dtypes.py), ``CodecError`` and its subclasses (codec/errors.py, from weightvault/errors).
- ``estimate_size`` (codec/estimate.py): cheap size estimate of planes / xor coding.

Threads: every C call releases the GIL; each thread uses its own scratch context.
Do not mutate a buffer while a call that reads it is running.
"""
from .container import decode, encode, iter_frames
from .dtypes import DTYPES, itemsize
from .errors import CodecError
from .estimate import estimate_size
from .frames import FRAME_SIZE, FrameInfo, base_range, cast, crc32c, decode_frame, decode_frames, encode_frames, frame_info
from .registry import CODECS, CodecImpl, NativeCodec, register
from .zstd_codec import ZstdCodec

CODECS.add("raw", 0, NativeCodec(needs_base=False))
CODECS.add("zstd", 1, ZstdCodec())
CODECS.add("planes", 2, NativeCodec(needs_base=False))
CODECS.add("xor", 3, NativeCodec(needs_base=True))

from . import ckpt  # noqa: E402,F401  (registers the checkpoint coder, id 4, after the native ones)

#: Codecs whose frames ``decode_frames`` decodes many at a time: coded in C (xor given ``base=``).
BATCH_CODECS = frozenset(name for name in CODECS if isinstance(CODECS.impl(name), NativeCodec))

__all__ = [
    "FRAME_SIZE", "CodecError", "DTYPES", "itemsize", "FrameInfo", "encode_frames", "decode_frame",
    "decode_frames", "frame_info", "base_range", "cast", "encode", "decode", "iter_frames", "CODECS", "CodecImpl", "register",
    "estimate_size", "BATCH_CODECS", "crc32c",
]
