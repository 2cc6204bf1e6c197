"""Catalog loss is not data loss: `weightvault recover` rebuilds the catalog from the object store
alone (every repo, branch, tag, commit id and tree), `verify --deep` compares both ways, damaged
entries are named and skipped, and version 1 packs still read."""
from __future__ import annotations

import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import pytest
from sqlalchemy import func, select

from conftest import run_cli
from helpers import make_repo, small_model, tree_sha256
from weightvault.dedup.commits import resolve
from weightvault.dedup.ingest import ingest_folder
from weightvault.dedup.restore import restore
from weightvault.dedup.tokens import create_token
from weightvault.dedup.verify import verify
from weightvault.store import Vault
from weightvault.store.models import Commit, Repo, Tag
from weightvault.store.packs import ENTRY, MAGIC_V1, iter_entries
from weightvault.store.recover import catalog_state, compare, rebuild, scan


def build_history(vault: Vault, tmp_path: Path) -> dict[tuple[str, str], dict[str, str]]:
    """Two repos, a second revision on a branch, a tag, a token; returns (repo, rev) -> path -> sha256."""
    a1 = make_repo(tmp_path / "a1", {"model.safetensors": small_model(1), "config.json": b'{"model_type": "x"}',
                                     "README.md": b"# a\n"})
    a2 = make_repo(tmp_path / "a2", {"model.safetensors": small_model(2), "config.json": b'{"model_type": "x"}'})
    b1 = make_repo(tmp_path / "b1", {"model.safetensors": small_model(1, "BF16"), "notes.txt": os.urandom(3000)})
    ingest_folder(vault, a1, "org/a")
    ingest_folder(vault, a2, "org/a", "dev")
    ingest_folder(vault, b1, "org/b")
    ingest_folder(vault, a2, "org/a", message="second on main")
    with vault.catalog.write_session() as s:
        target = resolve(s, "org/a", "dev")
        s.add(Tag(repo_id=target.repo.id, name="v1", commit_id=target.commit.id, message="first release"))
        create_token(s, "write", "ci")
    return {("org/a", "main"): tree_sha256(a2), ("org/a", "dev"): tree_sha256(a2), ("org/a", "v1"): tree_sha256(a2),
            ("org/b", "main"): tree_sha256(b1)}


def commits_of(vault: Vault) -> set[tuple]:
    with vault.catalog.read_session() as s:
        return {(r, c.oid, c.parent_oid, c.message, c.author) for c, r in
                s.execute(select(Commit, Repo.name).join(Repo, Repo.id == Commit.repo_id)).all()}


def forget_frame_lists() -> None:
    """As a process restart would: the rebuilt catalog numbers objects afresh, and readers share
    frame lists keyed by catalog and object id."""
    from weightvault.dedup import reader
    reader._shared_plans = reader._Lru(reader.PLAN_CACHE_OBJECTS, ttl=reader.PLAN_TTL_SECONDS)


def drop_catalog(vault: Vault) -> Vault:
    forget_frame_lists()
    vault.close()
    root = vault.settings.data_dir
    for suffix in ("", "-wal", "-shm"):
        Path(f"{root / 'catalog.sqlite'}{suffix}").unlink(missing_ok=True)
    return Vault.open(root)


