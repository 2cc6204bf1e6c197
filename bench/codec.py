"""Codec benchmark: weightvault vs ZipNN vs zstandard on the shared MiniLM repos.

    .venv/bin/python bench/codec.py [--repos /tmp/wv-repos] [--repeat 3] [--out bench/results/codec.json]

Each data set is the concatenation of a model's float tensors (what a store codes):
FP32 base (sentence-transformers/all-MiniLM-L6-v2), its BF16 cast, a BF16 fine-tune
(acme/minilm-codesearch-bf16) and an FP16 cast of the base made here with numpy.
weightvault compresses with ``encode_frames`` (the store's ingest path) and decompresses
a container with ``decode``.  Speeds are best-of-``repeat`` wall clock in MB/s of raw bytes; "peak" is the process's
peak RSS growth during one compress or decompress call (Linux VmHWM, reset through
/proc/self/clear_refs), as a multiple of the raw size, the input being resident already.

Decoding, single thread, in two settings a user meets, measured interleaved (one call of
each coder per round, best of ``repeat`` rounds, so machine load hits both alike):
- "fresh": every call returns new memory and earlier results stay alive (a loader keeping
  the tensors it decoded); first-touch page faults are part of the cost.
- "reused": weightvault decodes into one caller buffer (``decode(blob, out)``); ZipNN has
  no such call, so its previous result is dropped first and its allocator may hand the
  memory back.
ZipNN mutates the buffer it decompresses from, so each of its calls gets a fresh copy of its
input, made outside the timed region.  The ratio columns are weightvault / ZipNN.
A second table codes the family members (casts, fine-tunes) against the FP32 base four
ways: "xor v4" (distance payloads, near-identical frames as lists of the moved elements: what
ingest writes), "xor v3" (distance payloads, one rANS symbol per element: frame version 3's
coding), "xor v2" (XOR planes, the coding of frame version 2) and "ckpt" (the checkpoint coder),
and times their decode beside the base's own decode in the same rounds (``--only delta`` runs
just this table).  It also codes the BF16 fine-tune against the FP32 fine-tune (its RNE cast but
for 0.4% of the elements), as the store keeps it once both are in.  Results are printed and
written as JSON.
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
from weightvault.dedup.formats import safetensors

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


def best_interleaved(calls: dict[str, Callable[[], object]], repeat: int,
                     fresh_input: dict[str, Callable[[], object]] | None = None,
                     clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Best time of each call over ``repeat`` rounds, one call of each per round.  A call
    in ``fresh_input`` gets that function's result (made untimed) as its argument."""
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(repeat):
        kept = []  # "fresh" results stay alive until the round ends
        for name, fn in calls.items():
            arg = fresh_input[name]() if fresh_input and name in fresh_input else None
            t = clock()
            result = fn(arg) if arg is not None else fn()
            best[name] = min(best[name], clock() - t)
            if name.endswith("fresh"):
                kept.append(result)
            del result
        del kept
    return best


def bench_decode(label: str, dtype: str, data: bytes, container: bytes, zipnn_blob: bytes, repeat: int) -> dict:
    """Single-thread decode, fresh and reused output, weightvault and ZipNN interleaved."""
    out = _lib.new_output(len(data))
    zipnn = lambda blob: Zipnn().decompress(blob, dtype, len(data), 1)  # noqa: E731
    best = best_interleaved({
        "weightvault fresh": lambda: codec.decode(container),
        "zipnn fresh": zipnn,
        "weightvault reused": lambda: codec.decode(container, out),
        "zipnn reused": zipnn,
    }, repeat, fresh_input={"zipnn fresh": lambda: bytearray(zipnn_blob),
                            "zipnn reused": lambda: bytearray(zipnn_blob)})
    row = {"data": label, "dtype": dtype, "raw_bytes": len(data), "repeat": repeat}
    for name, t in best.items():
        row[name.replace(" ", "_") + "_MBps"] = len(data) / t / 1e6
    for mode in ("fresh", "reused"):
        row[f"{mode}_ratio"] = row[f"weightvault_{mode}_MBps"] / row[f"zipnn_{mode}_MBps"]
    print(f"{label:16} {row['weightvault_fresh_MBps']:7.0f} {row['zipnn_fresh_MBps']:7.0f} {row['fresh_ratio']:5.2f}x"
          f"   {row['weightvault_reused_MBps']:7.0f} {row['zipnn_reused_MBps']:7.0f} {row['reused_ratio']:5.2f}x")
    return row


