"""Teacher-forced per-step parity: the bundle's decoder (through the runtime ``Backend``
protocol, so every backend is checked the same way) against PyTorch's, both fed PyTorch's
greedy trajectory.

Per batch of sentences (input order, padded to the batch's longest source):

* ``backend.encode`` and ``model.encode``; the initial state is compared (``encoder/<state>``);
* step t feeds BOS (t = 0) or the trajectory's token t-1 to both. Each side keeps its own
  state chain (the backend's state never leaves it), so errors that accumulate over steps
  count. A sentence leaves the batch after its last trajectory token, as in the search
  (``backend.keep`` + ``reorder``), which exercises the backend's row bookkeeping too;
* every step output is compared: ``next_<state>`` (host copies from ``backend.state()``, the
  optional ``StateAccess`` method; skipped with a note when the backend lacks it), ``attn``,
  ``log_probs``, ``topk_log_probs`` and ``topk_ids`` (tie-robust: PyTorch's log-probs at the
  bundle's ids against PyTorch's top-K log-probs, since equal log-probs may come in any order).

Figures (``compare``): per step and per output max abs, max rel, p99 abs, ok; per output over
all steps; the first failure: the earliest step with an output out of tolerance, the output
(in the order the step computes them: states, attention, log-probs, top-K) and the first
sentence where it fails.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import BundleError
from ..graphio import next_name
from ..runtime.backends.base import Backend, StateAccess
from ..runtime.translator import pad_sources as pad  # the runtime's batching, exactly
from ..vocab import BOS_ID
from .compare import REL_FLOOR, Accumulator, failing_rows
from .tolerances import Tolerances

STEP_OUTPUTS = ("attn", "log_probs", "topk_log_probs", "topk_ids")


class _Output:
    """One output's figures per step (-1: the encoder) and the first failing sentence per step."""

    def __init__(self) -> None:
        self.steps: dict[int, Accumulator] = {}
        self.first_sentence: dict[int, int] = {}  # step -> first failing sentence

    def update(self, step: int, got: np.ndarray, ref: np.ndarray, atol: float, rtol: float,
               sentences: np.ndarray, rel_floor: float | None) -> None:
        result = self.steps.setdefault(step, Accumulator()).update(got, ref, atol, rtol, rel_floor)
        if not result["ok"]:
            bad = failing_rows(got, ref, atol, rtol)
            first = int(sentences[bad].min()) if bad.size else int(sentences.min())
            self.first_sentence[step] = min(first, self.first_sentence.get(step, first))

    def figures(self) -> dict[str, Any]:
        """Over all steps, with the first failing step (None when it never fails)."""
        total = Accumulator()
        for acc in self.steps.values():
            total.add(acc.figures(), acc.hist)
        out = total.figures()
        failing = sorted(self.first_sentence)
        out["first_failing_step"] = ("encoder" if failing[0] < 0 else failing[0]) if failing else None
        return out


def teacher_forced(model: Any, backend: Backend, sources: Sequence[Sequence[int]],
                   trajectories: Sequence[Sequence[int]], tol: Tolerances, batch_size: int = 32,
                   rel_floor: float | None = REL_FLOOR, start_id: int = BOS_ID,
                   blocked: Sequence[int] = ()) -> dict[str, Any]:
    """Teacher-forced parity of ``backend`` against ``model`` (CPU, float32, eval mode) on
    ``sources`` (id lists ending with EOS) fed ``trajectories`` (PyTorch's greedy outputs, one
    non-empty id list per source), the first step fed ``start_id`` (the bundle's start token);
    PyTorch's top-K leaves out the ``blocked`` ids, as the bundle's step graph does.
    Returns the JSON-able report section (module docstring)."""
    import torch

    if len(sources) != len(trajectories) or any(len(t) == 0 for t in trajectories):
        raise ValueError("need one non-empty trajectory per source")
    has_state = isinstance(backend, StateAccess)
    batch = max(1, min(int(batch_size), backend.max_rows or int(batch_size)))
    outputs: dict[str, _Output] = {}  # "encoder/<s>" and "decoder_step/<o>"
    rows_per_step: dict[int, int] = {}
    top1 = _Top1(tol.tie_margin)
    state_names: list[str] = []
    K = int(backend.topk)

    def check(key: str, step: int, got: np.ndarray, ref: np.ndarray, sentences: np.ndarray,
              is_state: bool) -> None:
        atol, rtol = tol.of(key.split("/", 1)[1], is_state)
        outputs.setdefault(key, _Output()).update(step, got, ref, atol, rtol, sentences, rel_floor)

    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(sources), batch):
            chunk = list(range(start, min(len(sources), start + batch)))
            src, lengths = pad([sources[i] for i in chunk])
            backend.encode(src, lengths)
            with torch.no_grad():
                static, state = model.encode(torch.from_numpy(src), torch.from_numpy(lengths))
            state_names = list(state)
            rows = np.array(chunk)  # sentence of each row
            if has_state:
                got_state = backend.state()  # type: ignore[attr-defined]
                if list(got_state) != state_names:
                    raise BundleError(f"the bundle's state tensors {list(got_state)} are not the model's "
                                      f"{state_names}", "pass the model the bundle was exported from")
                for name in state_names:
                    check(f"encoder/{name}", -1, got_state[name], state[name].numpy(), rows, True)
            tokens = np.full(len(chunk), start_id, dtype=np.int64)
            reorder = np.arange(len(chunk), dtype=np.int64)
            ends = np.array([len(trajectories[i]) for i in chunk])
            for t in range(int(ends.max())):
                res = backend.step(tokens, reorder, full=True, attn=True)
                with torch.no_grad():
                    gathered = {k: v.index_select(0, torch.from_numpy(reorder)) for k, v in state.items()}
                    lp, state, attn = model.decode_step(torch.from_numpy(tokens), static, gathered)
                    ranked = lp.clone()
                    ranked[:, list(blocked)] = float("-inf")
                    top_lp = torch.topk(ranked, min(K, lp.shape[1]), dim=-1).values.numpy()
                lp_np = lp.numpy()
                rows_per_step[t] = rows_per_step.get(t, 0) + len(rows)
                if has_state:
                    got_state = backend.state()  # type: ignore[attr-defined]
                    for name in state_names:
                        check(f"decoder_step/{next_name(name)}", t, got_state[name], state[name].numpy(), rows, True)
                assert res.log_probs is not None and res.attn is not None
                at_ids = np.take_along_axis(lp_np, np.clip(res.topk_ids.astype(np.int64), 0, lp_np.shape[1] - 1), 1)
                top1.update(lp_np, at_ids[:, 0])
                for name, got, ref in (("attn", res.attn, attn.numpy()), ("log_probs", res.log_probs, lp_np),
                                       ("topk_log_probs", res.topk_log_probs, top_lp),
                                       ("topk_ids", at_ids, top_lp)):
                    check(f"decoder_step/{name}", t, got, ref, rows, False)
                live = np.flatnonzero(ends > t + 1)
                if live.size == 0:
                    break
                tokens = np.array([trajectories[int(rows[i])][t] for i in live], dtype=np.int64)
                if live.size < len(rows):  # finished sentences leave the batch
                    backend.keep(live)
                    index = torch.from_numpy(live)
                    static = {k: v.index_select(0, index) for k, v in static.items()}
                    rows, ends = rows[live], ends[live]
                reorder = live.astype(np.int64)
    finally:
        model.train(was_training)
    section = _section(outputs, rows_per_step, state_names, has_state, tol, len(sources))
    section["top1"] = top1.figures()
    return section


