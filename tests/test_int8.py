"""INT8 graphs (`s2s-export --int8` / `s2s quantize`, used with precision="int8"): batch-independent
(a sentence's output does not depend on its batch) and exact integer products on every x86 CPU."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
import pytest

from s2s_export.bundle import load_manifest
from s2s_export.export import export_model
from s2s_export.int8 import DEFAULT_VARIANT, METADATA_KEY, VARIANTS, WEIGHT_QMAX, quantize_bundle
from s2s_export.int8.check import integer_weights, saturation_problems, u8s8_product_avx2
from s2s_export.runtime import Translator

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "g2p.pt"


def with_variants(fp32: Path, root: Path) -> dict[str, Path]:
    """Copies of the fp32 bundle ``fp32`` with the int8 graphs of each variant."""
    out = {}
    for variant in VARIANTS:
        out[variant] = root / variant
        shutil.copytree(fp32, out[variant])
        quantize_bundle(out[variant], variant)
    return out


@pytest.fixture(scope="module")
def bundles(tiny_checkpoint: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A trained tiny model (reverse task): the fp32 bundle and one copy per INT8 variant."""
    root = tmp_path_factory.mktemp("int8")
    fp32 = export_model(tiny_checkpoint("luong-general"), root / "fp32", verify=False, max_src_len=24).path
    return {"fp32": fp32, **with_variants(fp32, root)}


