"""How the fingerprint index scales: lookups in a synthetic catalog of up to millions of tensors.

    python bench/fingerprint.py [--sizes 10000,100000,1000000,2000000] [--queries 2000]
                                [--json bench/results/fingerprint.json]

A real catalog (SQLite, the migrations' schema) is filled with synthetic float tensors' objects
rows: weights of random scales (log-uniform 1e-3..1e-1, as layers of real models), one in ten a
LayerNorm-like scale near 1 (whose uniform bands are not indexed), and one in four a fine-tune
of an earlier row (values nudged by 1% of their size, so some signs and exponents flip). At each
size it times ``fingerprints.lookup`` + ranking (what ingest runs per tensor) for
- fine-tunes of stored tensors: how often the stored original comes back as the best candidate;
- tensors unrelated to anything stored: how many hits they get (each costs a row read);
beside a brute-force scan of every stored fingerprint in memory (numpy, sign+exponent agreement),
what one would do without an index.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import ROOT  # noqa: E402

BATCH = 20_000


def synthetic_values(rng: np.random.Generator, n: int) -> np.ndarray:
    """n tensors' 32 sampled values (float32)."""
    scale = 10 ** rng.uniform(-3, -1, size=(n, 1))
    values = rng.standard_normal((n, 32)) * scale
    norm = rng.random(n) < 0.1  # LayerNorm-like scales: ones and a little noise
    values[norm] = 1 + rng.standard_normal((int(norm.sum()), 32)) * 0.05
    return values.astype(np.float32)


def finetune(rng: np.random.Generator, values: np.ndarray, rel: float = 0.01) -> np.ndarray:
    return (values * (1 + rng.standard_normal(values.shape) * rel)).astype(np.float32)


def fill(catalog, fps, start: int, stop: int, rng: np.random.Generator, all_values: np.ndarray) -> None:
    """Rows [start, stop): ``fingerprints.bands`` as ingest computes them, inserted over one raw
    connection with a large page cache (filling is not what is measured; lookups use the catalog's
    own sessions and settings)."""
    from weightvault.dedup import fingerprints

    conn = catalog.engine.raw_connection()
    try:
        cur = conn.cursor()
        cur.execute("PRAGMA cache_size=-400000")
        for at in range(start, stop, BATCH):
            n = min(BATCH, stop - at)
            values = synthetic_values(rng, n)
            tuned = rng.random(n) < 0.25
            if at > 0:  # a quarter are fine-tunes of earlier tensors
                src = rng.integers(0, at, size=int(tuned.sum()))
                values[tuned] = finetune(rng, all_values[src])
            all_values[at:at + n] = values
            rows = []
            for i in range(n):
                fp = values[i].view(np.uint32).astype("<u4").tobytes()
                fps[at + i] = fp
                rows.append((f"{at + i:064x}", fp, *fingerprints.bands(fp)))
            cur.execute("BEGIN")
            cur.executemany(
                "INSERT INTO objects (digest, kind, dtype, raw_size, stored_size, codec, mechanism, depth, created_at,"
                " fingerprint, fp_band0, fp_band1, fp_band2, fp_band3)"
                " VALUES (?, 'tensor', 'F32', 4194304, 2097152, 'planes', 'plane_coding', 0, CURRENT_TIMESTAMP,"
                " ?, ?, ?, ?, ?)", rows)
            cur.execute("COMMIT")
        cur.close()
    finally:
        conn.close()


def timed_lookups(catalog, queries: list[bytes]) -> tuple[list[float], list[list]]:
    from weightvault.dedup import fingerprints

    times, results = [], []
    for q in queries:
        t0 = time.perf_counter()
        with catalog.read_session() as s:
            hits = fingerprints.lookup(s, q)
        ranked = sorted(((fingerprints.score(q, h.fingerprint, "F32"), h.object_id) for h in hits), reverse=True)
        times.append(time.perf_counter() - t0)
        results.append([(oid, sc) for sc, oid in ranked if sc[0] >= fingerprints.SIMILAR_ENOUGH])
    return times, results


def brute_force(codes: np.ndarray, query: bytes) -> tuple[float, int]:
    t0 = time.perf_counter()
    q = np.frombuffer(query, dtype="<u4") >> 23
    agree = (codes == q.astype(np.uint16)).sum(axis=1)
    best = int(np.argmax(agree))
    return time.perf_counter() - t0, best


