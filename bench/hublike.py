"""A hub-like corpus built from the shared repos with the real libraries, stored three ways.

    python bench/hublike.py [--repos DIR] [--json bench/results/hublike.json]

The corpus, in the order a hub would receive it: the six shared repos, then the base model
re-published as pytorch_model.bin (torch.save), GGUF (F32, and Q8_0 via the gguf package),
ONNX (onnx, initializers inline), NumPy .npz, in an unknown container (its tensors behind a
header of its own), the FP32 fine-tune saved by another class (every key prefixed ``bert.``),
the base with 100 vocabulary rows added, and another continuation of that fine-tune saved with 100
rows added (every stored row changed a little: only a delta of the shared rows predicts them).
Per repo, the bytes each store adds:
- weightvault: one embedded store, every repo ingested in order (ingest alone, no `weightvault
  rebase`; what an ingest saved by re-coding an earlier member against the new repo is subtracted
  from that repo's bytes);
- Xet-like CDC: Xet's chunks (64 KiB average, the same cut points hf_xet makes), LZ4 per chunk,
  each unique chunk counted once store-wide;
- ZipNN per file: each file alone, its tensors by dtype with ZipNN (any container
  dedup/formats reads), everything else zstd-3.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support import REPOS, ROOT, folder_bytes, materialized  # noqa: E402

BASE, FT32 = REPOS[0], REPOS[5]
ZIPNN_DTYPE = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}


def load_weights(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file
    out = {}
    for path in sorted(folder.glob("*.safetensors")):
        out.update(load_file(str(path)))
    return out


def build_corpus(repos: Path, out: Path) -> list[tuple[str, Path]]:
    """(repo name, folder) in ingest order: the shared six, then the republished variants."""
    import formats_build as fb

    base = load_weights(repos / BASE)
    small_files = [p for p in (repos / BASE).iterdir() if p.is_file() and p.suffix != ".safetensors"]

    def repo(name: str, files: dict[str, bytes | Path]) -> tuple[str, Path]:
        root = out / name
        root.mkdir(parents=True)
        for p in small_files:
            shutil.copy(p, root / p.name)
        for rel, data in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, Path):
                shutil.move(data, root / rel)
            else:
                (root / rel).write_bytes(data)
        return name, root

    corpus = [(name, repos / name) for name in REPOS]
    scratch = out / ".scratch"
    scratch.mkdir(parents=True)
    corpus.append(repo("hub/minilm-pt", {"pytorch_model.bin": fb.torch_bin(base)}))
    fb.gguf_file(scratch / "f32.gguf", base)
    fb.gguf_file(scratch / "q8.gguf", base, quantize={k for k, v in base.items() if v.ndim == 2})
    corpus.append(repo("hub/minilm-gguf", {"minilm-f32.gguf": scratch / "f32.gguf",
                                            "minilm-q8_0.gguf": scratch / "q8.gguf"}))
    fb.onnx_file(scratch / "model.onnx", base)
    corpus.append(repo("hub/minilm-onnx", {"onnx/model.onnx": scratch / "model.onnx"}))
    corpus.append(repo("hub/minilm-npz", {"weights.npz": fb.npz_bytes(base)}))
    header = json.dumps({k: list(v.shape) for k, v in base.items()}).encode()
    unknown = b"WEIGHTS1" + len(header).to_bytes(8, "little") + header + b"".join(v.tobytes() for v in base.values())
    corpus.append(repo("hub/minilm-unknown-format", {"weights.bin1": unknown}))
    corpus.append(repo("hub/minilm-ft-renamed", {"model.safetensors": st_bytes(
        {"bert." + k: v for k, v in continued_finetune(repos).items()})}))
    grown = dict(base)
    emb = next(k for k, v in base.items() if "word_embeddings" in k)
    rng = np.random.default_rng(0)
    grown[emb] = np.concatenate([base[emb], (rng.standard_normal((100, base[emb].shape[1])) * 0.02).astype(np.float32)])
    corpus.append(repo("hub/minilm-vocab-extended", {"model.safetensors": st_bytes(grown)}))
    # Another continuation of the run, saved with added tokens: every stored row changed a little, 100 new.
    tuned = continued_finetune(repos, seed=2)
    added = (np.random.default_rng(3).standard_normal((100, base[emb].shape[1])) * 0.02).astype(np.float32)
    tuned[emb] = np.concatenate([tuned[emb], added])
    corpus.append(repo("hub/minilm-ft-vocab-extended", {"model.safetensors": st_bytes(tuned)}))
    shutil.rmtree(scratch)
    return corpus


def st_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    """safetensors bytes of numpy arrays, each under its own dtype."""
    from helpers import safetensors_bytes
    names = {"float32": "F32", "float16": "F16", "int64": "I64", "int32": "I32"}
    return safetensors_bytes({k: (names[str(v.dtype)], v) for k, v in tensors.items()})


def continued_finetune(repos: Path, seed: int = 1) -> dict[str, np.ndarray]:
    """The FP32 fine-tune trained a little further (a small update on every weight), so its tensors
    are new bytes that only a delta against the fine-tune predicts."""
    rng = np.random.default_rng(seed)
    return {k: (v + rng.standard_normal(v.shape).astype(np.float32) * np.float32(1e-4) * (v.std() or 1)).astype(np.float32)
            if v.dtype == np.float32 else v for k, v in load_weights(repos / FT32).items()}


def original_names_cost(repos: Path, work: Path) -> int:
    """(c): what the same continued fine-tune costs under its original names, after the six repos."""
    from weightvault.dedup.ingest import ingest_folder
    from weightvault.store import Vault

    vault = Vault.open(work / "side-store")
    for name in REPOS:
        ingest_folder(vault, repos / name, name)
    folder = work / "side-repo"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(st_bytes(continued_finetune(repos)))
    for p in (repos / FT32).iterdir():
        if p.is_file() and p.suffix != ".safetensors" and not p.name.endswith(".index.json"):
            shutil.copy(p, folder / p.name)
    cost = ingest_folder(vault, folder, "hub/minilm-ft-original-names").new_stored_bytes
    vault.close()
    return cost


def files_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


class CdcStore:
    """Xet-like: unique chunks store-wide, each LZ4-compressed."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def add(self, folder: Path) -> int:
        import lz4.block
        from weightvault.codec import chunking
        added = 0
        for path in files_of(folder):
            data = path.read_bytes()
            for a, b, h in chunking.chunks(data):
                if h not in self.seen:
                    self.seen.add(h)
                    added += min(b - a, len(lz4.block.compress(data[a:b], store_size=False)))
        return added


