"""``s2s quantize BUNDLE``: add dynamic INT8 graphs for the CPU (precision="int8")."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import handle_errors


@handle_errors
def quantize(bundle: Path = typer.Argument(..., help="bundle directory written by s2s-export")) -> None:
    """Add encoder.int8.onnx and decoder_step.int8.onnx (dynamic INT8) to BUNDLE."""
    from ..int8 import quantize_bundle

    entry = quantize_bundle(bundle)
    for graph, name in entry.items():
        size = (bundle / name).stat().st_size / 1e6
        typer.echo(f"{graph:<13} {name:<24} {size:6.2f} MB")
    typer.echo("use it with: s2s translate BUNDLE --precision int8")


def register(app: typer.Typer) -> None:
    app.command("quantize")(quantize)