@pytest.fixture(scope="module")
def g2p(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The shipped G2P example: bundles per variant and 300 CMUdict test words with references."""
    if not EXAMPLE.exists():
        pytest.skip("examples/g2p.pt not built (see examples/README.md)")
    from conftest import tiny_task

    root = tmp_path_factory.mktemp("int8_g2p")
    fp32 = export_model(EXAMPLE, root / "fp32", verify=False, max_src_len=40).path
    test = tiny_task("g2p").test[::20]  # 301 held-out words, spread over the split
    return {"bundles": {"fp32": fp32, **with_variants(fp32, root)},
            "words": ["".join(w) for w, _ in test], "refs": [list(p) for _, p in test]}


def all_nodes(graph: Any) -> list[Any]:
    """Nodes of ``graph`` and of its subgraphs (Loop/If bodies)."""
    out = []
    for node in graph.node:
        out.append(node)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                out += all_nodes(attr.g)
    return out


def results(translator: Translator, words: list[str], batch: int, **kw: Any) -> list[tuple[list[int], float]]:
    return [(h[0].ids, h[0].score) for h in translator.translate(words, max_batch_size=batch, **kw)]


def reverse_words() -> list[str]:
    from conftest import tiny_task

    return ["".join(src) for src, _ in tiny_task("reverse").test[:80]] + ["", "a", "jihgfedcbajihgfedcba"]


# ------------------------------------------------------------------ bundles and graphs
def test_export_int8_adds_hashed_graphs(tiny_checkpoint: Callable[..., Path], tmp_path: Path) -> None:
    out = export_model(tiny_checkpoint("luong-general"), tmp_path / "b", verify=False, int8=True).path
    m = load_manifest(out)  # verifies every sha256, the int8 files included
    assert m.graphs["int8"] == {"encoder": "encoder.int8.onnx", "decoder_step": "decoder_step.int8.onnx",
                                "greedy": "greedy.int8.onnx", "encoder_greedy": "encoder_greedy.int8.onnx"}
    assert set(m.graphs["int8"].values()) <= set(m.files)
    for name in m.graphs["int8"].values():
        model = onnx.load(str(out / name))
        assert {p.key: p.value for p in model.metadata_props}[METADATA_KEY] == DEFAULT_VARIANT == "static"
        ops = {n.op_type for n in all_nodes(model.graph)}  # the greedy graph's are in its Loop body
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops, ops
        assert not ops & {"DynamicQuantizeLinear", "DynamicQuantizeLSTM"}, ops
        assert (out / name).stat().st_size < (out / m.graphs["fp32"][name.split(".")[0]]).stat().st_size


@pytest.mark.parametrize("variant", VARIANTS)
def test_vendor_independence_property(bundles: dict[str, Path], g2p: dict[str, Any], variant: str) -> None:
    """Every int8 weight of every integer product lies in [-64, 64] and its activation is uint8,
    so a pair of products is at most 2 x 255 x 64 = 32,640: MLAS's AVX2/AVX512BW ``vpmaddubsw``
    kernels (int16 saturation) compute the exact product, as VNNI and AMX do. Checked on the
    graphs, and by emulating the AVX2 kernel on worst-case activations."""
    rng = np.random.default_rng(0)
    for bundle in (bundles[variant], g2p["bundles"][variant]):
        for name in load_manifest(bundle).graphs["int8"].values():
            model = onnx.load(str(bundle / name))
            assert saturation_problems(model) == [], name
            weights = integer_weights(model)
            assert weights and max(int(np.abs(w.astype(np.int16)).max()) for _, w in weights) <= WEIGHT_QMAX
            for _, w in weights:
                a = np.concatenate([np.full((1, w.shape[0]), 255), rng.integers(0, 256, (3, w.shape[0]))]).astype(np.uint8)
                assert (u8s8_product_avx2(a, w) == a.astype(np.int64) @ w.astype(np.int64)).all()
    # the property bites: full-range int8 weights (ONNX Runtime's quantize_dynamic) saturate
    w = np.full((8, 2), 127, dtype=np.int8)
    a = np.full((1, 8), 255, dtype=np.uint8)
    assert (u8s8_product_avx2(a, w) != a.astype(np.int64) @ w.astype(np.int64)).all()
    model = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"]),
         onnx.helper.make_node("MatMulInteger", ["q", "w", "z"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 8])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.INT32, [1, 2])],
        initializer=[onnx.numpy_helper.from_array(w, "w")]))
    assert saturation_problems(model) == ["MatMulInteger y: int8 weight values up to 127 in magnitude (limit 64)"]


# ------------------------------------------------------------------ batch independence
def same_outputs(variant: str, got: list[tuple[list[int], float]], want: list[tuple[list[int], float]]) -> None:
    """static: ids and scores identical. rowwise: ids identical, scores to float32 rounding: the
    float32 attention over a padded source can differ in the last bit with the amount of padding
    (as in FP32), and a row's scale passes its largest value's last bit on to the whole row,
    where a fixed scale absorbs it (module docstring of s2s_export.int8)."""
    if variant == "static":
        assert got == want
    else:
        assert [g[0] for g in got] == [w[0] for w in want]
        assert [g[1] for g in got] == pytest.approx([w[1] for w in want], abs=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_tiny_model_output_does_not_depend_on_the_batch(bundles: dict[str, Path], variant: str) -> None:
    translator = Translator.load(bundles[variant], precision="int8", intra_op_threads=1)
    words = reverse_words()
    for kw in ({}, {"beam_size": 4, "n_best": 2}):
        alone = results(translator, words, 1, **kw)
        same_outputs(variant, results(translator, words, 64, **kw), alone)
        same_outputs(variant, results(translator, words[::-1], 5, **kw), alone[::-1])


@pytest.mark.parametrize("variant", VARIANTS)
def test_fused_greedy_equals_the_python_loop(bundles: dict[str, Path], variant: str) -> None:
    """greedy.int8.onnx keeps finished rows in its Loop, the Python loop drops them: with
    per-row scales both give the same ids and scores at every batch size."""
    translator = Translator.load(bundles[variant], precision="int8", intra_op_threads=1)
    backend: Any = translator.backend
    assert backend.greedy_path.name == "greedy.int8.onnx"
    words = reverse_words()
    for batch in (1, 3, 8):
        backend.fused_greedy = True
        fused = results(translator, words, batch)
        backend.fused_greedy = False
        assert results(translator, words, batch) == fused


def test_g2p_example_batch_independence_and_quality(g2p: dict[str, Any]) -> None:
    """On the shipped G2P model: every variant's outputs at batch 1 equal those at batch 64
    (greedy and beam 4; ``same_outputs``), and its word error rate on 301 CMUdict test words is
    within 1 point of FP32's (phoneme error rate within 0.5)."""
    from s2s_export.train.metrics import score

    words, refs = g2p["words"], g2p["refs"]
    fp32 = Translator.load(g2p["bundles"]["fp32"], intra_op_threads=1)
    base = score([h[0].tokens for h in fp32.translate(words, max_length=50)], refs)
    for variant in VARIANTS:
        t = Translator.load(g2p["bundles"][variant], precision="int8", intra_op_threads=1)
        greedy = t.translate(words, max_batch_size=64, max_length=50)
        for kw in ({}, {"beam_size": 4}):
            same_outputs(variant, results(t, words, 64, max_length=50, **kw), results(t, words, 1, max_length=50, **kw))
        got = score([h[0].tokens for h in greedy], refs)
        assert abs(got["word_error_rate"] - base["word_error_rate"]) <= 0.01, (variant, got, base)
        assert abs(got["token_error_rate"] - base["token_error_rate"]) <= 0.005, (variant, got, base)


@pytest.mark.parametrize("variant", VARIANTS)
def test_int8_translation_is_close_to_fp32(bundles: dict[str, Path], variant: str) -> None:
    words = reverse_words()
    fp32 = Translator.load(bundles["fp32"], precision="fp32").translate(words)
    int8 = Translator.load(bundles[variant], precision="int8").translate(words)
    same = np.mean([a[0].ids == b[0].ids for a, b in zip(fp32, int8)])
    assert same >= 0.9, same  # small logit changes may flip a near tie, not the model


def test_rowwise_rows_are_independent() -> None:
    """The rewrite on one MatMul + one Gemm: each row of the result depends on that row only
    (exactly), all-zero rows give exact zeros, and the result approximates the float product."""
    import onnxruntime as ort

    from s2s_export.int8.rowwise import quantize_rowwise, quantize_weight

    rng = np.random.default_rng(1)
    w1, w2, b2 = rng.normal(size=(6, 5)), rng.normal(size=(3, 5)), rng.normal(size=3)
    h = onnx.helper
    model = h.make_model(h.make_graph(
        [h.make_node("MatMul", ["x", "w1"], ["m"]), h.make_node("Gemm", ["m", "w2", "b2"], ["y"], transB=1)], "g",
        [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["b", 6])],
        [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["b", 3])],
        initializer=[onnx.numpy_helper.from_array(v.astype(np.float32), n) for n, v in
                     (("w1", w1), ("w2", w2), ("b2", b2))]), opset_imports=[h.make_opsetid("", 17)])
    q = quantize_rowwise(model)
    assert {n.op_type for n in q.graph.node} >= {"MatMulIntegerToFloat", "QuantizeLinear"}
    sess = ort.InferenceSession(q.SerializeToString(), providers=["CPUExecutionProvider"])
    x = rng.normal(size=(7, 6)).astype(np.float32) * np.array([[1e-3], [1], [30], [0], [1], [2], [5]], np.float32)
    y = sess.run(None, {"x": x})[0]
    for i in range(len(x)):
        assert (sess.run(None, {"x": x[i:i + 1]})[0] == y[i:i + 1]).all()
    assert (y[3] == b2.astype(np.float32)).all()  # zero row: exact zeros before the bias
    ref = (x @ w1) @ w2.T + b2
    assert np.abs(y - ref).max() <= 0.05 * np.abs(ref).max()
    wq, scale = quantize_weight(w1)
    assert wq.dtype == np.int8 and np.abs(wq).max() == WEIGHT_QMAX
    assert np.abs(wq * scale - w1).max() <= scale.max() / 2 + 1e-6


