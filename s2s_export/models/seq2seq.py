"""The zoo's encoder-decoder and the decoding contract the exporter splits on.

Decoding contract (any ``nn.Module`` with these members can be exported):

* ``pad_id``, ``bos_id``, ``eos_id`` (int attributes);
* ``encode(src [B,S] int64, src_lengths [B] int64) -> (static, state)``: two ordered
  ``dict[str, Tensor]``, every tensor batch-major (axis 0 = batch). ``static`` is fixed during
  decoding (memory, mask, projected keys); ``state`` is what the step updates;
* ``decode_step(tokens [B] int64, static, state) -> (log_probs [B,V], new_state, attn [B,S])``
  where ``new_state`` has the same names, shapes and dtypes as ``state``.

Training runs the same ``decode_step`` in a loop (``forward``), so training and inference cannot
disagree.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from .attention import Attention, make_attention
from .config import ModelConfig


def lstm_cell(x: Tensor, h: Tensor, c: Tensor, cell: nn.LSTMCell) -> tuple[Tensor, Tensor]:
    """One LSTM step as plain matmuls + gates (PyTorch gate order i, f, g, o).
    x [B,I], h/c [B,H] -> h', c' [B,H]. Exports to MatMul/Gemm, not to an ONNX LSTM loop."""
    gates = F.linear(x, cell.weight_ih, cell.bias_ih) + F.linear(h, cell.weight_hh, cell.bias_hh)
    i, f, g, o = gates.chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def gru_cell(x: Tensor, h: Tensor, cell: nn.GRUCell) -> Tensor:
    """One GRU step (PyTorch gate order r, z, n; reset applied after the hidden matmul)."""
    i_r, i_z, i_n = F.linear(x, cell.weight_ih, cell.bias_ih).chunk(3, dim=1)
    h_r, h_z, h_n = F.linear(h, cell.weight_hh, cell.bias_hh).chunk(3, dim=1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1.0 - z) * n + z * h


def stacked_cells(cells: nn.ModuleList, x: Tensor, h: Tensor, c: Tensor | None
                  ) -> tuple[Tensor, dict[str, Tensor]]:
    """One step of stacked LSTM/GRU cells, each layer's new state the next layer's input, nothing
    in between (the imported tools' decoders at inference): x [B,I], h [B,L,H], c [B,L,H] (LSTM
    cells; None for GRU) -> (the top layer's new state [B,H], {"h": [B,L,H], "c": [B,L,H] for
    LSTM cells})."""
    new_h, new_c = [], []
    for l, cell in enumerate(cells):
        if isinstance(cell, nn.LSTMCell):
            assert c is not None
            x, cl = lstm_cell(x, h[:, l], c[:, l], cell)
            new_c.append(cl)
        else:
            x = gru_cell(x, h[:, l], cast(nn.GRUCell, cell))
        new_h.append(x)
    state = {"h": torch.stack(new_h, dim=1)}
    if new_c:
        state["c"] = torch.stack(new_c, dim=1)
    return x, state


class Seq2Seq(nn.Module):
    """Multilayer LSTM/GRU encoder (optionally bidirectional) + attentive decoder."""

    pad_id, bos_id, eos_id, unk_id = PAD_ID, BOS_ID, EOS_ID, UNK_ID

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        cfg = self.config = config.validate()
        H, M, L = cfg.dec_hidden, cfg.memory_size, cfg.dec_layers
        rnn = nn.LSTM if cfg.cell == "lstm" else nn.GRU
        self.src_emb = nn.Embedding(cfg.src_vocab_size, cfg.emb_size, padding_idx=PAD_ID)
        self.tgt_emb = nn.Embedding(cfg.tgt_vocab_size, cfg.emb_size, padding_idx=PAD_ID)
        self.encoder = rnn(cfg.emb_size, cfg.enc_hidden, cfg.enc_layers, batch_first=True,
                           bidirectional=cfg.bidirectional,
                           dropout=cfg.dropout if cfg.enc_layers > 1 else 0.0)
        if cfg.bridge == "linear":
            self.bridge_h = nn.Linear(M, H)
            self.bridge_c = nn.Linear(M, H) if cfg.cell == "lstm" else None

        n_attn = 0 if cfg.attention == "none" else (L if cfg.placement == "layerwise" else 1)
        prefix = (lambda l: f"l{l}_") if cfg.placement == "layerwise" else (lambda l: "")
        attns = [make_attention(cfg.attention, prefix(l), H, M, cfg.heads, cfg.window) for l in range(n_attn)]
        self.attn = nn.ModuleList(attns)
        ctx = attns[0].context_size if attns else 0
        # first layer input: E y_{t-1} [; h̃_{t-1}] [; c_t (query 'pre')]
        first_in = cfg.emb_size + (H if cfg.input_feeding else 0) + (ctx if cfg.query == "pre" and n_attn else 0)
        cell = nn.LSTMCell if cfg.cell == "lstm" else nn.GRUCell
        self.cells = nn.ModuleList(cell(first_in if l == 0 else H, H) for l in range(L))
        # attentional vector tanh(W_c [c; h]) (one per attention)
        self.combine = nn.ModuleList(nn.Linear(a.context_size + H, H, bias=False) for a in attns)
        self.generator = nn.Linear(H, cfg.tgt_vocab_size)
        self.dropout = nn.Dropout(cfg.dropout)

    # ------------------------------------------------------------------ encode
    def encode(self, src: Tensor, src_lengths: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """src [B,S] int64, src_lengths [B] int64 (>= 1) -> (static, state)."""
        cfg = self.config
        B, S = src.shape
        emb = self.dropout(self.src_emb(src))  # [B,S,E]
        packed = pack_padded_sequence(emb, src_lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, final = self.encoder(packed)
        h_n, c_n = final if cfg.cell == "lstm" else (final, None)  # [Le*dirs,B,He] each
        src_mask = torch.arange(S, device=src.device).unsqueeze(0) < src_lengths.unsqueeze(1)  # [B,S]
        static: dict[str, Tensor] = {"src_mask": src_mask}
        memory, _ = pad_packed_sequence(out, batch_first=True)  # [B,max_len,M]
        if memory.size(1) < S:  # the caller padded beyond the longest sentence
            memory = F.pad(memory, (0, 0, 0, S - memory.size(1)))
        # memory stays in static even when no attention reads it (an unused packed RNN output
        # once broke the TorchScript export; export/wrap.py now handles that): dropping it would
        # change the IO of the no-attention preset's bundles
        if not self.attn or any(a.uses_memory for a in self.attn):
            static["memory"] = memory
        if cfg.attention in ("local-m", "local-p"):
            static["src_len"] = src_lengths.to(memory.dtype)  # [B]
        for a in self.attn:
            static.update(cast(Attention, a).precompute(memory))

        state: dict[str, Tensor] = {"h": self._bridge(h_n, self.bridge_h if cfg.bridge == "linear" else None)}
        if cfg.cell == "lstm":
            state["c"] = self._bridge(cast(Tensor, c_n), self.bridge_c if cfg.bridge == "linear" else None)
        if cfg.input_feeding:
            state["feed"] = h_n.new_zeros(B, cfg.dec_hidden)  # h̃_0 = 0
        if cfg.attention == "local-m":
            state["step"] = h_n.new_zeros(B)  # t, counted in float
        return static, state

    def _bridge(self, final: Tensor, linear: nn.Linear | None) -> Tensor:
        """final [enc_layers*dirs, B, He] -> initial decoder state [B, dec_layers, H]."""
        cfg = self.config
        dirs = 2 if cfg.bidirectional else 1
        B = final.size(1)
        per_layer = final.view(cfg.enc_layers, dirs, B, cfg.enc_hidden).permute(2, 0, 1, 3)
        per_layer = per_layer.reshape(B, cfg.enc_layers, dirs * cfg.enc_hidden)  # [B,Le,M] (h→;h←)
        if cfg.bridge == "zero":
            return final.new_zeros(B, cfg.dec_layers, cfg.dec_hidden)
        if cfg.bridge == "copy":
            return per_layer
        assert linear is not None
        if cfg.enc_layers != cfg.dec_layers:  # top layer, repeated for every decoder layer
            per_layer = per_layer[:, -1:].expand(B, cfg.dec_layers, per_layer.size(2))
        return torch.tanh(linear(per_layer))

    # ------------------------------------------------------------------ step
    def decode_step(self, tokens: Tensor, static: dict[str, Tensor], state: dict[str, Tensor]
                    ) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """tokens [B] -> log_probs [B,V], new_state, attn [B,S]."""
        cfg = self.config
        mask = static["src_mask"]
        memory = static.get("memory")
        src_len = static.get("src_len")
        step = state.get("step")
        h, c = state["h"], state.get("c")  # [B,L,H]
        attn_args = (memory, static, mask, src_len, step)

        x = self.dropout(self.tgt_emb(tokens))  # [B,E]
        if cfg.input_feeding:
            x = torch.cat([x, state["feed"]], dim=1)
        attn = None
        if cfg.query == "pre" and self.attn:  # Bahdanau: query = top state before the update
            ctx, attn = self.attn[0](h[:, -1], *attn_args)
            x = torch.cat([x, ctx], dim=1)

        new_h, new_c = [], []
        out = x
        for l, cell in enumerate(self.cells):
            if cfg.cell == "lstm":
                hl, cl = lstm_cell(x, h[:, l], c[:, l], cast(nn.LSTMCell, cell))  # type: ignore[index]
                new_c.append(cl)
            else:
                hl = gru_cell(x, h[:, l], cast(nn.GRUCell, cell))
            new_h.append(hl)
            out = hl
            if cfg.placement == "layerwise":
                ctx, attn = self.attn[l](hl, *attn_args)
                out = torch.tanh(self.combine[l](torch.cat([ctx, hl], dim=1)))
            x = self.dropout(out)

        if cfg.placement == "top" and self.attn:
            if cfg.query == "post":
                ctx, attn = self.attn[0](out, *attn_args)
            out = torch.tanh(self.combine[0](torch.cat([ctx, out], dim=1)))  # h̃_t

        log_probs = torch.log_softmax(self.generator(self.dropout(out)), dim=-1)
        new_state = {"h": torch.stack(new_h, dim=1)}
        if cfg.cell == "lstm":
            new_state["c"] = torch.stack(new_c, dim=1)
        if cfg.input_feeding:
            new_state["feed"] = out
        if step is not None:
            new_state["step"] = step + 1.0
        if attn is None:
            attn = torch.zeros_like(mask, dtype=log_probs.dtype)
        return log_probs, new_state, attn

    # ------------------------------------------------------------------ training
    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor,
                teacher_forcing: float = 1.0) -> Tensor:
        """tgt_in [B,T] (BOS first) -> log_probs [B,T,V], decoding with ``decode_step``.

        With ``teacher_forcing < 1`` each row feeds its own previous prediction with
        probability ``1 - teacher_forcing`` (drawn from torch's global generator)."""
        static, state = self.encode(src, src_lengths)
        tokens = tgt_in[:, 0]
        outs = []
        for t in range(tgt_in.size(1)):
            log_probs, state, _ = self.decode_step(tokens, static, state)
            outs.append(log_probs)
            if t + 1 < tgt_in.size(1):
                tokens = tgt_in[:, t + 1]
                if teacher_forcing < 1.0:
                    use_gold = torch.rand(tokens.shape, device=tokens.device) < teacher_forcing
                    tokens = torch.where(use_gold, tokens, log_probs.argmax(-1))
        return torch.stack(outs, dim=1)
