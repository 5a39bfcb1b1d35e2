"""The PyTorch reference search: greedy and beam search on the PyTorch model itself.

Written independently from ``s2s_export.runtime.search`` (different code: one sentence at a
time, plain Python loops over hypotheses, the full log-probs of ``model.decode_step`` at every
step, no top-K shortcut, no batch bookkeeping), following the semantics of
docs/architecture.md, so that a bug in one cannot hide in both:

* ids: the decoder starts from ``start_id`` and ``eos_id`` ends a hypothesis (default: the
  model's own, ``conventions.conventions_of``); ``blocked`` ids are never generated;
* length = generated tokens, EOS included; maximum length per sentence
  ``min(max_length, ceil(max_length_ratio * len(src)))`` (at least 1), where with
  ``max_length_batch_factor`` ``max_length`` is ``int(factor * the longest of src_ids)`` (the
  runtime's batch rule, for ``src_ids`` given as one batch); EOS is blocked (-inf) while fewer
  than ``min_length`` tokens were generated; ``no_repeat_ngram_size`` n blocks a token that would
  repeat an n-gram of the hypothesis; -inf candidates never count; when no candidate is left, the
  hypothesis ends with a forced EOS scored -inf;
* greedy: argmax until EOS or the maximum length;
* beam (HF-style, early stopping): rank all (hypothesis, token) extensions; EOS ranked within
  the first ``beam`` finishes a hypothesis, other EOS are skipped, non-EOS fill ``beam`` alive;
  done with ``beam`` finished, at the maximum length (alive ones finish as they are) or with
  nothing alive; the ``n_best`` best by score / length penalty (``gnmt`` ((5+len)/6)^alpha,
  ``avg`` len^alpha).

``src_ids`` are complete sources as the model sees them (ending with EOS).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor


def _penalty(kind: str, alpha: float, length: int) -> float:
    if kind == "gnmt":
        return ((5.0 + length) / 6.0) ** alpha
    if kind == "avg":
        return float(length) ** alpha
    if kind == "none":
        return 1.0
    raise ValueError(f"unknown length penalty {kind!r}")


def _block(log_probs: Tensor, generated: list[int], eos: int, min_length: int, ngram: int,
           blocked: tuple[int, ...] = ()) -> Tensor:
    """log_probs [V] of one hypothesis with blocked tokens at -inf (a copy)."""
    lp = log_probs.clone()
    for i in blocked:
        lp[i] = float("-inf")
    if len(generated) < min_length:
        lp[eos] = float("-inf")
    if ngram > 0 and len(generated) >= ngram:
        tail = generated[len(generated) - ngram + 1:]
        for i in range(len(generated) - ngram + 1):
            if generated[i:i + ngram - 1] == tail:
                lp[generated[i + ngram - 1]] = float("-inf")
    return lp


def _rows(tensors: dict[str, Tensor], index: list[int]) -> dict[str, Tensor]:
    idx = torch.tensor(index, dtype=torch.long)
    return {k: v.index_select(0, idx) for k, v in tensors.items()}


def _greedy(model: Any, static: dict[str, Tensor], state: dict[str, Tensor], limit: int,
            min_length: int, ngram: int, penalty: Any, special: tuple[int, int, tuple[int, ...]]
            ) -> list[tuple[Any, ...]]:
    start, eos, blocked = special
    generated: list[int] = []
    attention: list[Tensor] = []
    total = 0.0
    token = start
    while len(generated) < limit:
        log_probs, state, attn = model.decode_step(torch.tensor([token]), static, state)
        lp = _block(log_probs[0], generated, eos, min_length, ngram, blocked)
        token = int(torch.argmax(lp))
        if lp[token] == float("-inf"):  # nothing selectable: EOS forced
            token = eos
        total += float(lp[token])
        generated.append(token)
        attention.append(attn[0])
        if token == eos:
            break
    return [(generated, total / penalty(len(generated)), torch.stack(attention))]


def _beam(model: Any, static: dict[str, Tensor], state: dict[str, Tensor], limit: int, beam: int,
          min_length: int, ngram: int, penalty: Any, n_best: int, special: tuple[int, int, tuple[int, ...]]
          ) -> list[tuple[Any, ...]]:
    bos, eos, blocked = special
    # alive: (generated ids, cumulative log-prob, row in `state`, attention rows)
    alive: list[tuple[list[int], float, int, list[Tensor]]] = [([], 0.0, 0, [])]
    finished: list[tuple[list[int], float, Tensor]] = []
    for step in range(limit):
        n = len(alive)
        tokens = torch.tensor([h[0][-1] if h[0] else bos for h in alive])
        state = _rows(state, [h[2] for h in alive])
        log_probs, state, attn = model.decode_step(tokens, _rows(static, [0] * n), state)
        V = log_probs.size(1)
        scores = torch.stack([h[1] + _block(log_probs[i], h[0], eos, min_length, ngram, blocked).double()
                              for i, h in enumerate(alive)])  # [n,V] float64
        flat = scores.flatten()
        ranking = torch.argsort(flat, descending=True, stable=True).tolist()
        if float(flat[ranking[0]]) == float("-inf"):  # nothing selectable: every alive one ends, EOS forced
            finished += [(ids + [eos], float("-inf"), torch.stack(att + [attn[h]]))
                         for h, (ids, _, _, att) in enumerate(alive)]
            break
        next_alive: list[tuple[list[int], float, int, list[Tensor]]] = []
        for rank, index in enumerate(ranking):
            score = float(flat[index])
            if score == float("-inf"):
                break
            h, token = divmod(index, V)
            ids, _, _, att = alive[h]
            if token == eos:
                if rank < beam:
                    finished.append((ids + [eos], score / penalty(step + 1), torch.stack(att + [attn[h]])))
                continue
            next_alive.append((ids + [token], score, h, att + [attn[h]]))
            if len(next_alive) == beam:
                break
        if step + 1 >= limit:
            finished += [(ids, score / penalty(step + 1), torch.stack(att)) for ids, score, _, att in next_alive]
            break
        if len(finished) >= beam or not next_alive:
            break
        alive = next_alive
    finished.sort(key=lambda f: -f[1])
    return finished[:n_best]


def returns_attention(style: str) -> bool:
    """Whether ``reference_search`` of ``style`` can return the attention (a style module says
    ``RETURNS_ATTENTION = False`` when its tool's search does not give it)."""
    if style == "s2s":
        return True
    import importlib

    return bool(getattr(importlib.import_module(f"{__package__}.styles.{style}"), "RETURNS_ATTENTION", True))


def reference_search(model: Any, src_ids: list[list[int]], beam_size: int = 1, max_length: int = 200,
                     max_length_ratio: float | None = None, min_length: int = 0, length_penalty: str = "none",
                     alpha: float = 0.0, n_best: int = 1, no_repeat_ngram_size: int = 0,
                     return_attention: bool = False, start_id: int | None = None, eos_id: int | None = None,
                     blocked: tuple[int, ...] = (), max_length_batch_factor: float | None = None,
                     style: str = "s2s", **style_options: Any) -> list[list[tuple[Any, ...]]]:
    """Per source: up to ``n_best`` ``(ids, score)`` best first (``(ids, score, attn [T,S])``
    with ``return_attention``). ``beam_size`` 1 is greedy. ``model``: an ``nn.Module``
    implementing the decoding contract (run in eval mode, its mode restored after);
    ``start_id``/``eos_id`` default to its own (``conventions.conventions_of``). ``style``: whose
    decoder to reproduce (``s2s``: the semantics above; another name runs
    ``verify/styles/<style>.py``'s ``reference_search`` with the options it takes and
    ``style_options``, the style's own, e.g. ``batch_size`` for ``opennmt``)."""
    from ..conventions import conventions_of

    if beam_size < 1 or not 1 <= n_best <= beam_size:
        raise ValueError(f"need beam_size >= 1 and 1 <= n_best <= beam_size (got {beam_size}, {n_best})")
    if style != "s2s":
        import importlib

        import inspect

        run = importlib.import_module(f"{__package__}.styles.{style}").reference_search  # another tool's decoder
        options = dict(beam_size=beam_size, max_length=max_length, max_length_ratio=max_length_ratio,
                       min_length=min_length, length_penalty=length_penalty, alpha=alpha, n_best=n_best,
                       no_repeat_ngram_size=no_repeat_ngram_size, return_attention=return_attention,
                       start_id=start_id, eos_id=eos_id, blocked=blocked,
                       max_length_batch_factor=max_length_batch_factor, **style_options)
        takes = inspect.signature(run).parameters
        return run(model, src_ids, **{k: v for k, v in options.items()  # type: ignore[no-any-return]
                                      if k in takes and (v is not None or k not in ("start_id", "eos_id"))})
    if style_options:
        raise ValueError(f"options {sorted(style_options)} are not options of the s2s style")
    conv = conventions_of(model)
    start = conv.start_id if start_id is None else int(start_id)
    eos = int(conv.tgt.eos if eos_id is None else eos_id)  # type: ignore[arg-type]
    ids_spec = (start, eos, tuple(int(i) for i in blocked))
    if max_length_batch_factor is not None and src_ids:
        max_length = max(1, int(max(len(s) for s in src_ids) * max_length_batch_factor))

    def penalty(length: int) -> float:
        return _penalty(length_penalty, alpha, length)

    was_training = model.training
    model.eval()
    out: list[list[tuple[Any, ...]]] = []
    try:
        with torch.no_grad():
            for ids in src_ids:
                limit = max_length
                if max_length_ratio is not None:
                    limit = min(max_length, max(1, math.ceil(max_length_ratio * len(ids))))
                static, state = model.encode(torch.tensor([ids], dtype=torch.long),
                                             torch.tensor([len(ids)], dtype=torch.long))
                if beam_size == 1:
                    hyps = _greedy(model, static, state, limit, min_length, no_repeat_ngram_size, penalty, ids_spec)
                else:
                    hyps = _beam(model, static, state, limit, beam_size, min_length, no_repeat_ngram_size,
                                 penalty, n_best, ids_spec)
                out.append([(h[0], h[1], h[2].numpy()) if return_attention else (h[0], h[1]) for h in hyps])
    finally:
        model.train(was_training)
    return out


def forced_log_probs(model: Any, src_ids: list[int], out_ids: list[int], start_id: int | None = None) -> Any:
    """PyTorch's log-probs along a given output: row t [V] is the distribution of token t given
    ``out_ids[:t]`` (the start token first: ``start_id``, default the model's), float32 numpy
    [len(out_ids), V]. Scores an output of another decoder under the PyTorch model
    (``s2s verify``: margins at a divergence)."""
    was_training = model.training
    model.eval()
    rows = []
    try:
        with torch.no_grad():
            static, state = model.encode(torch.tensor([src_ids], dtype=torch.long),
                                         torch.tensor([len(src_ids)], dtype=torch.long))
            from ..conventions import conventions_of

            token = conventions_of(model).start_id if start_id is None else int(start_id)
            for next_token in out_ids:
                log_probs, state, _ = model.decode_step(torch.tensor([token]), static, state)
                rows.append(log_probs[0].float())
                token = int(next_token)
    finally:
        model.train(was_training)
    if not rows:
        return torch.zeros(0, 0).numpy()
    return torch.stack(rows).numpy()


__all__ = ["forced_log_probs", "reference_search"]
