"""TensorRT engines from a bundle's FP16 graphs (run on the target device: Jetson, server).

``build_engines(bundle_dir, ...)`` parses ``encoder.fp16.onnx`` and ``decoder_step.fp16.onnx``
into strongly typed networks (precision comes from the graph: float16 where the FP16 policy put
it, float32 islands elsewhere), with one optimization profile per graph from
``graphio.GraphSpec.profile`` (rows = sentences x beam, and source length: min 1, opt, max), a
workspace limit and a timing cache kept in the bundle, and writes plan files named after the GPU
and the TensorRT version (``decoder_step.sm87.trt10.3.plan``), recorded in ``manifest.engines``.
The bundle is rewritten atomically (``bundle.atomic_dir``).

TensorRT versions:

* 10.x: strong typing is opt-in, ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` (10.12+
  recommended; Jetson JetPack 6 ships 10.x). ``BuilderFlag.FP16`` is never set: a strongly
  typed network rejects precision flags.
* 11.x: every network is strongly typed, the weak-typing API (``BuilderFlag.FP16``, precision
  constraints, ``platform_has_fast_fp16``) is gone, and the creation flag may be absent or
  deprecated: it is not passed there.
* ``EXPLICIT_BATCH`` is the only mode since 10.0 (the flag is deprecated and ignored): not passed.

Without TensorRT (only the type stubs, or nothing) or without a usable GPU (cuda-python missing,
or CUDA answering ``cudaErrorInsufficientDriver``/``cudaErrorNoDevice``), ``UnsupportedError``
(exit 2) says what is missing and how to build the engines on the target.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..bundle import GRAPHS, Manifest, atomic_dir, load_manifest
from ..errors import BundleError, EnginesMissingError, Problem, UnsupportedError, UsageError
from ..graphio import GraphSpec
from .compat import TOPK_MAX_K, check_trt_compat

DEFAULT_WORKSPACE_MB = 1024
BUILD_HINT = ("build the engines on the target device (Jetson or GPU server) with TensorRT >= 10 "
              "and cuda-python installed (pip install 's2s-export[gpu]'; JetPack ships TensorRT): "
              "s2s build-engines BUNDLE [--max-batch N] [--max-src-len N]")
# the same advice for someone already running s2s build-engines
RUN_HINT = ("run this command on the target device (an NVIDIA GPU, Jetson or server) with TensorRT >= 10 "
            "and cuda-python installed there (pip install 's2s-export[gpu]'; JetPack ships TensorRT)")


@dataclass(frozen=True)
class GpuInfo:
    """The CUDA device engines are built for."""

    name: str
    major: int
    minor: int
    index: int = 0

    @property
    def sm(self) -> str:
        return f"sm{self.major}{self.minor}"


@dataclass
class HookResult:
    """What ``fp16_hook`` did for the exporter."""

    fp16_reports: dict[str, Any]
    compat_problems: list[Problem]
    engines: list[dict[str, Any]]
    unsupported: UnsupportedError | None = None  # raise it after the bundle is written (exit 2)


# ----------------------------------------------------------------------------- environment
def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or ``UnsupportedError`` naming what is missing.

    The ``tensorrt-stubs`` package installs a bare ``tensorrt`` namespace (type stubs only):
    importable, but without ``Builder``."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise UnsupportedError(f"TensorRT is not installed here ({exc})", BUILD_HINT) from None
    except OSError as exc:  # the wheel is there but libnvinfer is not loadable
        raise UnsupportedError(f"TensorRT cannot load its libraries ({exc})", BUILD_HINT) from None
    if not hasattr(trt, "Builder"):
        raise UnsupportedError("TensorRT is not installed here (only its type stubs are)", BUILD_HINT)
    return trt


def trt_version(trt: Any) -> tuple[int, int, str]:
    """(major, minor, full version string) of the imported TensorRT."""
    full = str(trt.__version__)
    parts = full.split(".")
    return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0, full


def import_cudart() -> Any:
    """cuda-python's runtime module (``cuda.bindings.runtime``; ``cuda.cudart`` before 12.6)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # type: ignore[no-redef]
        except ImportError as exc:
            raise UnsupportedError(f"cuda-python is not installed ({exc})", BUILD_HINT) from None
    return cudart


