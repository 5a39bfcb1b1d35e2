"""Benchmark harness: PyTorch eager vs the s2s-export runtime (ONNX Runtime FP32/INT8) vs the
numpy BLAS floor, each configuration in a fresh process, on the same inputs.

Modules: ``configs`` (spec, worker configurations, inputs), ``workers`` (the per-process
measurements and their launcher), ``eager`` (the PyTorch baseline loops), ``floor`` (the
matmul-only floor), ``harness`` (``run_bench``, ``run_quality``), ``report`` (figures, ratios,
targets, markdown). Importing this package imports neither torch nor onnxruntime.
"""

from __future__ import annotations

from .configs import NMT_CONFIG, BenchSpec, WorkerConfig, plan, random_sources
from .harness import run_bench, run_quality
from .report import details_markdown, machine_info, markdown, quality_markdown, summarize

__all__ = ["BenchSpec", "NMT_CONFIG", "WorkerConfig", "details_markdown", "machine_info", "markdown", "plan",
           "quality_markdown", "random_sources", "run_bench", "run_quality", "summarize"]
