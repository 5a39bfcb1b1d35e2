"""``verify_bundle``: a bundle against the PyTorch model it was exported from.

    from s2s_export.verify import verify_bundle, inputs
    result = verify_bundle("bundle", model, inputs.from_task("reverse", ...), precision="int8")
    result.passed, result.report            # JSON-able report (``s2s verify --report``)
    result.raise_on_failure()               # ParityError (exit 3) naming every failure

Runs, on the same sentences: PyTorch's greedy reference search; the teacher-forced per-step
check on its trajectories (``stepwise``); the free-running greedy and (``beam_size`` > 1) beam
comparisons with quality metrics (``freerun``). Tolerances: ``tolerances.defaults(precision)``
unless given. The bundle runs through the runtime (``Translator``, any backend), the model in
PyTorch (CPU, float32, eval mode) with one thread while verifying (ONNX Runtime gets one
intra-op thread by default: on small machines two thread pools slow each other down).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BadInputError, ParityError, Problem, UsageError
from .compare import QUANTILE, REL_FLOOR
from .inputs import VerifyInputs
from .report import run_label, step_label
from .tolerances import STATE, Tolerances, defaults

FIX = ("the report (--html) shows where the bundle leaves PyTorch; re-export the bundle, or loosen "
       "--atol/--rtol/--tol/--min-exact for fp16/int8 figures you accept")


@dataclass
class VerifyResult:
    """The JSON-able report and, for the HTML report, the attention of one example."""

    report: dict[str, Any]
    example: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.report["passed"])

    def problems(self) -> list[Problem]:
        return [Problem(p, FIX) for p in self.report["failures"]]

    def raise_on_failure(self) -> None:
        if not self.passed:
            raise ParityError(self.problems())


def check_model(manifest: Any, model: Any, src_vocab: list[str] | None = None,
                tgt_vocab: list[str] | None = None, config: dict[str, Any] | None = None) -> None:
    """``BadInputError`` when the model cannot be the one the bundle was exported from
    (vocabularies or zoo config differ)."""
    fix = "pass the checkpoint the bundle was exported from (s2s-export MODEL.pt)"
    for side, given in (("source", src_vocab), ("target", tgt_vocab)):
        have = manifest.src_vocab if side == "source" else manifest.tgt_vocab
        if given is not None and list(given) != list(have):
            raise BadInputError(f"the model's {side} vocabulary ({len(given)} tokens) is not the bundle's "
                                f"({len(have)} tokens)", fix)
    if config is not None and "class" not in manifest.model_config and config != manifest.model_config:
        keys = sorted(k for k in set(config) | set(manifest.model_config)
                      if config.get(k) != manifest.model_config.get(k))
        raise BadInputError(f"the model's config differs from the bundle's ({', '.join(keys[:6])})", fix)
    size = getattr(getattr(model, "config", None), "tgt_vocab_size", None)
    if isinstance(size, int) and size != len(manifest.tgt_vocab):
        raise BadInputError(f"the model predicts {size} target tokens, the bundle {len(manifest.tgt_vocab)}", fix)


def verify_bundle(bundle_dir: str | os.PathLike[str], model: Any, data: VerifyInputs, *,
                  backend: str = "auto", precision: str | None = None, beam_size: int = 4,
                  max_length: int | None = None, batch_size: int = 32, tolerances: Tolerances | None = None,
                  overrides: dict[str, Any] | None = None, threads: int | None = 1, verify_hashes: bool = True,
                  model_info: dict[str, Any] | None = None) -> VerifyResult:
    """Verify ``bundle_dir`` against ``model`` (an ``nn.Module`` implementing the decoding
    contract) on ``data`` (see the module docstring). ``precision``: the bundle graphs to run
    (default ``fp32``; the TensorRT backend runs its FP16 engines: ``fp16``); it also picks the
    default ``tolerances``; ``overrides``: ``Tolerances.with_overrides`` arguments applied to
    them. ``model_info``: what to print about the model (path...)."""
    import torch

    from ..runtime import Translator
    from .freerun import free_running, quality, reference_options
    from .reference import reference_search, returns_attention
    from .stepwise import teacher_forced

    translator = Translator.load(bundle_dir, backend=backend, precision=precision or "fp32",
                                 intra_op_threads=threads, verify_hashes=verify_hashes)
    be = translator.backend
    if be.name == "tensorrt" and precision not in (None, "fp16"):
        raise UsageError(f"the tensorrt backend runs the bundle's FP16 engines, not {precision} graphs",
                         f"pass --precision fp16, or --backend onnxruntime to verify the {precision} graphs")
    if precision is None:
        precision = "fp16" if be.name == "tensorrt" else "fp32"
    io = translator.manifest.io
    named = {t.name for g in (io.encoder, io.step) for t in g.outputs}
    known = named | {n[len("next_"):] for n in named if n.startswith("next_")} | {STATE}
    unknown = sorted(set((overrides or {}).get("per_output") or {}) - known)
    if unknown:  # a typo must not leave the default gate in place silently
        raise UsageError(f"--tol names {', '.join(unknown)}, which the bundle's graphs do not output",
                         f"name one of: {', '.join(sorted(known))}")
    tol = (tolerances or defaults(precision)).with_overrides(**(overrides or {}))
    translator.options(beam_size=beam_size, n_best=1, max_length=max_length)  # ConfigError before any work
    check_model(translator.manifest, model)
    if len(translator.src_vocab) <= max(max(s) for s in data.sources):
        raise BadInputError("the sources have ids outside the bundle's source vocabulary",
                            "encode them with the bundle's source vocabulary")
    sources = data.sources

    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        greedy_opts = translator.options(beam_size=1, n_best=1, max_length=max_length)
        attention = returns_attention(greedy_opts.style)  # for the HTML report's attention plot
        ref_greedy = reference_search(model, sources, return_attention=attention, **reference_options(greedy_opts))
        trajectories = [r[0][0] for r in ref_greedy]
        teacher = teacher_forced(model, be, sources, trajectories, tol, batch_size=batch_size,
                                 start_id=translator.manifest.start_id, blocked=translator.manifest.io.blocked)
        lp_tol = tol.of("log_probs")
        common: dict[str, Any] = dict(max_length=max_length, tie_margin=tol.tie_margin, min_exact=tol.min_exact,
                      score_tol=lp_tol, batch_size=batch_size)
        greedy, greedy_raw = free_running(model, translator, sources, beam_size=1, reference=ref_greedy,
                                          return_attention=attention, **common)
        runs = [("greedy", greedy, greedy_raw)]
        if beam_size > 1:
            beam, beam_raw = free_running(model, translator, sources, beam_size=beam_size,
                                          **common)
            runs.append(("beam", beam, beam_raw))
    finally:
        torch.set_num_threads(threads_before)

    g2p = data.task == "g2p"
    vocab = translator.tgt_vocab
    for _, section, raw in runs:
        section["quality"] = quality([vocab.decode(ids) for ids in raw["pytorch"]],
                                     [vocab.decode(ids) for ids in raw["backend"]], data.references, g2p)

    failures = _failures(teacher, [(name, section) for name, section, _ in runs], tol)
    fp16_real = None
    if precision == "fp16" and be.name.startswith("onnxruntime"):
        fp16_real = fp16_fidelity(bundle_dir, sources, greedy_opts.max_length)
    report = {
        "bundle": str(Path(bundle_dir)), "model": model_info or {},
        "backend": be.name, "precision": precision,
        "inputs": {"description": data.description, "sentences": len(sources), "task": data.task,
                   "references": data.references is not None,
                   "src_lengths": [min(map(len, sources)), max(map(len, sources))]},
        "tolerances": {**tol.to_dict(), "rel_floor": "atol" if REL_FLOOR is None else REL_FLOOR, "quantile": QUANTILE},
        "teacher_forced": teacher,
        "free_running": {name: section for name, section, _ in runs},
        "passed": not failures, "failures": failures,
    }
    if fp16_real is not None:
        report["fp16_real_arithmetic"] = fp16_real
    return VerifyResult(report, _example(translator, sources, greedy, greedy_raw))


FP16_FIDELITY_SENTENCES = 8  # onnx.reference runs ~20-30 ms per float16 step


def fp16_fidelity(bundle_dir: str | os.PathLike[str], sources: list[list[int]], max_length: int
                  ) -> dict[str, Any]:
    """ONNX Runtime on the CPU computes float16 nodes in float32, so the comparison above
    understates FP16 error: re-run the FP16 decoder step with real float16 arithmetic
    (``onnx.reference``) against FP32 on the first sentences (``s2s_export.fp16.fidelity``).
    Reported, not a pass/fail criterion (TensorRT's kernels differ again: verify there with
    ``--backend tensorrt``)."""
    from ..fp16.fidelity import bundle_fidelity

    chosen = sources[:FP16_FIDELITY_SENTENCES]
    report = bundle_fidelity(bundle_dir, chosen, max_len=min(max_length, 50)).to_dict()
    return {"evaluator": "onnx.reference (float16 arithmetic)", **report}


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _failures(teacher: dict[str, Any], runs: list[tuple[str, dict[str, Any]]], tol: Tolerances) -> list[str]:
    """Every gate that failed, one line each (``tolerances`` says which gates a precision has)."""
    out = []
    if tol.gate_raw:
        out += _raw_failures(teacher)
    top1 = teacher.get("top1")
    if tol.min_top1 is not None and top1 and top1["agreement"] < tol.min_top1 - 1e-12:
        out.append(f"teacher-forced top-1 agreement {top1['agreement']:.2%} < {tol.min_top1:.0%} "
                   f"({top1['sentence_steps'] - top1['agreeing']} of {top1['sentence_steps']} sentence-steps "
                   f"choose another token than PyTorch; largest margin {_fmt(top1['max_margin'])} nats)")
    for name, s in runs:
        label = run_label(name, s)
        if s["agreement"] < s["min_exact"] - 1e-12:
            d = next((m for m in s["mismatches"] if not m["near_tie"]), None)
            first_txt = "" if d is None else (
                f" (first: sentence {d['sentence']} step {d['step']}: PyTorch {d['pytorch_token_text']!r} vs "
                f"bundle {d['backend_token_text']!r}, margin {_fmt(d['margin'])})")
            out.append(f"free-running {label}: {s['divergent']} of {s['sentences']} sentences diverge from "
                       f"PyTorch beyond a near tie; identical or near tie {s['agreement']:.1%} < "
                       f"{s['min_exact']:.1%}{first_txt}")
        if tol.gate_raw and not s["scores_ok"]:
            out.append(f"free-running {label}: same tokens but scores differ from PyTorch by up to "
                       f"{_fmt(s['max_score_diff'])}")
        per_token = s.get("max_score_diff_per_token")
        if (not tol.gate_raw and tol.max_score_per_token is not None and per_token is not None
                and per_token > tol.max_score_per_token + 1e-12):
            out.append(f"free-running {label}: same tokens but scores differ from PyTorch by up to "
                       f"{_fmt(per_token)} nats per output token (at most {tol.max_score_per_token:g})")
        drop = metric_drop(s.get("quality", {}))
        if tol.max_metric_drop is not None and drop is not None and drop[1] > tol.max_metric_drop + 1e-9:
            out.append(f"free-running {label}: the bundle's {drop[0]} is {drop[1]:.2f} points worse than "
                       f"PyTorch's (at most {tol.max_metric_drop:g})")
    return out


def metric_drop(quality: dict[str, Any]) -> tuple[str, float] | None:
    """The task metric's worst loss of the bundle against PyTorch, in points (BLEU: PyTorch minus
    the bundle; PER/WER: the bundle minus PyTorch, in percentage points), or None without
    references."""
    diff = quality.get("difference")
    if not diff:
        return None
    if quality.get("metric") == "bleu":
        return "BLEU", -float(diff["bleu"])
    return max((("PER", 100.0 * float(diff["per"])), ("WER", 100.0 * float(diff["wer"]))), key=lambda x: x[1])


def _raw_failures(teacher: dict[str, Any]) -> list[str]:
    out = []
    for key, r in teacher["outputs"].items():
        if r["ok"]:
            continue
        out.append(f"teacher-forced check failed for {key}: max abs error {_fmt(r['max_abs'])} (atol "
                   f"{r['atol']:g}), max rel error {_fmt(r['max_rel'])} (rtol {r['rtol']:g}), first at "
                   f"{step_label(r['first_failing_step'])}"
                   + (f" ({r['detail']})" if "detail" in r else ""))
    first = teacher.get("first_failure")
    if first is not None:
        out.insert(0, f"first failure: {first['output']} at {step_label(first['step'])}, sentence {first['sentence']}")
    return out


def _example(translator: Any, sources: list[list[int]], greedy: dict[str, Any], raw: dict[str, Any]
             ) -> dict[str, Any]:
    """The example the HTML report draws: the first real greedy divergence, else the first
    near tie, else sentence 0."""
    from .freerun import first_mismatch

    pick = first_mismatch(greedy["mismatches"])
    i = pick["sentence"] if pick else 0
    src = translator.src_vocab.decode(sources[i], strip=False)
    tgt = translator.tgt_vocab.tokens

    def labels(ids: list[int]) -> list[str]:
        return [tgt[t] if 0 <= t < len(tgt) else "?" for t in ids]

    return {"sentence": i, "diverges": pick is not None, "near_tie": bool(pick and pick["near_tie"]),
            "step": pick["step"] if pick else None, "source": src,
            "pytorch": labels(raw["pytorch"][i]), "backend": labels(raw["backend"][i]),
            "pytorch_attention": raw["pytorch_attention"][i] if "pytorch_attention" in raw else None,
            "backend_attention": raw["backend_attention"][i] if "backend_attention" in raw else None}


__all__ = ["VerifyResult", "check_model", "verify_bundle"]
