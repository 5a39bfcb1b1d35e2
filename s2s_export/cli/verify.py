"""``s2s verify BUNDLE --model MODEL.pt``: parity of a bundle with the PyTorch model, per step and
whole-sequence, with a report (see ``s2s_export.verify``).

Inputs: ``--data FILE`` (one source per line, optionally TAB + reference), else ``--task TASK``
(its test split), else the task stored in the checkpoint, else random sources. Output: a summary
table on stdout; ``--report FILE.json`` (for machines) and ``--html FILE.html`` (self-contained,
with plots) are written before the verdict. Exit codes: 0 passed, 1 bad options, 2 missing
dependency/backend, 3 parity failed (a tolerance or the exact-match threshold), 4 unreadable
bundle, checkpoint or data, or a checkpoint that does not belong to the bundle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import cli_threads, handle_errors

# the library's parameter names, as the user typed them here
FLAGS = {"beam_size": "--beam", "max_length": "--max-length", "intra_op_threads": "--threads",
         "batch_size": "--batch-size", "trust_pickle": "--trust-pickle", "min_exact": "--min-exact",
         "tie_margin": "--tie-margin"}


@handle_errors(flags=FLAGS)
def verify_command(
    bundle: Path = typer.Argument(..., help="bundle directory written by s2s-export"),
    model: Path = typer.Option(..., "--model", "-m", help="the model the bundle was exported from (an s2s-export, "
                                                          "OpenNMT-py, Joey NMT or g2p_en checkpoint)"),
    source_format: Optional[str] = typer.Option(None, "--from", help="the model's format (default: detected)"),
    data: Optional[Path] = typer.Option(None, "--data", help="one source per line, optionally TAB + reference"),
    task: Optional[str] = typer.Option(None, "--task", help="reverse, copy, sort or g2p: its test split"),
    backend: str = typer.Option("auto", "--backend", help="auto, onnxruntime, onnxruntime-cuda or tensorrt"),
    precision: Optional[str] = typer.Option(None, "--precision",
                                            help="fp32, fp16 or int8 graphs (default fp32; tensorrt: fp16)"),
    beam: int = typer.Option(4, "--beam", help="beam size of the beam comparison (1: greedy only)"),
    limit: int = typer.Option(100, "--limit", help="number of sentences"),
    max_length: Optional[int] = typer.Option(None, "--max-length",
                                             help="most output tokens, EOS included (default: the bundle's)"),
    report: Optional[Path] = typer.Option(None, "--report", help="write the JSON report here"),
    html_out: Optional[Path] = typer.Option(None, "--html", help="write the HTML report here (needs matplotlib)"),
    atol: Optional[float] = typer.Option(None, "--atol", help="absolute tolerance of every output"),
    rtol: Optional[float] = typer.Option(None, "--rtol", help="relative tolerance of every output"),
    tol: Optional[list[str]] = typer.Option(None, "--tol", help="OUTPUT=ATOL[,RTOL] for one output (repeatable; "
                                                                "'state' = every state tensor)"),
    min_exact: Optional[float] = typer.Option(None, "--min-exact",
                                              help="least fraction of identical-or-near-tie outputs"),
    tie_margin: Optional[float] = typer.Option(None, "--tie-margin", help="near-tie margin in nats"),
    batch_size: int = typer.Option(32, "--batch-size", help="sentences per teacher-forced batch"),
    threads: int = typer.Option(1, "--threads", help="ONNX Runtime intra-op threads"),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="allow checkpoints with pickled objects"),
) -> None:
    """Check BUNDLE against the PyTorch model: per step (teacher-forced) and whole sequences."""
    from ..errors import UsageError
    from ..verify.report import require_matplotlib, summary_lines, write_html, write_json
    from ..verify.tolerances import defaults, parse_tol

    if data is not None and task is not None:
        raise UsageError("pass --data FILE or --task TASK, not both", "choose one input")
    if beam < 1 or batch_size < 1 or threads < 1 or (max_length is not None and max_length < 1):
        raise UsageError("--beam, --batch-size, --threads and --max-length must be >= 1",
                         "pass positive values")
    threads = cli_threads(threads, "--threads") or 1
    if precision is not None:
        defaults(precision)  # UsageError for an unknown precision, before any work
    per_output = parse_tol(list(tol or []))
    if html_out is not None:
        require_matplotlib()  # fail before the work, not after it

    from ..bundle import load_manifest
    from ..importers import load_model
    from ..verify import inputs as vin
    from ..verify.api import check_model, verify_bundle
    from ..text import TextProcessor
    from ..vocab import Vocab

    imported = load_model(model, source_format, trust_pickle=trust_pickle)
    manifest = load_manifest(bundle)
    check_model(manifest, imported.model, imported.src_vocab or None, imported.tgt_vocab or None,
                imported.model_config if imported.format == "s2s" else None)
    src_vocab = Vocab(tuple(manifest.src_vocab), manifest.src_specials)
    src_tok, tgt_tok = TextProcessor(manifest.text.src, bundle), TextProcessor(manifest.text.tgt, bundle)
    meta = imported.meta
    meta_task = meta.get("task") if isinstance(meta.get("task"), str) else None
    conv = manifest.conventions
    if data is not None:
        chosen = vin.from_file(data, src_vocab, src_tok, tgt_tok, manifest.max_src_len, limit, conv=conv)
    elif task is not None or meta_task is not None:
        chosen = vin.from_task(task or str(meta_task), src_vocab, manifest.max_src_len, limit, conv=conv)
        if task is None:
            chosen.description += ", the checkpoint's task"
    else:
        chosen = vin.random_sources(src_vocab, manifest.max_src_len, limit, conv=conv)
    if chosen.task is None and meta_task is not None:
        chosen.task = meta_task  # g2p data in a file is scored with PER/WER too

    overrides = dict(atol=atol, rtol=rtol, per_output=per_output, min_exact=min_exact, tie_margin=tie_margin)
    result = verify_bundle(bundle, imported.model, chosen, backend=backend, precision=precision, beam_size=beam,
                           max_length=max_length, batch_size=batch_size, overrides=overrides, threads=threads,
                           verify_hashes=False, model_info={"path": str(model), "task": meta_task})
    if report is not None:
        write_json(result.report, report)
    if html_out is not None:
        write_html(result.report, result.example, html_out)
    for line in summary_lines(result.report):
        typer.echo(line)
    for path in (report, html_out):
        if path is not None:
            typer.echo(f"wrote {path}")
    result.raise_on_failure()


def register(app: typer.Typer) -> None:
    app.command("verify")(verify_command)
