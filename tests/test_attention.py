"""Attention modules against direct, loop-based numpy versions of docs/attention.md.

Positions are 0-based here and in the modules (s = 0..S-1, local-m p_t = t for the 0-based step
t), which is the reference's 1-based convention shifted by one on both sides.
"""

from __future__ import annotations

import ast
import inspect
import math

import numpy as np
import pytest
import torch

from conftest import tiny_overrides
from s2s_export.models import Seq2Seq, attention, preset_config, seq2seq
from s2s_export.models.attention import GlobalAttention, LocalAttention, MultiHeadAttention
from s2s_export.vocab import BOS_ID, EOS_ID, PAD_ID

torch.set_num_threads(1)
B, S, H, M = 3, 9, 8, 6
LENGTHS = [9, 4, 1]


def W(lin: torch.nn.Linear) -> np.ndarray:
    return lin.weight.detach().double().numpy()


def b(lin: torch.nn.Linear) -> np.ndarray:
    return np.zeros(lin.out_features) if lin.bias is None else lin.bias.detach().double().numpy()


def inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    memory = torch.randn(B, S, M, generator=g)
    lengths = torch.tensor(LENGTHS)
    mask = torch.arange(S).unsqueeze(0) < lengths.unsqueeze(1)
    memory = memory * mask.unsqueeze(2)  # padded memory is zero, as pad_packed_sequence gives
    query = torch.randn(B, H, generator=g) * 2.0
    return memory, lengths, mask, query


def run(module: attention.Attention, memory: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor,
        query: torch.Tensor, step: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.7)
        static = module.precompute(memory)
        step = torch.zeros(B) if step is None else step
        ctx, a = module(query, memory, static, mask, lengths.float(), step)
    return ctx.double().numpy(), a.double().numpy()


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def reference_global(score: str, module: GlobalAttention, memory: torch.Tensor, query: torch.Tensor
                     ) -> tuple[np.ndarray, np.ndarray]:
    mem, q = memory.double().numpy(), query.double().numpy()
    ctx, att = np.zeros((B, M)), np.zeros((B, S))
    for i, n in enumerate(LENGTHS):
        e = np.zeros(n)
        for s in range(n):
            h_s = mem[i, s]
            if score == "dot":
                e[s] = q[i] @ h_s
            elif score == "general":
                e[s] = q[i] @ (W(module.W_a) @ h_s)
            else:  # concat / additive: v^T tanh(W_q h + W_k h_s) (+ biases for additive)
                pre = W(module.W_q) @ q[i] + b(module.W_q) + W(module.W_k) @ h_s + b(module.W_k)
                e[s] = (W(module.v) @ np.tanh(pre))[0]
        att[i, :n] = softmax(e)
        ctx[i] = sum(att[i, s] * mem[i, s] for s in range(n))
    return ctx, att


