"""TensorRT backend: the bundle's engines run natively with cuda-python (torch-free).

* Engines: the manifest's ``engines`` entries for this GPU architecture (``sm87``) and this
  TensorRT major.minor; engines built elsewhere are refused with the ``s2s build-engines``
  command that rebuilds them here (a plan only runs on the architecture and TensorRT version it
  was built with).
* Memory: every device buffer is allocated once, for the engine profile's maximum shapes (rows =
  sentences x beam, source length). Static tensors (encoder outputs, step inputs) and state
  tensors have two buffers each (ping-pong): the step reads state from one and writes
  ``next_<state>`` into the other, then they swap; the state never leaves the device and is
  reordered inside the step graph (``reorder`` input). ``keep(rows)`` gathers static rows into
  the spare static buffers with device-to-device copies (one per run of consecutive rows).
* Host traffic per step: tokens and reorder in, the top-K candidates out (``log_probs`` and
  ``attn`` only when asked), through pinned host buffers, on one CUDA stream, with
  ``execute_async_v3`` after ``set_input_shape``/``set_tensor_address``.
* ``cuda_graph=True``: the step (copies in, engine, top-K copies out) is captured into a CUDA
  graph per (rows, previous rows, source length, buffer parity) after its first run and replayed
  afterwards (TensorRT's documented enqueue-once-then-capture pattern).

TensorRT 10 and 11 share this API (``execute_async_v3``, tensor addresses, ``set_input_shape``);
``execute_async_v2``/bindings are gone in both. All tensorrt/cuda imports are inside functions.
"""

from __future__ import annotations

import ctypes
import math
import os
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...bundle import GRAPHS, Manifest, bundle_path, file_problem
from ...errors import BadInputError, BundleError, UnsupportedError
from ...graphio import GraphSpec, TensorSpec, next_name
from ...tensorrt.builder import cuda_check, gpu_info, import_cudart, import_tensorrt, trt_version
from .base import StepResult

if TYPE_CHECKING:  # for the annotations only: the module imports tensorrt inside functions
    import tensorrt as trt

MAX_CUDA_GRAPHS = 64
H2D, D2H, D2D = 1, 2, 3  # cudaMemcpyKind


def _tensorrt_env() -> tuple[Any, Any, Any, tuple[int, int, str]]:
    """(tensorrt module, cudart, GpuInfo, TensorRT version); ``UnsupportedError`` without them."""
    trt = import_tensorrt()
    cudart = import_cudart()
    gpu = gpu_info(0)
    return trt, cudart, gpu, trt_version(trt)


def select_engines(manifest: Manifest, bundle_dir: str | os.PathLike[str], sm: str, gpu_name: str,
                   trt_major: int, trt_minor: int, trt_full: str) -> dict[str, dict[str, Any]]:
    """The engine entry of each graph built for this GPU architecture and TensorRT version."""
    fix = f"build engines for this device: s2s build-engines {bundle_dir}"
    if not manifest.engines:
        raise UnsupportedError(f"bundle {bundle_dir} has no TensorRT engines", fix)
    found = {e.get("graph"): e for e in manifest.engines
             if e.get("sm") == sm and e.get("trt_major") == trt_major and e.get("trt_minor") == trt_minor}
    if not all(g in found for g in GRAPHS):
        built = sorted({f"{e.get('sm')} / TensorRT {e.get('tensorrt')}" for e in manifest.engines})
        raise UnsupportedError(
            f"the engines in {bundle_dir} were built for {', '.join(built)}; this machine has "
            f"{sm} ({gpu_name}) with TensorRT {trt_full}, and an engine only runs on the GPU "
            "architecture and TensorRT version it was built with", fix)
    return {g: found[g] for g in GRAPHS}


