"""``s2s serve BUNDLE|REPO``: a real Triton Inference Server (KServe v2 over HTTP and gRPC, metrics)
serving a bundle, or a repository written by ``s2s triton-repo`` (``s2s_export/serving/server.py``).

Runs until Ctrl-C (exit 130) or SIGTERM (exit 143); either stops the server and removes every
temporary file. Exit codes: 1 bad options or the server failed, 2 no tritonserver (install the
``serve`` extra) or not ready in time, 4 missing or broken bundle (in a repository too: checked before start).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from .common import handle_errors
from .triton_repo import (BACKEND, DYNAMIC, INSTANCES, MAX_BATCH, NAME, PRECISION, QUEUE_DELAY, SPINNING,
                          THREADS, serving_config)


@handle_errors
def serve_command(
    target: Path = typer.Argument(..., help="bundle directory (s2s-export) or model repository (s2s triton-repo)"),
    http_port: int = typer.Option(8000, "--http-port", help="KServe v2 HTTP port"),
    grpc_port: int = typer.Option(8001, "--grpc-port", help="KServe v2 gRPC port"),
    metrics_port: int = typer.Option(8002, "--metrics-port", help="Prometheus metrics port"),
    address: str = typer.Option("127.0.0.1", "--address",
                                help="interface to listen on (127.0.0.1: this machine only; 0.0.0.0: all)"),
    name: str = NAME, max_batch: int = MAX_BATCH, instances: int = INSTANCES, backend: str = BACKEND,
    precision: Optional[str] = PRECISION, threads: Optional[int] = THREADS, spinning: Optional[str] = SPINNING,
    dynamic: bool = DYNAMIC, queue_delay: int = QUEUE_DELAY,
    tritonserver: Optional[Path] = typer.Option(None, "--tritonserver",
                                                help="tritonserver binary (default: nvidia-pytriton's, then PATH)"),
    ready_timeout: float = typer.Option(180.0, "--ready-timeout", help="seconds to wait for the server"),
    log: Optional[Path] = typer.Option(None, "--log", help="keep the server's log in this file"),
) -> None:
    """Serve BUNDLE (or a model repository) with Triton Inference Server until Ctrl-C or SIGTERM."""
    from ..serving.server import serve

    for flag, port in (("--http-port", http_port), ("--grpc-port", grpc_port), ("--metrics-port", metrics_port)):
        if not 1 <= port <= 65535:
            from ..errors import UsageError

            raise UsageError(f"{flag} must be within 1..65535 (got {port})", f"pass a free port to {flag}")
    cfg = serving_config(name, max_batch, instances, backend, precision, threads, spinning, dynamic, queue_delay)

    def ready(server: Any) -> None:
        typer.echo(f"serving {target} as model {cfg.name!r}: HTTP {server.address}:{http_port}, gRPC "
                   f"{server.address}:{grpc_port}, metrics {server.address}:{metrics_port} (Ctrl-C or SIGTERM "
                   "stops it)", err=True)

    serve(target, cfg, http_port, grpc_port, metrics_port, address, tritonserver, ready_timeout, log, ready)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