def cuda_check(cudart: Any, result: Any, what: str) -> Any:
    """Unpack a cuda-python ``(err, *values)`` tuple; ``UnsupportedError`` on an error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        name = getattr(err, "name", str(err))
        if int(err) in (35, 100, 999, 3):  # insufficient driver, no device, unknown, init error
            raise UnsupportedError(f"no usable NVIDIA GPU: {what} failed with {name}", BUILD_HINT)
        raise UnsupportedError(f"CUDA error in {what}: {name}",
                               "check the GPU and driver (nvidia-smi), then retry")
    return values[0] if len(values) == 1 else tuple(values)


def gpu_info(device: int = 0) -> GpuInfo:
    """Name and compute capability of CUDA device ``device`` (``UnsupportedError`` without one)."""
    cudart = import_cudart()
    props = cuda_check(cudart, cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return GpuInfo(name=name.rstrip("\x00"), major=int(props.major), minor=int(props.minor), index=device)


def engine_file(graph: str, gpu: GpuInfo, trt_major: int, trt_minor: int) -> str:
    """``decoder_step.sm87.trt10.3.plan``: engines are only valid for one GPU architecture and
    one TensorRT version."""
    return f"{graph}.{gpu.sm}.trt{trt_major}.{trt_minor}.plan"


def timing_cache_file(gpu: GpuInfo, trt_major: int, trt_minor: int) -> str:
    return f"timing.{gpu.sm}.trt{trt_major}.{trt_minor}.cache"


# ----------------------------------------------------------------------------- profiles
def profile_shapes(spec: GraphSpec, max_batch: int, max_src_len: int, opt_batch: int | None = None,
                   opt_src_len: int | None = None) -> dict[str, tuple[tuple[int, ...], ...]]:
    """Input name -> (min, opt, max) shapes. Rows (batch x beam) 1..``max_batch``, source
    length 1..``max_src_len``; opt defaults to min(8, max) rows and half the maximum length."""
    if max_batch < 1 or max_src_len < 1:
        raise UsageError(f"--max-batch and --max-src-len must be >= 1 (got {max_batch}, {max_src_len})",
                         "pass positive sizes")
    ob = opt_batch or min(8, max_batch)
    os_ = opt_src_len or max(1, max_src_len // 2)
    if not (1 <= ob <= max_batch and 1 <= os_ <= max_src_len):
        raise UsageError(f"opt sizes ({ob}, {os_}) are outside 1..({max_batch}, {max_src_len})",
                         "choose opt sizes within the maximum")
    return {k: tuple(v) for k, v in spec.profile((1, 1), (ob, os_), (max_batch, max_src_len)).items()}


def network_flags() -> int:
    """Creation flags: STRONGLY_TYPED on TensorRT 10 (opt-in); nothing on 11+ (always strongly
    typed; the flag may be gone)."""
    import tensorrt as trt

    major, _, _ = trt_version(trt)
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if major >= 11 or flag is None:
        return 0
    return 1 << int(flag)


# ----------------------------------------------------------------------------- building
def build_engine(onnx_path: Path, shapes: dict[str, tuple[tuple[int, ...], ...]],
                 workspace_mb: int, timing_cache: bytes = b"", verbose: bool = False
                 ) -> tuple[bytes, bytes]:
    """Parse ``onnx_path`` strongly typed and build it: (serialized plan, timing cache).
    Call ``import_tensorrt()`` first (it turns a missing TensorRT into ``UnsupportedError``)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags())
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [parser.get_error(i) for i in range(parser.num_errors)]
        raise UnsupportedError([Problem(f"TensorRT cannot parse {onnx_path.name}: {e.desc()} "
                                        f"(node {e.node_name()} {e.node_operator()})",
                                        "run the TensorRT compatibility check (s2s inspect) and "
                                        "re-export") for e in errors]
                               or [Problem(f"TensorRT cannot parse {onnx_path.name}", "re-export it")])
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    profile = builder.create_optimization_profile()
    for name, (mn, opt, mx) in shapes.items():
        profile.set_shape(name, trt.Dims(list(mn)), trt.Dims(list(opt)), trt.Dims(list(mx)))
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(timing_cache)
    if not config.set_timing_cache(cache, ignore_mismatch=False):  # a cache from another device
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise UnsupportedError(f"TensorRT could not build an engine for {onnx_path.name} "
                               f"(workspace {workspace_mb} MB)",
                               "see the TensorRT log above; try a larger --workspace or smaller "
                               "--max-batch/--max-src-len")
    return bytes(memoryview(plan)), bytes(memoryview(config.get_timing_cache().serialize()))


