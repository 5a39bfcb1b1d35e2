"""The search alone, over a fake numpy backend implementing the Backend protocol.

The fake's log-probs are a deterministic function of (source, prefix) (a seeded random table),
so the same function also drives a torch module implementing the decoding contract: the
runtime's search and the independent PyTorch reference search must then agree exactly.
"""

from __future__ import annotations

import math
import zlib
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s2s_export.errors import ConfigError
from s2s_export.runtime.backends.base import Backend, StepResult
from s2s_export.runtime.search import SearchOptions, beam_search, greedy_search, masked, search
from s2s_export.vocab import BOS_ID, EOS_ID, PAD_ID

Fn = Callable[[tuple, tuple], np.ndarray]


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    m = x.max()
    return (x - m - np.log(np.exp(x - m).sum())).astype(np.float32)


def table_fn(V: int, scale: float = 2.0, eos_bias: float = -1.0, eos_growth: float = 0.4) -> Fn:
    """log-probs [V] float32 of (source ids, prefix ids incl. BOS): a seeded random table, EOS
    likelier as the output grows."""

    def fn(src: tuple, prefix: tuple) -> np.ndarray:
        seed = zlib.crc32(np.array((*src, -1, *prefix), dtype=np.int64).tobytes())
        logits = np.random.default_rng(seed).standard_normal(V) * scale
        logits[EOS_ID] += eos_bias + eos_growth * len(prefix)
        return log_softmax(logits)

    return fn


def copy_fn(V: int) -> Fn:
    """Peaked on the source token at the current position: greedy output = the source (EOS
    included), so a sentence's output length is its source length."""

    def fn(src: tuple, prefix: tuple) -> np.ndarray:
        logits = np.zeros(V, dtype=np.float32)
        logits[src[min(len(prefix) - 1, len(src) - 1)]] = 10.0
        return log_softmax(logits)

    return fn


def attn_fn(src: tuple, prefix: tuple, S: int) -> np.ndarray:
    seed = zlib.crc32(np.array((*prefix, -2, *src), dtype=np.int64).tobytes())
    w = np.zeros(S, dtype=np.float32)
    w[: len(src)] = np.random.default_rng(seed).random(len(src)) + 0.1
    return (w / w.sum()).astype(np.float32)


class FakeBackend:
    """Backend protocol in numpy; records every step's rows and full flag and every keep."""

    name = "fake"
    max_rows: int | None = None

    def __init__(self, fn: Fn, V: int, topk: int) -> None:
        self.fn, self.vocab_size, self.topk = fn, V, topk
        self.rows: list[int] = []
        self.fulls: list[bool] = []
        self.keeps: list[int] = []

    def encode(self, src: np.ndarray, src_lengths: np.ndarray) -> None:
        self.static = [tuple(int(x) for x in src[i, : src_lengths[i]]) for i in range(len(src_lengths))]
        self.state: list[tuple] = [()] * len(src_lengths)
        self.S = src.shape[1]

    def keep(self, rows: np.ndarray) -> None:
        self.static = [self.static[r] for r in rows]
        self.keeps.append(len(rows))

    def step(self, tokens: np.ndarray, reorder: np.ndarray, full: bool = False, attn: bool = False) -> StepResult:
        assert len(tokens) == len(reorder) == len(self.static)
        self.state = [self.state[r] + (int(t),) for r, t in zip(reorder, tokens)]
        lp = np.stack([self.fn(s, p) for s, p in zip(self.static, self.state)])
        self.rows.append(len(tokens))
        self.fulls.append(full)
        order = np.argsort(-lp, axis=1, kind="stable")[:, : self.topk]
        a = np.stack([attn_fn(s, p, self.S) for s, p in zip(self.static, self.state)]) if attn else None
        return StepResult(np.take_along_axis(lp, order, 1), order, lp if full else None, a)


