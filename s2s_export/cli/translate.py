"""``s2s translate BUNDLE [TEXT ...] [-i FILE] [-o FILE]``: translate with the torch-free runtime.

Input: the TEXT arguments, else the lines of ``-i FILE`` (``-`` = stdin), else the lines of
stdin, streamed (``textio.LineReader``): chunks of ``--batch-size`` x ``CHUNK_BATCHES`` lines
(at most ``CHUNK_MAX_LINES``), a chunk ending early when no further line is ready, each chunk's
answers written in input order and flushed as soon as it is done; memory stays flat on any
input. Output (stdout, or ``-o FILE`` written atomically): the formats of ``textio`` (plain
``TEXT``; with ``--n-best`` or ``--scores`` ``TEXT<TAB>SCORE`` per hypothesis; ``--json`` one
object per input). A line that cannot be translated (longer than the bundle's max_src_len, not
UTF-8) stops the command with exit 4 naming its 1-based line number, after the lines before it
were written (to stdout; ``-o FILE`` is left unchanged); ``--on-error skip`` writes an empty
result for it and a warning on stderr instead. Search options left out take the bundle's
defaults: only the ones given are passed to ``Translator.translate_ids``. A progress bar goes to
stderr when reading a file and stderr is a terminal. ``--plot-attention FILE`` draws the attention of the first
input's best hypothesis into FILE, a PNG whatever its extension (needs matplotlib: the ``plot`` extra). ``--ray`` (or ``--ray-address
ADDR``) hands ``-i INPUT -o OUTPUT`` to a Ray Data pipeline (``s2s_export.distributed``), which
writes the same file. Exit codes: 1 bad options (e.g.
``--beam 0``), 2 missing dependency/backend or out of threads/memory, 4 unreadable input or
bundle, 130/143 interrupted.
"""

from __future__ import annotations


import sys
from pathlib import Path
from typing import Any, Optional

import typer

from .common import cli_threads, handle_errors

CHUNK_BATCHES = 16  # lines translated (then written) at a time: 16 batches ...
CHUNK_MAX_LINES = 4096  # ... but never more lines than this (a huge --batch-size keeps memory flat)
ON_ERROR = ("stop", "skip")

# the library's parameter names -> this command's flags (search options: passed only when given)
SEARCH_FLAGS = {"beam_size": "--beam", "n_best": "--n-best", "max_length": "--max-length",
                "max_length_ratio": "--max-length-ratio", "min_length": "--min-length",
                "length_penalty": "--length-penalty", "alpha": "--alpha",
                "no_repeat_ngram_size": "--no-repeat-ngram-size", "full_distribution": "--full-distribution",
                "search_style": "--search-style"}
FLAGS = {**SEARCH_FLAGS, "max_batch_size": "--batch-size", "intra_op_threads": "--threads",
         "spinning": "--spinning", "precision": "--precision"}


def search_options(**given: Any) -> dict[str, Any]:
    """The search options the user gave (None, and a False flag, = not given: the bundle's
    default applies), as ``Translator.translate_ids`` keyword arguments."""
    return {k: v for k, v in given.items() if v is not None and v is not False}


def read_inputs(texts: Optional[list[str]], input_file: Optional[Path]) -> list[str]:
    """All inputs at once (for commands that need a list, e.g. ``s2s bench --inputs``): TEXT
    arguments, or the lines of a file (``-``: stdin) or of stdin; the first unusable line raises
    ``BadInputError`` naming it."""
    import contextlib

    from ..errors import BadInputError, UsageError
    from .textio import LineReader, argument_lines, open_input

    if texts and input_file is not None:
        raise UsageError("pass TEXT arguments or -i FILE, not both", "choose one input")
    if texts:
        lines = argument_lines(texts)
    else:
        stream, name, _ = open_input(input_file)
        with stream if input_file is not None and str(input_file) != "-" else contextlib.nullcontext():
            lines = [line for chunk in LineReader(stream, name).chunks(1 << 12) for line in chunk]
    for line in lines:
        if line.problem is not None:
            raise BadInputError([line.problem])
    return [line.text for line in lines]


