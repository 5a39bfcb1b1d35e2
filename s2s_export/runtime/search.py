"""Greedy and beam search over the ``Backend`` protocol (torch-free, written once for every backend).

Semantics (docs/architecture.md; ``s2s_export.verify.reference`` implements them independently):

* Ids: the decoder starts from ``opts.start_id``; ``opts.eos_id`` ends a hypothesis;
  ``opts.blocked`` are never generated (format-2 bundles: the target pad and bos and the bundle's
  ``never_generate``, also left out of the step graph's top-K; format-1 bundles: none, as before).
* Length = number of generated tokens, EOS included. Per sentence the maximum length is
  ``min(max_length, ceil(max_length_ratio * src_len))`` (``src_len`` counts the source framing;
  at least 1); with ``max_length_batch_factor`` (Joey NMT's rule) ``max_length`` is replaced by
  ``int(factor * the batch's longest src_len)``. ``min_length`` = the least number of tokens
  before EOS: EOS is blocked while fewer than ``min_length`` tokens were generated.
  ``no_repeat_ngram_size`` = n: a token that would repeat an n-gram already in the hypothesis
  is blocked. Blocked = log-prob -inf; a candidate scoring -inf is never selected. When nothing
  is selectable, the hypothesis ends with a forced EOS and the score -inf.
* Greedy: argmax each step; a row finishes at EOS (part of ids and score) or at its maximum
  length; finished rows leave the batch.
* Beam (HF-style, early stopping): one alive hypothesis per sentence at step 0, then ``beam``.
  Every step ranks all (hypothesis, token) extensions by cumulative log-prob and walks down
  the ranking: an EOS extension ranked within the first ``beam`` becomes a finished hypothesis
  (score normalised by the length penalty), other EOS extensions are skipped, non-EOS
  extensions fill the alive set up to ``beam``. A sentence is done with ``beam`` finished
  hypotheses, at its maximum length (its alive hypotheses are then finished as they are), or
  when nothing is left alive. Result: the ``n_best`` finished hypotheses with the best
  normalised score, best first (ties: the order they finished in).
* Length penalty (on finished hypotheses only): ``none``; ``gnmt`` ((5+len)/6)^alpha;
  ``avg`` len^alpha. Reported score = cumulative log-prob / penalty (greedy too).

Candidates: the exact walk needs each row's best ``beam + 1`` extensions (one of them may be
EOS), so the top-K outputs of the step graph suffice when K >= beam + 1 (greedy: K >= 1). The
full ``log_probs [B,V]`` are fetched instead when beam == K, when ``full_distribution`` is
set, and on the steps where a feature masks tokens (``min_length``, ``no_repeat_ngram_size``).

Fused greedy: a backend with a greedy graph (``FusedGreedy``) runs plain greedy requests
(no min_length, n-gram blocking, attention or full distribution) as one graph run with the same
result, where it pays (the ONNX Runtime backend: batches of up to 16 sentences); the loop in
``greedy_search`` below is the reference and the path for everything else.

Batch layout: a batch is B sentences; beam search keeps ``beam`` rows (slots) per active
sentence, a slot with nothing alive carries score -inf. Finished sentences leave the batch
(``backend.keep``), so no step runs for them.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, NamedTuple, cast

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import ConfigError
from ..vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from .backends.base import Backend, FusedGreedy, StepResult

PENALTIES = ("none", "gnmt", "avg")
STYLE_NAMES = ("s2s", "joeynmt", "opennmt")
MAX_BEAM, MAX_LENGTH, MAX_ALPHA = 1024, 1_000_000, 10.0  # beyond these an option is a mistake


def _int(name: str, value: object, lo: int, hi: int, fix: str) -> None:
    """``ConfigError`` unless ``value`` is an int (not a bool, not a float) within ``lo..hi``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name} must be an integer (got {value!r})", fix)
    if int(value) < lo:
        raise ConfigError(f"{name} must be >= {lo} (got {value})", fix)
    if int(value) > hi:
        raise ConfigError(f"{name} must be at most {hi:,} (got {value})", fix)


