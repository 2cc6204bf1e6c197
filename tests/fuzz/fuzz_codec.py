"""atheris fuzz target for weightvault.codec decoding (tests/test_codec_fuzz.py runs it
for a bounded time; run it by hand for longer):

    .venv/bin/python tests/fuzz/fuzz_codec.py -max_total_time=600 [corpus_dir]

Property: any input either decodes or raises CodecError -- never another exception,
a crash, or an out-of-bounds access.  The first byte picks a mode: 0 = a whole frame,
1 = a payload behind a well-formed header (correct payload CRC, so the payload
decoders are reached), 2 = a container.
"""
from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from weightvault import codec
    from weightvault.codec._native import ffi, lib

BASE = bytes(range(256)) * 64


def wrap_payload(fdp: atheris.FuzzedDataProvider) -> tuple[bytes, bytes | None]:
    codec_id = fdp.ConsumeIntInRange(0, 4)
    dtype = fdp.ConsumeIntInRange(0, 16)
    base_dtype = fdp.ConsumeIntInRange(0, 16) if codec_id in (3, 4) else 0
    n_el = fdp.ConsumeIntInRange(0, 4096)
    payload = fdp.ConsumeBytes(fdp.remaining_bytes())
    k = {1: 8, 2: 4, 3: 2, 4: 2, 7: 8, 8: 4, 9: 2, 13: 2, 14: 4, 15: 8}
    header = ffi.new("wv_frame_header *", {
        "codec": codec_id, "dtype": dtype, "flags": 1 if base_dtype else 0, "base_dtype": base_dtype,
        "raw_size": n_el * k.get(dtype, 1), "payload_size": len(payload), "raw_crc": 0,
        "payload_crc": lib.wv_crc32c(0, payload, len(payload))})
    raw = ffi.new("uint8_t[]", 32)
    lib.wv_frame_write_header(raw, header)
    base = (BASE * 8)[:n_el * k.get(base_dtype, 1)] if base_dtype else None
    return bytes(ffi.buffer(raw)) + payload, base


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 2)
    try:
        if mode == 0:
            frame = fdp.ConsumeBytes(fdp.remaining_bytes())
            info = codec.frame_info(frame)
            base = bytes(info.raw_size // codec.itemsize(info.dtype) * codec.itemsize(info.base_dtype))
            codec.decode_frame(frame, base=base if info.needs_base else None)
        elif mode == 1:
            frame, base = wrap_payload(fdp)
            codec.decode_frame(frame, base=base)
        else:
            codec.decode(b"WVC\x01" + fdp.ConsumeBytes(fdp.remaining_bytes()), base=BASE)
    except codec.CodecError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
