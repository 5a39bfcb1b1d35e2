"""The ``opennmt`` search style: OpenNMT-py 3.5.1's ``onmt_translate`` decoding, reproduced over
the ``Backend`` protocol (numpy only).

Source: OpenNMT-py v3.5.1, onmt/translate/beam_search.py (``BeamSearchBase.advance``,
``update_finished``, ``beams_non_finished``, ``GNMTGlobalScorer``), decode_strategy.py
(``ensure_min_length``, ``ensure_unk_removed``, ``ensure_max_length``, ``block_ngram_repeats``),
penalties.py, translator.py (``Translator.translate_batch``, ``_translate_batch_with_strategy``).
``onmt_translate -beam_size 1`` runs this same beam search with one beam (its ``GreedySearch`` is
used only for random sampling, which is not reproduced), so one function serves every beam size.

Semantics, per batch (``src [B,S]``, ``src_lengths [B]``, ``opts``; K = ``beam_size``):

* Length limit, one per batch: ``int(min(max_length, max_length_batch_factor * longest source +
  5))`` (OpenNMT's ``-max_length_ratio``, default 1.25; without a factor: ``max_length``), and
  per sentence ``ceil(max_length_ratio * source length)`` when that (non-OpenNMT) option is set.
* Each beam k of a sentence keeps a float32 cumulative log-prob; at the first step only beam 0
  exists. At a step where the hypotheses hold ``step`` tokens counting the start token:
  EOS gets -65504 while ``step <= min_length``, every id of ``opts.blocked`` gets -65504 (what
  ``-ban_unk_token`` does to UNK); the step's log-probs are added to the cumulative ones and
  divided by the length penalty of ``step + 1`` (the BOS counted: ``avg`` (step+1)^alpha,
  ``gnmt`` ((5+step+1)/6)^alpha, ``none`` 1, no division when it is 1), all in float32;
  ``no_repeat_ngram_size`` n >= 2 (``-block_ngram_repeat``) sets -1e21 on the tokens that
  followed the row's last n-1 tokens in an earlier n-gram (start token included), looked up in
  per-row tables kept by position: the tool rebuilds them from the parent rows' tables after
  each step but does not re-index them when finished sentences leave the batch, so from then
  on a row reads the table of whichever row had its position before (reproduced; the result
  depends on the batch). The K best (beam, token) pairs of the sentence win (ties:
  lower beam, then lower token id: torch's topk order among exact ties is not specified); the
  new cumulative log-prob is the winning score times the penalty (float32).
* A winner that is EOS finishes: its hypothesis (tokens without the start token, EOS included)
  joins the sentence's list with the winning score (the normalised score onmt_translate logs as
  ``PRED SCORE``) and its beam carries on with -65504. At the length limit every beam finishes
  as it is. A sentence is done when its beam 0 has just finished and its list holds at least
  ``n_best`` hypotheses; then its list is sorted by score (stable, descending) and the first
  ``n_best`` are its result. Done sentences leave the batch.

Result per sentence: up to ``n_best`` ``Result(ids, score, attention)``, best first; ``ids``
are target ids (EOS included when produced), ``score`` the float32 normalised score.

Batching matters: onmt_translate sorts its inputs by length (stable) and decodes them 30 at a
time; the length limit (and n-gram blocking) depend on the batch, so a caller wanting its lines
exactly batches the same way. Nothing is blocked beyond ``opts.blocked`` (the tool never bans
pad or BOS itself). Candidates: each row's K best from the step's top-K outputs, or from the
full log-probs on the steps where a fill applies (min_length, ``blocked``, n-grams) or when the
backend's K is smaller than the beam; a beam larger than the vocabulary is a ``ConfigError``.
"""

from __future__ import annotations

import math

import numpy as np

from ...errors import ConfigError
from ..backends.base import Backend
from ..search import Result, SearchOptions, topk_unmasked

NEG = np.float32(-65504.0)  # OpenNMT-py's fill for finished beams, min_length and banned tokens
BLOCKED_NGRAM = np.float32(-10e20)


