"""Torch reference of the ``opennmt`` style (OpenNMT-py 3.5.1 ``BeamSearch`` + ``GNMTGlobalScorer``
as ``onmt_translate`` runs them), written apart from ``runtime/styles/opennmt.py``.

One sentence at a time, in OpenNMT-py's own layout: the encoder output and state are tiled to
K rows from the start, beams 1..K-1 begin at -inf, ``torch.topk`` over the flattened K x V
normalised scores picks the K winners, every state row is gathered from its parent each step,
and finished beams stay in the beam with -65504 (onmt/translate/beam_search.py
``BeamSearchBase.advance``/``update_finished``, decode_strategy.py; the semantics are listed in
the runtime style's docstring). Scores are float32 like the tool's.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ...conventions import specials_of

NEG = -65504.0


def _penalty(kind: str, alpha: float, length: int) -> float:
    """penalties.py ``PenaltyBuilder``: wu (our ``gnmt``), avg, none."""
    if kind == "gnmt":
        return ((5 + length) / 6.0) ** alpha
    if kind == "avg":
        return length ** alpha
    if kind == "none":
        return 1.0
    raise ValueError(f"unknown length penalty {kind!r}")


def _forbidden(seq: list[int], n: int) -> set[int]:
    """decode_strategy.py: the n-grams of ``seq`` (start token included) keyed by their first
    n-1 tokens; the tokens following the current last n-1 tokens are forbidden."""
    if n < 2 or len(seq) < n:
        return set()
    grams: dict[tuple[int, ...], set[int]] = {}
    for i in range(len(seq) - n + 1):
        grams.setdefault(tuple(seq[i:i + n - 1]), set()).add(seq[i + n - 1])
    return grams.get(tuple(seq[-(n - 1):]), set())


def _one(model: Any, ids: list[int], limit: int, K: int, n_best: int, min_length: int, penalty: str,
         alpha: float, ngram: int, blocked: list[int], start: int, eos: int) -> list[tuple[Any, ...]]:
    static, state = model.encode(torch.tensor([ids], dtype=torch.long), torch.tensor([len(ids)], dtype=torch.long))
    tile = torch.zeros(K, dtype=torch.long)
    static = {k: v.index_select(0, tile) for k, v in static.items()}
    state = {k: v.index_select(0, tile) for k, v in state.items()}
    topk_log_probs = torch.tensor([0.0] + [float("-inf")] * (K - 1))  # [K] float32
    alive = torch.full((K, 1), start, dtype=torch.long)
    alive_attn: Tensor | None = None
    hyps: list[tuple[float, list[int], Tensor]] = []
    for _ in range(limit):
        log_probs, state, attn = model.decode_step(alive[:, -1], static, state)
        log_probs = log_probs.float().clone()
        V = log_probs.size(1)
        step = alive.size(1)
        if step <= min_length:
            log_probs[:, eos] = NEG
        if blocked:
            log_probs[:, blocked] = NEG
        log_probs += topk_log_probs.view(K, 1)
        pen = _penalty(penalty, alpha, step + 1)
        scores = log_probs / pen if pen != 1 else log_probs
        for k in range(K):
            bad = sorted(_forbidden(alive[k].tolist(), ngram))
            if bad:
                scores[k, bad] = -10e20
        top_scores, top_ids = torch.topk(scores.reshape(-1), K)
        topk_log_probs = top_scores * pen if pen != 1 else top_scores.clone()
        parent, token = top_ids // V, top_ids % V
        alive = torch.cat([alive[parent], token.view(K, 1)], dim=1)
        state = {k: v.index_select(0, parent) for k, v in state.items()}
        step_attn = attn.index_select(0, parent).unsqueeze(1)
        alive_attn = step_attn if alive_attn is None else torch.cat([alive_attn[parent], step_attn], dim=1)
        finished = token.eq(eos)
        if step == limit:  # ensure_max_length: len(alive_seq) == max_length + 1 after this step
            finished[:] = True
        if finished.any():
            topk_log_probs = topk_log_probs.masked_fill(finished, NEG)
            for j in finished.nonzero().view(-1).tolist():
                hyps.append((float(top_scores[j]), alive[j, 1:].tolist(), alive_attn[j, :, : len(ids)]))
            if bool(finished[0]) and len(hyps) >= n_best:
                break
    hyps.sort(key=lambda h: h[0], reverse=True)  # stable, like sorted(..., reverse=True)
    return [(h[1], h[0], h[2]) for h in hyps[:n_best]]


def reference_search(model: Any, src_ids: list[list[int]], beam_size: int = 5, max_length: int = 250,
                     max_length_ratio: float | None = None, min_length: int = 0, length_penalty: str = "avg",
                     alpha: float = 1.0, n_best: int = 1, no_repeat_ngram_size: int = 0,
                     return_attention: bool = False, max_length_batch_factor: float | None = 1.25,
                     batch_src_len: list[int] | None = None, blocked: tuple[int, ...] = (),
                     start_id: int | None = None) -> list[list[tuple[Any, ...]]]:
    """Per source (token ids as the model sees them): up to ``n_best`` ``(ids, score)`` best
    first (``(ids, score, attn [T,S])`` with ``return_attention``). ``batch_src_len[i]``: the
    longest source of the batch sentence i was decoded in (OpenNMT's length limit is per batch:
    ``int(min(max_length, factor * longest + 5))``); default its own length. ``start_id``:
    the decoder's first token (default the model's target BOS); EOS is the model's target EOS."""
    _, tgt = specials_of(model)
    start = tgt.bos if start_id is None else start_id
    if start is None or tgt.eos is None:
        raise ValueError("the model declares no target start token or EOS")
    if beam_size < 1 or not 1 <= n_best <= beam_size:
        raise ValueError(f"need beam_size >= 1 and 1 <= n_best <= beam_size (got {beam_size}, {n_best})")
    was_training = model.training
    model.eval()
    out: list[list[tuple[Any, ...]]] = []
    try:
        with torch.no_grad():
            for i, ids in enumerate(src_ids):
                longest = batch_src_len[i] if batch_src_len is not None else len(ids)
                limit = max_length
                if max_length_batch_factor is not None and max_length_batch_factor > 0:
                    limit = int(min(max_length, longest * max_length_batch_factor + 5))
                if max_length_ratio is not None:
                    limit = min(limit, max(1, math.ceil(max_length_ratio * len(ids))))
                hyps = _one(model, ids, max(limit, 1), beam_size, n_best, min_length, length_penalty, alpha,
                            no_repeat_ngram_size, list(blocked), int(start), int(tgt.eos))
                out.append([(h[0], h[1], h[2].numpy()) if return_attention else (h[0], h[1]) for h in hyps])
    finally:
        model.train(was_training)
    return out


__all__ = ["reference_search"]
