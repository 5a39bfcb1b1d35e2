"""Workers: every configuration runs in a fresh process (``python -m s2s_export.bench.workers
JOB.json OUT.json``) with explicit thread counts, so torch and ONNX Runtime never share a
process (their spinning thread pools slow each other down many times on small machines).

Parent side: ``launch(job, workdir)`` writes the job, sets the thread environment
(OMP/MKL/OPENBLAS_NUM_THREADS = the configuration's threads; removed for the torch status
quo) and returns the worker's JSON result (``{"error": ...}`` when it failed).

Child side (``main``), per configuration, each after an untimed warm-up:

* ``step_b1``: one decoder step at batch 1 (torch ``decode_step``; ONNX Runtime
  ``backend.step``, plus ``step_b1_graph``: the session run alone; floor: the step's matmuls);
* ``encoder``: one encoder run per batch size of the decode passes;
* ``decode``: per (batch, beam), ``iters`` passes over the same sentences (torch: the eager
  loop of ``eager.py``; ONNX Runtime: ``Translator.translate_ids``; floor: the products of the
  steps the FP32 runtime ran, replayed from its recorded schedule);
* ONNX Runtime also runs instrumented passes (``loop``): per pass the total time, the time
  inside the backend's calls and inside the session runs (graph executions), so the Python
  search loop's share is measured rather than guessed (with the fused greedy graph off; greedy
  b1 on the fused graph is measured too, ``b1-beam1-fused``). The timed ``decode`` passes run
  the runtime as shipped (greedy on the fused graph when the bundle has one);
* ``step_b1_loop``: every decoder step's time inside greedy batch-1 decoding (instrumented
  passes; torch ``decode_step``, ONNX Runtime ``backend.step``): unlike the back-to-back
  ``step_b1``, it includes what the rest of the loop does to the step (thread wake-ups,
  oversubscription stalls, caches);
* ``memory``: ``ru_maxrss`` after loading and at the end (MB).

A ``quality`` job translates labelled pairs with each precision and scores them
(``s2s_export.train.metrics``).
"""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .configs import WorkerConfig
from .engines import OrtEngine, Probe, TorchEngine

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
Call = Callable[[], Any]


# ---------------------------------------------------------------------------------------- stats
def summary(samples: Sequence[float]) -> dict[str, float]:
    """Median, spread (p10/p90, quartiles), min, mean and count of timings in seconds."""
    a = np.asarray(samples, dtype=np.float64)
    p10, q1, med, q3, p90 = np.percentile(a, [10, 25, 50, 75, 90])
    return {"median": float(med), "p10": float(p10), "p90": float(p90), "q1": float(q1), "q3": float(q3),
            "min": float(a.min()), "mean": float(a.mean()), "n": int(a.size)}


def timed(fn: Call, iters: int, warmup: int) -> list[float]:
    """Wall times of ``iters`` calls after ``warmup`` untimed ones (garbage collector paused)."""
    for _ in range(warmup):
        fn()
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        out = []
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    finally:
        if enabled:
            gc.enable()
    return out


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def combo_key(batch: int, beam: int) -> str:
    return f"b{batch}-beam{beam}"


# ---------------------------------------------------------------------------------------- measuring
def _latency(engine: Any, wl: dict[str, Any], out: dict[str, Any]) -> None:
    src = list(wl["latency_source"])
    out["step_b1"] = summary(timed(engine.step_call(src), wl["step_iters"], max(10, wl["warmup"])))
    out["encoder"] = {}
    for b, seqs in wl["passes"].items():
        seqs = seqs[: int(b)] if int(b) > 1 else [src]
        out["encoder"][b] = summary(timed(engine.encoder_call(seqs), wl["encoder_iters"], max(3, wl["warmup"])))


def _decode(engine: Any, wl: dict[str, Any], out: dict[str, Any]) -> None:
    out["decode"] = {}
    for batch, beam in wl["combos"]:
        sources = wl["passes"][str(batch)]
        got: list[list[list[int]]] = []

        def run(sources: list[list[int]] = sources, batch: int = batch, beam: int = beam) -> None:
            got.append(engine.translate(sources, batch, beam, wl))

        times = timed(run, wl["iters"], wl["warmup"])
        outputs = got[-1]
        out["decode"][combo_key(batch, beam)] = {
            "batch": batch, "beam": beam, "sentences": len(sources), "tokens": sum(len(o) for o in outputs),
            "pass": summary(times), "outputs": outputs}


