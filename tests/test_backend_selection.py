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
    with pytest.raises(UnsupportedError, match="could not start its CUDA provider"):
        ort_backend.load_cuda_backend(bundle, Translator.load(bundle).manifest)


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
