"""One error hierarchy: every class maps to one HTTP status, hub code and exit code through its
attributes, the API handler and the CLI read those, and the C library's codes map to classes."""
from __future__ import annotations

import ast
import builtins
import inspect
import pathlib

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import weightvault.errors as E
from weightvault import codec
from weightvault.api import errors as api_errors
from weightvault.codec import _lib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_every_class_carries_status_code_and_exit():
    classes = list(E.hierarchy())
    assert len(classes) > 20
    for cls in classes:
        assert 100 <= cls.http_status <= 599, cls
        assert cls.hub_code and cls.hub_code.isidentifier(), cls
        assert isinstance(cls.exit_code, int) and 0 < cls.exit_code < 126, cls
        assert cls.__doc__ or cls.template != "{detail}", f"{cls.__name__} says neither why nor what"
    # client mistakes are 4xx, never 5xx; retries carry a Retry-After
    for cls in E.hierarchy(E.UsageError):
        assert 400 <= cls.http_status < 500
    for cls in E.hierarchy(E.NotFound):
        assert cls.http_status == 404 and cls.exit_code == 3
    for cls in E.hierarchy(E.TryAgain):
        assert cls.http_status == 503 and cls.retry_after


def test_each_name_defined_once():
    names = [cls.__name__ for cls in E.hierarchy()]
    assert len(names) == len(set(names))
    from weightvault.dedup import rebase, report_detail
    assert rebase.FamilyNotFound is report_detail.FamilyNotFound is E.FamilyNotFound
    assert codec.CodecError is E.CodecError


def test_no_second_table():
    """The hand-kept maps (STATUS_OF in api/errors.py, the except list in user_errors) are gone."""
    assert not hasattr(api_errors, "STATUS_OF")
    common = (ROOT / "api" / "cli" / "common.py").read_text()
    assert "except WeightvaultError" in common and "RepoNotFound" not in common
    home = {cls.__name__: pathlib.Path(inspect.getfile(cls)).resolve() for cls in E.hierarchy()}
    for path in ROOT.glob("*/**/*.py"):
        if ".venv" in path.parts or ".cache" in path.parts or "tests" in path.parts:
            continue
        text = path.read_text()
        for name, where in home.items():
            assert f"class {name}(" not in text or path.resolve() == where, (path, name)


#: Builtin exception classes (ValueError, KeyError, FileNotFoundError...).
BUILTIN_ERRORS = {n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)}


def library_sources():
    for package in ("api", "codec", "dedup", "errors", "store", "migrations"):
        yield from sorted((ROOT / package).rglob("*.py"))


def test_library_raises_only_the_hierarchy():
    """No library module raises a builtin exception or defines an exception class of its own: whatever
    it raises is a class of weightvault/errors, so it has one status, one hub code and one exit code."""
    offenders = []
    for path in library_sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and isinstance(node.exc.func, ast.Name):
                if node.exc.func.id in BUILTIN_ERRORS:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} raises {node.exc.func.id}")
            if isinstance(node, ast.ClassDef) and path.parent.name != "errors":
                bases = [b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases]
                if any(b in BUILTIN_ERRORS or b in {c.__name__ for c in E.hierarchy()} for b in bases):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} defines exception {node.name}")
    assert offenders == []


def test_former_strays_are_in_the_hierarchy():
    from weightvault.api import repo_meta
    from weightvault.dedup import formats
    from weightvault.dedup.formats import storedzip

    assert formats.FormatError is E.FormatError and issubclass(E.SafetensorsError, E.FormatError)
    assert issubclass(E.CompressedEntry, E.FormatError) and storedzip.CompressedEntry is E.CompressedEntry
    assert not hasattr(repo_meta, "TooLarge") and not hasattr(api_errors, "ApiError")
    with pytest.raises(E.FormatError, match="zip"):
        formats.parse(memoryview(b"PK\x03\x04" + b"\0" * 40), "x.npz")
    with pytest.raises(E.MetadataTooLarge):
        repo_meta.plain([[[]]], [1])


