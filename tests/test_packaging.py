"""Packaging promises: a runtime-only install (base + cpu or gpu) pulls neither torch nor onnx,
the console scripts exist, and the runtime imports no heavy package."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

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
    """The console scripts start in ``cli.launch``, which installs the signal handlers before
    importing anything but the standard library."""
    assert PYPROJECT["scripts"] == {"s2s-export": "s2s_export.cli.launch:export", "s2s": "s2s_export.cli.launch:s2s"}
    code = ("import sys; before = set(sys.modules); import s2s_export.cli.launch; "
            "print(sorted({m.split('.')[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0 and proc.stdout.split() == ["['s2s_export']"], proc.stdout + proc.stderr


def test_cli_imports_are_declared() -> None:
    """Every third-party package the CLI plumbing imports at module level is a base dependency."""
    base = names(PYPROJECT["dependencies"])
    for module in ("cli/common.py", "cli/main.py", "cli/textio.py", "cli/launch.py", "interrupts.py"):
        text = (ROOT / "s2s_export" / module).read_text()
        for top in re.findall(r"^(?:import|from) (\w+)", text, flags=re.M):
            if top not in sys.stdlib_module_names:
                assert top in base or top == "s2s_export", (module, top)


def _readme_install_extras() -> set[str]:
    """The requirements the README's quick start installs (its first ``pip install -e '.[...]'``,
    the install line; later ones name optional extras, and every extra named must exist)."""
    readme = (ROOT / "README.md").read_text()
    quick = readme[readme.index("## Quick start"):readme.index("## What it does")]
    named = re.findall(r"pip install -e '\.\[([a-z0-9,]+)\]'", quick)
    assert named, "the quick start has no pip install -e '.[...]' line"
    for extra in ",".join(named).split(","):
        assert extra in PYPROJECT["optional-dependencies"], extra
    extras = named[0]
    deps = set(names(PYPROJECT["dependencies"]))
    for extra in extras.split(","):
        deps |= names(PYPROJECT["optional-dependencies"][extra])
    return deps


def test_readme_install_brings_what_its_commands_use() -> None:
    """After the README's install, ``s2s-export model.pt --trt`` writes the FP16 graphs (the
    converter is installed) and stops only at the engine build; ``--plot-attention`` and
    ``--html`` have matplotlib; a runtime-only install can add it with the ``plot`` extra."""
    deps = _readme_install_extras()
    assert {"torch", "onnx", "onnxruntime", "onnxconverter-common", "matplotlib"} <= deps, deps
    assert "matplotlib" in names(PYPROJECT["optional-dependencies"]["plot"])
    from s2s_export.errors import EXTRAS

    for module, extra in EXTRAS.items():  # every install hint names an extra that brings the module
        wanted = {"onnxconverter_common": "onnxconverter-common", "cuda": "cuda-python",
                  "pytriton": "nvidia-pytriton"}.get(module, module)
        assert wanted.replace("_", "-") in names(PYPROJECT["optional-dependencies"][extra]), (module, extra)


def test_the_project_keeps_its_own_docs() -> None:
    """Nothing links outside the repository (``../shared/...`` does not exist in a clone);
    the attention equations are in docs/attention.md, which the README links."""
    tracked = [p for p in ROOT.rglob("*") if p.is_file() and p.suffix in (".md", ".py", ".toml", ".txt", "")
               and not any(part.startswith(".") and part != ".ci" or part == "__pycache__" or
                           part.endswith(".egg-info") for part in p.relative_to(ROOT).parts)]
    offenders = [str(p.relative_to(ROOT)) for p in tracked
                 if "shared/reference" in p.read_text(errors="replace") or "../shared" in p.read_text(errors="replace")]
    assert offenders == [p for p in offenders if p == "tests/test_packaging.py"]
    readme = (ROOT / "README.md").read_text()
    assert "docs/attention.md" in readme and (ROOT / "docs" / "attention.md").is_file()
    attention = (ROOT / "docs" / "attention.md").read_text().lower()
    for variant in ("dot", "general", "concat", "additive", "local-m", "local-p", "multihead", "layerwise",
                    "input feeding", "bridge"):
        assert variant in attention, variant


def test_quick_start_output_is_ignored_by_git() -> None:
    readme = (ROOT / "README.md").read_text()
    quick = readme[readme.index("## Quick start"):readme.index("## What it does")]
    outputs = re.findall(r"s2s-export \S+ -o (\S+)", quick)
    assert outputs
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("git or the repository metadata is not here")
    for out in outputs:
        proc = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", f"{out}/manifest.json"], timeout=30)
        assert proc.returncode == 0, f"{out} is not ignored by git"