def batch_limits(opts: SearchOptions, src_lengths: np.ndarray) -> np.ndarray:
    """[B] most output tokens per sentence: OpenNMT's batch rule (translator.py
    ``translate_batch``), then the optional per-sentence ratio cap."""
    limit = int(opts.max_length)
    factor = opts.max_length_batch_factor
    if factor is not None and factor > 0 and len(src_lengths):
        limit = int(min(opts.max_length, int(np.max(src_lengths)) * factor + 5))
    out = np.full(len(src_lengths), max(limit, 1), dtype=np.int64)
    if opts.max_length_ratio is not None:
        ratio = np.array([math.ceil(opts.max_length_ratio * int(n)) for n in src_lengths], dtype=np.int64)
        out = np.minimum(out, np.maximum(ratio, 1))
    return out


def _block_ngrams(scores: np.ndarray, seq: np.ndarray, tables: list[dict], n: int) -> None:
    """``block_ngram_repeats``: scores [R,V] (normalised) of rows whose last n-1 tokens start an
    n-gram seen before (per the row's table, by position) get -1e21 on the tokens that followed."""
    for r in range(seq.shape[0]):
        tokens = tables[r].get(tuple(seq[r, seq.shape[1] - n + 1:].tolist()))
        if tokens:
            scores[r, sorted(tokens)] = BLOCKED_NGRAM


def _update_tables(tables: list[dict], parents: np.ndarray, seq: np.ndarray, n: int) -> list[dict]:
    """``maybe_update_forbidden_tokens``: each new row copies its parent's table (by the parent's
    position in the list) and adds its last n-gram."""
    out = []
    for r, p in enumerate(parents.tolist()):
        table = {k: set(v) for k, v in tables[p].items()}
        gram = tuple(seq[r, seq.shape[1] - n:].tolist())
        table.setdefault(gram[:-1], set()).add(gram[-1])
        out.append(table)
    return out


class _Batch:
    """The live part of a batch: n sentences with ``width`` beams each (rows = n * width)."""

    def __init__(self, B: int, K: int, start: int, S: int, with_attn: bool) -> None:
        self.sent = np.arange(B)  # original sentence of each live slot
        self.width = 1
        self.cum = np.zeros((B, 1), dtype=np.float32)  # [n,width] cumulative log-probs
        self.seq = np.full((B, 1), start, dtype=np.int64)  # [rows,1+t] start token first
        self.attn = np.zeros((B, 0, S), dtype=np.float32) if with_attn else None  # [rows,t,S]
        self.tables: list[dict] = [{} for _ in range(B * K)]  # n-gram tables by position, as the tool's


