"""Torch reference of the ``opennmt`` style (OpenNMT-py 3.5.1 ``BeamSearch`` + ``GNMTGlobalScorer``
as ``onmt_translate`` runs them), written apart from ``runtime/styles/opennmt.py``.

It follows the tool's own layout (onmt/translate/beam_search.py ``BeamSearchBase.advance``,
``update_finished``, ``remove_finished_batches``; decode_strategy.py; translator.py
``translate_batch``): sources sorted by length and cut into batches (``batch_size``, 30 in
onmt_translate); per batch the encoder output and state are tiled to B*K rows from the start,
beams 1..K-1 begin at -inf, ``torch.topk`` over each sentence's K x V normalised scores picks
the winners, every state row is gathered from its parent, finished beams stay in the beam with
-65504, finished sentences leave the batch, and the n-gram tables of ``-block_ngram_repeat``
are kept by position as the tool keeps them. The semantics are listed in the runtime style's
docstring. Scores are float32 like the tool's.
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


class _Options:
    def __init__(self, K: int, n_best: int, min_length: int, penalty: str, alpha: float, ngram: int,
                 blocked: list[int], start: int, eos: int, pad: int) -> None:
        self.K, self.n_best, self.min_length, self.penalty, self.alpha = K, n_best, min_length, penalty, alpha
        self.ngram, self.blocked, self.start, self.eos, self.pad = ngram, blocked, start, eos, pad


def _batch(model: Any, sources: list[list[int]], limits: list[int], o: _Options) -> list[list[tuple[Any, ...]]]:
    """One onmt_translate batch: per sentence up to n_best (ids, score, attn [T,S]) best first."""
    B, K = len(sources), o.K
    lengths = torch.tensor([len(s) for s in sources])
    src = torch.full((B, int(lengths.max())), o.pad, dtype=torch.long)
    for i, s in enumerate(sources):
        src[i, :len(s)] = torch.tensor(s)
    static, state = model.encode(src, lengths)
    tile = torch.arange(B).repeat_interleave(K)  # onmt.utils.misc.tile
    static = {k: v[tile] for k, v in static.items()}
    state = {k: v[tile] for k, v in state.items()}
    topk_log_probs = torch.tensor([0.0] + [float("-inf")] * (K - 1)).repeat(B).reshape(B, K)
    alive = torch.full((B * K, 1), o.start, dtype=torch.long)
    alive_attn: Tensor | None = None
    offset = torch.arange(B)  # _batch_offset: the original sentence of each live one
    limit = torch.tensor(limits)
    forbidden: list[dict[tuple[int, ...], set[int]]] = [{} for _ in range(B * K)]
    hyps: list[list[tuple[float, list[int], Tensor]]] = [[] for _ in range(B)]
    results: list[list[tuple[Any, ...]]] = [[] for _ in range(B)]
    for _ in range(int(limit.max())):
        log_probs, state, attn = model.decode_step(alive[:, -1], static, state)
        log_probs = log_probs.float().clone()
        nb, V, step = log_probs.size(0) // K, log_probs.size(1), alive.size(1)
        if step <= o.min_length:
            log_probs[:, o.eos] = NEG
        if o.blocked:
            log_probs[:, o.blocked] = NEG
        log_probs += topk_log_probs.view(nb * K, 1)
        pen = _penalty(o.penalty, o.alpha, step + 1)
        scores = log_probs / pen if pen != 1 else log_probs
        if o.ngram >= 2 and step >= o.ngram:
            for path in range(nb * K):
                banned = forbidden[path].get(tuple(alive[path, -(o.ngram - 1):].tolist()))
                if banned:
                    scores[path, list(banned)] = -10e20
        top_scores, top_ids = torch.topk(scores.reshape(nb, K * V), K, dim=-1)  # [nb,K]
        topk_log_probs = top_scores * pen if pen != 1 else top_scores.clone()
        select = (top_ids // V + torch.arange(0, nb * K, K).unsqueeze(1)).view(-1)
        tokens = top_ids % V
        alive = torch.cat([alive[select], tokens.view(-1, 1)], dim=1)
        if o.ngram >= 2 and alive.size(1) >= o.ngram:
            new: list[dict[tuple[int, ...], set[int]]] = []
            for row, parent in enumerate(select.tolist()):
                table = {k: set(v) for k, v in forbidden[parent].items()}
                gram = tuple(alive[row, -o.ngram:].tolist())
                table.setdefault(gram[:-1], set()).add(gram[-1])
                new.append(table)
            forbidden = new
        step_attn = attn[select].unsqueeze(1)
        alive_attn = step_attn if alive_attn is None else torch.cat([alive_attn[select], step_attn], dim=1)
        state = {k: v[select] for k, v in state.items()}
        static = {k: v[select] for k, v in static.items()}
        finished = tokens.eq(o.eos)
        at_limit: Tensor = limit[offset] + 1 == alive.size(1)  # ensure_max_length
        finished |= at_limit.unsqueeze(1)
        if not bool(finished.any()):
            continue
        topk_log_probs = topk_log_probs.masked_fill(finished, NEG)
        live = []
        for i in range(nb):
            b = int(offset[i])
            for j in finished[i].nonzero().view(-1).tolist():
                row = i * K + j
                att = alive_attn[row, :, : len(sources[b])]
                hyps[b].append((float(top_scores[i, j]), alive[row, 1:].tolist(), att))
            if bool(finished[i, 0]) and len(hyps[b]) >= o.n_best:
                ranked = sorted(hyps[b], key=lambda h: h[0], reverse=True)  # stable
                results[b] = [(h[1], h[0], h[2]) for h in ranked[: o.n_best]]
            else:
                live.append(i)
        if not live:
            break
        keep = (torch.tensor(live).unsqueeze(1) * K + torch.arange(K)).view(-1)
        offset, topk_log_probs = offset[live], topk_log_probs[live]
        alive, alive_attn = alive[keep], alive_attn[keep]
        state = {k: v[keep] for k, v in state.items()}
        static = {k: v[keep] for k, v in static.items()}
        # the n-gram tables are not re-indexed (remove_finished_batches leaves them as they are)
    return results


def reference_search(model: Any, src_ids: list[list[int]], beam_size: int = 5, max_length: int = 250,
                     max_length_ratio: float | None = None, min_length: int = 0, length_penalty: str = "avg",
                     alpha: float = 1.0, n_best: int = 1, no_repeat_ngram_size: int = 0,
                     return_attention: bool = False, max_length_batch_factor: float | None = 1.25,
                     batch_size: int = 30, blocked: tuple[int, ...] = (),
                     start_id: int | None = None) -> list[list[tuple[Any, ...]]]:
    """Per source (token ids as the model sees them), in input order: up to ``n_best``
    ``(ids, score)`` best first (``(ids, score, attn [T,S])`` with ``return_attention``).

    Sources are decoded as onmt_translate batches them: sorted by length (stable), then
    ``batch_size`` at a time; each batch's length limit is ``int(min(max_length,
    max_length_batch_factor * its longest source + 5))`` (``max_length`` without a factor),
    capped per sentence by ``ceil(max_length_ratio * length)`` when given. ``start_id``: the
    decoder's first token (default the model's target BOS); EOS and the padding of sources are
    the model's."""
    src_sp, tgt = specials_of(model)
    start = tgt.bos if start_id is None else start_id
    if start is None or tgt.eos is None:
        raise ValueError("the model declares no target start token or EOS")
    if beam_size < 1 or not 1 <= n_best <= beam_size or batch_size < 1:
        raise ValueError(f"need beam_size >= 1, 1 <= n_best <= beam_size and batch_size >= 1 "
                         f"(got {beam_size}, {n_best}, {batch_size})")
    o = _Options(beam_size, n_best, min_length, length_penalty, alpha, no_repeat_ngram_size, list(blocked),
                 int(start), int(tgt.eos), int(src_sp.pad or 0))
    order = sorted(range(len(src_ids)), key=lambda i: len(src_ids[i]))
    out: list[list[tuple[Any, ...]]] = [[] for _ in src_ids]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for first in range(0, len(order), batch_size):
                batch = order[first:first + batch_size]
                longest = max(len(src_ids[i]) for i in batch)
                limit = max_length
                if max_length_batch_factor is not None and max_length_batch_factor > 0:
                    limit = int(min(max_length, longest * max_length_batch_factor + 5))
                limits = [max(1, limit if max_length_ratio is None
                              else min(limit, math.ceil(max_length_ratio * len(src_ids[i])))) for i in batch]
                for i, hyps in zip(batch, _batch(model, [src_ids[i] for i in batch], limits, o)):
                    out[i] = [(h[0], h[1], h[2].numpy()) if return_attention else (h[0], h[1]) for h in hyps]
    finally:
        model.train(was_training)
    return out


__all__ = ["reference_search"]