def _real(name: str, value: object, lo: float, hi: float, fix: str, positive: bool = False) -> None:
    """``ConfigError`` unless ``value`` is a finite real number within ``lo..hi`` (``positive``:
    ``lo`` is exclusive, the message says ``> 0``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{name} must be a number (got {value!r})", fix)
    v = float(value)
    if not math.isfinite(v):
        raise ConfigError(f"{name} must be finite (got {value})", fix)
    if (v <= 0 if positive else v < lo):
        raise ConfigError(f"{name} must be {'> 0' if positive else f'>= {lo:g}'} (got {value})", fix)
    if v > hi:
        raise ConfigError(f"{name} must be at most {hi:g} (got {value})", fix)


class Result(NamedTuple):
    """One finished hypothesis: ids (EOS included when produced), normalised score, and the
    attention [len(ids), src_len] when asked."""

    ids: list[int]
    score: float
    attention: np.ndarray | None = None


@dataclass(frozen=True)
class SearchOptions:
    beam_size: int = 1
    n_best: int = 1
    max_length: int = 200
    max_length_ratio: float | None = None
    min_length: int = 0
    length_penalty: str = "none"
    alpha: float = 0.0
    no_repeat_ngram_size: int = 0
    return_attention: bool = False
    full_distribution: bool = False
    # the search style (whose decoder it reproduces: STYLES) and Joey NMT's batch length rule
    style: str = "s2s"
    max_length_batch_factor: float | None = None
    # the bundle's target conventions (Translator sets them from the manifest; format 1 here):
    # the decoder's first token, EOS, the filler of id arrays, UNK, and the ids never generated
    start_id: int = BOS_ID
    eos_id: int = EOS_ID
    pad_id: int = PAD_ID
    unk_id: int | None = UNK_ID
    blocked: tuple[int, ...] = ()

    def validate(self) -> "SearchOptions":
        """``ConfigError`` naming the first option of a wrong type or outside its range (every
        entry point calls this before any work)."""
        _int("beam_size", self.beam_size, 1, MAX_BEAM, "pass a beam of 1 or more")
        _int("n_best", self.n_best, 1, MAX_BEAM, "pass 1 or more")
        if self.n_best > self.beam_size:
            raise ConfigError(f"n_best {self.n_best} must be within 1..beam_size ({self.beam_size})",
                              "pass n_best <= beam_size (or a larger beam)")
        _int("max_length", self.max_length, 1, MAX_LENGTH, "pass a positive max_length")
        _int("min_length", self.min_length, 0, MAX_LENGTH, "pass 0 or more")
        _int("no_repeat_ngram_size", self.no_repeat_ngram_size, 0, MAX_LENGTH, "pass 0 (off) or an n-gram size")
        if self.max_length_batch_factor is None and self.min_length > self.max_length:
            raise ConfigError(f"min_length {self.min_length} is more than max_length {self.max_length}: no "
                              "output could end with EOS", "pass a min_length at most max_length")
        if self.max_length_ratio is not None:
            _real("max_length_ratio", self.max_length_ratio, 0.0, 1e4, "pass a positive ratio", True)
        if self.max_length_batch_factor is not None:
            _real("max_length_batch_factor", self.max_length_batch_factor, 0.0, 1e4, "pass a positive factor",
                  True)
        if self.length_penalty not in PENALTIES:
            raise ConfigError(f"length_penalty {self.length_penalty!r} is unknown", f"use one of: {', '.join(PENALTIES)}")
        _real("alpha", self.alpha, -MAX_ALPHA, MAX_ALPHA, "pass a number like 0.6")
        for name in ("return_attention", "full_distribution"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False (got {getattr(self, name)!r})", "pass a bool")
        if self.style not in STYLE_NAMES:
            raise ConfigError(f"search_style {self.style!r} is unknown", f"use one of: {', '.join(STYLE_NAMES)}")
        return self

    def max_lengths(self, src_lengths: np.ndarray) -> np.ndarray:
        """[B] maximum output length of each sentence of this batch: ``max_length``, or with
        ``max_length_batch_factor`` Joey NMT's ``int(factor * longest source of the batch)``
        (joeynmt/search.py ``search``, when ``max_output_length`` is unset); then capped by
        ``ceil(max_length_ratio * src_len)`` per sentence."""
        limit = int(self.max_length)
        if self.max_length_batch_factor is not None and len(src_lengths):
            limit = int(float(np.max(src_lengths)) * self.max_length_batch_factor)
        out = np.full(len(src_lengths), max(limit, 1), dtype=np.int64)
        if self.max_length_ratio is not None:
            ratio = np.ceil(self.max_length_ratio * np.asarray(src_lengths, dtype=np.float64)).astype(np.int64)
            out = np.minimum(out, np.maximum(ratio, 1))
        return out

    def penalty(self, length: int) -> float:
        if self.length_penalty == "gnmt":
            return ((5.0 + length) / 6.0) ** self.alpha
        if self.length_penalty == "avg":
            return float(length) ** self.alpha
        return 1.0

    def masks_at(self, t: int) -> bool:
        """Whether a feature blocks tokens at step t (t tokens generated so far)."""
        n = self.no_repeat_ngram_size
        return t < self.min_length or (n > 0 and t >= n)

    def full_path(self, topk: int) -> bool:
        """Whether every step needs the full log_probs (raise when the search cannot be exact)."""
        beam = self.beam_size
        if self.full_distribution or (beam > 1 and topk == beam):
            return True
        if topk >= (1 if beam == 1 else beam + 1):
            return False
        raise ConfigError(f"beam_size {beam} exceeds the bundle's top-K ({topk})",
                          f"use a beam of at most {topk} or re-export with --topk {beam + 1} "
                          "(when translating, full_distribution=True also searches over the full log_probs)")


def masked(log_probs: np.ndarray, hist: np.ndarray, opts: SearchOptions) -> np.ndarray:
    """log_probs [R,V] with blocked tokens at -inf (a copy); hist [R,t] generated so far.
    Blocked: ``opts.blocked`` (never generated), EOS before ``min_length``, tokens that would
    repeat an n-gram (``no_repeat_ngram_size``)."""
    lp = np.array(log_probs, dtype=np.float32, copy=True)
    R, t = hist.shape
    if opts.blocked:
        lp[:, list(opts.blocked)] = -np.inf
    if t < opts.min_length:
        lp[:, opts.eos_id] = -np.inf
    n = opts.no_repeat_ngram_size
    if n > 0 and t >= n:
        grams = sliding_window_view(hist, n, axis=1)  # [R, t-n+1, n]
        hit = (grams[:, :, :-1] == hist[:, None, t - n + 1:]).all(axis=2)  # [R, t-n+1]
        r, w = np.nonzero(hit)
        lp[r, grams[r, w, -1]] = -np.inf
    return lp


def topk_unmasked(backend: Backend, opts: SearchOptions, ids: Iterable[int] | None = None) -> tuple[int, ...]:
    """The ids of ``ids`` (default ``opts.blocked``) that the backend's top-K outputs may still
    hold: a format-2 step graph masks its ``io.blocked`` before the top-K (``topk_blocked``), so
    only the others need masking per step (``np.isin`` on every step cost ~45 us at batch 1,
    measured)."""
    masked_in_graph = set(map(int, getattr(backend, "topk_blocked", ())))
    return tuple(int(i) for i in (opts.blocked if ids is None else ids) if int(i) not in masked_in_graph)


def candidates(res: StepResult, full: bool, C: int, hist: np.ndarray, opts: SearchOptions,
               topk_blocked: tuple[int, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each row's best C extensions: (log-probs [R,C'] float64, ids [R,C'] int64), C' <= C;
    blocked tokens score -inf. ``topk_blocked``: the blocked ids the top-K outputs may hold
    (``topk_unmasked``; default all of ``opts.blocked``)."""
    if not full:
        lp, ids = res.topk_log_probs[:, :C].astype(np.float64), res.topk_ids[:, :C]
        blocked = opts.blocked if topk_blocked is None else topk_blocked
        if blocked:
            lp[np.isin(ids, blocked)] = -np.inf
        return lp, ids
    assert res.log_probs is not None
    lp = masked(res.log_probs, hist, opts)
    V = lp.shape[1]
    ids = (np.broadcast_to(np.arange(V), lp.shape) if C >= V
           else np.argpartition(-lp, C - 1, axis=1)[:, :C])
    return np.take_along_axis(lp, ids, 1).astype(np.float64), np.ascontiguousarray(ids)


