"""Family storage on the shared repos: weightvault against a ZipLLM-style baseline and ZipNN alone.

    python bench/family.py [--repos DIR] [--json bench/results/family.json]

In one run, on the same bytes:
- weightvault: all six repos ingested into one embedded store (file and tensor
  dedup, automatic families, delta coding against the family base, plane coding);
  then again after ``weightvault rebase`` (members re-coded against a sibling
  ingested after them where that pays);
- ZipLLM-style (arXiv 2505.06252): file dedup, tensor dedup, BitX for every BF16
  tensor paired by name with a BF16 base (XOR, exponent plane and sign+mantissa
  plane each zstd-3), zstd-3 for everything else; the BF16 base is the one a user
  would name for a BF16 fine-tune: the BF16 cast of the base model;
- ZipNN alone: every file compressed on its own (tensor bytes by dtype, other files zstd-3).
Then, per BF16 fine-tune, the delta against its base: the store's own per-tensor choice
(xor or ckpt delta, or plain planes) against BitX, size and encode/decode MB/s (one
thread each; our encode time includes trying each candidate codec on the tensor).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import REPOS, ROOT, folder_bytes, materialized  # noqa: E402

BASE, BF16_BASE = REPOS[0], REPOS[2]
BF16_FINETUNES = ["acme/minilm-codesearch-bf16", "acme/minilm-frozen-bf16"]
ZIPNN_DTYPE = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}


def tensors_of(path: Path) -> tuple[int, dict[str, tuple[str, bytes]]]:
    from weightvault.dedup.formats import safetensors

    data = path.read_bytes()
    layout = safetensors.parse(data, label=path.name)
    return layout.header_end, {t.name: (t.dtype, data[t.start:t.end]) for t in layout.tensors}


def repo_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# -- BitX, as ZipLLM describes it ----------------------------------------------------------------

def bitx_encode(member: bytes, base: bytes, cctx) -> tuple[bytes, bytes]:
    x = np.frombuffer(member, np.uint16) ^ np.frombuffer(base, np.uint16)
    exponent = ((x >> 7) & 0xFF).astype(np.uint8)
    sign_mantissa = (((x >> 8) & 0x80) | (x & 0x7F)).astype(np.uint8)
    return cctx.compress(exponent.tobytes()), cctx.compress(sign_mantissa.tobytes())


def bitx_decode(planes: tuple[bytes, bytes], base: bytes, dctx) -> bytes:
    e = np.frombuffer(dctx.decompress(planes[0]), np.uint8).astype(np.uint16)
    sm = np.frombuffer(dctx.decompress(planes[1]), np.uint8).astype(np.uint16)
    x = (e << 7) | ((sm & 0x80) << 8) | (sm & 0x7F)
    return (x ^ np.frombuffer(base, np.uint16)).tobytes()


def zipllm_total(repos: Path) -> int:
    """Stored bytes of the six repos under the ZipLLM pipeline."""
    cctx = zstandard.ZstdCompressor(level=3)
    seen_files, seen_tensors, total = set(), set(), 0
    _, bf16_base = tensors_of(repos / BF16_BASE / "model.safetensors")
    for name in REPOS:
        for path in repo_files(repos / name):
            data = path.read_bytes()
            digest = hashlib.sha256(data).digest()
            if digest in seen_files:
                continue
            seen_files.add(digest)
            if path.suffix != ".safetensors":
                total += len(cctx.compress(data))
                continue
            header_end, tensors = tensors_of(path)
            total += header_end
            for tname, (dtype, raw) in tensors.items():
                tdig = hashlib.sha256(raw).digest()
                if tdig in seen_tensors:
                    continue
                seen_tensors.add(tdig)
                base = bf16_base.get(tname)
                if dtype == "BF16" and name != BF16_BASE and base and len(base[1]) == len(raw):
                    total += sum(map(len, bitx_encode(raw, base[1], cctx)))
                else:
                    total += len(cctx.compress(raw))
    return total


def zipnn_total(repos: Path) -> int:
    from zipnn import ZipNN

    cctx = zstandard.ZstdCompressor(level=3)
    total = 0
    for name in REPOS:
        for path in repo_files(repos / name):
            if path.suffix != ".safetensors":
                total += len(cctx.compress(path.read_bytes()))
                continue
            header_end, tensors = tensors_of(path)
            total += header_end
            for dtype, raw in tensors.values():
                if dtype not in ZIPNN_DTYPE:
                    total += len(cctx.compress(raw))
                    continue
                z = ZipNN(input_format="byte", bytearray_dtype=ZIPNN_DTYPE[dtype], threads=1)
                total += len(z.compress(bytearray(raw)))
    return total


def ours_total(repos: Path, work: Path) -> tuple[int, int, dict[str, int]]:
    """Stored bytes after ingesting the six repos in hub order, then after ``weightvault rebase``."""
    from weightvault.dedup.ingest import ingest_folder
    from weightvault.dedup.rebase import Rebaser
    from weightvault.store import Vault

    vault = Vault.open(work / "store")
    per_repo = {name: ingest_folder(vault, repos / name, name).new_stored_bytes for name in REPOS}
    saved = Rebaser(vault).run().bytes_saved
    vault.close()
    return sum(per_repo.values()), sum(per_repo.values()) - saved, per_repo


def delta_pairs(repos: Path) -> list[dict]:
    """Per BF16 fine-tune: our delta (the store's own per-tensor choice among its delta codecs,
    predicting from the FP32 base cast) against BitX (XOR against the BF16 cast, zstd-3 planes)."""
    from weightvault import codec
    from weightvault.dedup.choice import BaseCandidate, choose_and_encode

    cctx, dctx = zstandard.ZstdCompressor(level=3), zstandard.ZstdDecompressor()
    _, fp32 = tensors_of(repos / BASE / "model.safetensors")
    _, bf16 = tensors_of(repos / BF16_BASE / "model.safetensors")
    rows = []
    for name in BF16_FINETUNES:
        _, member = tensors_of(repos / name / "model.safetensors")
        pairs = [(raw, fp32[t][1], bf16[t][1]) for t, (dt, raw) in member.items() if dt == "BF16" and t in bf16]
        raw_bytes = sum(len(m) for m, _, _ in pairs)
        t0 = time.perf_counter()
        ours = []
        for m, b32, _ in pairs:
            choice = choose_and_encode(memoryview(m), "BF16", BaseCandidate("", "F32", 0, memoryview(b32)), threads=1)
            ours.append([f for frames, _ in choice.frame_slices() for f in frames])
        t1 = time.perf_counter()
        for frames, (m, b32, _) in zip(ours, pairs):
            out = bytearray()
            for i, f in enumerate(frames):
                info = codec.frame_info(f)
                kw = {}
                if info.needs_base:
                    off, n = codec.base_range(i * codec.FRAME_SIZE, info.raw_size, "BF16", "F32")
                    kw = {"base": b32[off:off + n], "base_dtype": "F32"}
                out += codec.decode_frame(f, **kw)
            assert out == m
        t2 = time.perf_counter()
        bitx = [bitx_encode(m, b16, cctx) for m, _, b16 in pairs]
        t3 = time.perf_counter()
        for planes, (m, _, b16) in zip(bitx, pairs):
            assert bitx_decode(planes, b16, dctx) == m
        t4 = time.perf_counter()
        ours_size = sum(len(f) for frames in ours for f in frames)
        bitx_size = sum(len(a) + len(b) for a, b in bitx)
        rows.append({
            "repo": name, "raw_bytes": raw_bytes,
            "ours_ratio": ours_size / raw_bytes, "bitx_ratio": bitx_size / raw_bytes,
            "ours_smaller_by": 1 - ours_size / bitx_size,
            "ours_encode_MBps": raw_bytes / (t1 - t0) / 1e6, "ours_decode_MBps": raw_bytes / (t2 - t1) / 1e6,
            "bitx_encode_MBps": raw_bytes / (t3 - t2) / 1e6, "bitx_decode_MBps": raw_bytes / (t4 - t3) / 1e6,
        })
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repos", type=Path, default=ROOT / ".cache" / "shared-repos")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "family.json")
    args = ap.parse_args()
    repos = materialized(args.repos)
    raw = sum(folder_bytes(repos / n) for n in REPOS)
    work = Path(tempfile.mkdtemp(prefix="wv-family-"))
    try:
        ours, rebased, per_repo = ours_total(repos, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    totals = {"weightvault": ours, "weightvault_rebased": rebased, "zipllm_style": zipllm_total(repos), "zipnn_alone": zipnn_total(repos)}
    pairs = delta_pairs(repos)

    print(f"six shared repos, {raw / 1e6:.1f} MB raw")
    print(f"{'system':20s} {'stored MB':>10s} {'stored/raw':>10s}")
    for k, v in totals.items():
        print(f"{k:20s} {v / 1e6:10.2f} {v / raw:10.4f}")
    print()
    print(f"{'BF16 fine-tune delta':30s} {'ours':>7s} {'BitX':>7s} {'smaller':>8s} "
          f"{'ours enc':>9s} {'ours dec':>9s} {'BitX enc':>9s} {'BitX dec':>9s}  (MB/s, 1 thread)")
    for r in pairs:
        print(f"{r['repo']:30s} {r['ours_ratio']:7.4f} {r['bitx_ratio']:7.4f} {r['ours_smaller_by']:8.1%} "
              f"{r['ours_encode_MBps']:9.0f} {r['ours_decode_MBps']:9.0f} {r['bitx_encode_MBps']:9.0f} "
              f"{r['bitx_decode_MBps']:9.0f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"raw_bytes": raw, "stored_bytes": totals,
                                     "stored_over_raw": {k: v / raw for k, v in totals.items()},
                                     "weightvault_per_repo": per_repo, "bf16_deltas": pairs}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
