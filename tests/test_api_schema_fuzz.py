"""Schema-driven fuzzing of the whole HTTP surface with schemathesis, against a live server.

Every operation in ``/openapi.json`` gets generated requests (valid and invalid, any
Unicode, NUL bytes included) with a write token, on a PostgreSQL catalog (the stricter
of the two about what text it stores). Passes when no response is a 5xx and every
response fits the documented schema. Fixed seed, bounded examples and time.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_api_rest import running, store_env

pytestmark = pytest.mark.slow

SEED, EXAMPLES, MAX_SECONDS = 1, 10, 120


def test_no_5xx_and_schema_conformance(tmp_path, postgres_url):
    st = Path(sys.executable).with_name("st")
    if not st.exists() and not shutil.which("st"):
        pytest.skip("schemathesis is not installed (pip install -e .[test])")
    env = store_env(tmp_path / "store", WEIGHTVAULT_DATABASE_URL=postgres_url)
    with running(env) as server:
        with server.client() as c:  # something to find, so that not every read is a 404
            assert c.post("/api/v1/repos", json={"name": "org/m"}).status_code == 201
        proc = subprocess.run(
            [str(st), "run", f"{server.url}/openapi.json", "-H", f"Authorization: Bearer {server.token}",
             "--checks", "not_a_server_error,response_schema_conformance", "--max-examples", str(EXAMPLES),
             "--seed", str(SEED), "--max-time", str(MAX_SECONDS), "--workers", "1", "--no-color",
             "--phases", "coverage,fuzzing", "--generation-database", "none", "--request-timeout", "60"],
            cwd=tmp_path, capture_output=True, text=True)
        log = next(tmp_path.glob("serve-*.log")).read_text()
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert "Traceback" not in log and " 500 " not in log, log[-3000:]
