"""Mixed-precision FP16 graphs: policy, conversion, fidelity with real float16 math, overflow scan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxconverter_common")
torch = pytest.importorskip("torch")

from onnx import TensorProto, helper  # noqa: E402

from s2s_export.errors import BadInputError  # noqa: E402
from s2s_export.fp16.convert import (  # noqa: E402
    FLOAT, FLOAT16, convert_model, overflow_problems, tensor_types, to_fp16)
from s2s_export.fp16.fidelity import step_fidelity  # noqa: E402
from s2s_export.fp16.policy import DEFAULT_POLICY, FP16Policy, fp32_nodes  # noqa: E402
from s2s_export.fp16.testing import batch_tensors, export_graphs, preset_graphs, train_tiny  # noqa: E402
from s2s_export.models import PRESETS  # noqa: E402

GRAPHS = ("encoder", "decoder_step")
SMALL = dict(emb_size=32, enc_hidden=32, dec_hidden=64)  # bidirectional presets: M = 64


@pytest.fixture(scope="module", autouse=True)
def _threads() -> Any:
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _session(path: Path) -> Any:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _run_pair(d: Path, suffix: str) -> dict[str, np.ndarray]:
    """Encoder then one step (reordered rows) with ONNX Runtime CPU."""
    src = np.array([[4, 5, 6, 7, 8, 2], [5, 6, 7, 2, 0, 0], [9, 2, 0, 0, 0, 0]], dtype=np.int64)
    lengths = np.array([6, 4, 2], dtype=np.int64)
    enc = _session(d / f"encoder{suffix}.onnx")
    ctx = dict(zip([o.name for o in enc.get_outputs()], enc.run(None, {"src": src, "src_lengths": lengths})))
    step = _session(d / f"decoder_step{suffix}.onnx")
    feeds = {**ctx, "tokens": np.array([1, 1, 1]), "reorder": np.array([2, 0, 1])}
    outs = step.run(None, {i.name: feeds[i.name] for i in step.get_inputs()})
    return {**ctx, **dict(zip([o.name for o in step.get_outputs()], outs))}


@pytest.fixture(scope="module")
def converted() -> dict[str, tuple[Path, dict[str, Any]]]:
    """Every preset's bundle with its two FP16 graphs (default policy) and the reports."""
    out = {}
    for preset in PRESETS:
        d = preset_graphs(preset)
        reports = {g: to_fp16(d / f"{g}.onnx", d / f"{g}.fp16.onnx") for g in GRAPHS}
        out[preset] = (d, reports)
    return out


# ------------------------------------------------------------------ conversion
@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_converts_checks_and_runs(converted: dict[str, Any], preset: str) -> None:
    d, reports = converted[preset]
    for g in GRAPHS:
        fp32, fp16 = onnx.load(str(d / f"{g}.onnx")), onnx.load(str(d / f"{g}.fp16.onnx"))
        onnx.checker.check_model(fp16, full_check=True)
        # keep_io_types: same graph IO, float32 where the float32 graph has float32
        sig = lambda m: [(v.name, v.type.tensor_type.elem_type) for v in (*m.graph.input, *m.graph.output)]  # noqa: E731
        assert sig(fp16) == sig(fp32)
        assert FLOAT16 not in {t for _, t in sig(fp16)}
        # float16 really is used: the matmuls of the step run in float16
        types = tensor_types(fp16)
        fp16_ops = {n.op_type for n in fp16.graph.node if any(types.get(o) == FLOAT16 for o in n.output)}
        assert fp16_ops & {"MatMul", "Gemm", "Gather"}, fp16_ops
        assert reports[g].fp16_nodes > 0 and reports[g].fp32_nodes
    # ONNX Runtime CPU loads and runs it; close to float32 (ORT computes float16 nodes in float32
    # on the CPU, so this checks the graph, not the float16 accuracy: see the fidelity tests)
    ref, got = _run_pair(d, ""), _run_pair(d, ".fp16")
    assert set(ref) == set(got)
    for name, value in ref.items():
        assert got[name].dtype == value.dtype, name
        if value.dtype.kind == "f":
            np.testing.assert_allclose(got[name], value, atol=0.05, rtol=0.05, err_msg=name)
        elif name != "topk_ids":  # near-ties of an untrained model may swap
            np.testing.assert_array_equal(got[name], value, err_msg=name)


def _producer_chain(graph: Any, name: str) -> list[Any]:
    prod = {o: n for n in graph.node for o in n.output}
    chain, n = [], prod.get(name)
    while n is not None and n.op_type in ("Identity", "Cast"):
        chain.append(n)
        n = prod.get(n.input[0])
    return chain + ([n] if n is not None else [])


