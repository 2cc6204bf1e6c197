"""Families from evidence other than cards, delta coding against the family base, re-basing, and base removal."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import SHARED_REPOS, run_cli
from helpers import make_repo, safetensors_bytes, tree_sha256
from weightvault.dedup.families import card_base_models, cast_bits, similarity
from weightvault.dedup.ingest import ingest_folder


def test_card_base_model_forms():
    assert card_base_models("---\nbase_model: org/base\n---\n# x") == ["org/base"]
    assert card_base_models("---\nbase_model:\n- a/b\n- c/d\n---\n") == ["a/b", "c/d"]
    assert card_base_models("# no front matter") == []
    assert card_base_models("---\n: [unclosed\n---\n") == []


def test_similarity_sees_through_a_cast():
    rng = np.random.default_rng(0)
    base = (rng.standard_normal(4096) * 0.02).astype(np.float32)
    tuned = (base + rng.standard_normal(4096).astype(np.float32) * 1e-5).astype(np.float32)
    member = cast_bits(tuned.tobytes(), "F32", "BF16")
    exact, high = similarity(member, cast_bits(base.tobytes(), "F32", "BF16"))
    assert high > 0.95 and exact > 0.5
    unrelated = cast_bits((rng.standard_normal(4096) * 0.02).astype(np.float32).tobytes(), "F32", "BF16")
    assert similarity(member, unrelated)[1] < 0.75


def test_unrelated_model_of_same_shape_starts_its_own_family(vault, tmp_path):
    rng = np.random.default_rng(1)
    w = lambda: (rng.standard_normal((256, 256)) * 0.02).astype(np.float32)  # noqa: E731
    a = make_repo(tmp_path / "a", {"model.safetensors": safetensors_bytes({"w": ("F32", w())})})
    b = make_repo(tmp_path / "b", {"model.safetensors": safetensors_bytes({"w": ("F32", w())})})
    assert ingest_folder(vault, a, "org/a").base is None
    result = ingest_folder(vault, b, "org/b")
    assert result.base is None and result.family == "org/b"


@pytest.mark.slow
def test_six_repos_without_cards_form_one_family_rebase_and_survive_base_removal(shared_repos, tmp_path, monkeypatch):
    env = {"WEIGHTVAULT_DATA_DIR": str(tmp_path / "store")}
    for k in ("WEIGHTVAULT_DATABASE_URL", "WEIGHTVAULT_S3_BUCKET"):
        monkeypatch.delenv(k, raising=False)
    for name in SHARED_REPOS:  # the cards are what could name a base: drop them all
        shutil.copytree(shared_repos / name, tmp_path / "src" / name, ignore=shutil.ignore_patterns("README.md"))
        last = json.loads(run_cli("ingest", str(tmp_path / "src" / name), "--repo", name, "--json", env=env).stdout)
    fams = json.loads(run_cli("families", "--json", env=env).stdout)
    assert len(fams) == 1 and fams[0]["base"] == SHARED_REPOS[0]
    assert sorted(m["repo"] for m in fams[0]["members"]) == sorted(SHARED_REPOS)

    report = json.loads(run_cli("report", "--json", env=env).stdout)
    repos = {r["name"]: r for r in report["repos"]}
    cast = repos["acme/all-MiniLM-L6-v2-bf16"]
    assert cast["stored_bytes"] < 0.01 * cast["raw_bytes"]  # a cast repo costs almost nothing
    assert report["overall"]["family_delta"] > 0

    # The BF16 fine-tune came before the FP32 weights of the same run: their ingest re-based it on
    # them (it then costs ~nothing), and the operator's `rebase` finds nothing left.
    assert [m[0] for m in last["rebased"]] == ["acme/minilm-codesearch-bf16"]
    assert json.loads(run_cli("rebase", "--json", env=env).stdout)["members"] == []
    tuned = {r["name"]: r for r in json.loads(run_cli("report", "--json", env=env).stdout)["repos"]}
    assert tuned["acme/minilm-codesearch-bf16"]["stored_bytes"] < 0.01 * tuned["acme/minilm-codesearch-bf16"]["raw_bytes"]

    run_cli("rm", SHARED_REPOS[0], env=env)
    run_cli("gc", "--grace-minutes", "0", env=env)
    assert json.loads(run_cli("verify", "--json", env=env).stdout)["ok"]
    for name in SHARED_REPOS[1:]:
        run_cli("get", name, "--out", str(tmp_path / "out" / name), env=env)
        assert tree_sha256(tmp_path / "out" / name) == tree_sha256(tmp_path / "src" / name)


def test_one_shard_finds_its_family_by_tensor_names(vault, tmp_path):
    rng = np.random.default_rng(2)
    tensors = {f"layer{i}.weight": (rng.standard_normal((128, 128)) * 0.02).astype(np.float32) for i in range(4)}
    full = safetensors_bytes({n: ("F32", a) for n, a in tensors.items()})
    ingest_folder(vault, make_repo(tmp_path / "base", {"model.safetensors": full}), "org/base")
    tuned = {n: (a + rng.standard_normal(a.shape).astype(np.float32) * 1e-4) for n, a in tensors.items()}
    shard = safetensors_bytes({n: ("F32", tuned[n]) for n in ("layer0.weight", "layer1.weight")})
    result = ingest_folder(vault, make_repo(tmp_path / "ft", {"model-00001-of-00002.safetensors": shard}), "org/ft")
    assert result.base == "org/base" and result.family == "org/base"


def test_names_match_across_prefixes():
    from weightvault.dedup.families import NameMatcher
    m = NameMatcher(["embeddings.word.weight", "encoder.layer.0.attn.weight", "encoder.layer.1.attn.weight"])
    assert m("bert.embeddings.word.weight") == "embeddings.word.weight"
    assert m("model.encoder.layer.1.attn.weight") == "encoder.layer.1.attn.weight"
    assert m("layer.0.attn.weight") == "encoder.layer.0.attn.weight"
    assert m("attn.weight") is None and m("weight") is None  # ambiguous or too short


def test_prefixed_finetune_is_delta_coded_against_its_base(vault, tmp_path):
    from helpers import make_repo, safetensors_bytes
    from weightvault.dedup.ingest import ingest_folder
    rng = np.random.default_rng(3)
    base = {f"encoder.layer.{i}.weight": (rng.standard_normal((256, 256)) * 0.05).astype(np.float32) for i in range(4)}
    tuned, other = ({k: v + (rng.standard_normal(v.shape) * 1e-4).astype(np.float32) for k, v in base.items()}
                    for _ in range(2))
    config = b'{"model_type": "bert", "hidden_size": 256}'
    ingest_folder(vault, make_repo(tmp_path / "b", {"config.json": config, "model.safetensors": safetensors_bytes(
        {k: ("F32", v) for k, v in base.items()})}), "org/base")
    renamed = ingest_folder(vault, make_repo(tmp_path / "r", {"config.json": config, "model.safetensors": safetensors_bytes(
        {"bert." + k: ("F32", v) for k, v in tuned.items()})}), "org/renamed")
    same = ingest_folder(vault, make_repo(tmp_path / "s", {"config.json": config, "model.safetensors": safetensors_bytes(
        {k: ("F32", v) for k, v in other.items()})}), "org/same-names")
    assert renamed.base == "org/base"
    assert renamed.new_stored_bytes <= 1.05 * same.new_stored_bytes
