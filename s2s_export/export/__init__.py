"""Export: a model implementing the decoding contract -> encoder + single-step decoder ONNX
graphs, the fused greedy graph, ``manifest.json`` and a parity report (``export_model``).

``export_model`` and friends load lazily (they import torch); ``export.greedy`` is torch-free
and also serves ``s2s quantize``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import Bundle, add_tensorrt, export_model

__all__ = ["Bundle", "add_tensorrt", "export_model"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