def test_policy_islands_on_the_local_attention_step(converted: dict[str, Any]) -> None:
    """The documented rules, seen in the converted luong-local-p step."""
    d, reports = converted["luong-local-p"]
    fp16 = onnx.load(str(d / "decoder_step.fp16.onnx"))
    types = tensor_types(fp16)

    def in_type(op: str) -> set[int]:
        return {types[n.input[0]] for n in fp16.graph.node if n.op_type == op}

    for op in ("Softmax", "LogSoftmax", "TopK", "Exp", "CumSum", "LessOrEqual", "Where"):
        assert in_type(op) in ({FLOAT}, {TensorProto.BOOL}), op  # float32 islands
    # the attention scores matmul (reads the precomputed keys) is float32, the context matmul
    # (reads the memory) and the generator Gemm are float16
    matmuls = {n.name: types[n.output[0]] for n in fp16.graph.node if n.op_type in ("MatMul", "Gemm")}
    assert FLOAT in matmuls.values() and FLOAT16 in matmuls.values()
    gen = [n for n in fp16.graph.node if n.op_type == "Gemm" and "generator" in n.name]
    assert gen and types[gen[0].output[0]] == FLOAT16
    rules = reports["decoder_step"].rules
    assert {"sensitive-op", "island", "attention-scores", "state-accumulator"} <= set(rules)
    # outputs computed in float32 reach the graph output without a float16 round trip
    for out in ("log_probs", "topk_log_probs", "next_c"):
        chain = _producer_chain(fp16.graph, out)
        assert not any(n.op_type == "Cast" and n.attribute[0].i == FLOAT16 for n in chain), (out, chain)
    # ... and no Cast32(Cast16(float32 x)) pair is left anywhere
    prod = {o: n for n in fp16.graph.node for o in n.output}
    for n in fp16.graph.node:
        if n.op_type == "Cast" and n.attribute[0].i == FLOAT:
            first = prod.get(n.input[0])
            assert not (first is not None and first.op_type == "Cast" and first.attribute[0].i == FLOAT16
                        and types.get(first.input[0]) == FLOAT), n.name


def test_encoder_rnn_and_cell_state_stay_float32(converted: dict[str, Any]) -> None:
    d, reports = converted["seed-global-mha"]
    enc = onnx.load(str(d / "encoder.fp16.onnx"))
    types = tensor_types(enc)
    lstm = [n for n in enc.graph.node if n.op_type == "LSTM"]
    assert lstm and all(types[n.input[0]] == FLOAT for n in lstm)
    assert reports["encoder"].rules.get("recurrent-op") == len(lstm)
    step = onnx.load(str(d / "decoder_step.fp16.onnx"))
    keep = fp32_nodes(step, DEFAULT_POLICY)  # the converted graph keeps the node names
    types = tensor_types(step)
    # the cell state path c -> Gather(reorder) -> f*c + i*g -> next_c is float32 end to end
    gathers = [n for n in step.graph.node if n.op_type == "Gather" and n.input[0] == "c"]
    assert gathers and types[gathers[0].output[0]] == FLOAT
    assert reports["decoder_step"].rules["state-accumulator"] >= 4 and keep


def test_policy_switches_change_the_graph(converted: dict[str, Any]) -> None:
    d, _ = converted["luong-general"]
    model = onnx.load(str(d / "decoder_step.onnx"))
    _, default = convert_model(model)
    _, vocab32 = convert_model(model, FP16Policy(vocab_projection_fp32=True))
    _, no_acc = convert_model(model, FP16Policy(state_accumulators_fp32=False, attention_scores_fp32=False))
    assert "vocab-projection" in vocab32.rules and "vocab-projection" not in default.rules
    assert "state-accumulator" not in no_acc.rules and "attention-scores" not in no_acc.rules
    assert len(no_acc.fp32_nodes) < len(default.fp32_nodes) < len(vocab32.fp32_nodes)
    assert default.to_dict()["rules"] == default.rules


def test_to_fp16_refuses_bad_inputs(converted: dict[str, Any], tmp_path: Path) -> None:
    d, _ = converted["luong-dot"]
    with pytest.raises(BadInputError, match="already contains float16"):
        to_fp16(d / "decoder_step.fp16.onnx", tmp_path / "again.onnx")
    with pytest.raises(BadInputError, match="does not exist"):
        to_fp16(tmp_path / "missing.onnx", tmp_path / "out.onnx")


