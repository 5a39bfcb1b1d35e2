"""Torch reference of the ``joeynmt`` search style (Joey NMT 2.3 ``search.py``: ``recurrent_greedy``
and ``beam_search``), independent of ``s2s_export.runtime.styles.joeynmt``.

Written from Joey's source rather than from the runtime: one sentence at a time on the PyTorch
module, Joey's own tensor bookkeeping (``alive_seq`` with the BOS column, ``W`` tiled rows from
the first step with ``topk_log_probs = [0, -inf, ...]``, ``torch.topk`` over the flattened
``W x V`` scores, ``is_finished`` per slot, the EOS counts that decide what joins
``hypotheses``), and the full log-probs of ``model.decode_step`` at every step. The special ids
come from the module (``conventions.specials_of``). See the runtime module's docstring for the
semantics both implement.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ...conventions import specials_of


def _rows(tensors: dict[str, Tensor], index: Tensor) -> dict[str, Tensor]:
    return {k: v.index_select(0, index) for k, v in tensors.items()}


def _forbid(log_probs: Tensor, forbidden: list[int], eos: int, step: int, min_length: int) -> Tensor:
    """Joey's masking: forbidden ids always, EOS while step < min_output_length (in place)."""
    for i in forbidden:
        log_probs[:, i] = float("-inf")
    if step < min_length:
        log_probs[:, eos] = float("-inf")
    return log_probs


def greedy(model: Any, static: dict[str, Tensor], state: dict[str, Tensor], limit: int, forbidden: list[int],
           min_length: int) -> list[tuple[list[int], float]]:
    """recurrent_greedy for one sentence: [(ids, summed step log-probs)]."""
    _, tgt = specials_of(model)
    token, out, total = int(tgt.bos), [], 0.0  # type: ignore[arg-type]
    for step in range(limit):
        log_probs, state, _ = model.decode_step(torch.tensor([token]), static, state)
        log_probs = _forbid(log_probs.clone(), forbidden, int(tgt.eos), step, min_length)  # type: ignore[arg-type]
        prob, next_word = torch.max(log_probs, dim=-1)
        token = int(next_word)
        out.append(token)
        total += float(prob)
        if token == tgt.eos:
            break
    return [(out, total)]


def beam(model: Any, static: dict[str, Tensor], state: dict[str, Tensor], limit: int, beam_size: int,
         alpha: float, n_best: int, forbidden: list[int], min_length: int) -> list[tuple[list[int], float]]:
    """beam_search for one sentence (batch of one): [(ids, score)] * n_best, best first."""
    _, tgt = specials_of(model)
    eos, bos, unk = int(tgt.eos), int(tgt.bos), tgt.unk  # type: ignore[arg-type]
    tile = torch.zeros(beam_size, dtype=torch.long)
    static, state = _rows(static, tile), _rows(state, tile)
    alive_seq = torch.full((beam_size, 1), bos, dtype=torch.long)
    topk_log_probs = torch.zeros(1, beam_size)
    topk_log_probs[:, 1:] = float("-inf")
    is_finished = torch.zeros(1, beam_size, dtype=torch.bool)
    hypotheses: list[tuple[Tensor, Tensor]] = []
    for step in range(limit):
        log_probs, state, _ = model.decode_step(alive_seq[:, -1], static, state)  # [W,V]
        V = log_probs.size(1)
        log_probs = _forbid(log_probs.clone(), forbidden, eos, step, min_length)
        log_probs += topk_log_probs.view(-1).unsqueeze(1)
        curr_scores = log_probs.clone()
        if alpha > 0:
            length_penalty = ((5.0 + (step + 1)) / 6.0) ** alpha
            curr_scores /= length_penalty
        topk_scores, topk_ids = curr_scores.reshape(-1, beam_size * V).topk(beam_size, dim=-1)
        topk_log_probs = topk_scores * length_penalty if alpha > 0 else topk_scores.clone()
        origin = topk_ids.div(V, rounding_mode="floor").view(-1)
        topk_ids = topk_ids.fmod(V)
        alive_seq = torch.cat([alive_seq.index_select(0, origin), topk_ids.view(-1, 1)], -1)
        state = _rows(state, origin)
        is_finished = topk_ids.eq(eos) | is_finished | topk_scores.eq(float("-inf"))
        if step + 1 == limit:
            is_finished.fill_(True)
        for j in is_finished[0].nonzero().view(-1).tolist():
            pred = alive_seq[j, 1:]
            n_eos = int((pred == eos).count_nonzero())
            if (n_eos == 0 and step + 1 == limit) or (n_eos == 1 and int(pred[-1]) == eos):
                hypotheses.append((topk_scores[0, j], pred))
        if bool(is_finished.all()):
            break
    ranked = sorted(hypotheses, key=lambda x: x[0], reverse=True)[:n_best]
    out = [(pred.tolist(), float(score)) for score, pred in ranked]
    return out + [([] if unk is None else [int(unk)], -1.0)] * (n_best - len(out))


