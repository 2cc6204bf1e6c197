"""Containers split into tensors (dedup/formats): each format written by its real library, stored
and restored bit-exactly; malformed ones stored opaque; the parsers fuzzed for a bounded time."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

import formats_build as fb
from helpers import make_repo, safetensors_bytes, tree_sha256
from weightvault.dedup import formats
from weightvault.dedup.ingest import ingest_folder
from weightvault.dedup.restore import restore
from weightvault.dedup.verify import verify
from weightvault.store import Vault
from weightvault.store.models import File, Object

FUZZ = Path(__file__).resolve().parent / "fuzz" / "fuzz_formats.py"


def weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"embed.weight": (rng.standard_normal((300, 128)) * 0.05).astype(np.float32),
            "layer.0.weight": (rng.standard_normal((128, 128)) * 0.05).astype(np.float32),
            "layer.0.bias": (rng.standard_normal(128) * 0.05).astype(np.float32)}


def every_format(tmp: Path) -> dict[str, bytes]:
    w = weights()
    half = {k: v.astype(np.float16) for k, v in w.items()}
    tmp.mkdir(parents=True, exist_ok=True)
    onnx_ext = fb.onnx_file(tmp / "ext.onnx", w, external=True)
    return {
        "model.safetensors": safetensors_bytes({k: ("F32", v) for k, v in w.items()}),
        "pytorch_model.bin": fb.torch_bin(w),
        "model-f32.gguf": fb.gguf_file(tmp / "a.gguf", w),
        "model-q8.gguf": fb.gguf_file(tmp / "b.gguf", half, quantize={"embed.weight"}),
        "model.onnx": fb.onnx_file(tmp / "m.onnx", w),
        "onnx/ext.onnx": onnx_ext,
        "onnx/ext.onnx.data": (tmp / "ext.onnx.data").read_bytes(),
        "embed.npy": fb.npy_bytes(w["embed.weight"]),
        "arrays.npz": fb.npz_bytes(w),
        "arrays-compressed.npz": fb.npz_bytes(w, compressed=True),
    }


EXPECTED = {"model.safetensors": "safetensors", "pytorch_model.bin": "torch-zip", "model-f32.gguf": "gguf",
            "model-q8.gguf": "gguf", "model.onnx": "onnx", "embed.npy": "npy", "arrays.npz": "npz",
            "arrays-compressed.npz": "blob", "onnx/ext.onnx.data": "blob"}


def test_each_parser_finds_the_tensors(tmp_path):
    files = every_format(tmp_path / "build")
    w = weights()
    for path, data in files.items():
        parsed = formats.parse(memoryview(data), path)
        if EXPECTED.get(path) == "blob":
            assert parsed is None, path
            continue
        found = {t.name: t for t in parsed.tensors}
        if path.endswith(".bin"):
            assert sorted(bytes(data[t.start:t.end]) for t in found.values()) == sorted(v.tobytes() for v in w.values())
            continue
        if path == "embed.npy":
            assert [(t.dtype, t.shape) for t in found.values()] == [("F32", (300, 128))]
            continue
        if path == "onnx/ext.onnx":
            assert not found  # initializers live in the .data file
            continue
        for name, arr in w.items():
            t = found[name]
            if path == "model-q8.gguf":
                assert t.dtype == (None if name == "embed.weight" else "F16")
                if t.dtype:
                    assert bytes(data[t.start:t.end]) == arr.astype(np.float16).tobytes()
                continue
            assert t.dtype == "F32" and t.shape == arr.shape, (path, name, t)
            assert bytes(data[t.start:t.end]) == arr.tobytes(), (path, name)


@pytest.fixture
def any_vault(store_env):
    v = Vault.open()
    yield v
    v.close()


def test_every_format_round_trips_on_every_backend(any_vault, tmp_path):
    files = every_format(tmp_path / "build")
    src = make_repo(tmp_path / "src", files)
    result = ingest_folder(any_vault, src, "org/formats")
    restore(any_vault, "org/formats", "main", tmp_path / "out")
    assert tree_sha256(tmp_path / "out") == tree_sha256(src)
    with any_vault.catalog.read_session() as s:
        fmt = dict(s.execute(select(File.sha256, File.format)).all())
        tensors = s.scalars(select(Object.digest).where(Object.kind == "tensor")).all()
    by_path = tree_sha256(src)
    for path, want in EXPECTED.items():
        assert fmt[by_path[path]] == want, path
    # The same F32 weights in six containers are stored once: two tensor objects (biases are inline),
    # and the Q8 GGUF's F16 weight.
    assert len(tensors) == 3
    assert result.new_stored_bytes < 0.45 * result.raw_bytes
    assert verify(any_vault).ok


@pytest.mark.parametrize("path", ["model-f32.gguf", "model.onnx", "embed.npy", "arrays.npz", "pytorch_model.bin"])
def test_damaged_containers_are_stored_opaque_and_bit_exact(vault, tmp_path, path):
    data = bytearray(every_format(tmp_path / "build")[path])
    rng = np.random.default_rng(len(path))
    damaged = []
    for cut in (len(data) // 3, len(data) - 5):
        damaged.append(bytes(data[:cut]))
    for _ in range(4):
        d = bytearray(data)
        for i in rng.integers(0, min(len(d), 600), 6):
            d[i] ^= 0xFF
        damaged.append(bytes(d))
    for i, blob in enumerate(damaged):
        try:
            parsed = formats.parse(memoryview(blob), path)
        except formats.FormatError:
            parsed = None
        if parsed is not None:
            for t in parsed.tensors:
                assert 0 <= t.start <= t.end <= len(blob)
        src = make_repo(tmp_path / f"src{i}", {path: blob})
        ingest_folder(vault, src, f"org/damaged{i}")
        restore(vault, f"org/damaged{i}", "main", tmp_path / f"out{i}")
        assert tree_sha256(tmp_path / f"out{i}") == tree_sha256(src)


def test_gguf_refuses_hostile_counts():
    import struct
    header = b"GGUF" + struct.pack("<IQQ", 3, 1 << 40, 1)
    with pytest.raises(formats.FormatError, match="limits"):
        formats.parse(memoryview(header), "x.gguf")
    # one metadata array of 2^60 strings in a 60-byte file
    kv = struct.pack("<Q", 1) + b"k" + struct.pack("<IIQ", 9, 8, 1 << 60)
    with pytest.raises(formats.FormatError, match="cannot fit"):
        formats.parse(memoryview(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + kv), "x.gguf")


def test_parsers_fuzz_bounded(tmp_path):
    pytest.importorskip("atheris")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    small = {k: v[:8] for k, v in weights().items()}
    seeds = {0: fb.gguf_file(tmp_path / "s.gguf", small), 1: fb.onnx_file(tmp_path / "s.onnx", small),
             2: fb.npy_bytes(small["embed.weight"]), 3: fb.npz_bytes(small), 4: fb.torch_bin(small),
             5: safetensors_bytes({k: ("F32", v) for k, v in small.items()})}
    for mode, data in seeds.items():
        (corpus / f"seed{mode}").write_bytes(bytes([mode]) + data)
    run = subprocess.run([sys.executable, str(FUZZ), "-max_total_time=20", "-rss_limit_mb=2048", "-max_len=16384",
                          "-seed=7", f"-artifact_prefix={tmp_path}/", str(corpus)],
                         capture_output=True, text=True, timeout=200)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
