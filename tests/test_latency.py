"""Batch-1 latency work (issue 17, item 1): the graph rewrites at export (``export/fold.py``:
embedding + input projection as one table or a one-hot input; ``export/simplify.py``: shape
arithmetic of fixed axes folded), the combined encoder + fused greedy graph
(``encoder_greedy.onnx``) and the runtime's one-input path. Each must compute what it replaces:
the rewrites within float32 rounding (export parity: atol 1e-4), the combined graph and the
one-input path exactly (ids and scores).

The model: g2p_en's architecture (``importers/g2p_en.py``) with random weights of a size where
both folds apply (29 graphemes < embedding 32; the decoder's table [74, 3H] is smaller than the
embedding and input weights it replaces); no g2p_en installation needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from onnx import TensorProto as TP  # noqa: E402
from onnx import helper, numpy_helper  # noqa: E402

from s2s_export.errors import ConfigError  # noqa: E402
from s2s_export.export.fold import fold_embeddings  # noqa: E402
from s2s_export.export.simplify import fold_static_shapes  # noqa: E402
from s2s_export.importers import g2p_en as imp  # noqa: E402
from s2s_export.runtime import Translator  # noqa: E402

E, H = 32, 8
WORDS = ["abc", "hello", "qu", "zzyzx", "supercalifragilistic", "a", "onomatopoeia", "xylophones"]


def session(model: Any) -> Any:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same model exported as usual (``opt``, parity checked) and without the graph rewrites
    (``plain``)."""
    from s2s_export.export import api, export_model

    root = tmp_path_factory.mktemp("latency")
    rng = np.random.default_rng(0)
    sizes = {"S": len(imp.GRAPHEMES), "T": len(imp.PHONEMES), "E": E, "H": H, "3H": 3 * H}
    arrays = {name: rng.standard_normal([sizes[d] for d in dims]).astype(np.float32)
              for name, dims in imp.ARRAYS.items()}
    np.savez(root / "model.npz", **arrays)
    torch.set_num_threads(1)
    out = {"opt": export_model(root / "model.npz", root / "opt", max_src_len=64).path}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(api, "optimize_graph", lambda path, spec: [])
        out["plain"] = export_model(root / "model.npz", root / "plain", max_src_len=64, verify=False).path
    out["npz"] = root / "model.npz"
    return out