class _Cuda:
    """The few cuda-python runtime calls the backend needs, with errors turned into ours."""

    def __init__(self, cudart: Any) -> None:
        self.rt = cudart

    def __call__(self, result: Any, what: str) -> Any:
        return cuda_check(self.rt, result, what)

    def malloc(self, nbytes: int) -> int:
        return int(self(self.rt.cudaMalloc(max(nbytes, 1)), "cudaMalloc"))

    def malloc_host(self, nbytes: int) -> int:
        return int(self(self.rt.cudaMallocHost(max(nbytes, 1)), "cudaMallocHost"))

    def copy(self, dst: int, src: int, nbytes: int, kind: int, stream: Any) -> None:
        if nbytes:
            self(self.rt.cudaMemcpyAsync(dst, src, nbytes, self.rt.cudaMemcpyKind(kind), stream),
                 "cudaMemcpyAsync")

    def sync(self, stream: Any) -> None:
        self(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")


class _Pinned:
    """A pinned host buffer with a numpy view."""

    def __init__(self, cuda: _Cuda, nbytes: int) -> None:
        self.ptr = cuda.malloc_host(nbytes)
        self.nbytes = nbytes
        self.raw = (ctypes.c_byte * max(nbytes, 1)).from_address(self.ptr)

    def view(self, dtype: Any, count: int) -> np.ndarray:
        return np.frombuffer(memoryview(self.raw).cast("B"), dtype=dtype, count=count)


class TensorRTBackend:
    """``Backend`` over a bundle's TensorRT engines (see ``base.Backend`` and the module doc)."""

    name = "tensorrt"

    def __init__(self, bundle_dir: str | os.PathLike[str], manifest: Manifest,
                 cuda_graph: bool = False) -> None:
        _, cudart, gpu, (major, minor, full) = _tensorrt_env()  # UnsupportedError without them
        import tensorrt as trt

        self.bundle_dir = Path(bundle_dir)
        self.io = manifest.io
        self.topk = manifest.io.topk
        self.topk_blocked = tuple(manifest.io.blocked)  # the engines come from step graphs that mask these
        self.vocab_size = int(manifest.io.step.output("log_probs").shape[1])
        entries = select_engines(manifest, self.bundle_dir, gpu.sm, gpu.name, major, minor, full)
        self.max_rows: int | None = min(int(entries[g]["max_batch"]) for g in GRAPHS)
        self.max_src_len = min(int(entries[g]["max_src_len"]) for g in GRAPHS)
        self.cuda = _Cuda(cudart)
        self.cuda(cudart.cudaSetDevice(gpu.index), "cudaSetDevice")
        self.stream = self.cuda(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engines: dict[str, trt.ICudaEngine] = {}
        self.contexts: dict[str, trt.IExecutionContext] = {}
        for g in GRAPHS:
            path = bundle_path(self.bundle_dir, entries[g]["file"])
            problem = file_problem(path)
            if problem is not None:
                raise BundleError(f"engine file {path.name} {problem}", f"s2s build-engines {self.bundle_dir}")
            engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is None:
                raise UnsupportedError(f"TensorRT {full} cannot load {path.name} (built for "
                                       f"{entries[g].get('sm')} / TensorRT {entries[g].get('tensorrt')})",
                                       f"rebuild the engines here: s2s build-engines {self.bundle_dir}")
            self.engines[g] = engine
            self.contexts[g] = engine.create_execution_context()
        self.inputs = {g: {self.engines[g].get_tensor_name(i) for i in range(self.engines[g].num_io_tensors)
                           if self.engines[g].get_tensor_mode(self.engines[g].get_tensor_name(i))
                           == trt.TensorIOMode.INPUT} for g in GRAPHS}
        self._dtypes = {(g, self.engines[g].get_tensor_name(i)):
                        np.dtype(trt.nptype(self.engines[g].get_tensor_dtype(self.engines[g].get_tensor_name(i))))
                        for g in GRAPHS for i in range(self.engines[g].num_io_tensors)}
        self.cuda_graph = cuda_graph
        self._ctx_shapes: tuple[int, int, int] | None = None  # (B, P, S) the step context is set to
        self._state_of = {next_name(t.name): t.name for t in self.io.state}
        self._graphs: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._allocate()
        self._rows = 0         # rows of static (and of the next step)
        self._state_rows = 0   # rows of the current state
        self._src_len = 0
        self._cur_static = 0   # which of the two static buffers is current
        self._cur_state = 0    # which of the two state buffers is current

    # ------------------------------------------------------------------ memory
    def _dtype(self, graph: str, name: str) -> Any:
        dtype = self._dtypes.get((graph, name))
        if dtype is None:
            raise BundleError(f"the {graph} engine has no tensor {name!r}",
                              f"rebuild the engines: s2s build-engines {self.bundle_dir}")
        return dtype

    def _max_bytes(self, graph: str, t: TensorSpec) -> int:
        shape = t.concrete(int(self.max_rows or 1), self.max_src_len)
        return int(math.prod(shape)) * self._dtype(graph, t.name).itemsize

    def _allocate(self) -> None:
        enc, step = self.io.encoder, self.io.step
        self._dev: list[int] = []
        self._pinned: list[_Pinned] = []

        def dev(nbytes: int) -> int:
            ptr = self.cuda.malloc(nbytes)
            self._dev.append(ptr)
            return ptr

        def pinned(nbytes: int) -> _Pinned:
            p = _Pinned(self.cuda, nbytes)
            self._pinned.append(p)
            return p

        # encoder inputs (device + pinned staging)
        self.enc_in = {t.name: dev(self._max_bytes("encoder", t)) for t in enc.inputs}
        self.enc_in_host = {t.name: pinned(self._max_bytes("encoder", t)) for t in enc.inputs}
        # static and state: two buffers each (ping-pong)
        self._static_bufs = [{t.name: dev(self._max_bytes("encoder", t)) for t in self.io.static} for _ in range(2)]
        self._state_bufs = [{t.name: dev(self._max_bytes("encoder", t)) for t in self.io.state} for _ in range(2)]
        # step inputs and outputs
        self.step_in = {n: dev(self._max_bytes("decoder_step", step.input(n))) for n in ("tokens", "reorder")}
        self.step_in_host = {n: pinned(self._max_bytes("decoder_step", step.input(n))) for n in ("tokens", "reorder")}
        outs = ("topk_log_probs", "topk_ids", "log_probs", "attn")
        self.step_out = {n: dev(self._max_bytes("decoder_step", step.output(n))) for n in outs}
        self.step_out_host = {n: pinned(self._max_bytes("decoder_step", step.output(n))) for n in outs}

    def close(self) -> None:
        """Free device and pinned memory and the stream (also on garbage collection)."""
        cuda = getattr(self, "cuda", None)
        if cuda is None:
            return
        for exec_ in getattr(self, "_graphs", {}).values():
            cuda.rt.cudaGraphExecDestroy(exec_)
        self._graphs = OrderedDict()
        for ptr in getattr(self, "_dev", []):
            cuda.rt.cudaFree(ptr)
        for p in getattr(self, "_pinned", []):
            cuda.rt.cudaFreeHost(p.ptr)
        self._dev, self._pinned = [], []
        if getattr(self, "stream", None) is not None:
            cuda.rt.cudaStreamDestroy(self.stream)
            self.stream = None
        self.cuda = None  # type: ignore[assignment]

    def __del__(self) -> None:  # pragma: no cover - depends on the garbage collector
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a destructor
            pass

    # ------------------------------------------------------------------ helpers
    def _set_shape(self, graph: str, name: str, shape: tuple[int, ...]) -> None:
        if not self.contexts[graph].set_input_shape(name, shape):
            raise BadInputError(f"TensorRT refused shape {list(shape)} for {graph} input {name!r}",
                                f"rebuild the engines for larger sizes: s2s build-engines {self.bundle_dir} "
                                "--max-batch N --max-src-len N")

    def _bind(self, graph: str, name: str, ptr: int) -> None:
        if not self.contexts[graph].set_tensor_address(name, ptr):
            raise BundleError(f"the {graph} engine has no tensor {name!r}",
                              f"rebuild the engines: s2s build-engines {self.bundle_dir}")

    def _upload(self, host: _Pinned, dev_ptr: int, array: np.ndarray) -> None:
        view = host.view(array.dtype, array.size)
        view[:] = array.reshape(-1)
        self.cuda.copy(dev_ptr, host.ptr, array.nbytes, H2D, self.stream)

    def _execute(self, graph: str) -> None:
        if not self.contexts[graph].execute_async_v3(int(self.stream)):
            raise BadInputError(f"TensorRT failed running the {graph}",
                                "check the inputs (token ids within the vocabulary, lengths >= 1)")

    @staticmethod
    def _row_bytes(t: TensorSpec, src_len: int, itemsize: int) -> int:
        return int(math.prod(t.concrete(1, src_len))) * itemsize

    # ------------------------------------------------------------------ protocol
    def encode(self, src: np.ndarray, src_lengths: np.ndarray) -> None:
        enc = self.io.encoder
        src = np.ascontiguousarray(src, dtype=self._dtype("encoder", "src"))
        lengths = np.ascontiguousarray(src_lengths, dtype=self._dtype("encoder", "src_lengths"))
        if src.ndim != 2 or lengths.shape != (src.shape[0],) or src.shape[0] == 0:
            raise BadInputError(f"encode needs src [B,S] and src_lengths [B] (got {list(src.shape)} "
                                f"and {list(lengths.shape)})", "pass a padded batch and its lengths")
        B, S = src.shape
        if B > (self.max_rows or B) or S > self.max_src_len:
            raise BadInputError(f"batch {B} x {S} exceeds the engines' profile ({self.max_rows} rows, "
                                f"source length {self.max_src_len})",
                                f"use smaller batches, or rebuild: s2s build-engines {self.bundle_dir} "
                                "--max-batch N --max-src-len N")
        if lengths.min() < 1 or lengths.max() > S:
            raise BadInputError(f"source lengths must be within 1..{S}", "pass lengths between 1 and the padded width (framing included)")
        self._upload(self.enc_in_host["src"], self.enc_in["src"], src)
        self._upload(self.enc_in_host["src_lengths"], self.enc_in["src_lengths"], lengths)
        self._cur_static, self._cur_state = 0, 0
        for t in enc.inputs:
            self._set_shape("encoder", t.name, t.concrete(B, S))
            self._bind("encoder", t.name, self.enc_in[t.name])
        for t in self.io.static:
            self._bind("encoder", t.name, self._static_bufs[0][t.name])
        for t in self.io.state:
            self._bind("encoder", t.name, self._state_bufs[0][t.name])
        self._execute("encoder")
        self.cuda.sync(self.stream)
        self._rows = self._state_rows = B
        self._src_len = S

    def keep(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size == 0 or rows.min() < 0 or rows.max() >= self._rows:
            raise BadInputError(f"keep rows must be within 0..{self._rows - 1}", "pass rows of the current batch")
        if rows.size > (self.max_rows or rows.size):
            raise BadInputError(f"{rows.size} rows exceed the engines' {self.max_rows}",
                                f"rebuild with a larger --max-batch: s2s build-engines {self.bundle_dir}")
        src, dst = self._static_bufs[self._cur_static], self._static_bufs[1 - self._cur_static]
        runs = _runs(rows)
        for t in self.io.static:
            size = self._row_bytes(t, self._src_len, self._dtype("encoder", t.name).itemsize)
            for out_start, in_start, n in runs:
                self.cuda.copy(dst[t.name] + out_start * size, src[t.name] + in_start * size, n * size,
                               D2D, self.stream)
        self._cur_static = 1 - self._cur_static
        self._rows = int(rows.size)

    def step(self, tokens: np.ndarray, reorder: np.ndarray, full: bool = False,
             attn: bool = False) -> StepResult:
        B, P, S = self._rows, self._state_rows, self._src_len
        tokens = np.ascontiguousarray(tokens, dtype=self._dtype("decoder_step", "tokens")).reshape(-1)
        reorder = np.ascontiguousarray(reorder, dtype=self._dtype("decoder_step", "reorder")).reshape(-1)
        if tokens.shape != (B,) or reorder.shape != (B,):
            raise BadInputError(f"step needs tokens and reorder of {B} rows (got {tokens.shape} and "
                                f"{reorder.shape})", "call keep() when the batch changes")
        if B and (reorder.min() < 0 or reorder.max() >= P):
            raise BadInputError(f"reorder must index the previous {P} state rows", "pass rows of the previous step")
        key = (B, P, S, self._cur_static, self._cur_state)
        host_tok = self.step_in_host["tokens"].view(tokens.dtype, B)
        host_tok[:] = tokens
        self.step_in_host["reorder"].view(reorder.dtype, B)[:] = reorder
        exec_ = self._graphs.get(key) if self.cuda_graph else None
        if exec_ is not None:
            self._graphs.move_to_end(key)
            if self._ctx_shapes != (B, P, S):
                # the captured enqueue may read shape data the context keeps on the host:
                # put the context back into the shapes the graph was captured with
                self._prepare_step(B, P, S)
            self.cuda(self.cuda.rt.cudaGraphLaunch(exec_, self.stream), "cudaGraphLaunch")
        else:
            self._prepare_step(B, P, S)
            self._enqueue_step(B)
            if self.cuda_graph:
                self._capture(key, B)
        K = self.topk
        if full:
            self.cuda.copy(self.step_out_host["log_probs"].ptr, self.step_out["log_probs"],
                           B * self.vocab_size * 4, D2H, self.stream)
        if attn:
            self.cuda.copy(self.step_out_host["attn"].ptr, self.step_out["attn"], B * S * 4, D2H, self.stream)
        self.cuda.sync(self.stream)
        self._cur_state = 1 - self._cur_state
        self._state_rows = B
        ids_dtype = self._dtype("decoder_step", "topk_ids")
        return StepResult(
            self.step_out_host["topk_log_probs"].view(np.float32, B * K).reshape(B, K).copy(),
            self.step_out_host["topk_ids"].view(ids_dtype, B * K).reshape(B, K).astype(np.int64),
            self.step_out_host["log_probs"].view(np.float32, B * self.vocab_size).reshape(B, -1).copy()
            if full else None,
            self.step_out_host["attn"].view(np.float32, B * S).reshape(B, S).copy() if attn else None)

    def state(self) -> dict[str, np.ndarray]:
        """Host copies of the current state tensors (``StateAccess``: verification only; a
        synchronous device-to-host copy, never used by the search)."""
        out = {}
        for t in self.io.state:
            dtype = self._dtype("encoder", t.name)
            shape = t.concrete(self._state_rows, self._src_len)
            host = np.empty(shape, dtype=dtype)
            self.cuda(self.cuda.rt.cudaMemcpy(host.ctypes.data, self._state_bufs[self._cur_state][t.name],
                                              host.nbytes, self.cuda.rt.cudaMemcpyKind(D2H)), "cudaMemcpy")
            out[t.name] = host
        return out

    # ------------------------------------------------------------------ step internals
    def _prepare_step(self, B: int, P: int, S: int) -> None:
        """Input shapes and every tensor address for a step of B rows from P state rows."""
        step: GraphSpec = self.io.step
        g = "decoder_step"
        static, state = self._static_bufs[self._cur_static], self._state_bufs[self._cur_state]
        nxt = self._state_bufs[1 - self._cur_state]
        for t in step.inputs:
            if t.name not in self.inputs[g]:
                continue  # pruned by the exporter (the graph does not read it)
            rows = P if t.role == "state" else B
            self._set_shape(g, t.name, t.concrete(rows, S))
            ptr = (self.step_in.get(t.name) or static.get(t.name) or state.get(t.name))
            assert ptr is not None, t.name
            self._bind(g, t.name, ptr)
        for t in step.outputs:
            if t.role == "state":
                self._bind(g, t.name, nxt[self._state_of[t.name]])
            else:
                self._bind(g, t.name, self.step_out[t.name])
        self._ctx_shapes = (B, P, S)

    def _enqueue_step(self, B: int) -> None:
        """Copies in, the engine, top-K copies out (all asynchronous on the stream)."""
        for n in ("tokens", "reorder"):
            itemsize = self._dtype("decoder_step", n).itemsize
            self.cuda.copy(self.step_in[n], self.step_in_host[n].ptr, B * itemsize, H2D, self.stream)
        self._execute("decoder_step")
        K = self.topk
        for n in ("topk_log_probs", "topk_ids"):
            itemsize = self._dtype("decoder_step", n).itemsize
            self.cuda.copy(self.step_out_host[n].ptr, self.step_out[n], B * K * itemsize, D2H, self.stream)

    def _capture(self, key: tuple[Any, ...], B: int) -> None:
        """Record the step just run (same shapes and addresses) into a CUDA graph for replays."""
        rt = self.cuda.rt
        try:
            self.cuda.sync(self.stream)  # the real step ran first: TensorRT's state is set up
            self.cuda(rt.cudaStreamBeginCapture(
                self.stream, rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture")
            try:
                self._enqueue_step(B)
            finally:
                graph = self.cuda(rt.cudaStreamEndCapture(self.stream), "cudaStreamEndCapture")
            exec_ = self.cuda(rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
            rt.cudaGraphDestroy(graph)
        except (UnsupportedError, BadInputError):
            self.cuda_graph = False  # capture not possible here: run without graphs
            return
        self._graphs[key] = exec_
        while len(self._graphs) > MAX_CUDA_GRAPHS:
            _, old = self._graphs.popitem(last=False)
            rt.cudaGraphExecDestroy(old)


def _runs(rows: np.ndarray) -> list[tuple[int, int, int]]:
    """(destination row, source row, count) for each run of consecutive source rows."""
    runs: list[tuple[int, int, int]] = []
    start = 0
    for i in range(1, len(rows) + 1):
        if i == len(rows) or rows[i] != rows[i - 1] + 1:
            runs.append((start, int(rows[start]), i - start))
            start = i
    return runs


def load_backend(bundle_dir: Path, manifest: Manifest, precision: str | None = "fp16",
                 intra_op_threads: int | None = None, spinning: str | None = None,
                 cuda_graph: bool = False) -> TensorRTBackend:
    """The TensorRT backend of a bundle (``Translator.load`` entry point). The engines are the
    FP16 graphs built on this device (precision ``fp16``, the default); ``intra_op_threads``
    and ``spinning`` (ONNX Runtime CPU thread settings) do not apply."""
    if precision not in (None, "fp16"):
        raise UnsupportedError(f"the tensorrt backend runs the bundle's FP16 engines, not {precision} graphs",
                               f"pass precision fp16, or backend onnxruntime for the {precision} graphs")
    return TensorRTBackend(bundle_dir, manifest, cuda_graph=cuda_graph)


__all__ = ["TensorRTBackend", "load_backend", "select_engines"]
