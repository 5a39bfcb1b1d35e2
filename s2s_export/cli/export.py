"""``s2s-export MODEL.pt [-o BUNDLE_DIR]``: export a checkpoint to a verified bundle.

Exit codes: 0 ok, 1 usage (existing output without --force, bad option), 2 unsupported here
(--trt before the TensorRT path exists: the ONNX bundle is written first), 3 parity failed,
4 bad input (missing or unreadable checkpoint).
"""

from __future__ import annotations

if __name__ == "__main__":  # python -m: the signal handlers first, before the imports below
    from s2s_export import interrupts as _interrupts

    _interrupts.install()

from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import EnginesMissingError
from .common import handle_errors, run_app, version_option

app = typer.Typer(name="s2s-export", add_completion=False, pretty_exceptions_enable=False,
                  help="Export an attention seq2seq checkpoint to ONNX (encoder + decoder step).")


def human_size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)  # pragma: no cover


def summary_lines(path: Path, files: list[str], parity: dict[str, Any]) -> list[str]:
    """Files with sizes, then the parity figures (worst output per graph, greedy identity)."""
    rows = [(name, human_size((path / name).stat().st_size)) for name in files if (path / name).is_file()]
    width = max(len(r[0]) for r in rows) if rows else 4
    lines = [f"  {name:<{width}}  {size:>9}" for name, size in rows]
    if not parity:
        lines.append("parity: not checked (--no-verify)")
        return lines
    lines.append(f"parity ({parity['backend']} vs PyTorch, atol {parity['atol']:g}, rtol {parity['rtol']:g}, "
                 f"batch {parity['inputs']['batch']}, {parity['inputs']['steps']} steps): "
                 f"{'passed' if parity['passed'] else 'FAILED'}")
    graphs: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for key, r in parity["outputs"].items():
        graph, name = key.split("/", 1)
        graphs.setdefault(graph, []).append((name, r))
    for graph, outs in graphs.items():
        worst = max(outs, key=lambda o: o[1]["max_abs"])
        worst_rel = max(outs, key=lambda o: o[1]["max_rel"])
        lines.append(f"  {graph:<13} {len(outs):>2} outputs  max abs {worst[1]['max_abs']:.2e} ({worst[0]})  "
                     f"max rel {worst_rel[1]['max_rel']:.2e} ({worst_rel[0]})")
    greedy = parity.get("greedy")
    if greedy:
        lines.append(f"  greedy decode {greedy['identical']}/{greedy['sentences']} sentences token-identical, "
                     f"max score diff {greedy['max_score_diff']:.2e}")
    return lines


def packaged_model(source_format: Optional[str]) -> Path:
    """The model file a package ships (``--from g2p_en`` without MODEL)."""
    from ..errors import UsageError
    from ..importers import importer

    locate = getattr(importer(source_format), "package_checkpoint", None) if source_format else None
    if locate is None:
        raise UsageError("no MODEL given", "pass the model to export (or --from g2p_en for the packaged model)")
    return Path(locate())


# the library's parameter names, as the user typed them here
FLAGS = {"max_batch": "--max-batch", "max_src_len": "--max-src-len", "topk": "--topk", "opset": "--opset",
         "trust_pickle": "--trust-pickle"}


@app.command()
@handle_errors(flags=FLAGS)
def export(
    model: Optional[Path] = typer.Argument(None, help="the model: an s2s-export model.pt, an OpenNMT-py checkpoint, a Joey NMT "
                                           "model directory (or its .ckpt), g2p_en's checkpoint20.npz"),
    output: Optional[Path] = typer.Option(None, "-o", "--output",
                                          help="bundle directory (default: <model stem>_bundle beside the model)"),
    force: bool = typer.Option(False, "--force", help="replace an existing output directory (on success only)"),
    opset: int = typer.Option(17, "--opset", help="ONNX opset (17-20)"),
    topk: int = typer.Option(8, "--topk", help="K of the step graph's top-K outputs"),
    max_batch: int = typer.Option(64, "--max-batch", help="largest batch (rows) for engine profiles"),
    max_src_len: int = typer.Option(256, "--max-src-len", help="longest source for engine profiles"),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="check parity with ONNX Runtime"),
    int8: bool = typer.Option(False, "--int8", help="also add INT8 graphs for the CPU"),
    int8_variant: Optional[str] = typer.Option(
        None, "--int8-variant", help="static (default: scales calibrated at export) or rowwise"),
    calibrate: Optional[Path] = typer.Option(None, "--calibrate",
                                             help="static INT8: calibrate on these sources (one per line)"),
    trt: bool = typer.Option(False, "--trt", help="also build FP16 graphs and TensorRT engines"),
    trust_pickle: bool = typer.Option(False, "--trust-pickle",
                                      help="allow checkpoints with pickled objects (runs their code)"),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer",
                                            help="both sides' tokenizers: char, word or SRC:TGT such as char:word "
                                                 "(default: the model's)"),
    src_tokenizer: Optional[str] = typer.Option(None, "--src-tokenizer",
                                                help="the source tokenizer: char, word, pretokenized, "
                                                     "sentencepiece:FILE, bpe:CODES or hf:FILE (default: the model's)"),
    tgt_tokenizer: Optional[str] = typer.Option(None, "--tgt-tokenizer", help="the target tokenizer (as --src-tokenizer)"),
    normalize: Optional[str] = typer.Option(None, "--normalize",
                                            help="normalise input text: lower, nfc, nfkc (comma-separated), or none "
                                                 "(default: the model's)"),
    source_format: Optional[str] = typer.Option(None, "--from",
                                                help="the model's format: s2s, opennmt, joeynmt or g2p_en "
                                                     "(default: detected)"),
    version: bool = version_option(),
) -> None:
    """Export MODEL to an encoder + single-step decoder ONNX bundle with manifest.json."""
    from ..export import export_model

    if model is None:
        model = packaged_model(source_format)
        out = output if output is not None else Path(f"{source_format}_bundle")
    else:
        out = output if output is not None else model.with_name(f"{model.stem}_bundle")
    try:
        bundle = export_model(model, out, opset=opset, topk=topk, max_batch=max_batch, max_src_len=max_src_len,
                              verify=verify, force=force, trust_pickle=trust_pickle, int8=int8, trt=trt,
                              int8_variant=int8_variant, calibrate=calibrate,
                              source_format=source_format, tokenizer=tokenizer, src_tokenizer=src_tokenizer,
                              tgt_tokenizer=tgt_tokenizer, normalize=normalize)
    except EnginesMissingError as exc:  # --trt without TensorRT: what was written, then the error
        if exc.bundle is not None:
            report(exc.bundle)
        raise
    report(bundle)


def report(bundle: Any) -> None:
    """What ``export_model`` wrote (an ``export.api.Bundle``): its warnings (stderr), the files
    with their sizes and the parity summary (stdout), TensorRT-compatibility warnings (stderr)."""
    for warning in bundle.warnings:
        typer.echo(f"warning: {warning}", err=True)
    files = sorted(bundle.manifest.files) + ["manifest.json"]
    typer.echo(f"wrote {bundle.path}")
    for line in summary_lines(bundle.path, files, bundle.parity):
        typer.echo(line)
    for problem in bundle.manifest.trt_compat:
        typer.echo(f"warning: TensorRT compatibility: {problem}", err=True)


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()
