"""``s2s triton-repo BUNDLE -o REPO``: a Triton Inference Server model repository serving BUNDLE
(Python backend driving the runtime's Translator; ``s2s_export/serving/repository.py``).

Exit codes: 1 bad options or existing output without ``--force``, 4 missing or broken bundle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from .common import handle_errors

# options shared with ``s2s serve`` (the model's config.pbtxt)
NAME = typer.Option("s2s", "--name", help="model name (the KServe v2 model clients call)")
MAX_BATCH = typer.Option(64, "--max-batch", help="most texts per batch (a request of N texts counts N)")
INSTANCES = typer.Option(1, "--instances", help="model instances (each a process with its own Translator)")
BACKEND = typer.Option("auto", "--backend", help="auto, onnxruntime, onnxruntime-cuda or tensorrt (GPU "
                                                 "instances for the last two, and for auto with engines)")
PRECISION = typer.Option(None, "--precision", help="fp32, fp16 or int8 graphs (default: the backend's own)")
THREADS = typer.Option(None, "--threads", help="intra-op threads per instance (default min(4, cores))")
SPINNING = typer.Option(None, "--spinning", help="ONNX Runtime spinning: step, off or all (default step)")
DYNAMIC = typer.Option(True, "--dynamic-batching/--no-dynamic-batching",
                       help="let Triton gather concurrent requests into one batch")
QUEUE_DELAY = typer.Option(1000, "--max-queue-delay-us", help="most microseconds a request waits for others")


def serving_config(name: str, max_batch: int, instances: int, backend: str, precision: Optional[str],
                   threads: Optional[int], spinning: Optional[str], dynamic: bool, queue_delay: int) -> Any:
    from ..serving.repository import ServingConfig

    return ServingConfig(name=name, max_batch=max_batch, instances=instances, backend=backend,
                         dynamic_batching=dynamic, max_queue_delay_us=queue_delay, precision=precision,
                         intra_op_threads=threads, spinning=spinning).validate()


@handle_errors
def triton_repo(
    bundle: Path = typer.Argument(..., help="bundle directory written by s2s-export"),
    output: Path = typer.Option(..., "-o", "--output", help="model repository to write"),
    name: str = NAME, max_batch: int = MAX_BATCH, instances: int = INSTANCES, backend: str = BACKEND,
    precision: Optional[str] = PRECISION, threads: Optional[int] = THREADS, spinning: Optional[str] = SPINNING,
    dynamic: bool = DYNAMIC, queue_delay: int = QUEUE_DELAY,
    force: bool = typer.Option(False, "--force", help="replace an existing repository"),
) -> None:
    """Write a Triton model repository serving BUNDLE (serve it with s2s serve REPO or tritonserver)."""
    from ..serving.repository import write_repository

    cfg = serving_config(name, max_batch, instances, backend, precision, threads, spinning, dynamic, queue_delay)
    model = write_repository(bundle, output, cfg, force=force)
    typer.echo(f"wrote {model} (config.pbtxt, 1/model.py, 1/bundle)")
    typer.echo(f"serve it with: s2s serve {output}   or: tritonserver --model-repository {output}")


def register(app: typer.Typer) -> None:
    app.command("triton-repo")(triton_repo)
