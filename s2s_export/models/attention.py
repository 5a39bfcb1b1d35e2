"""Attention modules, exactly as ``docs/attention.md`` defines them.

Every module has two halves, mirroring the encoder/step split of the exported graphs:

* ``precompute(memory [B,S,M]) -> dict[name, tensor]``: everything that does not depend on the
  decoder step (projected keys/values), computed once in the encoder graph;
* ``forward(query [B,H], static, src_mask [B,S] bool, src_len [B] float, step [B] float)
  -> (context [B,C], weights [B,S])``.

Masks use ``-inf`` (never a literal like -1e9, which overflows float16). Source lengths are >= 1
(the source always ends with EOS), so a softmax row always has a valid position.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def masked_softmax(scores: Tensor, valid: Tensor) -> Tensor:
    """Softmax over the last axis of ``scores [B,S]`` restricted to ``valid [B,S]`` (bool)."""
    return torch.softmax(scores.masked_fill(~valid, float("-inf")), dim=-1)


class Attention(nn.Module):
    """Base: subclasses set ``context_size`` and ``static_names`` and implement both halves."""

    context_size: int
    static_names: tuple[str, ...] = ()
    uses_memory: bool = True

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def precompute(self, memory: Tensor) -> dict[str, Tensor]:
        return {}


class GlobalAttention(Attention):
    """Luong global attention with ``dot``, ``general`` or ``concat`` score, or Bahdanau
    ``additive`` (the concat form with biases; the caller decides which state is the query).

    score: dot h·h̄_s | general h·(W_a h̄_s) | concat/additive v·tanh(W_q h + W_k h̄_s)
    """

    def __init__(self, prefix: str, score: str, query_size: int, memory_size: int) -> None:
        super().__init__(prefix)
        self.score = score
        self.context_size = memory_size
        if score == "general":
            self.W_a = nn.Linear(memory_size, query_size, bias=False)
            self.static_names = ("keys",)
        elif score in ("concat", "additive"):
            bias = score == "additive"
            self.W_q = nn.Linear(query_size, query_size, bias=bias)
            self.W_k = nn.Linear(memory_size, query_size, bias=bias)
            self.v = nn.Linear(query_size, 1, bias=False)
            self.static_names = ("keys",)
        elif score != "dot":
            raise ValueError(score)

    def precompute(self, memory: Tensor) -> dict[str, Tensor]:
        if self.score == "general":
            return {self.key("keys"): self.W_a(memory)}  # [B,S,H]
        if self.score in ("concat", "additive"):
            return {self.key("keys"): self.W_k(memory)}  # [B,S,H]
        return {}

    def scores(self, query: Tensor, memory: Tensor, static: dict[str, Tensor]) -> Tensor:
        """[B,S] unnormalised scores."""
        if self.score == "dot":
            return torch.bmm(memory, query.unsqueeze(2)).squeeze(2)
        keys = static[self.key("keys")]
        if self.score == "general":
            return torch.bmm(keys, query.unsqueeze(2)).squeeze(2)
        return self.v(torch.tanh(self.W_q(query).unsqueeze(1) + keys)).squeeze(2)

    def forward(self, query: Tensor, memory: Tensor, static: dict[str, Tensor], src_mask: Tensor,
                src_len: Tensor, step: Tensor) -> tuple[Tensor, Tensor]:
        a = masked_softmax(self.scores(query, memory, static), src_mask)  # [B,S]
        return torch.bmm(a.unsqueeze(1), memory).squeeze(1), a  # [B,M], [B,S]


class LocalAttention(GlobalAttention):
    """Luong local attention (general score), masked form over all S positions.

    p_t: local-m ``min(t, S_len - 1)`` (t = 0-based step; clipped so that long outputs keep a
    non-empty window), local-p ``S_len * sigmoid(v_p·tanh(W_p h_t))``. Positions s = 0..S-1.
    a_t(s) = softmax over {s valid, |s - p_t| <= D} of the score, times exp(-(s-p_t)²/(2σ²)),
    σ = D/2, not renormalised.
    """

    def __init__(self, prefix: str, mode: str, query_size: int, memory_size: int, window: int) -> None:
        super().__init__(prefix, "general", query_size, memory_size)
        self.mode = mode
        self.window = float(window)
        if mode == "local-p":
            self.W_p = nn.Linear(query_size, query_size, bias=False)
            self.v_p = nn.Linear(query_size, 1, bias=False)

    def position(self, query: Tensor, src_len: Tensor, step: Tensor) -> Tensor:
        """p_t [B] (float)."""
        if self.mode == "local-m":
            return torch.minimum(step, src_len - 1.0)
        return src_len * torch.sigmoid(self.v_p(torch.tanh(self.W_p(query)))).squeeze(1)

    def forward(self, query: Tensor, memory: Tensor, static: dict[str, Tensor], src_mask: Tensor,
                src_len: Tensor, step: Tensor) -> tuple[Tensor, Tensor]:
        p_t = self.position(query, src_len, step).unsqueeze(1)  # [B,1]
        # positions 0..S-1 from the mask's shape, so S stays dynamic in the exported graph
        s = torch.cumsum(torch.ones_like(src_mask, dtype=memory.dtype), dim=1) - 1.0  # [B,S]
        dist = s - p_t
        in_window = src_mask & (dist.abs() <= self.window)
        align = masked_softmax(self.scores(query, memory, static), in_window)
        sigma = self.window / 2.0
        a = align * torch.exp(-(dist * dist) / (2.0 * sigma * sigma))
        return torch.bmm(a.unsqueeze(1), memory).squeeze(1), a


class MultiHeadAttention(Attention):
    """Multi-head attention with a single query: head i = softmax(q_i K_iᵀ/√d_k) V_i, heads
    concatenated, then W^O. K and V projections of the memory are precomputed (static).
    The returned weights are the mean over heads."""

    uses_memory = False
    static_names = ("keys", "values")

    def __init__(self, prefix: str, query_size: int, memory_size: int, heads: int) -> None:
        super().__init__(prefix)
        self.heads = heads
        self.d_k = query_size // heads
        self.context_size = query_size
        self.W_q = nn.Linear(query_size, query_size)
        self.W_k = nn.Linear(memory_size, query_size)
        self.W_v = nn.Linear(memory_size, query_size)
        self.W_o = nn.Linear(query_size, query_size)

    def precompute(self, memory: Tensor) -> dict[str, Tensor]:
        return {self.key("keys"): self.W_k(memory), self.key("values"): self.W_v(memory)}  # [B,S,E]

    def forward(self, query: Tensor, memory: Tensor, static: dict[str, Tensor], src_mask: Tensor,
                src_len: Tensor, step: Tensor) -> tuple[Tensor, Tensor]:
        B, S = src_mask.shape
        keys = static[self.key("keys")].view(B, S, self.heads, self.d_k).transpose(1, 2)  # [B,h,S,d]
        values = static[self.key("values")].view(B, S, self.heads, self.d_k).transpose(1, 2)
        q = self.W_q(query).view(B, self.heads, 1, self.d_k)  # [B,h,1,d]
        scores = torch.matmul(q, keys.transpose(2, 3)).squeeze(2) / math.sqrt(self.d_k)  # [B,h,S]
        a = torch.softmax(scores.masked_fill(~src_mask.unsqueeze(1), float("-inf")), dim=-1)
        ctx = torch.matmul(a.unsqueeze(2), values).squeeze(2).reshape(B, -1)  # [B,E]
        return self.W_o(ctx), a.mean(dim=1)


def make_attention(kind: str, prefix: str, query_size: int, memory_size: int, heads: int,
                   window: int) -> Attention:
    if kind in ("dot", "general", "concat", "additive"):
        return GlobalAttention(prefix, kind, query_size, memory_size)
    if kind in ("local-m", "local-p"):
        return LocalAttention(prefix, kind, query_size, memory_size, window)
    if kind == "multihead":
        return MultiHeadAttention(prefix, query_size, memory_size, heads)
    raise ValueError(f"no attention module for {kind!r}")


__all__ = ["Attention", "GlobalAttention", "LocalAttention", "MultiHeadAttention",
           "make_attention", "masked_softmax"]
