"""Parity of the exported graphs: ONNX Runtime (CPU, float32) against PyTorch, at the end of
every export. It is the short form of ``s2s verify`` (``s2s_export.verify``): the same
comparison math (``verify.compare``), the same float32 tolerances (``verify.tolerances``) and
the same free-running comparison (``verify.freerun``), on a small fixed input set, with the
figures stored in ``manifest["parity"]``.

On a fixed, seeded set of mixed-length sources (lengths 1..12, capped by ``max_src_len``):

* every encoder output;
* every decoder-step output over several teacher-forced steps (step 0 feeds BOS with the
  identity reorder, later steps feed fixed random tokens with a non-identity ``reorder`` that
  repeats a row, as beam search does). Each side runs its own chain of states, so errors that
  accumulate over steps count;
* the greedy decode of the sources: the runtime (``s2s_export.runtime.Translator``) against the
  torch reference search (``s2s_export.verify.reference.reference_search``): token-identical,
  except at a near tie (PyTorch's log-prob margin between the two tokens <= 1e-3 nats, which is
  reported, not failed).

Per output: ``max_abs`` = max |ort - torch|; ``max_rel`` = max |ort - torch| / |torch| over the
elements with |torch| > atol (relative error is meaningless near zero); pass iff every element
satisfies |ort - torch| <= atol + rtol * |torch| (``numpy.allclose``). Boolean and integer
outputs must be equal. ``topk_ids`` is checked tie-robustly: the torch log-probs at the ids ORT
chose must equal torch's top-K log-probs within tolerance (two equal log-probs may come out in
either order).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ParityError, Problem, one_line
from ..graphio import BundleIO
from ..verify import compare as _cmp
from ..verify.tolerances import DEFAULT, DEFAULTS
from ..conventions import Conventions
from ..vocab import content_ids
from .spec import make_sources

ATOL, RTOL = DEFAULTS["fp32"].outputs[DEFAULT]
TIE_MARGIN = DEFAULTS["fp32"].tie_margin
STEPS = 4
LENGTHS = (1, 4, 12, 7, 12, 2)
BACKEND = "onnxruntime CPUExecutionProvider"


def parity_lengths(max_batch: int, max_src_len: int) -> list[int]:
    """The source lengths (EOS included) of the fixed parity set."""
    return [min(n, max_src_len) for n in LENGTHS[: max(1, min(len(LENGTHS), max_batch))]]


def compare(got: np.ndarray, ref: np.ndarray, atol: float = ATOL, rtol: float = RTOL) -> dict[str, Any]:
    """Max abs/rel error of ``got`` against ``ref`` and whether they match within tolerance
    (``s2s_export.verify.compare.compare`` without the quantile)."""
    result = _cmp.compare(got, ref, atol, rtol, rel_floor=atol)
    result.pop("p99_abs")
    return result


def _merge(into: dict[str, dict[str, Any]], name: str, result: dict[str, Any]) -> None:
    old = into.get(name)
    if old is None:
        into[name] = result
        return
    old["max_abs"] = max(old["max_abs"], result["max_abs"])
    old["max_rel"] = max(old["max_rel"], result["max_rel"])
    old["ok"] = old["ok"] and result["ok"]


def _session(path: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # torch runs in the same process: two spinning pools on 2 cores collapse
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _run(sess: Any, graph: str, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """``sess.run``; a failure (typically a size frozen into the graph at export) -> ParityError."""
    try:
        return list(sess.run(names, feeds))
    except Exception as exc:  # onnxruntime raises its own exception types
        size = (f"batch {feeds['src'].shape[0]}, src_len {feeds['src'].shape[1]}" if "src" in feeds
                else f"batch {feeds['tokens'].shape[0]}")
        raise ParityError(
            f"parity failed: the {graph} graph does not run at {size} ({one_line(exc)})",
            "the model must not turn tensor sizes into Python numbers (int(x.shape[i]), .item(), "
            "loops over a size): the traced graph then only works at the export example's size") from None


def _reorders(batch: int) -> list[np.ndarray]:
    """Step 0: identity; later: a fixed permutation with one row repeated."""
    rng = np.random.default_rng(1)
    out = [np.arange(batch, dtype=np.int64)]
    for _ in range(1, STEPS):
        r = rng.permutation(batch).astype(np.int64)
        if batch > 1:
            r[-1] = r[0]
        out.append(r)
    return out


def check_outputs(bundle_dir: Path, encoder: nn.Module, step: nn.Module, io: BundleIO, *,
                  src_vocab_size: int, conv: Conventions, lengths: Sequence[int], atol: float = ATOL,
                  rtol: float = RTOL, graphs: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Teacher-forced per-output parity. ``encoder``/``step`` are the exported torch wrappers
    (``EncoderGraph``/``StepGraph``); sources framed and the first step fed the start token as
    ``conv`` says; returns ``{"<graph>/<output>": {max_abs, max_rel, ok}}``."""
    graphs = graphs or {"encoder": "encoder.onnx", "decoder_step": "decoder_step.onnx"}
    enc_sess = _session(bundle_dir / graphs["encoder"])
    step_sess = _session(bundle_dir / graphs["decoder_step"])
    src, src_lengths = make_sources(lengths, max(lengths), src_vocab_size, conv, seed=7)
    results: dict[str, dict[str, Any]] = {}

    with torch.no_grad():
        ref = [t.numpy() for t in encoder(src, src_lengths)]
    got = _run(enc_sess, "encoder", io.encoder.output_names,
               {"src": src.numpy(), "src_lengths": src_lengths.numpy()})
    for name, g, r in zip(io.encoder.output_names, got, ref):
        _merge(results, f"encoder/{name}", compare(g, r, atol, rtol))

    n_static = len(io.static)
    static_ort, state_ort = got[:n_static], got[n_static:]
    static_pt, state_pt = ref[:n_static], ref[n_static:]
    batch = len(lengths)
    tgt_vocab = io.step.output("log_probs").shape[1]
    assert isinstance(tgt_vocab, int)
    ordinary = np.array(content_ids(tgt_vocab, conv.tgt), dtype=np.int64)
    rng = np.random.default_rng(2)
    out_names = io.step.output_names
    lp_index = out_names.index("log_probs")
    for t, reorder in enumerate(_reorders(batch)):
        tokens = (np.full(batch, conv.start_id, dtype=np.int64) if t == 0
                  else ordinary[rng.integers(0, len(ordinary), batch)])
        feeds = dict(zip(io.step.input_names, [tokens, reorder, *static_ort, *state_ort]))
        got = _run(step_sess, "decoder_step", out_names, feeds)
        with torch.no_grad():
            ref_t = step(torch.from_numpy(tokens), torch.from_numpy(reorder),
                         *(torch.from_numpy(a) for a in (*static_pt, *state_pt)))
        ref = [x.numpy() for x in ref_t]
        for name, g, r in zip(out_names, got, ref):
            if name == "topk_ids":  # tie-robust: torch's log-probs at ORT's ids
                at_ids = np.take_along_axis(ref[lp_index], g.astype(np.int64), axis=1)
                _merge(results, f"decoder_step/{name}", compare(at_ids, ref[0], atol, rtol))
            else:
                _merge(results, f"decoder_step/{name}", compare(g, r, atol, rtol))
        n_state = len(io.state)
        state_ort = got[3: 3 + n_state]
        state_pt = ref[3: 3 + n_state]
    return results