def lose_database(postgres_server: str, postgres_url: str) -> None:
    """The catalog database dropped and created empty, and this process's cached frame lists gone."""
    import psycopg

    name = postgres_url.rsplit("/", 1)[1]
    with psycopg.connect(postgres_server + "/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    forget_frame_lists()


def test_recover_rebuilds_every_revision(vault, tmp_path):
    trees = build_history(vault, tmp_path)
    before, commits = catalog_state(vault.catalog), commits_of(vault)
    assert compare(vault.catalog, scan(vault.backend)) == []

    fresh = drop_catalog(vault)
    report = rebuild(fresh.catalog, scan(fresh.backend))
    assert report.problems == []
    assert report.repos == 2 and report.tags == 1 and report.refs == 3
    after = catalog_state(fresh.catalog)
    for what in ("repos", "refs", "tags", "commits", "files", "objects"):
        assert after[what] == before[what], what
    assert commits_of(fresh) == commits
    for (repo, rev), tree in trees.items():
        assert restore(fresh, repo, rev, tmp_path / "out" / repo / rev).written == tree
    assert verify(fresh).ok
    assert compare(fresh.catalog, scan(fresh.backend)) == []
    with pytest.raises(Exception, match="not empty"):
        rebuild(fresh.catalog, scan(fresh.backend))
    fresh.close()


def test_cli_recover_dry_run_and_deep_verify(tmp_path):
    env = {"WEIGHTVAULT_DATA_DIR": str(tmp_path / "store"), "WEIGHTVAULT_DATABASE_URL": "", "WEIGHTVAULT_S3_BUCKET": ""}
    run_cli("ingest", str(make_repo(tmp_path / "r", {"model.safetensors": small_model(3)})), "--repo", "org/r", env=env)
    assert run_cli("verify", "--deep", env=env).returncode == 0
    (tmp_path / "store" / "catalog.sqlite").unlink()
    dry = run_cli("recover", "--dry-run", "--json", env=env)
    assert '"repos": 1' in dry.stdout and '"dry_run": true' in dry.stdout
    deep = run_cli("verify", "--deep", env=env, check=False)
    assert deep.returncode == 1 and "recover would add it" in deep.stdout + deep.stderr
    run_cli("recover", env=env)
    assert run_cli("verify", "--deep", env=env).returncode == 0
    run_cli("get", "org/r", "--out", str(tmp_path / "back"), env=env)
    assert tree_sha256(tmp_path / "back") == tree_sha256(tmp_path / "r")


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_damage_is_named_and_skipped(vault, tmp_path):
    build_history(vault, tmp_path)
    objects = vault.settings.data_dir / "objects"
    data_pack = sorted((objects / "packs").rglob("*"), key=lambda p: p.stat().st_size)[-1]
    meta_pack = sorted(p for p in (objects / "meta").rglob("*") if p.is_file())[0]
    _flip(data_pack, 8 + 20)              # the first entry's header: its key
    _flip(meta_pack, meta_pack.stat().st_size - 3)  # the record's payload
    sc = scan(vault.backend)
    named = "\n".join(sc.damage)
    assert data_pack.name in named and "header" in named
    assert meta_pack.name in named and "CRC" in named
    problems = compare(vault.catalog, sc)
    assert any(data_pack.name in p for p in problems)
    fresh = drop_catalog(vault)
    report = rebuild(fresh.catalog, scan(fresh.backend))
    assert report.problems and report.repos >= 1  # what is sound came back
    fresh.close()


def test_version_1_packs_still_read(vault, tmp_path):
    payloads = [b"frame one", b"", os.urandom(1000)]
    body = MAGIC_V1 + b"".join(struct.pack("<II", len(p), zlib.crc32(p)) + p for p in payloads)
    spool = tmp_path / "v1"
    spool.write_bytes(body)
    vault.backend.put_file("packs/00/0123456789abcdef0123456789abcdef", spool)
    got = list(iter_entries(vault.backend, "packs/00/0123456789abcdef0123456789abcdef", len(body)))
    assert [e.payload for e in got] == payloads
    assert got[0].offset == len(MAGIC_V1) + 8 and got[0].key == b""
    assert scan(vault.backend).v1_packs == ["packs/00/0123456789abcdef0123456789abcdef"]
    assert ENTRY.size == 52


@pytest.mark.slow
def test_recover_on_postgres_and_s3(tmp_path, monkeypatch, postgres_server, postgres_url, s3_server, s3_bucket):
    """The scale-out backends: the PostgreSQL database is dropped and created empty again."""
    for k, v in {"WEIGHTVAULT_DATABASE_URL": postgres_url, "WEIGHTVAULT_S3_BUCKET": s3_bucket,
                 "WEIGHTVAULT_S3_ENDPOINT_URL": s3_server}.items():
        monkeypatch.setenv(k, v)
    vault = Vault.open(tmp_path / "node1")
    trees = build_history(vault, tmp_path)
    before, commits = catalog_state(vault.catalog), commits_of(vault)
    vault.close()
    lose_database(postgres_server, postgres_url)
    fresh = Vault.open(tmp_path / "node2")  # another node: nothing local survives either
    report = rebuild(fresh.catalog, scan(fresh.backend))
    assert report.problems == []
    after = catalog_state(fresh.catalog)
    for what in ("repos", "refs", "tags", "commits", "files", "objects"):
        assert after[what] == before[what], what
    assert commits_of(fresh) == commits
    for (repo, rev), tree in trees.items():
        assert restore(fresh, repo, rev, tmp_path / "out" / repo / rev).written == tree
    assert compare(fresh.catalog, scan(fresh.backend)) == []
    fresh.close()


class _PreviousReleaseWriter:
    """What the release before packs version 2 wrote: 8-byte entry headers, uuid names, no records."""

    @staticmethod
    def install(vault: Vault, monkeypatch) -> None:
        import uuid

        from sqlalchemy import event

        from weightvault.store import packs

        class OldWriter(packs.PackWriter):
            def _open(self):
                super()._open()
                self._spool.file.seek(0)
                self._spool.file.write(packs.MAGIC_V1)
                self._spool.hash = type("H", (), {"hexdigest": staticmethod(lambda h=uuid.uuid4().hex: h)})()

            def add(self, payload, key, index, kind=packs.FRAME, crc=None):  # written here; flush ships on the thread
                if self._spool is None:
                    self._open()
                spool = self._spool
                spool.file.write(struct.pack("<II", len(payload), zlib.crc32(payload)) + bytes(payload))
                loc = packs.Location(spool.key, spool.size + 8, len(payload))
                spool.size += 8 + len(payload)
                return loc

        monkeypatch.setattr(Vault, "pack_writer", lambda self: OldWriter(
            self.catalog, self.backend, self.settings.data_dir / "spool", self.settings.pack_target_bytes))
        event.remove(vault.catalog.sessions, "after_flush", vault.journal._after_flush)
        event.remove(vault.catalog.sessions, "before_commit", vault.journal._before_commit)


def test_store_written_before_records(vault, tmp_path, monkeypatch):
    """A store of the previous release opens, reads and verifies; gc rewrites its version 1 packs,
    `db checkpoint` records its catalog, and from then on recover rebuilds it."""
    with monkeypatch.context() as m:
        _PreviousReleaseWriter.install(vault, m)
        trees = build_history(vault, tmp_path)
    root = vault.settings.data_dir
    vault.close()
    env = {"WEIGHTVAULT_DATA_DIR": str(root), "WEIGHTVAULT_DATABASE_URL": "", "WEIGHTVAULT_S3_BUCKET": ""}
    old = Vault.open(root)
    assert len(scan(old.backend).v1_packs) == len(list(old.backend.list("packs/"))) > 0
    assert not list(old.backend.list("meta/"))
    for (repo, rev), tree in trees.items():
        assert restore(old, repo, rev, tmp_path / "old" / repo / rev).written == tree
    assert verify(old).ok
    before, commits = catalog_state(old.catalog), commits_of(old)
    old.close()
    run_cli("gc", "--grace-minutes", "0", env=env)
    run_cli("db", "checkpoint", env=env)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{root / 'catalog.sqlite'}{suffix}").unlink(missing_ok=True)
    forget_frame_lists()
    fresh = Vault.open(root)
    sc = scan(fresh.backend)
    assert sc.v1_packs == []
    report = rebuild(fresh.catalog, sc)
    assert report.problems == []
    after = catalog_state(fresh.catalog)
    for what in ("repos", "refs", "tags", "commits", "files", "objects"):
        assert after[what] == before[what], what
    assert commits_of(fresh) == commits
    for (repo, rev), tree in trees.items():
        got = restore(fresh, repo, rev, tmp_path / "out" / repo / rev)
        assert got.written == tree, (repo, rev, got.failed)
    fresh.close()


def test_recover_after_rebase_picks_the_new_coding(vault, tmp_path):
    """Rebase re-codes objects in place (a bulk UPDATE): the bucket then holds old and new frames
    of the same object and frame number; recover must rebuild the new coding, before any gc."""
    from test_rebase import family, ingest

    from weightvault.dedup.rebase import Rebaser
    from weightvault.store.models import Object

    base, tuned = family()
    ingest(vault, tmp_path, "org/base", base, "F32")
    ingest(vault, tmp_path, "org/tuned-bf16", tuned, "BF16")
    ingest(vault, tmp_path, "org/tuned", tuned, "F32", rebase=False)
    assert Rebaser(vault).run().members

    def codings(v):
        with v.catalog.read_session() as s:
            digest = dict(s.execute(select(Object.id, Object.digest)).all())
            return {o.digest: (o.codec, digest.get(o.base_id), o.stored_size, o.depth)
                    for o in s.scalars(select(Object))}

    before = codings(vault)
    fresh = drop_catalog(vault)
    report = rebuild(fresh.catalog, scan(fresh.backend))
    assert report.problems == []
    assert codings(fresh) == before
    for name in ("org/base", "org/tuned-bf16", "org/tuned"):
        assert restore(fresh, name, "main", tmp_path / "out" / name).written == tree_sha256(tmp_path / name)
    fresh.close()


@pytest.mark.slow
def test_recover_what_hub_clients_wrote(tmp_path):
    """Commits, branches and tags made by huggingface_hub against a live server (create, delete,
    file deletions) come back after the catalog is lost, as the same client sees them."""
    from huggingface_hub import HfApi

    from test_api_rest import make_tokens, running, store_env

    env = store_env(tmp_path / "store")
    tokens = make_tokens(env)
    with running(env, tokens=tokens) as srv:
        api = HfApi(endpoint=srv.url, token=srv.token)
        api.create_repo("org/hub")
        api.upload_file(path_or_fileobj=small_model(5), path_in_repo="model.safetensors", repo_id="org/hub")
        api.upload_file(path_or_fileobj=b"# card\n", path_in_repo="README.md", repo_id="org/hub")
        api.create_branch("org/hub", branch="dev")
        api.create_branch("org/hub", branch="gone")
        api.upload_file(path_or_fileobj=b"dev only", path_in_repo="dev.txt", repo_id="org/hub", revision="dev")
        api.delete_file("README.md", repo_id="org/hub")
        api.create_tag("org/hub", tag="v1", revision="dev", tag_message="first")
        api.delete_branch("org/hub", branch="gone")
        refs = api.list_repo_refs("org/hub")
        commits = {b.name: [c.commit_id for c in api.list_repo_commits("org/hub", revision=b.name)]
                   for b in refs.branches}
        files = {b.name: sorted(api.list_repo_files("org/hub", revision=b.name)) for b in refs.branches}
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp_path / 'store' / 'catalog.sqlite'}{suffix}").unlink(missing_ok=True)
    run_cli("recover", env=env)
    with running(env) as srv:
        api = HfApi(endpoint=srv.url, token=srv.token)
        again = api.list_repo_refs("org/hub")
        assert sorted((b.name, b.target_commit) for b in again.branches) == \
            sorted((b.name, b.target_commit) for b in refs.branches)
        assert [(t.name, t.target_commit) for t in again.tags] == [(t.name, t.target_commit) for t in refs.tags]
        for branch, ids in commits.items():
            assert [c.commit_id for c in api.list_repo_commits("org/hub", revision=branch)] == ids
            assert sorted(api.list_repo_files("org/hub", revision=branch)) == files[branch]
        got = Path(api.hf_hub_download("org/hub", "model.safetensors", cache_dir=tmp_path / "cache"))
        assert got.read_bytes() == small_model(5)