def test_output_also_consumed_inside_the_graph(tmp_path: Path) -> None:
    """The case onnxconverter-common alone gets wrong: a graph output that feeds other nodes."""
    x = helper.make_tensor_value_info("x", FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", FLOAT, [2, 3])
    z = helper.make_tensor_value_info("z", FLOAT, [2, 6])
    w = helper.make_tensor("w", FLOAT, [3, 3], np.eye(3, dtype=np.float32).ravel().tolist())
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm"),
             helper.make_node("Concat", ["y", "y"], ["yy"], name="cat", axis=1),
             helper.make_node("Softmax", ["yy"], ["z"], name="sm", axis=-1)]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y, z], [w]),
                              opset_imports=[helper.make_opsetid("", 17)])
    out, report = convert_model(model)
    onnx.checker.check_model(out, full_check=True)
    assert [o.type.tensor_type.elem_type for o in out.graph.output] == [FLOAT, FLOAT]
    assert report.fp32_nodes == {"sm": "sensitive-op"}
    sess = ort.InferenceSession(out.SerializeToString(), providers=["CPUExecutionProvider"])
    xv = np.array([[1, 2, 3], [0, 0, 1]], dtype=np.float32)
    y_out, z_out = sess.run(None, {"x": xv})
    np.testing.assert_allclose(y_out, xv, atol=1e-3)
    e = np.exp(np.concatenate([xv, xv], axis=1))
    np.testing.assert_allclose(z_out, e / e.sum(1, keepdims=True), atol=1e-3)


# ------------------------------------------------------------------ overflow scan
def test_no_graph_holds_a_constant_that_overflows_float16(converted: dict[str, Any]) -> None:
    """Masks are -inf, never -1e9: scan every FP32 and FP16 graph of every preset."""
    for preset, (d, reports) in converted.items():
        for g in GRAPHS:
            for suffix in ("", ".fp16"):
                problems = overflow_problems(onnx.load(str(d / f"{g}{suffix}.onnx")))
                assert not problems, (preset, g, suffix, [str(p) for p in problems])
            assert not reports[g].problems


def _masked_softmax(fill: float) -> Any:
    scores = helper.make_tensor_value_info("scores", FLOAT, [2, 4])
    mask = helper.make_tensor_value_info("mask", TensorProto.BOOL, [2, 4])
    out = helper.make_tensor_value_info("p", FLOAT, [2, 4])
    w = helper.make_tensor("w", FLOAT, [4, 4], np.eye(4, dtype=np.float32).ravel().tolist())
    nodes = [helper.make_node("MatMul", ["scores", "w"], ["s2"], name="mm"),
             helper.make_node("Constant", [], ["fill"], name="fill",
                              value=helper.make_tensor("v", FLOAT, [], [fill])),
             helper.make_node("Add", ["s2", "fill"], ["s3"], name="bias"),
             helper.make_node("Where", ["mask", "s2", "s3"], ["s4"], name="where"),
             helper.make_node("Softmax", ["s4"], ["p"], name="sm", axis=-1)]
    return helper.make_model(helper.make_graph(nodes, "g", [scores, mask], [out], [w]),
                             opset_imports=[helper.make_opsetid("", 17)])


def test_overflow_scan_flags_a_minus_1e9_mask() -> None:
    problems = overflow_problems(_masked_softmax(-1e9))
    assert len(problems) == 1 and "-1e+09" in str(problems[0]) and "-inf" in problems[0].fix
    assert not overflow_problems(_masked_softmax(float("-inf")))
    assert not overflow_problems(_masked_softmax(-60000.0))
    # at conversion: reported unless every consumer stays float32 (here the Add is an island
    # of the Where/Softmax and keeps the constant in float32: safe)
    _, report = convert_model(_masked_softmax(-1e9))
    assert not report.problems
    keep = {"where": "island", "sm": "sensitive-op"}  # as if the Add ran in float16
    assert overflow_problems(_masked_softmax(-1e9), keep)


# ------------------------------------------------------------------ fidelity (real float16 math)
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Any]]:
    out = {}
    for preset, overrides in (("luong-local-p", SMALL), ("bahdanau", SMALL),
                              ("seed-global-mha", dict(emb_size=32, enc_hidden=64, dec_hidden=64))):
        model = train_tiny(preset, steps=200, **overrides)
        d = tmp_path_factory.mktemp(preset) / "bundle"
        export_graphs(model, d)
        for name, policy in (("fp16", DEFAULT_POLICY), ("acc16", FP16Policy(state_accumulators_fp32=False)),
                             ("scores16", FP16Policy(attention_scores_fp32=False))):
            for g in GRAPHS:
                to_fp16(d / f"{g}.onnx", d / f"{g}.{name}.onnx", policy)
        out[preset] = (d, model)
    return out


