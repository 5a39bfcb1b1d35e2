"""Corpus BLEU-4 (Papineni et al. 2002), one reference per hypothesis, on token lists (torch-free).

BLEU = BP * exp(mean over n = 1..4 of log p_n), where p_n = (clipped n-gram matches summed over
the corpus) / (hypothesis n-grams summed over the corpus), a hypothesis n-gram being matched at
most as often as it occurs in its reference; BP = 1 if c > r else exp(1 - r / c) with c, r the
total hypothesis and reference lengths. No smoothing: a corpus without a single matching
4-gram scores 0. Reported in 0..100. Tokens are whatever the caller passes (the target
tokenizer's tokens: phonemes, characters, words), so figures are comparable only between
systems scored on the same tokens (here: the bundle and PyTorch on the same references).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Hashable, Sequence

MAX_N = 4


def ngrams(tokens: Sequence[Hashable], n: int) -> Counter[tuple[Hashable, ...]]:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu_stats(hyps: Sequence[Sequence[Hashable]], refs: Sequence[Sequence[Hashable]]
               ) -> dict[str, object]:
    """Matches and totals per n, and the corpus lengths: ``{"matches", "totals", "hyp_len", "ref_len"}``."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
    matches, totals = [0] * MAX_N, [0] * MAX_N
    hyp_len = ref_len = 0
    for hyp, ref in zip(hyps, refs):
        hyp_len += len(hyp)
        ref_len += len(ref)
        for n in range(1, MAX_N + 1):
            h, r = ngrams(hyp, n), ngrams(ref, n)
            matches[n - 1] += sum(min(c, r[g]) for g, c in h.items())
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    return {"matches": matches, "totals": totals, "hyp_len": hyp_len, "ref_len": ref_len}


def corpus_bleu(hyps: Sequence[Sequence[Hashable]], refs: Sequence[Sequence[Hashable]]) -> float:
    """Corpus BLEU-4 in 0..100 (see the module docstring)."""
    s = bleu_stats(hyps, refs)
    matches, totals = s["matches"], s["totals"]
    assert isinstance(matches, list) and isinstance(totals, list)
    hyp_len, ref_len = int(s["hyp_len"]), int(s["ref_len"])  # type: ignore[call-overload]
    if hyp_len == 0 or any(m == 0 for m in matches):
        return 0.0
    log_p = sum(math.log(m / t) for m, t in zip(matches, totals)) / MAX_N
    bp = 1.0 if hyp_len > ref_len else math.exp(1.0 - ref_len / hyp_len)
    return 100.0 * bp * math.exp(log_p)


__all__ = ["bleu_stats", "corpus_bleu", "ngrams"]
