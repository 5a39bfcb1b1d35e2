"""Model zoo: ``ModelConfig``, presets, the ``Seq2Seq`` family and the checkpoint format.

``ModelConfig`` and the presets are torch-free (the manifest schema validates a bundle's model
config with them); the torch modules load on first use of their names (PEP 562), so
``import s2s_export.models.config`` never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import ModelConfig
from .presets import PRESETS, preset_config

if TYPE_CHECKING:  # pragma: no cover - the names __getattr__ gives, for type checkers
    from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from .seq2seq import Seq2Seq

_LAZY = {"Seq2Seq": ".seq2seq", "Checkpoint": ".checkpoint", "load_checkpoint": ".checkpoint",
         "save_checkpoint": ".checkpoint"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ModelConfig", "PRESETS", "preset_config", "Seq2Seq", "Checkpoint", "load_checkpoint", "save_checkpoint"]
