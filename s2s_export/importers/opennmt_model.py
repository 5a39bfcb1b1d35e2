"""OpenNMT-py's RNN encoder-decoder rebuilt from a checkpoint's tensors (OpenNMT-py is never
imported), as a module implementing the decoding contract (``models/seq2seq.py``).

Reproduces OpenNMT-py 3.5.1 (onmt/encoders/rnn_encoder.py ``RNNEncoder``,
onmt/decoders/decoder.py ``InputFeedRNNDecoder``/``StdRNNDecoder``, onmt/modules/stacked_rnn.py,
onmt/modules/global_attention.py ``GlobalAttention``, model_builder.py's generator + translator.py's
``log_softmax``); 1.x/2.x files hold the same layers under the same names (time-major code, same
arithmetic):

* encoder: embeddings -> ``nn.LSTM``/``nn.GRU`` over packed sequences; ``brnn`` with hidden size
  H runs H/2 per direction; memory = the top layer's outputs [B,S,H] (zeros beyond a length);
* ``bridge`` (3.x): each final state [L*dirs,B,h] is viewed batch-first as rows of ``L*h``
  (``dirs`` rows per sentence), passed through ``relu(Linear(L*h, L*h))`` and viewed back;
* decoder initial state: the encoder's final states, a ``brnn``'s two directions concatenated
  per layer ([L,B,H]); input feed h~_0 = 0;
* decoder step: [E y_{t-1}; h~_{t-1}] (input feeding) or E y_{t-1} (``StdRNNDecoder``) through
  the stacked cells (plain matmuls, ``seq2seq.stacked_cells``);
* global attention on the top output h_t: ``dot`` h_t . m_s, ``general`` (W_in h_t) . m_s,
  ``mlp`` v . tanh(W_q h_t + b_q + U m_s) (U m_s precomputed in ``encode``); softmax over the
  real positions (``general`` projects the query each step, as the tool does: the same cost as
  projecting the memory once, and the same rounding as the tool); context c_t; output
  ``tanh(W_out [c_t; h_t])`` (dot/general, no bias) or ``W_out [c_t; h_t] + b`` (mlp, no tanh);
  this output is the next input feed;
* generator: log_softmax(Linear(H, V)).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..models.seq2seq import stacked_cells


@dataclass(frozen=True)
class OnmtArch:
    """What the module needs to know; sizes come from the tensors, kinds from ``opt``."""

    rnn_type: str  # "LSTM" | "GRU"
    brnn: bool
    layers: int  # encoder and decoder layers (OpenNMT-py needs them equal for RNN states)
    hidden: int  # H: decoder hidden size = encoder output size
    src_emb: int
    tgt_emb: int
    src_vocab: int
    tgt_vocab: int
    attention: str  # "dot" | "general" | "mlp" | "none"
    input_feed: bool
    bridge: bool
    share_embeddings: bool = False
    share_decoder_embeddings: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class OpenNMTRNN(nn.Module):
    """OpenNMT-py's ``NMTModel`` (RNN encoder, RNN decoder with global attention, generator)
    behind the decoding contract. Special ids (``src_pad_id`` ... ``tgt_unk_id``) are set by
    the importer from the checkpoint's vocabularies."""

    src_pad_id: Optional[int] = None
    src_bos_id: Optional[int] = None
    src_eos_id: Optional[int] = None
    src_unk_id: Optional[int] = None
    tgt_pad_id: Optional[int] = None
    tgt_bos_id: Optional[int] = None
    tgt_eos_id: Optional[int] = None
    tgt_unk_id: Optional[int] = None

    def __init__(self, arch: OnmtArch) -> None:
        super().__init__()
        a = self.arch = arch
        H, L = a.hidden, a.layers
        dirs = 2 if a.brnn else 1
        rnn = nn.LSTM if a.rnn_type == "LSTM" else nn.GRU
        cell = nn.LSTMCell if a.rnn_type == "LSTM" else nn.GRUCell
        self.src_emb = nn.Embedding(a.src_vocab, a.src_emb)
        self.tgt_emb = nn.Embedding(a.tgt_vocab, a.tgt_emb)
        self.encoder = rnn(a.src_emb, H // dirs, L, batch_first=True, bidirectional=a.brnn)
        n_states = 2 if a.rnn_type == "LSTM" else 1
        total = (H // dirs) * L
        self.bridge = nn.ModuleList(nn.Linear(total, total) for _ in range(n_states if a.bridge else 0))
        first_in = a.tgt_emb + (H if a.input_feed else 0)
        self.cells = nn.ModuleList(cell(first_in if l == 0 else H, H) for l in range(L))
        if a.attention == "general":
            self.linear_in = nn.Linear(H, H, bias=False)
        if a.attention == "mlp":
            self.linear_context = nn.Linear(H, H, bias=False)
            self.linear_query = nn.Linear(H, H, bias=True)
            self.v = nn.Linear(H, 1, bias=False)
        if a.attention != "none":
            self.linear_out = nn.Linear(2 * H, H, bias=a.attention == "mlp")
        self.generator = nn.Linear(H, a.tgt_vocab)

    # ------------------------------------------------------------------ encode
    def encode(self, src: Tensor, src_lengths: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """src [B,S] int64, src_lengths [B] int64 (>= 1) -> (static, state).

        static: ``memory`` [B,S,H] float32, ``src_mask`` [B,S] bool (True = a real position),
        ``keys`` [B,S,H] (mlp only: U m_s). state: ``h`` [B,L,H] (and ``c`` for LSTM),
        ``feed`` [B,H] (input feeding only)."""
        a = self.arch
        B, S = src.shape
        packed = pack_padded_sequence(self.src_emb(src), src_lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        out, final = self.encoder(packed)
        memory, _ = pad_packed_sequence(out, batch_first=True)  # [B,max_len,H]
        if memory.size(1) < S:
            memory = F.pad(memory, (0, 0, 0, S - memory.size(1)))
        src_mask = torch.arange(S, device=src.device).unsqueeze(0) < src_lengths.unsqueeze(1)
        static: dict[str, Tensor] = {"memory": memory, "src_mask": src_mask}
        if a.attention == "mlp":
            static["keys"] = self.linear_context(memory)  # [B,S,H]
        finals = list(final) if a.rnn_type == "LSTM" else [final]  # each [L*dirs,B,h]
        if a.bridge:
            finals = [self._bridge(s, cast(nn.Linear, lin)) for s, lin in zip(finals, self.bridge)]
        state = {"h": self._dec_init(finals[0])}
        if a.rnn_type == "LSTM":
            state["c"] = self._dec_init(finals[1])
        if a.input_feed:
            state["feed"] = memory.new_zeros(B, a.hidden)
        return static, state

    def _bridge(self, states: Tensor, linear: nn.Linear) -> Tensor:
        """[L*dirs,B,h] -> the same shape through relu(Linear) on batch-first rows of L*h
        (3.5.1 ``RNNEncoder._bridge``)."""
        x = states.permute(1, 0, 2).contiguous()  # [B,L*dirs,h]
        size = x.size()
        y = F.relu(linear(x.view(-1, linear.in_features)))
        return y.view(size).permute(1, 0, 2).contiguous()

    def _dec_init(self, states: Tensor) -> Tensor:
        """[L*dirs,B,h] -> [B,L,H] (``RNNDecoderBase.init_state``: directions concatenated)."""
        if self.arch.brnn:
            states = torch.cat([states[0::2], states[1::2]], dim=2)  # [L,B,H]
        return states.transpose(0, 1).contiguous()

    # ------------------------------------------------------------------ step
    def decode_step(self, tokens: Tensor, static: dict[str, Tensor], state: dict[str, Tensor]
                    ) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """tokens [B] int64 -> log_probs [B,V] float32, new_state, attn [B,S]."""
        a = self.arch
        x = self.tgt_emb(tokens)  # [B,E]
        if a.input_feed:
            x = torch.cat([x, state["feed"]], dim=1)
        x, new_state = stacked_cells(self.cells, x, state["h"], state.get("c"))  # x: top layer [B,H]
        memory, mask = static["memory"], static["src_mask"]
        if a.attention == "none":
            out, attn = x, torch.zeros_like(mask, dtype=x.dtype)
        else:
            out, attn = self._attend(x, memory, mask, static.get("keys"))
        log_probs = torch.log_softmax(self.generator(out), dim=-1)
        if a.input_feed:
            new_state["feed"] = out
        return log_probs, new_state, attn

    def _attend(self, query: Tensor, memory: Tensor, mask: Tensor, keys: Optional[Tensor]
                ) -> tuple[Tensor, Tensor]:
        """query [B,H], memory [B,S,H], mask [B,S] -> (attention output [B,H], weights [B,S])
        (``GlobalAttention.forward`` for one step)."""
        kind = self.arch.attention
        if kind == "mlp":
            assert keys is not None
            wq = self.linear_query(query).unsqueeze(1)  # [B,1,H]
            align = self.v(torch.tanh(wq + keys)).squeeze(2)  # [B,S]
        else:
            q = self.linear_in(query) if kind == "general" else query
            align = torch.bmm(q.unsqueeze(1), memory.transpose(1, 2)).squeeze(1)  # [B,S]
        align = align.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(align, dim=-1)  # [B,S]
        context = torch.bmm(weights.unsqueeze(1), memory).squeeze(1)  # [B,H]
        out = self.linear_out(torch.cat([context, query], dim=1))
        if kind in ("dot", "general"):
            out = torch.tanh(out)
        return out, weights


__all__ = ["OnmtArch", "OpenNMTRNN"]
