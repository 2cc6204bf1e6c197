"""Hub API beyond up- and downloads, through the real clients (huggingface_hub 2.x and 0.36.x): tags, branches,
whoami, commit authors, missing entries and one-segment repo ids.

No client setting but ``HF_ENDPOINT`` and ``HF_TOKEN``: everything here goes through routes any client reaches.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from conftest import run_cli
from helpers import make_repo, small_model
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
solo = f"solo-{repo.split('-')[-1]}"
out["user_repo"] = api.create_repo(solo).repo_id  # no namespace: the token's user, as on the hub
api.delete_repo(solo)
out["user_repo_after"] = api.repo_exists(out["user_repo"])
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
    env = hub_env(tmp_path, api_server.url)
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
    assert got["user_repo"] == f"alice/solo-{repo.split('-')[-1]}" and got["user_repo_after"] is False
    assert got["exists"] == [True, False, False]
    assert "RepositoryNotFoundError" in got["one_segment_download"][0]
    assert "RepositoryNotFoundError" in got["one_segment_refs"][0]
    with api_server.client("read") as c:  # the REST API shows the same refs and authors
        revs = c.get(f"/api/v1/repos/{repo}/revisions").json()
    assert revs["tags"] == [] and {c["author"] for c in revs["commits"]} == {"alice"}


@pytest.mark.parametrize("client", ["2.x", "0.36"])
def test_hf_auth_login_and_whoami(client, api_server, tmp_path, request):
    hf = Path(client_python(client, request)).parent / "hf"
    run_cli("ingest", str(make_repo(tmp_path / "src", {"x.txt": b"x"})), "--repo", "acme/whoami", env=api_server.env)
    env = hub_env(tmp_path, api_server.url)  # no HF_TOKEN: login stores it under HF_HOME
    for args in (["login", "--token", api_server.read_token], ["whoami"]):
        proc = subprocess.run([str(hf), "auth", *args], capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "alice" in proc.stdout and "acme" in proc.stdout


CARD = b"""---
license: mit
language: en
tags: [tiny, test-tag]
datasets: [acme/wiki]
---
# bert-tiny
"""
#: A billion-laughs card: aliases that expand to 9**9 nodes if followed; it must cost nothing and parse to no cardData.
BOMB = b"---\n" + b"a: &a [x, x, x, x, x, x, x, x, x]\n" + b"".join(
    b"%c: &%c [*%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c]\n" % ((ord("a") + i + 1,) * 2 + (ord("a") + i,) * 9)
    for i in range(8)) + b"---\n"

LISTING = r'''
import json, sys
from huggingface_hub import HfApi
from huggingface_hub.utils import HfHubHTTPError

a = json.loads(sys.argv[1])
api = HfApi(endpoint=a["endpoint"], token=a["token"])
out = {}
info = api.model_info("acme/bert-tiny")
out["info"] = {"card": {k: v for k, v in info.card_data.to_dict().items() if v is not None}, "tags": info.tags,
               "library": info.library_name, "pipeline": info.pipeline_tag,
               "safetensors": [info.safetensors.parameters, info.safetensors.total]}
st = api.model_info("acme/st-model")
out["st"] = [st.library_name, st.pipeline_tag, st.safetensors]
out["bomb"] = [api.model_info("acme/bomb").card_data, api.model_info("acme/bomb").sha is not None]
out["all"] = [m.id for m in api.list_models()]
out["by_created"] = [m.id for m in api.list_models(sort="created_at", limit=3)]
out["search"] = [m.id for m in api.list_models(search="TINY")]
out["author"] = [m.id for m in api.list_models(author="other")]
out["filter"] = [m.id for m in api.list_models(filter="fill-mask")]
out["pipeline"] = [m.id for m in api.list_models(pipeline_tag="sentence-similarity")]
out["listed_tags"] = {m.id: m.tags for m in api.list_models(search="bert")}
try:
    list(api.list_models(apps="ollama"))
    out["apps"] = None
except HfHubHTTPError as exc:
    out["apps"] = exc.response.status_code
api.create_repo("acme/data", repo_type="dataset", exist_ok=True)
api.upload_file(path_or_fileobj=b"---\nlicense: cc-by-4.0\n---\n", path_in_repo="README.md", repo_id="acme/data",
                repo_type="dataset")
out["datasets"] = [(d.id, d.tags) for d in api.list_datasets(author="acme")]
out["tree"] = {e.path: e.last_commit.title for e in api.list_repo_tree("acme/bert-tiny", expand=True)}
out["paths"] = {e.path: e.last_commit.title for e in api.get_paths_info("acme/bert-tiny", ["config.json"],
                                                                        expand=True)}
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def meta_server(tmp_path_factory) -> Iterator[Server]:
    """Repos ingested from folders (no upload protocol involved), listed two per page."""
    root = tmp_path_factory.mktemp("meta")
    env = store_env(root / "store", WEIGHTVAULT_LIST_PAGE="2")
    config = b'{"architectures": ["BertForMaskedLM"], "model_type": "bert", "hidden_size": 64}'
    repos = [
        ("acme/bert-tiny", "first", {"README.md": CARD, "config.json": b'{"model_type": "bert"}',
                                     "model.safetensors": small_model(1)}),
        ("acme/bert-tiny", "second", {"README.md": CARD, "config.json": config, "model.safetensors": small_model(1),
                                      "bf16/model.safetensors": small_model(2, "BF16")}),
        ("acme/st-model", "st", {"modules.json": b"[]", "config_sentence_transformers.json": b"{}",
                                 "config.json": b'{"model_type": "bert"}'}),
        ("other/plain", "plain", {"notes.txt": b"nothing to see"}),
        ("acme/bomb", "bomb", {"README.md": BOMB}),
    ]
    for repo, message, files in repos:
        run_cli("ingest", str(make_repo(root / message, files)), "--repo", repo, "-m", message, env=env)
    with running(env) as srv:
        yield srv


@pytest.mark.parametrize("client", ["2.x", "0.36"])
def test_listing_metadata_and_last_commits(client, meta_server, tmp_path, request):
    got = run_client(client_python(client, request), LISTING, {"endpoint": meta_server.url, "token": meta_server.token},
                     hub_env(tmp_path, meta_server.url))
    info = got["info"]
    assert info["card"] == {"license": "mit", "language": "en", "tags": ["tiny", "test-tag"], "datasets": ["acme/wiki"]}
    assert info["library"] == "transformers" and info["pipeline"] == "fill-mask"
    assert info["safetensors"] == [{"F32": 64 * 96 + 96, "BF16": 64 * 96 + 96}, 2 * (64 * 96 + 96)]
    assert {"transformers", "safetensors", "bert", "fill-mask", "tiny", "test-tag", "en", "dataset:acme/wiki",
            "license:mit"} == set(info["tags"])
    assert got["st"] == ["sentence-transformers", "sentence-similarity", None]
    assert got["bomb"] == [None, True]
    newest_first = ["acme/bomb", "other/plain", "acme/st-model", "acme/bert-tiny"]
    assert got["all"] == newest_first  # four repos over two pages: the Link header was followed
    assert got["by_created"] == newest_first[:3]
    assert got["search"] == ["acme/bert-tiny"] and got["author"] == ["other/plain"]
    assert got["filter"] == ["acme/bert-tiny"] and got["pipeline"] == ["acme/st-model"]
    assert set(got["listed_tags"]["acme/bert-tiny"]) == set(info["tags"])
    assert got["apps"] == 400
    assert got["datasets"] == [["acme/data", ["license:cc-by-4.0"]]]
    assert got["tree"] == {"bf16": "second", "README.md": "first", "config.json": "second",
                           "model.safetensors": "first"}
    assert got["paths"] == {"config.json": "second"}


def test_hf_models_ls_and_repos_ls(meta_server, tmp_path):
    env = {**hub_env(tmp_path, meta_server.url), "HF_TOKEN": meta_server.read_token}

    def hf(*args: str) -> list[dict]:
        proc = subprocess.run([str(Path(sys.executable).parent / "hf"), *args, "--format", "json"],
                              capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    assert [m["id"] for m in hf("models", "ls", "--search", "acme", "--limit", "2")] == ["acme/bomb", "acme/st-model"]
    repos = {r["id"]: r for r in hf("repos", "ls", "--namespace", "acme")}
    assert set(repos) >= {"acme/bert-tiny", "acme/st-model", "acme/bomb"}
    assert repos["acme/bert-tiny"]["type"] == "model" and repos["acme/bert-tiny"]["visibility"] == "public"


def test_listing_parameters_over_plain_http(meta_server):
    with meta_server.client("read") as c:
        first = c.get("/api/models", params={"sort": "id", "direction": "1", "limit": "1"})
        assert first.status_code == 200 and [m["id"] for m in first.json()] == ["acme/bert-tiny"]
        nxt = first.headers["link"].split(">")[0].lstrip("<")
        assert [m["id"] for m in c.get(nxt).json()] == ["acme/bomb"]
        full = c.get("/api/models", params={"search": "bert", "full": "True", "cardData": "true", "config": "1"}).json()
        assert full[0]["cardData"]["license"] == "mit" and full[0]["config"]["model_type"] == "bert"
        assert {s["rfilename"] for s in full[0]["siblings"]} >= {"README.md", "bf16/model.safetensors"}
        assert "cardData" not in c.get("/api/models", params={"search": "bert"}).json()[0]
        assert c.get("/api/models", params={"gated": "true"}).json() == []
        for bad in ({"sort": "stars"}, {"limit": "many"}, {"num_parameters": "min:1B"}, {"inference": "warm"}):
            r = c.get("/api/models", params=bad)
            assert r.status_code == 400 and r.headers["x-error-code"] == "BadRequest", bad
