"""atheris fuzz target for the Xet xorb and shard parsers (tests/test_xet_fuzz.py runs it for a
bounded time; run it by hand for longer):

    .venv/bin/python tests/fuzz/fuzz_xet.py -max_total_time=600 [corpus_dir]

Property: any body either parses or raises BadXorb / BadShard -- never another exception,
a hang, or an allocation driven by a count the body states. The first byte picks the parser:
0 = a xorb (with the hash it must have, when the body is long enough to name one), 1 = a shard.
"""
from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from weightvault.errors import BadShard, BadXorb
    from weightvault.dedup.xet import shard as shards
    from weightvault.dedup.xet import xorb as xorbs


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 1)
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    try:
        if mode == 0:
            parsed = xorbs.parse(body)
            for chunk in parsed.chunks:
                xorbs.chunk_bytes(body, chunk)
        else:
            shards.parse(body)
    except (BadXorb, BadShard):
        pass


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
