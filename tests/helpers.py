"""Small builders for tests: safetensors files and repo folders made from numpy arrays."""
from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np


def safetensors_bytes(tensors: dict[str, tuple[str, np.ndarray]], metadata: dict | None = None) -> bytes:
    """name -> (safetensors dtype, array) as a safetensors file, tensors in name order."""
    header, chunks, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, (dtype, array) in sorted(tensors.items()):
        raw = np.ascontiguousarray(array).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(chunks)


def make_repo(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def tree_sha256(root: Path) -> dict[str, str]:
    files = (p for p in sorted(root.rglob("*")) if p.is_file())
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files if ".cache" not in p.relative_to(root).parts}


def small_model(seed: int = 0, dtype: str = "F32") -> bytes:
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((64, 96)) * 0.02).astype(np.float32)
    b = (rng.standard_normal(96) * 0.01).astype(np.float32)
    if dtype == "BF16":
        to = lambda a: (a.view(np.uint32) >> 16).astype(np.uint16)  # noqa: E731
        return safetensors_bytes({"layer.weight": ("BF16", to(w)), "layer.bias": ("BF16", to(b))})
    return safetensors_bytes({"layer.weight": ("F32", w), "layer.bias": ("F32", b)})