def fake_model(fn: Fn):  # a torch module implementing the decoding contract with the same fn
    import torch

    class FakeModel(torch.nn.Module):
        pad_id, bos_id, eos_id = PAD_ID, BOS_ID, EOS_ID

        def encode(self, src, lengths):
            return {"src": src, "len": lengths}, {"hist": torch.full((src.size(0), 64), -1, dtype=torch.long)}

        def decode_step(self, tokens, static, state):
            hist = state["hist"].clone()
            lps, attns = [], []
            for i in range(len(tokens)):
                n = int((hist[i] >= 0).sum())
                hist[i, n] = tokens[i]
                src = tuple(int(x) for x in static["src"][i, : static["len"][i]])
                prefix = tuple(int(x) for x in hist[i, : n + 1])
                lps.append(fn(src, prefix))
                attns.append(attn_fn(src, prefix, static["src"].size(1)))
            return torch.from_numpy(np.stack(lps)), {"hist": hist}, torch.from_numpy(np.stack(attns))

    return FakeModel()


def batch(sources: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(s) for s in sources], dtype=np.int64)
    src = np.full((len(sources), lengths.max()), PAD_ID, dtype=np.int64)
    for row, s in zip(src, sources):
        row[: len(s)] = s
    return src, lengths


def ids_scores(results):
    return [[(r.ids, r.score) for r in res] for res in results]


# ---------------------------------------------------------------- semantics vs the reference
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_search_matches_reference(data: st.DataObject) -> None:
    from s2s_export.verify.reference import reference_search

    V = data.draw(st.integers(6, 14), "V")
    beam = data.draw(st.integers(1, 5), "beam")
    topk = data.draw(st.sampled_from([beam + 1, beam + 3, beam] if beam > 1 else [1, 3]), "topk")
    max_length = data.draw(st.integers(1, 9), "max_length")
    kw: dict[str, Any] = dict(
        beam_size=beam, n_best=data.draw(st.integers(1, beam), "n_best"), max_length=max_length,
        max_length_ratio=data.draw(st.sampled_from([None, 0.5, 1.5]), "ratio"),
        min_length=data.draw(st.integers(0, min(3, max_length)), "min_length"),  # more: refused (ConfigError)
        length_penalty=data.draw(st.sampled_from(["none", "gnmt", "avg"]), "penalty"),
        alpha=data.draw(st.sampled_from([0.0, 0.6, 1.0]), "alpha"),
        no_repeat_ngram_size=data.draw(st.integers(0, 3), "ngram"))
    sources = data.draw(st.lists(st.lists(st.integers(3, V - 1), max_size=6), min_size=1, max_size=4), "src")
    sources = [s + [EOS_ID] for s in sources]
    fn = table_fn(V, eos_bias=data.draw(st.sampled_from([-3.0, -1.0, 1.0]), "eos_bias"))
    attn = data.draw(st.booleans(), "attn")
    backend = FakeBackend(fn, V, topk)
    got = search(backend, *batch(sources), SearchOptions(**kw, return_attention=attn))
    want = reference_search(fake_model(fn), sources, return_attention=attn, **kw)
    assert [[r.ids for r in res] for res in got] == [[w[0] for w in ws] for ws in want]
    for res, ws, source in zip(got, want, sources):
        for r, w in zip(res, ws):
            assert r.score == pytest.approx(w[1], abs=1e-9)
            if attn:
                assert r.attention.shape == (len(r.ids), len(source))
                np.testing.assert_array_equal(r.attention, w[2])
            else:
                assert r.attention is None


# ---------------------------------------------------------------- beam = exhaustive search
def exhaustive(fn: Fn, src: tuple, V: int, L: int, min_length: int, opts: SearchOptions) -> list:
    out = []

    def rec(gen: list[int], score: float) -> None:
        lp = fn(src, (BOS_ID, *gen))
        for tok in range(V):
            if tok == EOS_ID and len(gen) < min_length:
                continue
            s = score + float(lp[tok])
            if tok == EOS_ID:
                out.append((gen + [tok], s / opts.penalty(len(gen) + 1)))
            elif len(gen) + 1 == L:
                out.append((gen + [tok], s / opts.penalty(L)))
            else:
                rec(gen + [tok], s)

    rec([], 0.0)
    return sorted(out, key=lambda h: -h[1])


