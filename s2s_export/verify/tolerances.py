"""Tolerances of ``s2s verify``, per output, with defaults per precision (torch-free).

Outputs are named as in the step graph: ``log_probs``, ``topk_log_probs``, ``topk_ids`` (checked
tie-robustly: PyTorch's log-probs at the bundle's ids against PyTorch's top-K log-probs),
``attn`` and ``next_<state>`` for every state tensor; the encoder's initial state is checked
under the state's own name (``h``, ``c``...). A tolerance is ``(atol, rtol)``: an element
passes iff |bundle - pytorch| <= atol + rtol * |pytorch|.

Defaults (``DEFAULTS``): float32 is tight (atol 1e-4, rtol 1e-3 everywhere, as the exporter's
check: measured float32 errors are 1e-7..5e-5). The lower precisions are looser because their
error is by design; each side runs its own state chain, so a step's error includes the drift
of the state. Their defaults are about twice the largest errors measured on trained models
(the tiny test models and examples/g2p.pt, 100-200 sentences, ONNX Runtime CPU):

* ``fp16``: states and attention atol 0.05, log-probs atol 0.1, rtol 0.01/0.02 (measured on
  ONNX Runtime CPU, which computes float16 nodes in float32, so only the rounding of weights
  and of float16 tensors shows: log-probs <= 0.02, states <= 0.01; TensorRT's real float16
  arithmetic is expected to be a few times worse);
* ``int8`` (dynamic quantization): states and attention atol 0.5, log-probs atol 1.0, rtol 0.1
  (measured: states <= 0.25, attention <= 0.07, log-probs <= 0.65).

``topk_ids`` (compared through PyTorch's log-probs at the chosen ids) gets twice the log-probs
``atol``: two tail tokens each off by the log-prob error swap places at twice that gap.

``min_exact``: the least fraction of sentences whose free-running output is token-identical to
PyTorch's or differs from it at a near tie (float32 1.0: every real divergence fails; fp16
0.95; int8 0.9). ``tie_margin``: a divergence is a near tie when PyTorch's log-prob margin
between its token and the bundle's (greedy), or between its best hypothesis and the bundle's
(beam), is at most this (nats: float32 1e-3, fp16 0.1, int8 0.5, about the log-prob error of
the precision).
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
        return replace(self, outputs=outputs, overridden=tuple(changed),
                       min_exact=self.min_exact if min_exact is None else float(min_exact),
                       tie_margin=self.tie_margin if tie_margin is None else float(tie_margin))

    def to_dict(self) -> dict[str, Any]:
        return {"precision_defaults": self.precision,
                "outputs": {k: {"atol": a, "rtol": r} for k, (a, r) in self.outputs.items()},
                "min_exact": self.min_exact, "tie_margin": self.tie_margin,
                "overridden": list(self.overridden)}


def _set(pair: tuple[float, float], index: int, value: float) -> tuple[float, float]:
    return (float(value), pair[1]) if index == 0 else (pair[0], float(value))


def _check(name: str, value: float) -> None:
    if not value >= 0.0 or value == float("inf"):
        raise UsageError(f"{name} must be a finite number >= 0 (got {value})", f"pass a valid --{name.replace('_', '-')}")


_LP = ("log_probs", "topk_log_probs")
DEFAULTS: dict[str, Tolerances] = {
    "fp32": Tolerances("fp32", {DEFAULT: (1e-4, 1e-3)}, min_exact=1.0, tie_margin=1e-3),
    "fp16": Tolerances("fp16", {DEFAULT: (5e-2, 1e-2), **{k: (0.1, 2e-2) for k in _LP}, "topk_ids": (0.2, 2e-2)},
                       min_exact=0.95, tie_margin=0.1),
    "int8": Tolerances("int8", {DEFAULT: (0.5, 0.1), **{k: (1.0, 0.1) for k in _LP}, "topk_ids": (2.0, 0.1)},
                       min_exact=0.9, tie_margin=0.5),
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
