"""Row-wise dynamic INT8: a graph rewrite of every weight matrix product (torch-free, onnx only).

Each ``MatMul(X, W)`` / ``Gemm(X, W, C)`` whose ``W`` is a constant 2-D initializer becomes::

    s   = max(max|X[..., :]|, 1e-30) / 127          [..., 1]  one scale per row (last axis = K)
    q   = QuantizeLinear(X / s, 1, 128)             [..., K]  uint8 in [1, 255] (symmetric: 128 = 0)
    acc = MatMulInteger(q, Wq, 128)                 [..., N]  int32, exact (see ``__init__``)
    Y   = Cast(acc) * w_scale * s (+ C)             [..., N]  float32

``Wq`` [K, N] int8 in [-64, 64] with ``w_scale`` [N] float32 (one per output column, symmetric,
no zero point). A row is a sentence (decoder step: X [batch, K]) or a source position (encoder:
X [batch, src_len, K]): its scale depends on that row alone, never on the other sentences of the
batch or on padding rows. The float32 values that reach it are another matter: attention over a
padded source can round its last bit differently with the amount of padding (as the FP32 graphs
do), and the row's scale passes a last-bit change of its largest value on to the whole row, so
scores may differ by ~1e-7 between batch sizes (ids identical in every measurement; a fixed
static scale absorbs such changes instead). The quantization of an activation read by several
products is computed once. Products of two activations (attention
scores and contexts) and the encoder's LSTM/GRU stay float32.
"""

from __future__ import annotations

from typing import Any

import numpy as np

WEIGHT_QMAX = 64  # |int8 weight| <= 64: the bound that keeps every x86 U8S8 kernel exact
ACT_QMAX = 127  # activations: round(x / s) in [-127, 127], stored as uint8 + 128
ACT_ZERO_POINT = 128
TINY = 1e-30  # scale floor: an all-zero row (padding) quantizes to 128 and gives exact zeros
DOMAIN_OPS = ("MatMul", "Gemm")
MS_DOMAIN = "com.microsoft"  # MatMulIntegerToFloat: ONNX Runtime's integer product with a float output


def quantize_weight(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """w [K, N] float32 -> (int8 [K, N] in [-WEIGHT_QMAX, WEIGHT_QMAX], scale [N] float32):
    symmetric per output column, ``w ~= q * scale``; an all-zero column gets scale 1."""
    w = np.asarray(w, dtype=np.float32)
    amax = np.abs(w).max(axis=0)
    scale = np.where(amax > 0, amax / WEIGHT_QMAX, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale), -WEIGHT_QMAX, WEIGHT_QMAX).astype(np.int8)
    return q, scale


def _opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def weight_product(node: Any, inits: dict[str, Any]) -> tuple[str, np.ndarray, np.ndarray | None, bool] | None:
    """(activation input, W [K, N] float32, bias or None, W was transposed) of a product this
    rewrite handles; None for any other node."""
    from onnx import helper, numpy_helper

    if node.op_type not in DOMAIN_OPS or len(node.input) < 2 or node.input[1] not in inits:
        return None
    w = numpy_helper.to_array(inits[node.input[1]])
    if w.dtype != np.float32 or w.ndim != 2:
        return None
    bias, transposed = None, False
    if node.op_type == "Gemm":
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
            return None
        if attrs.get("transB", 0):
            w, transposed = w.T, True
        if len(node.input) > 2 and node.input[2]:
            if node.input[2] not in inits:
                return None
            bias = numpy_helper.to_array(inits[node.input[2]]).astype(np.float32)
    return node.input[0], np.ascontiguousarray(w), bias, transposed


