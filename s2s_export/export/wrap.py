"""The two ``nn.Module`` wrappers that flatten the decoding contract into named tensors.

``EncoderGraph``:  src [B,S] int64, src_lengths [B] int64 -> every static, every state (in the
order of ``BundleIO``). While it is traced for export it also returns one scratch output per
packed RNN call (see ``EncoderGraph``), which ``onnx.export_graph`` removes again.

``StepGraph``: tokens [B] int64, reorder [B] int64, every static, every state
-> topk_log_probs [B,K], topk_ids [B,K], log_probs [B,V], next_<state> for every state,
attn [B,S]. The step first gathers every state tensor's rows with ``index_select(0, reorder)``
(identity for greedy; beam search reorders its hypotheses without moving state through the
host), then runs ``decode_step`` on the gathered state. The top-K leaves out the ``blocked``
ids (the tokens never generated: the target pad and bos...): they score -inf there, so K
candidates are K generatable tokens; ``log_probs`` stays the model's own.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence


class EncoderGraph(nn.Module):
    """``model.encode`` with flat outputs: static tensors, then state tensors.

    Scratch outputs (only while traced, ``torch.jit.is_tracing()``): the TorchScript exporter
    cannot export an RNN run on a ``PackedSequence`` whose output sequence nothing reads (an
    encoder that keeps only its final state, e.g. a model without attention): its ONNX
    peephole pass (``_jit_pass_onnx_peephole``, torch 2.13) expects a ``PadPacked`` consumer of
    the RNN's ``Y`` and stops with ``RuntimeError: vector::_M_range_check``. So every packed
    output of an ``nn.RNNBase`` submodule is unpacked (``pad_packed_sequence``, [B,S',dirs*H])
    and returned after the static and state tensors; ``export_graph`` drops these outputs
    and the nodes only they need (``SCRATCH_OUTPUTS`` tells it to). Eager calls return
    exactly the static and state tensors."""

    SCRATCH_OUTPUTS = True

    def __init__(self, model: nn.Module, static_names: Sequence[str], state_names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.static_names = tuple(static_names)
        self.state_names = tuple(state_names)

    def forward(self, src: Tensor, src_lengths: Tensor) -> tuple[Tensor, ...]:
        packed: list[PackedSequence] = []
        handles = []
        if torch.jit.is_tracing():
            def record(module: nn.Module, args: Any, output: Any) -> None:
                if isinstance(output, tuple) and output and isinstance(output[0], PackedSequence):
                    packed.append(output[0])

            handles = [m.register_forward_hook(record) for m in self.model.modules() if isinstance(m, nn.RNNBase)]
        try:
            static, state = getattr(self.model, "encode")(src, src_lengths)
        finally:
            for handle in handles:
                handle.remove()
        scratch = tuple(pad_packed_sequence(p, batch_first=True)[0] for p in packed)  # [B,S',dirs*H] each
        return (*(static[n] for n in self.static_names), *(state[n] for n in self.state_names), *scratch)


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
