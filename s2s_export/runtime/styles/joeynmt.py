"""The ``joeynmt`` search style: Joey NMT 2.3's recurrent greedy and beam search, exactly
(torch-free, over the ``Backend`` protocol).

Source: joeynmt v2.3, ``joeynmt/search.py``: ``search`` (beam_size < 2 is greedy),
``recurrent_greedy`` and ``beam_search``. Semantics reproduced:

* Blocked tokens (log-prob -inf): ``<s>`` (``opts.start_id``), ``<pad>``, ``opts.blocked``
  (separator, language tags, ``<unk>`` without ``generate_unk``), and EOS while ``step <
  min_length`` (Joey's ``min_output_length``, default 1: never EOS first).
* Maximum length: ``opts.max_lengths`` per sentence (Joey: one ``max_output_length`` for the
  batch, or ``int(1.5 * longest source of the batch)`` when unset: ``max_length_batch_factor``).
* Greedy: argmax each step (ties: the lowest id, as ``torch.max``). A sentence ends at its
  first EOS or at the maximum length. Joey reports a log-prob per step (``return_prob: hyp``);
  ``Result.score`` is their sum over the output (EOS included), no length penalty.
* Beam (per sentence ``W = beam_size`` slots; at step 0 only slot 0 is alive):
  every slot is extended every step, *finished ones included* (a hypothesis that produced EOS
  keeps its slot and goes on generating after it). Candidate score = float32 cumulative
  log-prob + token log-prob, divided by the GNMT penalty ``((5 + step + 1) / 6) ** alpha``
  when ``alpha > 0`` (the same divisor for every candidate of a step); the W best of the
  sentence's ``W x V`` candidates (ties: the lower flattened index ``slot * V + token``) fill
  the slots in rank order, and the cumulative log-prob is recovered as ``score * penalty``
  (float32, as Joey does). ``is_finished`` is sticky *per slot*: slot j stays finished once any
  hypothesis in it ended with EOS or scored -inf, whatever hypothesis later moves into it; at
  the maximum length every slot is finished. A sentence ends when all its slots are finished.
  Collected (Joey's ``hypotheses``): each finished slot whose hypothesis holds exactly one EOS,
  as its last token, or no EOS at the maximum length, with its (normalised) candidate score;
  slots with more than one EOS or an EOS followed by more tokens are not. Result: the
  collected hypotheses sorted by score (stable), the first ``n_best``; when fewer were
  collected, the list is padded with ``[unk]`` scoring -1 (Joey's filler).

Candidates come from the step graph's top-K when K covers each row's W best after removing
the blocked ids, else from the full ``log_probs``. Outputs (ids) include EOS when produced.
``no_repeat_ngram_size`` (Joey blocks n-grams of the source too) and the ``avg`` length
penalty (Joey has none) are refused.
"""

from __future__ import annotations

import numpy as np

from ...errors import ConfigError
from ..backends.base import Backend, StepResult
from ..search import Result, SearchOptions, topk_unmasked


def _never(opts: SearchOptions, backend: Backend) -> tuple[np.ndarray, np.ndarray]:
    """The ids never generated (BOS, PAD, ``opts.blocked``), and those of them the backend's
    top-K may still hold (not in its ``topk_blocked``: the step graph's own mask), int64."""
    never = sorted({int(opts.start_id), int(opts.pad_id), *map(int, opts.blocked)})
    return np.array(never, dtype=np.int64), np.array(topk_unmasked(backend, opts, never), dtype=np.int64)