def pct(xs: list[float], p: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(p * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000,2000000")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "fingerprint.json")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]

    from weightvault.store.db import Catalog

    rng = np.random.default_rng(0)
    work = Path(tempfile.mkdtemp(prefix="wv-fingerprint-"))
    catalog = Catalog(f"sqlite:///{work / 'catalog.sqlite'}")
    catalog.upgrade()
    fps: list[bytes | None] = [None] * sizes[-1]
    all_values = np.empty((sizes[-1], 32), np.float32)
    rows, stored = [], 0
    for size in sizes:
        t0 = time.perf_counter()
        fill(catalog, fps, stored, size, rng, all_values)
        insert_s = time.perf_counter() - t0
        stored = size
        qrng = np.random.default_rng(size)
        src = qrng.integers(0, size, size=args.queries)
        related = [finetune(qrng, all_values[i]).view(np.uint32).astype("<u4").tobytes() for i in src]
        unrelated = [v.view(np.uint32).astype("<u4").tobytes() for v in synthetic_values(qrng, args.queries)]
        rel_t, rel_res = timed_lookups(catalog, related)
        unrel_t, unrel_res = timed_lookups(catalog, unrelated)
        # object ids count from 1; "first": the original ranks best (a sibling fine-tune of the same
        # tensor can rank level with it), "found": it is among the candidates at all
        first = sum(bool(r) and r[0][0] == i + 1 for r, i in zip(rel_res, src))
        found = sum(any(oid == i + 1 for oid, _ in r) for r, i in zip(rel_res, src))
        indexable = sum(1 for q in related if any(_bands(q)))
        codes = (all_values[:size].view(np.uint32) >> 23).astype(np.uint16)
        scan = [brute_force(codes, q)[0] for q in related[:50]]
        db_mb = sum(os.path.getsize(p) for p in work.iterdir()) / 1e6
        row = {"tensors": size, "insert_s": insert_s, "catalog_MB": db_mb,
               "lookup_p50_ms": statistics.median(rel_t) * 1e3, "lookup_p99_ms": pct(rel_t, 0.99) * 1e3,
               "unrelated_p50_ms": statistics.median(unrel_t) * 1e3, "unrelated_p99_ms": pct(unrel_t, 0.99) * 1e3,
               "finetune_ranked_first": first / args.queries, "finetune_found": found / args.queries, "finetune_indexable": indexable / args.queries,
               "unrelated_with_a_candidate": sum(bool(r) for r in unrel_res) / args.queries,
               "scan_p50_ms": statistics.median(scan) * 1e3}
        rows.append(row)
        print(f"{size:>9,d} tensors: lookup p50 {row['lookup_p50_ms']:.2f} ms p99 {row['lookup_p99_ms']:.2f} ms "
              f"(unrelated {row['unrelated_p50_ms']:.2f}/{row['unrelated_p99_ms']:.2f}); fine-tune's original "
              f"found {row['finetune_found']:.3f}, first {row['finetune_ranked_first']:.3f}; brute-force scan {row['scan_p50_ms']:.1f} ms; "
              f"catalog {db_mb:.0f} MB", flush=True)
    catalog.dispose()
    for p in work.iterdir():
        p.unlink()
    work.rmdir()

    print(f"\n{'tensors':>10s} {'insert s':>9s} {'MB':>7s} {'p50 ms':>7s} {'p99 ms':>7s} {'unrel p50':>9s} "
          f"{'found':>6s} {'first':>6s} {'of idx':>6s} {'unrel cand':>10s} {'scan ms':>8s} {'scan/idx':>8s}")
    for r in rows:
        print(f"{r['tensors']:>10,d} {r['insert_s']:9.1f} {r['catalog_MB']:7.0f} {r['lookup_p50_ms']:7.2f} "
              f"{r['lookup_p99_ms']:7.2f} {r['unrelated_p50_ms']:9.2f} {r['finetune_found']:6.3f} {r['finetune_ranked_first']:6.3f} "
              f"{r['finetune_indexable']:6.3f} {r['unrelated_with_a_candidate']:10.3f} {r['scan_p50_ms']:8.1f} "
              f"{r['scan_p50_ms'] / r['lookup_p50_ms']:8.1f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"queries": args.queries, "rows": rows}, indent=2))
    print(f"wrote {args.json}")


def _bands(fp: bytes) -> list:
    from weightvault.dedup import fingerprints
    return [b for b in fingerprints.bands(fp) if b is not None]


if __name__ == "__main__":
    main()