@pytest.mark.parametrize("score", ["dot", "general", "concat", "additive"])
def test_global_scores_match_the_equations(score: str) -> None:
    memory, lengths, mask, query = inputs()
    q_size = M if score == "dot" else H
    query = query[:, :q_size]
    module = GlobalAttention("", score, q_size, M)
    ctx, a = run(module, memory, lengths, mask, query)
    ref_ctx, ref_a = reference_global(score, module, memory, query)
    np.testing.assert_allclose(a, ref_a, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(ctx, ref_ctx, atol=1e-5, rtol=1e-5)
    for i, n in enumerate(LENGTHS):
        assert (a[i, n:] == 0.0).all()  # exactly zero, not "tiny"
        assert a[i, :n].sum() == pytest.approx(1.0, abs=1e-6)


def reference_local(module: LocalAttention, memory: torch.Tensor, query: torch.Tensor, step: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Window [p_t - D, p_t + D] clipped to the sentence, softmax of the general score inside
    it, times exp(-(s - p_t)^2 / (2 sigma^2)), sigma = D/2, not renormalised."""
    mem, q = memory.double().numpy(), query.double().numpy()
    D = module.window
    sigma = D / 2.0
    ctx, att, pos = np.zeros((B, M)), np.zeros((B, S)), np.zeros(B)
    for i, n in enumerate(LENGTHS):
        if module.mode == "local-m":
            p = min(float(step[i]), n - 1.0)  # clipped so a long output keeps a non-empty window
        else:
            u = (W(module.v_p) @ np.tanh(W(module.W_p) @ q[i]))[0]
            p = n / (1.0 + math.exp(-u))  # S * sigmoid(.), S = the true source length
        pos[i] = p
        window = [s for s in range(n) if p - D <= s <= p + D]
        e = np.array([q[i] @ (W(module.W_a) @ mem[i, s]) for s in window])
        align = softmax(e)
        for k, s in enumerate(window):
            att[i, s] = align[k] * math.exp(-((s - p) ** 2) / (2 * sigma**2))
        ctx[i] = sum(att[i, s] * mem[i, s] for s in range(n))
    return ctx, att, pos


@pytest.mark.parametrize("mode", ["local-m", "local-p"])
@pytest.mark.parametrize("window", [1, 2, 4])
def test_local_attention_matches_the_equations(mode: str, window: int) -> None:
    memory, lengths, mask, query = inputs(seed=window)
    module = LocalAttention("", mode, H, M, window)
    for t in (0, 2, 5, 11):  # 11: beyond every sentence (local-m clips p_t to the last position)
        step = torch.full((B,), float(t))
        ctx, a = run(module, memory, lengths, mask, query, step)
        ref_ctx, ref_a, pos = reference_local(module, memory, query, step.numpy())
        np.testing.assert_allclose(a, ref_a, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(ctx, ref_ctx, atol=1e-5, rtol=1e-5)
        for i, n in enumerate(LENGTHS):
            outside = [s for s in range(S) if s >= n or abs(s - pos[i]) > window]
            assert (a[i, outside] == 0.0).all()
            assert a[i].sum() <= 1.0 + 1e-6  # the Gaussian factor is not renormalised


def test_local_p_position_uses_the_true_length() -> None:
    memory, lengths, mask, query = inputs()
    module = LocalAttention("", "local-p", H, M, 3)
    run(module, memory, lengths, mask, query)  # sets the weights
    with torch.no_grad():
        p = module.position(query, lengths.float(), torch.zeros(B))
    assert (p.numpy() <= np.array(LENGTHS)).all() and (p.numpy() >= 0).all()
    _, _, pos = reference_local(module, memory, query, np.zeros(B))
    np.testing.assert_allclose(p.double().numpy(), pos, atol=1e-5, rtol=1e-5)


def test_multihead_matches_the_equations() -> None:
    heads = 2
    memory, lengths, mask, query = inputs()
    module = MultiHeadAttention("", H, M, heads)
    ctx, a = run(module, memory, lengths, mask, query)
    mem, q = memory.double().numpy(), query.double().numpy()
    d = H // heads
    for i, n in enumerate(LENGTHS):
        Q = W(module.W_q) @ q[i] + b(module.W_q)
        K = mem[i, :n] @ W(module.W_k).T + b(module.W_k)
        V = mem[i, :n] @ W(module.W_v).T + b(module.W_v)
        outs, weights = [], []
        for h in range(heads):
            sl = slice(h * d, (h + 1) * d)
            w = softmax(K[:, sl] @ Q[sl] / math.sqrt(d))
            weights.append(w)
            outs.append(w @ V[:, sl])
        ref_ctx = W(module.W_o) @ np.concatenate(outs) + b(module.W_o)
        np.testing.assert_allclose(ctx[i], ref_ctx, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(a[i, :n], np.mean(weights, axis=0), atol=1e-5, rtol=1e-5)
        assert (a[i, n:] == 0.0).all()


# ---------------------------------------------------------------- inside the decoder


def model(preset: str) -> Seq2Seq:
    torch.manual_seed(0)
    m = Seq2Seq(preset_config(preset, 12, 10, **tiny_overrides(preset))).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return m


def source() -> tuple[torch.Tensor, torch.Tensor]:
    src = torch.tensor([[5, 6, 7, 8, 9, 10, EOS_ID], [4, 11, EOS_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID]])
    return src, torch.tensor([7, 3])


@pytest.mark.parametrize("preset", ["bahdanau", "seed-global-mha"])
def test_query_pre_reads_the_state_before_the_update(preset: str) -> None:
    """query='pre': step t's weights come from state['h'][:, -1] before the update, and the
    context is part of the first decoder layer's input."""
    m = model(preset)
    src, lengths = source()
    tokens = [torch.full((2,), BOS_ID), torch.tensor([5, 6]), torch.tensor([7, 4])]
    with torch.no_grad():
        static, state = m.encode(src, lengths)
        for tok in tokens:
            att_mod = m.attn[0]
            ctx_ref, a_ref = att_mod(state["h"][:, -1], static.get("memory"), static, static["src_mask"],
                                     None, None)
            # the first layer's update, written with torch's own cell module on [E y; c_t]
            x = torch.cat([m.tgt_emb(tok), ctx_ref], dim=1)
            cell = m.cells[0]
            if m.config.cell == "lstm":
                h0, _ = cell(x, (state["h"][:, 0], state["c"][:, 0]))
            else:
                h0 = cell(x, state["h"][:, 0])
            log_probs, new_state, attn = m.decode_step(tok, static, state)
            torch.testing.assert_close(attn, a_ref, atol=1e-6, rtol=1e-6)
            torch.testing.assert_close(new_state["h"][:, 0], h0, atol=1e-6, rtol=1e-6)
            assert not torch.allclose(state["h"][:, -1], new_state["h"][:, -1])  # pre != post
            state = new_state
    assert m.cells[0].input_size == m.config.emb_size + m.attn[0].context_size


def test_bahdanau_additive_score_against_formula() -> None:
    """e_tj = v^T tanh(W s_{t-1} + U h_j) (with biases), softmax over the valid positions."""
    m = model("bahdanau")
    src, lengths = source()
    with torch.no_grad():
        static, state = m.encode(src, lengths)
        _, _, attn = m.decode_step(torch.full((2,), BOS_ID), static, state)
    a = m.attn[0]
    s_prev = state["h"][:, -1].double().numpy()
    mem = static["memory"].double().numpy()
    for i, n in enumerate(lengths.tolist()):
        e = np.array([(W(a.v) @ np.tanh(W(a.W_q) @ s_prev[i] + b(a.W_q) + W(a.W_k) @ mem[i, j] + b(a.W_k)))[0]
                      for j in range(n)])
        np.testing.assert_allclose(attn[i, :n].double().numpy(), softmax(e), atol=1e-5, rtol=1e-5)
        assert bool((attn[i, n:] == 0).all())


@pytest.mark.parametrize("preset", ["luong-local-m", "luong-local-p", "luong-general", "luong-dot"])
def test_luong_post_query_in_the_decoder(preset: str) -> None:
    """query='post': the weights come from the top layer's state after the update (new h)."""
    m = model(preset)
    src, lengths = source()
    with torch.no_grad():
        static, state = m.encode(src, lengths)
        tok = torch.full((2,), BOS_ID)
        for t in range(9):  # beyond the short sentence: local-m p_t is clipped
            log_probs, new_state, attn = m.decode_step(tok, static, state)
            step = torch.full((2,), float(t))
            _, a_ref = m.attn[0](new_state["h"][:, -1], static.get("memory"), static, static["src_mask"],
                                 lengths.float(), step)
            torch.testing.assert_close(attn, a_ref, atol=1e-6, rtol=1e-6)
            if preset == "luong-local-m":
                for i, n in enumerate(lengths.tolist()):
                    p = min(t, n - 1)
                    far = [s for s in range(src.size(1)) if abs(s - p) > m.config.window or s >= n]
                    assert bool((attn[i, far] == 0).all())
            state, tok = new_state, log_probs.argmax(-1)


def test_masks_never_use_a_large_finite_literal() -> None:
    """-1e9 style fills overflow float16: masks use -inf (the masked weight is exactly 0)."""
    for mod in (attention, seq2seq):
        tree = ast.parse(inspect.getsource(mod))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
                assert abs(node.value) < 1e4, f"{mod.__name__}:{node.lineno}: literal {node.value}"
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "masked_fill":
                fill = ast.unparse(node.args[1])
                assert fill in ("float('-inf')", "-math.inf", "-torch.inf"), f"{mod.__name__}: fills {fill}"
    memory, lengths, mask, query = inputs()
    module = GlobalAttention("", "general", H, M)
    with torch.no_grad():
        _, a = module.half()(query.half(), memory.half(), module.precompute(memory.half()), mask,
                             lengths.half(), torch.zeros(B).half())
    assert torch.isfinite(a).all()
    for i, n in enumerate(LENGTHS):
        assert bool((a[i, n:] == 0).all())
