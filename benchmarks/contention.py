"""The runtime's thread settings on a quiet and on a busy machine (the `spinning` default).

    python benchmarks/contention.py BUNDLE [--sentences 16] [--rounds 3] [--json FILE]

Greedy batch-1 decoding of ``--sentences`` random sources (lengths 10-40, outputs capped at the
source length) with ONNX Runtime FP32, one fresh process per configuration: 1 thread; 2 threads
with ``spinning`` off / step (the default) / all. Each configuration runs on a quiet machine and
again while one busy-looping process competes for the cores (a machine shared with another
job). Prints the best pass time of ``--rounds`` per configuration (milliseconds) as a markdown
table; ``--json`` also writes it. Torch-free.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = (("1t", 1, "off"), ("2t spinning off", 2, "off"), ("2t spinning step (default)", 2, "step"),
           ("2t spinning all", 2, "all"))

WORKER = r"""
import json, sys, time
from s2s_export.bench.configs import random_sources
from s2s_export.runtime import Translator
bundle, threads, spinning, n, rounds = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
t = Translator.load(bundle, intra_op_threads=threads, spinning=spinning)
src = random_sources(len(t.src_vocab), n, 10, 40, seed=0)
def run():
    for s in src:
        t.translate_ids([s], max_length=len(s) + 1)
run()
best = float("inf")
for _ in range(rounds):
    t0 = time.perf_counter(); run(); best = min(best, time.perf_counter() - t0)
print(json.dumps(best * 1e3))
"""


def measure(bundle: str, threads: int, spinning: str, sentences: int, rounds: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, "-c", WORKER, bundle, str(threads), spinning, str(sentences), str(rounds)],
                         capture_output=True, text=True, env=env, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle")
    ap.add_argument("--sentences", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    results: dict[str, dict[str, float]] = {}
    for load in ("quiet", "one busy process"):
        hog = None
        if load != "quiet":
            hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(1.0)
        try:
            for label, threads, spinning in CONFIGS:
                ms = measure(args.bundle, threads, spinning, args.sentences, args.rounds)
                results.setdefault(label, {})[load] = ms
                print(f"{load:16s} {label:28s} {ms:8.1f} ms", file=sys.stderr)
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
    lines = ["| configuration | quiet (ms) | one busy process (ms) |", "|---|---|---|"]
    lines += [f"| {k} | {v['quiet']:.1f} | {v['one busy process']:.1f} |" for k, v in results.items()]
    print("\n".join(lines))
    if args.json is not None:
        args.json.write_text(json.dumps({"bundle": args.bundle, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                         "cpus": os.cpu_count(), "sentences": args.sentences,
                                         "greedy_b1_pass_ms": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