@pytest.mark.parametrize("penalty,alpha,min_length", [("none", 0.0, 0), ("gnmt", 1.0, 0), ("avg", 1.0, 2)])
def test_beam_with_room_for_everything_is_exhaustive(penalty: str, alpha: float, min_length: int) -> None:
    V, L = 5, 4  # 4 non-EOS tokens: at most 4**4 = 256 alive, 85 finished before the last step
    fn = table_fn(V, scale=1.5, eos_bias=0.0, eos_growth=0.3)
    opts = SearchOptions(beam_size=256, n_best=20, max_length=L, min_length=min_length,
                         length_penalty=penalty, alpha=alpha, full_distribution=True)
    sources = [[4, 3, EOS_ID], [EOS_ID]]
    got = beam_search(FakeBackend(fn, V, topk=3), *batch(sources), opts)
    for res, s in zip(got, sources):
        want = exhaustive(fn, tuple(s), V, L, min_length, opts)[:20]
        assert [r.ids for r in res] == [w[0] for w in want]
        assert [r.score for r in res] == pytest.approx([w[1] for w in want], abs=1e-9)
    # the exhaustive best beats what a narrow beam finds, or equals it
    narrow = beam_search(FakeBackend(fn, V, topk=3), *batch(sources),
                         SearchOptions(beam_size=2, max_length=L, min_length=min_length,
                                       length_penalty=penalty, alpha=alpha))
    assert all(n[0].score <= g[0].score + 1e-12 for n, g in zip(narrow, got))


# ---------------------------------------------------------------- batch layout
def test_finished_sentences_leave_the_batch_greedy() -> None:
    V = 10
    sources = [[4, 5, EOS_ID], [4, 5, 6, 7, 8, 9, EOS_ID], [6, EOS_ID], [7, 7, 7, 7, EOS_ID]]
    backend = FakeBackend(copy_fn(V), V, topk=4)
    got = greedy_search(backend, *batch(sources), SearchOptions(max_length=50))
    assert [res[0].ids for res in got] == sources  # the copy model copies, EOS included
    # step t runs only the sentences whose output is longer than t
    assert backend.rows == [sum(len(s) > t for s in sources) for t in range(7)]
    assert backend.keeps == [3, 2, 1]  # after steps 2, 3 and 5 (one keep per shrink)
    assert not any(backend.fulls)


def test_finished_sentences_leave_the_batch_beam() -> None:
    V, W = 10, 3
    sources = [[4, 5, EOS_ID], [4, 5, 6, 7, 8, 9, EOS_ID], [6, EOS_ID]]
    backend = FakeBackend(copy_fn(V), V, topk=W + 1)
    got = beam_search(backend, *batch(sources), SearchOptions(beam_size=W, max_length=50))
    assert [res[0].ids for res in got] == sources
    rows = backend.rows
    assert rows[0] == len(sources) and all(r % W == 0 for r in rows[1:])
    assert all(a >= b for a, b in zip(rows[1:], rows[2:])) and rows[-1] == W
    assert len(rows) < 50  # sentences stopped early (beam finished), not at max_length
    # keep: the expansion after step 0, then once per shrink
    assert backend.keeps[0] == W * len(sources) and backend.keeps == sorted(backend.keeps, reverse=True)


def test_batch_results_equal_one_at_a_time() -> None:
    V = 12
    fn = table_fn(V)
    rng = np.random.default_rng(3)
    sources = [list(rng.integers(3, V, rng.integers(0, 7))) + [EOS_ID] for _ in range(9)]
    for opts in (SearchOptions(max_length=10), SearchOptions(beam_size=4, n_best=3, max_length=10,
                                                            length_penalty="gnmt", alpha=0.6)):
        together = search(FakeBackend(fn, V, 8), *batch(sources), opts)
        alone = [search(FakeBackend(fn, V, 8), *batch([s]), opts)[0] for s in sources]
        assert ids_scores(together) == ids_scores(alone)