def bench_plain(datasets: dict[str, tuple[str, bytes]], repeat: int) -> tuple[list[dict], list[dict]]:
    rows, blobs = [], {}
    for label, (dtype, data) in datasets.items():
        for coder in (Weightvault(), Zipnn(), Zstd(1), Zstd(3)):
            row: dict = {"data": label, "dtype": dtype, "codec": coder.name, "raw_bytes": len(data)}
            blob = coder.compress(data, dtype, 1)
            if isinstance(coder, Weightvault):
                blob = coder.container(blob)
            back = coder.decompress(blob, dtype, len(data), 1)
            assert bytes(back) == data, (label, coder.name)
            blobs[label, coder.name] = blob
            row["ratio"] = coder.size(blob) / len(data)
            for threads in (1, 2):
                tc = best_time(lambda: coder.compress(data, dtype, threads), repeat)
                td = best_time(lambda: coder.decompress(blob, dtype, len(data), threads), repeat)
                row[f"compress_MBps_{threads}t"] = len(data) / tc / 1e6
                row[f"decompress_MBps_{threads}t"] = len(data) / td / 1e6
            row["peak_compress_x"] = peak_of(lambda: coder.compress(data, dtype, 1)) / len(data)
            row["peak_decompress_x"] = peak_of(lambda: coder.decompress(blob, dtype, len(data), 1)) / len(data)
            rows.append(row)
            print_row(row)
    print(f"\nsingle-thread decode, MB/s, best of {repeat} interleaved rounds")
    print(f"{'data':16} {'wv fresh':>7} {'ZipNN':>7} {'ratio':>6}   {'wv reused':>7} {'ZipNN':>7} {'ratio':>6}")
    decode = [bench_decode(label, dtype, data, blobs[label, "weightvault"], bytes(blobs[label, "zipnn"]), repeat)
              for label, (dtype, data) in datasets.items()]
    return rows, decode


def member_tensors(repos: Path, repo: str, names: list[str]) -> tuple[str, bytes]:
    """(dtype, concatenated bytes) of a repo's float tensors named ``names``, across its shards."""
    raws = [p.read_bytes() for p in sorted((repos / repo).glob("*.safetensors"))]
    found = {t.name: (t.dtype, memoryview(raw)[t.start:t.end])
             for raw in raws for t in safetensors.parse(raw, label=repo).tensors if t.dtype in FLOATS}
    dtypes = {found[n][0] for n in names}
    assert len(dtypes) == 1, dtypes
    return dtypes.pop(), b"".join(found[n][1] for n in names)


def _coded(data: bytes, dtype: str, base: bytes, how: str) -> bytes:
    """A container of ``data`` coded against an F32 base: "xor v4" (distances, lists for
    near-identical frames: what ingest writes), "xor v3" (distances, version 3's coding),
    "xor v2" (XOR planes, version 2's coding) or "ckpt" (the checkpoint coder)."""
    ctx = _lib.context().ctx
    _lib.lib.wv_ctx_set_mag(ctx, how != "xor v2")
    _lib.lib.wv_ctx_set_sparse(ctx, how == "xor v4")
    try:
        return codec.encode(data, dtype, codec="ckpt" if how == "ckpt" else "xor", base=base, base_dtype="F32")
    finally:
        _lib.lib.wv_ctx_set_mag(ctx, 1)
        _lib.lib.wv_ctx_set_sparse(ctx, 1)