def _loop(engine: OrtEngine, wl: dict[str, Any], out: dict[str, Any], record: bool) -> None:
    """Instrumented passes: total vs backend calls vs graph executions (and the schedule), with
    the search's Python loop (the fused greedy graph off); then greedy b1 on the fused graph
    (key ``b1-beam1-fused``) when the bundle has one."""
    backend: Any = engine.backend
    fused = bool(getattr(backend, "fused_greedy", False))
    backend.fused_greedy = False
    probe = Probe(backend)
    out["loop"], schedules = {}, {}
    try:
        # per-step: the session run alone
        step = engine.step_call(list(wl["latency_source"]))
        graph = []
        for _ in range(wl["step_iters"]):
            probe.reset()
            step()
            graph.append(probe.graph_s)
        if probe.has_graph_timing:
            out["step_b1_graph"] = summary(graph)
        for batch, beam in wl["combos"]:
            key, sources = combo_key(batch, beam), wl["passes"][str(batch)]
            rows, step_times, schedules[key] = _passes(engine, probe, sources, batch, beam, wl)
            if (batch, beam) == (1, 1) and step_times:
                out["step_b1_loop"] = summary(step_times)
            steps = sum(1 for s in schedules[key] if s[0] == "step")
            out["loop"][key] = _entry(rows, steps, probe.has_graph_timing, search_loop=True)
    finally:
        probe.close()
        backend.fused_greedy = fused
    if record:
        out["schedule"] = schedules
    if fused and [1, 1] in [list(c) for c in wl["combos"]]:
        _fused_loop(engine, wl, out)


def _fused_loop(engine: OrtEngine, wl: dict[str, Any], out: dict[str, Any]) -> None:
    """Greedy b1 on the fused greedy graph: total vs graph runs (encoder + greedy graph)."""
    sources = wl["passes"]["1"]
    engine.translate(sources, 1, 1, wl)  # loads the greedy session before the probe patches it
    probe = Probe(engine.backend)
    try:
        rows, _, _ = _passes(engine, probe, sources, 1, 1, wl)
    finally:
        probe.close()
    out["loop"][f"{combo_key(1, 1)}-fused"] = _entry(rows, None, True, search_loop=False)


def _passes(engine: OrtEngine, probe: Probe, sources: list[list[int]], batch: int, beam: int,
            wl: dict[str, Any]) -> tuple[dict[str, list[float]], list[float], list[list[Any]]]:
    """``iters`` instrumented passes: per pass the total, backend-call and graph-run seconds;
    every step call's time; the first pass's call schedule."""
    rows: dict[str, list[float]] = {"total": [], "backend": [], "graph": []}
    step_times: list[float] = []
    schedule: list[list[Any]] = []
    for i in range(max(1, wl["iters"])):
        probe.reset()
        gc.disable()
        t0 = time.perf_counter()
        engine.translate(sources, batch, beam, wl)
        total = time.perf_counter() - t0
        gc.enable()
        rows["total"].append(total)
        rows["backend"].append(probe.backend_s)
        rows["graph"].append(probe.graph_s)
        step_times += probe.step_times
        if i == 0:
            schedule = probe.schedule
    return rows, step_times, schedule


def _entry(rows: dict[str, list[float]], steps: int | None, graph_timed: bool, search_loop: bool
           ) -> dict[str, Any]:
    """Summaries of ``_passes`` rows, and the overheads over the graph runs when they were timed:
    everything else (``overhead_vs_graph``) and, with ``search_loop``, what runs outside the
    backend's calls (``search_loop_vs_graph``)."""
    entry: dict[str, Any] = {k: summary(v) for k, v in rows.items()}
    entry["steps"] = steps
    if graph_timed:
        ratio = [(t - g) / g for t, g in zip(rows["total"], rows["graph"]) if g > 0]
        search = [(t - b) / g for t, b, g in zip(rows["total"], rows["backend"], rows["graph"]) if g > 0]
        entry["overhead_vs_graph"] = float(np.median(ratio)) if ratio else None
        entry["search_loop_vs_graph"] = float(np.median(search)) if search and search_loop else None
    return entry