def test_static_isolates_products_and_skips_graphs_without_any(tmp_path: Path) -> None:
    """A state read by a weight product and returned as an output stays float32 (the quantizer's
    pair goes on a private copy); a graph without weight products is written unchanged."""
    import onnxruntime as ort

    from s2s_export.int8.static import quantize_static_graph

    h, rng = onnx.helper, np.random.default_rng(2)
    w = onnx.numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "w")
    vi = h.make_tensor_value_info
    graph = h.make_graph([h.make_node("Tanh", ["x"], ["state"]), h.make_node("MatMul", ["state", "w"], ["y"])], "g",
                         [vi("x", onnx.TensorProto.FLOAT, ["b", 4])],
                         [vi("state", onnx.TensorProto.FLOAT, ["b", 4]), vi("y", onnx.TensorProto.FLOAT, ["b", 3])],
                         initializer=[w])
    src = tmp_path / "g.onnx"
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), str(src))
    x = rng.normal(size=(5, 4)).astype(np.float32)
    quantize_static_graph(src, tmp_path / "q.onnx", [{"x": x[:3]}, {"x": x[3:]}])
    want_state, want_y = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    state, y = ort.InferenceSession(str(tmp_path / "q.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert (state == want_state).all()  # the float32 state itself, not its dequantized copy
    assert 0 < np.abs(y - want_y).max() < 0.05  # the product is quantized
    bare = h.make_model(h.make_graph([h.make_node("Tanh", ["x"], ["y"])], "g", [vi("x", onnx.TensorProto.FLOAT, [2])],
                                     [vi("y", onnx.TensorProto.FLOAT, [2])]), opset_imports=[h.make_opsetid("", 17)])
    onnx.save(bare, str(src))
    quantize_static_graph(src, tmp_path / "q.onnx", [{"x": np.ones(2, np.float32)}])
    assert [n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node] == ["Tanh"]


# ------------------------------------------------------------------ static: calibration, CLI
def test_calibration_feeds_are_real_decodes(bundles: dict[str, Path], tmp_path: Path) -> None:
    from s2s_export.int8.calibration import collect_feeds, generated_sources

    a = generated_sources(30, 24, count=50, seed=3)
    assert a == generated_sources(30, 24, count=50, seed=3) and len(a) == 50
    assert all(1 <= len(s) <= 23 and min(s) >= 4 and max(s) < 30 for s in a)
    text = tmp_path / "cal.txt"
    text.write_text("abc\n\nhello\njihgfedcba\n", encoding="utf-8")
    enc, step = collect_feeds(bundles["fp32"], text)
    assert len(enc) == 1 and enc[0]["src"].shape == (3, 11)  # one batch of the 3 lines, EOS appended
    assert len(step) >= 4 and step[0]["tokens"].tolist() == [1, 1, 1]  # greedy from BOS
    assert {"tokens", "reorder"} | {t.name for t in load_manifest(bundles["fp32"]).io.state} <= set(step[0])
    assert len(step[-1]["tokens"]) < 3  # finished sentences left the batch, as in decoding


def test_quantize_cli_variants_and_calibration(bundles: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import run_cli

    copy = tmp_path / "b"
    shutil.copytree(bundles["fp32"], copy)
    cal = tmp_path / "cal.txt"
    cal.write_text("\n".join(reverse_words()[:40]), encoding="utf-8")
    code, out, err = run_cli("s2s", ["quantize", str(copy), "--calibrate", str(cal)], capsys, monkeypatch)
    assert code == 0, err
    assert f"INT8 variant static, calibrated on {cal}" in out
    model = onnx.load(str(copy / "decoder_step.int8.onnx"))
    assert {p.key: p.value for p in model.metadata_props}[METADATA_KEY] == "static"
    before = {p.name: p.read_bytes() for p in copy.iterdir()}
    for argv, exit_code, message in (
            (["--calibrate", str(tmp_path / "missing.txt")], 4, "calibration file"),
            (["--variant", "rowwise", "--calibrate", str(cal)], 1, "applies to the static INT8 variant"),
            (["--variant", "fast"], 1, "INT8 variant 'fast' is unknown")):
        code, out, err = run_cli("s2s", ["quantize", str(copy), *argv], capsys, monkeypatch)
        lines = err.strip().splitlines()
        assert code == exit_code and len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], err
    assert {p.name: p.read_bytes() for p in copy.iterdir()} == before  # nothing changed


def test_export_int8_options_fail_before_any_work(tiny_checkpoint: Callable[..., Path], tmp_path: Path) -> None:
    from s2s_export.errors import UsageError

    with pytest.raises(UsageError, match="without INT8 graphs"):
        export_model(tiny_checkpoint("luong-general"), tmp_path / "x", calibrate=tmp_path / "c.txt")
    with pytest.raises(UsageError, match="unknown"):
        export_model(tiny_checkpoint("luong-general"), tmp_path / "x", int8=True, int8_variant="fast")
    assert not (tmp_path / "x").exists()


def test_quantize_is_atomic_on_failure(bundles: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                       tmp_path: Path) -> None:
    import s2s_export.int8 as int8

    copy = tmp_path / "copy"
    shutil.copytree(bundles["rowwise"], copy)
    before = {p.name: p.read_bytes() for p in copy.iterdir()}

    def boom(src, dst, *args):  # type: ignore[no-untyped-def]
        Path(dst).write_bytes(b"partial")
        raise RuntimeError("injected")

    monkeypatch.setattr(int8, "quantize_graph", boom)
    with pytest.raises(Exception):
        quantize_bundle(copy)
    assert {p.name: p.read_bytes() for p in copy.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["copy"]  # no temp directory left behind


def test_quantize_runs_without_torch(bundles: dict[str, Path], tmp_path: Path) -> None:
    """`s2s quantize` (the default static variant: calibration decodes included) needs only the
    runtime, onnx and onnxruntime: it runs with torch unimportable."""
    import subprocess
    import sys

    copy = tmp_path / "b"
    shutil.copytree(bundles["fp32"], copy)
    code = f"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Block())
from s2s_export.cli.main import main
sys.argv = ["s2s", "quantize", {str(copy)!r}]
main()
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "INT8 variant static, calibrated on generated sources" in proc.stdout
    assert load_manifest(copy).graphs["int8"]["greedy"] == "greedy.int8.onnx"
