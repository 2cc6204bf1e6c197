"""The codec on the shared MiniLM repos (the ``shared_repos`` fixture):
every tensor round-trips per file, sizes beat ZipNN's published figures, and a fine-tune
costs little as an xor delta against its FP32 base."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from weightvault import codec

BASE = "sentence-transformers/all-MiniLM-L6-v2/model.safetensors"

pytestmark = pytest.mark.slow


def tensors(path: Path) -> dict[str, tuple[str, bytes]]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    body = raw[8 + n:]
    return {k: (v["dtype"], body[v["data_offsets"][0]:v["data_offsets"][1]])
            for k, v in header.items() if k != "__metadata__"}


FILES = ["sentence-transformers/all-MiniLM-L6-v2/model.safetensors", "acme/all-MiniLM-L6-v2-bf16/model.safetensors",
         "acme/minilm-codesearch-bf16/model.safetensors", "lab/minilm-codesearch-fp32/model-00001-of-00002.safetensors"]


@pytest.mark.parametrize("name", FILES)
def test_every_tensor_round_trips(shared_repos: Path, name: str) -> None:
    path = shared_repos / name
    raw = coded = 0
    for key, (dtype, data) in tensors(path).items():
        blob = codec.encode(data, dtype, threads=2)
        assert bytes(codec.decode(blob, threads=2)) == data, key
        raw += len(data)
        coded += len(blob)
    limit = {"F32": 0.8193, "BF16": 0.6651}[dtype]  # ZipNN on the same model (docs/anchors)
    assert coded / raw < limit


def xor_ratio(repos: Path, member: str) -> float:
    """Coded/raw of ``member`` coded as "xor" against BASE, every tensor decoded back."""
    base = tensors(repos / BASE)
    raw = coded = 0
    for key, (dtype, data) in tensors(repos / member / "model.safetensors").items():
        base_dtype, base_data = base[key]
        blob = codec.encode(data, dtype, codec="xor", base=base_data, base_dtype=base_dtype)
        assert bytes(codec.decode(blob, base=base_data, base_dtype=base_dtype)) == data, key
        raw += len(data)
        coded += len(blob)
    return coded / raw


def test_bf16_fine_tune_as_xor_delta(shared_repos: Path) -> None:
    assert xor_ratio(shared_repos, "acme/minilm-codesearch-bf16") <= 0.17  # BitX leaves ~0.21 (docs/anchors)


def test_bf16_cast_costs_almost_nothing(shared_repos: Path) -> None:
    assert xor_ratio(shared_repos, "acme/all-MiniLM-L6-v2-bf16") < 0.01


def test_fp16_cast_size(shared_repos: Path) -> None:
    torch = pytest.importorskip("torch")
    f32 = b"".join(d for dt, d in tensors(shared_repos / BASE).values() if dt == "F32")
    f16 = torch.from_numpy(np.frombuffer(f32, np.float32).copy()).to(torch.float16).numpy().tobytes()
    blob = codec.encode(f16, "F16")
    assert bytes(codec.decode(blob)) == f16
    assert len(blob) / len(f16) < 0.8485  # ZipNN FP16