def test_beam_of_one_is_greedy() -> None:
    V = 12
    fn = table_fn(V)
    sources = [[4, 5, EOS_ID], [EOS_ID], [9, 8, 7, 6, EOS_ID]]
    for kw in ({}, {"min_length": 3}, {"no_repeat_ngram_size": 1}):
        opts = SearchOptions(max_length=8, **kw)
        assert ids_scores(greedy_search(FakeBackend(fn, V, 4), *batch(sources), opts)) == \
            ids_scores(beam_search(FakeBackend(fn, V, 4), *batch(sources), opts))


# ---------------------------------------------------------------- top-K vs full path
def test_topk_path_rules() -> None:
    V = 12
    fn = table_fn(V)
    src = batch([[4, 5, EOS_ID]])
    b = FakeBackend(fn, V, topk=4)
    fast = beam_search(b, *src, SearchOptions(beam_size=3, n_best=3, max_length=8))
    assert not any(b.fulls)  # K = beam + 1: candidates from the top-K outputs
    b = FakeBackend(fn, V, topk=4)
    slow = beam_search(b, *src, SearchOptions(beam_size=3, n_best=3, max_length=8, full_distribution=True))
    assert all(b.fulls) and ids_scores(fast) == ids_scores(slow)
    b = FakeBackend(fn, V, topk=4)
    beam_search(b, *src, SearchOptions(beam_size=4, max_length=8))
    assert all(b.fulls)  # beam == K: the full log_probs every step
    with pytest.raises(ConfigError, match=r"beam_size 5 exceeds the bundle's top-K \(4\).*--topk 6.*full_distribution"):
        beam_search(FakeBackend(fn, V, topk=4), *src, SearchOptions(beam_size=5))
    ok = beam_search(FakeBackend(fn, V, topk=4), *src, SearchOptions(beam_size=5, full_distribution=True))
    assert ok[0]


def test_features_fetch_full_log_probs_only_where_needed() -> None:
    V = 12
    fn = table_fn(V, eos_bias=-4.0)
    b = FakeBackend(fn, V, topk=8)
    res = greedy_search(b, *batch([[4, 5, EOS_ID]]), SearchOptions(max_length=8, min_length=3))
    assert b.fulls[:3] == [True] * 3 and not any(b.fulls[3:])
    assert EOS_ID not in res[0][0].ids[:3]
    b = FakeBackend(fn, V, topk=8)
    beam_search(b, *batch([[4, 5, EOS_ID]]), SearchOptions(beam_size=2, max_length=8, no_repeat_ngram_size=2))
    assert b.fulls[:2] == [False, False] and all(b.fulls[2:])


def test_min_length_and_no_repeat_are_honoured() -> None:
    V = 8
    fn = table_fn(V, eos_bias=3.0)  # EOS is the favourite from the start
    src = batch([[4, EOS_ID], [5, 6, EOS_ID]])
    for res in beam_search(FakeBackend(fn, V, 8), *src, SearchOptions(beam_size=3, n_best=3, min_length=4)):
        assert all(len(r.ids) >= 5 and EOS_ID not in r.ids[:4] for r in res)
    fn = table_fn(V, eos_bias=-9.0, eos_growth=0.0)  # no EOS: long outputs that would repeat
    for res in beam_search(FakeBackend(fn, V, 8), *src, SearchOptions(beam_size=3, n_best=3, max_length=12,
                                                                    no_repeat_ngram_size=2)):
        for r in res:
            grams = [tuple(r.ids[i:i + 2]) for i in range(len(r.ids) - 1)]
            assert len(grams) == len(set(grams))


