"""``s2s translate BUNDLE [TEXT ...] [-i FILE]``: translate with the torch-free runtime.

Input: the TEXT arguments, else the lines of ``-i FILE`` (``-`` = stdin), else the lines of
stdin. Output (stdout): one line per input; with ``--n-best N`` the N hypotheses of an input
are on its line separated by tabs, best first; with ``--json`` one JSON object per input:
``{"input": ..., "hypotheses": [{"text", "tokens", "score"}, ...]}``. A progress bar goes to
stderr when reading a file. ``--plot-attention FILE.png`` draws the attention of the first
input's best hypothesis (needs matplotlib). ``-o FILE`` writes the output to FILE instead
(atomically: a temporary file beside it, renamed at the end). ``--ray`` (or ``--ray-address
ADDR``) hands ``-i INPUT -o OUTPUT`` to a Ray Data pipeline (``s2s_export.distributed``), which
writes the same file. Exit codes: 1 bad options (e.g. ``--beam 0``),
2 missing dependency/backend, 4 unreadable input (missing file, not UTF-8) or bundle.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any, Optional

import click
import typer

from .common import handle_errors


CHUNK_BATCHES = 16  # inputs translated (then printed) at a time: 16 batches


def read_inputs(texts: Optional[list[str]], input_file: Optional[Path]) -> list[str]:
    """The inputs: TEXT arguments, the lines of a file (``-``: stdin) or the lines of stdin."""
    from ..errors import BadInputError, UsageError

    if texts and input_file is not None:
        raise UsageError("pass TEXT arguments or -i FILE, not both", "choose one input")
    if texts:
        return list(texts)
    if input_file is not None and str(input_file) != "-":
        try:
            data = input_file.read_bytes()
        except OSError as exc:
            raise BadInputError(f"cannot read {input_file} ({exc.strerror})", "pass an existing text file") from None
        name = str(input_file)
    else:
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError("no input", "pass TEXT, -i FILE, or pipe lines on stdin")
        data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
        name = "stdin"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{name} is not UTF-8 text (byte {exc.start})",
                            "convert it to UTF-8 (e.g. iconv -t utf-8)") from None
    # lines end at "\n" only (str.splitlines would also split at \f, \x1c, \u2028, ...:
    # one output line per input line); a trailing "\r" (CRLF files) is dropped
    lines = text.removeprefix("\ufeff").split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


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
        fig.savefig(out)
    except OSError as exc:
        from ..errors import BadInputError

        raise BadInputError(f"cannot write {out} ({exc.strerror})", "choose a writable path") from None
    finally:
        plt.close(fig)


@handle_errors
def translate_command(
    bundle: Path = typer.Argument(..., help="bundle directory written by s2s-export"),
    texts: Optional[list[str]] = typer.Argument(None, help="texts to translate (default: -i FILE or stdin)"),
    input_file: Optional[Path] = typer.Option(None, "-i", "--input", help="read one input per line ('-': stdin)"),
    beam: int = typer.Option(1, "--beam", help="beam size (1: greedy)"),
    n_best: int = typer.Option(1, "--n-best", help="hypotheses per input (<= beam), tab-separated"),
    batch_size: int = typer.Option(64, "--batch-size", help="sentences per batch"),
    max_length: int = typer.Option(200, "--max-length", help="most output tokens (EOS included)"),
    max_length_ratio: Optional[float] = typer.Option(None, "--max-length-ratio",
                                                     help="per input: at most ceil(ratio x source length)"),
    min_length: int = typer.Option(0, "--min-length", help="least tokens before EOS"),
    length_penalty: str = typer.Option("none", "--length-penalty", help="none, gnmt or avg"),
    alpha: float = typer.Option(0.0, "--alpha", help="length penalty exponent"),
    no_repeat_ngram_size: int = typer.Option(0, "--no-repeat-ngram-size", help="block repeated n-grams (0: off)"),
    json_out: bool = typer.Option(False, "--json", help="JSON lines with tokens and scores"),
    backend: str = typer.Option("auto", "--backend",
                                help="auto (tensorrt, then onnxruntime-cuda, then onnxruntime), onnxruntime, "
                                     "onnxruntime-cuda or tensorrt"),
    precision: Optional[str] = typer.Option(None, "--precision",
                                            help="fp32, fp16 or int8 graphs (default: the backend's own)"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="say which backend runs (on stderr)"),
    threads: Optional[int] = typer.Option(None, "--threads", help="intra-op threads (default min(4, cores))"),
    spinning: str = typer.Option("step", "--spinning",
                                 help="ONNX Runtime threads busy-wait between runs: step (default, the decoder "
                                      "step's; fastest on a dedicated machine), off (machine shared with other "
                                      "busy processes) or all"),
    plot: Optional[Path] = typer.Option(None, "--plot-attention", help="PNG heatmap of the first input's attention"),
    output: Optional[Path] = typer.Option(None, "-o", "--output",
                                          help="write the output to this file (atomically) instead of stdout"),
    ray: bool = typer.Option(False, "--ray", help="translate -i INPUT into -o OUTPUT on a Ray cluster (Ray Data)"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address",
                                              help="Ray cluster to use (implies --ray; default: a local one)"),
) -> None:
    """Translate TEXT arguments, a file or stdin with a bundle (one output line per input)."""
    from ..runtime import SearchOptions, Translator
    from ..vocab import tokenize

    options: dict[str, Any] = dict(beam_size=beam, n_best=n_best, max_length=max_length, max_length_ratio=max_length_ratio,
                   min_length=min_length, length_penalty=length_penalty, alpha=alpha,
                   no_repeat_ngram_size=no_repeat_ngram_size)
    SearchOptions(**options).validate()  # bad options fail before the bundle is loaded
    if batch_size < 1:
        from ..errors import ConfigError

        raise ConfigError(f"--batch-size must be >= 1 (got {batch_size})", "pass a positive --batch-size")
    if ray or ray_address is not None:  # the whole job goes to the Ray pipeline
        from ..distributed import translate_file
        from ..errors import UsageError

        if input_file is None or str(input_file) == "-" or texts or output is None or plot is not None:
            raise UsageError("--ray translates a file: it needs -i INPUT and -o OUTPUT (no TEXT, stdin or "
                             "--plot-attention)", "pass -i INPUT -o OUTPUT")
        translate_file(bundle, input_file, output, address=ray_address, batch_size=batch_size, backend=backend,
                       precision=precision, intra_op_threads=threads or 1, spinning=spinning, json_out=json_out,
                       progress=True, **options)
        return
    if plot is not None:  # a missing matplotlib fails before any work, not after the output
        from ..verify.report import require_matplotlib

        require_matplotlib("--plot-attention")
    inputs = read_inputs(texts, input_file)
    translator = Translator.load(bundle, backend=backend, precision=precision, intra_op_threads=threads,
                                 spinning=spinning)
    if verbose:
        typer.echo(f"backend: {translator.backend.name}", err=True)

    ids = translator.encode(inputs)  # an over-long input fails here, before any output

    def emit(start: int, stop: int, progress: Any = None, out: Any = None) -> None:
        results = translator.translate_ids(ids[start:stop], max_batch_size=batch_size, progress=progress,
                                           **options)
        for text, hyps in zip(inputs[start:stop], results):
            if json_out:
                record = {"input": text, "hypotheses": [{"text": h.text, "tokens": h.tokens,
                                                         "score": round(h.score, 6)} for h in hyps]}
                typer.echo(json.dumps(record, ensure_ascii=False), file=out)
            else:
                typer.echo("\t".join(h.text for h in hyps), file=out)
        (out or sys.stdout).flush()

    # streamed: chunks of inputs are translated and printed in turn, so memory stays flat on
    # any number of lines (each chunk is still sorted by length into batches)
    from ..bundle import atomic_file

    chunk = max(1, batch_size) * CHUNK_BATCHES
    with contextlib.ExitStack() as stack:
        out = None if output is None else stack.enter_context(atomic_file(output))
        if input_file is not None and inputs:
            with click.progressbar(length=len(inputs), label="translating", file=sys.stderr) as bar:
                for start in range(0, len(inputs), chunk):
                    emit(start, start + chunk, bar.update, out)
        else:
            for start in range(0, len(inputs), chunk):
                emit(start, start + chunk, out=out)
    if plot is not None and inputs:
        first = translator.translate(inputs[:1], return_attention=True, **options)[0]
        if first:
            best = first[0]
            xs = tokenize(inputs[0], translator.src_tokenizer) + ["</s>"]  # the source ends with EOS
            ys = [translator.tgt_vocab.tokens[i] for i in best.ids]
            plot_attention(best.attention, xs, ys, plot)
            typer.echo(f"wrote {plot}", err=True)


def register(app: typer.Typer) -> None:
    app.command("translate")(translate_command)