def _torch_loop_steps(engine: TorchEngine, wl: dict[str, Any], out: dict[str, Any]) -> None:
    """``decode_step`` times inside greedy batch-1 decoding (instrumented passes)."""
    if [1, 1] not in [list(c) for c in wl["combos"]]:
        return
    model, times = engine.model, []
    orig = model.decode_step

    def step(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return orig(*args, **kwargs)
        finally:
            times.append(time.perf_counter() - t0)

    model.decode_step = step  # type: ignore[method-assign]  # instance attribute, removed below
    try:
        for _ in range(max(1, wl["iters"])):
            engine.translate(wl["passes"]["1"], 1, 1, wl)
    finally:
        del model.decode_step
    out["step_b1_loop"] = summary(times)


def measure_torch(job: dict[str, Any], cfg: WorkerConfig, out: dict[str, Any]) -> None:
    engine = TorchEngine(job, cfg)
    out["info"] = engine.info
    out["memory"] = {"after_load_mb": maxrss_mb()}
    with engine.torch.inference_mode():
        _latency(engine, job["workload"], out)
        _decode(engine, job["workload"], out)
        _torch_loop_steps(engine, job["workload"], out)
    if job.get("dump_weights"):
        engine.dump_weights(job["dump_weights"])


def measure_ort(job: dict[str, Any], cfg: WorkerConfig, out: dict[str, Any]) -> None:
    engine = OrtEngine(job, cfg)
    out["info"] = engine.info
    out["memory"] = {"after_load_mb": maxrss_mb()}
    _latency(engine, job["workload"], out)
    _decode(engine, job["workload"], out)
    _loop(engine, job["workload"], out, bool(job.get("record_schedule")))


def measure_floor(job: dict[str, Any], cfg: WorkerConfig, out: dict[str, Any]) -> None:
    from .floor import Floor

    with np.load(job["weights"], allow_pickle=False) as data:
        config = json.loads(str(data["__config__"]))
        weights = {k: np.asarray(data[k]) for k in data.files if k != "__config__"}
    floor = Floor(weights, config)
    out["info"] = {"numpy": np.__version__, "blas_threads": cfg.threads}
    out["memory"] = {"after_load_mb": maxrss_mb()}
    wl = job["workload"]
    src_len = len(wl["latency_source"]) + 1  # + EOS
    out["step_b1"] = summary(timed(floor.step(1, src_len), wl["step_iters"], max(10, wl["warmup"])))
    out["encoder"] = {}
    for b, seqs in wl["passes"].items():
        S = src_len if int(b) == 1 else max(len(s) for s in seqs[: int(b)]) + 1
        out["encoder"][b] = summary(timed(floor.encoder(int(b), S), wl["encoder_iters"], max(3, wl["warmup"])))
    out["decode"] = {}
    for key, schedule in (job.get("schedule") or {}).items():
        batch, beam = (int(x) for x in key[1:].split("-beam"))
        times = timed(floor.replay(schedule), wl["iters"], wl["warmup"])
        out["decode"][key] = {"batch": batch, "beam": beam, "sentences": len(wl["passes"][str(batch)]),
                              "tokens": (job.get("tokens") or {}).get(key), "pass": summary(times),
                              "steps": sum(1 for s in schedule if s[0] == "step")}


def measure_quality(job: dict[str, Any], out: dict[str, Any]) -> None:
    """Translate ``pairs`` ([src ids, ref ids]) with each precision; score them."""
    from ..runtime import Translator
    from ..train.metrics import score

    srcs = [p[0] for p in job["pairs"]]
    refs = [tuple(p[1]) for p in job["pairs"]]
    outputs: dict[str, list[tuple[int, ...]]] = {}
    for precision in job["precisions"]:
        t = Translator.load(job["bundle"], precision=precision, intra_op_threads=job.get("threads"))
        t0 = time.perf_counter()
        hyps = t.translate_ids(srcs, max_batch_size=int(job.get("batch", 64)), max_length=int(job.get("max_length", 200)))
        seconds = time.perf_counter() - t0
        eos = t.manifest.tgt_specials.eos
        outputs[precision] = [tuple(i for i in h[0].ids if i != eos) for h in hyps]
        out[precision] = {**score(outputs[precision], refs), "seconds": seconds}
    first = job["precisions"][0]
    for precision in job["precisions"][1:]:
        same = sum(a == b for a, b in zip(outputs[first], outputs[precision]))
        out[precision][f"identical_to_{first}"] = same / max(1, len(refs))


MEASURE = {"torch": measure_torch, "onnxruntime": measure_ort, "floor": measure_floor}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    job = json.loads(Path(args[0]).read_text())
    out: dict[str, Any] = {"pid": os.getpid(), "loadavg_start": list(os.getloadavg()),
                           "env": {k: os.environ.get(k) for k in THREAD_VARS}}
    t0 = time.perf_counter()
    if job.get("kind") == "quality":
        measure_quality(job, out)
    else:
        cfg = WorkerConfig.from_dict(job["config"])
        out.update(config=cfg.to_dict(), label=cfg.label)
        MEASURE[cfg.engine](job, cfg, out)
        out["memory"]["maxrss_mb"] = maxrss_mb()
    out["wall_s"] = time.perf_counter() - t0
    out["loadavg_end"] = list(os.getloadavg())
    Path(args[1]).write_text(json.dumps(out))
    return 0


# ---------------------------------------------------------------------------------------- parent side
def worker_env(threads: int | None) -> dict[str, str]:
    """The environment of a worker: thread variables set to ``threads`` (removed when None)."""
    env = dict(os.environ)
    for var in THREAD_VARS:
        if threads is None:
            env.pop(var, None)
        else:
            env[var] = str(int(threads))
    return env


def launch(job: dict[str, Any], workdir: Path, name: str, threads: int | None, timeout_s: float) -> dict[str, Any]:
    """Run one job in a fresh process; its result, or ``{"error": ...}``."""
    job_path, out_path = workdir / f"{name}.job.json", workdir / f"{name}.out.json"
    job_path.write_text(json.dumps(job))
    out_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "s2s_export.bench.workers", str(job_path), str(out_path)]
    try:
        proc = subprocess.run(cmd, env=worker_env(threads), capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s"}
    if proc.returncode != 0 or not out_path.is_file():
        tail = " | ".join((proc.stderr or proc.stdout or "").strip().splitlines()[-3:])
        return {"error": f"exit {proc.returncode}: {tail[:600]}"}
    result: dict[str, Any] = json.loads(out_path.read_text())
    return result


if __name__ == "__main__":
    sys.exit(main())