def test_recover_keeps_chunk_references(vault, tmp_path):
    """An opaque file that shares chunks with a stored one is stored as references into that
    object (segments with an object offset) and indexed by chunk: both come back."""
    from weightvault.store.models import Chunk, Segment

    blob = os.urandom(3 << 20)
    edited = blob[:1_500_000] + b"an edit in the middle" + blob[1_500_000:]
    one = make_repo(tmp_path / "one", {"data.bin": blob})
    two = make_repo(tmp_path / "two", {"data.bin": edited})
    ingest_folder(vault, one, "org/one")
    ingest_folder(vault, two, "org/two")
    with vault.catalog.read_session() as s:
        assert s.scalar(select(func.count()).select_from(Segment).where(Segment.object_offset > 0))
        chunks = s.scalar(select(func.count()).select_from(Chunk))
    assert chunks
    fresh = drop_catalog(vault)
    assert rebuild(fresh.catalog, scan(fresh.backend)).problems == []
    with fresh.catalog.read_session() as s:
        assert s.scalar(select(func.count()).select_from(Chunk)) == chunks
    assert restore(fresh, "org/one", "main", tmp_path / "out1").written == tree_sha256(one)
    assert restore(fresh, "org/two", "main", tmp_path / "out2").written == tree_sha256(two)
    fresh.close()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite-local", "postgres-s3"])