def test_masked_blocks_repeated_ngrams() -> None:
    hist = np.array([[4, 5, 6, 4, 5], [4, 4, 4, 4, 4]])
    lp = np.zeros((2, 8), dtype=np.float32)
    out = masked(lp, hist, SearchOptions(no_repeat_ngram_size=3))
    assert np.isneginf(out[0, 6]) and np.isneginf(out[1, 4]) and np.isfinite(out).sum() == 14
    out = masked(lp, hist, SearchOptions(no_repeat_ngram_size=1, min_length=9))
    assert sorted(np.flatnonzero(np.isneginf(out[0]))) == [EOS_ID, 4, 5, 6]


# ---------------------------------------------------------------- options
def test_max_length_and_ratio_per_sentence() -> None:
    V = 12
    fn = table_fn(V, eos_bias=-20.0, eos_growth=0.0)  # never EOS: every output hits its limit
    sources = [[4, EOS_ID], [4, 5, 6, 7, 8, EOS_ID]]
    opts = SearchOptions(max_length=5, max_length_ratio=1.5)
    assert list(opts.max_lengths(np.array([2, 6]))) == [3, 5]
    for s in (greedy_search, beam_search):
        res = s(FakeBackend(fn, V, 8), *batch(sources), opts)
        assert [len(r[0].ids) for r in res] == [3, 5] and EOS_ID not in res[0][0].ids


def test_length_penalties() -> None:
    assert SearchOptions().penalty(7) == 1.0
    assert SearchOptions(length_penalty="gnmt", alpha=0.6).penalty(7) == pytest.approx((12 / 6) ** 0.6)
    assert SearchOptions(length_penalty="avg", alpha=1.0).penalty(7) == 7.0
    V = 12
    fn = table_fn(V)
    raw = greedy_search(FakeBackend(fn, V, 8), *batch([[4, EOS_ID]]), SearchOptions(max_length=6))[0][0]
    avg = greedy_search(FakeBackend(fn, V, 8), *batch([[4, EOS_ID]]),
                        SearchOptions(max_length=6, length_penalty="avg", alpha=1.0))[0][0]
    assert raw.ids == avg.ids and avg.score == pytest.approx(raw.score / len(raw.ids))


class GraphMaskingBackend(FakeBackend):
    """Top-K as a format-2 step graph computes it: its ``topk_blocked`` ids at -inf *before* the
    top-K (ONNX TopK: ties to the lower id), so they fall out of it."""

    topk_blocked = (PAD_ID, BOS_ID)

    def step(self, tokens: np.ndarray, reorder: np.ndarray, full: bool = False, attn: bool = False) -> StepResult:
        res = super().step(tokens, reorder, True, attn)
        self.fulls[-1] = full  # what the search asked for
        lp = np.array(res.log_probs, copy=True)
        lp[:, list(self.topk_blocked)] = -np.inf
        order = np.lexsort((np.broadcast_to(np.arange(lp.shape[1]), lp.shape), -lp), axis=-1)[:, : self.topk]
        return StepResult(np.take_along_axis(lp, order, 1), order, lp if full else None, res.attn)


@pytest.mark.parametrize("extra", [(), (5,)])  # all blocked ids masked in the graph; one that is not
@pytest.mark.parametrize("beam", [1, 3])
def test_joeynmt_style_takes_the_graphs_mask_as_it_is(extra: tuple[int, ...], beam: int, monkeypatch: Any) -> None:
    """The joeynmt style skips its per-step blocking (``np.isin``) when the step graph's top-K
    already leaves out every blocked id (EOS before min_length excepted): same hypotheses and
    scores as a backend that masks nothing, blocked ids never generated."""
    from s2s_export.runtime.styles.joeynmt import joeynmt_search

    fn = table_fn(9, eos_growth=0.8)
    src, lengths = batch2([[4, 6, EOS_ID], [7, EOS_ID], [5, 8, 6, 4, EOS_ID]])
    opts = SearchOptions(beam_size=beam, n_best=beam, max_length=7, blocked=(PAD_ID, BOS_ID, *extra),
                         min_length=2, style="joeynmt")
    isin, calls = np.isin, []
    monkeypatch.setattr(np, "isin", lambda *a, **k: calls.append(1) or isin(*a, **k))
    got = joeynmt_search(GraphMaskingBackend(fn, 9, 6 + len(extra)), src, lengths, opts)
    assert len(calls) == 2 if not extra else len(calls) > 2  # the two steps before min_length only
    monkeypatch.undo()
    want = joeynmt_search(FakeBackend(fn, 9, 6 + len(extra)), src, lengths, opts)
    assert ids_scores(got) == ids_scores(want)
    assert not {PAD_ID, BOS_ID, *extra} & {i for hyps in got for r in hyps for i in r.ids}


