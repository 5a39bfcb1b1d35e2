"""``s2s bench BUNDLE --model MODEL.pt``: PyTorch eager vs the runtime (ONNX Runtime FP32 and
INT8 when the bundle has it) vs the numpy BLAS floor, each configuration in a fresh process.

Inputs: the lines of ``--inputs FILE`` (tokenized with the bundle's source tokenizer), else
``--sentences``-many random id sequences of ``--src-len MIN,MAX`` tokens (seeded). Prints the
table (medians [p10-p90]), the search loop's overhead and the targets; ``--json FILE`` writes
the full result (every worker's timings, machine, versions, date). Timings on a busy machine are
noisy: keep it quiet, and compare ratios measured in one run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import cli_threads, handle_errors


@handle_errors
def bench(
    bundle: Path = typer.Argument(..., help="bundle directory written by s2s-export"),
    model: Path = typer.Option(..., "--model", help="the checkpoint the bundle was exported from (PyTorch baseline)"),
    batch: str = typer.Option("1,32", "--batch", help="batch sizes (comma-separated)"),
    beam: str = typer.Option("1,5", "--beam", help="beam sizes (comma-separated; 1 = greedy)"),
    threads: str = typer.Option("1,2", "--threads", help="thread counts to measure (comma-separated)"),
    iters: int = typer.Option(5, "--iters", help="timed decode passes per configuration"),
    warmup: int = typer.Option(1, "--warmup", help="untimed passes first"),
    rounds: int = typer.Option(1, "--rounds", help="runs of every configuration (alternating order; best round kept)"),
    step_iters: int = typer.Option(200, "--step-iters", help="timed decoder steps (per-step latency)"),
    encoder_iters: int = typer.Option(50, "--encoder-iters", help="timed encoder runs"),
    inputs: Optional[Path] = typer.Option(None, "--inputs", "-i", help="source sentences, one per line"),
    sentences: int = typer.Option(16, "--sentences", help="sentences per pass at batch 1 (and random inputs)"),
    src_len: str = typer.Option("8,24", "--src-len", help="random inputs: MIN,MAX tokens"),
    max_length: int = typer.Option(200, "--max-length", help="maximum output tokens"),
    max_length_ratio: Optional[float] = typer.Option(None, "--max-length-ratio", help="maximum output / source length"),
    no_tuning: bool = typer.Option(False, "--no-tuning", help="skip the oneDNN on/off torch grid"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="write the full result here"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress lines"),
    trust_pickle: bool = typer.Option(False, "--trust-pickle",
                                      help="allow checkpoints with pickled objects (runs their code)"),
) -> None:
    """Benchmark BUNDLE against PyTorch eager and the numpy BLAS floor; print a markdown table.

    ONNX Runtime FP32 (and INT8 when the bundle has it), each configuration in a fresh process.
    Exit 4 when a configuration fails."""
    from ..bench import BenchSpec, markdown, run_bench, summarize
    from ..bench.configs import combos, parse_ints, random_sources
    from ..bundle import load_manifest
    from ..errors import BadInputError
    from ..text import TextProcessor
    from ..vocab import Vocab
    from .translate import read_inputs

    from ..errors import UnsupportedError
    from ..importers import detect_format

    kind = detect_format(model)  # BadInputError when missing or unrecognised
    if kind != "s2s":  # the eager baselines and the floor run our own model classes
        raise UnsupportedError(f"s2s bench measures s2s-export checkpoints; {model} is a {kind} model",
                               "compare with the tool itself: python benchmarks/tools.py (see README, "
                               "Performance), or time s2s translate against the tool's own command")
    manifest = load_manifest(bundle)
    if inputs is not None:
        vocab, text = Vocab(tuple(manifest.src_vocab), manifest.src_specials), TextProcessor(manifest.text.src, bundle)
        sources = [vocab.encode(text.tokenize(t)) for t in read_inputs(None, inputs) if t.strip()]
    else:
        lo, hi = (parse_ints(src_len, "src-len") + (0,))[:2]
        sources = random_sources(len(manifest.src_vocab), max(sentences, 64), lo, hi or lo, seed=0,
                                 specials=manifest.src_specials)
    limit = manifest.max_src_len - manifest.framing.extra_tokens()  # the framing is added to each
    sources = [s[:limit] for s in sources]
    spec = BenchSpec(bundle=bundle, model=model, sources=sources, name=bundle.name,
                     combos=combos(parse_ints(batch, "batch"), parse_ints(beam, "beam")),
                     threads=_threads(parse_ints(threads, "threads")), torch_grid=not no_tuning, iters=iters, warmup=warmup, rounds=rounds,
                     step_iters=step_iters, encoder_iters=encoder_iters, sentences=sentences,
                     max_length=max_length, max_length_ratio=max_length_ratio,
                     trust_pickle=trust_pickle).validate()
    log = (lambda _: None) if quiet else (lambda line: typer.echo(line, err=True))
    result = run_bench(spec, log=log)
    summary = summarize(result)
    typer.echo(markdown(summary))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        from .textio import dumps

        json_out.write_text(dumps({"result": result, "summary": summary}, indent=1))  # strict JSON
        typer.echo(f"wrote {json_out}", err=True)
    if summary["failed"]:
        raise typer.Exit(4)


def _threads(counts: tuple[int, ...]) -> tuple[int, ...]:
    """Thread counts capped to the cores (a warning each), duplicates dropped, order kept."""
    return tuple(dict.fromkeys(cli_threads(n, "--threads") or 1 for n in counts))


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
