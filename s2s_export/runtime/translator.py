"""``Translator``: text in, text out, over a bundle (torch-free).

    t = Translator.load("bundle_dir")                      # backend "onnxruntime" | "auto" | "tensorrt"
    hyps = t.translate(["hello", "world"], beam_size=5)    # one list of n_best Hypothesis per input
    hyps = t.translate_ids([[5, 6, 7]])                    # source ids (framing applied) -> Hypothesis

Sources: tokenized with the bundle's tokenizer; unknown tokens, and text that spells a control
token (``</s>``...), -> unk; then the bundle's framing (``manifest.framing``: EOS appended for zoo
models and Joey NMT, nothing for OpenNMT-py). A source longer than the bundle's ``max_src_len``
(framing included) is refused with ``BadInputError`` naming the input, its length and the limit
(no silent truncation): split it, or re-export with a larger ``--max-src-len``.

Search options left out mean the bundle's defaults (``manifest.search``: beam, n-best, length
penalty, lengths, style), so an imported model decodes as its tool does with no option given.
The validated options of a request are kept (``OPTIONS_CACHE`` requests) and reused when the
same options come again: a word-at-a-time caller validates once (the manifest's defaults are
read at the first request of each kind; they are not expected to change after load).

Inputs are sorted by length into batches of ``max_batch_size`` sentences (little padding) and
the results come back in input order; a single input goes to the search as it is (no sorting,
grouping or padding: the batch-1 latency path, ``benchmarks/README.md`` "Batch-1 latency"), and
texts from ``translate`` are not checked again after ``encode`` (their ids come from the
bundle's vocabulary). Thread safety: one ``Translator`` may be shared by
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
from typing import Any, Callable, Sequence

import numpy as np

from ..bundle import Manifest, load_manifest
from ..errors import BadInputError, ConfigError, UnsupportedError, UsageError
from ..text import TextProcessor
from ..vocab import PAD_ID, Vocab
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


# the search options a request may give (Translator.options); None = the bundle's default
SEARCH_OPTIONS = ("beam_size", "n_best", "max_length", "max_length_ratio", "min_length", "length_penalty",
                  "alpha", "no_repeat_ngram_size", "return_attention", "full_distribution", "search_style")


OPTIONS_CACHE = 64  # distinct requests whose validated options a Translator keeps
DEFAULT_BATCH = 64  # sentences per batch when neither the caller nor the bundle says
# inputs are sorted by length within windows of this many (onmt_translate 3.x sorts its input in
# buckets of 16384 examples: onmt/inputters/dynamic_iterator.py, CorpusTask.INFER)
SORT_WINDOW = 16384


def aligned_lines(kind: str, size: int, lines: int) -> int:
    """Lines per chunk of a stream (CLI, Ray) translated chunk by chunk, for ``Translator.batching``'s
    ``(kind, size)``: about ``lines``, but whole batches of consecutive sentences (``sentence``)
    and a whole sorting window (``sorted``, a tool's), so that a long file gets the batches the
    tool would make. Token batches (Joey NMT ``batch_type: token``) cannot be aligned by a line
    count: on inputs longer than a chunk, a sentence at a chunk boundary whose length limit is
    its batch's may end differently from the tool's."""
    if kind == "sorted":
        return SORT_WINDOW
    lines = max(1, lines)
    return max(size, lines - lines % size) if kind == "sentence" else lines


def _check_batch_size(value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 1:
        raise ConfigError(f"max_batch_size must be an integer >= 1 (got {value!r})", "pass 1 or more")


def pad_sources(seqs: Sequence[Sequence[int]], pad_id: int = PAD_ID) -> tuple[np.ndarray, np.ndarray]:
    """Source id lists (framed) -> src [B,S] int64 padded with ``pad_id``, lengths [B] int64."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    src = np.full((len(seqs), int(lengths.max())), pad_id, dtype=np.int64)
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
        self.src_vocab = Vocab(tuple(manifest.src_vocab), manifest.src_specials)
        self.tgt_vocab = Vocab(tuple(manifest.tgt_vocab), manifest.tgt_specials)
        self.src_text = TextProcessor(manifest.text.src, bundle_dir)  # normalise, tokenize
        self.tgt_text = TextProcessor(manifest.text.tgt, bundle_dir)  # detokenize
        self.src_tokenizer, self.tgt_tokenizer = manifest.text.src.kind, manifest.text.tgt.kind
        self.framing = manifest.framing
        src_pad = manifest.src_specials.pad
        self.src_pad_id = 0 if src_pad is None else src_pad  # padding is masked: any id serves
        self._lock = threading.Lock()
        # validated SearchOptions by request (the manifest's defaults do not change after load)
        self._options: dict[tuple[Any, ...], SearchOptions] = {}

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
    def translate(self, texts: Sequence[str], *, max_batch_size: int | None = None,
                  progress: Callable[[int], None] | None = None, **options: Any) -> list[list[Hypothesis]]:
        """One list of up to ``n_best`` hypotheses per input text, best first. ``options``: the
        search options (``SEARCH_OPTIONS``: ``beam_size``, ``n_best``, ``max_length``,
        ``max_length_ratio``, ``min_length``, ``length_penalty``, ``alpha``,
        ``no_repeat_ngram_size``, ``return_attention``, ``full_distribution``, ``search_style``);
        one left out (or None) means the bundle's default (``manifest.search``). Inputs are
        grouped into batches of ``max_batch_size`` sentences as ``batching`` says (None: the
        bundle's tool batching, else 64); ``progress(n)`` is called after each
        batch of n inputs. An empty or whitespace-only text is not run through the model: its
        one hypothesis is empty (no ids, text ``""``, score 0). ``ConfigError`` for an option of a
        wrong type or range, ``BadInputError`` for an input longer than the bundle's ``max_src_len``."""
        ids = self.encode(texts)
        opts = self.options(**options)  # ConfigError before any work, empty inputs or not
        full = [i for i, t in enumerate(texts) if t.strip()]  # an empty line is not run: empty output
        empty = np.zeros((0, 0), dtype=np.float32) if opts.return_attention else None
        out: list[list[Hypothesis]] = [[Hypothesis([], [], "", 0.0, empty)] for _ in texts]
        if full:
            _check_batch_size(max_batch_size)
            # ids of the bundle's own vocabulary, lengths checked by encode: framed, not re-checked
            sources = self._sources([ids[i] for i in full], frame=True, trusted=True)
            done = self._translate(sources, opts, max_batch_size, progress)
            for i, hyps in zip(full, done):
                out[i] = hyps
        if progress is not None and len(full) < len(texts):
            progress(len(texts) - len(full))
        return out

    def unknown(self, ids: Sequence[int]) -> int:
        """How many of a source's ids (``encode``'s) are the unknown token."""
        unk = self.src_vocab.specials.unk
        return 0 if unk is None else sum(1 for i in ids if i == unk)

    def encode(self, texts: Sequence[str], names: Sequence[str] | None = None) -> list[list[int]]:
        """Source ids of ``texts`` (the bundle's tokenizer; unknown tokens, and the strings of the
        control tokens, -> unk; no framing), every input checked against ``max_src_len`` (framing
        included) first (``BadInputError`` naming the input: ``input N`` (0-based), or
        ``names[N]``, e.g. ``"in.txt line 4"``): a caller translating a long list in chunks can
        refuse it before printing anything."""
        if isinstance(texts, str) or not isinstance(texts, Sequence) or not all(isinstance(t, str) for t in texts):
            raise UsageError("translate takes a list of strings", "pass [text] for one input")
        ids = [self.src_vocab.encode(self.src_text.tokenize(t)) for t in texts]
        limit, extra = self.manifest.max_src_len, self.framing.extra_tokens()
        for n, seq in enumerate(ids):
            if len(seq) + extra > limit:  # raises with the usual message
                self._sources([seq], frame=True, first=n, name=None if names is None else names[n])
        return ids

    def options(self, **given: Any) -> SearchOptions:
        """The search options of a request: the bundle's defaults (``manifest.search``) with the
        ``given`` ones (None = not given) over them, and the bundle's target conventions.
        ``ConfigError`` for an unknown option or a value of a wrong type or range."""
        try:  # the same request again: the same (immutable, validated) options
            key = tuple(sorted((k, type(v), v) for k, v in given.items() if v is not None))
            cached = self._options.get(key)
        except TypeError:  # an unhashable value: validated (and refused) below
            key, cached = None, None
        if cached is not None:
            return cached
        unknown = sorted(set(given) - set(SEARCH_OPTIONS))
        if unknown:
            raise ConfigError(f"unknown search option {', '.join(unknown)}",
                              f"use: {', '.join(SEARCH_OPTIONS)}")
        given = {k: v for k, v in given.items() if v is not None}
        d = self.manifest.search
        fields: dict[str, Any] = {
            "beam_size": d.beam_size, "n_best": d.n_best, "max_length": d.max_length,
            "max_length_ratio": d.max_length_ratio, "min_length": d.min_length,
            "length_penalty": d.length_penalty, "alpha": d.alpha, "no_repeat_ngram_size": d.no_repeat_ngram_size,
            "style": d.style, "max_length_batch_factor": d.max_length_batch_factor}
        if "max_length" in given:  # the user's own limit replaces the bundle's length rule
            fields["max_length_batch_factor"] = None
        if "beam_size" in given and "n_best" not in given:
            fields["n_best"] = min(d.n_best, given["beam_size"]) if isinstance(given["beam_size"], int) else 1
        if "search_style" in given:
            given["style"] = given.pop("search_style")
        fields.update(given)
        tgt = self.manifest.tgt_specials
        assert tgt.eos is not None  # the manifest schema requires a target eos
        opts = SearchOptions(**fields, start_id=self.manifest.start_id, eos_id=tgt.eos,
                             pad_id=tgt.pad if tgt.pad is not None else tgt.eos, unk_id=tgt.unk,
                             blocked=tuple(self.manifest.io.blocked)).validate()
        opts.full_path(self.backend.topk)  # beam_size > K: fail before any work
        if key is not None:
            if len(self._options) >= OPTIONS_CACHE:
                self._options.clear()
            self._options[key] = opts
        return opts

    def translate_ids(self, ids: Sequence[Sequence[int]], *, max_batch_size: int | None = None, frame: bool = True,
                      progress: Callable[[int], None] | None = None, add_eos: bool | None = None,
                      **options: Any) -> list[list[Hypothesis]]:
        """Like ``translate`` with source ids: ``frame`` applies the bundle's source framing
        (EOS appended for zoo bundles; ``add_eos`` is its old name); without it the ids are the
        sources exactly as the model sees them."""
        opts = self.options(**options)
        _check_batch_size(max_batch_size)
        sources = self._sources(ids, frame if add_eos is None else bool(add_eos))
        return self._translate(sources, opts, max_batch_size, progress)

    def batching(self, max_batch_size: int | None, opts: SearchOptions) -> tuple[str, int]:
        """How inputs are grouped into batches: ``(kind, size)``. ``length`` (ours, little
        padding) and ``sorted`` (a tool's): sorted by length (stable, within windows of
        ``SORT_WINDOW`` inputs), ``size`` sentences at a time; ``sentence``: ``size``
        consecutive inputs; ``token``: consecutive inputs until the longest source times their
        number reaches ``size`` tokens. Where the length limit does not depend on the batch,
        ``length`` by ``max_batch_size`` (default 64). Where it does (``max_length_batch_factor``,
        a tool's rule) and the bundle records the tool's batching (``search.batch_size`` and
        ``batch_type``), that batching, so that every sentence gets the limit the tool gives it;
        an explicit ``max_batch_size`` then means what the tool's own batch-size option means:
        ``size`` sentences, sorted (OpenNMT-py) or consecutive (Joey NMT)."""
        d = self.manifest.search
        if opts.max_length_batch_factor is None or d.batch_size is None:
            return "length", int(max_batch_size or DEFAULT_BATCH)
        if max_batch_size is None:
            return d.batch_type, d.batch_size
        return ("sorted" if d.batch_type == "sorted" else "sentence"), int(max_batch_size)

    def _translate(self, sources: list[list[int]], opts: SearchOptions, batch: int | None,
                   progress: Callable[[int], None] | None) -> list[list[Hypothesis]]:
        """Search over checked, framed sources in batches (``_batches``); one input goes straight
        to the search (no sorting, grouping or padding: the batch-1 latency path)."""
        if len(sources) == 1:
            src = np.array(sources, dtype=np.int64)  # [1,S]
            with self._lock:
                results = search(self.backend, src, np.array([src.shape[1]], dtype=np.int64), opts)
            if progress is not None:
                progress(1)
            return [[self._hypothesis(r) for r in results[0]]]
        out: list[list[Hypothesis]] = [[] for _ in sources]
        for chunk in self._batches(sources, *self.batching(batch, opts), opts.beam_size):
            src, lengths = pad_sources([sources[i] for i in chunk], self.src_pad_id)
            with self._lock:  # the backend holds this batch's state until the search returns
                results = search(self.backend, src, lengths, opts)
            for i, res in zip(chunk, results):
                out[i] = [self._hypothesis(r) for r in res]
            if progress is not None:
                progress(len(chunk))
        return out

    # ------------------------------------------------------------------ helpers
    def _batches(self, sources: list[list[int]], kind: str, size: int, beam: int) -> list[list[int]]:
        """Input indices per batch, grouped as ``batching`` says; no batch holds more rows
        (sentences x beam) than an engine with a fixed maximum batch accepts."""
        if kind in ("length", "sorted"):
            groups = []
            for w in range(0, len(sources), SORT_WINDOW):
                window = range(w, min(w + SORT_WINDOW, len(sources)))
                order = sorted(window, key=lambda i: len(sources[i]))  # stable
                groups += [order[k:k + size] for k in range(0, len(order), size)]
        elif kind == "sentence":
            groups = [list(range(k, min(k + size, len(sources)))) for k in range(0, len(sources), size)]
        else:
            groups, group, longest = [], [], 0  # Joey NMT's TokenBatchSampler (joeynmt/datasets.py)
            for i, s in enumerate(sources):
                group.append(i)
                longest = max(longest, len(s))  # Joey: source tokens + 1 = the EOS-framed length
                if longest * len(group) >= size:
                    groups.append(group)
                    group, longest = [], 0
            groups += [group] if group else []
        rows = self.backend.max_rows // beam if self.backend.max_rows else 0
        if rows:  # engines with a fixed maximum batch (rows = sentences x beam)
            groups = [g[k:k + max(1, rows)] for g in groups for k in range(0, len(g), max(1, rows))]
        return groups

    def _sources(self, ids: Sequence[Sequence[int]], frame: bool, first: int = 0,
                 name: str | None = None, trusted: bool = False) -> list[list[int]]:
        """Checked source id lists (framed when ``frame``); errors name input ``first + i`` (or
        ``name``). ``trusted``: lists of int ids from ``encode`` (the bundle's own vocabulary):
        their types and range are not checked again."""
        if not trusted and (isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence)
                            or (len(ids) and isinstance(ids[0], (int, np.integer)))):
            raise UsageError("translate_ids takes a list of id lists", "pass [[id, ...], ...]")
        limit, vocab = self.manifest.max_src_len, len(self.src_vocab)
        sources = []
        for n, seq in enumerate(ids, start=first):
            if not trusted and (isinstance(seq, (str, bytes)) or not isinstance(seq, Sequence) or not all(
                    isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in seq)):
                raise UsageError(f"input {n} is not a list of integer ids", "pass [[id, ...], ...]")
            seq = list(seq) if trusted else [int(i) for i in seq]
            if frame:
                seq = self.framing.frame(seq, self.manifest.src_specials)
            if not seq:
                raise BadInputError(f"input {n} is empty and framing is off", "pass at least one source id")
            if not trusted and (min(seq) < 0 or max(seq) >= vocab):
                raise BadInputError(f"input {n} has token ids outside 0..{vocab - 1}",
                                    "encode it with the bundle's source vocabulary")
            if len(seq) > limit:
                raise BadInputError(f"{name or f'input {n}'} has {len(seq)} source tokens (framing included), "
                                    f"more than "
                                    f"the bundle's max_src_len {limit}",
                                    f"split the input, or re-export with --max-src-len {len(seq)} or more")
            sources.append(seq)
        return sources

    def _hypothesis(self, r: Result) -> Hypothesis:
        tokens = self.tgt_vocab.decode(r.ids, strip=True)
        return Hypothesis(list(r.ids), tokens, self.tgt_text.detokenize(tokens), float(r.score), r.attention)

    def __repr__(self) -> str:
        return (f"Translator({str(self.bundle_dir)!r}, backend={self.backend.name!r}, "
                f"topk={self.backend.topk})")


__all__ = ["AUTO_ORDER", "BACKENDS", "LOADERS", "SEARCH_OPTIONS", "Hypothesis", "Translator", "load_backend", "pad_sources"]
