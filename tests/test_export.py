"""Export: every preset round-trips (ONNX Runtime vs PyTorch), mixed-length batches, dynamic
batch/source length, greedy token identity, a contract module that is not from the zoo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from s2s_export.bundle import load_manifest
from s2s_export.errors import BadInputError, ParityError, UsageError
from s2s_export.export import Bundle, export_model
from s2s_export.export import api
from s2s_export.export import parity as parity_mod
from s2s_export.export.parity import check_parity
from s2s_export.export.spec import EXAMPLE, make_sources
from s2s_export.verify.inputs import ZOO
from s2s_export.export.wrap import EncoderGraph, StepGraph
from s2s_export.graphio import BATCH, SRC_LEN
from s2s_export.models import PRESETS, Seq2Seq, load_checkpoint, preset_config

torch.set_num_threads(1)

SRC_V, TGT_V = 17, 23
# (batch, padded src_len): sizes other than the export example (batch 3, src_len 9)
SIZES = [(1, 1), (1, 50), (7, 1), (7, 50)]
assert all((b, s) != EXAMPLE[:2] for b, s in SIZES)


def small_config(name: str):  # type: ignore[no-untyped-def]
    dirs = 2 if PRESETS[name].get("bidirectional", True) else 1
    return preset_config(name, SRC_V, TGT_V, emb_size=8, enc_hidden=16 // dirs, dec_hidden=16, heads=2)


def session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Seq2Seq, Bundle]]:
    """Every preset, small and with random weights, exported once (without parity)."""
    root = tmp_path_factory.mktemp("presets")
    out = {}
    for i, name in enumerate(PRESETS):
        torch.manual_seed(i)
        model = Seq2Seq(small_config(name)).eval()
        out[name] = (model, export_model(model, root / name, verify=False))
    return out


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_round_trips(exported: dict[str, tuple[Seq2Seq, Bundle]], name: str) -> None:
    model, bundle = exported[name]
    manifest = load_manifest(bundle.path)
    assert sorted(p.name for p in bundle.path.iterdir()) == ["decoder_step.onnx", "encoder.onnx",
                                                             "encoder_greedy.onnx", "greedy.onnx", "manifest.json"]
    report = check_parity(bundle.path, model, manifest.io, SRC_V, greedy=False)
    assert report["passed"], report
    outputs = report["outputs"]
    expected = {f"encoder/{n}" for n in manifest.io.encoder.output_names}
    expected |= {f"decoder_step/{n}" for n in manifest.io.step.output_names}
    assert set(outputs) == expected  # every output of both graphs is checked
    assert report["max_abs"] < 1e-5
    assert report["inputs"]["batch"] == 6 and len(set(report["inputs"]["src_lengths"])) > 3
    for r in outputs.values():
        assert r["ok"] and r["max_abs"] <= 1e-4


@pytest.mark.parametrize("name", list(PRESETS))
def test_saved_graphs_keep_symbolic_axes(exported: dict[str, tuple[Seq2Seq, Bundle]], name: str) -> None:
    _, bundle = exported[name]
    manifest = bundle.manifest
    for spec in (manifest.io.encoder, manifest.io.step):
        g = onnx.load(str(bundle.path / manifest.graphs["fp32"][spec.name])).graph
        assert [v.name for v in g.input] == spec.input_names
        assert [v.name for v in g.output] == spec.output_names
        for vi, t in zip([*g.input, *g.output], [*spec.inputs, *spec.outputs]):
            dims = vi.type.tensor_type.shape.dim
            assert len(dims) == len(t.shape)
            assert dims[0].dim_param == BATCH and not dims[0].HasField("dim_value"), (vi.name, dims)
            for d, axis in zip(dims, t.shape):
                if isinstance(axis, str):
                    assert d.dim_param == axis and not d.HasField("dim_value"), (vi.name, axis)
                else:
                    assert d.dim_value == axis
    # the attention-reading tensors follow the source length
    assert manifest.io.step.output("attn").shape == (BATCH, SRC_LEN)
    assert manifest.io.encoder.output("src_mask").shape == (BATCH, SRC_LEN)


def _mixed_lengths(batch: int, src_len: int) -> list[int]:
    return [src_len] if batch == 1 else [src_len, *np.linspace(1, src_len, batch - 1).astype(int).tolist()]


@pytest.mark.parametrize("name", list(PRESETS))
def test_other_sizes_and_padding_invariance(exported: dict[str, tuple[Seq2Seq, Bundle]], name: str) -> None:
    """Batch 1 and 7, source length 1 and 50 (export example: batch 3, lengths 5..9); a sentence's
    outputs do not depend on the padding around it (compared with the sentence alone)."""
    model, bundle = exported[name]
    io = bundle.manifest.io
    enc, step = session(bundle.path / "encoder.onnx"), session(bundle.path / "decoder_step.onnx")
    static_names, state_names = [t.name for t in io.static], [t.name for t in io.state]
    wrapped_enc = EncoderGraph(model, static_names, state_names)
    wrapped_step = StepGraph(model, static_names, state_names, io.topk, io.blocked, bundle.manifest.io.step.output('log_probs').shape[1])
    for batch, src_len in SIZES:
        lengths = _mixed_lengths(batch, src_len)
        src, lens = make_sources(lengths, src_len, SRC_V, ZOO, seed=batch + src_len)
        got = enc.run(None, {"src": src.numpy(), "src_lengths": lens.numpy()})
        with torch.no_grad():
            ref = [t.numpy() for t in wrapped_enc(src, lens)]
        for name_, g, r, spec in zip(io.encoder.output_names, got, ref, io.encoder.outputs):
            assert g.shape == spec.concrete(batch, src_len)
            np.testing.assert_allclose(g, r, atol=1e-5, rtol=1e-4, err_msg=f"{name_} at {batch}x{src_len}")
        reorder = np.arange(batch)[::-1].copy()
        tokens = np.full(batch, 1, dtype=np.int64)
        got_step = step.run(None, dict(zip(io.step.input_names, [tokens, reorder, *got])))
        with torch.no_grad():
            ref_step = wrapped_step(torch.from_numpy(tokens), torch.from_numpy(reorder),
                                    *(torch.from_numpy(a) for a in got))
        for name_, g, r, spec in zip(io.step.output_names, got_step, ref_step, io.step.outputs):
            assert g.shape == spec.concrete(batch, src_len)
            if name_ != "topk_ids":
                np.testing.assert_allclose(g, r.numpy(), atol=1e-5, rtol=1e-4, err_msg=f"{name_} {batch}x{src_len}")
        if batch == 1:
            continue
        # padding invariance: every row equals the sentence encoded and stepped alone (unpadded)
        ident = step.run(None, dict(zip(io.step.input_names, [tokens, np.arange(batch), *got])))
        for i, n in enumerate(lengths):
            alone = enc.run(None, {"src": src[i:i + 1, :n].numpy(), "src_lengths": lens[i:i + 1].numpy()})
            alone_step = step.run(None, dict(zip(io.step.input_names, [tokens[:1], np.zeros(1, np.int64), *alone])))
            for spec, g, a in [*zip(io.encoder.outputs, got, alone), *zip(io.step.outputs, ident, alone_step)]:
                row = g[i:i + 1]
                if SRC_LEN in spec.shape:  # compare the valid positions only
                    row = np.take(row, np.arange(n), axis=spec.shape.index(SRC_LEN))
                if spec.name != "topk_ids":
                    np.testing.assert_allclose(row, a, atol=1e-5, rtol=1e-4, err_msg=f"{spec.name} row {i}")


def test_state_is_gathered_by_reorder(exported: dict[str, tuple[Seq2Seq, Bundle]]) -> None:
    """A duplicated reorder row gives identical outputs; identity vs swapped rows agree."""
    model, bundle = exported["luong-local-m"]
    io = bundle.manifest.io
    enc, step = session(bundle.path / "encoder.onnx"), session(bundle.path / "decoder_step.onnx")
    src, lens = make_sources([4, 4], 4, SRC_V, ZOO, seed=3)
    src[1] = src[0]  # two copies of one sentence: static rows are equal
    outs = enc.run(None, {"src": src.numpy(), "src_lengths": lens.numpy()})
    n_static = len(io.static)
    state = list(outs[n_static:])
    for i, a in enumerate(state):  # make the two rows' states differ
        if a.dtype == np.float32 and a.ndim > 1:
            state[i] = a.copy()
            state[i][1] += 0.5
    tokens = np.array([5, 5], dtype=np.int64)
    feed = lambda r: dict(zip(io.step.input_names, [tokens, np.array(r, np.int64), *outs[:n_static], *state]))  # noqa: E731
    same0 = step.run(["log_probs"], feed([0, 0]))[0]
    same1 = step.run(["log_probs"], feed([1, 1]))[0]
    ident = step.run(["log_probs"], feed([0, 1]))[0]
    swapped = step.run(["log_probs"], feed([1, 0]))[0]
    np.testing.assert_array_equal(same0[0], same0[1])
    assert np.abs(same0[0] - same1[0]).max() > 1e-4  # the rows really differ
    np.testing.assert_allclose(ident[0], same0[0], atol=1e-6)
    np.testing.assert_allclose(swapped[0], same1[0], atol=1e-6)
    np.testing.assert_allclose(swapped[1], same0[1], atol=1e-6)


def test_topk_is_clipped_to_the_vocabulary(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Seq2Seq(preset_config("luong-general", SRC_V, 6, emb_size=8, enc_hidden=4, dec_hidden=8))
    bundle = export_model(model, tmp_path / "b", topk=8, verify=False)
    assert bundle.manifest.topk == 6
    assert bundle.manifest.io.step.output("topk_ids").shape == (BATCH, 6)


def test_bad_arguments_are_usage_errors(tmp_path: Path) -> None:
    model = Seq2Seq(small_config("luong-general"))
    for kwargs in ({"opset": 12}, {"opset": 99}, {"topk": 0}, {"max_batch": 0}, {"tokenizer": "bpe"}):
        with pytest.raises(UsageError):
            export_model(model, tmp_path / "b", verify=False, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(BadInputError, match="target vocabulary has 5 tokens"):
        export_model(model, tmp_path / "b", verify=False, tgt_vocab=["<pad>", "<s>", "</s>", "<unk>", "x"])
    with pytest.raises(BadInputError, match="source vocabulary has 4 tokens but the model.s embedding has"):
        export_model(model, tmp_path / "b", verify=False, src_vocab=["a", "b", "c", "d"])
    assert not (tmp_path / "b").exists()


def test_opset_18_exports(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Seq2Seq(small_config("bahdanau")).eval()
    bundle = export_model(model, tmp_path / "b", opset=18, verify=False)
    g = onnx.load(str(bundle.path / "decoder_step.onnx"))
    assert bundle.manifest.opset == 18
    assert {o.version for o in g.opset_import if o.domain in ("", "ai.onnx")} == {18}
    assert check_parity(bundle.path, model, bundle.manifest.io, SRC_V, greedy=False)["passed"]


def test_parity_failure_names_the_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Weights changed after the export: ParityError naming the step outputs, nothing written."""
    torch.manual_seed(0)
    model = Seq2Seq(small_config("luong-general")).eval()
    real_write = api._write

    def write_then_perturb(*args, **kwargs):  # type: ignore[no-untyped-def]
        real_write(*args, **kwargs)
        with torch.no_grad():
            model.generator.bias[5] += 0.05

    monkeypatch.setattr(api, "_write", write_then_perturb)
    monkeypatch.setattr(parity_mod, "check_greedy", lambda *a, **k: {
        "sentences": 1, "identical": 1, "max_length": 1, "max_score_diff": 0.0, "first_difference": None,
        "ok": True})
    with pytest.raises(ParityError) as info:
        export_model(model, tmp_path / "b")
    text = str(info.value)
    assert "decoder_step/log_probs" in text and "max abs error" in text and "atol 0.0001" in text
    assert "encoder/" not in text  # the encoder does not read the generator
    assert all(line.startswith("parity failed for ") for line in text.splitlines())
    assert not (tmp_path / "b").exists() and list(tmp_path.iterdir()) == []


