"""Sequence metrics (torch-free).

* exact match: fraction of hypotheses identical to their reference;
* token error rate: total Levenshtein distance / total reference tokens (for ``g2p`` this is the
  phoneme error rate, PER);
* word error rate: fraction of examples whose token sequence differs from the reference (for
  ``g2p`` an example is one word, so WER is "a word is wrong if any phoneme differs").
"""

from __future__ import annotations

from typing import Hashable, Sequence


def edit_distance(hyp: Sequence[Hashable], ref: Sequence[Hashable]) -> int:
    """Levenshtein distance (unit cost insert/delete/substitute)."""
    prev = list(range(len(ref) + 1))
    for i, h in enumerate(hyp, 1):
        cur = [i] + [0] * len(ref)
        for j, r in enumerate(ref, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (h != r))
        prev = cur
    return prev[-1]


def exact_match(hyps: Sequence[Sequence[Hashable]], refs: Sequence[Sequence[Hashable]]) -> float:
    _check(hyps, refs)
    return sum(tuple(h) == tuple(r) for h, r in zip(hyps, refs)) / max(len(refs), 1)


def token_error_rate(hyps: Sequence[Sequence[Hashable]], refs: Sequence[Sequence[Hashable]]) -> float:
    _check(hyps, refs)
    total = sum(len(r) for r in refs)
    return sum(edit_distance(h, r) for h, r in zip(hyps, refs)) / max(total, 1)


def word_error_rate(hyps: Sequence[Sequence[Hashable]], refs: Sequence[Sequence[Hashable]]) -> float:
    return 1.0 - exact_match(hyps, refs)


def score(hyps: Sequence[Sequence[Hashable]], refs: Sequence[Sequence[Hashable]]) -> dict[str, float]:
    """``{"n", "exact_match", "token_error_rate", "word_error_rate"}``."""
    return {"n": float(len(refs)), "exact_match": exact_match(hyps, refs),
            "token_error_rate": token_error_rate(hyps, refs),
            "word_error_rate": word_error_rate(hyps, refs)}


def _check(hyps: Sequence[object], refs: Sequence[object]) -> None:
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