def build_into(directory: str | os.PathLike[str], manifest: Manifest, max_batch: int | None = None,
               max_src_len: int | None = None, workspace_mb: int = DEFAULT_WORKSPACE_MB,
               opt_batch: int | None = None, opt_src_len: int | None = None, device: int = 0,
               verbose: bool = False) -> list[dict[str, Any]]:
    """Build both engines from the FP16 graphs in ``directory`` (a bundle being written) and
    record them in ``manifest.engines`` (not saved). Returns the new engine entries.

    Raises ``UnsupportedError`` (exit 2) before any work when TensorRT or a GPU is missing."""
    directory = Path(directory)
    trt = import_tensorrt()
    gpu = gpu_info(device)
    major, minor, full = trt_version(trt)
    fp16 = manifest.graphs.get("fp16")
    if not fp16:
        raise BundleError("the bundle has no FP16 graphs (encoder.fp16.onnx, decoder_step.fp16.onnx)",
                          "re-export with s2s-export MODEL.pt --trt")
    max_batch = int(max_batch or manifest.max_batch)
    max_src_len = int(max_src_len or manifest.max_src_len)
    if max_batch > TOPK_MAX_K:
        raise UsageError(f"--max-batch {max_batch} exceeds {TOPK_MAX_K}, the largest TopK TensorRT "
                         "supports (the encoder sorts the batch by length with a TopK)",
                         f"use --max-batch <= {TOPK_MAX_K}")
    specs = {"encoder": manifest.io.encoder, "decoder_step": manifest.io.step}
    try:  # the static check needs onnx, which a bare target device may lack: then the parser judges
        import onnx  # noqa: F401
    except ImportError:
        pass
    else:
        problems = [p for g in GRAPHS for p in check_trt_compat(directory / fp16[g], name=fp16[g])]
        if problems:
            raise UnsupportedError(problems)
    cache_name = timing_cache_file(gpu, major, minor)
    cache_path = directory / cache_name
    cache = cache_path.read_bytes() if cache_path.is_file() else b""
    entries = []
    for graph in GRAPHS:
        shapes = profile_shapes(specs[graph], max_batch, max_src_len, opt_batch, opt_src_len)
        start = time.perf_counter()
        plan, cache = build_engine(directory / fp16[graph], shapes, workspace_mb, cache, verbose)
        name = engine_file(graph, gpu, major, minor)
        (directory / name).write_bytes(plan)
        entries.append({
            "graph": graph, "file": name, "precision": "fp16", "source": fp16[graph],
            "strongly_typed": True, "tensorrt": full, "trt_major": major, "trt_minor": minor,
            "sm": gpu.sm, "compute_capability": [gpu.major, gpu.minor], "gpu": gpu.name,
            "max_batch": max_batch, "max_src_len": max_src_len, "workspace_mb": workspace_mb,
            "profile": {k: [list(s) for s in v] for k, v in shapes.items()},
            "build_seconds": round(time.perf_counter() - start, 1),
        })
    cache_path.write_bytes(cache)
    manifest.files.setdefault(cache_name, "")
    # engines for this GPU architecture and TensorRT version replace older ones
    manifest.engines = [e for e in manifest.engines
                        if not (e.get("sm") == gpu.sm and e.get("trt_major") == major
                                and e.get("trt_minor") == minor)] + entries
    manifest.versions = {**manifest.versions, "tensorrt": full}
    return entries


def build_engines(bundle_dir: str | os.PathLike[str], max_batch: int | None = None,
                  max_src_len: int | None = None, workspace_mb: int = DEFAULT_WORKSPACE_MB,
                  opt_batch: int | None = None, opt_src_len: int | None = None, device: int = 0,
                  verbose: bool = False) -> list[dict[str, Any]]:
    """``s2s build-engines``: build the engines of an existing bundle in place (atomically).

    Missing FP16 graphs are made first from the float32 ones (needs the ``export`` extra).
    ``UnsupportedError`` (exit 2) before any work when TensorRT or a GPU is missing, saying
    where to run the command and what to install there."""
    bundle_dir = Path(bundle_dir)
    manifest = load_manifest(bundle_dir)
    try:
        import_tensorrt()  # fail fast (exit 2) before copying anything
        gpu_info(device)
        with atomic_dir(bundle_dir, copy_from=bundle_dir, expect=manifest.digest,
                        action="its engines were being built") as tmp:
            if "fp16" not in manifest.graphs:
                write_fp16_graphs(tmp, manifest)
            entries = build_into(tmp, manifest, max_batch, max_src_len, workspace_mb, opt_batch,
                                 opt_src_len, device, verbose)
            manifest.save(tmp)
    except UnsupportedError as exc:
        raise for_build_engines(exc) from None
    return entries