def _attention(hist: np.ndarray | None, row: Any, src_len: int) -> np.ndarray | None:
    return None if hist is None else hist[row, :, :src_len].copy()


@functools.lru_cache(maxsize=256)
def _validated_cached(opts: SearchOptions) -> SearchOptions:
    return opts.validate()


def _validated(opts: SearchOptions) -> SearchOptions:
    """``opts.validate()``, once per distinct (frozen, hashable) options value: the batch-1
    latency path validates the same request over and over."""
    try:
        return _validated_cached(opts)
    except TypeError:  # an unhashable field: validate every time
        return opts.validate()


def _fused(backend: Backend) -> bool:
    """``isinstance(backend, FusedGreedy)`` without the runtime protocol check (16 us per call,
    measured, paid by every batch-1 request): the two members it checks (0.4 us)."""
    return hasattr(backend, "greedy") and hasattr(backend, "topk_blocked")


def greedy_search(backend: Backend, src: np.ndarray, src_lengths: np.ndarray,
                  opts: SearchOptions) -> list[list[Result]]:
    """src [B,S] int64 (padded), src_lengths [B] -> one [Result] per sentence."""
    always_full = _validated(opts).full_path(backend.topk)
    B = len(src_lengths)
    max_len = opts.max_lengths(src_lengths)
    if (_fused(backend) and not always_full and not opts.return_attention
            and opts.min_length == 0 and opts.no_repeat_ngram_size == 0
            and set(opts.blocked) <= set(cast(FusedGreedy, backend).topk_blocked)):
        fused = cast(FusedGreedy, backend).greedy(src, src_lengths, max_len)  # the loop below, in one graph run
        if fused is not None:
            ids, scores, lengths = fused
            return [[Result(ids[b, :n].tolist(), float(scores[b]) / opts.penalty(n))]
                    for b, n in enumerate(lengths.tolist())]
    backend.encode(src, src_lengths)
    unmasked = topk_unmasked(backend, opts)
    rows = np.arange(B)  # sentence of each row
    tokens, reorder = np.full(B, opts.start_id, dtype=np.int64), np.arange(B)
    hist = np.zeros((B, 0), dtype=np.int64)  # [R,t] generated ids
    score = np.zeros(B)
    attn = np.zeros((B, 0, src.shape[1]), dtype=np.float32) if opts.return_attention else None
    results: list[list[Result]] = [[] for _ in range(B)]
    for t in range(int(max_len.max())):
        full = always_full or opts.masks_at(t)
        res = backend.step(tokens, reorder, full=full, attn=opts.return_attention)
        if full:
            lp = masked(res.log_probs, hist, opts)  # type: ignore[arg-type]  # [R,V]
            tok = lp.argmax(axis=1)
            tok_lp = lp[np.arange(len(tok)), tok]
        else:
            lp, ids = candidates(res, False, backend.topk, hist, opts, unmasked)  # [R,K] each, blocked at -inf
            best = lp.argmax(axis=1)  # the first best: top-K order on ties
            tok, tok_lp = ids[np.arange(len(best)), best], lp[np.arange(len(best)), best]
        tok = np.where(np.isfinite(tok_lp), tok, opts.eos_id)  # nothing selectable: EOS forced (-inf)
        score = score + tok_lp
        hist = np.concatenate([hist, tok[:, None]], axis=1)
        if attn is not None:
            attn = np.concatenate([attn, res.attn[:, None]], axis=1)  # type: ignore[index]
        done = (tok == opts.eos_id) | (t + 1 >= max_len[rows])
        tokens, reorder = tok, np.arange(len(rows))
        if not done.any():
            continue
        for i in np.flatnonzero(done):
            s = rows[i]
            results[s] = [Result(hist[i].tolist(), float(score[i]) / opts.penalty(t + 1),
                                 _attention(attn, i, int(src_lengths[s])))]
        live = np.flatnonzero(~done)
        if live.size == 0:
            break
        backend.keep(live)  # finished rows leave the batch
        tokens, reorder = tok[live], live
        rows, hist, score = rows[live], hist[live], score[live]
        attn = None if attn is None else attn[live]
    return results


