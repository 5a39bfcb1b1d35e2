#!/usr/bin/env python
"""INT8 variants side by side: speed, quality, batch independence, int16 saturation.

Variants (each a copy of the same fp32 bundle with its own int8 graphs):

* ``fp32``: the float32 graphs (reference);
* ``dynamic-per-tensor``: the scheme before this change (ONNX Runtime ``quantize_dynamic``,
  per-channel int8 weights over the full [-127, 127] range, one activation scale per batch
  tensor, int8 LSTM): batch-dependent, saturates int16 on CPUs without VNNI; for reference;
* ``rowwise``: ``s2s_export.int8`` row-wise dynamic (one activation scale per row);
* ``static``: ``s2s_export.int8`` static QDQ calibrated on sources generated from the vocabulary
  (the default without ``--calibrate``);
* ``static-file`` (G2P only): static, calibrated on 256 CMUdict *training* words (``--calibrate``).

Models: the shipped G2P example (``examples/g2p.pt``) and the NMT-sized random-weight model of
``benchmarks/run.py`` (speed only). Figures:

* speed (fresh process per variant x threads, every configuration run ``--rounds`` times in
  alternating order, each figure keeps its best round): decoder step at batch 1 back to back,
  encoder at batch 1, greedy batch-1 sentences/s (the runtime as shipped: fused greedy graph),
  beam 5 batch 32 tokens/s;
* quality (G2P, CMUdict test split, 6,004 words, greedy batch 64): word and phoneme error rates;
* batch independence (G2P): words whose output (ids) differs between batch 1 and batch 64,
  greedy on the whole test split and beam 4 on 600 words, the largest score difference; fused
  greedy graph vs the Python loop at batch 8 (ids and scores) on 600 words;
* saturation (G2P): over real decoding inputs (the step inputs of greedy decodes of 256 test
  words, the encoder inputs of those words), the share of int32 results of the int8 graphs'
  integer products that MLAS's AVX2/AVX512BW kernel (``vpmaddubsw``, int16 saturation,
  emulated by ``s2s_export.int8.check.u8s8_product_avx2``) computes differently from the exact
  product that VNNI/AMX kernels compute.

    python benchmarks/int8_variants.py              # writes results/<date>-int8-variants.json
    python benchmarks/int8_variants.py --quick      # tiny counts: checks the pipeline only

The preparation (export) runs in a subprocess, the measurements in fresh worker processes; this
process imports neither torch nor onnxruntime.
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
INT8_VARIANTS = ("dynamic-per-tensor", "rowwise", "static", "static-file")
POOL, NMT_SRC_LEN, NMT_GREEDY = 64, (10, 40), 16
CALIBRATION_WORDS = 256


# ---------------------------------------------------------------------------------------- prepare
def legacy_dynamic(bundle: Path) -> None:
    """The int8 graphs as s2s-export wrote them before (ONNX Runtime quantize_dynamic, per-channel
    full-range int8 weights, per-tensor activations, int8 LSTM), for reference."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from s2s_export.bundle import GRAPHS, GREEDY, load_manifest
    from s2s_export.export.greedy import write_greedy
    from s2s_export.export.onnx import record_blocked

    manifest = load_manifest(bundle)
    entry = {g: f"{g}.int8.onnx" for g in GRAPHS}
    for g in GRAPHS:
        pre = bundle / f"{g}.pre.onnx"
        quant_pre_process(str(bundle / f"{g}.onnx"), str(pre), skip_symbolic_shape=True)
        quantize_dynamic(pre, bundle / entry[g], op_types_to_quantize=["MatMul", "Gemm", "LSTM", "GRU"],
                         per_channel=True, weight_type=QuantType.QInt8)
        pre.unlink()
    record_blocked(bundle / entry["decoder_step"], manifest.io.blocked)  # the mask the fp32 step graph records
    write_greedy(bundle / entry["decoder_step"], bundle / f"{GREEDY}.int8.onnx", manifest.io, manifest.conventions)
    manifest.graphs["int8"] = {**entry, GREEDY: f"{GREEDY}.int8.onnx"}
    manifest.save(bundle)


