"""Translate a file on a Ray cluster: ``translate_file`` (``s2s translate -i IN -o OUT --ray``).

A Ray Data pipeline: the driver reads INPUT with the rules of ``s2s translate -i`` (UTF-8, lines
end at ``\\n``, a trailing ``\\r`` and a leading BOM dropped) into blocks of lines in the object
store (the driver keeps only references); ``map_batches`` runs them through a fixed pool of
actors, each loading the bundle once into a ``Translator`` (1 CPU and 1 intra-op thread each by
default); the driver iterates the results in input order (``preserve_order``) and writes OUTPUT
atomically (a temporary file beside it, renamed at the end; nothing is left on failure). Each
input's output is what ``s2s translate`` prints for it (``output.Formatter``: ``mode`` text,
scores or json; an empty line gives an empty output without a model run), so with the same
options the file is identical to a single-process run (each sentence's result does not depend
on the batch it is in: FP32, and INT8 since its scales no longer depend on the batch).

The cluster: ``address`` (else ``RAY_ADDRESS``, which ``ray job submit`` sets) connects to an
existing one (``ray://host:10001``, ``host:6379`` or ``auto``; an address where no Ray cluster
answers is refused in seconds, ``raycluster.connect``), else the one this process already runs, else a new local one
is started for the call (``num_cpus``, default all cores) and shut down after. Its workers need ``s2s-export[cpu]`` (or ``[gpu]``) installed. The
bundle is loaded by path on a local cluster; with ``address`` its files travel through the object
store (``ship_bundle``) so that workers on other machines need no copy of it.
"""

from __future__ import annotations

import codecs
import logging
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .bundle import MANIFEST, atomic_file, load_manifest
from .errors import UTF8_FIX, BadInputError, S2SError, UnsupportedError, UsageError, one_line, require
from .raycluster import connect

BLOCK_BATCHES = 16  # lines per object-store block and per actor call = batch_size x this ...
BLOCK_MAX_LINES = 4096  # ... at most (whole batches of a tool's batching: translator.aligned_lines)


def read_blocks(path: Path, lines_per_block: int) -> Iterator[list[str]]:
    """The lines of ``path`` in blocks (``s2s translate -i`` rules; see the module docstring).
    ``BadInputError`` for an unreadable file or bytes that are not UTF-8 (with their offset)."""
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise BadInputError(f"cannot read {path} ({exc.strerror})", "pass an existing text file") from None
    block: list[str] = []
    with f:
        for n, raw in enumerate(f, start=1):
            raw = raw.removesuffix(b"\n").removesuffix(b"\r")
            if n == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:  # worded as s2s translate's reader words it
                raise BadInputError(f"{path} is not UTF-8 text at line {n} (byte {exc.start + 1} of the line)",
                                    UTF8_FIX) from None
            block.append(line)
            if len(block) == lines_per_block:
                yield block
                block = []
    if block:
        yield block


class TranslateBatch:
    """A Ray Data actor: one ``Translator`` loaded once, then batches of ``{"line", "text"}`` ->
    ``{"line", "output", "error"}`` (``output``: the input's output lines, joined; ``error``: the
    first unusable input's message, naming it as ``s2s translate`` does, empty when fine)."""

    def __init__(self, bundle: str, load: dict[str, Any], options: dict[str, Any], mode: str,
                 n_best: int | None, batch_size: int | None, source: str, shipped: dict[str, bytes] | None = None) -> None:
        from .output import Formatter
        from .runtime import Translator

        self._tmp: str | None = None
        if shipped is not None:  # the bundle's files, from the object store
            self._tmp = tempfile.mkdtemp(prefix="s2s-bundle-")
            for name, data in shipped.items():
                (Path(self._tmp) / name).parent.mkdir(parents=True, exist_ok=True)
                (Path(self._tmp) / name).write_bytes(data)
            bundle = self._tmp
        self.translator = Translator.load(bundle, **load)
        self.formatter = Formatter(mode, n_best)
        self.options, self.batch_size, self.source = options, batch_size, source

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        lines = batch["line"]
        errors = np.full(len(texts), "", dtype=object)
        try:  # every line checked first: the message names its line as s2s translate does
            ids = self.translator.encode(texts, names=[f"{self.source} line {int(n) + 1}" for n in lines])
            hyps = self.translator.translate(texts, max_batch_size=self.batch_size, **self.options)
            out = np.array(["\n".join(self.formatter.lines(t, h, self.translator.unknown(i)))
                            for t, h, i in zip(texts, hyps, ids)], dtype=object)
        except S2SError as exc:
            errors[0], out = str(exc.problems[0]), np.full(len(texts), "", dtype=object)
        return {"line": lines, "output": out, "error": errors}

    def __del__(self) -> None:
        if getattr(self, "_tmp", None):
            shutil.rmtree(self._tmp, ignore_errors=True)  # type: ignore[arg-type]


def bundle_files(bundle: Path) -> dict[str, bytes]:
    """The bundle's files (manifest and every file it lists, checked against their sha256)."""
    manifest = load_manifest(bundle)
    return {name: (bundle / name).read_bytes() for name in [MANIFEST, *manifest.files]}


