"""The codec layer's errors, defined with every other weightvault error in weightvault/errors.

``CodecError`` is their base; the subclasses name the cause, one per C error code
(codec/_lib.py ``ERROR_CLASSES``), plus ``UnknownDtype`` for a dtype name no table knows.
"""
from weightvault.errors import (  # noqa: F401  (the codec's public error names)
    CodecError,
    CodecMisuse,
    CodecOutOfMemory,
    CorruptFrame,
    MissingBase,
    UnknownCodec,
    UnknownDtype,
    UnsupportedCast,
)
