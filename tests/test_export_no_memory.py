"""Export of a contract module whose encoder returns no memory (no attention: the decoder starts
from the encoder's final state and never reads its output sequence).

The TorchScript exporter alone fails on such a module (``RuntimeError: vector::_M_range_check``
in its ONNX peephole pass, after printing the whole IR); ``EncoderGraph``'s scratch outputs and
``export_graph``'s removal of them make it export. Format-1 ids (pad 0, bos 1, eos 2, unk 3),
which ``export_model`` accepts today.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from s2s_export.export import Bundle, export_model
from s2s_export.export.spec import make_sources
from s2s_export.verify.inputs import ZOO
from s2s_export.export.wrap import EncoderGraph
from s2s_export.models.seq2seq import gru_cell, lstm_cell
from s2s_export.runtime import Translator
from s2s_export.runtime.search import SearchOptions, search
from s2s_export.runtime.translator import pad_sources
from torch_backend import TorchBackend

SRC_VOCAB = ["<pad>", "<s>", "</s>", "<unk>", *"abcdefgh"]
TGT_VOCAB = ["<pad>", "<s>", "</s>", "<unk>", *"ABCDEFGHIJ"]
VARIANTS = {"gru-1": ("gru", 1, False), "lstm-2-bi": ("lstm", 2, True)}


class FinalStateSeq2Seq(nn.Module):
    """GRU/LSTM encoder (``layers``, optionally bidirectional) whose final states start a stack
    of decoder cells; no attention, so ``encode`` keeps no memory: static is the source mask
    alone (``attn`` is zeros [B,S])."""

    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3

    def __init__(self, cell: str, layers: int, bidirectional: bool, emb: int = 8, hidden: int = 12) -> None:
        super().__init__()
        self.config = {"cell": cell, "layers": layers, "bidirectional": bidirectional}
        self.cell, self.dirs, self.layers, self.hidden = cell, 2 if bidirectional else 1, layers, hidden
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.src_emb = nn.Embedding(len(SRC_VOCAB), emb)
        self.tgt_emb = nn.Embedding(len(TGT_VOCAB), emb)
        self.encoder = rnn(emb, hidden, layers, batch_first=True, bidirectional=bidirectional)
        H = self.dirs * hidden
        step = nn.LSTMCell if cell == "lstm" else nn.GRUCell
        self.cells = nn.ModuleList(step(emb if i == 0 else H, H) for i in range(layers))
        self.out = nn.Linear(H, len(TGT_VOCAB))

    def _per_layer(self, final: Tensor) -> Tensor:
        """[layers*dirs, B, H] -> [B, layers, dirs*H]."""
        B = final.size(1)
        return final.view(self.layers, self.dirs, B, self.hidden).permute(2, 0, 1, 3).reshape(B, self.layers, -1)

    def encode(self, src: Tensor, src_lengths: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        packed = pack_padded_sequence(self.src_emb(src), src_lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, final = self.encoder(packed)  # the output sequence is never read
        h, c = final if self.cell == "lstm" else (final, None)
        state = {"h": self._per_layer(h)}
        if c is not None:
            state["c"] = self._per_layer(c)
        mask = torch.arange(src.size(1)).unsqueeze(0) < src_lengths.unsqueeze(1)  # [B,S]
        return {"src_mask": mask}, state

    def decode_step(self, tokens: Tensor, static: dict[str, Tensor], state: dict[str, Tensor]
                    ) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        x = self.tgt_emb(tokens)  # [B,E]
        hs, cs = [], []
        for i, cell in enumerate(self.cells):
            if self.cell == "lstm":
                h, c = lstm_cell(x, state["h"][:, i], state["c"][:, i], cell)  # type: ignore[arg-type]
                cs.append(c)
            else:
                h = gru_cell(x, state["h"][:, i], cell)  # type: ignore[arg-type]
            hs.append(h)
            x = h
        log_probs = torch.log_softmax(self.out(x), dim=-1)  # [B,V]
        new_state = {"h": torch.stack(hs, 1)}
        if cs:
            new_state["c"] = torch.stack(cs, 1)
        return log_probs, new_state, torch.zeros_like(static["src_mask"], dtype=log_probs.dtype)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[FinalStateSeq2Seq, Bundle]]:
    """Each variant, random weights (scaled up so outputs vary), exported with the parity check."""
    root = tmp_path_factory.mktemp("no_memory")
    out = {}
    for i, (name, args) in enumerate(VARIANTS.items()):
        torch.manual_seed(10 + i)
        model = FinalStateSeq2Seq(*args).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(3.0)
        out[name] = (model, export_model(model, root / name, src_vocab=SRC_VOCAB, tgt_vocab=TGT_VOCAB,
                                         tokenizer="char", topk=4))
    return out


def test_plain_torchscript_export_still_fails(tmp_path: Path) -> None:
    """The exporter problem this works around is real (if torch fixes it, the scratch outputs
    can go): the bare ``encode`` does not export."""
    model = FinalStateSeq2Seq("gru", 1, False).eval()

    class Bare(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, src: Tensor, src_lengths: Tensor) -> tuple[Tensor, ...]:
            static, state = self.model.encode(src, src_lengths)
            return static["src_mask"], state["h"]

    src, lens = make_sources([9, 5, 7], 9, len(SRC_VOCAB), ZOO)
    with pytest.raises(RuntimeError, match="range_check"):
        torch.onnx.export(Bare(), (src, lens), str(tmp_path / "bare.onnx"), dynamo=False)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_exports_without_memory_and_passes_parity(exported: dict[str, Any], name: str) -> None:
    model, bundle = exported[name]
    m = bundle.manifest
    assert [t.name for t in m.io.static] == ["src_mask"]
    assert [t.name for t in m.io.state] == (["h", "c"] if name.startswith("lstm") else ["h"])
    assert bundle.parity["passed"] and bundle.parity["greedy"]["identical"] == bundle.parity["greedy"]["sentences"]
    graph = onnx.load(str(bundle.path / "encoder.onnx")).graph
    assert [o.name for o in graph.output] == m.io.encoder.output_names  # scratch outputs removed
    rnns = [n for n in graph.node if n.op_type in ("GRU", "LSTM")]
    assert len(rnns) == VARIANTS[name][1]  # one ONNX node per layer
    assert rnns[-1].output[0] == ""  # the top layer's output sequence is not computed
    assert all(n.op_type != "PadPacked" for n in graph.node)


def test_eager_encoder_graph_has_no_scratch_outputs(exported: dict[str, Any]) -> None:
    model, _ = exported["gru-1"]
    src, lens = make_sources([4, 2], 5, len(SRC_VOCAB), ZOO)
    with torch.no_grad():
        out = EncoderGraph(model, ["src_mask"], ["h"])(src, lens)
    assert [tuple(t.shape) for t in out] == [(2, 5), (2, 1, 12)]


@pytest.mark.parametrize("name", list(VARIANTS))
@pytest.mark.parametrize("beam", [1, 3])
def test_translates_like_the_torch_module(exported: dict[str, Any], name: str, beam: int) -> None:
    """The bundle's translations (ONNX Runtime) = the same search over the PyTorch module."""
    model, bundle = exported[name]
    texts = ["abc", "h", "hgfedcba", "aaaa", "bad", "cafe", "ghgh"]
    translator = Translator.load(bundle.path, intra_op_threads=1, spinning="off")
    got = translator.translate(texts, beam_size=beam, n_best=beam, max_length=12)
    ids = [[SRC_VOCAB.index(ch) for ch in t] + [2] for t in texts]
    src, lens = pad_sources(ids)
    want = search(TorchBackend(model, len(TGT_VOCAB)), src, lens,
                  SearchOptions(beam_size=beam, n_best=beam, max_length=12, blocked=(0, 1)))  # the bundle's
    assert any(len(hyps[0].ids) > 1 for hyps in got)  # not every output is a bare EOS
    for hyps, ref in zip(got, want):
        assert [h.ids for h in hyps] == [r.ids for r in ref]
        np.testing.assert_allclose([h.score for h in hyps], [r.score for r in ref], rtol=1e-4, atol=1e-4)
        assert hyps[0].text == "".join(TGT_VOCAB[i] for i in ref[0].ids if i not in (0, 1, 2))
