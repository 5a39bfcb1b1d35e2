"""Run a benchmark: every configuration of ``configs.plan`` in its own process, in order, on
the same inputs; then the floor replays the FP32 runtime's recorded step schedule.

    from s2s_export.bench import BenchSpec, run_bench
    result = run_bench(BenchSpec(bundle, model, sources))   # -> JSON-able dict

The harness process itself never imports torch or onnxruntime (versions come from package
metadata): it only writes jobs, starts workers and waits.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from ..bundle import load_manifest
from .configs import BenchSpec, plan
from .report import machine_info
from .workers import launch

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def run_bench(spec: BenchSpec, log: Log = _quiet, workdir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Measure every configuration of ``spec`` (``spec.rounds`` times, alternating the order);
    ``{"spec", "machine", "workers": [...]}`` (each worker's result with its ``round``, or its
    ``error``)."""
    spec.validate()
    manifest = load_manifest(spec.bundle, verify=False)
    has_int8 = bool(manifest.graphs.get("int8"))
    configs = plan(spec, int8=has_int8)
    workload = spec.workload()
    started = time.time()
    results: list[dict[str, Any]] = []
    order = [(r, cfg) for r in range(spec.rounds) for cfg in (configs if r % 2 == 0 else configs[::-1])]
    with tempfile.TemporaryDirectory(prefix="benchjobs-", dir=workdir) as tmp:
        tmpdir = Path(tmp)
        weights = tmpdir / "weights.npz"
        schedule: dict[str, Any] | None = None
        tokens: dict[str, int] = {}
        for i, (rnd, cfg) in enumerate(order):
            job: dict[str, Any] = {"kind": "measure", "config": cfg.to_dict(), "workload": workload,
                                   "model": str(spec.model), "bundle": str(spec.bundle),
                                   "trust_pickle": spec.trust_pickle,
                                   "conventions": manifest.conventions.model_dump(),
                                   "blocked": list(manifest.io.blocked)}
            if cfg.is_default_torch and not weights.exists():
                job["dump_weights"] = str(weights)
            if cfg.engine == "onnxruntime" and cfg.precision == "fp32" and schedule is None:
                job["record_schedule"] = True
            if cfg.engine == "floor":
                job.update(weights=str(weights), schedule=schedule, tokens=tokens)
            log(f"[{i + 1}/{len(order)}] {spec.name}: {cfg.label}" + (f" (round {rnd + 1})" if spec.rounds > 1 else "")
                + " ...")
            t0 = time.perf_counter()
            res = launch(job, tmpdir, f"w{i}", cfg.threads, spec.timeout_s)
            res.setdefault("config", cfg.to_dict())
            res.setdefault("label", cfg.label)
            res["round"] = rnd
            results.append(res)
            if "error" in res:
                log(f"    failed: {res['error']}")
            else:
                log(f"    done in {time.perf_counter() - t0:.1f} s")
            if "schedule" in res and schedule is None:
                schedule = res.pop("schedule")
                tokens = {k: d["tokens"] for k, d in res.get("decode", {}).items()}
    return {"name": spec.name, "spec": spec.to_dict(), "machine": machine_info(),
            "started": started, "seconds": time.time() - started, "workers": results}


def run_quality(bundle: str | os.PathLike[str], pairs: list[tuple[list[int], list[int]]],
                precisions: tuple[str, ...] = ("fp32", "int8"), threads: int | None = 1, batch: int = 64,
                max_length: int = 200, timeout_s: float = 1800.0) -> dict[str, Any]:
    """Score ``pairs`` (source ids, reference ids; no EOS) with each precision of the runtime,
    in a fresh process: ``{precision: {"word_error_rate", "token_error_rate", ...}}``."""
    job = {"kind": "quality", "bundle": str(bundle), "pairs": [[list(s), list(r)] for s, r in pairs],
           "precisions": list(precisions), "threads": threads, "batch": batch, "max_length": max_length}
    with tempfile.TemporaryDirectory(prefix="benchquality-") as tmp:
        return launch(job, Path(tmp), "quality", threads, timeout_s)


__all__ = ["run_bench", "run_quality"]