# ----------------------------------------------------------------------------- export hook
def write_fp16_graphs(directory: str | os.PathLike[str], manifest: Manifest,
                      policy: Any = None) -> dict[str, Any]:
    """``encoder.fp16.onnx`` / ``decoder_step.fp16.onnx`` from the float32 graphs of the bundle
    being written in ``directory``; records them in ``manifest.graphs["fp16"]``. Returns the
    conversion reports (``FP16Report.to_dict()``) per graph."""
    from ..fp16.convert import to_fp16

    directory = Path(directory)
    fp32 = manifest.graphs.get("fp32")
    if not fp32:
        raise BundleError("the bundle has no float32 graphs", "re-export it with s2s-export")
    reports, names = {}, {}
    for graph in GRAPHS:
        out = f"{graph}.fp16.onnx"
        reports[graph] = to_fp16(directory / fp32[graph], directory / out, policy).to_dict()
        names[graph] = out
    manifest.graphs["fp16"] = names
    return reports


def fp16_hook(bundle_dir: str | os.PathLike[str], manifest: Manifest, build: bool = True,
              max_batch: int | None = None, max_src_len: int | None = None,
              workspace_mb: int = DEFAULT_WORKSPACE_MB, policy: Any = None) -> HookResult:
    """The exporter's single entry point for ``--trt``, called on the bundle being written
    (``bundle_dir`` = the temporary directory, ``manifest`` not yet saved; it is updated here:
    ``graphs["fp16"]``, ``engines``, ``versions``).

    Writes the FP16 graphs, runs the TensorRT compatibility check on the float32 and FP16
    graphs, and with ``build`` tries the engine build. A missing GPU/TensorRT does not raise:
    it comes back in ``result.unsupported`` so that the exporter can finish writing the bundle
    and then raise it (exit 2). Compatibility problems are returned (and skip the build)."""
    directory = Path(bundle_dir)
    reports = write_fp16_graphs(directory, manifest, policy)
    problems: list[Problem] = []
    for precision in ("fp32", "fp16"):
        for graph in GRAPHS:
            f = manifest.graphs[precision][graph]
            problems += check_trt_compat(directory / f, name=f)
    result = HookResult(fp16_reports=reports, compat_problems=problems, engines=[])
    if not build:
        return result
    if problems:
        result.unsupported = UnsupportedError(problems)
        return result
    try:
        result.engines = build_into(directory, manifest, max_batch, max_src_len, workspace_mb)
    except UnsupportedError as exc:
        result.unsupported = exc
    return result


def add_tensorrt(bundle_dir: str | os.PathLike[str], build: bool = True, max_batch: int | None = None,
                 max_src_len: int | None = None, workspace_mb: int = DEFAULT_WORKSPACE_MB,
                 policy: Any = None) -> HookResult:
    """``s2s-export --trt`` on a written bundle: ``fp16_hook`` inside ``atomic_dir`` (the bundle
    gains its FP16 graphs, and engines when this machine can build them), then, once the bundle
    is committed, ``UnsupportedError`` (exit 2) when TensorRT or a GPU was missing or a graph is
    not TensorRT-compatible."""
    bundle_dir = Path(bundle_dir)
    manifest = load_manifest(bundle_dir)
    with atomic_dir(bundle_dir, copy_from=bundle_dir, expect=manifest.digest,
                    action="its FP16 graphs were being added") as tmp:
        result = fp16_hook(tmp, manifest, build, max_batch, max_src_len, workspace_mb, policy)
        manifest.save(tmp)
    if result.unsupported is not None:
        raise engines_missing(result.unsupported, bundle_dir)
    return result


def engines_missing(exc: UnsupportedError, bundle_dir: str | os.PathLike[str], bundle: Any = None
                    ) -> EnginesMissingError:
    """``exc`` (what is missing here) plus the line saying that ``bundle_dir`` was written
    without engines and how to build them on the target (``s2s-export --trt``, exit 2);
    ``bundle``: the written ``export.api.Bundle``, carried by the error."""
    return EnginesMissingError(exc.problems + [Problem(
        f"{bundle_dir} was written with its ONNX and FP16 graphs, without TensorRT engines",
        f"on the target device run: s2s build-engines {bundle_dir}")], bundle)


def for_build_engines(exc: UnsupportedError) -> UnsupportedError:
    """``exc`` as ``s2s build-engines`` reports it: the user is already running that command,
    so the fix names what to install and where to run it, never the command itself."""
    return UnsupportedError([Problem(p.what, RUN_HINT) if p.fix == BUILD_HINT else p for p in exc.problems])