def _candidates(res, full: bool, lp_rows: np.ndarray | None, K: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's K best (log-prob float32, id): from the full (masked) log-probs or the top-K."""
    if full:
        assert lp_rows is not None
        ids = np.argsort(-lp_rows, axis=1, kind="stable")[:, :K]
        return lp_rows[np.arange(len(ids))[:, None], ids], ids
    return res.topk_log_probs[:, :K].astype(np.float32), res.topk_ids[:, :K].astype(np.int64)


def _mask(log_probs: np.ndarray, seq: np.ndarray, opts: SearchOptions) -> np.ndarray:
    """The step's log-probs [R,V] with OpenNMT's fills (a float32 copy), before the cumulative
    scores are added (min_length, banned ids)."""
    lp = np.array(log_probs, dtype=np.float32, copy=True)
    if seq.shape[1] <= opts.min_length:  # len(alive_seq) <= min_length
        lp[:, opts.eos_id] = NEG
    if opts.blocked:
        lp[:, list(opts.blocked)] = NEG
    return lp


def opennmt_search(backend: Backend, src: np.ndarray, src_lengths: np.ndarray,
                   opts: SearchOptions) -> list[list[Result]]:
    """src [B,S] int64 (padded), src_lengths [B] int64 -> per sentence up to ``n_best`` Results,
    best first (module docstring). ``ConfigError`` for a beam larger than the vocabulary."""
    opts.validate()
    K, V, eos = int(opts.beam_size), int(backend.vocab_size), int(opts.eos_id)
    if K > V:
        raise ConfigError(f"beam_size {K} exceeds the target vocabulary ({V})", "pass a smaller beam")
    B, S = src.shape
    limits = batch_limits(opts, src_lengths)
    ngram = int(opts.no_repeat_ngram_size)
    # banned ids need the full log-probs, unless the step graph's top-K already leaves them all
    # out (its io.blocked) and the vocabulary has K others: then the top-K's first K are the K
    # best allowed tokens (the full path's -1e20 fills never reach the first K)
    banned = bool(opts.blocked) and not (not topk_unmasked(backend, opts) and K + len(opts.blocked) <= V)
    needs_full = K > backend.topk or opts.full_distribution or banned or ngram >= 2
    backend.encode(src, src_lengths)
    b = _Batch(B, K, int(opts.start_id), S, opts.return_attention)
    hyps: list[list[Result]] = [[] for _ in range(B)]
    results: list[list[Result]] = [[] for _ in range(B)]
    tokens, reorder = np.full(B, opts.start_id, dtype=np.int64), np.arange(B)
    for t in range(int(limits.max())):
        step = t + 1  # tokens per hypothesis, the start token counted (len(alive_seq))
        full = needs_full or step <= opts.min_length
        res = backend.step(tokens, reorder, full=full, attn=opts.return_attention)
        lp_rows = _mask(res.log_probs, b.seq, opts) if full else None  # type: ignore[arg-type]
        pen = opts.penalty(step + 1)
        n, w = len(b.sent), b.width
        if lp_rows is not None and ngram >= 2:  # blocked n-grams hit the normalised scores (-1e21)
            scores_rows = lp_rows + b.cum.reshape(-1, 1)
            if pen != 1:
                scores_rows = scores_rows / np.float32(pen)
            if step >= ngram:
                _block_ngrams(scores_rows, b.seq, b.tables, ngram)
            cand_ids = np.argsort(-scores_rows, axis=1, kind="stable")[:, :K]
            cand = np.take_along_axis(scores_rows, cand_ids, 1)
        else:
            vals, cand_ids = _candidates(res, full, lp_rows, K)
            cand = vals + b.cum.reshape(-1, 1)  # float32
            if pen != 1:
                cand = cand / np.float32(pen)
        # rank each sentence's w*C candidates: score descending, then beam, then token id
        C = cand.shape[1]
        cand, cand_ids = cand.reshape(n, w * C), cand_ids.reshape(n, w * C)
        beam_of = np.arange(w * C) // C  # [w*C] the beam of each candidate
        order = np.lexsort((cand_ids, np.broadcast_to(beam_of, cand.shape), -cand), axis=1)[:, :K] if n \
            else np.zeros((0, K), np.int64)
        r = np.arange(n)[:, None]
        top = cand[r, order].astype(np.float32)  # [n,K] normalised scores
        new_ids = cand_ids[r, order]  # [n,K]
        rows = (beam_of[order] + r * w).ravel()  # [n*K]
        cum = top * np.float32(pen) if pen != 1 else top.copy()
        b.seq = np.concatenate([b.seq[rows], new_ids.reshape(-1, 1)], axis=1)
        if ngram >= 2 and step + 1 >= ngram:
            b.tables = _update_tables(b.tables, rows, b.seq, ngram)
        if b.attn is not None:
            b.attn = np.concatenate([b.attn[rows], res.attn[rows][:, None]], axis=1)  # type: ignore[index]
        finished = new_ids == eos
        finished |= (step >= limits[b.sent])[:, None]  # ensure_max_length
        done = np.zeros(n, dtype=bool)
        if finished.any():
            cum[finished] = NEG
            for i in np.flatnonzero(finished.any(axis=1)):
                s = int(b.sent[i])
                for j in np.flatnonzero(finished[i]):
                    row = int(i) * K + int(j)
                    att = None if b.attn is None else b.attn[row, :, : int(src_lengths[s])].copy()
                    hyps[s].append(Result(b.seq[row, 1:].tolist(), float(top[i, j]), att))
                if finished[i, 0] and len(hyps[s]) >= opts.n_best:
                    done[i] = True
                    results[s] = sorted(hyps[s], key=lambda h: h.score, reverse=True)[: opts.n_best]
        live = np.flatnonzero(~done)
        if live.size == 0:
            break
        keep = (live[:, None] * K + np.arange(K)).ravel()  # rows of the next step
        tokens, reorder = new_ids.ravel()[keep], rows[keep]
        b.seq, b.cum, b.sent = b.seq[keep], cum[live], b.sent[live]
        if b.attn is not None:
            b.attn = b.attn[keep]
        if live.size < n or w != K:  # layout changed: static follows the rows
            backend.keep(reorder)
        b.width = K
    for s in range(B):  # the loop ran out (cannot happen: the limit finishes every beam)
        if not results[s]:
            results[s] = sorted(hyps[s], key=lambda h: h.score, reverse=True)[: opts.n_best]
    return results


__all__ = ["batch_limits", "opennmt_search"]
