"""The two ``nn.Module`` wrappers that flatten the decoding contract into named tensors.

``EncoderGraph``:  src [B,S] int64, src_lengths [B] int64 -> every static, every state (in the
order of ``BundleIO``).

``StepGraph``: tokens [B] int64, reorder [B] int64, every static, every state
-> topk_log_probs [B,K], topk_ids [B,K], log_probs [B,V], next_<state> for every state,
attn [B,S]. The step first gathers every state tensor's rows with ``index_select(0, reorder)``
(identity for greedy; beam search reorders its hypotheses without moving state through the
host), then runs ``decode_step`` on the gathered state. The top-K leaves out the ``blocked``
ids (the tokens never generated: the target pad and bos...): they score -inf there, so K
candidates are K generatable tokens; ``log_probs`` stays the model's own.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


class EncoderGraph(nn.Module):
    """``model.encode`` with flat outputs: static tensors, then state tensors."""

    def __init__(self, model: nn.Module, static_names: Sequence[str], state_names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.static_names = tuple(static_names)
        self.state_names = tuple(state_names)

    def forward(self, src: Tensor, src_lengths: Tensor) -> tuple[Tensor, ...]:
        static, state = getattr(self.model, "encode")(src, src_lengths)
        return (*(static[n] for n in self.static_names), *(state[n] for n in self.state_names))


class StepGraph(nn.Module):
    """One decoder step: gather state rows by ``reorder``, ``decode_step``, top-K of log_probs."""

    def __init__(self, model: nn.Module, static_names: Sequence[str], state_names: Sequence[str],
                 topk: int, blocked: Sequence[int] = (), vocab_size: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.static_names = tuple(static_names)
        self.state_names = tuple(state_names)
        self.topk = int(topk)
        self.mask: Tensor | None = None  # [V] 0, -inf at the blocked ids (a graph constant)
        if blocked:
            if vocab_size is None:
                raise ValueError("StepGraph needs vocab_size to block ids")
            self.mask = torch.zeros(int(vocab_size))
            self.mask[list(blocked)] = float("-inf")

    def forward(self, tokens: Tensor, reorder: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
        n = len(self.static_names)
        static = dict(zip(self.static_names, tensors[:n]))
        state = {name: t.index_select(0, reorder) for name, t in zip(self.state_names, tensors[n:])}
        log_probs, new_state, attn = getattr(self.model, "decode_step")(tokens, static, state)  # [B,V], ..., [B,S]
        ranked = log_probs if self.mask is None else log_probs + self.mask  # [B,V]
        top_lp, top_ids = torch.topk(ranked, self.topk, dim=-1)  # [B,K] each
        return (top_lp, top_ids, log_probs, *(new_state[name] for name in self.state_names), attn)


__all__ = ["EncoderGraph", "StepGraph"]
