"""Packaging promises: a runtime-only install (base + cpu or gpu) pulls neither torch nor onnx,
the console scripts exist, and the runtime imports no heavy package."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_runtime_install_pulls_neither_torch_nor_onnx() -> None:
    extras = PYPROJECT["optional-dependencies"]
    for extra in ("cpu", "gpu"):
        runtime = names(PYPROJECT["dependencies"]) | names(extras[extra])
        assert not runtime & {"torch", "onnx", "onnxscript"}, (extra, runtime)
    assert {"torch", "onnx"} <= names(extras["export"])
    assert "onnxruntime" in names(extras["cpu"]) and "onnxruntime" not in names(extras["gpu"])
    assert {"onnxruntime-gpu", "tensorrt", "cuda-python"} <= names(extras["gpu"])


def test_console_scripts() -> None:
    assert PYPROJECT["scripts"] == {"s2s-export": "s2s_export.cli.export:main", "s2s": "s2s_export.cli.main:main"}


def test_cli_imports_are_declared() -> None:
    """Every third-party package the CLI plumbing imports at module level is a base dependency."""
    base = names(PYPROJECT["dependencies"])
    for module in ("cli/common.py", "cli/main.py"):
        text = (ROOT / "s2s_export" / module).read_text()
        for top in re.findall(r"^(?:import|from) (\w+)", text, flags=re.M):
            if top not in ("__future__", "functools", "sys", "os", "signal", "importlib", "typing"):
                assert top in base or top == "s2s_export", (module, top)
