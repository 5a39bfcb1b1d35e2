"""The output formats of ``s2s translate``, shared by the CLI and the Ray pipeline
(``distributed``) so that both write the same file (torch-free).

| ``mode`` | one input's lines |
|---|---|
| ``text`` | ``TEXT``: the best hypothesis |
| ``scores`` | ``TEXT<TAB>SCORE`` per hypothesis, best first (``n_best`` lines: fewer hypotheses, or none for a skipped line, padded with ``<TAB>nan`` lines) |
| ``json`` | one strict-JSON object: ``input``, ``hypotheses`` (``text``, ``tokens``, ``ids``, ``score``; a non-finite score is ``null``), ``unknown``, and ``error`` for a skipped line |
"""

from __future__ import annotations

import json
import math
from typing import Any, Sequence


def mode_of(json_out: bool, scores: bool, n_best: int | None) -> str:
    """The output mode of the CLI flags: ``--json``, else ``--scores``/``--n-best``, else text."""
    return "json" if json_out else "scores" if (scores or n_best is not None) else "text"


def score_text(score: float) -> str:
    """A score in the TAB format: 6 decimals (``-inf``/``nan`` as such; never ``-0.000000``)."""
    return f"{round(score, 6) + 0.0:.6f}" if math.isfinite(score) else str(score)


def json_score(score: float) -> float | None:
    """A score in JSON: rounded to 6 decimals; None (``null``) when not finite."""
    return round(score, 6) + 0.0 if math.isfinite(score) else None


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None, so that ``json.dumps(...,
    allow_nan=False)`` always succeeds (strict parsers reject ``NaN``/``Infinity``)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """Strict JSON text of ``value`` (``strict_json``; ``default=str`` for other types)."""
    return json.dumps(strict_json(value), allow_nan=False, default=str, **kwargs)


class Formatter:
    """Output lines for one input. ``mode``: ``text`` (the best hypothesis' text), ``scores``
    (``TEXT<TAB>SCORE`` per hypothesis) or ``json`` (one object: ``input``, ``hypotheses`` (each
    ``text``, ``tokens``, ``ids``, ``score``), ``unknown``); ``n_best``: the lines per input in
    ``scores`` mode (None: as many as hypotheses)."""

    def __init__(self, mode: str, n_best: int | None = None) -> None:
        self.mode, self.n_best = mode, n_best

    def lines(self, text: str, hyps: Sequence[Any] | None, unknown: int = 0, problem: Any = None) -> list[str]:
        """The output lines of the input ``text``: ``hyps``, its hypotheses (best first), None when
        it was skipped (``problem``: why, for ``--json``'s ``error``); ``unknown``: how many of its
        source tokens are not in the vocabulary (``--json`` carries it)."""
        if self.mode == "json":
            record: dict[str, Any] = {"input": text, "hypotheses": [
                {"text": h.text, "tokens": list(h.tokens), "ids": [int(i) for i in h.ids],
                 "score": json_score(float(h.score))} for h in hyps or []], "unknown": unknown}
            if problem is not None:
                record["error"] = str(problem)
            return [dumps(record, ensure_ascii=False)]
        if self.mode == "scores":
            out = [f"{h.text}\t{score_text(float(h.score))}" for h in hyps or []]
            want = self.n_best if self.n_best is not None else max(1, len(out))
            return out[:want] + ["\tnan"] * (want - len(out))  # every line splits into TEXT and SCORE
        return [hyps[0].text if hyps else ""]


__all__ = ["Formatter", "dumps", "json_score", "mode_of", "score_text", "strict_json"]