class _Rewriter:
    """The nodes and initializers of the rewritten graph (``quantize_rowwise``)."""

    prefix = "int8/"

    def __init__(self, opset: int) -> None:
        from onnx import numpy_helper

        self.opset = opset
        self.nodes: list[Any] = []
        consts: dict[str, np.ndarray] = {"c127": np.array(ACT_QMAX, np.float32), "tiny": np.array(TINY, np.float32),
                                         "one": np.array(1.0, np.float32), "zp": np.array(ACT_ZERO_POINT, np.uint8)}
        self.inits = [numpy_helper.from_array(v, self.prefix + k) for k, v in consts.items()]
        self.replaced: set[str] = set()  # float initializers the integer products replace
        self._acts: dict[str, tuple[str, str]] = {}  # activation -> (uint8 q, row scale)
        self._weights: dict[tuple[str, bool], tuple[str, str]] = {}  # (initializer, transposed) -> (Wq, scale)

    def activation(self, x: str) -> tuple[str, str]:
        """(uint8 [..., K], row scale [..., 1]) of activation ``x``, computed once."""
        from onnx import helper, numpy_helper

        if x not in self._acts:
            c, p = self.prefix, f"{self.prefix}{x}/"
            if self.opset >= 18:  # ReduceMax takes its axes as an input from opset 18
                self.inits.append(numpy_helper.from_array(np.array([-1], np.int64), p + "axes"))
                reduce = helper.make_node("ReduceMax", [p + "abs", p + "axes"], [p + "amax"], keepdims=1)
            else:
                reduce = helper.make_node("ReduceMax", [p + "abs"], [p + "amax"], axes=[-1], keepdims=1)
            self.nodes += [
                helper.make_node("Abs", [x], [p + "abs"]),
                reduce,  # [..., 1]
                helper.make_node("Max", [p + "amax", c + "tiny"], [p + "amaxc"]),
                helper.make_node("Div", [p + "amaxc", c + "c127"], [p + "scale"]),  # [..., 1]
                helper.make_node("Div", [x, p + "scale"], [p + "y"]),  # [..., K] in [-127, 127]
                helper.make_node("QuantizeLinear", [p + "y", c + "one", c + "zp"], [p + "q"]),  # uint8
            ]
            self._acts[x] = (p + "q", p + "scale")
        return self._acts[x]

    def weight(self, name: str, w: np.ndarray, transposed: bool) -> tuple[str, str]:
        """(int8 [K, N], scale [N]) initializer names of float weight ``name`` (``w`` [K, N])."""
        from onnx import numpy_helper

        key = (name, transposed)
        if key not in self._weights:
            wq, ws = quantize_weight(w)
            n = f"{self.prefix}{name}{'/T' if transposed else ''}"
            self.inits += [numpy_helper.from_array(wq, n + "/q"), numpy_helper.from_array(ws, n + "/scale")]
            self._weights[key] = (n + "/q", n + "/scale")
        self.replaced.add(name)
        return self._weights[key]

    def product(self, node: Any, found: tuple[str, np.ndarray, np.ndarray | None, bool]) -> None:
        """The integer replacement of weight product ``node`` (``weight_product``)."""
        from onnx import helper, numpy_helper

        x, w, bias, transposed = found
        q, s = self.activation(x)
        wq, ws = self.weight(node.input[1], w, transposed)
        p, y = f"{self.prefix}{node.name or node.output[0]}/", node.output[0]
        self.nodes += [  # float(int32 product) * w_scale (one rounding, as Cast + Mul), * row scale
            helper.make_node("MatMulIntegerToFloat", [q, wq, self.prefix + "one", ws, self.prefix + "zp"],
                             [p + "w"], domain=MS_DOMAIN),
            helper.make_node("Mul", [p + "w", s], [p + "y" if bias is not None else y]),
        ]
        if bias is not None:
            self.replaced.add(node.input[2])
            self.inits.append(numpy_helper.from_array(bias, p + "bias"))
            self.nodes.append(helper.make_node("Add", [p + "y", p + "bias"], [y]))


def quantize_rowwise(model: Any) -> Any:
    """A copy of the float32 ``ModelProto`` with row-wise INT8 weight products (module
    docstring). The graph's inputs, outputs and every other node are unchanged."""
    from onnx import helper

    out = type(model)()
    out.CopyFrom(model)
    g = out.graph
    inits = {t.name: t for t in g.initializer}
    rw = _Rewriter(_opset(out))
    for node in g.node:
        found = weight_product(node, inits)
        if found is None:
            rw.nodes.append(node)
        else:
            rw.product(node, found)
    if not any(o.domain == MS_DOMAIN for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    still = {i for n in rw.nodes for i in n.input} | {o.name for o in g.output}
    keep = [t for t in g.initializer if t.name not in rw.replaced or t.name in still]  # drop unread weights
    del g.node[:]
    g.node.extend(rw.nodes)
    del g.initializer[:]
    g.initializer.extend(keep + rw.inits)
    return out


__all__ = ["ACT_QMAX", "ACT_ZERO_POINT", "WEIGHT_QMAX", "quantize_rowwise", "quantize_weight", "weight_product"]
