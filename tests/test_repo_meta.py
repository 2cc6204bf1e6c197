"""Metadata read from uploaded files (api/repo_meta.py) and per-path history (dedup/history.py), without a server."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import make_repo, small_model
from weightvault.api import repo_meta
from weightvault.dedup.commits import resolve, tree_of
from weightvault.dedup import history
from weightvault.dedup.history import last_changes
from weightvault.dedup.ingest import ingest_folder

FUZZ = Path(__file__).resolve().parent / "fuzz" / "fuzz_repo_meta.py"


@pytest.mark.parametrize("card, expected", [
    ("---\nlicense: mit\ntags: [a]\n---\n# x", {"license": "mit", "tags": ["a"]}),
    ("---\nscore: .nan\nbig: .inf\n---\n", {"score": "nan", "big": "inf"}),  # JSON has neither
    ("---\nreleased: 2024-01-02\n1: one\n---\n", {"released": "2024-01-02", "1": "one"}),
    ("---\n- a list\n---\n", None),
    ("---\nlicense: mit\n", None),  # never closed
    ("# no front matter\n---\na: 1\n---\n", None),
    ("---\nn: " + "9" * 5000 + "\n---\n", None),  # above Python's int-string limit
    ("---\n" + "[" * 5000 + "\n---\n", None),
])
def test_front_matter(card, expected):
    out = repo_meta.front_matter(card)
    assert out == expected
    json.dumps(out, allow_nan=False)


def test_front_matter_alias_bomb_is_refused_quickly():
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
    assert repo_meta.front_matter("---\n" + "\n".join(lines) + "\n---\n") is None


def test_json_object():
    assert repo_meta.json_object(b'{"model_type": "bert", "x": NaN}') == {"model_type": "bert", "x": "nan"}
    assert repo_meta.json_object(b"[1]") is None and repo_meta.json_object(b"\xff") is None


def test_last_changes_compares_each_commit_with_its_parent(vault, tmp_path, monkeypatch):
    w1, w2 = small_model(1), small_model(2)
    steps = [("one", {"a.txt": b"A", "sub/w.safetensors": w1}),
             ("two", {"a.txt": b"B", "sub/w.safetensors": w1}),
             ("three", {"a.txt": b"A", "sub/w.safetensors": w1, "new.txt": b"n"}),  # a.txt back to its first bytes
             ("four", {"a.txt": b"A", "sub/w.safetensors": w2, "new.txt": b"n"})]
    for message, files in steps:
        ingest_folder(vault, make_repo(tmp_path / message, files), "acme/h", message=message)
    with vault.catalog.read_session() as s:
        head = resolve(s, "acme/h").commit
        assert set(tree_of(s, head)) == {"a.txt", "new.txt", "sub/w.safetensors"}
        found = last_changes(s, head, {"a.txt", "new.txt", "sub/w.safetensors", "gone.txt"}, {"sub"})
    assert {p: c.message for p, c in found.items()} == {"a.txt": "three", "new.txt": "three",
                                                        "sub/w.safetensors": "four", "sub": "four"}
    monkeypatch.setattr(history, "MAX_WALK", 1)  # only the head commit is looked at: older changes stay unplaced
    with vault.catalog.read_session() as s:
        found = last_changes(s, head, {"a.txt", "new.txt", "sub/w.safetensors"}, {"sub"})
    assert {p: c.message for p, c in found.items()} == {"sub/w.safetensors": "four", "sub": "four"}


def test_metadata_parsers_fuzz_bounded(tmp_path):
    pytest.importorskip("atheris")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, seed in enumerate([b"\x01---\nlicense: mit\ntags: [a, b]\nx: &x [1, 2]\ny: [*x, *x]\n---\n",
                              b'\x00{"architectures": ["BertModel"], "model_type": "bert", "n": [1, 2.5, null]}']):
        (corpus / f"seed{i}").write_bytes(seed)
    run = subprocess.run([sys.executable, str(FUZZ), "-max_total_time=15", "-rss_limit_mb=2048", "-max_len=4096",
                          "-seed=7", f"-artifact_prefix={tmp_path}/", str(corpus)],
                         capture_output=True, text=True, timeout=200)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