class _Top1:
    """Teacher-forced top-1 agreement: a sentence-step agrees when PyTorch's log-prob of the
    bundle's best token equals PyTorch's best (an exact tie in PyTorch counts as agreement);
    otherwise the margin (PyTorch's best minus its log-prob of the bundle's token, nats) is
    recorded, and a margin of at most ``tie_margin`` counts as a near tie."""

    def __init__(self, tie_margin: float) -> None:
        self.tie_margin, self.rows, self.agree, self.near = tie_margin, 0, 0, 0
        self.max_margin = 0.0

    def update(self, lp: np.ndarray, at_top1: np.ndarray) -> None:
        """lp [R,V] PyTorch's log-probs; at_top1 [R] PyTorch's log-prob of the bundle's best token."""
        margin = lp.max(axis=1) - at_top1  # [R] >= 0
        self.rows += len(margin)
        self.agree += int((margin <= 0).sum())
        self.near += int(((margin > 0) & (margin <= self.tie_margin)).sum())
        self.max_margin = max(self.max_margin, float(margin.max(initial=0.0)))

    def figures(self) -> dict[str, Any]:
        return {"sentence_steps": self.rows, "agreeing": self.agree,
                "agreement": self.agree / self.rows if self.rows else 1.0,
                "near_ties": self.near, "max_margin": self.max_margin}


def output_order(state_names: Sequence[str]) -> list[str]:
    """The report's output order: the initial state, then the step outputs in the order the
    step computes them (a failure's root cause comes first)."""
    return ([f"encoder/{s}" for s in state_names] + [f"decoder_step/{next_name(s)}" for s in state_names]
            + [f"decoder_step/{o}" for o in STEP_OUTPUTS])


def _section(outputs: dict[str, _Output], rows_per_step: dict[int, int], state_names: list[str],
             has_state: bool, tol: Tolerances, n: int) -> dict[str, Any]:
    order = [k for k in output_order(state_names) if k in outputs]
    table: dict[str, Any] = {}
    for key in order:
        atol, rtol = tol.of(key.split("/", 1)[1], key.split("/", 1)[1] not in STEP_OUTPUTS)
        table[key] = {**outputs[key].figures(), "atol": atol, "rtol": rtol}
    per_step = []
    for t in sorted(rows_per_step):
        per_step.append({"step": t, "rows": rows_per_step[t], "outputs": {
            k.split("/", 1)[1]: outputs[k].steps[t].figures() for k in order
            if k.startswith("decoder_step/") and t in outputs[k].steps}})
    first = None
    for step in [-1, *sorted(rows_per_step)]:
        failing = [k for k in order if step in outputs[k].first_sentence]
        if failing:
            key = failing[0]
            figs = outputs[key].steps[step].figures()
            first = {"step": "encoder" if step < 0 else step, "output": key,
                     "sentence": outputs[key].first_sentence[step], "max_abs": figs["max_abs"],
                     "max_rel": figs["max_rel"], "atol": table[key]["atol"], "rtol": table[key]["rtol"],
                     "also_failing": failing[1:]}
            break
    return {"sentences": n, "steps": len(rows_per_step), "row_steps": int(sum(rows_per_step.values())),
            "state_checked": has_state,
            "note": None if has_state else "the backend has no state() method: state tensors not compared",
            "outputs": table, "per_step": per_step, "first_failure": first,
            "passed": all(v["ok"] for v in table.values())}


__all__ = ["STEP_OUTPUTS", "output_order", "pad", "teacher_forced"]
