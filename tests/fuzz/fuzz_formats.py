"""atheris fuzz target for the container parsers (dedup/formats: GGUF, ONNX, npy/npz, torch zip,
safetensors); tests/test_formats.py runs it for a bounded time, run it by hand for longer:

    .venv/bin/python tests/fuzz/fuzz_formats.py -max_total_time=600 [corpus_dir]

Property: any bytes give None, a Parsed whose tensors are sorted, disjoint and inside the file,
or FormatError -- never another exception or a hang.
"""
from __future__ import annotations

import sys

import atheris

import weightvault.store.models  # noqa: E402,F401

with atheris.instrument_imports():
    from weightvault.dedup import formats

NAMES = ["model.gguf", "model.onnx", "a.npy", "a.npz", "pytorch_model.bin", "model.safetensors"]


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    name = NAMES[fdp.ConsumeIntInRange(0, len(NAMES) - 1)]
    view = memoryview(fdp.ConsumeBytes(fdp.remaining_bytes()))
    try:
        parsed = formats.parse(view, name)
    except formats.FormatError:
        return
    if parsed is not None:
        pos = parsed.header_end
        for t in parsed.tensors:
            assert pos <= t.start <= t.end <= len(view), (name, t)
            pos = t.end


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
