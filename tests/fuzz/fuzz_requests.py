"""atheris fuzz target for the parsers of request input (tests/test_request_fuzz.py runs it for a
bounded time; run it by hand for longer):

    .venv/bin/python tests/fuzz/fuzz_requests.py -max_total_time=600 [corpus_dir]

Properties: a Range header gives a range inside the file, None, or RangeNotSatisfiable; conditional
headers give None, 304 or 412; an NDJSON commit body parses or is refused with a UsageError (400); a repo
path is accepted (and then fits every rule) or refused with InvalidName; error messages made from any
text are header-safe ASCII. Never another exception. The first byte picks the parser.
"""
from __future__ import annotations

import sys

import atheris

# Loaded before instrumentation: coverage guidance is wanted in our parsers, not in the frameworks.
import fastapi  # noqa: F401,E402
import pydantic  # noqa: F401,E402
import sqlalchemy  # noqa: F401,E402
import weightvault.errors  # noqa: F401,E402
import weightvault.store  # noqa: F401,E402

with atheris.instrument_imports(include=["weightvault.api", "weightvault.dedup.names"]):
    from weightvault.api.conditional import precondition_status, range_applies
    from weightvault.api.errors import header_value
    from weightvault.errors import UsageError
    from weightvault.api.hub_write import parse_ndjson
    from weightvault.api.streaming import parse_range
    from weightvault.dedup.names import MAX_PATH_BYTES, check_path, check_tree
    from weightvault.errors import InvalidName, RangeNotSatisfiable


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 3)
    if mode == 0:
        size = fdp.ConsumeIntInRange(0, 1 << 40)
        header = fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
        try:
            rng = parse_range(header, size)
        except RangeNotSatisfiable:
            return
        assert rng is None or 0 <= rng[0] < rng[1] <= size, (header, size, rng)
        headers = {"if-range": header, "if-match": header[::-1], "if-none-match": header[1:]}
        assert precondition_status(headers, '"abc"', "GET") in (None, 304, 412)
        range_applies(headers, '"abc"')
    elif mode == 1:
        lines = fdp.ConsumeBytes(fdp.remaining_bytes()).split(b"\n")
        try:
            parse_ndjson(lines)
        except UsageError as exc:
            assert exc.http_status == 400
    elif mode == 2:
        paths = [fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 300)) for _ in range(fdp.ConsumeIntInRange(1, 4))]
        try:
            for p in paths:
                check_path(p)
                assert len(p.encode("utf-8")) <= MAX_PATH_BYTES and "\n" not in p and "\x00" not in p
            check_tree(paths)
        except InvalidName:
            pass
    else:
        value = header_value(fdp.ConsumeUnicode(fdp.remaining_bytes()))
        value.encode("ascii")
        assert all(" " <= c <= "~" for c in value)


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
