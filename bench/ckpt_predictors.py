"""How far better predictors could take the checkpoint delta on FP32 weights (issue 6).

    .venv/bin/python bench/ckpt_predictors.py SERIES_DIR [--out bench/results/ckpt_predictors.json]

bench/checkpoints.py shows codec "ckpt" within ~1% of an ideal coder that predicts
each weight from its previous value.  This asks whether a richer predictor would
pay, on the same series (checkpoint-<step>/ folders from make_checkpoints.py).  For
every checkpoint t with two before it, each FP32 weight w_t is predicted by:

  previous      w_{t-1}                                      (what ckpt does)
  extrapolate   w_{t-1} + (w_{t-1} - w_{t-2})                (constant velocity)
  momentum      w_{t-1} + c (w_{t-1} - w_{t-2}), c fitted per tensor by least squares
  adam          w_{t-1} - s m_t / (sqrt(v_t) + 1e-8), s fitted per tensor: the Adam
                step that checkpoint t's own optimizer state points along
  both          least-squares fit on the two directions above, per tensor

The fits see the answer (an oracle a decoder could only approximate), so they
overstate what the predictors could give.  Each residual r = bits(w_t) - bits(pred)
(integers: the ulp distance) is priced by one estimator: the empirical entropy of its
bit length given the prediction's exponent, plus the bits below the leading one and
a sign bit, with no model cost; "+nb" adds the previous element's residual
magnitude as context.  The same estimator prices every predictor, so the columns
compare; "ckpt" is what the codec actually stores for the same pair.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import residual_bits  # noqa: E402

from weightvault.codec import encode_frames  # noqa: E402
from weightvault.dedup.formats import safetensors  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PREDICTORS = ["previous", "extrapolate", "momentum", "adam", "both"]
#: issue 6: 25% under the best simple delta, which leaves 0.765 of the deltas' raw
#: size on the default make_checkpoints.py series (measured by bench/checkpoints.py).
TARGET = 0.573


def load_f32(path: Path, prefix: str = "") -> dict[str, np.ndarray]:
    data = path.read_bytes()
    layout = safetensors.parse(data, label=path.name)
    return {t.name[len(prefix):]: np.frombuffer(data[t.start:t.end], np.float32)
            for t in layout.tensors if t.dtype == "F32" and t.name.startswith(prefix)}


def predicted_bits(actual: np.ndarray, pred: np.ndarray, neighbour: bool) -> float:
    return residual_bits(actual.view(np.int32), pred.astype(np.float32).view(np.int32), neighbour)


def fit(directions: list[np.ndarray], target: np.ndarray) -> np.ndarray:
    x = np.stack(directions, axis=1)
    coef, *_ = np.linalg.lstsq(x, target, rcond=None)
    return x @ coef


def predictions(w2: np.ndarray, w1: np.ndarray, w0: np.ndarray, m: np.ndarray, v: np.ndarray):
    prev = w1.astype(np.float64)
    velocity = prev - w2
    step = m.astype(np.float64) / (np.sqrt(v.astype(np.float64)) + 1e-8)
    change = w0 - prev
    return {
        "previous": prev,
        "extrapolate": prev + velocity,
        "momentum": prev + fit([velocity], change),
        "adam": prev + fit([step], change),
        "both": prev + fit([velocity, step], change),
    }


def ckpt_bytes(w0: np.ndarray, w1: np.ndarray) -> int:
    return sum(map(len, encode_frames(memoryview(w0), "F32", codec="ckpt", base=memoryview(w1), base_dtype="F32")))


def study(series: Path) -> dict:
    steps = sorted(int(d.name.split("-")[1]) for d in series.iterdir()
                   if d.is_dir() and re.fullmatch(r"checkpoint-\d+", d.name))
    rows = []
    for s2, s1, s0 in zip(steps, steps[1:], steps[2:]):
        weights = [load_f32(series / f"checkpoint-{s}" / "model.safetensors") for s in (s2, s1, s0)]
        state = series / f"checkpoint-{s0}" / "optimizer.safetensors"
        m, v = load_f32(state, "exp_avg."), load_f32(state, "exp_avg_sq.")
        bits = {f"{p}{tag}": 0.0 for p in PREDICTORS for tag in ("", "+nb")}
        n = stored = 0
        for name, w0 in weights[2].items():
            w1, w2 = weights[1][name], weights[0][name]
            if name not in m:
                continue
            for pred_name, pred in predictions(w2, w1, w0, m[name], v[name]).items():
                bits[pred_name] += predicted_bits(w0, pred, neighbour=False)
                bits[pred_name + "+nb"] += predicted_bits(w0, pred, neighbour=True)
            stored += ckpt_bytes(w0, w1)
            n += w0.size
        row = {"checkpoint": s0, "values": n, "ckpt": stored / (4 * n)}
        row.update({k: b / (32 * n) for k, b in bits.items()})
        rows.append(row)
        print_row(row)
    total = sum(r["values"] for r in rows)
    summary = {k: sum(r[k] * r["values"] for r in rows) / total for k in rows[0] if k not in ("checkpoint", "values")}
    return {"series": str(series), "target": TARGET, "rows": rows, "mean": summary}


COLUMNS = ["ckpt"] + [f"{p}{t}" for t in ("", "+nb") for p in PREDICTORS]


def print_header() -> None:
    print("stored/raw of FP32 weights, estimated for each predictor (ckpt: measured)")
    print(f"{'checkpoint':>10} " + " ".join(f"{c:>{len(c)}}" for c in COLUMNS))


def print_row(row: dict) -> None:
    label = row.get("checkpoint", "mean")
    print(f"{label:>10} " + " ".join(f"{row[c]:>{len(c)}.4f}" for c in COLUMNS))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("series", type=Path)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ckpt_predictors.json")
    a = ap.parse_args()
    print_header()
    res = study(a.series)
    print_row(res["mean"])
    print(f"\ntarget (issue 6): {TARGET} over the deltas")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
