#!/usr/bin/env python
"""Reproduce the published benchmark table: the bundled G2P model (examples/g2p.pt) and an
NMT-sized random-weight model (embedding 256, 2-layer bidirectional LSTM 256 per direction,
2-layer decoder 512, Luong general, input feeding, vocabulary 8000), each measured with
``s2s_export.bench`` (PyTorch eager default and tuned, the runtime on ONNX Runtime FP32 and
INT8, the numpy BLAS floor; every configuration in a fresh process, same inputs), plus the
INT8 word error rate of the G2P model on the CMUdict test split.

    python benchmarks/run.py                 # full run (a few minutes on 2 cores)
    python benchmarks/run.py --quick         # tiny iteration counts: checks the pipeline only

Writes ``benchmarks/results/<date>-<machine>.json`` (machine, versions, date, every timing)
and ``benchmarks/results/latest.md`` (the tables). Run it on a quiet machine: it waits (up to
``--max-wait`` seconds) for the 1-minute load average to drop below ``--max-load`` and records
the load before and after. The preparation (export, INT8 quantization, inputs) runs in a
subprocess, so this process never imports torch or onnxruntime.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
G2P_POOL, NMT_POOL = 64, 64
NMT_SRC_LEN = (10, 40)  # random source lengths (tokens, EOS excluded)


# ---------------------------------------------------------------------------------------- prepare
def prepare(workdir: Path, g2p_model: Path | None, nmt: bool) -> dict[str, Any]:
    """Export (and quantize) the models; the inputs. Runs in its own process (imports torch)."""
    import torch

    from s2s_export.bench.configs import random_sources, save_nmt_checkpoint
    from s2s_export.export import export_model
    from s2s_export.int8 import quantize_bundle
    from s2s_export.models import load_checkpoint

    torch.set_num_threads(1)
    out: dict[str, Any] = {}
    if g2p_model is not None:
        from s2s_export.train.data import g2p_task

        ckpt = load_checkpoint(g2p_model)
        bundle = export_model(g2p_model, workdir / "g2p", force=True)
        quantize_bundle(bundle.path)
        test = g2p_task().test
        pairs = [(ckpt.src_vocab.encode(list(src)), ckpt.tgt_vocab.encode(list(tgt))) for src, tgt in test]
        pool = [p[0] for p in random.Random(0).sample(pairs, G2P_POOL)]
        params = sum(p.numel() for p in ckpt.model.parameters())
        out["g2p"] = {"model": str(g2p_model), "bundle": str(bundle.path), "pool": pool, "pairs": pairs,
                      "config": ckpt.config.to_dict(), "params": params,
                      "stored_test_metrics": ckpt.meta.get("metrics", {}).get("test")}
    if nmt:
        path = workdir / "nmt.pt"
        model = save_nmt_checkpoint(path)
        config = model.config
        bundle = export_model(path, workdir / "nmt", force=True)
        quantize_bundle(bundle.path)
        out["nmt"] = {"model": str(path), "bundle": str(bundle.path), "config": config.to_dict(),
                      "params": sum(p.numel() for p in model.parameters()),
                      "pool": random_sources(config.src_vocab_size, NMT_POOL, *NMT_SRC_LEN, seed=0)}
    (workdir / "prepared.json").write_text(json.dumps(out))
    return out


# ---------------------------------------------------------------------------------------- run
def wait_for_quiet(max_load: float, max_wait: float) -> list[float]:
    t0 = time.time()
    while os.getloadavg()[0] > max_load and time.time() - t0 < max_wait:
        print(f"load average {os.getloadavg()[0]:.2f} > {max_load}: waiting ...", file=sys.stderr)
        time.sleep(30)
    return list(os.getloadavg())


def specs(prepared: dict[str, Any], args: argparse.Namespace) -> list[Any]:
    from s2s_export.bench import BenchSpec

    threads = tuple(int(t) for t in args.threads.split(","))
    quick = dict(iters=1, warmup=1, step_iters=20, encoder_iters=3, rounds=1) if args.quick else {}

    def spec(**kw: Any) -> Any:
        return BenchSpec(**{**kw, "threads": threads, "iters": args.iters, "rounds": args.rounds, **quick})

    out = []
    if "g2p" in prepared:
        p = prepared["g2p"]
        out.append(spec(bundle=Path(p["bundle"]), model=Path(p["model"]), sources=p["pool"], name="g2p",
                        step_iters=400, encoder_iters=50, sentences=64, max_length=50))
    if "nmt" in prepared:
        p = prepared["nmt"]
        out.append(spec(bundle=Path(p["bundle"]), model=Path(p["model"]), sources=p["pool"], name="nmt",
                        step_iters=150, encoder_iters=20, sentences=16, max_length=200, max_length_ratio=1.0))
    return out


TITLES = {"g2p": "G2P (examples/g2p.pt: {params:,} parameters, bi-LSTM 128x2, decoder 256, vocab 30 -> 43)",
          "nmt": "NMT-sized, random weights ({params:,} parameters: emb 256, 2-layer bi-LSTM 256x2, "
                 "2-layer decoder 512, Luong general, input feeding, vocab 8000)"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)  # internal: the preparation subprocess
    ap.add_argument("--g2p", type=Path, default=ROOT / "examples" / "g2p.pt", help="the G2P checkpoint")
    ap.add_argument("--no-g2p", action="store_true")
    ap.add_argument("--no-nmt", action="store_true")
    ap.add_argument("--threads", default="1,2", help="thread counts (comma-separated)")
    ap.add_argument("--iters", type=int, default=3, help="timed decode passes per configuration and round")
    ap.add_argument("--rounds", type=int, default=2, help="runs of every configuration (alternating order)")
    ap.add_argument("--quick", action="store_true", help="tiny iteration counts (pipeline check, not numbers)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    ap.add_argument("--machine", default=None, help="machine name in the result file name")
    ap.add_argument("--max-load", type=float, default=1.5, help="wait for a 1-min load average below this")
    ap.add_argument("--max-wait", type=float, default=600, help="seconds to wait for it at most")
    ap.add_argument("--workdir", type=Path, default=None, help="keep bundles here (default: a temporary folder)")
    ap.add_argument("--render", type=Path, default=None, help="only re-render latest.md from a results JSON")
    args = ap.parse_args()
    if args.render is not None:
        return rerender(args.render, args.out)
    g2p_model = None if args.no_g2p else args.g2p
    if args.prepare is not None:
        prepare(args.prepare, g2p_model, not args.no_nmt)
        return 0

    from s2s_export.bench import details_markdown, machine_info, markdown, quality_markdown, run_bench, run_quality, summarize
    from s2s_export.bench.report import machine_slug

    if g2p_model is not None and not g2p_model.is_file():
        print(f"error: {g2p_model} does not exist; pass --g2p PATH or --no-g2p", file=sys.stderr)
        return 4
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="benchrun-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.time()
        cmd = [sys.executable, str(Path(__file__).resolve()), "--prepare", str(workdir), "--g2p", str(args.g2p)]
        cmd += ["--no-g2p"] * bool(args.no_g2p) + ["--no-nmt"] * bool(args.no_nmt)
        print("preparing bundles (export + int8) ...", file=sys.stderr)
        subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        prepared = json.loads((workdir / "prepared.json").read_text())
        load_before = wait_for_quiet(args.max_load, 0 if args.quick else args.max_wait)
        machine = machine_info()
        models: dict[str, Any] = {}
        for spec in specs(prepared, args):
            result = run_bench(spec, log=lambda line: print(line, file=sys.stderr))
            models[spec.name] = {"result": result, "summary": None,
                                 "model": {k: v for k, v in prepared[spec.name].items() if k not in ("pool", "pairs")}}
        quality = None
        if "g2p" in prepared:
            print("INT8 quality: G2P test split, fp32 and int8 ...", file=sys.stderr)
            pairs = prepared["g2p"]["pairs"]
            quality = run_quality(prepared["g2p"]["bundle"], pairs, threads=1, max_length=50)
            if "error" in quality:
                print(f"quality failed: {quality['error']}", file=sys.stderr)
        for name, entry in models.items():
            entry["summary"] = summarize(entry["result"], quality if name == "g2p" else None)
        load_after = list(os.getloadavg())
        date = dt.datetime.now(dt.timezone.utc)
        slug = args.machine or machine_slug(machine)
        doc = {"date": date.isoformat(timespec="seconds"), "machine": machine, "load_before": load_before,
               "load_after": load_after, "seconds": time.time() - t0, "quick": args.quick,
               "command": " ".join(sys.argv), "models": models, "quality": quality}
        args.out.mkdir(parents=True, exist_ok=True)
        suffix = "-quick" if args.quick else ""
        path = args.out / f"{date:%Y-%m-%d}-{slug}{suffix}.json"
        path.write_text(json.dumps(slim(doc)))
        md = render(doc, markdown, details_markdown, quality_markdown)
        (args.out / f"latest{suffix}.md").write_text(md)
        print(md)
        print(f"wrote {path} and {args.out / f'latest{suffix}.md'} in {time.time() - t0:.0f} s", file=sys.stderr)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def slim(doc: dict[str, Any]) -> dict[str, Any]:
    """The document without the decoded outputs of repeated rounds (identical to round 1's)."""
    for entry in doc["models"].values():
        for w in entry["result"]["workers"]:
            if w.get("round", 0) > 0:
                for d in w.get("decode", {}).values():
                    d.pop("outputs", None)
    return doc


def rerender(path: Path, out: Path) -> int:
    """Summaries and ``latest.md`` again from a results file (after a report change)."""
    from s2s_export.bench import details_markdown, markdown, quality_markdown, summarize

    doc = json.loads(path.read_text())
    quality = doc.get("quality")
    for name, entry in doc["models"].items():
        entry["summary"] = summarize(entry["result"], quality if name == "g2p" else None)
    path.write_text(json.dumps(slim(doc)))
    md = render(doc, markdown, details_markdown, quality_markdown)
    (out / f"latest{'-quick' if doc.get('quick') else ''}.md").write_text(md)
    print(md)
    return 0


def render(doc: dict[str, Any], markdown: Any, details_markdown: Any, quality_markdown: Any) -> str:
    m = doc["machine"]
    v = m["versions"]
    lines = ["# Benchmark results", "",
             f"{doc['date']} on {m['cpus']} x {m['cpu']} ({m['memory_gb']} GB, {m['os']}); Python {m['python']}, "
             f"torch {v.get('torch')}, onnxruntime {v.get('onnxruntime')}, numpy {v.get('numpy')}, "
             f"s2s-export {v.get('s2s-export')}. Load average (1/5/15 min) before "
             f"{'/'.join(f'{x:.2f}' for x in doc['load_before'])}, after "
             f"{'/'.join(f'{x:.2f}' for x in doc['load_after'])}. Reproduce: `python benchmarks/run.py`.", ""]
    if doc.get("quick"):
        lines += ["**Quick run (tiny iteration counts): a pipeline check, not numbers to quote.**", ""]
    for name, entry in doc["models"].items():
        params = entry["model"].get("params", 0)
        title = TITLES.get(name, name).format(params=params)
        lines += [markdown(entry["summary"], title=title), "All configurations (medians):", "",
                  details_markdown(entry["summary"])]
    q = doc.get("quality")
    if q and "error" not in q:
        lines.append(quality_markdown(q, title="INT8 quality: G2P, CMUdict test split (greedy, runtime)"))
        stored = doc["models"].get("g2p", {}).get("model", {}).get("stored_test_metrics")
        if stored:
            lines.append(f"The checkpoint's own (PyTorch) test WER: {100 * stored['word_error_rate']:.2f}%.\n")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
