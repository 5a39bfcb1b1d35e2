"""Joey NMT 2.3's recurrent encoder-decoder, rebuilt on the decoding contract (Joey is never imported).

Reproduces (joeynmt v2.3) ``embeddings.py`` ``Embeddings``, ``encoders.py`` ``RecurrentEncoder``,
``decoders.py`` ``RecurrentDecoder`` (``_forward_step``, ``_init_hidden``) and ``attention.py``
``BahdanauAttention``/``LuongAttention``, in eval mode (dropout off):

* embeddings: ``lut(x)``, times ``sqrt(embedding_dim)`` when ``scale`` is set;
* encoder: ``nn.GRU``/``nn.LSTM`` (batch-first, bidirectional, layers) over the packed source;
  ``encoder_final`` [B,M] = the top layer's last state, forward and backward concatenated;
* decoder step (one token; ``query`` = the *new* top-layer hidden state, for both attentions)::

      rnn_input = [E y_{t-1}; att_vector_{t-1}]   (input feeding; else E y_{t-1})
      h_t = RNN(rnn_input, h_{t-1})                (all layers; LSTM: h and c)
      luong:    score_s = h_t · K_s                K = key_layer(memory), no bias
      bahdanau: score_s = v · tanh(W_q h_t + K_s)  energy_layer v, query_layer W_q, no biases
      alpha = softmax(score masked to -inf outside the source), context = alpha · memory
      att_vector_t = tanh(att_vector_layer([h_t; context]))
      log_probs = log_softmax(output_layer(att_vector_t))    output_layer without bias

* initial state (``init_hidden``): ``bridge`` tanh(bridge_layer(encoder_final)), ``last``
  encoder_final (its forward half when the encoder is bidirectional and twice the decoder
  size), anything else zeros; the same for every decoder layer; an LSTM's cell starts equal to
  its hidden state; ``att_vector_0`` = 0.

The decoder step is plain matmuls and gates (``seq2seq.stacked_cells``); the encoder
packs with ``enforce_sorted=False`` (ONNX GRU/LSTM with ``sequence_lens``). Static:
``src_mask [B,S] bool``, ``memory [B,S,M]``, ``proj_keys [B,S,H]``; state: ``h [B,L,H]``
(+ ``c [B,L,H]`` for LSTM, + ``feed [B,H]`` with input feeding).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .seq2seq import stacked_cells


@dataclass(frozen=True)
class JoeyArch:
    """What the module needs to know (from Joey's ``config.yaml`` ``model`` section and the
    checkpoint's tensor shapes). ``cell``: ``gru``/``lstm`` for both sides (Joey:
    ``rnn_type``, anything but ``gru`` is an LSTM); ``attention``: ``bahdanau``/``luong``;
    ``init_hidden``: ``bridge``/``last``/``zero``."""

    src_vocab_size: int
    tgt_vocab_size: int
    src_emb: int
    tgt_emb: int
    src_scale: bool
    tgt_scale: bool
    enc_cell: str
    enc_hidden: int
    enc_layers: int
    bidirectional: bool
    dec_cell: str
    dec_hidden: int
    dec_layers: int
    attention: str
    input_feeding: bool
    init_hidden: str

    @property
    def memory_size(self) -> int:
        return self.enc_hidden * (2 if self.bidirectional else 1)


class JoeyRecurrent(nn.Module):
    """The decoding contract over a Joey NMT 2.3 recurrent model (weights: ``load_joey_state``).

    Special ids are set by the importer as ``src_pad_id`` ... ``tgt_unk_id``."""

    def __init__(self, arch: JoeyArch) -> None:
        super().__init__()
        self.arch = arch
        self.config: dict[str, Any] = {"format": "joeynmt", **asdict(arch)}
        self.src_vocab_size, self.tgt_vocab_size = arch.src_vocab_size, arch.tgt_vocab_size
        a, M, H = arch, arch.memory_size, arch.dec_hidden
        self.src_embed = nn.Embedding(a.src_vocab_size, a.src_emb)
        self.trg_embed = nn.Embedding(a.tgt_vocab_size, a.tgt_emb)
        rnn = nn.GRU if a.enc_cell == "gru" else nn.LSTM
        self.encoder = rnn(a.src_emb, a.enc_hidden, a.enc_layers, batch_first=True, bidirectional=a.bidirectional)
        cell = nn.GRUCell if a.dec_cell == "gru" else nn.LSTMCell
        first_in = a.tgt_emb + (H if a.input_feeding else 0)
        self.cells = nn.ModuleList(cell(first_in if l == 0 else H, H) for l in range(a.dec_layers))
        self.key_layer = nn.Linear(M, H, bias=False)
        if a.attention == "bahdanau":
            self.query_layer = nn.Linear(H, H, bias=False)
            self.energy_layer = nn.Linear(H, 1, bias=False)
        self.att_vector_layer = nn.Linear(H + M, H)
        self.output_layer = nn.Linear(H, a.tgt_vocab_size, bias=False)
        if a.init_hidden == "bridge":
            self.bridge_layer = nn.Linear(M, H)

    # ------------------------------------------------------------------ encode
    def encode(self, src: Tensor, src_lengths: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """src [B,S] int64, src_lengths [B] int64 (>= 1, EOS counted) -> (static, state)."""
        a = self.arch
        B, S = src.shape
        emb = self.src_embed(src)  # [B,S,E]
        if a.src_scale:
            emb = emb * math.sqrt(a.src_emb)
        packed = pack_padded_sequence(emb, src_lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, final = self.encoder(packed)
        h_n = final[0] if a.enc_cell == "lstm" else final  # [Le*dirs,B,He]
        memory, _ = pad_packed_sequence(out, batch_first=True)  # [B,max_len,M]
        if memory.size(1) < S:  # the caller padded beyond the longest sentence
            memory = F.pad(memory, (0, 0, 0, S - memory.size(1)))
        top = h_n.view(a.enc_layers, 2 if a.bidirectional else 1, B, a.enc_hidden)[-1]  # [dirs,B,He]
        encoder_final = torch.cat(list(top), dim=1)  # [B,M] (forward; backward)
        src_mask = torch.arange(S, device=src.device).unsqueeze(0) < src_lengths.unsqueeze(1)  # [B,S]
        static = {"src_mask": src_mask, "memory": memory, "proj_keys": self.key_layer(memory)}
        h0 = self._init_hidden(encoder_final).unsqueeze(1).expand(B, a.dec_layers, a.dec_hidden)  # [B,L,H]
        state = {"h": h0.contiguous()}
        if a.dec_cell == "lstm":
            state["c"] = h0.contiguous()  # Joey: (hidden, hidden)
        if a.input_feeding:
            state["feed"] = encoder_final.new_zeros(B, a.dec_hidden)  # att_vector_0
        return static, state

    def _init_hidden(self, encoder_final: Tensor) -> Tensor:
        """encoder_final [B,M] -> the initial hidden state of each decoder layer [B,H]."""
        a = self.arch
        if a.init_hidden == "bridge":
            return torch.tanh(self.bridge_layer(encoder_final))
        if a.init_hidden == "last":
            return encoder_final[:, :a.dec_hidden] if encoder_final.size(1) == 2 * a.dec_hidden else encoder_final
        return encoder_final.new_zeros(encoder_final.size(0), a.dec_hidden)

    # ------------------------------------------------------------------ step
    def _attend(self, query: Tensor, static: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """query [B,H] -> context [B,M], alphas [B,S]."""
        keys = static["proj_keys"]  # [B,S,H]
        if self.arch.attention == "bahdanau":
            energy = torch.tanh(self.query_layer(query).unsqueeze(1) + keys)  # [B,S,H]
            scores = self.energy_layer(energy).squeeze(2)  # [B,S]
        else:
            scores = torch.bmm(keys, query.unsqueeze(2)).squeeze(2)  # [B,S]
        scores = scores.masked_fill(~static["src_mask"], float("-inf"))
        alphas = torch.softmax(scores, dim=-1)
        context = torch.bmm(alphas.unsqueeze(1), static["memory"]).squeeze(1)  # [B,M]
        return context, alphas

    def decode_step(self, tokens: Tensor, static: dict[str, Tensor], state: dict[str, Tensor]
                    ) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """tokens [B] int64 -> log_probs [B,V], new_state, attn [B,S]."""
        a = self.arch
        x = self.trg_embed(tokens)  # [B,E]
        if a.tgt_scale:
            x = x * math.sqrt(a.tgt_emb)
        if a.input_feeding:
            x = torch.cat([x, state["feed"]], dim=1)  # [B,E+H]
        query, new_state = stacked_cells(self.cells, x, state["h"], state.get("c"))  # query: new top state [B,H]
        context, alphas = self._attend(query, static)
        att_vector = torch.tanh(self.att_vector_layer(torch.cat([query, context], dim=1)))  # [B,H]
        log_probs = torch.log_softmax(self.output_layer(att_vector), dim=-1)  # [B,V]
        if a.input_feeding:
            new_state["feed"] = att_vector
        return log_probs, new_state, alphas


def joey_state_names(arch: JoeyArch) -> dict[str, str]:
    """Joey's ``model_state`` key -> this module's parameter name, for every tensor it needs."""
    names = {"src_embed.lut.weight": "src_embed.weight", "trg_embed.lut.weight": "trg_embed.weight",
             "decoder.attention.key_layer.weight": "key_layer.weight",
             "decoder.att_vector_layer.weight": "att_vector_layer.weight",
             "decoder.att_vector_layer.bias": "att_vector_layer.bias",
             "decoder.output_layer.weight": "output_layer.weight"}
    for l in range(arch.enc_layers):
        for d in ("", "_reverse") if arch.bidirectional else ("",):
            for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                names[f"encoder.rnn.{p}_l{l}{d}"] = f"encoder.{p}_l{l}{d}"
    for l in range(arch.dec_layers):
        for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            names[f"decoder.rnn.{p}_l{l}"] = f"cells.{l}.{p}"
    if arch.attention == "bahdanau":
        names["decoder.attention.query_layer.weight"] = "query_layer.weight"
        names["decoder.attention.energy_layer.weight"] = "energy_layer.weight"
    if arch.init_hidden == "bridge":
        names["decoder.bridge_layer.weight"] = "bridge_layer.weight"
        names["decoder.bridge_layer.bias"] = "bridge_layer.bias"
    return names


def load_joey_state(model: JoeyRecurrent, state: dict[str, Tensor]) -> list[str]:
    """Copy Joey's tensors into ``model``; returns the problems (missing keys, unexpected keys,
    shape mismatches), one line each, empty when every tensor fits."""
    names = joey_state_names(model.arch)
    params = dict(model.named_parameters())
    problems = [f"the checkpoint lacks {k}" for k in names if k not in state]
    extra = sorted(k for k in state if k not in names)
    if extra:
        problems.append(f"the checkpoint has tensors this architecture does not use: {', '.join(extra[:6])}"
                        + (f" (+{len(extra) - 6} more)" if len(extra) > 6 else ""))
    with torch.no_grad():
        for key, name in names.items():
            if key not in state:
                continue
            value = state[key]
            if not isinstance(value, Tensor) or tuple(value.shape) != tuple(params[name].shape):
                shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                problems.append(f"{key} has shape {shape}, the config implies {tuple(params[name].shape)}")
                continue
            params[name].copy_(value.float())
    return problems


__all__ = ["JoeyArch", "JoeyRecurrent", "joey_state_names", "load_joey_state"]