def test_compare_figures() -> None:
    ref = np.array([1.0, -2.0, 0.0, 1e-6], dtype=np.float32)
    r = parity_mod.compare(ref + np.float32(5e-5), ref)
    assert r["ok"] and r["max_abs"] == pytest.approx(5e-5, rel=1e-2)
    assert r["max_rel"] == pytest.approx(5e-5, rel=1e-2)  # only |ref| > atol counts for rel
    assert not parity_mod.compare(ref + np.float32(2e-3), ref)["ok"]
    assert parity_mod.compare(np.array([True, False]), np.array([True, False]))["ok"]
    assert not parity_mod.compare(np.array([1, 2]), np.array([1, 3]))["ok"]
    inf = np.array([-np.inf, 1.0], dtype=np.float32)
    assert parity_mod.compare(inf.copy(), inf)["ok"]
    assert not parity_mod.compare(np.zeros(2, np.float32), np.zeros(3, np.float32))["ok"]


# ---------------------------------------------------------------- greedy token identity

def _runtime_has_translator() -> bool:
    try:
        from s2s_export.runtime import Translator  # noqa: F401
        from s2s_export.verify.reference import reference_search  # noqa: F401
    except ImportError:
        return False
    return True


needs_runtime = pytest.mark.skipif(not _runtime_has_translator(),
                                   reason="s2s_export.runtime lacks Translator (or verify.reference is missing): "
                                          "the greedy check runs the runtime against the torch reference")


