"""``Translator``: text in, text out, over a bundle (torch-free).

    t = Translator.load("bundle_dir")                      # backend "onnxruntime" | "auto" | "tensorrt"
    hyps = t.translate(["hello", "world"], beam_size=5)    # one list of n_best Hypothesis per input
    hyps = t.translate_ids([[5, 6, 7]])                    # source ids (EOS appended) -> Hypothesis

Sources: tokenized with the bundle's tokenizer, unknown tokens -> ``<unk>``, EOS appended (an
empty input is just EOS). A source longer than the bundle's ``max_src_len`` (EOS included) is
refused with ``BadInputError`` naming the input, its length and the limit (no silent
truncation): split it, or re-export with a larger ``--max-src-len``.

Inputs are sorted by length into batches of ``max_batch_size`` sentences (little padding) and
the results come back in input order. Thread safety: one ``Translator`` may be shared by
threads; a lock serialises the backend (it holds the decoding state of the running batch), so
concurrent calls interleave batch by batch and return the same results as sequential calls.
For parallel throughput, load one Translator per thread.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..bundle import Manifest, load_manifest
from ..errors import BadInputError, ConfigError, UnsupportedError, UsageError
from ..vocab import EOS_ID, PAD_ID, Vocab, detokenize, tokenize, tokenizer_kinds
from .backends.base import DEFAULT_SPINNING, SPINNING, Backend
from .search import Result, SearchOptions, search
from .threads import check_threads

# backend name -> (module in backends/, loader function); a loader takes
# (bundle_dir, manifest, precision, intra_op_threads, spinning) and raises UnsupportedError when
# it cannot run on this machine (thread settings that do not apply to it are ignored). precision None = the backend's own (TensorRT fp16, ONNX Runtime fp32).
LOADERS = {
    "onnxruntime": ("onnxruntime", "load_backend"),
    "onnxruntime-cuda": ("onnxruntime", "load_cuda_backend"),
    "tensorrt": ("tensorrt", "load_backend"),
}
BACKENDS = ("auto", *LOADERS)
# ``auto`` tries these in order and takes the first that runs here (Translator.backend.name).
AUTO_ORDER = ("tensorrt", "onnxruntime-cuda", "onnxruntime")


@dataclass
class Hypothesis:
    """One translation: ``ids`` (EOS included when produced), ``tokens`` (strings, EOS/pad/bos
    stripped), ``text`` (detokenized), ``score`` (cumulative log-prob / length penalty) and
    ``attention`` ([len(ids), src_len] float32, src_len counting the source EOS) when asked."""

    ids: list[int]
    tokens: list[str]
    text: str
    score: float
    attention: np.ndarray | None = None


def pad_sources(seqs: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Source id lists (EOS included) -> src [B,S] int64 padded with PAD, lengths [B] int64."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    src = np.full((len(seqs), int(lengths.max())), PAD_ID, dtype=np.int64)
    for row, s in zip(src, seqs):
        row[: len(s)] = s
    return src, lengths


def load_backend(name: str, bundle_dir: Path, manifest: Manifest, precision: str | None,
                 intra_op_threads: int | None, spinning: str = DEFAULT_SPINNING) -> Backend:
    """The backend ``name`` (see ``BACKENDS`` and ``LOADERS``)."""
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}", f"use one of: {', '.join(BACKENDS)}")
    if name == "auto":
        reasons = []
        for candidate in AUTO_ORDER:
            try:
                return load_backend(candidate, bundle_dir, manifest, precision, intra_op_threads, spinning)
            except UnsupportedError as exc:
                reasons.append(f"{candidate}: {exc}")
        raise UnsupportedError(f"no backend can run here ({'; '.join(reasons)})",
                               "pip install 's2s-export[cpu]' for ONNX Runtime")
    module_name, function = LOADERS.get(name, (name, "load_backend"))
    module = f"{__package__}.backends.{module_name}"
    if importlib.util.find_spec(module) is None:
        raise UnsupportedError(f"the {name} backend is not part of this installation",
                               "use --backend onnxruntime")
    loader: Callable[..., Backend] = getattr(importlib.import_module(module), function)
    return loader(bundle_dir, manifest, precision, intra_op_threads, spinning)


class Translator:
    """Search over a bundle's graphs with one backend (see the module docstring)."""

    def __init__(self, manifest: Manifest, backend: Backend, bundle_dir: str | os.PathLike[str] = "") -> None:
        self.manifest = manifest
        self.backend = backend
        self.bundle_dir = Path(bundle_dir)
        self.src_vocab = Vocab(tuple(manifest.src_vocab))
        self.tgt_vocab = Vocab(tuple(manifest.tgt_vocab))
        self.src_tokenizer, self.tgt_tokenizer = tokenizer_kinds(manifest.tokenizer)
        self._lock = threading.Lock()

    @classmethod
    def load(cls, bundle_dir: str | os.PathLike[str], backend: str = "onnxruntime", precision: str | None = None,
             intra_op_threads: int | None = None, spinning: str = DEFAULT_SPINNING,
             verify_hashes: bool = True) -> "Translator":
        """Read ``manifest.json`` (checking every file's sha256 unless ``verify_hashes`` is off)
        and start the backend (``auto``: the first of ``AUTO_ORDER`` that runs here; its name is
        ``translator.backend.name``). ``precision``: ``fp32``, ``fp16`` or ``int8`` graphs;
        None = the backend's own (TensorRT: fp16 engines, ONNX Runtime: fp32). ONNX Runtime's CPU
        threads: ``intra_op_threads`` (default min(4, cores); more than the cores this process may
        use is capped to them with a ``RuntimeWarning``, see ``threads.check_threads``) and
        ``spinning``: ``step`` (default: the step session's threads busy-wait between steps,
        fastest on a dedicated machine),
        ``off`` (kindest to a machine shared with other busy processes) or ``all``."""
        if backend not in BACKENDS:
            raise UsageError(f"unknown backend {backend!r}", f"use one of: {', '.join(BACKENDS)}")
        intra_op_threads = check_threads(intra_op_threads)  # capped to the cores, before any thread exists
        if spinning not in SPINNING:
            raise UsageError(f"spinning {spinning!r} is unknown", f"use one of: {', '.join(SPINNING)}")
        bundle_dir = Path(bundle_dir)
        manifest = load_manifest(bundle_dir, verify=verify_hashes)
        return cls(manifest, load_backend(backend, bundle_dir, manifest, precision, intra_op_threads, spinning),
                   bundle_dir)

    # ------------------------------------------------------------------ public API
    def translate(self, texts: Sequence[str], beam_size: int = 1, n_best: int = 1, max_batch_size: int = 64,
                  return_attention: bool = False, max_length: int = 200, max_length_ratio: float | None = None,
                  min_length: int = 0, length_penalty: str = "none", alpha: float = 0.0,
                  no_repeat_ngram_size: int = 0, full_distribution: bool = False,
                  progress: Callable[[int], None] | None = None) -> list[list[Hypothesis]]:
        """One list of up to ``n_best`` hypotheses per input text, best first (search options:
        ``s2s_export.runtime.search``). ``progress(n)`` is called after each batch of n inputs."""
        ids = self.encode(texts)
        return self.translate_ids(ids, beam_size=beam_size, n_best=n_best, max_batch_size=max_batch_size,
                                  return_attention=return_attention, max_length=max_length,
                                  max_length_ratio=max_length_ratio, min_length=min_length,
                                  length_penalty=length_penalty, alpha=alpha,
                                  no_repeat_ngram_size=no_repeat_ngram_size,
                                  full_distribution=full_distribution, progress=progress)

    def encode(self, texts: Sequence[str], names: Sequence[str] | None = None) -> list[list[int]]:
        """Source ids of ``texts`` (the bundle's tokenizer, unknown tokens -> ``<unk>``, no EOS),
        every input checked against ``max_src_len`` first (``BadInputError`` naming the input:
        ``input N`` (0-based), or ``names[N]``, e.g. ``"in.txt line 4"``): a caller translating
        a long list in chunks can refuse it before printing anything."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise UsageError("translate takes a list of strings", "pass [text] for one input")
        ids = [self.src_vocab.encode(tokenize(t, self.src_tokenizer)) for t in texts]
        limit = self.manifest.max_src_len
        for n, seq in enumerate(ids):
            if len(seq) + 1 > limit:  # raises with the usual message
                self._sources([seq], add_eos=True, first=n, name=None if names is None else names[n])
        return ids

    def translate_ids(self, ids: Sequence[Sequence[int]], beam_size: int = 1, n_best: int = 1,
                      max_batch_size: int = 64, return_attention: bool = False, max_length: int = 200,
                      max_length_ratio: float | None = None, min_length: int = 0,
                      length_penalty: str = "none", alpha: float = 0.0, no_repeat_ngram_size: int = 0,
                      full_distribution: bool = False, add_eos: bool = True,
                      progress: Callable[[int], None] | None = None) -> list[list[Hypothesis]]:
        """Like ``translate`` with source ids (EOS appended unless ``add_eos=False``)."""
        opts = SearchOptions(beam_size=beam_size, n_best=n_best, max_length=max_length,
                             max_length_ratio=max_length_ratio, min_length=min_length,
                             length_penalty=length_penalty, alpha=alpha,
                             no_repeat_ngram_size=no_repeat_ngram_size, return_attention=return_attention,
                             full_distribution=full_distribution).validate()
        opts.full_path(self.backend.topk)  # beam_size > K: fail before any work
        if int(max_batch_size) < 1:
            raise ConfigError(f"max_batch_size must be >= 1 (got {max_batch_size})", "pass 1 or more")
        sources = self._sources(ids, add_eos)
        batch = int(max_batch_size)
        if self.backend.max_rows:  # engines with a fixed maximum batch (rows = sentences x beam)
            batch = max(1, min(batch, self.backend.max_rows // beam_size))
        order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
        out: list[list[Hypothesis]] = [[] for _ in sources]
        for start in range(0, len(order), batch):
            chunk = order[start:start + batch]
            src, lengths = pad_sources([sources[i] for i in chunk])
            with self._lock:  # the backend holds this batch's state until the search returns
                results = search(self.backend, src, lengths, opts)
            for i, res in zip(chunk, results):
                out[i] = [self._hypothesis(r) for r in res]
            if progress is not None:
                progress(len(chunk))
        return out

    # ------------------------------------------------------------------ helpers
    def _sources(self, ids: Sequence[Sequence[int]], add_eos: bool, first: int = 0,
                 name: str | None = None) -> list[list[int]]:
        """Checked source id lists (EOS appended); errors name input ``first + i`` (or ``name``)."""
        if isinstance(ids, (str, bytes)) or (len(ids) and isinstance(ids[0], (int, np.integer))):
            raise UsageError("translate_ids takes a list of id lists", "pass [[id, ...], ...]")
        limit, vocab = self.manifest.max_src_len, len(self.src_vocab)
        sources = []
        for n, seq in enumerate(ids, start=first):
            seq = [int(i) for i in seq] + ([EOS_ID] if add_eos else [])
            if not seq:
                raise BadInputError(f"input {n} is empty and add_eos is off", "end every source with EOS")
            if min(seq) < 0 or max(seq) >= vocab:
                raise BadInputError(f"input {n} has token ids outside 0..{vocab - 1}",
                                    "encode it with the bundle's source vocabulary")
            if len(seq) > limit:
                raise BadInputError(f"{name or f'input {n}'} has {len(seq)} source tokens (EOS included), more than "
                                    f"the bundle's max_src_len {limit}",
                                    f"split the input, or re-export with --max-src-len {len(seq)} or more")
            sources.append(seq)
        return sources

    def _hypothesis(self, r: Result) -> Hypothesis:
        tokens = self.tgt_vocab.decode(r.ids, strip=True)
        return Hypothesis(list(r.ids), tokens, detokenize(tokens, self.tgt_tokenizer), r.score, r.attention)

    def __repr__(self) -> str:
        return (f"Translator({str(self.bundle_dir)!r}, backend={self.backend.name!r}, "
                f"topk={self.backend.topk})")


__all__ = ["AUTO_ORDER", "BACKENDS", "LOADERS", "Hypothesis", "Translator", "load_backend", "pad_sources"]
