"""What the benchmarks (and the tests) share: the shared repos, and waiting for a server's port."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("WEIGHTVAULT_SHARED", ROOT.parent / "shared"))

#: The six real repos of ../shared/data, in the order a hub would receive them.
REPOS = [
    "sentence-transformers/all-MiniLM-L6-v2",
    "mirror-org/all-MiniLM-L6-v2",
    "acme/all-MiniLM-L6-v2-bf16",
    "acme/minilm-codesearch-bf16",
    "acme/minilm-frozen-bf16",
    "lab/minilm-codesearch-fp32",
]


def materialized(repos: Path) -> Path:
    """The six repos under ``repos``, rebuilt by ../shared/data/materialize.py when absent."""
    done = repos / ".complete"
    if not done.exists():
        subprocess.run([sys.executable, str(SHARED / "data" / "materialize.py"), str(repos)],
                       check=True, stdout=subprocess.DEVNULL)
        done.touch()
    return repos


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def entropy(symbols: np.ndarray) -> float:
    """Total bits of ``symbols`` under their own empirical distribution."""
    _, counts = np.unique(symbols, return_counts=True)
    return float(-(counts * np.log2(counts / counts.sum())).sum())


def residual_bits(actual: np.ndarray, pred: np.ndarray, neighbour: bool) -> float:
    """Estimated bits to code float bit patterns ``actual`` (integers) given ``pred``: the
    residual's bit length given pred's exponent (and, with ``neighbour``, the previous
    element's residual magnitude), plus the bits below the leading one and a sign; no
    model cost.  One estimator for every predictor the studies compare."""
    a, p = actual.astype(np.int64), pred.astype(np.int64)
    r = np.abs(a - p)
    length = np.where(r == 0, 0, np.floor(np.log2(np.maximum(r, 1))).astype(np.int64) + 1)
    exponent = (p >> 23) & 0xFF
    context = exponent
    if neighbour:  # the previous element's residual magnitude, relative to this exponent
        scale = np.where(length == 0, 0, length + exponent)
        before = np.concatenate([[0], scale[:-1]])
        context = exponent * 64 + np.clip(before - exponent + 24, 0, 63)
    coded = entropy(context * 64 + length) - entropy(context)
    return coded + float(np.maximum(length - 1, 0).sum() + (length > 0).sum())


class CountingRelay:
    """A TCP relay in front of a local server that counts the bytes clients send: an upload's size on the wire."""

    def __init__(self, port: int) -> None:
        self.target, self.sent, self.lock = port, 0, threading.Lock()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while data := src.recv(1 << 20):
                if count:
                    with self.lock:
                        self.sent += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def take(self) -> int:
        """Bytes sent since the last call."""
        with self.lock:
            sent, self.sent = self.sent, 0
        return sent

    def close(self) -> None:
        self.sock.close()


def make_bf16_model(path: Path, size_mb: int, tensor_mb: int = 64) -> None:
    """A BF16 safetensors file of about ``size_mb`` of normal(0, 0.02) weights, written tensor by tensor."""
    import json
    import struct

    n_tensors = max(size_mb // tensor_mb, 1)
    elems = tensor_mb * 1024 * 1024 // 2
    header, offset = {}, 0
    for i in range(n_tensors):
        header[f"layers.{i}.weight"] = {"dtype": "BF16", "shape": [elems // 1024, 1024],
                                        "data_offsets": [offset, offset + 2 * elems]}
        offset += 2 * elems
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for _ in range(n_tensors):
            w = (rng.standard_normal(elems, dtype=np.float32) * 0.02).view(np.uint32)
            f.write((w >> 16).astype(np.uint16).tobytes())