@needs_runtime
def test_export_with_verify_trained_model(tmp_path: Path, tiny_checkpoint) -> None:  # type: ignore[no-untyped-def]
    path = tiny_checkpoint("luong-general")
    bundle = export_model(path, tmp_path / "b")
    greedy = bundle.parity["greedy"]
    assert bundle.parity["passed"] and greedy["ok"]
    assert greedy["identical"] == greedy["sentences"] == 6
    assert greedy["max_score_diff"] < 1e-3
    assert load_manifest(bundle.path).parity == bundle.parity
    # the trained model decodes something meaningful: the runtime reverses a held-out string
    from s2s_export.runtime import Translator

    ckpt = load_checkpoint(path)
    hyp = Translator.load(bundle.path).translate(["abcde"])[0][0]
    assert hyp.text == "edcba" and ckpt.meta.get("task") == "reverse"


# ---------------------------------------------------------------- a module outside the zoo

class MeanPoolGRU(nn.Module):
    """Written from scratch: packed GRU encoder, decoder state initialised with the mean of the
    valid memory positions, dot attention, a step counter kept as an int64 state."""

    pad_id, bos_id, eos_id = 0, 1, 2

    def __init__(self, src_vocab: int = 11, tgt_vocab: int = 13, emb: int = 8, hidden: int = 12) -> None:
        super().__init__()
        self.src_vocab_size = src_vocab
        self.config = {"emb": emb, "hidden": hidden}
        self.src_emb = nn.Embedding(src_vocab, emb)
        self.rnn = nn.GRU(emb, hidden, batch_first=True)
        self.tgt_emb = nn.Embedding(tgt_vocab, emb)
        self.cell = nn.GRUCell(emb + hidden, hidden)
        self.out = nn.Linear(2 * hidden, tgt_vocab)

    def encode(self, src: Tensor, src_lengths: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        B, S = src.shape
        packed = pack_padded_sequence(self.src_emb(src), src_lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        out, _ = self.rnn(packed)
        memory, _ = pad_packed_sequence(out, batch_first=True)
        if memory.size(1) < S:
            memory = F.pad(memory, (0, 0, 0, S - memory.size(1)))
        valid = torch.arange(S).unsqueeze(0) < src_lengths.unsqueeze(1)  # [B,S]
        pooled = (memory * valid.unsqueeze(2)).sum(1) / src_lengths.unsqueeze(1).to(memory.dtype)
        return ({"mem": memory, "valid": valid},
                {"hid": pooled, "ctx": torch.zeros_like(pooled), "t": torch.zeros_like(src_lengths)})

    def decode_step(self, tokens: Tensor, static: dict[str, Tensor], state: dict[str, Tensor]
                    ) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        h = self.cell(torch.cat([self.tgt_emb(tokens), state["ctx"]], 1), state["hid"])
        scores = torch.bmm(static["mem"], h.unsqueeze(2)).squeeze(2).masked_fill(~static["valid"], float("-inf"))
        a = torch.softmax(scores, 1)
        ctx = torch.bmm(a.unsqueeze(1), static["mem"]).squeeze(1)
        log_probs = torch.log_softmax(self.out(torch.cat([h, ctx], 1)), -1)
        return log_probs, {"hid": h, "ctx": ctx, "t": state["t"] + 1}, a


def test_non_zoo_module_exports(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = MeanPoolGRU().eval()
    bundle = export_model(model, tmp_path / "b", verify=False)
    m = load_manifest(bundle.path)
    assert m.model_config == {"class": f"{__name__}.MeanPoolGRU", "emb": 8, "hidden": 12}
    assert m.src_vocab[:4] == ["<pad>", "<s>", "</s>", "<unk>"] and len(m.src_vocab) == 11
    assert m.tgt_vocab[4:6] == ["<tok4>", "<tok5>"] and len(m.tgt_vocab) == 13
    assert [w for w in bundle.warnings if "placeholder tokens (<tokN>)" in w]  # said, not silent
    assert [t.name for t in m.io.static] == ["mem", "valid"]
    assert [(t.name, t.dtype, t.shape) for t in m.io.state] == [
        ("hid", "float32", (BATCH, 12)), ("ctx", "float32", (BATCH, 12)), ("t", "int64", (BATCH,))]
    report = check_parity(bundle.path, model, m.io, 11, greedy=False)
    assert report["passed"] and report["outputs"]["decoder_step/next_t"]["max_abs"] == 0
    # sizes other than the example, mixed lengths
    enc = session(bundle.path / "encoder.onnx")
    src, lens = make_sources([50, 1, 20, 3, 49, 50, 7], 50, 11, ZOO, seed=5)
    got = enc.run(None, {"src": src.numpy(), "src_lengths": lens.numpy()})
    with torch.no_grad():
        ref = EncoderGraph(model, ["mem", "valid"], ["hid", "ctx", "t"])(src, lens)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r.numpy(), atol=1e-5, rtol=1e-4)


def test_non_zoo_module_with_vocabularies(tmp_path: Path) -> None:
    torch.manual_seed(4)
    model = MeanPoolGRU(src_vocab=6, tgt_vocab=7).train()  # the training flag is restored
    src_vocab = ["<pad>", "<s>", "</s>", "<unk>", "a", "b"]
    tgt_vocab = ["<pad>", "<s>", "</s>", "<unk>", "x", "y", "z"]
    bundle = export_model(model, tmp_path / "b", verify=False, src_vocab=src_vocab, tgt_vocab=tgt_vocab,
                          tokenizer="word", topk=3)
    assert model.training
    m = bundle.manifest
    assert (m.src_vocab, m.tgt_vocab, m.tokenizer, m.topk) == (src_vocab, tgt_vocab, "word", 3)
    assert m.src_specials.as_dict() == m.tgt_specials.as_dict() == {"pad": 0, "bos": 1, "eos": 2, "unk": 3}


@needs_runtime
def test_non_zoo_module_greedy_identity(tmp_path: Path) -> None:
    torch.manual_seed(3)
    bundle = export_model(MeanPoolGRU().eval(), tmp_path / "b")
    assert bundle.parity["passed"] and bundle.parity["greedy"]["identical"] == 6


def test_contract_violations_are_reported(tmp_path: Path) -> None:
    class NotBatchMajor(MeanPoolGRU):
        def encode(self, src, src_lengths):  # type: ignore[no-untyped-def]
            static, state = super().encode(src, src_lengths)
            return {**static, "mem": static["mem"].transpose(0, 1)}, state

    class NoSpecials(nn.Module):
        pass

    class WrongState(MeanPoolGRU):
        def decode_step(self, tokens, static, state):  # type: ignore[no-untyped-def]
            lp, new, a = super().decode_step(tokens, static, state)
            return lp, {"hid": new["hid"]}, a

    with pytest.raises(BadInputError, match="batch-major"):
        export_model(NotBatchMajor(), tmp_path / "b", verify=False)
    with pytest.raises(UsageError, match="pad_id"):
        export_model(NoSpecials(), tmp_path / "b", verify=False)
    with pytest.raises(BadInputError, match="new_state"):
        export_model(WrongState(), tmp_path / "b", verify=False)
    with pytest.raises(UsageError, match="cannot export"):
        export_model(object(), tmp_path / "b")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_a_size_frozen_into_the_graph_fails_parity(tmp_path: Path) -> None:
    """A model that turns a size into a Python int traces to a graph that only runs at the
    export example's size: parity (run at other sizes) reports it, nothing is written."""

    class Frozen(MeanPoolGRU):
        def decode_step(self, tokens, static, state):  # type: ignore[no-untyped-def]
            lp, new, a = super().decode_step(tokens, static, state)
            return lp, new, a.reshape(int(a.shape[0]), int(a.shape[1]))

    torch.manual_seed(0)
    with pytest.raises(ParityError, match="decoder_step graph does not run at batch 6"):
        export_model(Frozen().eval(), tmp_path / "b")
    assert list(tmp_path.iterdir()) == []


def test_frozen_axis_in_a_saved_graph_is_refused(exported: dict[str, tuple[Seq2Seq, Bundle]],
                                                 tmp_path: Path) -> None:
    from s2s_export.export.onnx import GraphCheckError, check_graph

    _, bundle = exported["luong-general"]
    model = onnx.load(str(bundle.path / "encoder.onnx"))
    dim = model.graph.input[0].type.tensor_type.shape.dim[1]  # src: [batch, src_len]
    dim.Clear()
    dim.dim_value = 9
    onnx.save(model, str(tmp_path / "encoder.onnx"))
    with pytest.raises(GraphCheckError, match="axis 1 \\(src_len\\) of src is 9 in the saved graph, not symbolic"):
        check_graph(tmp_path / "encoder.onnx", bundle.manifest.io.encoder)
    check_graph(bundle.path / "encoder.onnx", bundle.manifest.io.encoder)
