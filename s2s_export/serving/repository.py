"""Write a Triton Inference Server model repository serving a bundle (torch-free).

Layout (``write_repository(bundle, repo)``; ``s2s triton-repo BUNDLE -o REPO``)::

    REPO/
      NAME/                      the model (``s2s`` unless ``name``)
        config.pbtxt             Python backend, inputs/outputs, dynamic batching, instance group
        1/model.py               ``s2s_export/serving/model.py``: drives a Translator
        1/bundle/                the bundle, copied (its files checked against their sha256 first)

The config: ``max_batch_size`` (rows per batch; a request of N texts counts N), the inputs and
outputs of ``serving/handler.py``, ``dynamic_batching`` with preferred batch sizes (powers of two
from 4 up to ``max_batch``, and ``max_batch``) and a maximum queue delay, and an instance group of
``instances`` model instances, ``KIND_GPU`` when the backend runs on a GPU (``tensorrt``,
``onnxruntime-cuda``, or ``auto`` with engines in the bundle), else ``KIND_CPU``. The backend and
the other ``Translator.load`` options are the model's ``parameters``.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..bundle import MANIFEST, atomic_dir, check_apart, load_manifest
from ..errors import UsageError
from ..runtime.backends.base import SPINNING
from . import handler

MODEL_FILE = Path(__file__).with_name("model.py")
VERSION = "1"
BACKENDS = ("auto", "onnxruntime", "onnxruntime-cuda", "tensorrt")
GPU_BACKENDS = ("onnxruntime-cuda", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class ServingConfig:
    """What ``config.pbtxt`` says: model name, rows per batch, dynamic batching (``max_queue_delay_us``
    microseconds a request may wait for others; off: each request runs alone), instances and
    their kind, and the ``Translator.load`` options (None: the runtime's default)."""

    name: str = "s2s"
    max_batch: int = 64
    instances: int = 1
    backend: str = "auto"
    dynamic_batching: bool = True
    max_queue_delay_us: int = 1000
    precision: str | None = None
    intra_op_threads: int | None = None
    spinning: str | None = None

    def validate(self) -> "ServingConfig":
        if not NAME_RE.fullmatch(self.name):
            raise UsageError(f"model name {self.name!r} is not a valid Triton model name",
                             "use letters, digits, '_', '.' and '-' (e.g. --name s2s)")
        if self.max_batch < 1:
            raise UsageError(f"--max-batch must be >= 1 (got {self.max_batch})", "pass a positive --max-batch")
        if self.instances < 1:
            raise UsageError(f"--instances must be >= 1 (got {self.instances})", "pass a positive --instances")
        if self.backend not in BACKENDS:
            raise UsageError(f"unknown backend {self.backend!r}", f"use one of: {', '.join(BACKENDS)}")
        if self.max_queue_delay_us < 0:
            raise UsageError(f"--max-queue-delay-us must be >= 0 (got {self.max_queue_delay_us})", "pass 0 or more")
        if self.spinning is not None and self.spinning not in SPINNING:
            raise UsageError(f"spinning {self.spinning!r} is unknown", f"use one of: {', '.join(SPINNING)}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise UsageError(f"precision {self.precision!r} is unknown", f"use one of: {', '.join(PRECISIONS)}")
        if self.intra_op_threads is not None and self.intra_op_threads < 1:
            raise UsageError(f"--threads must be >= 1 (got {self.intra_op_threads})", "pass a positive --threads")
        return self

    def preferred_batch_sizes(self) -> list[int]:
        sizes = {s for s in (4, 8, 16, 32, 64, 128, 256, 512) if s < self.max_batch}
        return sorted(sizes | {self.max_batch})


def instance_kind(backend: str, has_engines: bool) -> str:
    """``KIND_GPU`` when the model runs on a GPU, else ``KIND_CPU``."""
    return "KIND_GPU" if backend in GPU_BACKENDS or (backend == "auto" and has_engines) else "KIND_CPU"


def config_pbtxt(cfg: ServingConfig, kind: str) -> str:
    """The model's ``config.pbtxt`` (protobuf text format)."""
    inputs = ",\n".join(
        f'  {{ name: "{name}" data_type: {dtype} dims: [ 1 ]{" optional: true" if name != handler.TEXT else ""} }}'
        for name, dtype in handler.INPUTS.items())
    outputs = ",\n".join(f'  {{ name: "{name}" data_type: {dtype} dims: [ {dims} ] }}'
                         for name, (dtype, dims) in handler.OUTPUTS.items())
    lines = [f'name: "{cfg.name}"', 'backend: "python"', f"max_batch_size: {cfg.max_batch}",
             f"input [\n{inputs}\n]", f"output [\n{outputs}\n]"]
    if cfg.dynamic_batching:
        sizes = ", ".join(str(s) for s in cfg.preferred_batch_sizes())
        lines.append(f"dynamic_batching {{\n  preferred_batch_size: [ {sizes} ]\n"
                     f"  max_queue_delay_microseconds: {cfg.max_queue_delay_us}\n}}")
    lines.append(f"instance_group [ {{ count: {cfg.instances} kind: {kind} }} ]")
    params = {"backend": cfg.backend, "precision": cfg.precision, "intra_op_threads": cfg.intra_op_threads,
              "spinning": cfg.spinning}
    for key, value in params.items():
        if value is not None:
            lines.append(f'parameters {{ key: "{key}" value: {{ string_value: "{value}" }} }}')
    return "\n".join(lines) + "\n"


def fill_model(model_dir: Path, bundle: Path, cfg: ServingConfig, link_bundle: bool = False) -> None:
    """Write ``config.pbtxt``, ``1/model.py`` and ``1/bundle`` into ``model_dir`` (a new
    directory). ``link_bundle``: a symlink to the bundle instead of a copy (``s2s serve``'s
    temporary repository)."""
    manifest = load_manifest(bundle)  # a broken or tampered bundle fails here, not in the server
    version = model_dir / VERSION
    version.mkdir(parents=True)
    shutil.copyfile(MODEL_FILE, version / "model.py")
    if link_bundle:
        os.symlink(bundle.resolve(), version / "bundle", target_is_directory=True)
    else:
        (version / "bundle").mkdir()
        for name in [MANIFEST, *manifest.files]:
            (version / "bundle" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(bundle / name, version / "bundle" / name)
    kind = instance_kind(cfg.backend, bool(manifest.engines))
    (model_dir / "config.pbtxt").write_text(config_pbtxt(cfg, kind))


def write_repository(bundle: str | os.PathLike[str], repo: str | os.PathLike[str],
                     config: ServingConfig = ServingConfig(), force: bool = False) -> Path:
    """Write a model repository serving ``bundle`` at ``repo`` (atomically: a temporary
    directory beside it, renamed at the end; an existing ``repo`` needs ``force``). Returns the
    model's directory ``repo/NAME``. Raises ``UsageError`` (bad settings, existing output) or
    ``BundleError`` (a missing, broken or tampered bundle); ``repo`` must not be, contain or lie
    inside ``bundle`` (``UsageError``, before any work: ``--force`` would replace the bundle, a
    repository inside it would be copied into the next one)."""
    check_apart(repo, [("the bundle", bundle)])
    config.validate()
    with atomic_dir(repo, force=force) as tmp:
        fill_model(tmp / config.name, Path(bundle), config)
    return Path(repo).absolute() / config.name


__all__ = ["BACKENDS", "ServingConfig", "config_pbtxt", "fill_model", "instance_kind", "write_repository"]
