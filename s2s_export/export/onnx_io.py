"""``TensorSpec`` -> ONNX value infos (torch-free: the export and the fused greedy graph share it)."""

from __future__ import annotations

from typing import Any

from ..graphio import TensorSpec

# graphio dtype names -> onnx.TensorProto element types (the values, so onnx loads lazily)
ONNX_DTYPES = {"float32": 1, "int32": 6, "int64": 7, "bool": 9, "float16": 10, "float64": 11}


def value_info(spec: TensorSpec, name: str | None = None) -> Any:
    """The ``ValueInfoProto`` of ``spec`` (under ``name`` when given): dtype and symbolic shape."""
    from onnx import helper

    return helper.make_tensor_value_info(spec.name if name is None else name, ONNX_DTYPES[spec.dtype],
                                         list(spec.shape))


__all__ = ["ONNX_DTYPES", "value_info"]
