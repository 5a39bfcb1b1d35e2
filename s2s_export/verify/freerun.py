"""Free-running parity: the runtime's search (``Translator``) against the PyTorch reference
search (``reference.reference_search``) on the same sources, greedy or beam.

Per sentence the best hypotheses are compared token by token:

* identical: the scores must agree within ``atol * len + rtol * |score|`` (the log-prob
  tolerance summed over the tokens);
* different: the first diverging step t (both share ``ids[:t]``), PyTorch's token ``a`` and the
  bundle's token ``b``, and PyTorch's log-prob margin ``lp[a] - lp[b]`` at step t given the
  shared prefix (``forced_log_probs``). Greedy: a margin of at most ``tie_margin`` is a **near
  tie** (two tokens PyTorch itself barely tells apart: a rounding difference may flip them,
  which is not a bug). Beam: the choice is not local (a near tie in the pruning of any
  hypothesis can change the winner), so the divergence is a near tie when PyTorch scores the
  bundle's whole hypothesis (normalised like the search) within ``tie_margin`` of its own best
  (``score_gap``: the two answers are equally good for the model). Otherwise it is a real
  **divergence**.

``agreement`` = (identical + near ties) / sentences; it must reach ``min_exact``.
Quality against references (when there are any): corpus BLEU-4 of each side (``bleu``), or for
``g2p`` the phoneme error rate (PER) and word error rate (WER) of each side
(``s2s_export.train.metrics``), and their difference (bundle - PyTorch). ``agreement_bleu``
scores the bundle's outputs with PyTorch's as references (100 = identical).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..vocab import detokenize
from .bleu import corpus_bleu
from .reference import _penalty, forced_log_probs, reference_search


def first_difference(a: Sequence[int], b: Sequence[int]) -> int:
    """The first index where two id lists differ (the shorter length if one is a prefix)."""
    return next((j for j, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def classify(lp: np.ndarray, ref_token: int | None, got_token: int | None, tie_margin: float,
             score_gap: float | None = None) -> dict[str, Any]:
    """A divergence at one step. ``lp`` [V]: PyTorch's log-probs at that step (shared prefix);
    ``None`` tokens: that side ended there. Returns ``{margin, near_tie}``: margin = lp[ref] -
    lp[got] (inf when a side has no token). Greedy (``score_gap`` None): near tie when
    |margin| <= tie_margin; beam: when |score_gap| <= tie_margin (PyTorch's best normalised
    score minus PyTorch's score of the bundle's hypothesis)."""
    if ref_token is None or got_token is None:
        margin = float("inf")
    else:
        margin = float(lp[ref_token]) - float(lp[got_token])
    near = abs(margin if score_gap is None else score_gap) <= tie_margin
    return {"margin": margin, "near_tie": bool(near)}


def reference_options(opts: Any) -> dict[str, Any]:
    """``reference_search``'s keyword arguments for a resolved ``runtime.SearchOptions``: the
    same request, as the runtime will run it (the bundle's defaults, ids and style included)."""
    return dict(beam_size=opts.beam_size, n_best=opts.n_best, max_length=opts.max_length,
                max_length_ratio=opts.max_length_ratio, min_length=opts.min_length,
                length_penalty=opts.length_penalty, alpha=opts.alpha,
                no_repeat_ngram_size=opts.no_repeat_ngram_size, start_id=opts.start_id, eos_id=opts.eos_id,
                blocked=opts.blocked, max_length_batch_factor=opts.max_length_batch_factor, style=opts.style)


def free_running(model: Any, translator: Any, sources: Sequence[Sequence[int]], *, beam_size: int = 1,
                 max_length: int | None = 200, tie_margin: float = 1e-3, min_exact: float = 1.0,
                 score_tol: tuple[float, float] = (1e-4, 1e-3), length_penalty: str | None = None,
                 alpha: float | None = None, reference: list[list[tuple[Any, ...]]] | None = None,
                 return_attention: bool = False, batch_size: int = 64
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Compare the runtime and the reference search on ``sources`` (id lists as the model sees
    them, framing included). Options left None are the bundle's defaults, for both searches.

    ``reference``: ``reference_search``'s result when already computed (same options).
    Returns (the JSON-able section, the raw outputs: ``{"pytorch": [ids], "backend": [ids],
    "pytorch_attention": [...], "backend_attention": [...]}`` (attention when asked))."""
    srcs = [list(map(int, s)) for s in sources]
    given = dict(beam_size=beam_size, max_length=max_length, length_penalty=length_penalty, alpha=alpha,
                 n_best=1, return_attention=return_attention)
    opts = translator.options(**given)
    got = translator.translate_ids(srcs, frame=False, max_batch_size=batch_size, **given)
    ref = reference if reference is not None else reference_search(
        model, srcs, return_attention=return_attention, **reference_options(opts))
    start = opts.start_id
    length_penalty, alpha = opts.length_penalty, opts.alpha
    vocab = translator.tgt_vocab
    src_vocab = translator.src_vocab

    def text(ids: Sequence[int], v: Any, kind: str) -> str:
        processor = getattr(translator, "tgt_text" if v is vocab else "src_text", None)
        tokens = v.decode(ids, strip=True)
        return processor.detokenize(tokens) if processor is not None else detokenize(tokens, kind)

    atol, rtol = score_tol
    exact = ties = 0
    max_score_diff, max_per_token, scores_ok = 0.0, 0.0, True
    mismatches: list[dict[str, Any]] = []
    pt_ids: list[list[int]] = []
    be_ids: list[list[int]] = []
    for i, (g, r) in enumerate(zip(got, ref)):
        g_ids, r_ids = [int(x) for x in g[0].ids], [int(x) for x in r[0][0]]
        g_score, r_score = float(g[0].score), float(r[0][1])
        pt_ids.append(r_ids)
        be_ids.append(g_ids)
        if g_ids == r_ids:
            exact += 1
            diff = abs(g_score - r_score)
            max_score_diff = max(max_score_diff, diff)
            max_per_token = max(max_per_token, diff / max(1, len(r_ids)))
            scores_ok = scores_ok and diff <= atol * len(r_ids) + rtol * abs(r_score)
            continue
        t = first_difference(r_ids, g_ids)
        lps = forced_log_probs(model, srcs[i], g_ids if beam_size > 1 else g_ids[: t + 1], start)
        a = r_ids[t] if t < len(r_ids) else None
        b = g_ids[t] if t < len(g_ids) else None
        gap = None
        if beam_size > 1 and len(g_ids):
            pt_of_got = float(sum(lps[j, tok] for j, tok in enumerate(g_ids))) / _penalty(
                length_penalty, alpha, len(g_ids))
            gap = r_score - pt_of_got
        step_lp = lps[t] if t < len(lps) else forced_log_probs(model, srcs[i], r_ids[: t + 1], start)[t]
        verdict = classify(step_lp, a, b, tie_margin, gap)
        ties += verdict["near_tie"]
        tok = vocab.tokens
        mismatches.append({
            "sentence": i, "step": t,
            "pytorch_token": a, "backend_token": b,
            "pytorch_token_text": tok[a] if a is not None and 0 <= a < len(tok) else None,
            "backend_token_text": tok[b] if b is not None and 0 <= b < len(tok) else None,
            "pytorch_log_prob": None if a is None else float(step_lp[a]),
            "backend_log_prob": None if b is None else float(step_lp[b]),
            **verdict, "score_gap": gap,
            "source": text(srcs[i], src_vocab, translator.src_tokenizer),
            "pytorch_output": text(r_ids, vocab, translator.tgt_tokenizer),
            "backend_output": text(g_ids, vocab, translator.tgt_tokenizer),
            "pytorch_score": r_score, "backend_score": g_score,
        })
    n = len(srcs)
    agreement = (exact + ties) / n if n else 1.0
    section = {
        "beam_size": beam_size, "sentences": n, "exact": exact, "near_ties": ties,
        "divergent": n - exact - ties, "exact_rate": exact / n if n else 1.0, "agreement": agreement,
        "min_exact": min_exact, "tie_margin": tie_margin, "max_length": max_length,
        "max_score_diff": max_score_diff, "max_score_diff_per_token": max_per_token, "scores_ok": scores_ok,
        "mismatches": mismatches,
        "passed": agreement >= min_exact - 1e-12 and scores_ok,
    }
    raw: dict[str, Any] = {"pytorch": pt_ids, "backend": be_ids}
    if return_attention:
        raw["pytorch_attention"] = [r[0][2] for r in ref]
        raw["backend_attention"] = [g[0].attention for g in got]
    return section, raw


def first_mismatch(mismatches: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The mismatch to show first: the first real divergence, else the first near tie."""
    return next((m for m in mismatches if not m["near_tie"]), mismatches[0] if mismatches else None)


def quality(pytorch: Sequence[Sequence[str]], backend: Sequence[Sequence[str]],
            references: Sequence[Sequence[str]] | None, g2p: bool) -> dict[str, Any]:
    """Token-level quality of both sides (see the module docstring)."""
    from ..train import metrics

    out: dict[str, Any] = {"agreement_bleu": corpus_bleu(backend, pytorch)}
    if references is None:
        return out
    refs = [list(r) for r in references]
    if g2p:
        sides = {name: {"per": metrics.token_error_rate(h, refs), "wer": metrics.word_error_rate(h, refs)}
                 for name, h in (("pytorch", pytorch), ("backend", backend))}
        out.update(metric="per/wer", **sides,
                   difference={k: sides["backend"][k] - sides["pytorch"][k] for k in ("per", "wer")})
    else:
        sides = {name: {"bleu": corpus_bleu(h, refs), "accuracy": metrics.exact_match(h, refs)}
                 for name, h in (("pytorch", pytorch), ("backend", backend))}
        out.update(metric="bleu", **sides,
                   difference={k: sides["backend"][k] - sides["pytorch"][k] for k in ("bleu", "accuracy")})
    return out


__all__ = ["classify", "first_difference", "first_mismatch", "free_running", "quality", "reference_options"]
