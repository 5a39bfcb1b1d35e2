"""What a worker measures with: PyTorch eager (``TorchEngine``), the runtime on ONNX Runtime
(``OrtEngine``) and the ``Probe`` that times a backend's calls and its sessions' runs. Heavy
imports (torch, onnxruntime) happen inside the engines, in the worker process only."""

from __future__ import annotations

import json
import time
from typing import Any, Callable

import numpy as np

from ..conventions import Conventions
from .configs import WorkerConfig

Call = Callable[[], Any]


class TorchEngine:
    """PyTorch eager: the model's ``encode``/``decode_step`` and the loops of ``eager.py``."""

    def __init__(self, job: dict[str, Any], cfg: WorkerConfig) -> None:
        import torch

        from ..models import load_checkpoint

        self.torch = torch
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        if cfg.mkldnn is not None:
            torch.backends.mkldnn.enabled = bool(cfg.mkldnn)  # type: ignore[assignment]
        self.model = load_checkpoint(job["model"], trust_pickle=job.get("trust_pickle", False)).model.eval()
        self.conv = Conventions.model_validate(job["conventions"])  # the bundle's ids and framing
        self.blocked = tuple(job.get("blocked", ()))
        self.info = {"torch_threads": torch.get_num_threads(), "mkldnn": bool(torch.backends.mkldnn.enabled),
                     "torch": torch.__version__}

    def encoder_call(self, seqs: list[list[int]]) -> Call:
        from .eager import pad

        src, lengths = pad(seqs, self.conv)
        return lambda: self.model.encode(src, lengths)

    def step_call(self, ids: list[int]) -> Call:
        from .eager import pad

        static, state = self.model.encode(*pad([ids], self.conv))
        tokens = self.torch.tensor([self.conv.start_id])
        box = [state]

        def run() -> None:
            _, box[0], _ = self.model.decode_step(tokens, static, box[0])

        return run

    def translate(self, sources: list[list[int]], batch: int, beam: int, wl: dict[str, Any]) -> list[list[int]]:
        from .eager import translate

        return translate(self.model, sources, batch, beam, wl["max_length"], wl["max_length_ratio"], self.conv,
                         self.blocked)

    def dump_weights(self, path: str) -> None:
        """``weights.npz``: the state dict as float32 arrays and the config (for the floor)."""
        arrays = {k: v.detach().float().numpy() for k, v in self.model.state_dict().items()}
        np.savez(path, __config__=np.array(json.dumps(self.model.config.to_dict())), **arrays)


class Probe:
    """Times the backend's calls and its sessions' runs (instance attributes shadowing the
    methods, removed by ``close``); records the call schedule for the floor."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.backend_s = 0.0
        self.graph_s = 0.0
        self.schedule: list[list[Any]] = []
        self.step_times: list[float] = []  # wall time of every backend.step call
        self._src_len = 0
        self._depth = 0  # nesting of backend calls
        self._patched: list[tuple[Any, str]] = []
        for name in ("encode", "step", "keep", "greedy"):
            if hasattr(backend, name):
                self._patch(backend, name, self._backend_call(name, getattr(backend, name)))
        for attr in ("encoder", "step_session", "_greedy_session"):  # the fused greedy graph's, if loaded
            sess = getattr(backend, attr, None)
            for run in ("run", "run_with_iobinding"):  # the CPU path runs, devices bind
                if sess is not None and hasattr(sess, run):
                    self._patch(sess, run, self._graph_call(getattr(sess, run)))
        self.has_graph_timing = any(name in ("run", "run_with_iobinding") for _, name in self._patched)

    def _patch(self, obj: Any, name: str, fn: Call) -> None:
        setattr(obj, name, fn)
        self._patched.append((obj, name))

    def _backend_call(self, name: str, orig: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if name == "encode":
                src = args[0]
                self._src_len = int(src.shape[1])
                self.schedule.append(["encode", int(src.shape[0]), self._src_len])
            elif name == "step":
                self.schedule.append(["step", int(len(args[0])), self._src_len])
            t0 = time.perf_counter()
            self._depth += 1
            try:
                return orig(*args, **kwargs)
            finally:
                self._depth -= 1
                dt = time.perf_counter() - t0
                if self._depth == 0:  # greedy() calls encode(): count the outer call only
                    self.backend_s += dt
                if name == "step":
                    self.step_times.append(dt)
        return call

    def _graph_call(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return orig(*args, **kwargs)
            finally:
                self.graph_s += time.perf_counter() - t0
        return call

    def reset(self) -> None:
        self.backend_s = self.graph_s = 0.0
        self.schedule = []
        self.step_times = []

    def close(self) -> None:
        for obj, name in reversed(self._patched):
            try:
                delattr(obj, name)
            except AttributeError:  # pragma: no cover - a class-level attribute was patched
                pass
        self._patched = []


class OrtEngine:
    """The s2s-export runtime (``Translator``) on ONNX Runtime at one precision."""

    def __init__(self, job: dict[str, Any], cfg: WorkerConfig) -> None:
        import onnxruntime

        from ..runtime import Translator

        self.translator = Translator.load(job["bundle"], backend="onnxruntime", precision=cfg.precision,
                                          intra_op_threads=cfg.threads, spinning=cfg.spin)
        self.backend = self.translator.backend
        self.info = {"onnxruntime": onnxruntime.__version__, "intra_op_threads": cfg.threads,
                     "precision": cfg.precision, "spinning": cfg.spin}

    def _pad(self, seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        from ..runtime.translator import pad_sources

        return pad_sources(self.translator._sources(seqs, frame=True), self.translator.src_pad_id)

    def encoder_call(self, seqs: list[list[int]]) -> Call:
        src, lengths = self._pad(seqs)
        return lambda: self.backend.encode(src, lengths)

    def step_call(self, ids: list[int]) -> Call:
        self.backend.encode(*self._pad([ids]))
        tokens = np.array([self.translator.manifest.start_id], dtype=np.int64)
        reorder = np.array([0], dtype=np.int64)
        return lambda: self.backend.step(tokens, reorder)

    def translate(self, sources: list[list[int]], batch: int, beam: int, wl: dict[str, Any]) -> list[list[int]]:
        hyps = self.translator.translate_ids(sources, beam_size=beam, max_batch_size=batch,
                                             max_length=wl["max_length"], max_length_ratio=wl["max_length_ratio"])
        return [h[0].ids if h else [] for h in hyps]


__all__ = ["Call", "OrtEngine", "Probe", "TorchEngine"]
