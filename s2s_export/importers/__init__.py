"""Importers: one module per tool whose checkpoints ``s2s-export`` reads (``base.py`` says what
each provides). ``load_model(path)`` detects the format; ``--from NAME`` forces it.

========== ===================================================== ==========================
format     what it reads                                          module
========== ===================================================== ==========================
s2s        ``model.pt`` written by ``s2s train`` / save_checkpoint ``s2s.py``
opennmt    OpenNMT-py 1.x/2.x/3.x RNN checkpoints                  ``opennmt.py``
joeynmt    a Joey NMT 2.x model directory or its ``.ckpt``         ``joeynmt.py``
g2p_en     g2p_en's ``checkpoint20.npz``                           ``g2p_en.py``
========== ===================================================== ==========================
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import BadInputError, CheckpointError, Problem, UsageError
from .base import ImportedModel

# detection order: the most specific formats first (a file only one tool writes)
FORMATS = ("g2p_en", "joeynmt", "opennmt", "s2s")


def importer(name: str) -> ModuleType:
    """The importer module of format ``name`` (``UsageError`` for an unknown name)."""
    available = [f for f in FORMATS if importlib.util.find_spec(f"{__name__}.{f}") is not None]
    if name not in available:
        raise UsageError(f"unknown model format {name!r}", f"use --from with one of: {', '.join(available)}")
    return importlib.import_module(f"{__name__}.{name}")


def detect_format(path: str | Path) -> str:
    """The format of ``path`` (``BadInputError`` naming the formats when none recognises it)."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"model {path} does not exist", "check the path")
    for name in FORMATS:
        if importlib.util.find_spec(f"{__name__}.{name}") is not None and importer(name).detect(path):
            return name
    if path.is_dir():
        raise BadInputError(f"{path} is a directory, not a model any importer reads (a Joey NMT model "
                            "directory has config.yaml, the vocabulary files and best.ckpt)",
                            "pass a checkpoint file or a Joey NMT model directory (bundle directories go to "
                            "s2s translate)")
    raise BadInputError(f"{path}: no importer recognises this file",
                        f"pass a checkpoint of one of: {', '.join(FORMATS)} (or force one with --from)")


def load_model(path: str | Path, fmt: str | None = None, trust_pickle: bool = False) -> ImportedModel:
    """The ``ImportedModel`` of ``path`` (format detected unless ``fmt``); ``CheckpointError``
    when its weights are unusable (``weight_problems``)."""
    name = fmt or detect_format(path)
    imported = importer(name).load(Path(path), trust_pickle=trust_pickle)
    check_weights(imported.model, str(path))
    return imported


# A float32 weight this large is no trained value: its product with any activation above 3.4e8,
# or with another such weight, overflows float32 (largest value 3.4e38), and float32 values near it
# are 7.6e22 apart, so no output computed with it can be compared within any tolerance.
MAX_WEIGHT = 1e30


def weight_problems(model: Any) -> list[str]:
    """One line per floating tensor of ``model`` (parameters and buffers) holding NaN or
    infinite values, or values of magnitude ``MAX_WEIGHT`` or more, naming the tensor and
    the count of bad values."""
    import torch

    out = []
    named = [*model.named_parameters(), *model.named_buffers()] if hasattr(model, "named_parameters") else []
    for name, t in named:
        if not t.is_floating_point() or t.is_meta:
            continue
        data = t.detach()
        bad = int((~torch.isfinite(data)).sum())
        huge = int((data.abs() >= MAX_WEIGHT).sum()) - int(torch.isinf(data).sum())
        if bad:
            out.append(f"{name} has {bad} of {data.numel()} values NaN or infinite")
        if huge:
            out.append(f"{name} has {huge} of {data.numel()} values of magnitude {MAX_WEIGHT:g} or more")
    return out


def check_weights(model: Any, where: str) -> None:
    """``CheckpointError`` (exit 4; at most 6 lines, then a count) when ``weight_problems``
    finds any: the model is broken, not its export."""
    found = weight_problems(model)
    if found:
        fix = "use a checkpoint saved before training diverged (or retrain: the weights are unusable)"
        lines = [Problem(f"{where}: the weight {p}", fix) for p in found[:6]]
        if len(found) > 6:
            lines.append(Problem(f"{where}: {len(found) - 6} more weights have such values", fix))
        raise CheckpointError(lines)


def describe(path: str | Path, fmt: str | None = None) -> dict[str, Any]:
    """What ``s2s inspect`` shows of a model file: its format, architecture and what is refused."""
    name = fmt or detect_format(path)
    return {"format": name, **importer(name).describe(Path(path))}


__all__ = ["FORMATS", "ImportedModel", "MAX_WEIGHT", "check_weights", "describe", "detect_format", "importer",
           "load_model", "weight_problems"]
