"""Static INT8: ONNX Runtime ``quantize_static`` (QDQ) with activation scales calibrated once.

Weight products (``MatMul``/``Gemm`` with a constant weight; ``MatMulConstBOnly``) get
QuantizeLinear/DequantizeLinear pairs: weights int8 per output channel with ``reduce_range``
(7 bits: [-64, 64], see ``__init__``), activations uint8 with one fixed scale and zero point per
tensor, from the min/max of that tensor over the calibration feeds (``calibration.py``). ONNX
Runtime fuses each pair into an integer product (``MatMulIntegerToFloat``/``QGemm``) when it
loads the graph. The scales are constants, so a sentence's result does not depend on the other
sentences of its batch. Attention products and the encoder's LSTM/GRU stay float32.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

OP_TYPES = ("MatMul", "Gemm")


class FeedReader:
    """``onnxruntime.quantization.CalibrationDataReader`` over a list of feeds, each restricted
    to the graph's inputs (an input the exporter pruned is not fed)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]], input_names: set[str]) -> None:
        self._feeds = [{k: np.asarray(v) for k, v in f.items() if k in input_names} for f in feeds]
        self._it: Iterator[dict[str, np.ndarray]] = iter(self._feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self._feeds)

    def __len__(self) -> int:
        return len(self._feeds)


def isolate_weight_products(model: Any) -> tuple[Any, list[str]]:
    """A copy of ``model`` where each weight product (MatMul/Gemm with a constant 2-D weight)
    reads its activation through its own ``Identity``, and the names of those products.

    Why: onnxruntime 1.32's QDQ quantizer (``qdq_quantizer.py``,
    ``QDQQuantizer._add_qdq_pair_for_activation``) replaces a quantized tensor by its
    DequantizeLinear output for *every* reader, graph outputs included, so a decoder state read by
    a product would leave the step fake-quantized. On the private copy only the product sees the
    pair; ONNX Runtime removes the Identity when it loads the graph. The names go to
    ``nodes_to_quantize`` because the QDQ quantizer does not honour ``MatMulConstBOnly`` (it
    quantized the attention products, activation by activation)."""
    from onnx import helper

    from .rowwise import weight_product

    out = type(model)()
    out.CopyFrom(model)
    inits = {t.name: t for t in out.graph.initializer}
    nodes, names = [], []
    for i, node in enumerate(out.graph.node):
        if weight_product(node, inits) is not None:
            if not node.name:
                node.name = f"int8/product_{i}"
            private = f"{node.input[0]}/int8_in/{node.name}"
            nodes.append(helper.make_node("Identity", [node.input[0]], [private], name=private))
            node.input[0] = private
            names.append(node.name)
        nodes.append(node)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out, names


def quantize_static_graph(src: str | os.PathLike[str], dst: str | os.PathLike[str],
                          feeds: list[dict[str, np.ndarray]]) -> None:
    """src float32 ONNX -> dst static QDQ INT8 ONNX, calibrated (min/max) on ``feeds`` (one dict
    of input arrays per run of the graph; inputs the graph lacks are dropped). A graph without
    weight products is written unchanged. onnx/onnxruntime errors propagate."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(FeedReader, CalibrationDataReader):  # type: ignore[misc]
        pass

    names = {i.name for i in onnx.load(str(src), load_external_data=False).graph.input}
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:  # as for the dynamic graphs: ONNX shape inference and graph optimizations only
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        except Exception:  # noqa: BLE001 - the raw graph is valid input too
            pre = Path(src)
        model, products = isolate_weight_products(onnx.load(str(pre)))
        if not products:  # nothing to quantize (an empty nodes_to_quantize would mean "all")
            onnx.save(onnx.load(str(pre)), str(dst))
            return
        # no CalibMaxIntermediateOutputs: in onnxruntime 1.32 (calibrate.py, MinMaxCalibrater.
        # collect_data) reaching it drops the collected ranges unmerged; the calibrator keeps
        # only the reduced min/max per run anyway
        extra: dict[str, Any] = {"MatMulConstBOnly": True, "OpTypesToExcludeOutputQuantization": list(OP_TYPES)}
        quantize_static(model, dst, Reader(feeds, names), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(OP_TYPES), nodes_to_quantize=products,
                        per_channel=True, reduce_range=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, extra_options=extra,
                        calibration_providers=["CPUExecutionProvider"])


__all__ = ["FeedReader", "OP_TYPES", "isolate_weight_products", "quantize_static_graph"]