def _rank(cum: np.ndarray, lp: np.ndarray, ids: np.ndarray, n: int, width: int, W: int, pad_id: int
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank each sentence's extensions, best first: cumulative scores [n, width*C] (C = lp's
    columns), their token ids and source rows (rows of this step's batch); padded with -inf
    to at least W columns (a tiny vocabulary can offer fewer candidates)."""
    C = lp.shape[1]
    cand = (cum[:, None] + lp).reshape(n, width * C)
    order = np.argsort(-cand, axis=1, kind="stable")
    at = np.arange(n)[:, None]  # gathers along axis 1: x[at, order] = take_along_axis(x, order, 1), cheaper
    cand = cand[at, order]
    cand_ids = ids.reshape(n, width * C)[at, order]
    cand_rows = order // C + (np.arange(n) * width)[:, None]
    if cand.shape[1] < W:
        pad = ((0, 0), (0, W - cand.shape[1]))
        cand = np.pad(cand, pad, constant_values=-np.inf)
        cand_ids = np.pad(cand_ids, pad, constant_values=pad_id)  # scored -inf: never selected
        cand_rows = np.pad(cand_rows, pad, mode="edge")  # a row of the same sentence
    return cand, cand_ids, cand_rows


def beam_search(backend: Backend, src: np.ndarray, src_lengths: np.ndarray,
                opts: SearchOptions) -> list[list[Result]]:
    """src [B,S] int64 (padded), src_lengths [B] -> per sentence up to n_best Results, best first."""
    always_full = opts.validate().full_path(backend.topk)
    B, W = len(src_lengths), opts.beam_size
    max_len = opts.max_lengths(src_lengths)
    backend.encode(src, src_lengths)
    unmasked = topk_unmasked(backend, opts)
    sent, width = np.arange(B), 1  # active sentences; rows per active sentence (1 at step 0)
    tokens, reorder = np.full(B, opts.start_id, dtype=np.int64), np.arange(B)
    cum = np.zeros(B)  # [R] cumulative log-prob of each row's hypothesis (-inf: empty slot)
    hist = np.zeros((B, 0), dtype=np.int64)  # [R,t]
    attn = np.zeros((B, 0, src.shape[1]), dtype=np.float32) if opts.return_attention else None
    finished: list[list[Result]] = [[] for _ in range(B)]
    n_finished = np.zeros(B, dtype=np.int64)
    for t in range(int(max_len.max())):
        full = always_full or opts.masks_at(t)
        res = backend.step(tokens, reorder, full=full, attn=opts.return_attention)
        lp, ids = candidates(res, full, W + 1, hist, opts, unmasked)  # [R,C] each
        cand, cand_ids, cand_rows = _rank(cum, lp, ids, len(sent), width, W, opts.pad_id)  # [n, >=W] each
        ok, eos = np.isfinite(cand), cand_ids == opts.eos_id
        fin = eos & ok & (np.arange(cand.shape[1]) < W)  # EOS ranked within the first W
        alive = ~eos & ok
        alive &= np.cumsum(alive, axis=1) <= W  # the first W non-EOS extensions
        pick = np.argsort(~alive, axis=1, kind="stable")[:, :W]  # alive first, then filler slots
        at = np.arange(len(pick))[:, None]  # gathers along axis 1: x[at, pick] = take_along_axis(x, pick, 1)
        new_ok = alive[at, pick]  # [n,W]
        new_rows = cand_rows[at, pick].ravel()  # [n*W]
        new_ids = cand_ids[at, pick].ravel()
        new_cum = np.where(new_ok, cand[at, pick], -np.inf).ravel()
        length = t + 1
        n_finished[sent] += fin.sum(axis=1)
        for i, j in zip(*np.nonzero(fin)):  # bookkeeping of finished hypotheses (few per step)
            r, s = cand_rows[i, j], sent[i]
            a = None if attn is None else np.concatenate([attn[r], res.attn[r][None]])  # type: ignore[index]
            finished[s].append(Result(hist[r].tolist() + [opts.eos_id], float(cand[i, j]) / opts.penalty(length),
                                      None if a is None else a[:, :src_lengths[s]]))
        hist_before, attn_before = hist, attn
        hist = np.concatenate([hist[new_rows], new_ids[:, None]], axis=1)
        if attn is not None:
            attn = np.concatenate([attn[new_rows], res.attn[new_rows][:, None]], axis=1)  # type: ignore[index]
        at_max = length >= max_len[sent]
        for i in np.flatnonzero(at_max):  # out of length: alive hypotheses finish as they are
            for k in np.flatnonzero(new_ok[i]):
                r = i * W + k
                finished[sent[i]].append(Result(hist[r].tolist(), float(new_cum[r]) / opts.penalty(length),
                                                _attention(attn, r, int(src_lengths[sent[i]]))))
        stuck = ~ok.any(axis=1)  # nothing selectable: alive hypotheses end with a forced EOS
        for i in np.flatnonzero(stuck):
            for k in np.flatnonzero(np.isfinite(cum[i * width:(i + 1) * width])):
                r = i * width + k
                a = None if attn_before is None else np.concatenate([attn_before[r], res.attn[r][None]])  # type: ignore[index]
                finished[sent[i]].append(Result(hist_before[r].tolist() + [opts.eos_id], -math.inf,
                                                None if a is None else a[:, :src_lengths[sent[i]]]))
        done = at_max | (n_finished[sent] >= W) | ~new_ok.any(axis=1)
        live = np.flatnonzero(~done)
        if live.size == 0:
            break
        keep = (live[:, None] * W + np.arange(W)).ravel()  # rows of the next batch
        tokens, reorder, cum, hist = new_ids[keep], new_rows[keep], new_cum[keep], hist[keep]
        attn = None if attn is None else attn[keep]
        if live.size < len(sent) or width != W:  # layout changed: static follows the rows
            backend.keep(reorder)
        sent, width = sent[live], W
    return [sorted(f, key=lambda h: -h.score)[: opts.n_best] for f in finished]


def s2s_search(backend: Backend, src: np.ndarray, src_lengths: np.ndarray,
               opts: SearchOptions) -> list[list[Result]]:
    """The ``s2s`` style: greedy for beam_size 1 (the same result as a beam of 1), HF-style beam
    search otherwise."""
    return (greedy_search if opts.beam_size == 1 else beam_search)(backend, src, src_lengths, opts)


def _style(module: str, function: str) -> Callable[..., list[list[Result]]]:
    def run(backend: Backend, src: np.ndarray, src_lengths: np.ndarray, opts: SearchOptions) -> list[list[Result]]:
        import importlib

        return getattr(importlib.import_module(f"{__package__}.styles.{module}"), function)(
            backend, src, src_lengths, opts)
    return run


# style name -> search function (backend, src [B,S], src_lengths [B], opts) -> per sentence up to
# n_best Results, best first. Each reproduces one tool's decoder exactly (runtime/styles/).
STYLES: dict[str, Callable[..., list[list[Result]]]] = {
    "s2s": s2s_search,
    "joeynmt": _style("joeynmt", "joeynmt_search"),
    "opennmt": _style("opennmt", "opennmt_search"),
}


def search(backend: Backend, src: np.ndarray, src_lengths: np.ndarray,
           opts: SearchOptions) -> list[list[Result]]:
    """Run ``opts.style``'s search (``STYLES``)."""
    return STYLES[opts.style](backend, src, src_lengths, opts)


__all__ = ["PENALTIES", "Result", "STYLES", "SearchOptions", "beam_search", "candidates", "greedy_search",
           "masked", "s2s_search", "search"]