def ops(path: Path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


# ------------------------------------------------------------------ the rewrites at export

def test_exported_graphs_are_rewritten_and_pass_parity(bundles: dict[str, Path]) -> None:
    from s2s_export.bundle import load_manifest

    m = load_manifest(bundles["opt"])
    assert m.parity["passed"] and m.parity["max_abs"] < 1e-4
    enc, plain_enc = ops(bundles["opt"] / "encoder.onnx"), ops(bundles["plain"] / "encoder.onnx")
    assert "OneHot" in enc and "OneHot" not in plain_enc  # 29 graphemes < 32 embedding columns
    step, plain_step = ops(bundles["opt"] / "decoder_step.onnx"), ops(bundles["plain"] / "decoder_step.onnx")
    assert plain_step.count("Gemm") == 3 and step.count("Gemm") == 2  # the input product is a table
    assert plain_step.count("Shape") > step.count("Shape") == 1  # only attn's (the batch is symbolic)
    assert len(step) < len(plain_step) - 20
    model = onnx.load(str(bundles["opt"] / "decoder_step.onnx"))
    tables = [t for t in model.graph.initializer if list(t.dims) == [len(imp.PHONEMES), 3 * H]]
    assert len(tables) == 1 and not [t for t in model.graph.initializer if list(t.dims) == [len(imp.PHONEMES), E]]


def test_rewritten_graphs_compute_what_they_replace(bundles: dict[str, Path]) -> None:
    rng = np.random.default_rng(1)
    lengths = np.array([9, 1, 5])
    src = rng.integers(3, len(imp.GRAPHEMES), (3, 9))
    src[np.arange(9)[None] >= lengths[:, None]] = 0
    enc = {k: session(onnx.load(str(bundles[k] / "encoder.onnx"))) for k in ("plain", "opt")}
    a, b = (enc[k].run(None, {"src": src, "src_lengths": lengths}) for k in ("plain", "opt"))
    assert np.array_equal(a[0], b[0]) and np.abs(a[1] - b[1]).max() < 1e-5  # src_mask, h
    step = {k: session(onnx.load(str(bundles[k] / "decoder_step.onnx"))) for k in ("plain", "opt")}
    feed = {"tokens": np.array([2, 40, 73]), "reorder": np.array([1, 0, 1]), "src_mask": a[0], "h": a[1]}
    x, y = (dict(zip([o.name for o in step[k].get_outputs()], step[k].run(None, feed))) for k in ("plain", "opt"))
    for name in ("topk_log_probs", "log_probs", "next_h"):
        assert np.abs(x[name] - y[name]).max() < 1e-5, name
    assert np.array_equal(x["topk_ids"], y["topk_ids"]) and np.array_equal(x["attn"], y["attn"])


def _lookup_graph(V: int, D: int, N: int, matmul: bool) -> tuple[Any, dict[str, np.ndarray]]:
    """ids [n] -> Gather(E [V,D]) -> Gemm(W [N,D], b, transB, alpha 0.5, beta 2) or MatMul(W [D,N]) + b."""
    rng = np.random.default_rng(V)
    w = {"E": rng.standard_normal((V, D)), "b": rng.standard_normal(N),
         "W": rng.standard_normal((D, N) if matmul else (N, D))}
    w = {k: v.astype(np.float32) for k, v in w.items()}
    nodes = [helper.make_node("Gather", ["E", "ids"], ["x"], axis=0)]
    if matmul:
        nodes += [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])]
    else:
        nodes += [helper.make_node("Gemm", ["x", "W", "b"], ["y"], transB=1, alpha=0.5, beta=2.0)]
    nodes += [helper.make_node("Tanh", ["y"], ["out"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("ids", TP.INT64, ["n"])],
                              [helper.make_tensor_value_info("out", TP.FLOAT, ["n", N])],
                              initializer=[numpy_helper.from_array(v, k) for k, v in w.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), w


@pytest.mark.parametrize("matmul", [False, True])
def test_table_fold_of_a_lookup(matmul: bool) -> None:
    model, w = _lookup_graph(V=10, D=16, N=12, matmul=matmul)
    ids = np.array([0, 9, 3, 3])
    want = session(model).run(None, {"ids": ids})[0]
    done = fold_embeddings(model)
    assert [f.kind for f in done] == ["table"] and done[0].values_after == 10 * 12
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node] == ["Gather", "Tanh"]
    assert np.abs(session(model).run(None, {"ids": ids})[0] - want).max() < 1e-6
    (table,) = [numpy_helper.to_array(t) for t in model.graph.initializer]
    proj = w["E"].astype(np.float64) @ (w["W"] if matmul else 0.5 * w["W"].T).astype(np.float64)
    np.testing.assert_allclose(table, proj + (1 if matmul else 2) * w["b"], rtol=1e-6, atol=1e-6)


def test_no_table_that_would_grow_the_graph() -> None:
    model, _ = _lookup_graph(V=100, D=4, N=12, matmul=False)  # 1,200 table values for 448
    before = model.SerializeToString()
    assert fold_embeddings(model) == [] and model.SerializeToString() == before


def _gru_graph(V: int, D: int, H_: int = 5) -> Any:
    """src [B,S] -> Gather(E) -> Transpose -> GRU(sequence_lens) -> Y_h."""
    rng = np.random.default_rng(D)
    init = {"E": rng.standard_normal((V, D)), "W": rng.standard_normal((1, 3 * H_, D)),
            "R": rng.standard_normal((1, 3 * H_, H_)), "B": rng.standard_normal((1, 6 * H_))}
    nodes = [helper.make_node("Gather", ["E", "src"], ["x"], axis=0),
             helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
             helper.make_node("Cast", ["lengths"], ["lens"], to=TP.INT32),
             helper.make_node("GRU", ["xt", "W", "R", "B", "lens"], ["", "h"], hidden_size=H_,
                              linear_before_reset=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("src", TP.INT64, ["b", "s"]),
                                           helper.make_tensor_value_info("lengths", TP.INT64, ["b"])],
                              [helper.make_tensor_value_info("h", TP.FLOAT, [1, "b", H_])],
                              initializer=[numpy_helper.from_array(v.astype(np.float32), k) for k, v in init.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_one_hot_fold_of_an_rnn_input() -> None:
    src, lengths = np.array([[1, 2, 3, 4], [5, 0, 0, 0]]), np.array([4, 1])
    model = _gru_graph(V=6, D=16)
    want = session(model).run(None, {"src": src, "lengths": lengths})[0]
    done = fold_embeddings(model)
    assert [f.kind for f in done] == ["one-hot"]
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node][0] == "OneHot"
    assert np.abs(session(model).run(None, {"src": src, "lengths": lengths})[0] - want).max() < 1e-5
    wide = _gru_graph(V=20, D=16)  # more symbols than embedding columns: the product would grow
    assert fold_embeddings(wide) == []


def test_shape_folding_is_exact(bundles: dict[str, Path]) -> None:
    model = onnx.load(str(bundles["plain"] / "decoder_step.onnx"))
    ref = session(model)
    removed = fold_static_shapes(model)
    onnx.checker.check_model(model, full_check=True)
    assert removed >= 14 and [n.op_type for n in model.graph.node].count("Shape") == 1
    rng = np.random.default_rng(2)
    feed = {"tokens": np.array([2, 5]), "reorder": np.array([1, 1]), "src_mask": np.ones((2, 4), bool),
            "h": rng.standard_normal((2, H)).astype(np.float32)}
    for x, y in zip(ref.run(None, feed), session(model).run(None, feed)):
        assert np.array_equal(x, y)  # the same float operations, bit for bit


# ------------------------------------------------------------------ encoder + greedy in one graph

def test_combined_graph_structure(bundles: dict[str, Path]) -> None:
    from s2s_export.bundle import load_manifest

    m = load_manifest(bundles["opt"])
    assert m.graphs["fp32"]["encoder_greedy"] == "encoder_greedy.onnx" and "encoder_greedy.onnx" in m.files
    model = onnx.load(str(bundles["opt"] / "encoder_greedy.onnx"))
    onnx.checker.check_model(model, full_check=True)
    spec = m.io.encoder_greedy
    assert [i.name for i in model.graph.input] == spec.input_names == ["src", "src_lengths", "max_lengths"]
    assert [o.name for o in model.graph.output] == spec.output_names == ["ids", "scores", "lengths"]
    (loop,) = [n for n in model.graph.node if n.op_type == "Loop"]
    body = loop.attribute[0].g
    read = {i for n in (*model.graph.node, *body.node) for i in n.input}
    assert "reorder" not in read  # rows never move in the loop: no identity gathers
    assert "ConstantOfShape" not in [n.op_type for n in body.node]  # attn (unused in the loop) is gone


def _results(t: Translator, batch: int) -> list[tuple[list[int], float]]:
    return [(h[0].ids, h[0].score) for h in t.translate(WORDS, max_batch_size=batch)]


def test_combined_graph_equals_the_loop_and_the_greedy_graph(bundles: dict[str, Path]) -> None:
    from s2s_export.bundle import load_manifest
    from s2s_export.runtime.backends.onnxruntime import OnnxRuntimeBackend

    path = bundles["opt"]
    t = Translator.load(path, intra_op_threads=1)
    backend: Any = t.backend
    fused = {b: _results(t, b) for b in (1, 3)}
    assert "src" in backend._greedy_inputs  # the combined graph ran, in one session
    backend.fused_greedy = False
    assert {b: _results(t, b) for b in (1, 3)} == fused  # the search's loop: ids and scores, exactly
    m = load_manifest(path)
    only_greedy = OnnxRuntimeBackend(path / "encoder.onnx", path / "decoder_step.onnx", m.io, intra_op_threads=1,
                                     greedy_path=path / "greedy.onnx")
    assert {b: _results(Translator(m, only_greedy, path), b) for b in (1, 3)} == fused
    assert "max_lengths" in only_greedy._greedy_inputs and "src" not in only_greedy._greedy_inputs


def test_combined_graph_reproduces_the_torch_module(bundles: dict[str, Path]) -> None:
    from s2s_export.runtime.search import SearchOptions, search
    from s2s_export.runtime.translator import pad_sources
    from torch_backend import TorchBackend

    model = imp.load(bundles["npz"]).model
    t = Translator.load(bundles["opt"], intra_op_threads=1)
    sources = [t.framing.frame(ids, t.manifest.src_specials) for ids in t.encode(WORDS)]
    src, lengths = pad_sources(sources)
    opts = SearchOptions(max_length=20, start_id=2, eos_id=3, pad_id=0, unk_id=1, blocked=(0, 2))
    want = [r[0].ids for r in search(TorchBackend(model, len(imp.PHONEMES)), src, lengths, opts)]
    assert [h[0].ids for h in t.translate(WORDS)] == want


# ------------------------------------------------------------------ the runtime's one-input path

def test_one_input_path_equals_batches(bundles: dict[str, Path]) -> None:
    t = Translator.load(bundles["opt"], intra_op_threads=1)
    together = _results(t, 8)
    assert [_results_one(t, w) for w in WORDS] == together
    t.backend.fused_greedy = False  # type: ignore[attr-defined]  # the search's loop, one input
    assert [_results_one(t, w) for w in WORDS] == together
    ids = t.encode(["hello"])
    assert t.translate_ids(ids)[0][0].ids == t.translate(["hello"])[0][0].ids
    assert t.translate(["hello", ""])[1][0].ids == []  # an empty text is still not run


def _results_one(t: Translator, word: str) -> tuple[list[int], float]:
    h = t.translate([word])[0][0]
    return h.ids, h.score


def test_options_are_validated_once_per_request(bundles: dict[str, Path]) -> None:
    t = Translator.load(bundles["opt"], intra_op_threads=1)
    assert t.options() is t.options() and t.options(max_length=5) is t.options(max_length=5)
    assert t.options(max_length=5) is not t.options() and t.options().max_length == 20
    for _ in range(2):  # refused every time, never cached
        with pytest.raises(ConfigError):
            t.options(beam_size=0)
    t.options(beam_size=1)
    with pytest.raises(ConfigError):
        t.options(beam_size=True)  # equal to 1 and of the same hash, but not an integer
    assert len(t.translate(["abc"], max_length=2)[0][0].ids) <= 2