def variant_bundles(fp32: Path, variants: tuple[str, ...], calibration: Path | None) -> dict[str, Any]:
    """Copies of ``fp32`` with each variant's int8 graphs: {variant: {"bundle", "quantize_s"}}."""
    from s2s_export.int8 import quantize_bundle

    out: dict[str, Any] = {"fp32": {"bundle": str(fp32), "precision": "fp32"}}
    for v in variants:
        path = fp32.with_name(f"{fp32.name}-{v}")
        shutil.rmtree(path, ignore_errors=True)
        shutil.copytree(fp32, path)
        t0 = time.perf_counter()
        if v == "dynamic-per-tensor":
            legacy_dynamic(path)
        else:
            quantize_bundle(path, v.removesuffix("-file"), calibration if v == "static-file" else None)
        out[v] = {"bundle": str(path), "precision": "int8", "quantize_s": round(time.perf_counter() - t0, 2)}
    return out


def prepare(workdir: Path, g2p_model: Path | None, nmt: bool) -> dict[str, Any]:
    """Export the models, build every variant, draw the inputs (runs in its own process)."""
    import torch

    from s2s_export.bench.configs import random_sources, save_nmt_checkpoint
    from s2s_export.export import export_model
    from s2s_export.models import load_checkpoint

    torch.set_num_threads(1)
    out: dict[str, Any] = {}
    if g2p_model is not None:
        from s2s_export.train.data import g2p_task

        task = g2p_task()
        ckpt = load_checkpoint(g2p_model)
        fp32 = export_model(g2p_model, workdir / "g2p", force=True).path
        calibration = workdir / "g2p-calibration.txt"
        words = random.Random(1).sample(["".join(w) for w, _ in task.train], CALIBRATION_WORDS)
        calibration.write_text("\n".join(words) + "\n", encoding="utf-8")
        pairs = [(ckpt.src_vocab.encode(list(w)), ckpt.tgt_vocab.encode(list(p))) for w, p in task.test]
        out["g2p"] = {"variants": variant_bundles(fp32, INT8_VARIANTS, calibration), "pairs": pairs,
                      "pool": [p[0] for p in random.Random(0).sample(pairs, POOL)], "max_length": 50,
                      "max_length_ratio": None, "greedy_sentences": POOL,
                      "params": sum(p.numel() for p in ckpt.model.parameters())}
    if nmt:
        path = workdir / "nmt.pt"
        model = save_nmt_checkpoint(path)
        config = model.config
        fp32 = export_model(path, workdir / "nmt", force=True).path
        out["nmt"] = {"variants": variant_bundles(fp32, INT8_VARIANTS[:3], None), "max_length": 200,
                      "max_length_ratio": 1.0, "greedy_sentences": NMT_GREEDY,
                      "pool": random_sources(config.src_vocab_size, POOL, *NMT_SRC_LEN, seed=0),
                      "params": sum(p.numel() for p in model.parameters())}
    (workdir / "prepared.json").write_text(json.dumps(out))
    return out


# ---------------------------------------------------------------------------------------- workers
def timed_cpu(fn: Any, iters: int, warmup: int) -> tuple[list[float], list[float]]:
    """(wall times, process CPU times) of ``iters`` calls after ``warmup`` untimed ones. With one
    intra-op thread ONNX Runtime computes in the calling thread, so the CPU time leaves out the
    time other processes hold the core (the wall time on a shared machine does not)."""
    import gc

    for _ in range(warmup):
        fn()
    gc.collect()
    gc.disable()
    try:
        wall, cpu = [], []
        for _ in range(iters):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    finally:
        gc.enable()
    return wall, cpu


