"""The TensorRT builder and runtime type-check against the TensorRT 10 API (``tensorrt-stubs``).

No TensorRT runs here, so mypy is what catches API misuse (removed methods such as
``build_engine``/``execute_async_v2``, ``set_shape`` without ``trt.Dims``...). mypy rejects the
stubs as shipped (a parameter named ``in``, a parameter without default after defaulted ones, an
import of the runtime-only ``tensorrt_libs``), and they declare a module-level ``bool`` (the
``DataType.BOOL`` alias) that shadows the builtin in every ``-> bool`` annotation, which makes
mypy treat the code after ``if not parser.parse_from_file(...)`` as unreachable (unchecked).
The test copies the stubs into a temporary directory with those lines patched and points mypy
at the copy (``trt.bool`` is then unknown: use ``trt.DataType.BOOL``).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ["s2s_export/tensorrt/builder.py", "s2s_export/runtime/backends/tensorrt.py"]


def _stub_dirs() -> list[Path]:
    spec = importlib.util.find_spec("tensorrt_stubs")
    if spec is None or not spec.submodule_search_locations:
        return []
    site = Path(list(spec.submodule_search_locations)[0]).parent
    dirs = [site / "tensorrt", site / "tensorrt_bindings"]
    return dirs if all((d / "__init__.pyi").is_file() for d in dirs) else []


def _patch(text: str) -> str:
    """Make the stubs parseable: rename parameters called ``in``, give a default to parameters
    that follow defaulted ones, drop the runtime-only ``tensorrt_libs`` import and the
    module-level ``bool`` alias that shadows the builtin."""
    out = []
    for line in text.split("\n"):
        if line.strip() == "import tensorrt_libs as tensorrt_libs" or line.startswith("bool: "):
            continue
        if re.match(r"\s*def ", line):
            line = re.sub(r"([(,]\s*)in:", r"\1in_:", line)
            m = re.match(r"(\s*def \w+\()(.*)(\)\s*->.*)$", line)
            if m:
                params, depth, cur = [], 0, ""
                for ch in m.group(2):
                    depth += ch in "[(" and 1 or (ch in "])" and -1 or 0)
                    if ch == "," and depth == 0:
                        params.append(cur)
                        cur = ""
                    else:
                        cur += ch
                params.append(cur)
                seen_default = False
                for i, p in enumerate(params):
                    if "=" in p:
                        seen_default = True
                    elif seen_default and ":" in p and not p.strip().startswith("*"):
                        params[i] = p + " = ..."
                line = m.group(1) + ",".join(params) + m.group(3)
        out.append(line)
    return "\n".join(out)


@pytest.fixture(scope="module")
def mypy_setup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install 's2s-export[dev]')")
    dirs = _stub_dirs()
    if not dirs:
        pytest.skip("tensorrt-stubs is not installed (pip install --no-deps tensorrt-stubs==10.13.0.35.1)")
    root = tmp_path_factory.mktemp("trt-mypy")
    stubs = root / "stubs"
    for d in dirs:
        shutil.copytree(d, stubs / d.name, ignore=shutil.ignore_patterns("__pycache__"))
        for f in (stubs / d.name).glob("*.pyi"):
            f.write_text(_patch(f.read_text()))
    (root / "mypy.ini").write_text(textwrap.dedent(f"""\
        [mypy]
        mypy_path = {stubs}
        python_version = 3.10
        follow_imports = silent
        check_untyped_defs = True
        warn_unused_ignores = False
        cache_dir = {root / "cache"}

        [mypy-tensorrt,tensorrt.*,tensorrt_bindings,tensorrt_bindings.*]
        ignore_errors = True

        [mypy-cuda,cuda.*,onnx,onnx.*,onnxruntime,onnxruntime.*,torch,torch.*]
        ignore_missing_imports = True
        """))
    return root


def _mypy(root: Path, files: list[str]) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(root / "mypy.ini"), *files],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def test_builder_and_runtime_type_check(mypy_setup: Path) -> None:
    missing = [f for f in CHECKED if not (ROOT / f).is_file()]
    assert not missing, f"missing modules: {missing}"
    code, out = _mypy(mypy_setup, CHECKED)
    assert code == 0, out


# the start of a TensorRT 10 build function, shared by the right and wrong programs below
PREAMBLE = textwrap.dedent("""\
        import tensorrt as trt


        def build() -> None:
            logger = trt.Logger(trt.Logger.WARNING)
            builder = trt.Builder(logger)
            network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
            config = builder.create_builder_config()
            profile = builder.create_optimization_profile()
""")


@pytest.mark.parametrize("snippet, expected", [
    ("builder.build_engine(network, config)", '"Builder" has no attribute "build_engine"'),
    ("context.execute_async_v2([], 0)", '"IExecutionContext" has no attribute "execute_async_v2"'),
    ('profile.set_shape("src", (1, 1), (2, 2), (3, 3))', 'incompatible type "tuple[int, int]"; expected "Dims"'),
    ("config.set_flag(trt.BuilderFlag.FP16_ONLY)", 'has no attribute "FP16_ONLY"'),
    # code under ``if not <bool method>`` is checked (the stubs' ``bool`` alias hid it)
    ('if not trt.OnnxParser(network, logger).parse_from_file("m.onnx"):\n'
     '        builder.build_engine(network, config)', '"Builder" has no attribute "build_engine"'),
])
def test_wrong_api_use_is_rejected(mypy_setup: Path, tmp_path: Path, snippet: str, expected: str) -> None:
    """The same setup rejects calls the TensorRT 10 API does not have."""
    f = tmp_path / "wrong.py"
    f.write_text(PREAMBLE + textwrap.indent(textwrap.dedent("""\
        engine = trt.Runtime(logger).deserialize_cuda_engine(b"")
        context = engine.create_execution_context()
        {snippet}
        """).format(snippet=snippet), "    "))
    code, out = _mypy(mypy_setup, [str(f)])
    assert code != 0 and expected in out, out


def test_correct_api_use_passes(mypy_setup: Path, tmp_path: Path) -> None:
    """...and accepts the same program written against the real API (the check is not vacuous)."""
    f = tmp_path / "right.py"
    f.write_text(PREAMBLE + textwrap.indent(textwrap.dedent("""\
            profile.set_shape("src", trt.Dims([1, 1]), trt.Dims([2, 2]), trt.Dims([3, 3]))
            config.add_optimization_profile(profile)
            plan = builder.build_serialized_network(network, config)
            engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
            context = engine.create_execution_context()
            context.set_input_shape("src", (1, 1))
            context.execute_async_v3(0)
        """), "    "))
    code, out = _mypy(mypy_setup, [str(f)])
    assert code == 0, out
