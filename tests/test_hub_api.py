"""Hub API beyond up- and downloads, through the real clients (huggingface_hub 2.x and 0.36.x): tags, branches,
whoami, commit authors, missing entries and one-segment repo ids.

No client setting but ``HF_ENDPOINT`` and ``HF_TOKEN``: everything here goes through routes any client reaches.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from conftest import run_cli
from test_api_rest import Server, running, store_env
from test_hub_client import hub036_python, hub_env, run_client  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow

REFS = r'''
import json, sys
from pathlib import Path
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.utils import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

a = json.loads(sys.argv[1])
api, repo, cache = HfApi(endpoint=a["endpoint"], token=a["token"]), a["repo"], a["cache"]
out = {}

def error(call):
    try:
        call()
    except HfHubHTTPError as exc:
        return [[c.__name__ for c in type(exc).__mro__], exc.response.status_code]
    return None

api.create_repo(repo)
first = api.upload_file(path_or_fileobj=b"one", path_in_repo="a.txt", repo_id=repo).oid
api.create_tag(repo, tag="v1.0", tag_message="first release")
api.upload_file(path_or_fileobj=b"two", path_in_repo="a.txt", repo_id=repo)
out["first"] = first
out["at_tag"] = Path(hf_hub_download(repo, "a.txt", revision="v1.0", cache_dir=cache, token=a["token"])).read_text()
out["at_main"] = Path(hf_hub_download(repo, "a.txt", cache_dir=cache, token=a["token"])).read_text()
out["tag_info_sha"] = api.model_info(repo, revision="v1.0").sha
out["tags"] = [(t.name, t.ref, t.target_commit) for t in api.list_repo_refs(repo).tags]
out["tag_again"] = error(lambda: api.create_tag(repo, tag="v1.0"))
api.create_tag(repo, tag="v1.0", exist_ok=True)
out["tag_on_branch_name"] = error(lambda: api.create_tag(repo, tag="main"))
out["commit_to_tag"] = error(lambda: api.upload_file(path_or_fileobj=b"x", path_in_repo="b.txt", repo_id=repo,
                                                     revision="v1.0"))
api.delete_tag(repo, tag="v1.0")
out["tags_after"] = [t.name for t in api.list_repo_refs(repo).tags]
out["delete_tag_again"] = error(lambda: api.delete_tag(repo, tag="v1.0"))

api.create_branch(repo, branch="feature/x")
out["branches"] = sorted(b.name for b in api.list_repo_refs(repo).branches)
api.delete_branch(repo, branch="feature/x")
out["branches_after"] = sorted(b.name for b in api.list_repo_refs(repo).branches)
out["delete_branch_again"] = error(lambda: api.delete_branch(repo, branch="feature/x"))
out["delete_main"] = error(lambda: api.delete_branch(repo, branch="main"))

head = api.model_info(repo).sha
out["delete_missing"] = error(lambda: api.delete_file("nope.txt", repo_id=repo))
out["delete_missing_folder"] = error(lambda: api.delete_folder("nope", repo_id=repo))
out["head_unchanged"] = api.model_info(repo).sha == head
out["authors"] = [c.authors for c in api.list_repo_commits(repo)]

me = api.whoami()
out["whoami"] = [me["name"], sorted(o["name"] for o in me["orgs"]), me["auth"]["accessToken"]["role"]]
out["exists"] = [api.repo_exists(repo), api.repo_exists("gpt2"), api.repo_exists("acme/nope")]
out["one_segment_download"] = error(lambda: hf_hub_download("gpt2", "config.json", cache_dir=cache, token=a["token"]))
out["one_segment_refs"] = error(lambda: api.list_repo_refs("gpt2"))
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def api_server(tmp_path_factory) -> Iterator[Server]:
    env = store_env(tmp_path_factory.mktemp("hubapi") / "store")
    tokens = tuple(run_cli("token", "create", "--scope", scope, "--user", "alice", env=env).stdout.strip()
                   for scope in ("write", "read"))
    with running(env, tokens=tokens) as srv:
        yield srv


def client_python(client: str, request) -> str:
    return sys.executable if client == "2.x" else request.getfixturevalue("hub036_python")


@pytest.mark.parametrize("client", ["2.x", "0.36"])
def test_tags_branches_whoami_and_missing_things(client, api_server, tmp_path, request):
    python = client_python(client, request)
    repo = f"alice/refs-{client.replace('.', '')}"
    env = hub_env(tmp_path, api_server.url, upload=False)
    got = run_client(python, REFS, {"endpoint": api_server.url, "token": api_server.token, "repo": repo,
                                    "cache": str(tmp_path / "cache")}, env)
    assert got["at_tag"] == "one" and got["at_main"] == "two"
    assert got["tag_info_sha"] == got["first"]
    assert got["tags"] == [["v1.0", "refs/tags/v1.0", got["first"]]]
    assert got["tag_again"][1] == 409 and got["tag_on_branch_name"][1] == 409
    assert got["commit_to_tag"][1] == 400
    assert got["tags_after"] == [] and "RevisionNotFoundError" in got["delete_tag_again"][0]
    assert got["branches"] == ["feature/x", "main"] and got["branches_after"] == ["main"]
    assert "RevisionNotFoundError" in got["delete_branch_again"][0] and got["delete_main"][1] == 403
    assert "EntryNotFoundError" in got["delete_missing"][0] and "EntryNotFoundError" in got["delete_missing_folder"][0]
    assert got["head_unchanged"]
    assert got["authors"] == [["alice"]] * 3  # two uploads and the repo's initial commit
    assert got["whoami"][0] == "alice" and got["whoami"][2] == "write"
    assert got["exists"] == [True, False, False]
    assert "RepositoryNotFoundError" in got["one_segment_download"][0]
    assert "RepositoryNotFoundError" in got["one_segment_refs"][0]


@pytest.mark.parametrize("client", ["2.x", "0.36"])
def test_hf_auth_whoami(client, api_server, tmp_path, request):
    hf = Path(client_python(client, request)).parent / "hf"
    ingest_env = {**api_server.env}
    src = tmp_path / "src"
    (src / "x.txt").parent.mkdir(parents=True)
    (src / "x.txt").write_bytes(b"x")
    run_cli("ingest", str(src), "--repo", "acme/whoami", env=ingest_env)
    env = {**hub_env(tmp_path, api_server.url, upload=False), "HF_TOKEN": api_server.read_token}
    proc = subprocess.run([str(hf), "auth", "whoami"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "alice" in proc.stdout and "acme" in proc.stdout
