"""Tolerances of ``s2s verify``, per output, with defaults per precision (torch-free).

Outputs are named as in the step graph: ``log_probs``, ``topk_log_probs``, ``topk_ids`` (checked
tie-robustly: PyTorch's log-probs at the bundle's ids against PyTorch's top-K log-probs),
``attn`` and ``next_<state>`` for every state tensor; the encoder's initial state is checked
under the state's own name (``h``, ``c``...). A tolerance is ``(atol, rtol)``: an element
passes iff |bundle - pytorch| <= atol + rtol * |pytorch|.

What gates (decides exit 3) depends on the precision (``DEFAULTS``), so that no verdict depends
on the CPU that runs it:

* ``fp32``: the raw errors gate. atol 1e-4, rtol 1e-3 on every output (as the exporter's check;
  measured float32 errors are 1e-7..5e-5 on Intel and AMD alike), and every free-running output
  identical to PyTorch's or a near tie within 1e-3 nats.
* ``fp16`` and ``int8``: the raw errors are by design (and int8 kernels round differently on CPUs
  with and without VNNI: an AMD EPYC without VNNI showed ``next_c`` errors of 1.4 where an Intel
  Xeon showed 0.25), so they are reported, with the tolerances below as reference lines, but do
  not gate. What gates is what matters for a quantized graph:

  - teacher-forced top-1 agreement (``min_top1``): the share of sentence-steps where the bundle's
    best token is PyTorch's best (or ties it exactly in PyTorch): fp16 >= 99%, int8 >= 97%;
  - every free-running divergence a near tie (``min_exact`` 1.0): PyTorch's log-prob margin
    between its token and the bundle's (greedy), or between its best hypothesis and the bundle's
    (beam), at most ``tie_margin`` nats: fp16 0.1, int8 1.0 (about twice the largest int8
    log-prob error measured on trained models, 0.65 nats on an Intel Xeon);
  - the task metric (``max_metric_drop``, when the inputs have references): the bundle's BLEU
    at most 1 point below PyTorch's, its PER and WER at most 1 point above;
  - the scores users read (``max_score_per_token``): where an output is identical, its score
    within 0.1 (fp16) / 0.25 (int8) nats per output token of PyTorch's (healthy INT8 G2P: at
    most 0.06 nats for a whole word; a graph whose log-probs are scaled or shifted keeps every
    decision and fails here).

  Passing ``atol``/``rtol``/per-output tolerances makes the raw errors gate again (the user asked
  for them). Reference lines: fp16 states and attention atol 0.05, log-probs 0.1, rtol
  0.01/0.02; int8 states and attention atol 0.5, log-probs 1.0, rtol 0.1.

``topk_ids`` (compared through PyTorch's log-probs at the chosen ids) gets twice the log-probs
``atol``: two tail tokens each off by the log-prob error swap places at twice that gap.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import UsageError

PRECISIONS = ("fp32", "fp16", "int8")
STATE = "state"  # key of the default tolerance of every state tensor (next_<state> and initial)
DEFAULT = "*"  # key of the tolerance of any other output


@dataclass(frozen=True)
class Tolerances:
    """Per-output ``(atol, rtol)``, the exact-match threshold and the near-tie margin."""

    precision: str
    outputs: dict[str, tuple[float, float]] = field(default_factory=dict)
    min_exact: float = 1.0
    tie_margin: float = 1e-3
    overridden: tuple[str, ...] = ()  # what the user changed (for the report)
    gate_raw: bool = True  # the per-output errors decide the verdict (fp32; any user override)
    min_top1: float | None = None  # least teacher-forced top-1 agreement (fp16/int8)
    max_metric_drop: float | None = None  # most BLEU/PER/WER points the bundle may lose (fp16/int8)
    max_score_per_token: float | None = None  # most |score difference| / length on identical outputs (fp16/int8)

    def of(self, output: str, is_state: bool = False) -> tuple[float, float]:
        """``(atol, rtol)`` of an output (``next_h`` and the initial ``h`` fall back to
        ``state`` when not named)."""
        if output in self.outputs:
            return self.outputs[output]
        if is_state:
            base = output[5:] if output.startswith("next_") else output
            if base in self.outputs:
                return self.outputs[base]
            if f"next_{base}" in self.outputs:
                return self.outputs[f"next_{base}"]
            if STATE in self.outputs:
                return self.outputs[STATE]
        return self.outputs[DEFAULT]

    def with_overrides(self, atol: float | None = None, rtol: float | None = None,
                       per_output: dict[str, tuple[float | None, float | None]] | None = None,
                       min_exact: float | None = None, tie_margin: float | None = None) -> "Tolerances":
        """A copy with ``atol``/``rtol`` applied to every output, then ``per_output`` ones."""
        outputs = dict(self.outputs)
        changed = list(self.overridden)
        for name, value, index in (("atol", atol, 0), ("rtol", rtol, 1)):
            if value is None:
                continue
            _check(name, value)
            outputs = {k: _set(v, index, value) for k, v in outputs.items()}
            changed.append(f"{name} {value:g} (all outputs)")
        for out, (a, r) in (per_output or {}).items():
            cur = outputs.get(out, outputs[DEFAULT])
            for name, value, index in (("atol", a, 0), ("rtol", r, 1)):
                if value is not None:
                    _check(name, value)
                    cur = _set(cur, index, value)
            outputs[out] = cur
            changed.append(f"{out} atol {cur[0]:g} rtol {cur[1]:g}")
        if min_exact is not None:
            if not 0.0 <= min_exact <= 1.0:
                raise UsageError(f"min_exact must be within 0..1 (got {min_exact})", "pass e.g. --min-exact 0.95")
            changed.append(f"min_exact {min_exact:g}")
        if tie_margin is not None:
            _check("tie_margin", tie_margin)
            changed.append(f"tie_margin {tie_margin:g}")
        raw = any(v is not None for v in (atol, rtol)) or bool(per_output)
        return replace(self, outputs=outputs, overridden=tuple(changed), gate_raw=self.gate_raw or raw,
                       min_exact=self.min_exact if min_exact is None else float(min_exact),
                       tie_margin=self.tie_margin if tie_margin is None else float(tie_margin))

    def to_dict(self) -> dict[str, Any]:
        return {"precision_defaults": self.precision,
                "outputs": {k: {"atol": a, "rtol": r} for k, (a, r) in self.outputs.items()},
                "min_exact": self.min_exact, "tie_margin": self.tie_margin,
                "overridden": list(self.overridden), "gate_raw": self.gate_raw, "min_top1": self.min_top1,
                "max_metric_drop": self.max_metric_drop, "max_score_per_token": self.max_score_per_token}


def _set(pair: tuple[float, float], index: int, value: float) -> tuple[float, float]:
    return (float(value), pair[1]) if index == 0 else (pair[0], float(value))


def _check(name: str, value: float) -> None:
    if not value >= 0.0 or value == float("inf"):
        raise UsageError(f"{name} must be a finite number >= 0 (got {value})", f"pass a valid --{name.replace('_', '-')}")


_LP = ("log_probs", "topk_log_probs")
DEFAULTS: dict[str, Tolerances] = {
    "fp32": Tolerances("fp32", {DEFAULT: (1e-4, 1e-3)}, min_exact=1.0, tie_margin=1e-3),
    "fp16": Tolerances("fp16", {DEFAULT: (5e-2, 1e-2), **{k: (0.1, 2e-2) for k in _LP}, "topk_ids": (0.2, 2e-2)},
                       min_exact=1.0, tie_margin=0.1, gate_raw=False, min_top1=0.99, max_metric_drop=1.0,
                       max_score_per_token=0.1),
    "int8": Tolerances("int8", {DEFAULT: (0.5, 0.1), **{k: (1.0, 0.1) for k in _LP}, "topk_ids": (2.0, 0.1)},
                       min_exact=1.0, tie_margin=1.0, gate_raw=False, min_top1=0.97, max_metric_drop=1.0,
                       max_score_per_token=0.25),
}


def defaults(precision: str) -> Tolerances:
    """The default tolerances of ``precision`` (``fp32``, ``fp16`` or ``int8``)."""
    if precision not in DEFAULTS:
        raise UsageError(f"unknown precision {precision!r}", f"use one of: {', '.join(PRECISIONS)}")
    return DEFAULTS[precision]


def parse_tol(specs: list[str]) -> dict[str, tuple[float | None, float | None]]:
    """``["log_probs=1e-3", "attn=1e-4,1e-2", "state=,1e-3"]`` -> {output: (atol, rtol)}."""
    out: dict[str, tuple[float | None, float | None]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        parts = values.split(",")
        try:
            if not sep or not name or len(parts) > 2:
                raise ValueError
            atol = float(parts[0]) if parts[0].strip() else None
            rtol = float(parts[1]) if len(parts) == 2 and parts[1].strip() else None
        except ValueError:
            raise UsageError(f"bad tolerance {spec!r}",
                             "write OUTPUT=ATOL[,RTOL], e.g. --tol log_probs=1e-3 or --tol attn=,1e-2") from None
        out[name.strip()] = (atol, rtol)
    return out


__all__ = ["DEFAULT", "DEFAULTS", "PRECISIONS", "STATE", "Tolerances", "defaults", "parse_tol"]
