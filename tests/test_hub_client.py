"""The real huggingface_hub client against ``weightvault serve``: 2.4.0 (this venv) and 0.36.x (its own venv).

Every client call runs in a subprocess with ``HF_ENDPOINT`` pointing at the
server, exactly as a user's script would, with no other setting: 2.4.0 uploads
through Xet (hf_xet is installed), 0.36.x through LFS; downloads are plain HTTP.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from conftest import ROOT
from helpers import make_repo, small_model
from test_api_rest import Server, running, store_env

pytestmark = pytest.mark.slow

HUB036_VENV = ROOT / ".cache" / "venv-hub036"

UPLOAD = r'''
import json, sys
from pathlib import Path
from huggingface_hub import HfApi

a = json.loads(sys.argv[1])
api, repo = HfApi(endpoint=a["endpoint"], token=a["token"]), a["repo"]
out = {"url": str(api.create_repo(repo))}
out["again"] = str(api.create_repo(repo, exist_ok=True))  # the server answers 409 with the url
api.upload_folder(folder_path=a["src"], repo_id=repo, commit_message="weights")
api.upload_file(path_or_fileobj=b"---\nlicense: mit\n---\n# tiny\n", path_in_repo="README.md", repo_id=repo)
api.upload_file(path_or_fileobj=b"temporary", path_in_repo="tmp.txt", repo_id=repo)
api.delete_file("tmp.txt", repo_id=repo)
api.create_branch(repo, branch="dev/v1")
api.upload_file(path_or_fileobj=b"dev only", path_in_repo="dev.txt", repo_id=repo, revision="dev/v1")
api.create_repo(repo, repo_type="dataset")
api.upload_file(path_or_fileobj=b"a,b\n1,2\n", path_in_repo="data/train.csv", repo_id=repo, repo_type="dataset")
print(json.dumps(out))
'''

DOWNLOAD = r'''
import hashlib, json, sys
from pathlib import Path
from huggingface_hub import HfApi, HfFileSystem, hf_hub_download, snapshot_download

a = json.loads(sys.argv[1])
api, repo, cache = HfApi(endpoint=a["endpoint"], token=a["token"]), a["repo"], a["cache"]
out = {}
info = api.model_info(repo)
out["sha"], out["siblings"] = info.sha, sorted(s.rfilename for s in info.siblings)
out["files"] = sorted(api.list_repo_files(repo))
out["dev_files"] = sorted(api.list_repo_files(repo, revision="dev/v1"))
out["branches"] = sorted(b.name for b in api.list_repo_refs(repo).branches)
out["commits"] = [c.title for c in api.list_repo_commits(repo)]
out["paths_info"] = sorted(p.path for p in api.get_paths_info(repo, ["config.json", "sub", "missing"]))
snap = Path(snapshot_download(repo, cache_dir=cache, token=a["token"]))
out["snapshot"] = {p.relative_to(snap).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                   for p in sorted(snap.rglob("*")) if p.is_file()}
out["dev"] = Path(hf_hub_download(repo, "dev.txt", revision="dev/v1", cache_dir=cache, token=a["token"])).read_text()
from safetensors.numpy import load_file
out["tensors"] = {k: list(v.shape) for k, v in load_file(snap / "model.safetensors").items()}
fs = HfFileSystem(endpoint=a["endpoint"], token=a["token"])
out["cat_range"] = fs.cat_file(f"{repo}/model.safetensors", start=100, end=150).hex()
with fs.open(f"{repo}/big.txt", "rb", block_size=4096) as f:
    f.seek(5_000_000)
    out["open_range"] = f.read(100).hex()
out["dataset_files"] = api.list_repo_files(repo, repo_type="dataset")
out["dataset_csv"] = Path(hf_hub_download(repo, "data/train.csv", repo_type="dataset", cache_dir=cache,
                                          token=a["token"])).read_text()
out["dataset_id"] = api.dataset_info(repo).id
errors = {}
for label, call in [("file", lambda: hf_hub_download(repo, "missing.txt", cache_dir=cache, token=a["token"])),
                    ("revision", lambda: hf_hub_download(repo, "config.json", revision="nope", cache_dir=cache,
                                                         token=a["token"])),
                    ("repo", lambda: api.model_info("acme/does-not-exist"))]:
    try:
        call()
        errors[label] = None
    except Exception as exc:
        errors[label] = [c.__name__ for c in type(exc).__mro__]
out["errors"] = errors
print(json.dumps(out))
'''


@pytest.fixture(scope="session")
def hub036_python() -> str:
    """A venv with huggingface_hub 0.36.x (built once under .cache/); skipped when it cannot be built."""
    python = HUB036_VENV / "bin" / "python"
    probe = [str(python), "-c", "import huggingface_hub, safetensors, numpy; print(huggingface_hub.__version__)"]
    ok = python.exists() and subprocess.run(probe, capture_output=True, text=True).stdout.startswith("0.36.")
    if not ok:
        try:
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(HUB036_VENV)], check=True, capture_output=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q", "huggingface_hub==0.36.*", "safetensors", "numpy"],
                           check=True, capture_output=True, timeout=600)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"cannot build a huggingface_hub 0.36 venv in {HUB036_VENV}: {exc}")
    return str(python)


@pytest.fixture(scope="module")
def hub_server(tmp_path_factory) -> Iterator[Server]:
    env = store_env(tmp_path_factory.mktemp("hub") / "store", WEIGHTVAULT_TREE_PAGE="3")
    with running(env) as srv:
        yield srv


def hub_env(tmp: Path, endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp / "hf-home"), HF_HUB_CACHE=str(tmp / "hf-cache"),
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
    return env


def run_client(python: str, script: str, args: dict, env: dict[str, str]) -> dict:
    proc = subprocess.run([python, "-c", script, json.dumps(args)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, f"client failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("client", ["2.4", "0.36"])
def test_hub_client_round_trip(client, hub_server, tmp_path, request):
    python = sys.executable if client == "2.4" else request.getfixturevalue("hub036_python")
    repo = f"acme/roundtrip-{client.replace('.', '')}"
    big = b"".join(b"line %08d of a large text file\n" % i for i in range(350_000))  # > 10 MiB: LFS by size
    files = {"model.safetensors": small_model(7), "config.json": b'{"hidden": 64}', "sub/tokenizer.json": b"{}",
             "big.txt": big}
    src = make_repo(tmp_path / "src", files)
    args = {"endpoint": hub_server.url, "repo": repo, "src": str(src), "cache": str(tmp_path / "cache")}

    up = run_client(python, UPLOAD, {**args, "token": hub_server.token},
                    hub_env(tmp_path, hub_server.url))
    assert up["url"] == up["again"] == f"{hub_server.url}/{repo}"

    got = run_client(python, DOWNLOAD, {**args, "token": hub_server.read_token},
                     hub_env(tmp_path, hub_server.url))
    expected = {p: sha(d) for p, d in files.items()} | {"README.md": sha(b"---\nlicense: mit\n---\n# tiny\n")}
    assert got["snapshot"] == expected  # bytes equal the originals; tmp.txt was deleted by a commit
    assert got["files"] == got["siblings"] == sorted(expected)
    assert got["dev_files"] == sorted([*expected, "dev.txt"]) and got["dev"] == "dev only"
    assert got["branches"] == ["dev/v1", "main"] and got["paths_info"] == ["config.json", "sub"]
    assert got["commits"][0].startswith("Delete tmp.txt") and got["commits"][-1] == "initial commit"
    assert got["tensors"] == {"layer.bias": [96], "layer.weight": [64, 96]}
    assert bytes.fromhex(got["cat_range"]) == files["model.safetensors"][100:150]
    assert bytes.fromhex(got["open_range"]) == big[5_000_000:5_000_100]
    assert got["dataset_files"] == ["data/train.csv"] and got["dataset_csv"] == "a,b\n1,2\n"
    assert got["dataset_id"] == repo
    assert "EntryNotFoundError" in got["errors"]["file"]
    assert "RevisionNotFoundError" in got["errors"]["revision"]
    assert "RepositoryNotFoundError" in got["errors"]["repo"]