def test_recover_the_six_shared_repos(backend, shared_repos, tmp_path, monkeypatch, request):
    """The six real repos, a second revision on a branch and a tag; the catalog deleted (the SQLite
    file, or the PostgreSQL database dropped and created empty, with packs in S3 via moto) and
    `weightvault recover` run: every revision back bit-exact with the same commit ids and refs."""
    from conftest import SHARED_REPOS

    env = {}
    if backend == "postgres-s3":
        postgres_server = request.getfixturevalue("postgres_server")
        postgres_url = request.getfixturevalue("postgres_url")
        env = {"WEIGHTVAULT_DATABASE_URL": postgres_url, "WEIGHTVAULT_S3_BUCKET": request.getfixturevalue("s3_bucket"),
               "WEIGHTVAULT_S3_ENDPOINT_URL": request.getfixturevalue("s3_server")}
    for k in ("WEIGHTVAULT_DATABASE_URL", "WEIGHTVAULT_S3_BUCKET"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    root = tmp_path / "store"
    vault = Vault.open(root)
    for name in SHARED_REPOS:
        ingest_folder(vault, shared_repos / name, name)
    ingest_folder(vault, shared_repos / SHARED_REPOS[3], SHARED_REPOS[0], "dev")
    with vault.catalog.write_session() as s:
        target = resolve(s, SHARED_REPOS[0], "dev")
        s.add(Tag(repo_id=target.repo.id, name="v1.0", commit_id=target.commit.id))
    before, commits = catalog_state(vault.catalog), commits_of(vault)
    if backend == "postgres-s3":
        vault.close()
        lose_database(postgres_server, postgres_url)
        root = tmp_path / "node2"  # another node: nothing local survives either
    else:
        drop_catalog(vault).close()
        (root / "catalog.sqlite").unlink()
    report = json.loads(run_cli("recover", "--json", env={"WEIGHTVAULT_DATA_DIR": str(root), **env}).stdout)
    assert report["ok"] and report["repos"] == 6 and report["tags"] == 1
    fresh = Vault.open(root)
    after = catalog_state(fresh.catalog)
    for what in ("repos", "refs", "tags", "commits", "files", "objects"):
        assert after[what] == before[what], what
    assert commits_of(fresh) == commits
    expected = [(n, "main", n) for n in SHARED_REPOS] + [(SHARED_REPOS[0], "dev", SHARED_REPOS[3]),
                                                          (SHARED_REPOS[0], "v1.0", SHARED_REPOS[3])]
    for repo, rev, folder in expected:
        out = tmp_path / "out" / repo / rev
        assert restore(fresh, repo, rev, out).written == tree_sha256(shared_repos / folder)
        shutil.rmtree(out)
    fresh.close()
