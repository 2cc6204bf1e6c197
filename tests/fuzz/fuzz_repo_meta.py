"""atheris fuzz target for the metadata parsers of uploaded files (api/repo_meta.py: README front matter and
config.json); tests/test_repo_meta.py runs it for a bounded time, run it by hand for longer:

    .venv/bin/python tests/fuzz/fuzz_repo_meta.py -max_total_time=600 [corpus_dir]

Property: any bytes give None or a JSON-serialisable dict of at most MAX_NODES nodes -- never an exception,
a hang or an answer that grows with YAML aliases.
"""
from __future__ import annotations

import json
import sys

import atheris

# The catalog and read path are imported uninstrumented first: only the parsers under test (and yaml) are
# instrumented, which keeps start-up to seconds instead of a minute.
import weightvault.dedup.reader  # noqa: E402,F401
import weightvault.store.models  # noqa: E402,F401

with atheris.instrument_imports():
    import yaml  # noqa: F401
    from weightvault.api import repo_meta


def _nodes(value) -> int:
    if isinstance(value, dict):
        return 1 + sum(_nodes(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(_nodes(v) for v in value)
    return 1


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    as_card = fdp.ConsumeBool()
    raw = fdp.ConsumeBytes(fdp.remaining_bytes())
    out = repo_meta.front_matter(raw.decode("utf-8", "replace")) if as_card else repo_meta.json_object(raw)
    if out is not None:
        assert isinstance(out, dict) and _nodes(out) <= repo_meta.MAX_NODES + 1
        json.dumps(out, allow_nan=False)  # what the JSON response does


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