def plot_attention(attn: Any, xs: list[str], ys: list[str], out: Path) -> None:
    """Heatmap of ``attn`` [T,S]: source tokens ``xs`` (S) across, output tokens ``ys`` (T) down."""
    from ..verify.report import require_matplotlib

    plt = require_matplotlib("--plot-attention")
    fig, ax = plt.subplots(figsize=(max(3.0, 0.4 * len(xs) + 1.5), max(3.0, 0.4 * len(ys) + 1.0)))
    im = ax.imshow(attn, cmap="viridis", aspect="auto", vmin=0.0)
    ax.set_xticks(range(len(xs)), labels=xs, rotation=90)
    ax.set_yticks(range(len(ys)), labels=ys)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    try:
        fig.savefig(out, format="png")  # exactly the path given (savefig would add .png to a bare name)
    except OSError as exc:
        from ..errors import BadInputError

        raise BadInputError(f"cannot write {out} ({exc.strerror})", "choose a writable path") from None
    finally:
        plt.close(fig)


@handle_errors(flags=FLAGS)
def translate_command(
    bundle: Path = typer.Argument(..., help="bundle directory written by s2s-export"),
    texts: Optional[list[str]] = typer.Argument(None, help="texts to translate (default: -i FILE or stdin)"),
    input_file: Optional[Path] = typer.Option(None, "-i", "--input", help="read one input per line ('-': stdin)"),
    output: Optional[Path] = typer.Option(None, "-o", "--output",
                                          help="write here (atomically: replaced at the end) instead of stdout"),
    beam: Optional[int] = typer.Option(None, "--beam", help="beam size (1: greedy) [default: the bundle's]"),
    n_best: Optional[int] = typer.Option(None, "--n-best",
                                         help="hypotheses per input (<= beam): N lines TEXT<TAB>SCORE each"),
    scores: bool = typer.Option(False, "--scores", help="TEXT<TAB>SCORE lines (the score of each hypothesis)"),
    json_out: bool = typer.Option(False, "--json", help="one JSON object per input: input, hypotheses "
                                                        "(text, tokens, ids, score)"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size",
                                             help="sentences per batch [default: the tool's batching the bundle "
                                                  "records, else 64]"),
    max_length: Optional[int] = typer.Option(None, "--max-length",
                                             help="most output tokens (EOS included) [default: the bundle's]"),
    max_length_ratio: Optional[float] = typer.Option(None, "--max-length-ratio",
                                                     help="per input: at most ceil(ratio x source length)"),
    min_length: Optional[int] = typer.Option(None, "--min-length", help="least tokens before EOS"),
    length_penalty: Optional[str] = typer.Option(None, "--length-penalty", help="none, gnmt or avg"),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="length penalty exponent"),
    no_repeat_ngram_size: Optional[int] = typer.Option(None, "--no-repeat-ngram-size",
                                                       help="block repeated n-grams (0: off)"),
    full_distribution: bool = typer.Option(False, "--full-distribution",
                                           help="search over the full log_probs (a beam larger than the "
                                                "bundle's top-K)"),
    search_style: Optional[str] = typer.Option(None, "--search-style",
                                               help="whose search to reproduce: s2s, joeynmt or opennmt "
                                                    "[default: the bundle's]"),
    on_error: str = typer.Option("stop", "--on-error",
                                 help="a line that cannot be translated: stop (exit 4, naming it) or skip "
                                      "(empty result and a warning)"),
    backend: str = typer.Option("auto", "--backend",
                                help="auto (tensorrt, then onnxruntime-cuda, then onnxruntime), onnxruntime, "
                                     "onnxruntime-cuda or tensorrt"),
    precision: Optional[str] = typer.Option(None, "--precision",
                                            help="fp32, fp16 or int8 graphs (default: the backend's own)"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="say which backend runs (on stderr)"),
    threads: Optional[int] = typer.Option(None, "--threads",
                                          help="intra-op threads (default min(4, cores); more than the cores: "
                                               "capped)"),
    spinning: str = typer.Option("step", "--spinning",
                                 help="ONNX Runtime threads busy-wait between runs: step (default, the decoder "
                                      "step's; fastest on a dedicated machine), off (machine shared with other "
                                      "busy processes) or all"),
    plot: Optional[Path] = typer.Option(None, "--plot-attention",
                                        help="PNG heatmap of the first input's attention (needs matplotlib: "
                                             "pip install 's2s-export[plot]')"),
    ray: bool = typer.Option(False, "--ray", help="translate -i INPUT into -o OUTPUT on a Ray cluster (Ray Data)"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address",
                                              help="Ray cluster to use (implies --ray; default: a local one)"),
) -> None:
    """Translate TEXT arguments, a file or stdin with a bundle (streamed; outputs in input order)."""
    from ..errors import ConfigError, UsageError
    from ..runtime import Translator
    from ..output import Formatter, mode_of
    from .textio import AtomicFile, LineReader, argument_lines, open_input

    search = search_options(beam_size=beam, n_best=n_best, max_length=max_length,
                            max_length_ratio=max_length_ratio, min_length=min_length,
                            length_penalty=length_penalty, alpha=alpha, no_repeat_ngram_size=no_repeat_ngram_size,
                            full_distribution=full_distribution, search_style=search_style)
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1 (got {batch_size})", "pass a positive --batch-size")
    if on_error not in ON_ERROR:
        raise UsageError(f"--on-error {on_error!r} is unknown", f"use one of: {', '.join(ON_ERROR)}")
    if texts and input_file is not None:
        raise UsageError("pass TEXT arguments or -i FILE, not both", "choose one input")
    threads = cli_threads(threads, "--threads")
    if ray or ray_address is not None:  # the whole job goes to the Ray pipeline
        from ..distributed import translate_file
        from ..output import mode_of

        if input_file is None or str(input_file) == "-" or texts or output is None or plot is not None:
            raise UsageError("--ray translates a file: it needs -i INPUT and -o OUTPUT (no TEXT, stdin or "
                             "--plot-attention)", "pass -i INPUT -o OUTPUT")
        translate_file(bundle, input_file, output, address=ray_address, batch_size=batch_size, backend=backend,
                       precision=precision, intra_op_threads=threads or 1, spinning=spinning,
                       mode=mode_of(json_out, scores, n_best), progress=True, **search)
        return
    if plot is not None:  # a missing matplotlib or a directory fails before any work, not after the output
        from ..verify.report import require_matplotlib

        if plot.is_dir():
            raise UsageError(f"--plot-attention {plot} is a directory",
                             "pass the PNG file to write, e.g. --plot-attention attention.png")
        require_matplotlib("--plot-attention")
    stream: Any = None
    name, size = "", None
    if not texts:
        stream, name, size = open_input(input_file)  # a terminal stdin: refused before loading anything
    translator = Translator.load(bundle, backend=backend, precision=precision, intra_op_threads=threads,
                                 spinning=spinning)
    if verbose:
        typer.echo(f"backend: {translator.backend.name}", err=True)
    # bad or conflicting options fail here, before any input is read
    lines = chunk_lines(*translator.batching(batch_size, translator.options(**search)))
    formatter = Formatter(mode_of(json_out, scores, n_best), n_best)
    sink: Any = AtomicFile(output) if output is not None else None
    try:
        reader = None if texts else LineReader(stream, name)
        chunks = [argument_lines(texts or [])] if reader is None else reader.chunks(lines)
        first = _translate_stream(translator, chunks, reader, formatter, sink, on_error, batch_size, search,
                                  size if reader is not None else None)
        if sink is not None:
            sink.commit()
    except BaseException:
        if sink is not None:
            sink.discard()
        raise
    finally:
        if stream is not None and input_file is not None and str(input_file) != "-":
            stream.close()
    if plot is not None and first is not None:
        _plot_first(translator, first, search, plot)