def greedy_sources(lengths: Sequence[int], src_vocab_size: int, conv: Conventions) -> list[list[int]]:
    """The parity set as id lists (framed, no padding)."""
    src, src_lengths = make_sources(lengths, max(lengths), src_vocab_size, conv, seed=7)
    return [row[:n].tolist() for row, n in zip(src, src_lengths.tolist())]


def check_greedy(bundle_dir: Path, model: nn.Module, src_ids: list[list[int]], max_length: int,
                 atol: float = ATOL, rtol: float = RTOL) -> dict[str, Any]:
    """Greedy decode with the runtime (ONNX Runtime) and with the torch reference search
    (``verify.freerun.free_running``): the ids must be identical except at near ties, and each
    score (a sum of ``len`` log-probs) within ``atol * len + rtol * |score|`` of the reference."""
    from ..runtime import Translator
    from ..verify.freerun import first_mismatch, free_running

    translator = Translator.load(bundle_dir, backend="onnxruntime", verify_hashes=False, intra_op_threads=1)
    run, _ = free_running(model, translator, src_ids, beam_size=1, max_length=max_length,
                          tie_margin=TIE_MARGIN, min_exact=1.0, score_tol=(atol, rtol))
    first = first_mismatch(run["mismatches"])
    return {"sentences": run["sentences"], "identical": run["exact"], "near_ties": run["near_ties"],
            "max_length": max_length, "max_score_diff": run["max_score_diff"],
            "first_difference": None if first is None else {
                "sentence": first["sentence"], "position": first["step"], "pytorch_token": first["pytorch_token"],
                "ort_token": first["backend_token"], "margin": first["margin"], "near_tie": first["near_tie"]},
            "ok": run["passed"]}


