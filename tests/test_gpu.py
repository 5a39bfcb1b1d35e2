"""GPU tests (``-m gpu``): TensorRT engines built from the FP16 graphs, the TensorRT backend, and
parity with PyTorch at FP16 tolerances. They skip, with the reason, where TensorRT, cuda-python
or an NVIDIA GPU is missing (the CPU-side logic is in test_trt_compat.py / test_fp16.py)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from s2s_export.errors import UnsupportedError
from s2s_export.models import PRESETS


def _missing() -> str | None:
    from s2s_export.tensorrt.builder import gpu_info, import_tensorrt

    try:
        import_tensorrt()
        gpu_info(0)
    except UnsupportedError as exc:
        return exc.problems[0].what
    try:
        import onnx  # noqa: F401
        import onnxconverter_common  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        return f"the export extras are missing ({exc})"
    return None


MISSING = _missing()
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(MISSING is not None, reason=f"needs an NVIDIA GPU with TensorRT >= 10 "
                                 f"and cuda-python: {MISSING}")]

MAX_ROWS, MAX_SRC = 16, 32
LOGPROB_TOL = 0.05  # nats, on the float32 top-k entries (the CPU measurement is ~1e-2)


@functools.lru_cache(maxsize=None)
def _bundle(preset: str, root: str) -> tuple[Path, Any]:
    """An untrained ``preset`` model exported with its FP16 graphs and engines."""
    import torch

    from s2s_export.export import export_model
    from s2s_export.models import Seq2Seq, preset_config
    from s2s_export.tensorrt.builder import add_tensorrt

    torch.manual_seed(0)
    model = Seq2Seq(preset_config(preset, 24, 24)).eval()
    path = Path(root) / preset
    export_model(model, path, topk=8, verify=False, force=True)
    add_tensorrt(path, max_batch=MAX_ROWS, max_src_len=MAX_SRC, workspace_mb=512)
    return path, model


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("gpu-bundles"))


def _sources() -> tuple[np.ndarray, np.ndarray]:
    src = np.array([[4, 5, 6, 7, 8, 9, 2], [5, 6, 7, 2, 0, 0, 0], [9, 8, 2, 0, 0, 0, 0],
                    [10, 11, 12, 13, 14, 2, 0]], dtype=np.int64)
    return src, (src != 0).sum(1).astype(np.int64)


def _backend(path: Path, cuda_graph: bool = False) -> Any:
    from s2s_export.bundle import load_manifest
    from s2s_export.runtime.backends.tensorrt import TensorRTBackend

    return TensorRTBackend(path, load_manifest(path), cuda_graph=cuda_graph)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_engines_are_built_and_recorded(root: str, preset: str) -> None:
    from s2s_export.bundle import load_manifest
    from s2s_export.tensorrt.builder import gpu_info

    path, _ = _bundle(preset, root)
    manifest = load_manifest(path)
    sm = gpu_info(0).sm
    assert {e["graph"] for e in manifest.engines} == {"encoder", "decoder_step"}
    for e in manifest.engines:
        assert e["sm"] == sm and e["file"].startswith(f"{e['graph']}.{sm}.trt") and (path / e["file"]).is_file()
        assert e["max_batch"] == MAX_ROWS and e["max_src_len"] == MAX_SRC and e["strongly_typed"]
    assert any(f.startswith("timing.") for f in manifest.files)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_tensorrt_backend_matches_pytorch(root: str, preset: str) -> None:
    """Encoder + 4 steps with a non-trivial reorder and a keep(): log-probs, top-k and attention
    against the float32 PyTorch model."""
    import torch

    path, model = _bundle(preset, root)
    backend = _backend(path)
    src, lengths = _sources()
    backend.encode(src, lengths)
    with torch.no_grad():
        static, state = model.encode(torch.from_numpy(src), torch.from_numpy(lengths))
        rows = np.arange(len(src))
        tokens = np.full(len(src), 1, dtype=np.int64)
        reorder = np.arange(len(src))
        for t in range(4):
            if t == 2:  # a sentence leaves the batch, the others swap places
                rows = np.array([3, 0, 1])
                backend.keep(rows)
                static = {k: v[torch.from_numpy(rows)] for k, v in static.items()}
                reorder = rows.copy()
                tokens = tokens[rows]
            res = backend.step(tokens, reorder, full=True, attn=True)
            state = {k: v.index_select(0, torch.from_numpy(reorder)) for k, v in state.items()}
            lp, state, attn = model.decode_step(torch.from_numpy(tokens), static, state)
            lp, attn = lp.numpy(), attn.numpy()
            ref_ids = np.argsort(-lp, axis=1)[:, :backend.topk]
            err = np.abs(np.take_along_axis(res.log_probs - lp, ref_ids, axis=1)).max()
            assert err <= LOGPROB_TOL, (preset, t, err)
            np.testing.assert_allclose(res.topk_log_probs, np.take_along_axis(lp, res.topk_ids, axis=1),
                                       atol=LOGPROB_TOL)
            np.testing.assert_allclose(res.attn, attn, atol=0.02)
            tokens = ref_ids[:, 0].astype(np.int64)  # follow the float32 model
            reorder = np.arange(len(tokens))
    backend.close()


def test_cuda_graph_replay_gives_the_same_results(root: str) -> None:
    path, _ = _bundle("luong-general", root)
    plain, graphed = _backend(path), _backend(path, cuda_graph=True)
    src, lengths = _sources()
    for b in (plain, graphed):
        b.encode(src, lengths)
    tokens = np.ones(len(src), dtype=np.int64)
    for _ in range(6):  # shapes repeat: the graph is captured once, then replayed
        reorder = np.arange(len(src))[::-1].copy()
        a = plain.step(tokens, reorder)
        b = graphed.step(tokens, reorder)
        np.testing.assert_array_equal(a.topk_ids, b.topk_ids)
        np.testing.assert_allclose(a.topk_log_probs, b.topk_log_probs, atol=1e-6)
        tokens = a.topk_ids[:, 0].astype(np.int64)
    assert graphed.cuda_graph, "CUDA graph capture fell back to plain execution"


def test_translator_on_tensorrt_agrees_with_onnxruntime(tmp_path: Path) -> None:
    """A trained tiny model: greedy and beam outputs of the TensorRT backend equal ONNX Runtime's."""
    from s2s_export.export import export_model
    from s2s_export.fp16.testing import train_tiny
    from s2s_export.runtime.translator import Translator
    from s2s_export.tensorrt.builder import add_tensorrt

    model = train_tiny("luong-local-p", steps=300, emb_size=32, enc_hidden=32, dec_hidden=64)
    task = model.task
    path = tmp_path / "bundle"
    export_model(model, path, src_vocab=list(task.src_vocab.tokens), tgt_vocab=list(task.tgt_vocab.tokens),
                 topk=8, verify=False)
    add_tensorrt(path, max_batch=64, max_src_len=MAX_SRC)
    texts = ["".join(s) for s, _ in task.test[:40]]
    trt = Translator.load(path, backend="tensorrt")
    ref = Translator.load(path, backend="onnxruntime")
    for beam in (1, 4):
        a = [h[0].text for h in trt.translate(texts, beam_size=beam)]
        b = [h[0].text for h in ref.translate(texts, beam_size=beam)]
        assert np.mean([x == y for x, y in zip(a, b)]) >= 0.95, (beam, a, b)


def test_backend_refuses_an_engine_for_another_gpu(root: str, tmp_path: Path) -> None:
    import shutil

    from s2s_export.bundle import load_manifest
    from s2s_export.runtime.backends.tensorrt import load_backend

    path, _ = _bundle("luong-dot", root)
    copy = tmp_path / "bundle"
    shutil.copytree(path, copy)
    data = json.loads((copy / "manifest.json").read_text())
    for e in data["engines"]:
        e["sm"] = "sm10"
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(UnsupportedError, match=f"s2s build-engines {copy}"):
        load_backend(copy, load_manifest(copy))
