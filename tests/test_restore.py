"""``weightvault get``: every file it can, each one it cannot named, a non-zero exit; the umask's modes."""
from __future__ import annotations

import json
import os
import stat

from sqlalchemy import select

from conftest import run_cli
from helpers import make_repo

from weightvault.dedup.ingest import ingest_folder
from weightvault.store.models import File, Frame, Pack, Segment


def _damage(vault, data: bytes) -> None:
    """Flip a byte inside the first frame of the file holding ``data`` (in the pack on disk)."""
    import hashlib

    sha = hashlib.sha256(data).hexdigest()
    with vault.catalog.read_session() as s:
        name, offset = s.execute(
            select(Pack.name, Frame.pack_offset).join(Frame, Frame.pack_id == Pack.id)
            .join(Segment, Segment.object_id == Frame.object_id).join(File, File.id == Segment.file_id)
            .where(File.sha256 == sha).limit(1)).one()
    path = vault.backend.root / name
    raw = bytearray(path.read_bytes())
    raw[offset + 20] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_get_restores_the_others_and_names_the_bad_one(vault, tmp_path):
    good, bad = os.urandom(300_000), os.urandom(300_000)
    src = make_repo(tmp_path / "src", {"good.bin": good, "sub/bad.bin": bad, "note.txt": b"hello"})
    ingest_folder(vault, src, "org/r")
    _damage(vault, bad)
    env = {"WEIGHTVAULT_DATA_DIR": str(vault.settings.data_dir)}
    old = os.umask(0o027)
    try:
        proc = run_cli("get", "org/r", "--out", str(tmp_path / "out"), "--json", env=env, check=False)
    finally:
        os.umask(old)
    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    assert list(result["failed"]) == ["sub/bad.bin"], result
    assert sorted(result["files"]) == ["good.bin", "note.txt"]
    assert (tmp_path / "out" / "good.bin").read_bytes() == good
    assert not (tmp_path / "out" / "sub" / "bad.bin").exists()
    assert not [p for p in (tmp_path / "out").rglob(".wv-*")]
    assert stat.S_IMODE((tmp_path / "out" / "good.bin").stat().st_mode) == 0o640
    plain = run_cli("get", "org/r", "--verify-only", env=env, check=False)
    assert plain.returncode == 1 and "sub/bad.bin" in plain.stderr and "2 files checked" in plain.stdout


def test_get_needs_out_or_verify_only(vault, tmp_path):
    env = {"WEIGHTVAULT_DATA_DIR": str(vault.settings.data_dir)}
    proc = run_cli("get", "org/x", env=env, check=False)
    assert proc.returncode == 2 and "--verify-only" in proc.stderr


def test_restore_by_branch_commit_id_and_unknown_names(vault, tmp_path):
    """The branch is listed in one Core statement; a commit id goes through resolve, and so do the
    errors of a name or revision that is not there."""
    import pytest

    from weightvault.dedup.commits import resolve
    from weightvault.dedup.restore import restore
    from weightvault.errors import RepoNotFound, RevisionNotFound

    files = {"a.bin": os.urandom(70_000), "sub/b.txt": b"hello"}
    ingest_folder(vault, make_repo(tmp_path / "src", files), "org/r")
    with vault.catalog.read_session() as s:
        oid = resolve(s, "org/r", "main").commit.oid
    for rev in ("main", oid, oid[:10]):
        done = restore(vault, "org/r", rev, tmp_path / rev)
        assert done.ok and sorted(done.written) == sorted(files)
        assert all((tmp_path / rev / p).read_bytes() == data for p, data in files.items())
    with pytest.raises(RepoNotFound):
        restore(vault, "org/none", "main", tmp_path / "x")
    with pytest.raises(RevisionNotFound):
        restore(vault, "org/r", "nope", tmp_path / "x")
    with pytest.raises(RepoNotFound):
        restore(vault, "org/r\x00", "main", tmp_path / "x")
