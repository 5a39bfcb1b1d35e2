"""The property that makes an INT8 graph's integer products exact on every x86 CPU (torch-free).

``saturation_problems(model)`` lists every way a graph breaks it (the arithmetic is in
``s2s_export.int8``): an integer product whose constant int8 weight has a value outside
[-WEIGHT_QMAX, WEIGHT_QMAX], whose quantized activation is not uint8, or whose weight is not a
constant this check can read; an int8 recurrent op. ``integer_weights(model)`` gives the int8
weights of the integer products as [K, N] arrays (K: the summed axis). Subgraphs (the fused
greedy graph's ``Loop`` body) are included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from .rowwise import WEIGHT_QMAX

# integer products of ONNX / ONNX Runtime -> (activation input, weight input)
INTEGER_PRODUCTS = {"MatMulInteger": (0, 1), "MatMulIntegerToFloat": (0, 1), "DynamicQuantizeMatMul": (0, 1),
                    "QLinearMatMul": (0, 3), "QGemm": (0, 3), "ConvInteger": (0, 1), "QLinearConv": (0, 3)}
# float products that a QDQ graph turns into integer ones (ONNX Runtime fuses the DequantizeLinear)
QDQ_PRODUCTS = ("MatMul", "Gemm")
RECURRENT = ("DynamicQuantizeLSTM",)  # ONNX Runtime's int8 LSTM (one activation scale per batch)


@dataclass
class Product:
    """An integer product of a graph: its node, constant weight (TensorProto, None when not a
    readable constant), the element type of its quantized activation (None: not quantized by a
    QuantizeLinear / DynamicQuantizeLinear), whether the weight is stored [N, K], and the name of
    the quantized activation tensor (None for DynamicQuantizeMatMul, which quantizes inside)."""

    node: Any
    weight: Any
    activation_type: int | None
    transposed: bool
    activation: str | None = None

    @property
    def name(self) -> str:
        return f"{self.node.op_type} {self.node.name or self.node.output[0]}"


def _graphs(graph: Any) -> Iterator[Any]:
    from onnx import AttributeProto

    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                yield from _graphs(attr.g)


def products(model: Any) -> Iterator[Product]:
    """Every integer product of ``model`` (an ``onnx.ModelProto``), subgraphs included."""
    from onnx import TensorProto, helper

    consts: dict[str, Any] = {}
    producers: dict[str, Any] = {}
    graphs = list(_graphs(model.graph))
    for g in graphs:  # a Loop body reads the outer graph's initializers
        consts.update({t.name: t for t in g.initializer})
        consts.update({n.output[0]: n.attribute[0].t for n in g.node
                       if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})
        producers.update({o: n for n in g.node for o in n.output})

    def through_dq(name: str) -> str:
        node = producers.get(name)
        return node.input[0] if node is not None and node.op_type == "DequantizeLinear" else name

    def activation_type(name: str) -> int | None:
        node = producers.get(through_dq(name))
        if node is None or node.op_type not in ("QuantizeLinear", "DynamicQuantizeLinear"):
            return None
        if node.op_type == "DynamicQuantizeLinear":
            return int(TensorProto.UINT8)
        zp = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        return int(TensorProto.UINT8) if zp is None else int(zp.data_type)

    for g in graphs:
        for node in g.node:
            if node.op_type in INTEGER_PRODUCTS:
                a, w = INTEGER_PRODUCTS[node.op_type]
            elif (node.op_type in QDQ_PRODUCTS and len(node.input) > 1 and node.input[1] in producers
                  and producers[node.input[1]].op_type == "DequantizeLinear"):
                a, w = 0, 1
            else:
                continue
            attrs = {x.name: helper.get_attribute_value(x) for x in node.attribute}
            inner = node.op_type == "DynamicQuantizeMatMul"
            act = int(TensorProto.UINT8) if inner else activation_type(node.input[a])
            yield Product(node, consts.get(through_dq(node.input[w])), act, bool(attrs.get("transB", 0)),
                          None if inner else through_dq(node.input[a]))


def saturation_problems(model: Any) -> list[str]:
    """Problems (empty: none) that keep ``model``'s integer products from being exact on the
    x86 kernels without VNNI (module docstring). ``model``: an ``onnx.ModelProto``."""
    from onnx import TensorProto, numpy_helper

    problems = [f"{n.op_type} {n.name or n.output[0]}: an int8 recurrent op (one activation scale per "
                "batch; weights not checked)" for g in _graphs(model.graph) for n in g.node if n.op_type in RECURRENT]
    for p in products(model):
        if p.weight is None:
            problems.append(f"{p.name}: its weight is not a constant int8 tensor")
            continue
        if p.weight.data_type == TensorProto.INT8:
            values = numpy_helper.to_array(p.weight).astype(np.int16)
            peak = int(np.abs(values).max()) if values.size else 0
            if peak > WEIGHT_QMAX:
                problems.append(f"{p.name}: int8 weight values up to {peak} in magnitude (limit {WEIGHT_QMAX})")
        elif p.weight.data_type != TensorProto.UINT8:  # uint8 x uint8 kernels widen to int16: exact
            problems.append(f"{p.name}: weight of type {TensorProto.DataType.Name(p.weight.data_type)}")
        if p.activation_type != TensorProto.UINT8:
            problems.append(f"{p.name}: its activation is not quantized to uint8 here")
    return problems


def integer_weights(model: Any) -> list[tuple[str, np.ndarray]]:
    """(product name, int8 weight [K, N]) of every integer product with a constant int8 weight."""
    from onnx import TensorProto, numpy_helper

    out = []
    for p in products(model):
        if p.weight is not None and p.weight.data_type == TensorProto.INT8:
            w = numpy_helper.to_array(p.weight)
            out.append((p.name, w.T if p.transposed else w))
    return out


def u8s8_product_avx2(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """a [M, K] uint8 @ w [K, N] int8 as MLAS's AVX2 / AVX512BW U8S8 kernels compute it: the
    products of each adjacent pair (k = 2j, 2j + 1) are added into an int16 with saturation
    (``vpmaddubsw``), the pairs then summed in int32 (``vpmaddwd`` with ones, ``vpaddd``).
    Equal to the exact product ``a.astype(int64) @ w`` unless a pair saturates; VNNI and AMX
    kernels compute the exact product. Zero points are applied by MLAS separately (exactly)."""
    a = np.asarray(a, dtype=np.int32)
    w = np.asarray(w, dtype=np.int32)
    if a.shape[1] % 2:  # MLAS pads K with zeros
        a, w = np.pad(a, ((0, 0), (0, 1))), np.pad(w, ((0, 1), (0, 0)))
    pairs = a[:, 0::2, None] * w[None, 0::2, :] + a[:, 1::2, None] * w[None, 1::2, :]  # [M, K/2, N]
    return np.clip(pairs, -32768, 32767).sum(axis=1, dtype=np.int64)


__all__ = ["INTEGER_PRODUCTS", "Product", "integer_weights", "products", "saturation_problems",
           "u8s8_product_avx2"]
