"""TensorRT without TensorRT: the compatibility check, the engine builder's logic (against a fake
``tensorrt`` module), the export hook, and the backend's engine selection."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxconverter_common")
pytest.importorskip("torch")

from onnx import TensorProto, helper  # noqa: E402

from s2s_export.bundle import load_manifest  # noqa: E402
from s2s_export.errors import UnsupportedError, UsageError  # noqa: E402
from s2s_export.fp16.convert import to_fp16  # noqa: E402
from s2s_export.fp16.testing import preset_graphs  # noqa: E402
from s2s_export.models import PRESETS  # noqa: E402
from s2s_export.tensorrt import builder  # noqa: E402
from s2s_export.tensorrt.builder import GpuInfo  # noqa: E402
from s2s_export.tensorrt.compat import check_trt_compat  # noqa: E402

F, I64 = TensorProto.FLOAT, TensorProto.INT64


def _model(nodes: list[Any], inputs: list[Any], outputs: list[Any], inits: list[Any] = (),  # type: ignore[assignment]
           opset: int = 17) -> Any:
    return helper.make_model(helper.make_graph(nodes, "bad", inputs, outputs, list(inits)),
                             opset_imports=[helper.make_opsetid("", opset)])


def _vi(name: str, elem: int, shape: list[Any]) -> Any:
    return helper.make_tensor_value_info(name, elem, shape)


def _lstm(**attrs: Any) -> Any:
    H, I = 4, 3
    dirs = 2 if attrs.get("direction") == "bidirectional" else 1
    W = helper.make_tensor("W", F, [dirs, 4 * H, I], np.zeros(dirs * 4 * H * I, np.float32))
    R = helper.make_tensor("R", F, [dirs, 4 * H, H], np.zeros(dirs * 4 * H * H, np.float32))
    node = helper.make_node("LSTM", ["X", "W", "R"], ["Y"], name="lstm", hidden_size=H, **attrs)
    shape = ["batch", 5, I] if attrs.get("layout") == 1 else [5, "batch", I]
    return _model([node], [_vi("X", F, shape)], [_vi("Y", F, None)], [W, R])


def _topk(k: Any, **attrs: Any) -> Any:
    x, vals, ids = _vi("x", F, ["batch", 8000]), _vi("v", F, None), _vi("i", I64, None)
    if isinstance(k, int):
        kt = helper.make_tensor("k", I64, [1], [k])
        return _model([helper.make_node("TopK", ["x", "k"], ["v", "i"], name="topk", **attrs)], [x], [vals, ids], [kt])
    if k == "input":
        return _model([helper.make_node("TopK", ["x", "k"], ["v", "i"], name="topk")],
                      [x, _vi("k", I64, [1])], [vals, ids])
    # K from the input's shape (a shape tensor)
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape", start=1, end=2),
             helper.make_node("Constant", [], ["d"], name="d", value=helper.make_tensor("dv", I64, [1], [2000])),
             helper.make_node("Div", ["s", "d"], ["k"], name="div"),
             helper.make_node("TopK", ["x", "k"], ["v", "i"], name="topk")]
    return _model(nodes, [x], [vals, ids])


def _messages(model: Any) -> list[str]:
    return [str(p) for p in check_trt_compat(model, name="g.onnx")]


# ------------------------------------------------------------------ the compatibility check
@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_graph_is_trt_compatible(preset: str) -> None:
    d = preset_graphs(preset)
    for g in ("encoder", "decoder_step"):
        fp16 = d / f"{g}.fp16.onnx"
        if not fp16.is_file():
            to_fp16(d / f"{g}.onnx", fp16)
        for path in (d / f"{g}.onnx", fp16):
            assert check_trt_compat(path) == [], (preset, path.name, [str(p) for p in check_trt_compat(path)])


def test_rnn_restrictions_are_flagged() -> None:
    assert _messages(_lstm()) == []
    msgs = _messages(_lstm(layout=1))
    assert len(msgs) == 1 and "node lstm (LSTM): layout=1 (batch-first); TensorRT takes layout 0 only" in msgs[0]
    assert msgs[0].startswith("g.onnx: ")
    msgs = _messages(_lstm(input_forget=1))
    assert len(msgs) == 1 and "input_forget=1" in msgs[0]
    ok = _lstm(direction="bidirectional", activations=["Sigmoid", "Tanh", "Tanh"] * 2)
    assert _messages(ok) == []
    bad = _lstm(direction="bidirectional", activations=["Sigmoid", "Tanh", "Tanh", "Sigmoid", "Relu", "Tanh"])
    msgs = _messages(bad)
    assert len(msgs) == 1 and "same activations in both directions" in msgs[0]


def test_topk_restrictions_are_flagged() -> None:
    assert _messages(_topk(8)) == []
    assert _messages(_topk(3840)) == []
    msgs = _messages(_topk(5000))
    assert len(msgs) == 1 and "node topk (TopK): K=5000 > 3840" in msgs[0]
    msgs = _messages(_topk("input"))
    assert len(msgs) == 1 and "is computed from tensor data" in msgs[0] and "build-time constant" in msgs[0]
    assert _messages(_topk("shape")) == []  # a shape tensor (like the encoder's length sort)
    msgs = _messages(_topk(4, sorted=0))
    assert len(msgs) == 1 and "sorted=0" in msgs[0]


def test_unsupported_ops_control_flow_and_domains_are_flagged() -> None:
    x, y = _vi("x", F, [2, 3]), _vi("y", F, None)
    msgs = _messages(_model([helper.make_node("Unique", ["x"], ["y"], name="u")], [x], [y], opset=17))
    assert len(msgs) == 1 and "node u (Unique) is not supported by the TensorRT ONNX parser" in msgs[0]
    msgs = _messages(_model([helper.make_node("Hardmax2", ["x"], ["y"], name="h")], [x], [y]))
    assert len(msgs) == 1 and "is not in the supported operator list" in msgs[0]
    custom = _model([helper.make_node("MyOp", ["x"], ["y"], name="c", domain="my.ops")], [x], [y])
    custom.opset_import.append(helper.make_opsetid("my.ops", 1))
    msgs = _messages(custom)
    assert len(msgs) == 1 and "domain 'my.ops'" in msgs[0] and "plugin" in msgs[0]
    branch = helper.make_graph([helper.make_node("Identity", ["x"], ["z"])], "b", [], [_vi("z", F, [2, 3])])
    cond = _vi("cond", TensorProto.BOOL, [])
    msgs = _messages(_model([helper.make_node("If", ["cond"], ["y"], name="if", then_branch=branch,
                                              else_branch=branch)], [cond, x], [y]))
    assert len(msgs) == 1 and "node if (If): control flow" in msgs[0]


def test_types_opset_and_constant_operands_are_flagged() -> None:
    a, b, y = _vi("a", I64, [2, 3]), _vi("b", I64, [3, 2]), _vi("y", I64, None)
    msgs = _messages(_model([helper.make_node("MatMul", ["a", "b"], ["y"], name="mm")], [a, b], [y]))
    assert msgs and all("input 'a' is i64" in m or "input 'b' is i64" in m for m in msgs)
    # int64 where TensorRT >= 10 takes it is fine (Gather, Add, ...)
    idx, out = _vi("i", I64, [2]), _vi("o", I64, None)
    assert _messages(_model([helper.make_node("Add", ["i", "i"], ["o"], name="add")], [idx], [out])) == []
    d, o = _vi("d", TensorProto.DOUBLE, [2]), _vi("o", TensorProto.DOUBLE, None)
    msgs = _messages(_model([helper.make_node("Relu", ["d"], ["o"], name="r")], [d], [o]))
    assert any("is double" in m for m in msgs) and any("input 'd' has type f64" in m for m in msgs)
    x, y = _vi("x", F, [2, 3]), _vi("y", F, None)
    msgs = _messages(_model([helper.make_node("Relu", ["x"], ["y"], name="r")], [x], [y], opset=21))
    assert len(msgs) == 1 and "opset 21" in msgs[0]
    axes = _vi("axes", I64, [1])
    msgs = _messages(_model([helper.make_node("ReduceSum", ["x", "axes"], ["y"], name="rs")], [x, axes], [y]))
    assert len(msgs) == 1 and "axes are not a build-time constant" in msgs[0]


def test_check_accepts_paths_and_models(tmp_path: Path) -> None:
    model = _lstm(layout=1)
    onnx.save(model, str(tmp_path / "enc.onnx"))
    from_path = [str(p) for p in check_trt_compat(tmp_path / "enc.onnx")]
    assert from_path and from_path[0].startswith("enc.onnx: ")
    assert [p.fix for p in check_trt_compat(model)] == [p.fix for p in check_trt_compat(tmp_path / "enc.onnx")]


# ------------------------------------------------------------------ builder, with a fake TensorRT
def _fake_tensorrt(version: str, log: dict[str, Any]) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version  # type: ignore[attr-defined]

    class Logger:
        WARNING, VERBOSE = 2, 4

        def __init__(self, severity: int) -> None:
            self.severity = severity

    class NetworkDefinitionCreationFlag:
        EXPLICIT_BATCH, STRONGLY_TYPED = 0, 1

    class MemoryPoolType:
        WORKSPACE = 0

    class Dims(tuple):  # type: ignore[type-arg]
        def __new__(cls, shape: list[int]) -> "Dims":
            return super().__new__(cls, shape)

    class Network:
        onnx = ""

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, Any] = {}

        def set_shape(self, name: str, mn: Any, opt: Any, mx: Any) -> None:
            self.shapes[name] = [list(mn), list(opt), list(mx)]

    class Cache:
        def __init__(self, data: bytes) -> None:
            self.data = bytes(data)

        def serialize(self) -> bytes:
            return self.data

    class Config:
        def __init__(self) -> None:
            self.profiles: list[Profile] = []
            self.cache = Cache(b"")

        def set_memory_pool_limit(self, pool: int, size: int) -> None:
            log.setdefault("workspace", []).append(size)

        def add_optimization_profile(self, p: Profile) -> int:
            self.profiles.append(p)
            return 0

        def create_timing_cache(self, data: bytes) -> Cache:
            return Cache(data)

        def set_timing_cache(self, cache: Cache, ignore_mismatch: bool) -> bool:
            log.setdefault("caches_in", []).append(cache.data)
            self.cache = cache
            return True

        def get_timing_cache(self) -> Cache:
            return Cache(self.cache.data + b"+")

    class Builder:
        def __init__(self, logger: Logger) -> None:
            pass

        def create_network(self, flags: int) -> Network:
            log.setdefault("flags", []).append(flags)
            return Network()

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes:
            return json.dumps({"onnx": network.onnx, "profile": config.profiles[0].shapes}).encode()

    class OnnxParser:
        num_errors = 0

        def __init__(self, network: Network, logger: Logger) -> None:
            self.network = network

        def parse_from_file(self, path: str) -> bool:
            self.network.onnx = Path(path).name
            return True

    for obj in (Logger, NetworkDefinitionCreationFlag, MemoryPoolType, Dims, Builder, OnnxParser):
        setattr(trt, obj.__name__, obj)
    return trt


@pytest.fixture()
def bundle(tmp_path: Path) -> Path:
    """A private copy of the luong-general bundle (builds rewrite it)."""
    dst = tmp_path / "bundle"
    shutil.copytree(preset_graphs("luong-general"), dst)
    for f in dst.glob("*.fp16.onnx"):  # another test may have added them to the shared copy
        f.unlink()
    return dst


@pytest.fixture()
def fake_trt(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    log: dict[str, Any] = {}
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt("10.13.0.35", log))
    monkeypatch.setattr(builder, "gpu_info", lambda device=0: GpuInfo("Fake Orin", 8, 7))
    return log


def test_build_engines_with_a_fake_tensorrt(bundle: Path, fake_trt: dict[str, Any]) -> None:
    entries = builder.build_engines(bundle, max_batch=16, max_src_len=40, workspace_mb=256)
    assert [e["file"] for e in entries] == ["encoder.sm87.trt10.13.plan", "decoder_step.sm87.trt10.13.plan"]
    assert fake_trt["flags"] == [1 << 1, 1 << 1]  # STRONGLY_TYPED on TensorRT 10
    assert fake_trt["workspace"] == [256 << 20] * 2
    manifest = load_manifest(bundle)  # sha256 of plans, FP16 graphs and cache verified
    assert manifest.graphs["fp16"] == {"encoder": "encoder.fp16.onnx", "decoder_step": "decoder_step.fp16.onnx"}
    assert [e["file"] for e in manifest.engines] == [e["file"] for e in entries]
    e = manifest.engines[1]
    assert (e["sm"], e["trt_major"], e["trt_minor"], e["gpu"], e["strongly_typed"]) == ("sm87", 10, 13, "Fake Orin", True)
    plan = json.loads((bundle / e["file"]).read_bytes())
    assert plan["onnx"] == "decoder_step.fp16.onnx"  # the FP16 graph, parsed strongly typed
    # profiles from graphio: rows 1/8/16, source length 1/20/40
    assert plan["profile"]["tokens"] == [[1], [8], [16]]
    assert plan["profile"]["src_mask"] == [[1, 1], [8, 20], [16, 40]]
    h = manifest.io.step.input("h").shape
    assert plan["profile"]["h"] == [[1, *h[1:]], [8, *h[1:]], [16, *h[1:]]]
    assert e["profile"] == plan["profile"]
    assert (bundle / "timing.sm87.trt10.13.cache").read_bytes() == b"++"  # one step per build
    assert not [p for p in bundle.parent.iterdir() if p.name.startswith(".")]  # atomic, no leftovers
    # a rebuild loads the saved timing cache and replaces the entries of this GPU/TensorRT
    builder.build_engines(bundle, max_batch=4, max_src_len=8)
    assert fake_trt["caches_in"][2] == b"++"
    manifest = load_manifest(bundle)
    assert len(manifest.engines) == 2 and manifest.engines[0]["max_batch"] == 4


def test_tensorrt_11_networks_are_strongly_typed_without_the_flag(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log: dict[str, Any] = {}
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt("11.1.0.7", log))
    monkeypatch.setattr(builder, "gpu_info", lambda device=0: GpuInfo("Fake H100", 9, 0))
    entries = builder.build_engines(bundle, max_batch=8, max_src_len=16)
    assert log["flags"] == [0, 0]
    assert entries[0]["file"] == "encoder.sm90.trt11.1.plan"


def test_build_engines_rejects_bad_sizes(bundle: Path, fake_trt: dict[str, Any]) -> None:
    with pytest.raises(UsageError, match="3840"):
        builder.build_engines(bundle, max_batch=5000)
    with pytest.raises(UsageError, match=">= 1"):
        builder.build_engines(bundle, max_batch=0, max_src_len=-1)
    assert load_manifest(bundle).engines == []  # nothing was written


def _has_real_trt_and_gpu() -> bool:
    try:
        builder.import_tensorrt()
        builder.gpu_info(0)
    except UnsupportedError:
        return False
    return True


needs_no_gpu = pytest.mark.skipif(_has_real_trt_and_gpu(), reason="TensorRT and a GPU are present here")


@needs_no_gpu
def test_without_tensorrt_build_engines_exits_2(bundle: Path) -> None:
    with pytest.raises(UnsupportedError) as info:
        builder.build_engines(bundle)
    assert info.value.exit_code == 2
    text = str(info.value)
    # what is missing, and where to run the command: never "run s2s build-engines" to its user
    assert ("TensorRT" in text or "GPU" in text or "cuda-python" in text) and "s2s build-engines" not in text
    assert "run this command on the target device" in text
    proc = subprocess.run([sys.executable, "-m", "s2s_export.cli.main", "build-engines", str(bundle)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and "build-engines" not in proc.stderr


def test_stubs_only_and_missing_cuda_are_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))  # like tensorrt-stubs
    with pytest.raises(UnsupportedError, match="only its type stubs"):
        builder.import_tensorrt()
    monkeypatch.setitem(sys.modules, "cuda", None)
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    with pytest.raises(UnsupportedError, match="cuda-python is not installed"):
        builder.gpu_info()

    class Err(int):
        name = "cudaErrorInsufficientDriver"

    with pytest.raises(UnsupportedError, match="no usable NVIDIA GPU.*cudaErrorInsufficientDriver"):
        builder.cuda_check(None, (Err(35), None), "cudaGetDeviceProperties")
    assert builder.cuda_check(None, (Err(0), 7), "x") == 7


@needs_no_gpu
def test_export_hook_writes_fp16_graphs_then_exits_2(bundle: Path) -> None:
    with pytest.raises(UnsupportedError) as info:
        builder.add_tensorrt(bundle)
    assert info.value.exit_code == 2 and f"s2s build-engines {bundle}" in str(info.value)
    manifest = load_manifest(bundle)  # committed, hashes valid
    assert manifest.graphs["fp16"]["decoder_step"] == "decoder_step.fp16.onnx"
    assert (bundle / "decoder_step.fp16.onnx").is_file() and manifest.engines == []


def test_export_hook_without_build(bundle: Path) -> None:
    result = builder.add_tensorrt(bundle, build=False)
    assert result.compat_problems == [] and result.unsupported is None and result.engines == []
    assert result.fp16_reports["decoder_step"]["fp16_nodes"] > 0
    assert "encoder.fp16.onnx" in load_manifest(bundle).files


def test_export_hook_with_a_fake_tensorrt(bundle: Path, fake_trt: dict[str, Any]) -> None:
    result = builder.add_tensorrt(bundle, max_batch=8, max_src_len=16)
    assert result.unsupported is None and len(result.engines) == 2
    assert {e["file"] for e in load_manifest(bundle).engines} == {"encoder.sm87.trt10.13.plan",
                                                                  "decoder_step.sm87.trt10.13.plan"}


# ------------------------------------------------------------------ runtime backend (CPU parts)
def test_backend_refuses_engines_built_elsewhere(bundle: Path, fake_trt: dict[str, Any]) -> None:
    from s2s_export.runtime.backends.tensorrt import select_engines

    builder.build_engines(bundle, max_batch=8, max_src_len=16)
    manifest = load_manifest(bundle)
    found = select_engines(manifest, bundle, "sm87", "Fake Orin", 10, 13, "10.13.0.35")
    assert found["decoder_step"]["file"] == "decoder_step.sm87.trt10.13.plan"
    with pytest.raises(UnsupportedError) as info:
        select_engines(manifest, bundle, "sm90", "H100", 10, 13, "10.13.0.35")
    text = str(info.value)
    assert "built for sm87 / TensorRT 10.13.0.35" in text and "sm90 (H100)" in text
    assert f"s2s build-engines {bundle}" in text
    with pytest.raises(UnsupportedError, match="TensorRT 10.8"):
        select_engines(manifest, bundle, "sm87", "Fake Orin", 10, 8, "10.8.0.1")
    manifest.engines = []
    with pytest.raises(UnsupportedError, match="has no TensorRT engines"):
        select_engines(manifest, bundle, "sm87", "Fake Orin", 10, 13, "10.13.0.35")


@needs_no_gpu
def test_backend_is_unsupported_here(bundle: Path) -> None:
    from s2s_export.runtime.backends.tensorrt import load_backend

    with pytest.raises(UnsupportedError):
        load_backend(bundle, load_manifest(bundle))


def test_row_runs_for_keep() -> None:
    from s2s_export.runtime.backends.tensorrt import _runs

    assert _runs(np.array([0, 1, 2, 5, 6, 9])) == [(0, 0, 3), (3, 5, 2), (5, 9, 1)]
    assert _runs(np.array([3, 1, 2])) == [(0, 3, 1), (1, 1, 2)]
    assert _runs(np.array([4, 4])) == [(0, 4, 1), (1, 4, 1)]


def test_runtime_module_imports_nothing_heavy() -> None:
    code = ("import sys, s2s_export.runtime.backends.tensorrt, s2s_export.tensorrt.builder; "
            "print(sorted(m for m in ('torch', 'onnx', 'tensorrt', 'cuda') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.skipif(importlib.util.find_spec("typer") is None, reason="typer is not installed")
def test_cli_registers_build_engines() -> None:
    from typer.testing import CliRunner

    from s2s_export.cli.main import app

    result = CliRunner().invoke(app, ["build-engines", "--help"])
    assert result.exit_code == 0
    for flag in ("--max-batch", "--max-src-len", "--workspace"):
        assert flag in result.output


# ------------------------------------------------------------------ runtime backend, end to end
# A fake CUDA (host memory behind integer addresses, copies done at once, graphs recorded and
# replayed) and a fake TensorRT runtime whose "engine" runs the FP16 graph with ONNX Runtime on
# the bound buffers: the backend's buffers, shapes, ping-pong state, keep() and CUDA-graph keys
# are exercised for real, and its results must equal the ONNX Runtime backend's.
class _FakeCudart:
    class cudaMemcpyKind(int):
        pass

    class cudaStreamCaptureMode:
        cudaStreamCaptureModeThreadLocal = 1

    def __init__(self) -> None:
        import ctypes

        self.ctypes = ctypes
        self.blocks: dict[int, Any] = {}
        self.capturing: list[Any] | None = None
        self.launches = 0

    def _alloc(self, n: int) -> tuple[int, int]:
        buf = self.ctypes.create_string_buffer(n)
        addr = self.ctypes.addressof(buf)
        self.blocks[addr] = buf
        return 0, addr

    def check(self, addr: int, n: int) -> None:
        assert any(a <= addr and addr + n <= a + len(b) for a, b in self.blocks.items()), "out of bounds"

    cudaMalloc = cudaMallocHost = _alloc

    def cudaFree(self, addr: int) -> tuple[int]:
        self.blocks.pop(addr)
        return (0,)

    cudaFreeHost = cudaFree

    def cudaSetDevice(self, i: int) -> tuple[int]:
        return (0,)

    def cudaStreamCreate(self) -> tuple[int, int]:
        return 0, 7

    def cudaStreamDestroy(self, s: int) -> tuple[int]:
        return (0,)

    def cudaStreamSynchronize(self, s: int) -> tuple[int]:
        return (0,)

    def cudaMemcpyAsync(self, dst: int, src: int, n: int, kind: int, stream: int) -> tuple[int]:
        self.check(dst, n)
        self.check(src, n)
        if self.capturing is not None:
            self.capturing.append(("copy", (dst, src, n)))
        else:
            self.ctypes.memmove(dst, src, n)
        return (0,)

    def cudaMemcpy(self, dst: int, src: int, n: int, kind: int) -> tuple[int]:
        assert self.capturing is None
        self.check(src, n)
        self.ctypes.memmove(dst, src, n)
        return (0,)

    def cudaStreamBeginCapture(self, stream: int, mode: int) -> tuple[int]:
        self.capturing = []
        return (0,)

    def cudaStreamEndCapture(self, stream: int) -> tuple[int, Any]:
        ops, self.capturing = self.capturing, None
        return 0, ops

    def cudaGraphInstantiate(self, graph: Any, flags: int) -> tuple[int, Any]:
        return 0, list(graph)

    def cudaGraphLaunch(self, ops: Any, stream: int) -> tuple[int]:
        self.launches += 1
        for kind, args in ops:
            if kind == "copy":
                self.ctypes.memmove(*args)
            else:
                context, shapes, addresses = args
                context.run(shapes, addresses)
        return (0,)

    def cudaGraphDestroy(self, g: Any) -> tuple[int]:
        return (0,)

    cudaGraphExecDestroy = cudaGraphDestroy


def _fake_trt_runtime(trt: types.ModuleType, bundle_dir: Path, cudart: _FakeCudart) -> None:
    import ctypes

    import onnxruntime as ort

    class TensorIOMode:
        INPUT, OUTPUT = 1, 2

    np_types = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(bool)": np.bool_,
                "tensor(int32)": np.int32}

    class Context:
        def __init__(self, engine: "Engine") -> None:
            self.engine, self.shapes, self.addresses = engine, {}, {}

        def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
            self.shapes[name] = tuple(shape)
            return name in self.engine.inputs

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            self.addresses[name] = ptr
            return name in self.engine.dtypes

        def execute_async_v3(self, stream: int) -> bool:
            if cudart.capturing is not None:
                cudart.capturing.append(("exec", (self, dict(self.shapes), dict(self.addresses))))
            else:
                self.run(self.shapes, self.addresses)
            return True

        def run(self, shapes: dict[str, Any], addresses: dict[str, int]) -> None:
            feeds = {}
            for name in self.engine.inputs:
                dt = np.dtype(self.engine.dtypes[name])
                n = int(np.prod(shapes[name])) * dt.itemsize
                cudart.check(addresses[name], n)
                raw = (ctypes.c_byte * max(n, 1)).from_address(addresses[name])
                feeds[name] = np.frombuffer(raw, dtype=dt, count=n // dt.itemsize).reshape(shapes[name]).copy()
            outs = self.engine.sess.run(self.engine.outputs, feeds)
            for name, value in zip(self.engine.outputs, outs):
                value = np.ascontiguousarray(value)
                cudart.check(addresses[name], value.nbytes)
                ctypes.memmove(addresses[name], value.ctypes.data, value.nbytes)

    class Engine:
        def __init__(self, plan: bytes) -> None:
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            self.sess = ort.InferenceSession(str(bundle_dir / json.loads(plan)["onnx"]), so,
                                             providers=["CPUExecutionProvider"])
            self.inputs = [i.name for i in self.sess.get_inputs()]
            self.outputs = [o.name for o in self.sess.get_outputs()]
            self.dtypes = {v.name: np_types[v.type] for v in (*self.sess.get_inputs(), *self.sess.get_outputs())}
            self.num_io_tensors = len(self.dtypes)

        def get_tensor_name(self, i: int) -> str:
            return [*self.inputs, *self.outputs][i]

        def get_tensor_mode(self, name: str) -> int:
            return TensorIOMode.INPUT if name in self.inputs else TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name: str) -> Any:
            return self.dtypes[name]

        def create_execution_context(self) -> Context:
            return Context(self)

    class Runtime:
        def __init__(self, logger: Any) -> None:
            pass

        def deserialize_cuda_engine(self, plan: bytes) -> Engine:
            return Engine(plan)

    trt.TensorIOMode = TensorIOMode  # type: ignore[attr-defined]
    trt.Runtime = Runtime  # type: ignore[attr-defined]
    trt.nptype = lambda dtype: dtype  # type: ignore[attr-defined]


@pytest.fixture()
def fake_gpu_backend(bundle: Path, fake_trt: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    from s2s_export.runtime.backends import tensorrt as trt_backend

    builder.build_engines(bundle, max_batch=24, max_src_len=16)
    cudart = _FakeCudart()
    _fake_trt_runtime(sys.modules["tensorrt"], bundle, cudart)  # type: ignore[arg-type]
    monkeypatch.setattr(trt_backend, "gpu_info", lambda device=0: GpuInfo("Fake Orin", 8, 7))
    monkeypatch.setattr(trt_backend, "import_cudart", lambda: cudart)
    return cudart


def _ids_batch() -> list[list[int]]:
    rng = np.random.default_rng(0)
    return [rng.integers(4, 20, size=int(n)).tolist() for n in rng.integers(1, 12, size=9)]


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_tensorrt_backend_logic_against_onnxruntime(bundle: Path, fake_gpu_backend: Any, cuda_graph: bool) -> None:
    """Greedy and beam search over the (fake) TensorRT backend equal the ONNX Runtime backend on
    the same FP16 graphs: buffers, ping-pong state, reorder, keep() and CUDA-graph replay."""
    from s2s_export.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from s2s_export.runtime.backends.tensorrt import TensorRTBackend
    from s2s_export.runtime.translator import Translator

    manifest = load_manifest(bundle)
    trt_backend = TensorRTBackend(bundle, manifest, cuda_graph=cuda_graph)
    assert trt_backend.max_rows == 24 and trt_backend.topk == manifest.io.topk
    ort_backend = OnnxRuntimeBackend(bundle / "encoder.fp16.onnx", bundle / "decoder_step.fp16.onnx",
                                     manifest.io, intra_op_threads=1)
    a, b = Translator(manifest, trt_backend, bundle), Translator(manifest, ort_backend, bundle)
    ids = _ids_batch()
    for beam in (1, 3):
        got = a.translate_ids(ids, beam_size=beam, n_best=2 if beam > 1 else 1, max_length=10)
        ref = b.translate_ids(ids, beam_size=beam, n_best=2 if beam > 1 else 1, max_length=10)
        assert [[(h.ids, round(h.score, 4)) for h in hs] for hs in got] == \
               [[(h.ids, round(h.score, 4)) for h in hs] for hs in ref]
    # full log-probs and attention when asked
    src = np.array([[5, 6, 7, 2], [8, 2, 0, 0]])
    lengths = np.array([4, 2])
    for backend in (trt_backend, ort_backend):
        backend.encode(src, lengths)
    r1 = trt_backend.step(np.array([1, 1]), np.array([1, 0]), full=True, attn=True)
    r2 = ort_backend.step(np.array([1, 1]), np.array([1, 0]), full=True, attn=True)
    np.testing.assert_array_equal(r1.topk_ids, r2.topk_ids)
    np.testing.assert_allclose(r1.log_probs, r2.log_probs, atol=1e-6)
    np.testing.assert_allclose(r1.attn, r2.attn, atol=1e-6)
    s1, s2 = trt_backend.state(), ort_backend.state()  # the optional StateAccess method
    assert list(s1) == list(s2)
    for name in s1:
        np.testing.assert_allclose(s1[name], s2[name], atol=1e-6, err_msg=name)
    if cuda_graph:
        assert trt_backend.cuda_graph and fake_gpu_backend.launches > 0  # replays happened
    trt_backend.close()
    assert not fake_gpu_backend.blocks  # every buffer freed


def test_tensorrt_backend_rejects_oversized_batches(bundle: Path, fake_gpu_backend: Any) -> None:
    from s2s_export.errors import BadInputError
    from s2s_export.runtime.backends.tensorrt import TensorRTBackend

    backend = TensorRTBackend(bundle, load_manifest(bundle))
    with pytest.raises(BadInputError, match="exceeds the engines' profile"):
        backend.encode(np.full((2, 17), 5), np.array([17, 17]))
    with pytest.raises(BadInputError, match="exceeds the engines' profile"):
        backend.encode(np.full((25, 3), 5), np.full(25, 3))
    backend.encode(np.array([[5, 2]]), np.array([2]))
    with pytest.raises(BadInputError, match="rows"):
        backend.step(np.array([1, 1]), np.array([0, 0]))
