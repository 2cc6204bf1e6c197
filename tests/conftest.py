"""Shared fixtures: the real model repos, and the real servers the store runs against.

PostgreSQL is a throwaway cluster made with Debian's ``initdb``/``pg_ctl``;
S3 is moto's server mode over HTTP on 127.0.0.1. Nothing is mocked in-process.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from support import REPOS as SHARED_REPOS, SHARED, free_port, materialized, wait_port  # noqa: E402

REPO_CACHE = Path(os.environ.get("WEIGHTVAULT_TEST_REPOS", ROOT / ".cache" / "shared-repos"))


@pytest.fixture(scope="session")
def shared_repos() -> Path:
    """The six real repos from ../shared/data, materialized once (about 410 MB)."""
    if not (SHARED / "data" / "materialize.py").exists():
        pytest.skip(f"shared data not found at {SHARED}")
    return materialized(REPO_CACHE)


@pytest.fixture(scope="session")
def checkpoint_series(tmp_path_factory) -> Path:
    """A real training run from ../shared/data/make_checkpoints.py: a tiny GPT, five checkpoints
    (steps 10..50), each with model.safetensors, optimizer.safetensors, optimizer.pt and trainer_state.json."""
    pytest.importorskip("torch")
    script = SHARED / "data" / "make_checkpoints.py"
    if not script.exists():
        pytest.skip(f"{script} not found")
    out = tmp_path_factory.mktemp("series") / "run"
    subprocess.run([sys.executable, str(script), "--out", str(out), "--steps", "50", "--ckpt-every", "10",
                    "--d", "64", "--heads", "4", "--layers", "1", "--ctx", "32", "--bs", "8"],
                   check=True, capture_output=True)
    return out


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name)]
    if not found[-1]:
        pytest.skip(f"PostgreSQL's {name} is not installed (apt-get install postgresql)")
    return found[-1]


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL cluster on 127.0.0.1; yields a URL prefix without the database name."""
    import tempfile

    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    # Outside pytest's private (0700) tmp tree: the server runs as another user.
    parent = Path(tempfile.mkdtemp(prefix="wv-pg-"))
    data = parent / "cluster"
    port = free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        import pwd

        as_user = ["runuser", "-u", "postgres", "--"]
        pw = pwd.getpwnam("postgres")
        os.chown(parent, pw.pw_uid, pw.pw_gid)
    subprocess.run(as_user + [initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"], check=True,
                   stdout=subprocess.DEVNULL)
    opts = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    subprocess.run(as_user + [pg_ctl, "-D", str(data), "-o", opts, "-l", str(data / "log"), "-w", "start"],
                   check=True, stdout=subprocess.DEVNULL)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(as_user + [pg_ctl, "-D", str(data), "-m", "immediate", "stop"], stdout=subprocess.DEVNULL)
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh, empty database on the session's cluster."""
    import psycopg

    name = "wv_" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres_server + "/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{postgres_server}/{name}"


@contextmanager
def listening(cmd: list[str], port: int, env: dict[str, str], log=subprocess.DEVNULL) -> Iterator[str]:
    """Run a server process (``cmd``, listening on ``port``, with exactly ``env``) for the block; yields its URL."""
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.fixture(scope="session")
def s3_server():
    """moto in server mode: a real S3-compatible HTTP endpoint on 127.0.0.1."""
    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    with listening([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port, env) as url:
        yield url


@pytest.fixture
def s3_bucket(s3_server, monkeypatch) -> str:
    import boto3

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    bucket = "wv-" + uuid.uuid4().hex[:12]
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=bucket)
    return bucket


BACKENDS = ["sqlite-local", "postgres-local", "sqlite-s3"]


@pytest.fixture(params=BACKENDS)
def store_env(request, tmp_path, monkeypatch) -> dict[str, str]:
    """Environment naming a fresh store on each backend combination; also applied to this process."""
    env = {"WEIGHTVAULT_DATA_DIR": str(tmp_path / "store")}
    if request.param.startswith("postgres"):
        env["WEIGHTVAULT_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    if request.param.endswith("s3"):
        env["WEIGHTVAULT_S3_BUCKET"] = request.getfixturevalue("s3_bucket")
        env["WEIGHTVAULT_S3_ENDPOINT_URL"] = request.getfixturevalue("s3_server")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@pytest.fixture
def vault(tmp_path, monkeypatch):
    """An embedded (SQLite + folder) store for unit tests."""
    from weightvault.store import Vault

    for k in ("WEIGHTVAULT_DATABASE_URL", "WEIGHTVAULT_S3_BUCKET"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("WEIGHTVAULT_DATA_DIR", str(tmp_path / "store"))
    v = Vault.open(tmp_path / "store")
    yield v
    v.close()


def run_cli(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """The real command line, in a subprocess."""
    proc = subprocess.run([sys.executable, "-m", "weightvault.api.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"weightvault {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc
