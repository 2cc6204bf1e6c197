"""Tensors grown by rows (a vocabulary extended by added tokens): the rows a stored tensor holds
are delta-coded against it, the added rows alone."""
from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import select

from helpers import make_repo, safetensors_bytes, tree_sha256
from test_rebase import bf16
from weightvault.dedup.choice import choose_and_encode
from weightvault.dedup.ingest import ingest_folder
from weightvault.dedup.restore import restore
from weightvault.dedup.verify import verify
from weightvault.store import Vault
from weightvault.store.models import File, Object, Segment

ROWS, COLS, ADDED = 4000, 128, 50


def weights(seed: int) -> tuple[dict, dict]:
    """A base (embedding and one other matrix) and a fine-tune of it whose embedding grew by ADDED rows."""
    rng = np.random.default_rng(seed)
    base = {"embeddings.word_embeddings.weight": (rng.standard_normal((ROWS, COLS)) * 0.02).astype(np.float32),
            "encoder.dense.weight": (rng.standard_normal((COLS, COLS)) * 0.02).astype(np.float32)}
    tuned = {n: (a + rng.standard_normal(a.shape) * 2e-4).astype(np.float32) for n, a in base.items()}
    emb = "embeddings.word_embeddings.weight"
    tuned[emb] = np.concatenate([tuned[emb], (rng.standard_normal((ADDED, COLS)) * 0.02).astype(np.float32)])
    return base, tuned


def st(tensors: dict, dtype: str = "F32", prefix: str = "") -> bytes:
    return safetensors_bytes({prefix + n: (dtype, bf16(a) if dtype == "BF16" else a) for n, a in tensors.items()})


def embedding_segments(vault, repo_file: bytes) -> list[tuple[int, str | None, int | None, int, int | None, str | None]]:
    """(length, name, base object id, stored size, depth, codec) of each segment of the grown embedding."""
    import hashlib

    with vault.catalog.read_session() as s:
        file_id = s.scalar(select(File.id).where(File.sha256 == hashlib.sha256(repo_file).hexdigest()))
        rows = s.execute(select(Segment.offset, Segment.length, Segment.name, Object.base_id, Object.stored_size,
                                Object.depth, Object.codec)
                         .join(Object, Object.id == Segment.object_id)
                         .where(Segment.file_id == file_id).order_by(Segment.seq)).all()
    header = json.loads(repo_file[8:8 + int.from_bytes(repo_file[:8], "little")])
    emb = next(v for n, v in header.items() if n.endswith("word_embeddings.weight"))
    start = 8 + int.from_bytes(repo_file[:8], "little") + emb["data_offsets"][0]
    end = 8 + int.from_bytes(repo_file[:8], "little") + emb["data_offsets"][1]
    return [tuple(r[1:]) for r in rows if start <= r.offset < end]


@pytest.fixture
def any_vault(store_env):
    v = Vault.open()
    yield v
    v.close()


def test_grown_embedding_codes_the_shared_rows_against_the_base(any_vault, tmp_path):
    vault = any_vault
    base, tuned = weights(0)
    ingest_folder(vault, make_repo(tmp_path / "base", {"model.safetensors": st(base)}), "org/base")
    grown_file = st(tuned)
    src = make_repo(tmp_path / "tuned", {"model.safetensors": grown_file})
    result = ingest_folder(vault, src, "org/tuned-more-tokens")
    assert result.base == "org/base"

    (shared, name, base_id, shared_size, depth, _), (added, no_name, no_base, added_size, _, _) = \
        embedding_segments(vault, grown_file)
    assert (shared, added) == (ROWS * COLS * 4, ADDED * COLS * 4)
    assert name.endswith("word_embeddings.weight") and no_name is None
    assert base_id is not None and depth == 1 and no_base is None  # shared rows: a delta; added rows: alone
    with vault.catalog.read_session() as s:
        base_emb = s.scalar(select(Object).where(Object.id == base_id))
        assert base_emb.raw_size == ROWS * COLS * 4 and base_emb.base_id is None

    # What the whole embedding costs coded alone, as it was before a grown tensor had a base.
    emb = np.ascontiguousarray(tuned["embeddings.word_embeddings.weight"]).tobytes()
    alone = sum(len(f) for frames, _ in choose_and_encode(memoryview(emb), "F32", None).frame_slices() for f in frames)
    assert shared_size + added_size < 0.85 * alone  # measured: 0.76

    out = tmp_path / "out"
    restore(vault, "org/tuned-more-tokens", "main", out)
    assert tree_sha256(out) == tree_sha256(src)
    assert verify(vault).ok


def test_grown_bf16_embedding_under_other_names_finds_its_fp32_rows(vault, tmp_path):
    """A BF16 fine-tune saved by another class (keys prefixed) with added tokens: the shared rows are
    found by content and coded against the FP32 base cast down; the rest of the tensor alone."""
    base, tuned = weights(1)
    ingest_folder(vault, make_repo(tmp_path / "base", {"model.safetensors": st(base)}), "org/base")
    grown_file = st(tuned, "BF16", prefix="bert.")
    src = make_repo(tmp_path / "tuned", {"model.safetensors": grown_file})
    ingest_folder(vault, src, "org/bert-bf16-more-tokens")
    (shared, _, base_id, _, depth, _), (added, _, no_base, _, _, _) = embedding_segments(vault, grown_file)
    assert (shared, added) == (ROWS * COLS * 2, ADDED * COLS * 2)
    assert base_id is not None and depth == 1 and no_base is None
    restore(vault, "org/bert-bf16-more-tokens", "main", tmp_path / "out")
    assert tree_sha256(tmp_path / "out") == tree_sha256(src)


def test_a_tensor_that_shrank_or_changed_row_width_is_coded_alone(vault, tmp_path):
    """Only a stored tensor holding whole leading rows of the new one is a partial base."""
    base, _ = weights(2)
    ingest_folder(vault, make_repo(tmp_path / "base", {"model.safetensors": st(base)}), "org/base")
    emb = base["embeddings.word_embeddings.weight"]
    cut = {"embeddings.word_embeddings.weight": emb[: ROWS // 2].copy(),
           "encoder.dense.weight": base["encoder.dense.weight"]}
    wider = {"embeddings.word_embeddings.weight": np.ascontiguousarray(emb.reshape(ROWS // 2, 2 * COLS)[:, :COLS + 3]),
             "encoder.dense.weight": base["encoder.dense.weight"]}
    for name, tensors in (("org/cut", cut), ("org/reshaped", wider)):
        data = st(tensors)
        src = make_repo(tmp_path / name, {"model.safetensors": data})
        ingest_folder(vault, src, name)
        for _, _, base_id, _, _, _ in embedding_segments(vault, data):
            assert base_id is None
        restore(vault, name, "main", tmp_path / "out" / name)
        assert tree_sha256(tmp_path / "out" / name) == tree_sha256(src)
