"""``s2s quantize BUNDLE``: add INT8 graphs for the CPU (precision="int8")."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..int8 import DEFAULT_VARIANT, VARIANTS
from .common import handle_errors


@handle_errors
def quantize(
    bundle: Path = typer.Argument(..., help="bundle directory written by s2s-export"),
    variant: Optional[str] = typer.Option(
        None, "--variant", help=f"{' or '.join(VARIANTS)} (default {DEFAULT_VARIANT})"),
    calibrate: Optional[Path] = typer.Option(
        None, "--calibrate", help="static: calibrate on these sources, one per line (default: generated ones)"),
) -> None:
    """Add encoder.int8.onnx and decoder_step.int8.onnx (batch-independent INT8) to BUNDLE."""
    from ..int8 import quantize_bundle, resolve_variant

    chosen = resolve_variant(variant, calibrate)
    entry = quantize_bundle(bundle, chosen, calibrate)
    for graph, name in entry.items():
        size = (bundle / name).stat().st_size / 1e6
        typer.echo(f"{graph:<13} {name:<24} {size:6.2f} MB")
    source = f", calibrated on {calibrate}" if calibrate else (", calibrated on generated sources"
                                                                 if chosen == "static" else "")
    typer.echo(f"INT8 variant {chosen}{source}; use it with: s2s translate BUNDLE --precision int8")


def register(app: typer.Typer) -> None:
    app.command("quantize")(quantize)