def summarize(outputs: dict[str, dict[str, Any]], greedy: dict[str, Any] | None, lengths: Sequence[int],
              atol: float = ATOL, rtol: float = RTOL) -> dict[str, Any]:
    """The manifest's ``parity`` entry."""
    passed = all(r["ok"] for r in outputs.values()) and (greedy is None or greedy["ok"])
    return {
        "backend": BACKEND, "atol": atol, "rtol": rtol,
        "inputs": {"batch": len(lengths), "src_lengths": list(lengths), "steps": STEPS},
        "max_abs": max((r["max_abs"] for r in outputs.values()), default=0.0),
        "max_rel": max((r["max_rel"] for r in outputs.values()), default=0.0),
        "outputs": outputs, "greedy": greedy, "passed": passed,
    }


def check_parity(bundle_dir: Path, model: nn.Module, io: BundleIO, src_vocab_size: int, *,
                 conv: Conventions | None = None, max_batch: int = 64, max_src_len: int = 256,
                 greedy: bool = True, atol: float = ATOL, rtol: float = RTOL) -> dict[str, Any]:
    """The full parity report of the fp32 graphs in ``bundle_dir`` against ``model`` (eval
    mode, CPU, float32); ``conv``: the ids and framing (default: the bundle's manifest). Does not
    raise on failure: see ``raise_on_failure``."""
    from ..bundle import load_manifest
    from .wrap import EncoderGraph, StepGraph

    conv = conv or load_manifest(bundle_dir, verify=False).conventions
    lengths = parity_lengths(max_batch, max_src_len)
    static, state = [t.name for t in io.static], [t.name for t in io.state]
    vocab = io.step.output("log_probs").shape[1]
    outputs = check_outputs(Path(bundle_dir), EncoderGraph(model, static, state),
                            StepGraph(model, static, state, io.topk, io.blocked, int(vocab)), io,
                            src_vocab_size=src_vocab_size, conv=conv, lengths=lengths, atol=atol, rtol=rtol)
    greedy_report = None
    if greedy:
        greedy_report = check_greedy(Path(bundle_dir), model, greedy_sources(lengths, src_vocab_size, conv),
                                     max_length=2 * max(lengths) + 8)
    return summarize(outputs, greedy_report, lengths, atol, rtol)


def raise_on_failure(report: dict[str, Any]) -> None:
    """``ParityError`` naming every failing output with its figures."""
    if report["passed"]:
        return
    atol, rtol = report["atol"], report["rtol"]
    fix = ("report the model config; meanwhile --no-verify writes the bundle without this check "
           "(compare with `s2s verify`)")
    problems = [Problem(f"parity failed for {name}: max abs error {r['max_abs']:.3g} (atol {atol:g}), "
                        f"max rel error {r['max_rel']:.3g} (rtol {rtol:g})"
                        + (f", {r['detail']}" if "detail" in r else ""), fix)
                for name, r in report["outputs"].items() if not r["ok"]]
    greedy = report.get("greedy")
    if greedy and not greedy["ok"]:
        d = greedy["first_difference"]
        if d is not None and greedy["identical"] + greedy.get("near_ties", 0) < greedy["sentences"]:
            margin = f", PyTorch margin {d['margin']:.3g}" if "margin" in d else ""
            n_diff = greedy["sentences"] - greedy["identical"] - greedy.get("near_ties", 0)
            problems.append(Problem(
                f"parity failed for the greedy decode: {n_diff} of {greedy['sentences']} sentences differ "
                f"from PyTorch beyond a near tie (first: sentence {d['sentence']}, token {d['position']}{margin})",
                fix))
        else:
            problems.append(Problem(f"parity failed for the greedy decode: the token-identical outputs' scores "
                                    f"differ from PyTorch by up to {greedy['max_score_diff']:.3g}", fix))
    raise ParityError(problems)


__all__ = ["ATOL", "RTOL", "check_parity", "check_outputs", "check_greedy", "compare", "greedy_sources",
           "parity_lengths", "raise_on_failure", "summarize"]