def measure_speed(job: dict[str, Any]) -> dict[str, Any]:
    """One variant x thread count: step/encoder b1 latency, greedy b1 and beam 5 b32 rates (wall
    time; with 1 thread also CPU time: ``*_cpu``)."""
    from s2s_export.bench.configs import WorkerConfig
    from s2s_export.bench.engines import OrtEngine
    from s2s_export.bench.workers import summary

    q = job["quick"]
    engine = OrtEngine({"bundle": job["bundle"]}, WorkerConfig("onnxruntime", job["threads"], job["precision"],
                                                               spin="step"))
    pool, wl = job["pool"], {"max_length": job["max_length"], "max_length_ratio": job["max_length_ratio"]}
    greedy, batch = pool[: 4 if q else job["greedy_sentences"]], pool[:32]
    tokens = sum(len(ids) for ids in engine.translate(batch, 32, 5, wl))
    calls = {"step_b1": (engine.step_call(pool[0]), 20 if q else job["step_iters"], 20),
             "encoder_b1": (engine.encoder_call(pool[:1]), 5 if q else 50, 5),
             "greedy_b1": (lambda: engine.translate(greedy, 1, 1, wl), 1 if q else job["iters"], 1),
             "beam5_b32": (lambda: engine.translate(batch, 32, 5, wl), 1 if q else job["iters"], 0)}
    out: dict[str, Any] = {"info": engine.info}
    for fig, (fn, iters, warmup) in calls.items():
        wall, cpu = timed_cpu(fn, iters, warmup)
        out[fig], out[fig + "_cpu"] = summary(wall), summary(cpu)
    for suffix in ("", "_cpu"):
        out["greedy_b1" + suffix]["sentences_per_s"] = len(greedy) / out["greedy_b1" + suffix]["median"]
        out["beam5_b32" + suffix]["tokens_per_s"] = tokens / out["beam5_b32" + suffix]["median"]
    return out


