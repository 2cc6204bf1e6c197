"""Where the bytes of the six shared repos go, and how low they could go (issue 4's 25% target).

    python bench/family_bounds.py [--repos DIR] [--json bench/results/family_bounds.json]

bench/family.py measures the whole store.  This splits the weights into the parts
that cost anything (the exact duplicate and the BF16 cast cost ~0) and prices each
part two ways: measured, coded tensor by tensor with the store's own choice
(dedup.choice: the cheapest of xor delta, ckpt delta and plain planes); and
estimated, for arrangements the store does not build:

  FP32 base          order-0 entropy of its four byte planes per 256 KiB frame
                     (what any per-frame order-0 plane coder needs)
  FP32 fine-tune     its residual against the base (ulp distance), priced like
                     bench/ckpt_predictors.py: bit length given the base's exponent,
                     + the previous element's residual magnitude ("+nb"),
                     + the BF16 fine-tune of the same run as a second base: the
                     prediction clamped into the BF16 value's rounding interval
                     ("+sibling"; needs a two-base delta)
  BF16 fine-tune     coded against the FP32 fine-tune's cast instead of the base
                     (measured; needs re-basing a stored repo on a later one)

The last line adds the cheapest parts that can be combined (a repo cannot be
the other's base both ways) and compares them with the target.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import REPOS, ROOT, entropy, folder_bytes, materialized, residual_bits  # noqa: E402

from weightvault import codec  # noqa: E402
from weightvault.dedup.choice import BaseCandidate, choose_and_encode  # noqa: E402
from weightvault.dedup.families import cast_bits  # noqa: E402

BASE, FT_BF16, FROZEN, FT_FP32 = REPOS[0], REPOS[3], REPOS[4], REPOS[5]
TARGET = 0.25
FRAME_ELEMENTS = codec.FRAME_SIZE // 4


def weights(repo: Path) -> dict[str, tuple[str, bytes]]:
    from weightvault.dedup.formats import safetensors

    out = {}
    for path in sorted(repo.glob("*.safetensors")):
        data = path.read_bytes()
        layout = safetensors.parse(data, label=path.name)
        out.update({t.name: (t.dtype, data[t.start:t.end]) for t in layout.tensors})
    return out


def plane_bound_bytes(data: bytes) -> float:
    """Order-0 entropy of the rotated byte planes of F32 ``data``, table per frame."""
    x = np.frombuffer(data, np.uint32)
    rotated = (x << 1) | (x >> 31)  # exponent in the top byte, sign beside the mantissa
    bits = 0.0
    for start in range(0, len(x), FRAME_ELEMENTS):
        frame = rotated[start:start + FRAME_ELEMENTS]
        bits += sum(entropy((frame >> shift) & 0xFF) for shift in (0, 8, 16, 24))
    return bits / 8


def coded_bytes(data: bytes, dtype: str, base: tuple[str, bytes] | None) -> int:
    """Bytes the store's per-tensor choice spends (0 for a tensor equal to its base)."""
    predicted = cast_bits(base[1], base[0], dtype) if base else None
    if predicted is not None and predicted.tobytes() == data:
        return 0
    cand = BaseCandidate("", base[0], 0, memoryview(base[1])) if base else None
    choice = choose_and_encode(memoryview(data), dtype, cand)
    return sum(len(f) for frames, _ in choice.frame_slices() for f in frames)


def sibling_clamp(base: np.ndarray, sibling: np.ndarray) -> np.ndarray:
    """The base's bits moved into the rounding interval of the sibling's BF16 value
    (sign-magnitude patterns of one sign order like integers; a sign change takes
    the sibling's value itself)."""
    b = base.astype(np.int64)
    lo = (sibling.astype(np.int64) << 16) - 0x8000
    hi = (sibling.astype(np.int64) << 16) + 0x7FFF
    inside = np.clip(b, np.minimum(lo, hi), np.maximum(lo, hi))
    same_sign = (b >> 31) == (sibling.astype(np.int64) >> 15)
    return np.where(same_sign, inside, sibling.astype(np.int64) << 16)


def study(repos: Path) -> dict:
    base, ft32, ft16, frozen = (weights(repos / r) for r in (BASE, FT_FP32, FT_BF16, FROZEN))
    parts = {"base measured": 0, "base bound": 0.0, "fp32 fine-tune measured": 0,
             "fp32 fine-tune est": 0.0, "fp32 fine-tune est +nb": 0.0, "fp32 fine-tune est +nb +sibling": 0.0,
             "bf16 fine-tune measured": 0, "bf16 fine-tune vs fp32 fine-tune": 0, "frozen measured": 0}
    for name, (dtype, data) in base.items():
        parts["base measured"] += coded_bytes(data, dtype, None)
        if dtype == "F32":
            parts["base bound"] += plane_bound_bytes(data)
    for name, (dtype, data) in ft32.items():
        parts["fp32 fine-tune measured"] += coded_bytes(data, dtype, base[name])
        a = np.frombuffer(data, np.uint32)
        b = np.frombuffer(base[name][1], np.uint32)
        if np.array_equal(a, b):
            continue  # a tensor the fine-tune left alone: deduplicated
        sib = np.frombuffer(ft16[name][1], np.uint16)
        parts["fp32 fine-tune est"] += residual_bits(a, b, False) / 8
        parts["fp32 fine-tune est +nb"] += residual_bits(a, b, True) / 8
        parts["fp32 fine-tune est +nb +sibling"] += residual_bits(a, sibling_clamp(b, sib), True) / 8
    for name, (dtype, data) in ft16.items():
        parts["bf16 fine-tune measured"] += coded_bytes(data, dtype, base[name])
        parts["bf16 fine-tune vs fp32 fine-tune"] += coded_bytes(data, dtype, ft32[name])
    for name, (dtype, data) in frozen.items():
        parts["frozen measured"] += coded_bytes(data, dtype, base[name])
    raw = sum(folder_bytes(repos / n) for n in REPOS)
    weights_raw = sum(p.stat().st_size for n in REPOS for p in (repos / n).glob("*.safetensors"))
    # Combinable: the BF16 fine-tune either serves as the FP32 fine-tune's sibling or
    # is re-based on it, not both.
    with_sibling = parts["fp32 fine-tune est +nb +sibling"] + parts["bf16 fine-tune measured"]
    rebased = parts["fp32 fine-tune est +nb"] + parts["bf16 fine-tune vs fp32 fine-tune"]
    lowest = min(parts["base measured"], parts["base bound"]) + min(with_sibling, rebased) + parts["frozen measured"]
    return {"raw_bytes": raw, "weights_raw_bytes": weights_raw, "other_files_raw_bytes": raw - weights_raw,
            "parts": parts, "lowest_weights_bytes": lowest, "lowest_over_raw": lowest / raw,
            "target_over_raw": TARGET, "target_bytes": TARGET * raw}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repos", type=Path, default=Path("/tmp/wv-repos"), help="materialized shared repos")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "family_bounds.json")
    args = ap.parse_args()
    res = study(materialized(args.repos))
    for part, size in res["parts"].items():
        print(f"{part:34} {size / 1e6:8.2f} MB")
    print(f"{'lowest combination (weights only)':34} {res['lowest_weights_bytes'] / 1e6:8.2f} MB = "
          f"{res['lowest_over_raw']:.4f} of the {res['raw_bytes'] / 1e6:.1f} MB raw; "
          f"target {TARGET} = {res['target_bytes'] / 1e6:.2f} MB")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
