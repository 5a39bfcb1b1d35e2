"""PyTorch eager baseline: a straightforward batched greedy and beam loop over the model's own
``encode``/``decode_step`` (what a user without s2s-export runs), same semantics as the runtime.

* batches: sources sorted by length, chunks of ``batch`` (like ``Translator``), EOS appended;
* greedy: argmax each step; finished rows leave the batch;
* beam: the runtime's algorithm (docs/architecture.md) with torch tensors: each row's best
  ``beam + 1`` extensions (``topk``), ranked per sentence; EOS within the first ``beam``
  finishes a hypothesis; finished sentences leave the batch; no length penalty.

Results: the best hypothesis' ids per source (EOS included when produced), input order.
Call under ``torch.inference_mode()``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import Tensor

from ..conventions import Conventions


def max_lengths(lengths: Tensor, max_length: int, ratio: float | None) -> list[int]:
    """Per sentence min(max_length, ceil(ratio * src_len)) (src_len counts EOS), at least 1."""
    out = []
    for n in lengths.tolist():
        limit = max_length
        if ratio is not None:
            limit = min(max_length, max(1, math.ceil(ratio * n)))
        out.append(limit)
    return out


def pad(seqs: Sequence[Sequence[int]], conv: Conventions) -> tuple[Tensor, Tensor]:
    """Source id lists (the bundle's framing applied here) -> src [B,S] int64, lengths [B] int64."""
    rows = [conv.frame(list(s)) for s in seqs]
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    pad_id = conv.src.pad if conv.src.pad is not None else 0
    src = torch.full((len(rows), int(lengths.max())), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        src[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return src, lengths


def _rows(tensors: dict[str, Tensor], index: Tensor) -> dict[str, Tensor]:
    return {k: v.index_select(0, index) for k, v in tensors.items()}


def _blocked(log_probs: Tensor, blocked: tuple[int, ...]) -> Tensor:
    """log_probs [R,V] with the ids never generated at -inf (as the bundle's top-K)."""
    if blocked:
        log_probs = log_probs.clone()
        log_probs[:, list(blocked)] = -math.inf
    return log_probs


def greedy(model: Any, src: Tensor, lengths: Tensor, limits: list[int], conv: Conventions,
           blocked: tuple[int, ...] = ()) -> list[list[int]]:
    """src [B,S] -> the greedy ids of each row."""
    eos_id = int(conv.tgt.eos)  # type: ignore[arg-type]
    static, state = model.encode(src, lengths)
    B = src.size(0)
    limit = torch.tensor(limits)
    rows = torch.arange(B)  # sentence of each row
    tokens = torch.full((B,), conv.start_id, dtype=torch.long)
    hist = torch.zeros((B, 0), dtype=torch.long)
    out: list[list[int]] = [[] for _ in range(B)]
    for t in range(max(limits)):
        log_probs, state, _ = model.decode_step(tokens, static, state)
        tok = _blocked(log_probs, blocked).argmax(dim=1)
        hist = torch.cat([hist, tok[:, None]], dim=1)
        done = (tok == eos_id) | (limit[rows] <= t + 1)
        if bool(done.any()):
            for i in done.nonzero().flatten().tolist():
                out[int(rows[i])] = hist[i].tolist()
            live = (~done).nonzero().flatten()
            if live.numel() == 0:
                break
            rows, tok, hist = rows[live], tok[live], hist[live]
            static, state = _rows(static, live), _rows(state, live)
        tokens = tok
    return out


def beam(model: Any, src: Tensor, lengths: Tensor, limits: list[int], width_max: int, conv: Conventions,
         blocked: tuple[int, ...] = ()) -> list[list[int]]:
    """src [B,S] -> the best beam hypothesis of each row (HF-style, early stopping)."""
    W = width_max
    eos_id = int(conv.tgt.eos)  # type: ignore[arg-type]
    filler = conv.tgt.pad if conv.tgt.pad is not None else eos_id
    static, state = model.encode(src, lengths)
    B = src.size(0)
    limit = torch.tensor(limits)
    sent, width = torch.arange(B), 1
    tokens = torch.full((B,), conv.start_id, dtype=torch.long)
    cum = torch.zeros(B, dtype=torch.float64)
    hist = torch.zeros((B, 0), dtype=torch.long)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
    n_fin = torch.zeros(B, dtype=torch.long)
    for t in range(max(limits)):
        log_probs, state, _ = model.decode_step(tokens, static, state)  # [R,V]
        log_probs = _blocked(log_probs, blocked)
        C = min(W + 1, log_probs.size(1))
        top_lp, top_ids = log_probs.topk(C, dim=1)  # [R,C]
        n = sent.numel()
        cand = (cum[:, None] + top_lp.double()).reshape(n, width * C)
        cand, order = cand.sort(dim=1, descending=True, stable=True)
        cand_ids = top_ids.reshape(n, width * C).gather(1, order)
        cand_rows = order // C + (torch.arange(n) * width)[:, None]
        if cand.size(1) < W:  # a tiny vocabulary offers fewer candidates than the beam
            extra = W - cand.size(1)
            cand = torch.cat([cand, cand.new_full((n, extra), -math.inf)], 1)
            cand_ids = torch.cat([cand_ids, cand_ids.new_full((n, extra), filler)], 1)
            cand_rows = torch.cat([cand_rows, cand_rows[:, :1].expand(n, extra)], 1)
        ok, eos = torch.isfinite(cand), cand_ids == eos_id
        fin = eos & ok & (torch.arange(cand.size(1)) < W)[None]
        alive = ~eos & ok
        alive &= alive.long().cumsum(1) <= W
        pick = torch.argsort((~alive).to(torch.int8), dim=1, stable=True)[:, :W]
        new_ok = alive.gather(1, pick)
        new_rows = cand_rows.gather(1, pick).flatten()
        new_ids = cand_ids.gather(1, pick).flatten()
        new_cum = torch.where(new_ok, cand.gather(1, pick), -math.inf).flatten()
        n_fin[sent] += fin.sum(1)
        if bool(fin.any()):
            for i, j in fin.nonzero().tolist():
                r = int(cand_rows[i, j])
                finished[int(sent[i])].append((float(cand[i, j]), hist[r].tolist() + [eos_id]))
        hist = torch.cat([hist[new_rows], new_ids[:, None]], dim=1)
        at_max = limit[sent] <= t + 1
        if bool(at_max.any()):
            for i in at_max.nonzero().flatten().tolist():
                for k in new_ok[i].nonzero().flatten().tolist():
                    r = i * W + k
                    finished[int(sent[i])].append((float(new_cum[r]), hist[r].tolist()))
        done = at_max | (n_fin[sent] >= W) | ~new_ok.any(1)
        live = (~done).nonzero().flatten()
        if live.numel() == 0:
            break
        keep = (live[:, None] * W + torch.arange(W)).flatten()
        tokens, reorder, cum, hist = new_ids[keep], new_rows[keep], new_cum[keep], hist[keep]
        state = _rows(state, reorder)
        if live.numel() < n or width != W:  # layout changed: static follows the rows
            static = _rows(static, reorder)
        sent, width = sent[live], W
    return [max(f, key=lambda h: h[0])[1] if f else [] for f in finished]


def translate(model: Any, sources: Sequence[Sequence[int]], batch: int, beam_size: int,
              max_length: int, max_length_ratio: float | None, conv: Conventions,
              blocked: tuple[int, ...] = ()) -> list[list[int]]:
    """Best ids per source (input order): sorted by length, batches of ``batch``; the bundle's
    ids, framing and ``blocked`` ids (the runtime's ``s2s`` search semantics)."""
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    out: list[list[int]] = [[] for _ in sources]
    for start in range(0, len(order), batch):
        chunk = order[start:start + batch]
        src, lengths = pad([sources[i] for i in chunk], conv)
        limits = max_lengths(lengths, max_length, max_length_ratio)
        if beam_size == 1:
            ids = greedy(model, src, lengths, limits, conv, blocked)
        else:
            ids = beam(model, src, lengths, limits, beam_size, conv, blocked)
        for i, r in zip(chunk, ids):
            out[i] = r
    return out


__all__ = ["beam", "greedy", "max_lengths", "pad", "translate"]