def best_tokens(res: StepResult, C: int, blocked: np.ndarray, full: bool,
                unmasked: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each row's C best tokens after blocking: (log-probs [R,C] float32, ids [R,C] int64),
    best first, ties by the lower id. ``unmasked``: the ids of ``blocked`` that the top-K may
    hold (default all; the step graph's top-K leaves out its ``io.blocked``: ``topk_unmasked``);
    with none, and C finite candidates, the top-K's first C are taken as they are (no
    per-step ``np.isin``: ~50 us a step at batch 1, measured)."""
    if full:
        lp = np.array(res.log_probs, dtype=np.float32, copy=True)  # [R,V]
        lp[:, blocked] = -np.inf
        V = lp.shape[1]
        ids = np.broadcast_to(np.arange(V), lp.shape) if C >= V else np.argpartition(-lp, C - 1, axis=1)[:, :C]
        vals = lp[np.arange(len(lp))[:, None], ids]
    else:
        ids, vals = res.topk_ids, res.topk_log_probs.astype(np.float32)  # [R,K]
        if unmasked is not None and unmasked.size == 0 and not np.isneginf(vals[:, :C]).any():
            ids, vals = ids[:, :C], vals[:, :C]  # nothing blocked left: the C best allowed
        else:
            pick = np.argsort(np.isin(ids, blocked if unmasked is None else unmasked), axis=1,
                              kind="stable")[:, :C]  # unblocked first
            r = np.arange(len(ids))[:, None]
            ids, vals = ids[r, pick], vals[r, pick]
    order = np.lexsort((ids, -vals), axis=-1)  # the top-K's own order, whatever the backend's ties
    r = np.arange(len(ids))[:, None]
    return vals[r, order], ids[r, order].astype(np.int64)


def _step(backend: Backend, tokens: np.ndarray, reorder: np.ndarray, C: int, t: int, opts: SearchOptions,
          never: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, StepResult]:
    """One decoder step and each row's C best allowed tokens (``never``: ``_never``)."""
    blocked, unmasked = never
    if t < opts.min_length:  # EOS too (never in the step graph's mask)
        blocked, unmasked = np.append(blocked, opts.eos_id), np.append(unmasked, opts.eos_id)
    full = opts.full_distribution or backend.topk < C + len(blocked)
    res = backend.step(tokens, reorder, full=full, attn=opts.return_attention)
    vals, ids = best_tokens(res, C, blocked, full, unmasked)
    return vals, ids, res


def _greedy(backend: Backend, src: np.ndarray, src_lengths: np.ndarray, opts: SearchOptions
            ) -> list[list[Result]]:
    """recurrent_greedy: argmax until EOS or the maximum length; finished rows leave the batch."""
    B, limits, never = len(src_lengths), opts.max_lengths(src_lengths), _never(opts, backend)
    backend.encode(src, src_lengths)
    rows = np.arange(B)  # sentence of each row
    tokens, reorder = np.full(B, opts.start_id, dtype=np.int64), np.arange(B)
    hist = np.zeros((B, 0), dtype=np.int64)  # [R,t]
    score = np.zeros(B)  # [R] float64 sum of the float32 step log-probs
    attn = np.zeros((B, 0, src.shape[1]), dtype=np.float32) if opts.return_attention else None
    results: list[list[Result]] = [[] for _ in range(B)]
    for t in range(int(limits.max())):
        vals, ids, res = _step(backend, tokens, reorder, 1, t, opts, never)
        tok = ids[:, 0]
        score = score + vals[:, 0]
        hist = np.concatenate([hist, tok[:, None]], axis=1)
        if attn is not None:
            attn = np.concatenate([attn, res.attn[:, None]], axis=1)  # type: ignore[index]
        done = (tok == opts.eos_id) | (t + 1 >= limits[rows])
        for i in np.flatnonzero(done):
            s = rows[i]
            results[s] = [Result(hist[i].tolist(), float(score[i]),
                                 None if attn is None else attn[i, :, :src_lengths[s]].copy())]
        live = np.flatnonzero(~done)
        if live.size == 0:
            break
        if live.size < len(rows):
            backend.keep(live)
        tokens, reorder = tok[live], live
        rows, hist, score = rows[live], hist[live], score[live]
        attn = None if attn is None else attn[live]
    return results


def _filler(opts: SearchOptions, src_len: int) -> Result:
    """Joey's n-best padding: ``[unk]`` with score -1."""
    ids = [] if opts.unk_id is None else [int(opts.unk_id)]
    return Result(ids, -1.0, np.zeros((len(ids), src_len), dtype=np.float32) if opts.return_attention else None)


def _rank(norm: np.ndarray, ids: np.ndarray, n: int, width: int, W: int, V: int
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """topk over each sentence's width x C candidates: (scores [n,W], token ids [n,W], rows [n,W]
    of this step's batch), ties by Joey's flattened index slot * V + token."""
    C = norm.shape[1]
    scores, toks = norm.reshape(n, width * C), ids.reshape(n, width * C)
    slot = np.arange(width * C) // C  # [width*C] the slot of each candidate
    if width * C < W:  # a tiny vocabulary offers fewer candidates than slots
        pad = ((0, 0), (0, W - width * C))
        scores = np.pad(scores, pad, constant_values=-np.inf)
        toks = np.pad(toks, pad, constant_values=0)
        slot = np.pad(slot, (0, W - width * C), constant_values=width)
    order = np.lexsort((slot * V + toks, -scores), axis=-1)[:, :W]  # [n,W]
    r = np.arange(n)[:, None]
    return scores[r, order], toks[r, order], slot[order] + r * width


def _collect(seq: np.ndarray, eos: int, at_max: bool) -> bool:
    """Whether a finished slot's hypothesis joins Joey's ``hypotheses``."""
    n_eos = int(np.count_nonzero(seq == eos))
    return (n_eos == 0 and at_max) or (n_eos == 1 and int(seq[-1]) == eos)


def _beam(backend: Backend, src: np.ndarray, src_lengths: np.ndarray, opts: SearchOptions
          ) -> list[list[Result]]:
    """beam_search: W slots per sentence, sticky per-slot is_finished, finished slots extended."""
    B, W, eos = len(src_lengths), opts.beam_size, opts.eos_id
    limits, never = opts.max_lengths(src_lengths), _never(opts, backend)
    penalize = opts.length_penalty != "none" and opts.alpha > 0
    backend.encode(src, src_lengths)
    sent, width = np.arange(B), 1  # active sentences; rows per sentence (1 at step 0)
    tokens, reorder = np.full(B, opts.start_id, dtype=np.int64), np.arange(B)
    cum = np.zeros(B, dtype=np.float32)  # [R] Joey's topk_log_probs
    hist = np.zeros((B, 0), dtype=np.int64)  # [R,t] generated ids
    attn = np.zeros((B, 0, src.shape[1]), dtype=np.float32) if opts.return_attention else None
    finished = np.zeros((B, W), dtype=bool)  # [n,W] Joey's is_finished
    hyps: list[list[Result]] = [[] for _ in range(B)]
    results: list[list[Result]] = [[] for _ in range(B)]
    V = int(backend.vocab_size)
    for t in range(int(limits.max())):
        n = len(sent)
        vals, ids, res = _step(backend, tokens, reorder, W, t, opts, never)  # [R,C] each
        cand = vals + cum[:, None]  # float32
        pen = np.float32(opts.penalty(t + 1)) if penalize else np.float32(1.0)
        norm = cand / pen if penalize else cand
        top, tok, origin = _rank(norm, ids, n, width, W, V)  # [n,W] each
        new_cum = (top * pen if penalize else top).ravel()
        rows = origin.ravel()
        hist = np.concatenate([hist[rows], tok.reshape(-1, 1)], axis=1)
        if attn is not None:
            attn = np.concatenate([attn[rows], res.attn[rows][:, None]], axis=1)  # type: ignore[index]
        at_max = t + 1 >= limits[sent]  # [n]
        finished = finished | (tok == eos) | np.isneginf(top) | at_max[:, None]
        ended = finished.all(axis=1)
        for i, j in zip(*np.nonzero(finished)):
            r, s = i * W + j, sent[i]
            if _collect(hist[r], eos, bool(at_max[i])):
                hyps[s].append(Result(hist[r].tolist(), float(top[i, j]),
                                      None if attn is None else attn[r, :, :src_lengths[s]].copy()))
        for i in np.flatnonzero(ended):
            s = sent[i]
            best = sorted(hyps[s], key=lambda h: -h.score)[: opts.n_best]
            results[s] = best + [_filler(opts, int(src_lengths[s]))] * (opts.n_best - len(best))
        live = np.flatnonzero(~ended)
        if live.size == 0:
            break
        keep = (live[:, None] * W + np.arange(W)).ravel()  # rows of the next step
        tokens, reorder, cum, hist = tok.ravel()[keep], rows[keep], new_cum[keep], hist[keep]
        attn = None if attn is None else attn[keep]
        finished = finished[live]
        if live.size < n or width != W:  # layout changed: static follows the rows
            backend.keep(reorder)
        sent, width = sent[live], W
    return results


def joeynmt_search(backend: Backend, src: np.ndarray, src_lengths: np.ndarray,
                   opts: SearchOptions) -> list[list[Result]]:
    """src [B,S] int64 (padded, sources framed with EOS), src_lengths [B] int64 -> per sentence
    ``n_best`` Results (greedy: one), best first, as Joey NMT 2.3 decodes them (module
    docstring). ``ConfigError`` for options Joey's recurrent search does not have."""
    opts.validate()
    if opts.no_repeat_ngram_size:
        raise ConfigError("no_repeat_ngram_size is not reproduced by the joeynmt search style",
                          "leave it at 0 for Joey NMT models")
    if opts.length_penalty == "avg":
        raise ConfigError("length_penalty 'avg' does not exist in Joey NMT (it has the GNMT penalty)",
                          "use length_penalty 'gnmt' (Joey's beam_alpha) or 'none'")
    return (_greedy if opts.beam_size < 2 else _beam)(backend, src, src_lengths, opts)


__all__ = ["best_tokens", "joeynmt_search"]