def chunk_lines(kind: str, size: int) -> int:
    """Lines per chunk: ``CHUNK_BATCHES`` batches, at most ``CHUNK_MAX_LINES``, aligned to the
    batching (``translator.aligned_lines``)."""
    from ..runtime.translator import aligned_lines

    return aligned_lines(kind, size, min(size * CHUNK_BATCHES, CHUNK_MAX_LINES))


def _translate_stream(translator: Any, chunks: Any, reader: Any, formatter: Any, sink: Any, on_error: str,
                      batch_size: Optional[int], search: dict[str, Any], size: Optional[int]) -> Optional[str]:
    """Translate and write chunk by chunk (a progress bar over the file's ``size`` bytes when
    stderr is a terminal); returns the first translated input (for the plot)."""
    import contextlib

    import click

    from ..errors import BadInputError

    first: Optional[str] = None
    seen = 0
    show = bool(size) and sys.stderr is not None and sys.stderr.isatty()  # elsewhere it is only noise
    progress: Any = (click.progressbar(length=size, label="translating", file=sys.stderr) if show
                     else contextlib.nullcontext())
    unknown = Unknown(translator)
    with progress as bar:
        for chunk in chunks:
            items, stop = _checked(translator, chunk, on_error)
            run = [i for line, i in items if i is not None and line.text.strip()]  # empty lines: empty output
            results = iter(translator.translate_ids(run, max_batch_size=batch_size, **search) if run else [])
            out: list[str] = []
            for line, i in items:
                hyps = None if i is None else (next(results) if line.text.strip() else [_empty_hypothesis()])
                out += formatter.lines(line.text, hyps, unknown.count(i), line.problem)
                if first is None and i is not None:
                    first = line.text
            _write(sink, out)
            unknown.warn_once()
            if stop is not None:
                raise BadInputError([stop.problem])
            if bar is not None:
                bar.update(reader.consumed - seen)
                seen = reader.consumed
    return first