def reference_joeynmt(model: Any, src_ids: list[list[int]], beam_size: int = 1, max_length: int = 200,
                      min_length: int = 1, length_penalty: str = "gnmt", alpha: float = 0.0, n_best: int = 1,
                      max_length_batch_factor: float | None = None, never_generate: tuple[int, ...] = (),
                      ) -> list[list[tuple[list[int], float]]]:
    """Per source (complete, EOS-framed ids): Joey's results ``[(ids, score)]`` (greedy: one,
    beam: ``n_best``). ``max_length_batch_factor``: the limit is ``int(factor * longest source
    of src_ids)`` (``src_ids`` is one Joey batch). ``length_penalty`` other than ``none`` with
    ``alpha > 0`` is Joey's GNMT penalty. ``never_generate``: ids blocked beyond bos and pad."""
    _, tgt = specials_of(model)
    forbidden = sorted({int(tgt.bos), int(tgt.pad), *never_generate})  # type: ignore[arg-type]
    limit = max_length
    if max_length_batch_factor is not None and src_ids:
        limit = int(max(len(s) for s in src_ids) * max_length_batch_factor)
    alpha = alpha if length_penalty != "none" else 0.0
    out = []
    for ids in src_ids:
        static, state = model.encode(torch.tensor([ids], dtype=torch.long), torch.tensor([len(ids)], dtype=torch.long))
        if beam_size < 2:
            out.append(greedy(model, static, state, limit, forbidden, min_length))
        else:
            out.append(beam(model, static, state, limit, beam_size, alpha, n_best, forbidden, min_length))
    return out



RETURNS_ATTENTION = False  # verify draws no attention for this style (verify.reference.returns_attention)


def reference_search(model: Any, src_ids: list[list[int]], *, beam_size: int = 1, max_length: int = 200,
                     max_length_ratio: float | None = None, min_length: int = 1, length_penalty: str = "gnmt",
                     alpha: float = 0.0, n_best: int = 1, no_repeat_ngram_size: int = 0,
                     return_attention: bool = False, start_id: int | None = None, eos_id: int | None = None,
                     blocked: tuple[int, ...] = (), max_length_batch_factor: float | None = None
                     ) -> list[list[tuple[list[int], float]]]:
    """``verify.reference.reference_search(style="joeynmt")``: ``reference_joeynmt`` in eval mode
    without gradients. ``blocked`` ids are never generated (Joey blocks bos and pad itself);
    the start and end tokens are the model's (Joey: ``<s>``, ``</s>``). Joey has no length ratio,
    n-gram blocking or attention output here: ``ValueError``."""
    if max_length_ratio is not None or no_repeat_ngram_size or return_attention:
        raise ValueError("the joeynmt reference has no max_length_ratio, n-gram blocking or attention")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            found = reference_joeynmt(model, src_ids, beam_size=beam_size, max_length=max_length,
                                      min_length=min_length, length_penalty=length_penalty, alpha=alpha,
                                      n_best=n_best, max_length_batch_factor=max_length_batch_factor,
                                      never_generate=tuple(blocked))
    finally:
        model.train(was_training)
    return [[tuple(h) for h in hyps] for hyps in found]  # type: ignore[misc]


__all__ = ["reference_joeynmt", "reference_search"]
