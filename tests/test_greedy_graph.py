"""The fused greedy graph (export/greedy.py): one ONNX Loop over the decoder step, used by the
ONNX Runtime backend for plain greedy requests; it must give exactly the Python loop's results."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from s2s_export.bundle import load_manifest
from s2s_export.runtime import Translator
from s2s_export.runtime.backends.base import FusedGreedy
from s2s_export.vocab import PAD_ID

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from s2s_export.export import export_model  # noqa: E402
from s2s_export.models import PRESETS  # noqa: E402

REQUESTS: list[dict[str, Any]] = [{}, {"max_length": 3}, {"max_length_ratio": 0.5},
                                  {"length_penalty": "gnmt", "alpha": 0.6}]


@pytest.fixture(scope="module")
def bundles(tiny_checkpoint: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory
            ) -> Callable[[str], Path]:
    from conftest import tiny_overrides

    torch.set_num_threads(1)
    root, cache = tmp_path_factory.mktemp("greedy_bundles"), {}

    def make(preset: str) -> Path:
        if preset not in cache:
            path = tiny_checkpoint(preset, steps=60, **tiny_overrides(preset, 16, 32))
            cache[preset] = export_model(path, root / preset, verify=False, max_src_len=24).path
        return cache[preset]

    return make


def inputs() -> list[str]:
    return ["abc", "", "jihgfedcba", "a", "zz?a", "hello", "ab cd", "bbbbbbbbbbbb"]


def results(translator: Translator, batch: int, **kw: Any) -> list[tuple[list[int], float]]:
    return [(h[0].ids, h[0].score) for h in translator.translate(inputs(), max_batch_size=batch, **kw)]


@pytest.mark.parametrize("preset", list(PRESETS))
def test_fused_equals_python_loop(bundles: Callable[[str], Path], preset: str) -> None:
    translator = Translator.load(bundles(preset), intra_op_threads=1)
    backend: Any = translator.backend
    assert isinstance(backend, FusedGreedy) and backend.fused_greedy
    calls = []
    greedy = backend.greedy
    backend.greedy = lambda *a: calls.append(1) or greedy(*a)
    for kw in REQUESTS:
        for batch in (1, 3, 8):  # rows of a batch stop at different steps
            backend.fused_greedy = True
            n = len(calls)
            fused = results(translator, batch, **kw)
            assert len(calls) > n  # the fused graph ran
            backend.fused_greedy = False
            assert fused == results(translator, batch, **kw)  # ids and scores, exactly


def test_options_the_graph_lacks_use_the_python_loop(bundles: Callable[[str], Path]) -> None:
    translator = Translator.load(bundles("luong-general"), intra_op_threads=1)
    backend: Any = translator.backend
    ran = []
    greedy = backend.greedy
    backend.greedy = lambda *a: ran.append(1) or greedy(*a)
    for kw in ({"min_length": 3}, {"no_repeat_ngram_size": 2}, {"return_attention": True},
               {"full_distribution": True}, {"beam_size": 2}):
        hyps = translator.translate(["abc", "hello"], **kw)
        assert hyps and not ran, kw
    translator.translate(["abc"])
    assert ran == [1]
    hyp = translator.translate(["abcdef"], min_length=9, max_length=12)[0][0]
    assert len(hyp.ids) >= 9  # min_length honoured (the Python loop's masking)


def test_graph_io_and_structure(bundles: Callable[[str], Path]) -> None:
    path = bundles("seed-layerwise")
    manifest = load_manifest(path)
    assert manifest.graphs["fp32"]["greedy"] == "greedy.onnx" and "greedy.onnx" in manifest.files
    model = onnx.load(str(path / "greedy.onnx"))
    onnx.checker.check_model(model, full_check=True)
    spec = manifest.io.greedy
    assert [i.name for i in model.graph.input] == spec.input_names
    assert [o.name for o in model.graph.output] == spec.output_names == ["ids", "scores", "lengths"]
    assert [n.op_type for n in model.graph.node].count("Loop") == 1
    # run it directly: PAD after each row's end, lengths count EOS, float64 scores
    translator = Translator.load(path, intra_op_threads=1)
    backend: Any = translator.backend
    src = np.array([[5, 6, 7, 2], [8, 2, PAD_ID, PAD_ID]], dtype=np.int64)
    out = backend.greedy(src, np.array([4, 2]), np.array([6, 2]))
    ids, scores, lengths = out
    assert ids.dtype == np.int64 and scores.dtype == np.float64 and lengths.tolist()[1] <= 2
    assert ids.shape == (2, int(lengths.max())) and (ids[1, lengths[1]:] == PAD_ID).all()


def test_bundles_without_the_graph_decode_with_the_loop(bundles: Callable[[str], Path]) -> None:
    from s2s_export.runtime.backends.onnxruntime import OnnxRuntimeBackend

    path = bundles("luong-general")
    manifest = load_manifest(path)
    backend = OnnxRuntimeBackend(path / "encoder.onnx", path / "decoder_step.onnx", manifest.io)
    assert backend.greedy(np.array([[5, 2]]), np.array([2]), np.array([4])) is None  # nothing ran
    plain = Translator(manifest, backend, path)
    assert results(plain, 4) == results(Translator.load(path), 4)


def test_int8_greedy_graph(bundles: Callable[[str], Path], tmp_path: Path) -> None:
    """``s2s quantize`` builds greedy.int8.onnx from the quantized step. INT8 activation scales
    are per row (a sentence's own), so although finished rows stay in the fused loop and leave
    the Python one, both give the same ids and scores at every batch size."""
    import shutil

    from s2s_export.int8 import quantize_bundle

    path = tmp_path / "b"
    shutil.copytree(bundles("luong-general"), path)
    assert quantize_bundle(path)["greedy"] == "greedy.int8.onnx"
    translator = Translator.load(path, precision="int8", intra_op_threads=1)
    backend: Any = translator.backend
    assert backend.greedy_path.name == "greedy.int8.onnx"
    for batch in (1, 3, 8):
        backend.fused_greedy = True
        fused = results(translator, batch)
        backend.fused_greedy = False
        assert fused == results(translator, batch)


def test_large_batches_use_the_python_loop(bundles: Callable[[str], Path]) -> None:
    """Rows never leave the fused loop: over FUSED_MAX_BATCH sentences the search's loop (which
    drops finished rows) is faster, so the backend declines."""
    from s2s_export.runtime.backends.onnxruntime import FUSED_MAX_BATCH

    translator = Translator.load(bundles("luong-general"), intra_op_threads=1)
    backend: Any = translator.backend
    src = np.full((FUSED_MAX_BATCH + 1, 3), 5, dtype=np.int64)
    src[:, -1] = 2
    lengths, caps = np.full(len(src), 3), np.full(len(src), 4)
    assert backend.greedy(src, lengths, caps) is None
    assert backend.greedy(src[:FUSED_MAX_BATCH], lengths[:FUSED_MAX_BATCH], caps[:FUSED_MAX_BATCH]) is not None
    many = inputs() * 3  # 24 sentences in one batch: the Python loop; fused batches agree
    big = translator.translate(many, max_batch_size=64)
    small = translator.translate(many, max_batch_size=FUSED_MAX_BATCH)
    assert [h[0].ids for h in big] == [h[0].ids for h in small]
    assert [h[0].score for h in big] == pytest.approx([h[0].score for h in small], abs=1e-5)


def test_greedy_graph_loads_on_first_use_only(bundles: Callable[[str], Path]) -> None:
    translator = Translator.load(bundles("luong-general"), intra_op_threads=1)
    backend: Any = translator.backend
    assert backend._greedy_session is None  # not at load
    translator.translate(["abc"], beam_size=2)
    assert backend._greedy_session is None  # beam search never needs it
    backend.fused_greedy = False
    translator.translate(["abc"])
    assert backend._greedy_session is None  # switched off: never loaded
    backend.fused_greedy = True
    translator.translate(["abc"])
    assert backend._greedy_session is not None