def translate_file(bundle: str | os.PathLike[str], input_path: str | os.PathLike[str],
                   output_path: str | os.PathLike[str], *, address: str | None = None,
                   num_actors: int | None = None, cpus_per_actor: float = 1.0, num_cpus: int | None = None,
                   batch_size: int | None = None, backend: str = "onnxruntime", precision: str | None = None,
                   intra_op_threads: int | None = 1, spinning: str | None = None, mode: str = "text",
                   ship_bundle: bool | None = None,
                   progress: Callable[[int], None] | bool = False, **options: Any) -> int:
    """Translate ``input_path`` line by line on Ray into ``output_path`` (see the module
    docstring); returns the number of lines. ``mode``: the output format
    (``output.Formatter``, given ``options``' ``n_best``); ``options``: search options of ``Translator.translate`` (only those
    given are passed; left out, the bundle's defaults). ``num_actors``: Translators in the
    pool (default: the cluster's CPUs / ``cpus_per_actor``). ``progress``: True for a progress
    bar on stderr, or a callable given the number of lines written after each batch.
    Raises ``UsageError`` (bad options), ``BadInputError`` (unreadable or non-UTF-8 input, an
    over-long line, unwritable output), ``BundleError``, or ``MissingDependencyError`` without Ray."""
    if mode not in ("text", "scores", "json"):
        raise UsageError(f"output mode {mode!r} is unknown", "use text, scores or json")
    if batch_size is not None and batch_size < 1:
        raise UsageError(f"batch_size must be >= 1 (got {batch_size})", "pass a positive --batch-size")
    if num_actors is not None and num_actors < 1:
        raise UsageError(f"num_actors must be >= 1 (got {num_actors})", "pass a positive number of actors")
    bundle, input_path, output_path = Path(bundle), Path(input_path), Path(output_path)
    from .runtime import Translator
    from .runtime.translator import aligned_lines

    # a missing bundle and bad options fail here, before any cluster starts (not in every actor)
    translator = Translator.load(bundle, backend=backend, precision=precision, intra_op_threads=1)
    kind, size = translator.batching(batch_size, translator.options(**options))
    block_lines = aligned_lines(kind, size, min(size * BLOCK_BATCHES, BLOCK_MAX_LINES))
    del translator
    if not input_path.is_file():
        raise BadInputError(f"cannot read {input_path} (no such file)", "pass an existing text file")
    ray: Any = require("ray", "ray")
    require("ray.data", "ray")
    source = "--ray-address"
    if address is None and os.environ.get("RAY_ADDRESS"):  # set by `ray job submit`: the job's cluster
        address, source = os.environ["RAY_ADDRESS"], "RAY_ADDRESS"
    started = connect(ray, address, num_cpus, source)
    try:
        return _run(ray, bundle, input_path, output_path, address, num_actors, cpus_per_actor, (batch_size, block_lines),
                    dict(backend=backend, precision=precision, intra_op_threads=intra_op_threads,
                         **({} if spinning is None else {"spinning": spinning})),
                    options, (mode, options.get("n_best")), address is not None if ship_bundle is None else ship_bundle, progress)
    finally:
        if started:
            ray.shutdown()


def _run(ray: Any, bundle: Path, input_path: Path, output_path: Path, address: str | None,
         num_actors: int | None, cpus_per_actor: float, batching: tuple[int | None, int], load: dict[str, Any],
         options: dict[str, Any], output: tuple[str, int | None], ship: bool,
         progress: Callable[[int], None] | bool) -> int:
    import pyarrow as pa
    from ray.data import ActorPoolStrategy, DataContext

    context = DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)

    (batch_size, block_lines), refs, total = batching, [], 0
    for block in read_blocks(input_path, block_lines):
        refs.append(ray.put(pa.table({"line": np.arange(total, total + len(block), dtype=np.int64),
                                      "text": pa.array(block, type=pa.string())})))
        total += len(block)
    with atomic_file(output_path) as out:
        if total == 0:
            return 0
        actors = num_actors or max(1, int(ray.cluster_resources().get("CPU", 1) // cpus_per_actor))
        constructor = dict(bundle=str(bundle.absolute()), load=load, options=options, mode=output[0],
                           n_best=output[1], batch_size=batch_size, source=str(input_path),
                           shipped=bundle_files(bundle) if ship else None)
        with warnings.catch_warnings():  # max_restarts goes through ray_remote_args (deprecated, no named form yet)
            warnings.simplefilter("ignore", DeprecationWarning)
            dataset = ray.data.from_arrow_refs(refs).map_batches(  # one actor call per block
                TranslateBatch, fn_constructor_kwargs=constructor, batch_size=block_lines, batch_format="numpy",
                compute=ActorPoolStrategy(size=min(actors, len(refs))), num_cpus=cpus_per_actor,
                max_restarts=0)  # a failed actor fails the job (reported), never a silent restart
        with _progress(progress, total) as update:
            _write(dataset, out, update)
    return total


def _write(dataset: Any, out: Any, update: Callable[[int], None]) -> None:
    """Write the results in input order (checked: a gap or a reordering is a bug, raised)."""
    expected = 0
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        failed = [e for e in batch["error"] if e]
        if failed:  # the runtime's own message and fix
            raise BadInputError(str(failed[0]))
        lines = batch["line"]
        if len(lines) and (lines[0] != expected or (np.diff(lines) != 1).any()):
            raise S2SError(f"Ray returned line {int(lines[0])} where line {expected} was due",
                           "this is a bug: report it")
        out.write("".join(f"{line}\n" for line in batch["output"]))
        expected += len(lines)
        update(len(lines))


class _progress:
    """A click progress bar on stderr (``True``), the caller's callable, or nothing."""

    def __init__(self, progress: Callable[[int], None] | bool, total: int) -> None:
        self.progress, self.total = progress, total
        self.bar: Any = None

    def __enter__(self) -> Callable[[int], None]:
        if callable(self.progress):
            return self.progress
        if self.progress:
            import click

            self.bar = click.progressbar(length=self.total, label="translating", file=sys.stderr)
            return self.bar.__enter__().update  # type: ignore[no-any-return]
        return lambda n: None

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


__all__ = ["TranslateBatch", "read_blocks", "translate_file"]
