"""Backend choice: auto order (TensorRT, ONNX Runtime CUDA, ONNX Runtime CPU), what each says
when it cannot run here, and backend-native precision."""

from __future__ import annotations

from pathlib import Path

import pytest

from s2s_export.errors import UnsupportedError
from s2s_export.export import export_model
from s2s_export.runtime import Translator
from s2s_export.runtime import translator as translator_mod
from s2s_export.runtime.backends import onnxruntime as ort_backend


@pytest.fixture(scope="module")
def bundle(tiny_checkpoint, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("sel") / "b"
    export_model(tiny_checkpoint("luong-general"), out, verify=False)
    return out


def test_auto_order_prefers_gpu_backends() -> None:
    assert translator_mod.AUTO_ORDER == ("tensorrt", "onnxruntime-cuda", "onnxruntime")
    assert set(translator_mod.BACKENDS) == {"auto", "tensorrt", "onnxruntime-cuda", "onnxruntime"}


def test_auto_falls_back_to_the_cpu_and_names_it(bundle: Path) -> None:
    t = Translator.load(bundle, backend="auto")  # no TensorRT, no CUDA provider on this machine
    assert t.backend.name == "onnxruntime"
    assert t.translate(["abc"])[0][0].text == "cba"


def test_cuda_backend_says_what_is_missing(bundle: Path) -> None:
    with pytest.raises(UnsupportedError, match="CUDAExecutionProvider"):
        Translator.load(bundle, backend="onnxruntime-cuda")


def test_cuda_backend_detects_a_silent_cpu_fallback(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # onnxruntime-gpu on a machine without a usable GPU lists CUDA but runs sessions on the CPU
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    made = []
    real = ort_backend.OnnxRuntimeBackend
    monkeypatch.setattr(ort_backend, "OnnxRuntimeBackend", lambda *a, **kw: made.append(kw) or real(*a, **kw))
    with pytest.raises(UnsupportedError, match="could not start its CUDA provider"):
        ort_backend.load_cuda_backend(bundle, Translator.load(bundle).manifest, spinning="step")
    assert made[-1]["device"] == "cuda" and made[-1]["spinning"] == "off"  # GPU work: CPU threads sleep


def test_tensorrt_runs_fp16_engines_only(bundle: Path) -> None:
    from s2s_export.runtime.backends import tensorrt as trt_backend

    with pytest.raises(UnsupportedError, match="FP16 engines, not int8"):
        trt_backend.load_backend(bundle, Translator.load(bundle).manifest, precision="int8")


def test_cli_verbose_names_the_backend(bundle: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from s2s_export.cli.main import main

    monkeypatch.setattr("sys.argv", ["s2s", "translate", str(bundle), "abc", "-v"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    assert exit_info.value.code == 0 and out.strip() == "cba"
    assert err.strip() == "backend: onnxruntime"


def test_io_binding_path_equals_plain_run(bundle: Path) -> None:
    """The OrtValue + IO-binding code (what the CUDA provider runs) gives the CPU path's results,
    state included, over beam search with batch shrinking and attention."""
    from s2s_export.runtime.backends.onnxruntime import OnnxRuntimeBackend, graph_files

    manifest = Translator.load(bundle).manifest
    enc, step = graph_files(bundle, manifest, "fp32")
    plain = Translator(manifest, OnnxRuntimeBackend(enc, step, manifest.io), bundle)
    bound = Translator(manifest, OnnxRuntimeBackend(enc, step, manifest.io, io_binding=True), bundle)
    assert bound.backend.io_binding and not plain.backend.io_binding
    words = ["abc", "hgfedcba", "", "jj", "abcdef"]
    for beam in (1, 3):
        a = plain.translate(words, beam_size=beam, n_best=beam, return_attention=True)
        b = bound.translate(words, beam_size=beam, n_best=beam, return_attention=True)
        for x, y in zip(a, b):
            assert [h.ids for h in x] == [h.ids for h in y]
            assert all(abs(h.score - g.score) < 1e-6 for h, g in zip(x, y))
            assert all((h.attention == g.attention).all() for h, g in zip(x, y))  # type: ignore[union-attr]
    import numpy as np

    src, lengths = np.array([[4, 5, 2], [6, 2, 0]]), np.array([3, 2])
    for backend in (plain.backend, bound.backend):
        backend.encode(src, lengths)
        backend.step(np.array([1, 1]), np.array([1, 0]))
    sa, sb = plain.backend.state(), bound.backend.state()  # type: ignore[attr-defined]
    assert sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)