@pytest.mark.parametrize("extra", [(), (5,)])
def test_opennmt_style_needs_no_full_log_probs_for_ids_the_graph_masks(extra: tuple[int, ...]) -> None:
    """The opennmt style bans ids by filling the full log-probs; ids the step graph's top-K
    already leaves out need no full log-probs after min_length (same hypotheses and scores)."""
    from s2s_export.runtime.styles.opennmt import opennmt_search

    fn = table_fn(9, eos_growth=0.8)
    src, lengths = batch2([[4, 6, EOS_ID], [7, EOS_ID], [5, 8, 6, 4, EOS_ID]])
    opts = SearchOptions(beam_size=3, n_best=2, max_length=7, blocked=(PAD_ID, BOS_ID, *extra),
                         min_length=1, style="opennmt")
    masking = GraphMaskingBackend(fn, 9, 6)
    got = opennmt_search(masking, src, lengths, opts)
    assert ids_scores(got) == ids_scores(opennmt_search(FakeBackend(fn, 9, 6), src, lengths, opts))
    assert masking.fulls[0] is True  # the first step (up to min_length): EOS is filled in the full log-probs
    assert set(masking.fulls[1:]) == ({True} if extra else {False})


@pytest.mark.parametrize("kw,pattern", [
    ({"beam_size": 0}, "beam_size must be >= 1"),
    ({"beam_size": 2, "n_best": 3}, "n_best 3 must be within 1..beam_size"),
    ({"max_length": 0}, "max_length must be >= 1"),
    ({"max_length_ratio": 0.0}, "max_length_ratio must be > 0"),
    ({"min_length": -1}, "min_length must be >= 0"),
    ({"length_penalty": "wu"}, "length_penalty 'wu' is unknown"),
    ({"alpha": math.nan}, "alpha must be finite"),
    ({"no_repeat_ngram_size": -2}, "no_repeat_ngram_size must be >= 0"),
])
def test_bad_options(kw: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        SearchOptions(**kw).validate()


def test_fake_backend_is_a_backend() -> None:
    assert isinstance(FakeBackend(table_fn(6), 6, 2), Backend)


# ---------------------------------------------------------------- nothing selectable
def batch2(seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(s) for s in seqs])
    src = np.full((len(seqs), lengths.max()), PAD_ID, dtype=np.int64)
    for i, s in enumerate(seqs):
        src[i, : len(s)] = s
    return src, lengths


@pytest.mark.parametrize("beam", [1, 3])
def test_when_nothing_is_selectable_eos_is_forced(beam: int) -> None:
    """A vocabulary of 6 (pad, bos, eos, unk + 2 tokens), pad and bos never generated, EOS blocked
    until token 4 and every repeat blocked (n-gram size 1): after unk and the two tokens nothing
    is selectable, so the hypothesis ends with a forced EOS scored -inf, never a pad or bos id."""
    V = 6
    opts = SearchOptions(beam_size=beam, n_best=beam, min_length=4, no_repeat_ngram_size=1, max_length=10,
                         blocked=(PAD_ID, BOS_ID))
    results = search(FakeBackend(table_fn(V), V, V), *batch2([[4, 5, EOS_ID]]), opts)[0]
    assert results, "a hypothesis always comes back"
    for r in results:
        assert r.ids[-1] == EOS_ID and r.score == -math.inf
        assert sorted(r.ids[:-1]) == [3, 4, 5]  # each generatable token once, then the forced EOS