class Unknown:
    """Counts the unknown source tokens (``--json`` carries each line's count) and warns once on
    stderr, after the first chunk that has any, with their share so far (a user feeding text
    the model never saw, e.g. capitals to a lowercase model, sees why the output is poor)."""

    def __init__(self, translator: Any) -> None:
        self.translator, self.unknown, self.tokens, self.warned = translator, 0, 0, False

    def count(self, ids: Any) -> int:
        if ids is None:
            return 0
        n = int(self.translator.unknown(ids))
        self.unknown, self.tokens = self.unknown + n, self.tokens + len(ids)
        return n

    def warn_once(self) -> None:
        if self.unknown and not self.warned:
            self.warned = True
            typer.echo(f"warning: {self.unknown} of {self.tokens} source tokens so far ({self.unknown / self.tokens:.1%}) "
                       "are not in the model's vocabulary (check the input's case, script and tokenization)",
                       err=True)


def _empty_hypothesis() -> Any:
    """An empty line's one hypothesis: not run through the model, empty text (as ``Translator.translate``)."""
    from ..runtime import Hypothesis

    return Hypothesis([], [], "", 0.0)


def _checked(translator: Any, chunk: list[Any], on_error: str) -> tuple[list[tuple[Any, Any]], Any]:
    """``([(line, source ids or None), ...], stop)``: the chunk's lines, each with its ids (None:
    unusable, skipped with a warning on stderr), up to the first unusable line when
    ``on_error`` is ``stop`` (that line is ``stop``; else None)."""
    from ..errors import BadInputError

    items: list[tuple[Any, Any]] = []
    for line in chunk:
        ids = None
        if line.problem is None:
            try:  # the bundle's max_src_len, per line (the message names the line)
                ids = translator.encode([line.text], names=[line.label])[0]
            except BadInputError as exc:
                line.problem = exc.problems[0]
        if line.problem is not None:
            if on_error == "stop":
                return items, line
            typer.echo(f"warning: {line.problem}; skipped (empty result)", err=True)
        items.append((line, ids))
    return items, None


def _write(sink: Any, lines: list[str]) -> None:
    """Write a chunk's lines and flush them (stdout, or the ``-o`` file's temporary file)."""
    if not lines:
        return
    text = "".join(line + "\n" for line in lines)
    if sink is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        sink.write(text)
        sink.flush()


def _plot_first(translator: Any, text: str, search: dict[str, Any], plot: Path) -> None:
    from ..vocab import tokenize

    first = translator.translate([text], return_attention=True, **search)[0]
    if first:
        best = first[0]
        xs = tokenize(text, translator.src_tokenizer) + ["</s>"]  # the source ends with EOS
        ys = [translator.tgt_vocab.tokens[i] for i in best.ids]
        plot_attention(best.attention, xs, ys, plot)
        typer.echo(f"wrote {plot}", err=True)


def register(app: typer.Typer) -> None:
    app.command("translate")(translate_command)
