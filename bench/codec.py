"""Codec benchmark: weightvault vs ZipNN vs zstandard on the shared MiniLM repos.

    .venv/bin/python bench/codec.py [--repos /tmp/wv-repos] [--repeat 3] [--out bench/results/codec.json]

Each data set is the concatenation of a model's float tensors (what a store codes):
FP32 base (sentence-transformers/all-MiniLM-L6-v2), its BF16 cast, a BF16 fine-tune
(acme/minilm-codesearch-bf16) and an FP16 cast of the base made here with numpy.
weightvault compresses with ``encode_frames`` (the store's ingest path) and decompresses
a container with ``decode``.  Speeds are best-of-``repeat`` wall clock in MB/s of raw bytes; "peak" is the process's
peak RSS growth during one compress or decompress call (Linux VmHWM, reset through
/proc/self/clear_refs), as a multiple of the raw size, the input being resident already.
Fresh output memory costs page faults on this VM (a 45 MB bytearray: ~24 ms), and libraries
that recycle their output buffers (ZipNN does, after its first call of a given size) look
faster on later data sets, so weightvault's row also shows decoding into a reused buffer.
A second table codes fine-tunes and casts with codec "xor" against the FP32 base, with
and without base-exponent contexts.  Results are printed and written as JSON.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import zstandard
from zipnn import ZipNN

from weightvault import codec
from weightvault.codec import _lib
from weightvault.dedup import safetensors

BASE = "sentence-transformers/all-MiniLM-L6-v2"
FLOATS = {"F32", "F16", "BF16"}
ZIPNN_DTYPE = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}


def float_tensors(path: Path) -> tuple[str, bytes]:
    """(dtype, concatenated bytes) of the float tensors of one safetensors file, in name order."""
    raw = path.read_bytes()
    spans = sorted((t for t in safetensors.parse(raw, label=path.name).tensors if t.dtype in FLOATS),
                   key=lambda t: t.name)
    dtypes = {t.dtype for t in spans}
    assert len(dtypes) == 1, dtypes
    body = memoryview(raw)
    return dtypes.pop(), b"".join(body[t.start:t.end] for t in spans)


def fp16_cast(f32: bytes) -> bytes:
    """F32 -> F16, IEEE round to nearest even (what torch's .half() does for finite values)."""
    import numpy as np
    with np.errstate(over="ignore"):
        return np.frombuffer(f32, np.float32).astype(np.float16).tobytes()


def _hwm_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


_libc = ctypes.CDLL("libc.so.6")


def peak_of(fn: Callable[[], object]) -> float:
    """Peak RSS growth (bytes) while fn() runs and its result is alive.  Free heap
    memory is returned to the OS first, so reused allocations count as growth."""
    gc.collect()
    _libc.malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    before = _rss_kib()
    result = fn()
    peak = _hwm_kib() - before
    del result
    return peak * 1024.0


def best_time(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


class Coder:
    """compress(data, threads) -> blob; decompress(blob, threads) -> raw."""

    name = ""

    def compress(self, data: bytes, dtype: str, threads: int): ...

    def decompress(self, blob, dtype: str, size: int, threads: int): ...


class Weightvault(Coder):
    """Compress = encode_frames (what the store ingests: one bytes per frame, peak ~ output
    size); decompress = decode of the container (frames back to back, built untimed)."""

    name = "weightvault"

    def compress(self, data, dtype, threads):
        return codec.encode_frames(data, dtype, threads=threads)

    def decompress(self, blob, dtype, size, threads):
        return codec.decode(blob, threads=threads)

    @staticmethod
    def size(blob) -> int:
        return len(blob)

    @staticmethod
    def container(frames) -> bytes:
        return b"WVC\x01" + b"".join(frames)


class Zipnn(Coder):
    name = "zipnn"

    def compress(self, data, dtype, threads):
        return ZipNN(input_format="byte", bytearray_dtype=ZIPNN_DTYPE[dtype], threads=threads).compress(bytearray(data))

    def decompress(self, blob, dtype, size, threads):
        return ZipNN(input_format="byte", bytearray_dtype=ZIPNN_DTYPE[dtype], threads=threads).decompress(blob)

    @staticmethod
    def size(blob) -> int:
        return len(blob)


class Zstd(Coder):
    def __init__(self, level: int) -> None:
        self.level = level
        self.name = f"zstd-{level}"

    def compress(self, data, dtype, threads):
        return zstandard.ZstdCompressor(level=self.level, threads=threads if threads > 1 else 0).compress(data)

    def decompress(self, blob, dtype, size, threads):  # zstd decompression is single-threaded
        return zstandard.ZstdDecompressor().decompress(blob)

    @staticmethod
    def size(blob) -> int:
        return len(blob)


def bench_plain(datasets: dict[str, tuple[str, bytes]], repeat: int) -> list[dict]:
    rows = []
    for label, (dtype, data) in datasets.items():
        for coder in (Weightvault(), Zipnn(), Zstd(1), Zstd(3)):
            row: dict = {"data": label, "dtype": dtype, "codec": coder.name, "raw_bytes": len(data)}
            blob = coder.compress(data, dtype, 1)
            if isinstance(coder, Weightvault):
                blob = coder.container(blob)
            back = coder.decompress(blob, dtype, len(data), 1)
            assert bytes(back) == data, (label, coder.name)
            row["ratio"] = coder.size(blob) / len(data)
            for threads in (1, 2):
                tc = best_time(lambda: coder.compress(data, dtype, threads), repeat)
                td = best_time(lambda: coder.decompress(blob, dtype, len(data), threads), repeat)
                row[f"compress_MBps_{threads}t"] = len(data) / tc / 1e6
                row[f"decompress_MBps_{threads}t"] = len(data) / td / 1e6
            if isinstance(coder, Weightvault):  # into a reused caller buffer: no page faults
                out = bytearray(len(data))
                row["decompress_into_MBps_1t"] = len(data) / best_time(lambda: codec.decode(blob, out), repeat) / 1e6
            row["peak_compress_x"] = peak_of(lambda: coder.compress(data, dtype, 1)) / len(data)
            row["peak_decompress_x"] = peak_of(lambda: coder.decompress(blob, dtype, len(data), 1)) / len(data)
            rows.append(row)
            print_row(row)
    return rows


def bench_delta(repos: Path, base: bytes, repeat: int) -> list[dict]:
    """Members coded with "xor" against the FP32 base (cast to the member dtype)."""
    rows = []
    members = {
        "BF16 cast": "acme/all-MiniLM-L6-v2-bf16",
        "BF16 fine-tune lr1e-5": "acme/minilm-codesearch-bf16",
        "BF16 frozen fine-tune": "acme/minilm-frozen-bf16",
    }
    ctx = _lib.context().ctx
    for label, repo in members.items():
        dtype, data = float_tensors(repos / repo / "model.safetensors")
        row: dict = {"data": label, "dtype": dtype, "codec": "xor vs FP32 base", "raw_bytes": len(data)}
        for contexts in (1, 0):
            _lib.lib.wv_ctx_set_contexts(ctx, contexts)
            frames = codec.encode_frames(data, dtype, codec="xor", base=base, base_dtype="F32")
            row["ratio" if contexts else "ratio_order0"] = sum(map(len, frames)) / len(data)
        _lib.lib.wv_ctx_set_contexts(ctx, 1)
        container = codec.encode(data, dtype, codec="xor", base=base, base_dtype="F32")
        assert bytes(codec.decode(container, base=base)) == data
        row["estimate"] = codec.estimate_size(data, dtype, base=base, base_dtype="F32") / len(data)
        row["zipnn_plain"] = len(Zipnn().compress(data, dtype, 1)) / len(data)
        row["compress_MBps_1t"] = len(data) / best_time(
            lambda: codec.encode_frames(data, dtype, codec="xor", base=base, base_dtype="F32"), repeat) / 1e6
        row["decompress_MBps_1t"] = len(data) / best_time(lambda: codec.decode(container, base=base), repeat) / 1e6
        rows.append(row)
        print(f"{label:24} ratio {row['ratio']:.4f} (order-0 only {row['ratio_order0']:.4f}, estimate "
              f"{row['estimate']:.4f}; plain ZipNN {row['zipnn_plain']:.4f})  "
              f"enc {row['compress_MBps_1t']:.0f} MB/s dec {row['decompress_MBps_1t']:.0f} MB/s")
    return rows


def print_row(row: dict) -> None:
    print(f"{row['data']:16} {row['codec']:12} {row['ratio']:.4f}  "
          f"{row['compress_MBps_1t']:7.0f} {row['compress_MBps_2t']:7.0f}  "
          f"{row['decompress_MBps_1t']:7.0f} {row['decompress_MBps_2t']:7.0f}  "
          f"{row['peak_compress_x']:5.2f} {row['peak_decompress_x']:5.2f}"
          + (f"  (dec into reused out: {row['decompress_into_MBps_1t']:.0f})" if "decompress_into_MBps_1t" in row else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repos", type=Path, default=Path("/tmp/wv-repos"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "codec.json")
    args = ap.parse_args()
    f32_dtype, base = float_tensors(args.repos / BASE / "model.safetensors")
    datasets = {
        "FP32 base": (f32_dtype, base),
        "BF16 cast": float_tensors(args.repos / "acme/all-MiniLM-L6-v2-bf16/model.safetensors"),
        "BF16 fine-tune": float_tensors(args.repos / "acme/minilm-codesearch-bf16/model.safetensors"),
        "FP16 cast": ("F16", fp16_cast(base)),
    }
    print(f"{'data':16} {'codec':12} {'ratio':6}  {'enc 1t':>7} {'enc 2t':>7}  {'dec 1t':>7} {'dec 2t':>7}  "
          f"{'peakC':>5} {'peakD':>5}   (MB/s; peak = RSS growth / raw size)")
    plain = bench_plain(datasets, args.repeat)
    print()
    delta = bench_delta(args.repos, base, args.repeat)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"plain": plain, "delta": delta, "loadavg": os.getloadavg(),
                                    "cpus": os.cpu_count()}, indent=1))
    print(f"\nload average at the end: {os.getloadavg()}; wrote {args.out}")


if __name__ == "__main__":
    main()