def measure_quality(job: dict[str, Any]) -> dict[str, Any]:
    """G2P: error rates on the test split, batch 1 vs 64, fused greedy vs the Python loop."""
    from s2s_export.runtime import Translator
    from s2s_export.train.metrics import score

    t = Translator.load(job["bundle"], precision=job["precision"], intra_op_threads=1, spinning="off")
    pairs = job["pairs"]
    sources, refs = [p[0] for p in pairs], [p[1] for p in pairs]
    few = sources[:: max(1, len(sources) // job["subset"])][: job["subset"]]
    kw: dict[str, Any] = {"max_length": 50}

    def ids(srcs: list[list[int]], batch: int, **extra: Any) -> list[tuple[list[int], float]]:
        return [(h[0].ids, h[0].score) for h in t.translate_ids(srcs, max_batch_size=batch, **kw, **extra)]

    def compare(a: list[tuple[list[int], float]], b: list[tuple[list[int], float]]) -> dict[str, Any]:
        return {"n": len(a), "ids_differ": sum(x[0] != y[0] for x, y in zip(a, b)),
                "scores_differ": sum(x[1] != y[1] for x, y in zip(a, b)),
                "max_score_diff": max(abs(x[1] - y[1]) for x, y in zip(a, b))}

    out: dict[str, Any] = {}
    b64 = ids(sources, 64)
    strip = [[i for i in h[0] if i > 3] for h in b64]
    s = score(strip, refs)
    out["greedy_b64"] = {"word_error_rate": s["word_error_rate"], "token_error_rate": s["token_error_rate"],
                         "n": len(refs)}
    out["greedy_b1_vs_b64"] = compare(ids(sources, 1), b64)
    out["beam4_b1_vs_b64"] = compare(ids(few, 1, beam_size=4), ids(few, 64, beam_size=4))
    backend: Any = t.backend
    fused = ids(few, 8)
    backend.fused_greedy = False
    out["fused_vs_loop_b8"] = compare(fused, ids(few, 8))
    return out


def measure_saturation(job: dict[str, Any]) -> dict[str, Any]:
    """Share of the int8 graphs' integer results that an AVX2 (no VNNI) kernel would clip."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    from s2s_export.bundle import load_manifest
    from s2s_export.int8.calibration import collect_feeds
    from s2s_export.int8.check import integer_weights, products, u8s8_product_avx2

    bundle = Path(job["bundle"])
    words = Path(job["workdir"]) / "saturation-words.txt"
    words.write_text("\n".join(job["words"]) + "\n", encoding="utf-8")
    feeds = dict(zip(("encoder", "decoder_step"), collect_feeds(bundle, words, count=len(job["words"]))))
    out: dict[str, Any] = {}
    graphs = load_manifest(bundle).graphs["int8"]
    for graph, graph_feeds in feeds.items():
        model = onnx.load(str(bundle / graphs[graph]))
        weights = dict(integer_weights(model))
        prods = [p for p in products(model) if p.activation and p.name in weights]
        known = {o.name for o in model.graph.output}
        for p in prods:
            if p.activation not in known:
                model.graph.output.append(onnx.helper.make_tensor_value_info(str(p.activation), onnx.TensorProto.UINT8, None))
                known.add(p.activation)
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        inputs = {i.name for i in sess.get_inputs()}
        total = clipped = 0
        worst = 0
        for feed in graph_feeds:
            acts = sess.run([p.activation for p in prods], {k: v for k, v in feed.items() if k in inputs})
            for p, a in zip(prods, acts):
                w = weights[p.name]
                a = np.asarray(a).reshape(-1, w.shape[0])
                for lo in range(0, len(a), 8):
                    exact = a[lo:lo + 8].astype(np.int64) @ w.astype(np.int64)
                    diff = np.abs(u8s8_product_avx2(a[lo:lo + 8], w) - exact)
                    total += exact.size
                    clipped += int((diff > 0).sum())
                    worst = max(worst, int(diff.max()))
        out[graph] = {"int32_results": total, "clipped": clipped, "share": clipped / max(total, 1),
                      "max_abs_int32_error": worst, "runs": len(graph_feeds)}
    return out


def worker_main(job_path: Path, out_path: Path) -> int:
    job = json.loads(job_path.read_text())
    t0 = time.perf_counter()
    kind = {"speed": measure_speed, "quality": measure_quality, "saturation": measure_saturation}[job["kind"]]
    result = kind(job)
    result["wall_s"] = time.perf_counter() - t0
    out_path.write_text(json.dumps(result))
    return 0


def launch(job: dict[str, Any], workdir: Path, name: str, threads: int, timeout: float = 3600) -> dict[str, Any]:
    from s2s_export.bench.workers import worker_env

    job_path, out_path = workdir / f"{name}.job.json", workdir / f"{name}.out.json"
    job_path.write_text(json.dumps(job))
    out_path.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(job_path), str(out_path)]
    try:
        proc = subprocess.run(cmd, env=worker_env(threads), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0 or not out_path.is_file():
        return {"error": f"exit {proc.returncode}: {' | '.join(proc.stderr.strip().splitlines()[-3:])[:600]}"}
    result: dict[str, Any] = json.loads(out_path.read_text())
    return result


# ---------------------------------------------------------------------------------------- main
FIGURES = {"step_b1": ("median", 1e6, "us", False), "encoder_b1": ("median", 1e6, "us", False),
           "greedy_b1": ("sentences_per_s", 1, "sent/s", True), "beam5_b32": ("tokens_per_s", 1, "tok/s", True)}
FIGURES.update({f"{k}_cpu": v for k, v in FIGURES.items()})


def best_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per figure, the best of the rounds (a load spike spoils one round, not the comparison)."""
    best: dict[str, Any] = {}
    for fig, (key, scale, unit, higher) in FIGURES.items():
        values = [r[fig][key] * scale for r in rounds if fig in r]
        if values:
            best[fig] = {"value": max(values) if higher else min(values), "unit": unit, "rounds": values}
    return best


def run_speed(prepared: dict[str, Any], workdir: Path, args: argparse.Namespace, log: Any) -> dict[str, Any]:
    configs = []
    for model, p in prepared.items():
        for variant, v in p["variants"].items():
            if variant == "static-file":
                continue  # same graphs as static (other scales): same speed
            for threads in args.threads:
                job = {"kind": "speed", "bundle": v["bundle"], "precision": v["precision"], "threads": threads,
                       "quick": args.quick, "iters": args.iters, "pool": p["pool"],
                       "step_iters": 400 if model == "g2p" else 150, "max_length": p["max_length"],
                       "max_length_ratio": p["max_length_ratio"], "greedy_sentences": p["greedy_sentences"]}
                configs.append((model, variant, threads, job))
    rounds: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in range(args.rounds):
        order = configs if r % 2 == 0 else configs[::-1]
        for model, variant, threads, job in order:
            res = launch(job, workdir, f"speed-{model}-{variant}-{threads}-{r}", threads)
            log(f"round {r + 1}/{args.rounds} {model} {variant} {threads}t: "
                + (res.get("error") or f"greedy b1 {res['greedy_b1']['sentences_per_s']:.1f} sent/s, "
                   f"step {res['step_b1']['median'] * 1e6:.0f} us"))
            rounds.setdefault((model, variant, threads), []).append(res)
    out: dict[str, Any] = {}
    for (model, variant, threads), runs in rounds.items():
        ok = [x for x in runs if "error" not in x]
        out.setdefault(model, {}).setdefault(variant, {})[f"{threads}t"] = {
            **best_rounds(ok), "errors": [x["error"] for x in runs if "error" in x]}
    return out


def run_quality(prepared: dict[str, Any], workdir: Path, args: argparse.Namespace, log: Any) -> dict[str, Any]:
    p = prepared["g2p"]
    pairs = p["pairs"][:300] if args.quick else p["pairs"]
    out: dict[str, Any] = {"quality": {}, "saturation": {}}
    for variant, v in p["variants"].items():
        res = launch({"kind": "quality", "bundle": v["bundle"], "precision": v["precision"], "pairs": pairs,
                      "subset": 100 if args.quick else 600}, workdir, f"quality-{variant}", 1)
        out["quality"][variant] = res
        log(f"quality {variant}: " + (res.get("error") or f"WER {100 * res['greedy_b64']['word_error_rate']:.2f}%, "
                                      f"b1 vs b64 {res['greedy_b1_vs_b64']['ids_differ']} differ"))
        if v["precision"] == "int8":
            res = launch({"kind": "saturation", "bundle": v["bundle"], "workdir": str(workdir),
                          "words": test_words(p, 64 if args.quick else 256)},
                         workdir, f"saturation-{variant}", 1)
            out["saturation"][variant] = res
            log(f"saturation {variant}: {res}")
    return out


def test_words(p: dict[str, Any], n: int) -> list[str]:
    """The first ``n`` test words as text (the bundle's source vocabulary is a-z)."""
    vocab = json.loads((Path(p["variants"]["fp32"]["bundle"]) / "manifest.json").read_text())["src_vocab"]
    return ["".join(vocab[i] for i in src) for src, _ in p["pairs"][:n]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", nargs=2, type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--g2p", type=Path, default=ROOT / "examples" / "g2p.pt")
    ap.add_argument("--no-nmt", action="store_true")
    ap.add_argument("--threads", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    ap.add_argument("--iters", type=int, default=3, help="timed decode passes per worker")
    ap.add_argument("--rounds", type=int, default=3, help="runs of every speed configuration (alternating order)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    if args.worker:
        return worker_main(*args.worker)
    if args.prepare:
        prepare(args.prepare, args.g2p, not args.no_nmt)
        return 0
    from s2s_export.bench import machine_info

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="int8variants-"))
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    try:
        log("preparing bundles (export, every int8 variant) ...")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--prepare", str(workdir), "--g2p", str(args.g2p)]
        subprocess.run(cmd + ["--no-nmt"] * args.no_nmt, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        prepared = json.loads((workdir / "prepared.json").read_text())
        load_before = list(os.getloadavg())
        speed = run_speed(prepared, workdir, args, log)
        quality = run_quality(prepared, workdir, args, log)
        date = dt.datetime.now(dt.timezone.utc)
        doc = {"date": date.isoformat(timespec="seconds"), "machine": machine_info(), "preliminary": True,
               "note": "measured on a 2-core machine shared with other engineers' jobs (load average in "
                       "load_before/load_after): timings are noisy; best of the rounds per figure",
               "load_before": load_before, "load_after": list(os.getloadavg()), "seconds": time.time() - t0,
               "quick": args.quick, "command": " ".join(sys.argv),
               "models": {m: {"params": p["params"], "variants": {v: {k: x for k, x in d.items() if k != "bundle"}
                                                                   for v, d in p["variants"].items()}}
                          for m, p in prepared.items()},
               "speed": speed, **quality}
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"{date:%Y-%m-%d}-int8-variants{'-quick' if args.quick else ''}.json"
        path.write_text(json.dumps(doc, indent=1) + "\n")
        print(render(doc))
        log(f"wrote {path} in {time.time() - t0:.0f} s")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def render(doc: dict[str, Any]) -> str:
    """Markdown tables of a results document."""
    lines = [f"INT8 variants, {doc['machine']['cpu']} ({doc['machine']['cpus']} CPUs), {doc['date']}, "
             f"load {doc['load_before'][0]:.1f} -> {doc['load_after'][0]:.1f} (preliminary)", ""]
    for model, variants in doc["speed"].items():
        lines += [f"### {model} ({doc['models'][model]['params']:,} parameters)", "",
                  "| variant | threads | time | step b1 (us) | encoder b1 (us) | greedy b1 (sent/s) "
                  "| beam 5 b32 (tok/s) |", "|---|---|---|---|---|---|---|"]
        for variant, per_threads in variants.items():
            for threads, figs in per_threads.items():
                for clock, suffix in (("wall", ""), ("CPU", "_cpu")):
                    if clock == "CPU" and threads != "1t":
                        continue  # spinning pool threads: CPU time is not work at 2 threads
                    cells = [f"{figs[f + suffix]['value']:,.1f}" if f + suffix in figs else "-"
                             for f in FIGURES if not f.endswith("_cpu")]
                    lines.append(f"| {variant} | {threads} | {clock} | " + " | ".join(cells) + " |")
        lines.append("")
    if doc.get("quality"):
        lines += ["### G2P quality and batch independence (CMUdict test split)", "",
                  "| variant | WER | PER | greedy b1 vs b64 differ | beam 4 b1 vs b64 differ | fused vs loop b8 differ "
                  "| AVX2 clipped int32 results (step) |", "|---|---|---|---|---|---|---|"]
        for variant, q in doc["quality"].items():
            if "error" in q:
                lines.append(f"| {variant} | error: {q['error']} |")
                continue
            sat = doc["saturation"].get(variant, {}).get("decoder_step")
            g, b, f = q["greedy_b1_vs_b64"], q["beam4_b1_vs_b64"], q["fused_vs_loop_b8"]
            lines.append(f"| {variant} | {100 * q['greedy_b64']['word_error_rate']:.2f}% | "
                         f"{100 * q['greedy_b64']['token_error_rate']:.2f}% | {g['ids_differ']}/{g['n']} | "
                         f"{b['ids_differ']}/{b['n']} | {f['ids_differ']} ids, {f['scores_differ']} scores /{f['n']} | "
                         + (f"{100 * sat['share']:.3f}% (max error {sat['max_abs_int32_error']})" if sat else "-")
                         + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