def bench_delta(repos: Path, base: bytes, repeat: int) -> list[dict]:
    """Members coded against the FP32 base (cast to the member dtype) four ways, and their
    single-thread decode beside the base's own (plane-coded) decode, interleaved rounds:
    MB/s into a fresh and into a reused buffer, and MB per CPU second into a reused one."""
    names = sorted(t.name for t in safetensors.parse((repos / BASE / "model.safetensors").read_bytes(),
                                                      label=BASE).tensors if t.dtype in FLOATS)
    fp32_tuned = "lab/minilm-codesearch-fp32"
    members = {  # label: (repo, the repo of its F32 base; None: the FP32 base, or for the repo: made here)
        "BF16 cast": ("acme/all-MiniLM-L6-v2-bf16", None),
        "FP16 cast": (None, None),
        "BF16 fine-tune lr1e-5": ("acme/minilm-codesearch-bf16", None),
        "BF16 frozen fine-tune": ("acme/minilm-frozen-bf16", None),
        "FP32 fine-tune": (fp32_tuned, None),
        "BF16 ft vs FP32 ft": ("acme/minilm-codesearch-bf16", fp32_tuned),
    }
    base_blob = codec.encode(base, "F32")
    base_out = _lib.new_output(len(base))
    rows = []
    print(f"{'member':24} {'coding':7} {'ratio':>6}  {'fresh':>6} {'reused':>6} {'MB/cpu-s':>8} "
          f"{'base MB/cpu-s':>13} {'member/base':>11}")
    for label, (repo, base_repo) in members.items():
        dtype, data = member_tensors(repos, repo, names) if repo else ("F16", fp16_cast(base))
        against = member_tensors(repos, base_repo, names)[1] if base_repo else base
        out = _lib.new_output(len(data))
        for how in ("xor v4", "xor v3", "xor v2", "ckpt"):
            blob = _coded(data, dtype, against, how)
            assert bytes(codec.decode(blob, base=against)) == data, (label, how)
            calls = {"fresh": lambda: codec.decode(blob, base=against),
                     "reused": lambda: codec.decode(blob, out, base=against)}
            wall = best_interleaved({**calls, "base": lambda: codec.decode(base_blob, base_out)}, repeat)
            cpu = best_interleaved({"reused": calls["reused"], "base": lambda: codec.decode(base_blob, base_out)},
                                   repeat, clock=time.process_time)
            row = {"data": label, "dtype": dtype, "coding": how, "raw_bytes": len(data),
                   "ratio": len(blob) / len(data),
                   "decompress_fresh_MBps_1t": len(data) / wall["fresh"] / 1e6,
                   "decompress_reused_MBps_1t": len(data) / wall["reused"] / 1e6,
                   "decompress_reused_MB_per_cpu_s": len(data) / cpu["reused"] / 1e6,
                   "base_decompress_MB_per_cpu_s": len(base) / cpu["base"] / 1e6}
            row["member_over_base_cpu"] = row["decompress_reused_MB_per_cpu_s"] / row["base_decompress_MB_per_cpu_s"]
            rows.append(row)
            print(f"{label:24} {how:7} {row['ratio']:.4f}  {row['decompress_fresh_MBps_1t']:6.0f} "
                  f"{row['decompress_reused_MBps_1t']:6.0f} {row['decompress_reused_MB_per_cpu_s']:8.0f} "
                  f"{row['base_decompress_MB_per_cpu_s']:13.0f} {row['member_over_base_cpu']:11.2f}")
    return rows


def print_row(row: dict) -> None:
    print(f"{row['data']:16} {row['codec']:12} {row['ratio']:.4f}  "
          f"{row['compress_MBps_1t']:7.0f} {row['compress_MBps_2t']:7.0f}  "
          f"{row['decompress_MBps_1t']:7.0f} {row['decompress_MBps_2t']:7.0f}  "
          f"{row['peak_compress_x']:5.2f} {row['peak_decompress_x']:5.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repos", type=Path, default=Path("/tmp/wv-repos"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "codec.json")
    ap.add_argument("--only", choices=["plain", "delta"], help="run one of the two tables")
    args = ap.parse_args()
    f32_dtype, base = float_tensors(args.repos / BASE / "model.safetensors")
    datasets = {
        "FP32 base": (f32_dtype, base),
        "BF16 cast": float_tensors(args.repos / "acme/all-MiniLM-L6-v2-bf16/model.safetensors"),
        "BF16 fine-tune": float_tensors(args.repos / "acme/minilm-codesearch-bf16/model.safetensors"),
        "FP16 cast": ("F16", fp16_cast(base)),
    }
    plain = decode = delta = []
    if args.only != "delta":
        print(f"{'data':16} {'codec':12} {'ratio':6}  {'enc 1t':>7} {'enc 2t':>7}  {'dec 1t':>7} {'dec 2t':>7}  "
              f"{'peakC':>5} {'peakD':>5}   (MB/s; peak = RSS growth / raw size)")
        plain, decode = bench_plain(datasets, args.repeat)
        print()
    if args.only != "plain":
        delta = bench_delta(args.repos, base, args.repeat)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = {"plain": plain, "decode": decode, "delta": delta}
    if args.only and args.out.exists():  # keep the table this run skipped
        kept = json.loads(args.out.read_text())
        results = {k: v or kept.get(k, []) for k, v in results.items()}
    args.out.write_text(json.dumps({**results, "loadavg": os.getloadavg(), "cpus": os.cpu_count()}, indent=1))
    print(f"\nload average at the end: {os.getloadavg()}; wrote {args.out}")


if __name__ == "__main__":
    main()