def test_pad_and_bos_are_never_generated_even_when_likeliest() -> None:
    def fn(src: tuple, prefix: tuple) -> np.ndarray:
        logits = np.zeros(8, dtype=np.float32)
        logits[PAD_ID], logits[BOS_ID], logits[5], logits[EOS_ID] = 9.0, 8.0, 3.0, 1.0 + len(prefix)
        return log_softmax(logits)

    for beam in (1, 3):
        opts = SearchOptions(beam_size=beam, n_best=beam, max_length=6, blocked=(PAD_ID, BOS_ID))
        for r in search(FakeBackend(fn, 8, 8), *batch2([[4, EOS_ID]]), opts)[0]:
            assert not {PAD_ID, BOS_ID} & set(r.ids) and np.isfinite(r.score)


def test_ids_the_graph_masks_are_not_masked_again() -> None:
    """A backend whose top-K already leaves out some blocked ids (``topk_blocked``, a format-2
    step graph) gets the others masked per step, and nothing else changes."""
    from s2s_export.runtime.search import topk_unmasked

    def fn(src: tuple, prefix: tuple) -> np.ndarray:
        logits = np.zeros(8, dtype=np.float32)
        logits[5], logits[6], logits[EOS_ID] = 4.0, 3.0, 1.0 + len(prefix)
        return log_softmax(logits)

    class MaskingBackend(FakeBackend):  # its top-K leaves out PAD and BOS, as the step graph does
        topk_blocked = (PAD_ID, BOS_ID)

        def step(self, tokens: np.ndarray, reorder: np.ndarray, full: bool = False, attn: bool = False) -> StepResult:
            res = super().step(tokens, reorder, full, attn)
            lp, ids = res.topk_log_probs.copy(), res.topk_ids
            lp[np.isin(ids, self.topk_blocked)] = -np.inf
            return StepResult(lp, ids, res.log_probs, res.attn)

    opts = SearchOptions(beam_size=1, max_length=6, blocked=(PAD_ID, BOS_ID, 5))
    assert topk_unmasked(MaskingBackend(fn, 8, 8), opts) == (5,)
    assert topk_unmasked(FakeBackend(fn, 8, 8), opts) == (PAD_ID, BOS_ID, 5)
    for beam in (1, 3):
        opts = SearchOptions(beam_size=beam, n_best=beam, max_length=6, blocked=(PAD_ID, BOS_ID, 5))
        got = search(MaskingBackend(fn, 8, 8), *batch2([[4, EOS_ID]]), opts)[0]
        want = search(FakeBackend(fn, 8, 8), *batch2([[4, EOS_ID]]), opts)[0]
        assert ids_scores([got]) == ids_scores([want]) and all(5 not in r.ids for r in got)


@pytest.mark.parametrize("kw,pattern", [
    ({"beam_size": 2.5}, "beam_size must be an integer"),
    ({"beam_size": True}, "beam_size must be an integer"),
    ({"max_length": "10"}, "max_length must be an integer"),
    ({"alpha": 1e308}, "alpha must be at most 10"),
    ({"alpha": "0.6"}, "alpha must be a number"),
    ({"max_length_ratio": math.inf}, "max_length_ratio must be finite"),
    ({"beam_size": 10 ** 9}, "beam_size must be at most 1,024"),
    ({"return_attention": 1}, "return_attention must be True or False"),
    ({"style": "fairseq"}, "search_style 'fairseq' is unknown"),
])
def test_option_types_and_ranges(kw: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        SearchOptions(**kw).validate()


def test_min_length_over_max_length_refused() -> None:
    """No output could end with EOS: refused, not cut off silently (the CLI says --min-length)."""
    with pytest.raises(ConfigError, match="min_length 50 is more than max_length 10"):
        SearchOptions(min_length=50, max_length=10).validate()
    SearchOptions(min_length=10, max_length=10).validate()  # a tool's degenerate default stays allowed
    SearchOptions(min_length=50, max_length=10, max_length_batch_factor=1.5).validate()  # the limit is per batch
