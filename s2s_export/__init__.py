"""s2s-export: export attention seq2seq models to ONNX/TensorRT and run them without torch."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Lazy so that ``import s2s_export.runtime`` never pulls torch or onnx.
    if name in ("export_model", "Bundle"):
        from . import export

        return getattr(export, name)
    raise AttributeError(name)