def zipnn_folder(folder: Path) -> int:
    from zipnn import ZipNN
    from weightvault.dedup import formats
    cctx = zstandard.ZstdCompressor(level=3)
    total = 0
    for path in files_of(folder):
        data = path.read_bytes()
        try:
            parsed = formats.parse(memoryview(data), path.relative_to(folder).as_posix())
        except formats.FormatError:
            parsed = None
        pos, tensors = 0, parsed.tensors if parsed else []
        for t in tensors:
            if t.dtype not in ZIPNN_DTYPE:
                continue
            total += len(cctx.compress(data[pos:t.start])) if t.start > pos else 0
            z = ZipNN(input_format="byte", bytearray_dtype=ZIPNN_DTYPE[t.dtype], threads=1)
            total += len(z.compress(bytearray(data[t.start:t.end])))
            pos = t.end
        total += len(cctx.compress(data[pos:])) if pos < len(data) else 0
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repos", type=Path, default=ROOT / ".cache" / "shared-repos")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "hublike.json")
    args = ap.parse_args()

    from weightvault.dedup.ingest import ingest_folder
    from weightvault.store import Vault

    repos = materialized(args.repos)
    work = Path(tempfile.mkdtemp(prefix="wv-hublike-"))
    rows = []
    try:
        corpus = build_corpus(repos, work / "corpus")
        vault = Vault.open(work / "store")
        cdc = CdcStore()
        for name, folder in corpus:
            raw = folder_bytes(folder)
            t0 = time.perf_counter()
            result = ingest_folder(vault, folder, name)
            # Members this repo's ingest re-coded smaller against it (dedup/rebase.py) count as its saving.
            ours = result.new_stored_bytes - sum(saved for _, _, saved in result.rebased)
            t1 = time.perf_counter()
            rows.append({"repo": name, "raw_bytes": raw, "weightvault": ours, "cdc_lz4": cdc.add(folder),
                         "zipnn_per_file": zipnn_folder(folder), "ingest_MBps": raw / (t1 - t0) / 1e6})
        vault.close()
        original = original_names_cost(repos, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"{'repo':40s} {'raw MB':>7s} {'wv MB':>8s} {'CDC MB':>8s} {'ZipNN MB':>9s} {'wv/best':>8s} {'ingest MB/s':>11s}")
    for r in rows:
        best = min(r["cdc_lz4"], r["zipnn_per_file"])
        r["weightvault_over_best"] = r["weightvault"] / best if best else None
        print(f"{r['repo']:40s} {r['raw_bytes'] / 1e6:7.1f} {r['weightvault'] / 1e6:8.2f} {r['cdc_lz4'] / 1e6:8.2f} "
              f"{r['zipnn_per_file'] / 1e6:9.2f} {r['weightvault_over_best'] or 0:8.2f} {r['ingest_MBps']:11.1f}")
    totals = {k: sum(r[k] for r in rows) for k in ("raw_bytes", "weightvault", "cdc_lz4", "zipnn_per_file")}
    print(f"{'corpus':40s} {totals['raw_bytes'] / 1e6:7.1f} {totals['weightvault'] / 1e6:8.2f} "
          f"{totals['cdc_lz4'] / 1e6:8.2f} {totals['zipnn_per_file'] / 1e6:9.2f}")
    print("of raw: " + ", ".join(f"{k} {totals[k] / totals['raw_bytes']:.4f}" for k in ("weightvault", "cdc_lz4",
                                                                                       "zipnn_per_file")))
    renamed = next(r for r in rows if r["repo"] == "hub/minilm-ft-renamed")
    print(f"(c) hub/minilm-ft-renamed under its original names would add {original / 1e6:.2f} MB "
          f"(renamed: {renamed['weightvault'] / 1e6:.2f} MB, {renamed['weightvault'] / original:.2f}x)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"repos": rows, "totals": totals, "renamed_under_original_names": original},
                                    indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
