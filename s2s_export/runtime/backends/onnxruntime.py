"""ONNX Runtime backend: the two bundle graphs, state kept inside the backend (torch-free).

Static and state tensors stay where the session produced them: the step's ``next_<state>``
outputs are fed back as the next step's state inputs as they are. On a device
(``device="cuda"``, the CUDA execution provider) they are ``OrtValue``s bound with IO binding,
so the state never leaves the GPU and only the small step results (top-K, and log_probs/attn
when asked) come to the host. On the CPU the same values are numpy arrays passed to
``session.run`` (no copies either; IO binding costs ~40 µs more per step there, measured in
benchmarks/). ``keep`` gathers static rows on the host and re-wraps them: it runs only when
the batch layout changes, not every step.

Session defaults: ``intra_op_threads`` = min(4, cores this process may use; more are capped),
one inter-op thread, all graph optimizations, and ``spinning="step"``: the decoder-step
session's pool threads busy-wait between runs (a step comes every ~0.1-1 ms; a sleeping pool
pays a wake-up in every parallel operator), the encoder's sleep (two spinning pools oversubscribe a small machine: every few
steps one stalls for a scheduler tick). Measured in benchmarks/README.md: on a quiet 2-core
machine "step" beats "off" 1.2-2x in greedy decoding and beats "all"; on a machine shared with
other busy processes use ``spinning="off"`` (it degrades least there). No custom-op library is
ever loaded.

Fused greedy (``greedy``): a bundle's combined encoder + greedy graph (``encoder_greedy.onnx``)
decodes a batch in one session run; bundles with only ``greedy.onnx`` run the encoder session,
then that graph; the session is loaded on first use and spins like the step's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ...bundle import ENCODER_GREEDY, GREEDY, bundle_path, file_problem
from ...errors import (BadInputError, BundleError, ConfigError, UnsupportedError, one_line, require,
                       resource_error)
from ...graphio import BLOCKED_METADATA, BundleIO, next_name
from ..threads import available_cores, check_threads
from .base import DEFAULT_SPINNING, SPINNING, StepResult

DEFAULT_PROVIDERS = ("CPUExecutionProvider",)
# Largest batch the fused greedy graph takes: its rows never leave the loop, so finished
# sentences keep computing. Measured (benchmarks/fused_batch.py, 2 threads, quiet 2-core Xeon,
# 2026-11-30: results/2026-11-30-fused-batch-*.json): 1.07-1.41x faster than the search's loop
# up to 16 sentences per batch on G2P and the NMT-sized model, 0.96-0.97x at 32, 0.82-0.88x at
# 64. Larger batches run the Python loop.
FUSED_MAX_BATCH = 16


def default_threads() -> int:
    return min(4, available_cores())


def session_options(ort: Any, intra_op_threads: int | None = None, spinning: bool = False) -> Any:
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(intra_op_threads) if intra_op_threads else default_threads()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "1" if spinning else "0")
    so.log_severity_level = 3  # errors only: warnings would interleave with CLI output
    return so


class OnnxRuntimeBackend:
    """``Backend`` over ``encoder.onnx`` + ``decoder_step.onnx`` (see ``base.Backend``)."""

    name = "onnxruntime"
    max_rows: int | None = None

    def __init__(self, encoder_path: str | os.PathLike[str], step_path: str | os.PathLike[str],
                 io: BundleIO, intra_op_threads: int | None = None,
                 providers: Sequence[Any] = DEFAULT_PROVIDERS, device: str = "cpu",
                 spinning: str = DEFAULT_SPINNING, io_binding: bool | None = None,
                 greedy_path: str | os.PathLike[str] | None = None,
                 encoder_greedy_path: str | os.PathLike[str] | None = None) -> None:
        intra_op_threads = check_threads(intra_op_threads)  # capped to the cores: no thread storm
        if spinning not in SPINNING:
            raise ConfigError(f"spinning {spinning!r} is unknown", f"use one of: {', '.join(SPINNING)}")
        self.ort: Any = require("onnxruntime", "cpu")
        ort = self.ort
        self.io = io
        self.device = device
        # OrtValues + IO binding on a device (always), numpy + session.run on the CPU (default)
        self.io_binding = device != "cpu" if io_binding is None else bool(io_binding)
        self.topk = io.topk
        self.topk_blocked = tuple(io.blocked)  # FusedGreedy: what the step's top-K leaves out
        self.vocab_size = int(io.step.output("log_probs").shape[1])
        self.spinning = spinning
        self._threads, self._providers = intra_op_threads, providers  # for the greedy session
        # the fused greedy graph (export/greedy.py): loaded on first use; fused_greedy = False
        # makes greedy() decline, so the search runs its Python loop (benchmarks, tests)
        self.greedy_path = None if greedy_path is None else Path(greedy_path)
        # the encoder and the fused greedy graph in one graph (one session run per batch):
        # preferred over the greedy graph when the bundle has it (then greedy.onnx never loads)
        self.encoder_greedy_path = None if encoder_greedy_path is None else Path(encoder_greedy_path)
        self.fused_greedy = self.greedy_path is not None or self.encoder_greedy_path is not None
        self._greedy_session: Any = None
        self._greedy_inputs: set[str] = set()
        self.encoder = self._session(ort, Path(encoder_path), session_options(
            ort, intra_op_threads, spinning == "all"), providers, io.encoder)
        self.step_session = self._session(ort, Path(step_path), session_options(
            ort, intra_op_threads, spinning != "off"), providers, io.step, tuple(io.blocked))
        self.static_names = [t.name for t in io.static]
        self.state_names = [t.name for t in io.state]
        self._static: dict[str, Any] = {}  # name -> OrtValue (on device)
        self._static_host: dict[str, np.ndarray] = {}  # name -> host copy (for keep)
        self._state: dict[str, Any] = {}  # name -> OrtValue (on device)
        self._rows = 0
        self._binding = self.step_session.io_binding()
        self._step_inputs = {i.name for i in self.step_session.get_inputs()}
        self._static_feed: dict[str, Any] = {}  # the static inputs the step graph reads
        self._next = [(n, next_name(n)) for n in self.state_names]  # state <- next_<state>
        self._state_feed = [n for n in self.state_names if n in self._step_inputs]
        base = ["topk_log_probs", "topk_ids", *(next_name(n) for n in self.state_names)]
        self._step_outputs = {(full, attn): base + ["log_probs"] * full + ["attn"] * attn
                              for full in (False, True) for attn in (False, True)}

    # ------------------------------------------------------------------ loading
    @staticmethod
    def _session(ort: Any, path: Path, so: Any, providers: Sequence[Any], spec: Any,
                 blocked: tuple[int, ...] | None = None) -> Any:
        problem = file_problem(path)  # missing, or a directory / FIFO named as a graph
        if problem is not None:
            raise BundleError(f"graph file {path.name} {problem} (in {path.parent})", "re-export the bundle")
        try:
            # no fallback: ONNX Runtime would print its "EP Error" banner to stdout (into the
            # translations) and retry; a failure is reported once, as what it is
            sess = ort.InferenceSession(str(path), sess_options=so, providers=list(providers),
                                        enable_fallback=0)
        except Exception as exc:  # ORT raises several pybind11 types (InvalidProtobuf, Fail, ...)
            # out of threads or memory is this machine's state, not a corrupted file
            raise resource_error(exc, f"loading {path.name}") or BundleError(
                f"ONNX Runtime cannot load {path.name} (corrupted or not an ONNX graph: {one_line(exc)})",
                "re-export the bundle") from None
        check_declared_io(sess, spec, path.name, blocked)
        return sess

    def _device(self, array: np.ndarray) -> Any:
        """A host array as a session input: itself on the CPU, an OrtValue on a device."""
        return self.ort.OrtValue.ortvalue_from_numpy(array, self.device, 0) if self.io_binding else array

    @staticmethod
    def _host(value: Any) -> np.ndarray:
        return value if isinstance(value, np.ndarray) else value.numpy()

    def _run(self, session: Any, inputs: dict[str, Any], names: list[str], what: str) -> dict[str, Any]:
        """Outputs ``names`` of ``session``, left where they were produced (host or device)."""
        try:
            if not self.io_binding:  # plain run: ~40 µs less per step than IO binding on the CPU
                return dict(zip(names, session.run(names, inputs)))
            binding = self._binding if session is self.step_session else session.io_binding()
            binding.clear_binding_inputs()
            binding.clear_binding_outputs()
            for name, value in inputs.items():
                binding.bind_ortvalue_input(name, value)
            for name in names:
                binding.bind_output(name, self.device)
            session.run_with_iobinding(binding)
            return dict(zip(names, binding.get_outputs()))
        except Exception as exc:
            raise resource_error(exc, f"running the {what}") or BadInputError(
                f"ONNX Runtime failed running the {what} ({one_line(exc)})",
                "check the inputs (token ids within the vocabulary, lengths >= 1)") from None

    # ------------------------------------------------------------------ protocol
    def encode(self, src: np.ndarray, src_lengths: np.ndarray) -> None:
        src = np.ascontiguousarray(src, dtype=np.int64)
        src_lengths = np.ascontiguousarray(src_lengths, dtype=np.int64)
        _check_sources(src, src_lengths)
        inputs = {"src": self._device(src), "src_lengths": self._device(src_lengths)}
        outs = self._run(self.encoder, inputs, self.io.encoder.output_names, "encoder")
        self._static = {n: outs[n] for n in self.static_names}
        self._static_host = {}
        self._static_feed = {n: v for n, v in self._static.items() if n in self._step_inputs}
        self._state = {n: outs[n] for n in self.state_names}
        self._rows = src.shape[0]

    def keep(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        for name, value in self._static.items():
            host = self._static_host.get(name)
            host = np.ascontiguousarray((self._host(value) if host is None else host)[rows])
            self._static_host[name] = host  # keeps the buffer a CPU OrtValue points to alive
            self._static[name] = self._device(host)
        self._static_feed = {n: v for n, v in self._static.items() if n in self._step_inputs}
        self._rows = len(rows)

    def step(self, tokens: np.ndarray, reorder: np.ndarray, full: bool = False,
             attn: bool = False) -> StepResult:
        tokens = np.ascontiguousarray(tokens, dtype=np.int64)
        reorder = np.ascontiguousarray(reorder, dtype=np.int64)
        if tokens.shape != (self._rows,) or reorder.shape != (self._rows,):
            raise BadInputError(f"step needs tokens and reorder of {self._rows} rows (got "
                                f"{tokens.shape} and {reorder.shape})", "call keep() when the batch changes")
        inputs = {"tokens": self._device(tokens), "reorder": self._device(reorder), **self._static_feed}
        for name in self._state_feed:
            inputs[name] = self._state[name]
        outs = self._run(self.step_session, inputs, self._step_outputs[full, attn], "decoder step")
        self._state = {n: outs[nxt] for n, nxt in self._next}
        return StepResult(self._host(outs["topk_log_probs"]), self._host(outs["topk_ids"]),
                          self._host(outs["log_probs"]) if full else None,
                          self._host(outs["attn"]) if attn else None)

    def greedy(self, src: np.ndarray, src_lengths: np.ndarray, max_lengths: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """``FusedGreedy``: one run of the combined encoder + greedy graph, else the encoder and
        the fused greedy graph (None without either, or for a batch over ``FUSED_MAX_BATCH``).
        After a combined run the backend keeps no static or state (nothing reads them)."""
        if not self.fused_greedy or len(src_lengths) > FUSED_MAX_BATCH:
            return None
        if self._greedy_session is None:
            path, spec = ((self.encoder_greedy_path, self.io.encoder_greedy) if self.encoder_greedy_path
                          else (self.greedy_path, self.io.greedy))
            assert path is not None
            self._greedy_session = self._session(self.ort, path, session_options(
                self.ort, self._threads, self.spinning != "off"), self._providers, spec)
            self._greedy_inputs = {i.name for i in self._greedy_session.get_inputs()}
        max_lengths = np.ascontiguousarray(max_lengths, dtype=np.int64)
        if "src" in self._greedy_inputs:  # the combined graph
            src = np.ascontiguousarray(src, dtype=np.int64)
            src_lengths = np.ascontiguousarray(src_lengths, dtype=np.int64)
            _check_sources(src, src_lengths)
            inputs = {"src": self._device(src), "src_lengths": self._device(src_lengths),
                      "max_lengths": self._device(max_lengths)}
            outs = self._run(self._greedy_session, inputs, ["ids", "scores", "lengths"], "greedy decode")
            self._static, self._static_feed, self._state, self._rows = {}, {}, {}, 0
            return self._host(outs["ids"]), self._host(outs["scores"]), self._host(outs["lengths"])
        self.encode(src, src_lengths)
        inputs = {"max_lengths": self._device(max_lengths),
                  **{n: v for n, v in (*self._static.items(), *self._state.items()) if n in self._greedy_inputs}}
        outs = self._run(self._greedy_session, inputs, ["ids", "scores", "lengths"], "greedy decode")
        return self._host(outs["ids"]), self._host(outs["scores"]), self._host(outs["lengths"])

    def state(self) -> dict[str, np.ndarray]:
        """Host copies of the current state tensors (``StateAccess``: verification only)."""
        return {n: np.array(self._host(self._state[n]), copy=True) for n in self.state_names}


def _check_sources(src: np.ndarray, src_lengths: np.ndarray) -> None:
    """``BadInputError`` unless src is [B,S] (B >= 1) and src_lengths [B] within 1..S."""
    if src.ndim != 2 or src_lengths.shape != (src.shape[0],) or src.shape[0] == 0:
        raise BadInputError(f"encode needs src [B,S] and src_lengths [B] (got {list(src.shape)} "
                            f"and {list(src_lengths.shape)})", "pass a padded batch and its lengths")
    if src_lengths.min() < 1 or src_lengths.max() > src.shape[1]:
        raise BadInputError(f"source lengths must be within 1..{src.shape[1]} (got "
                            f"{src_lengths.min()}..{src_lengths.max()})", "pass lengths between 1 and the padded width (framing included)")


ORT_TYPES = {"float32": "tensor(float)", "float16": "tensor(float16)", "float64": "tensor(double)",
             "int64": "tensor(int64)", "int32": "tensor(int32)", "bool": "tensor(bool)"}


def check_declared_io(sess: Any, spec: Any, name: str, blocked: tuple[int, ...] | None = None) -> None:
    """``BundleError`` unless the graph's inputs and outputs are what ``manifest.json`` declares
    (``graphio.GraphSpec``): the names (an input the graph does not read may have been pruned by
    the exporter), the dtypes, and every fixed axis (top-K's K, the vocabulary size V, hidden
    sizes); a declared dynamic axis must not be fixed in the graph. ``blocked``: the ids the
    manifest says the step graph masks, against the mask the graph records in its metadata
    (``BLOCKED_METADATA``, written at export; graphs without it are not checked)."""
    fix = "re-export the bundle (the graph and manifest.json do not belong together)"
    if blocked is not None:
        recorded = sess.get_modelmeta().custom_metadata_map.get(BLOCKED_METADATA)
        if recorded is not None and sorted(json.loads(recorded)) != sorted(blocked):
            raise BundleError(f"{name} masks the ids {sorted(json.loads(recorded))} before its top-K, the manifest "
                              f"declares io.blocked {sorted(blocked)}", fix)
    got = {t.name: t for t in (*sess.get_inputs(), *sess.get_outputs())}
    got_in = [i.name for i in sess.get_inputs()]
    got_out = [o.name for o in sess.get_outputs()]
    if not set(got_in) <= set(spec.input_names) or not set(spec.output_names) <= set(got_out):
        raise BundleError(f"{name} has inputs {got_in} and outputs {got_out}, the manifest "
                          f"declares {spec.input_names} -> {spec.output_names}", fix)
    for t in (*spec.inputs, *spec.outputs):
        g = got.get(t.name)
        if g is None:
            continue
        if g.type != ORT_TYPES.get(t.dtype):
            raise BundleError(f"{name}: {t.name} is {g.type} in the graph, the manifest declares {t.dtype}", fix)
        shape = list(g.shape) if g.shape is not None else []
        if shape and len(shape) != len(t.shape):
            raise BundleError(f"{name}: {t.name} has rank {len(shape)} in the graph, the manifest declares "
                              f"{list(t.shape)}", fix)
        for declared, actual in zip(t.shape, shape):
            fixed = isinstance(actual, int) and actual > 0
            if fixed and (isinstance(declared, str) or declared != actual):
                raise BundleError(f"{name}: {t.name} is {shape} in the graph, the manifest declares "
                                  f"{list(t.shape)}", fix)


# how a bundle gets graphs of a precision it lacks
ADD_GRAPHS = {"int8": "s2s quantize {bundle}", "fp16": "re-export with s2s-export MODEL -o {bundle} --trt --force",
              "fp32": "re-export with s2s-export MODEL -o {bundle} --force"}


def graph_files(bundle_dir: Path, manifest: Any, precision: str) -> tuple[Path, Path]:
    """Paths of the encoder and step graphs of ``precision`` (``manifest.graphs``)."""
    graphs = manifest.graphs.get(precision)
    if not graphs:
        have = ", ".join(sorted(manifest.graphs)) or "none"
        raise ConfigError(f"the bundle has no {precision} graphs (it has: {have})",
                          "pass one of those precisions, or add them: "
                          + ADD_GRAPHS.get(precision, ADD_GRAPHS["fp32"]).format(bundle=bundle_dir))
    return bundle_path(bundle_dir, graphs["encoder"]), bundle_path(bundle_dir, graphs["decoder_step"])


def load_backend(bundle_dir: Path, manifest: Any, precision: str | None = "fp32",
                 intra_op_threads: int | None = None, spinning: str = DEFAULT_SPINNING) -> OnnxRuntimeBackend:
    """The CPU backend of a bundle (the ``Translator.load`` entry point; precision default fp32)."""
    encoder, step = graph_files(bundle_dir, manifest, precision or "fp32")
    graphs = manifest.graphs[precision or "fp32"]
    greedy, combined = graphs.get(GREEDY), graphs.get(ENCODER_GREEDY)  # optional (older bundles, fp16)
    return OnnxRuntimeBackend(encoder, step, manifest.io, intra_op_threads=intra_op_threads, spinning=spinning,
                              greedy_path=None if greedy is None else bundle_path(bundle_dir, greedy),
                              encoder_greedy_path=None if combined is None else bundle_path(bundle_dir, combined))


CUDA_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


def load_cuda_backend(bundle_dir: Path, manifest: Any, precision: str | None = "fp32",
                      intra_op_threads: int | None = None,
                      spinning: str | None = None) -> OnnxRuntimeBackend:
    """ONNX Runtime's CUDA execution provider (``onnxruntime-gpu``): the same IO-binding code
    as on the CPU with ``device="cuda"``, so static and state OrtValues stay on the GPU and only
    the step's top-K (and log_probs/attn when asked) come to the host. ``spinning`` does not
    apply: the work runs on the GPU, so the CPU threads always sleep (a spinning pool would
    only burn a core). Raises ``UnsupportedError`` when this onnxruntime has no CUDA provider or
    no GPU answers."""
    ort: Any = require("onnxruntime", "gpu")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise UnsupportedError("this onnxruntime has no CUDAExecutionProvider",
                               "pip install 's2s-export[gpu]' (onnxruntime-gpu, not with onnxruntime) "
                               "on a machine with an NVIDIA GPU")
    encoder, step = graph_files(bundle_dir, manifest, precision or "fp32")
    backend = OnnxRuntimeBackend(encoder, step, manifest.io, intra_op_threads=intra_op_threads,
                                 providers=CUDA_PROVIDERS, device="cuda", spinning="off")
    if "CUDAExecutionProvider" not in backend.encoder.get_providers():  # ORT fell back to the CPU
        raise UnsupportedError("onnxruntime could not start its CUDA provider (no usable GPU or CUDA "
                               "libraries)", "check nvidia-smi and the CUDA/cuDNN versions onnxruntime-gpu needs")
    backend.name = "onnxruntime-cuda"
    return backend


__all__ = ["CUDA_PROVIDERS", "FUSED_MAX_BATCH", "OnnxRuntimeBackend", "default_threads", "graph_files", "load_backend",
           "load_cuda_backend", "session_options"]
