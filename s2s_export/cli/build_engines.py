"""``s2s build-engines BUNDLE``: build the TensorRT engines of a bundle on the target device."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import handle_errors

# the library's parameter names, as the user typed them here
FLAGS = {"max_batch": "--max-batch", "max_src_len": "--max-src-len", "workspace_mb": "--workspace",
         "opt_batch": "--opt-batch", "opt_src_len": "--opt-src-len"}


def register(app: typer.Typer) -> None:
    @app.command("build-engines")
    @handle_errors(flags=FLAGS)
    def build_engines_cmd(
        bundle: Path = typer.Argument(..., help="bundle directory written by s2s-export"),
        max_batch: Optional[int] = typer.Option(
            None, "--max-batch", help="most rows per step (sentences x beam); default: the manifest's"),
        max_src_len: Optional[int] = typer.Option(
            None, "--max-src-len", help="longest source (EOS included); default: the manifest's"),
        workspace: int = typer.Option(1024, "--workspace", help="TensorRT workspace limit, MB"),
        opt_batch: Optional[int] = typer.Option(None, "--opt-batch", help="rows TensorRT tunes for"),
        opt_src_len: Optional[int] = typer.Option(None, "--opt-src-len", help="source length TensorRT tunes for"),
        verbose: bool = typer.Option(False, "--verbose", help="TensorRT's verbose log"),
    ) -> None:
        """Build BUNDLE's FP16 TensorRT engines for this GPU and TensorRT version.

        The engines (strongly typed) are recorded in the bundle's manifest.
        Exit 2 when TensorRT or a GPU is missing here."""
        from ..tensorrt.builder import build_engines

        entries = build_engines(bundle, max_batch=max_batch, max_src_len=max_src_len,
                                workspace_mb=workspace, opt_batch=opt_batch, opt_src_len=opt_src_len,
                                verbose=verbose)
        for e in entries:
            typer.echo(f"{bundle / e['file']}: {e['graph']}, {e['gpu']} ({e['sm']}), TensorRT "
                       f"{e['tensorrt']}, rows <= {e['max_batch']}, source length <= {e['max_src_len']}, "
                       f"{e['build_seconds']} s")