@pytest.mark.parametrize("preset", ["luong-local-p", "bahdanau", "seed-global-mha"])
def test_fp16_step_fidelity_on_a_trained_model(trained: dict[str, Any], preset: str) -> None:
    d, model = trained[preset]
    task = model.task
    src, lengths, _ = batch_tensors(task.test[:24], task.src_vocab, task.tgt_vocab)
    r = step_fidelity(d / "encoder.onnx", d / "decoder_step.onnx", d / "decoder_step.fp16.onnx",
                      src.numpy(), lengths.numpy(), max_len=12)
    assert r.steps >= 5 and r.sentences == 24
    assert r.top1_agreement >= 0.99, r
    assert r.exact_match >= 0.95, r
    assert 0 < r.max_logprob_error_topk <= 0.05, r  # 0: float16 was not exercised at all
    assert r.max_logprob_error_free <= 0.1, r
    assert all(v < 0.05 for v in r.max_state_error.values()), r
    # the whole FP16 pipeline (encoder too) on equal-length sentences
    same = [p for p in task.test if len(p[0]) == 6][:12]
    src, lengths, _ = batch_tensors(same, task.src_vocab, task.tgt_vocab)
    r = step_fidelity(d / "encoder.onnx", d / "decoder_step.onnx", d / "decoder_step.fp16.onnx",
                      src.numpy(), lengths.numpy(), max_len=10, encoder_fp16=d / "encoder.fp16.onnx")
    assert r.fp16_encoder and r.exact_match >= 0.9, r
    assert 0 < max(r.max_encoder_error.values()) < 0.02, r


def test_reference_evaluator_really_computes_in_float16(trained: dict[str, Any]) -> None:
    """ONNX Runtime CPU hides the float16 error (it computes in float32); the reference
    evaluator does not: its error is several times larger on the same graph."""
    d, model = trained["luong-local-p"]
    task = model.task
    src, lengths, _ = batch_tensors(task.test[:8], task.src_vocab, task.tgt_vocab)
    enc = _session(d / "encoder.onnx")
    ctx = dict(zip([o.name for o in enc.get_outputs()], enc.run(None, {"src": src.numpy(), "src_lengths": lengths.numpy()})))
    feeds = {**ctx, "tokens": np.ones(8, np.int64), "reorder": np.arange(8)}
    s32, s16 = _session(d / "decoder_step.onnx"), _session(d / "decoder_step.fp16.onnx")
    lp32 = s32.run(["log_probs"], {i.name: feeds[i.name] for i in s32.get_inputs()})[0]
    lp_ort = s16.run(["log_probs"], {i.name: feeds[i.name] for i in s16.get_inputs()})[0]
    from onnx.reference import ReferenceEvaluator

    ref = ReferenceEvaluator(str(d / "decoder_step.fp16.onnx"))
    lp_ref = ref.run(["log_probs"], {n: feeds[n] for n in ref.input_names})[0]
    err_ort, err_ref = np.abs(lp_ort - lp32).max(), np.abs(lp_ref - lp32).max()
    assert err_ref > 2 * err_ort, (err_ref, err_ort)


def test_float32_islands_pay_off(trained: dict[str, Any]) -> None:
    """Measured: attention scores in float16 raise the log-prob error; the cell state kept in
    float32 halves its own error (the recurrence compounds the rounding)."""
    d, model = trained["luong-local-p"]
    task = model.task
    src, lengths, _ = batch_tensors(task.test[:24], task.src_vocab, task.tgt_vocab)
    args = (d / "encoder.onnx", d / "decoder_step.onnx")
    base = step_fidelity(*args, d / "decoder_step.fp16.onnx", src.numpy(), lengths.numpy(), 12)
    scores16 = step_fidelity(*args, d / "decoder_step.scores16.onnx", src.numpy(), lengths.numpy(), 12)
    acc16 = step_fidelity(*args, d / "decoder_step.acc16.onnx", src.numpy(), lengths.numpy(), 12)
    assert scores16.max_logprob_error_topk > 1.5 * base.max_logprob_error_topk, (scores16, base)
    assert acc16.max_state_error["c"] > 1.3 * base.max_state_error["c"], (acc16, base)


def test_bundle_fidelity_for_s2s_verify(trained: dict[str, Any]) -> None:
    """The entry point ``s2s verify`` uses: a bundle with fp32 and fp16 graphs, source ids."""
    from s2s_export.fp16.fidelity import bundle_fidelity
    from s2s_export.tensorrt.builder import add_tensorrt

    d, model = trained["bahdanau"]
    add_tensorrt(d, build=False)  # records the FP16 graphs in the manifest
    task = model.task
    ids = [task.src_vocab.encode(s) for s, _ in task.test[:10]]
    r = bundle_fidelity(d, ids, max_len=12)
    assert r.sentences == 10 and r.top1_agreement >= 0.99 and r.exact_match >= 0.9
    assert set(r.to_dict()) >= {"max_logprob_error_topk", "top1_agreement", "exact_match"}
