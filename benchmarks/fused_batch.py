"""Fused greedy graph vs the search's Python loop, by batch size (where FUSED_MAX_BATCH comes from).

    python benchmarks/fused_batch.py BUNDLE [--threads 2] [--sentences 64] [--json FILE]

Greedy decoding of ``--sentences`` random sources (5-40 tokens, outputs capped at 1.2x the
source length) in batches of 1..64 sentences, with the fused greedy graph (forced on for every
batch size) and with the Python loop, alternating, best of 2 per cell. The fused loop keeps
finished rows computing (rows never leave it); the Python loop drops them. Torch-free; one
process (both paths share the same sessions, so the comparison is like for like).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

BATCHES = (1, 2, 4, 8, 16, 32, 64)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sentences", type=int, default=64)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from s2s_export.bench.configs import random_sources
    from s2s_export.runtime import Translator
    from s2s_export.runtime.backends import onnxruntime as ort_backend

    ort_backend.FUSED_MAX_BATCH = max(BATCHES)  # measure the fused graph at every batch size
    t = Translator.load(args.bundle, intra_op_threads=args.threads)
    backend = t.backend
    src = random_sources(len(t.src_vocab), args.sentences, 5, 40, seed=1)
    rows = {}
    for batch in BATCHES:
        best = {True: float("inf"), False: float("inf")}
        for fused in (True, False, True, False):
            backend.fused_greedy = fused  # type: ignore[attr-defined]
            t0 = time.perf_counter()
            t.translate_ids(src, max_batch_size=batch, max_length_ratio=1.2)
            best[fused] = min(best[fused], time.perf_counter() - t0)
        rows[batch] = {"fused_ms": best[True] * 1e3, "loop_ms": best[False] * 1e3}
        print(f"batch {batch:3d}: fused {best[True] * 1e3:7.1f} ms, loop {best[False] * 1e3:7.1f} ms, "
              f"loop / fused {best[False] / best[True]:.2f}", file=sys.stderr)
    lines = ["| batch | fused greedy graph (ms) | Python loop (ms) | loop / fused |", "|---|---|---|---|"]
    lines += [f"| {b} | {r['fused_ms']:.1f} | {r['loop_ms']:.1f} | {r['loop_ms'] / r['fused_ms']:.2f} |"
              for b, r in rows.items()]
    print("\n".join(lines))
    if args.json is not None:
        args.json.write_text(json.dumps({"bundle": args.bundle, "threads": args.threads,
                                         "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                         "sentences": args.sentences, "by_batch": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