def test_templates_format_fields():
    assert str(E.RepoNotFound(name="org/x")) == "repository 'org/x' not found"
    assert str(E.RevisionNotFound(revision="dev", name="org/x")) == "revision 'dev' not found in 'org/x'"
    assert str(E.ObjectMissing("packs/ab/cd")) == "packs/ab/cd"
    assert E.ObjectMissing("x").message.startswith("stored content could not be read")
    assert isinstance(E.RepoNotFound(name="a/b"), LookupError)


@pytest.mark.parametrize("exc", [E.RepoNotFound(name="a/b"), E.InvalidName("bad"), E.StaleReference("gone"),
                                 E.PackClaimLost(), E.CorruptFrame("crc"), E.CommitConflict("moved"),
                                 E.RangeNotSatisfiable(header="bytes=9-"), E.Busy("full"), E.Unauthorized("token"),
                                 E.AccessDenied("read-only"), E.PayloadTooLarge("big"), E.InvalidBody("field"),
                                 E.EntryNotFound("gone", headers={"X-Repo-Commit": "c0ffee"})])
def test_api_handler_reads_the_class(exc):
    app = FastAPI()
    api_errors.install(app)

    @app.get("/boom")
    def boom():
        raise exc

    r = TestClient(app).get("/boom")
    assert r.status_code == type(exc).http_status
    assert r.headers["X-Error-Code"] == type(exc).hub_code
    assert r.json()["error"] == exc.message
    assert ("Retry-After" in r.headers) == (type(exc).retry_after is not None)
    for name, value in exc.headers.items():
        assert r.headers[name] == value


def test_cli_exit_code_from_the_class(tmp_path):
    from typer.testing import CliRunner

    from weightvault.api.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["rm", "nobody/nothing", "--data-dir", str(tmp_path)])
    assert r.exit_code == E.RepoNotFound.exit_code
    r = runner.invoke(app, ["rebase", "no-such-family", "--data-dir", str(tmp_path)])
    assert r.exit_code == E.FamilyNotFound.exit_code


def test_c_codes_map_to_distinct_classes():
    lib = _lib.lib
    frame = codec.encode_frames(np.arange(65536, dtype=np.float32).tobytes(), "F32")[0]
    damaged = bytearray(frame)
    damaged[-1] ^= 0xFF
    with pytest.raises(E.CorruptFrame, match="checksum"):
        codec.decode_frame(bytes(damaged))
    base = np.linspace(-1, 1, 1024, dtype=np.float32)  # a member close to its base: the frame stays a delta
    delta = codec.encode_frames((base * np.float32(1.001)).tobytes(), "F32", codec="xor", base=base)[0]
    assert codec.frame_info(delta).needs_base
    n = codec.frame_info(delta).raw_size
    out = codec._lib.new_output(n)
    rc = lib.wv_decode_frame(_lib.context().ctx, _lib.ffi.from_buffer(delta), len(delta),
                             _lib.ffi.from_buffer(out), n, _lib.ffi.NULL, 0, 0)
    with pytest.raises(E.MissingBase, match="base"):
        _lib.check(rc, "decoding")
    codes = [getattr(lib, k) for k in dir(lib) if k.startswith("WV_ERR_")]
    assert set(codes) == set(_lib.ERROR_CLASSES)
    for code in codes:  # every code has its own why-string
        assert "unknown error code" not in _lib.ffi.string(lib.wv_getErrorName(-code % (1 << 64))).decode()


def test_encode_takes_numpy_and_torch_names():
    data = np.linspace(-1, 1, 4096, dtype=np.float32).astype(np.float16).tobytes()
    ref = codec.encode(data, "F16")
    for name in ("float16", "torch.float16", "half", np.dtype("float16")):
        assert codec.encode(data, name) == ref
    assert codec.frame_info(codec.encode_frames(data, "bfloat16")[0]).dtype == "BF16"
    with pytest.raises(E.UnknownDtype, match="bfloat17"):
        codec.encode(data, "bfloat17")
    assert codec.frame_info(codec.encode_frames(data, None)[0]).dtype is None
