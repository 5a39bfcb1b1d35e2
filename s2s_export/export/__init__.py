"""Export: a model implementing the decoding contract -> encoder + single-step decoder ONNX
graphs, ``manifest.json`` and a parity report (``export_model``)."""

from __future__ import annotations

from .api import Bundle, add_tensorrt, export_model

__all__ = ["Bundle", "add_tensorrt", "export_model"]
