"""Static shape folding and dead-node removal on exported graphs (torch-free graph surgery).

The TorchScript exporter writes ``Tensor.chunk``/``split`` of a ``[batch, 3H]`` gate vector as
``Shape -> Gather -> Add -> Div -> Mul -> Slice`` chains: the slice bounds are computed at run
time from the tensor's shape although its gate axis is fixed. ONNX Runtime folds constants, but
not a ``Shape`` of a tensor with a symbolic batch axis, so every decoder step ran those small
nodes (about 1 us each at batch 1; a GRU step had 14 of them). ``fold_static_shapes`` evaluates
them at export: a ``Shape`` whose gathered or sliced axes are fixed (ONNX shape inference), and
then every node whose inputs are all constants, become initializers. Only integer shape
arithmetic is folded (outputs of at most ``MAX_FOLDED`` elements); float computations are left
as they are, so the graph computes exactly what it computed before.

``prune`` removes the nodes (and initializers) no graph output needs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_FOLDED = 64  # largest constant (elements) the folding writes
# ops evaluated when every input is constant: index and shape arithmetic only
FOLDABLE = frozenset({"Add", "Sub", "Mul", "Div", "Cast", "Unsqueeze", "Squeeze", "Concat", "Gather", "Slice",
                      "Reshape", "Range", "Equal", "Neg", "Identity", "Floor", "Ceil", "Min", "Max", "Abs",
                      "Constant", "ReduceProd", "ReduceSum"})


def _static_dims(model: Any) -> dict[str, list[int | None]]:
    """Every value's dims from ONNX shape inference (None: symbolic or unknown)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    out: dict[str, list[int | None]] = {}
    for vi in (*g.input, *g.value_info, *g.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            out[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    return out


def _evaluate(node: Any, values: list[np.ndarray], opset: list[Any]) -> list[np.ndarray] | None:
    """``node`` run on constant ``values`` (``onnx.reference``), or None when it cannot run."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    names = [f"in{i}" for i in range(len(values))]
    inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
              for n, v in zip(names, values)]
    outputs = [helper.make_tensor_value_info(f"out{i}", 0, None) for i in range(len(node.output))]
    one = helper.make_node(node.op_type, [names[i] if name else "" for i, name in enumerate(node.input)],
                           [o.name for o in outputs], domain=node.domain)
    one.attribute.extend(node.attribute)
    graph = helper.make_graph([one], "fold", [i for i, n in zip(inputs, node.input) if n], outputs)
    try:
        model = helper.make_model(graph, opset_imports=opset)
        result = ReferenceEvaluator(model).run(None, {n: v for n, v, name in zip(names, values, node.input) if name})
    except Exception:  # noqa: BLE001 - an op the reference cannot run: leave the node alone
        return None
    return [np.asarray(r) for r in result]


def fold_static_shapes(model: Any) -> int:
    """Fold the shape arithmetic of ``model`` (``onnx.ModelProto``, changed in place; see the
    module docstring); returns the number of nodes removed."""
    from onnx import numpy_helper

    g = model.graph
    dims = _static_dims(model)
    const: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in g.initializer
                                    if int(np.prod(t.dims)) <= MAX_FOLDED}
    folded: dict[str, np.ndarray] = {}  # values computed here
    for node in g.node:  # constants first: the exporter may place them after their readers' inputs
        value = next((a.t for a in node.attribute if a.name == "value"), None) if node.op_type == "Constant" else None
        if value is not None and int(np.prod(value.dims)) <= MAX_FOLDED:
            const[node.output[0]] = folded[node.output[0]] = numpy_helper.to_array(value)
    for node in g.node:
        if node.domain not in ("", "ai.onnx") or any(a.type in (5, 10) for a in node.attribute):  # GRAPH(S)
            continue
        out: list[np.ndarray] | None = None
        if node.op_type == "Shape":
            shape = dims.get(node.input[0])
            start, end = node_attr(node, "start", 0), node_attr(node, "end", None)
            if shape is not None:
                sliced = shape[start:end] if end is not None else shape[start:]
                if all(d is not None for d in sliced):
                    out = [np.array(sliced, dtype=np.int64)]
                else:
                    folded_shape = _partial_shape(node, shape, start, end, g, const)
                    if folded_shape:
                        folded.update(folded_shape)
                        const.update(folded_shape)
                    continue
        elif node.op_type in FOLDABLE and all(not n or n in const for n in node.input):
            out = _evaluate(node, [const[n] for n in node.input if n], list(model.opset_import))
        if out is None or any(o.size > MAX_FOLDED or o.dtype.kind == "f" and node.op_type != "Constant"
                              for o in out):
            continue
        for name, value in zip(node.output, out):
            const[name] = folded[name] = value
    if not folded:
        return 0
    outputs = {o.name for o in g.output}
    before = len(g.node)
    kept = [n for n in g.node if not all(o in folded for o in n.output)]
    read = {name for n in kept for name in n.input} | outputs
    del g.node[:]
    g.node.extend(kept)
    have = {t.name for t in g.initializer}
    g.initializer.extend(numpy_helper.from_array(v, name) for name, v in folded.items()
                         if name in read and name not in have)
    prune(model)
    return before - len(g.node)


def _partial_shape(node: Any, shape: list[int | None], start: int, end: int | None, g: Any,
                   const: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Values of the readers of a ``Shape`` with some symbolic axes that take fixed axes only:
    ``Gather(shape, constant index)``."""
    axes = shape[start:end] if end is not None else shape[start:]
    out = {}
    for reader in g.node:
        if reader.op_type != "Gather" or not reader.input or reader.input[0] != node.output[0]:
            continue
        index = const.get(reader.input[1])
        if index is None or index.dtype.kind not in "iu":
            continue
        picked = np.take(np.array([-1 if d is None else d for d in axes], dtype=np.int64), index)
        if (picked >= 0).all():
            out[reader.output[0]] = picked
    return out


def node_attr(node: Any, name: str, default: Any) -> Any:
    """The value of ``node``'s attribute ``name``, ``default`` when it has none."""
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def subgraph_reads(node: Any) -> set[str]:
    """Every name the nodes of ``node``'s subgraphs (If/Loop bodies) read, recursively."""
    from onnx import AttributeProto

    names: set[str] = set()
    for attr in node.attribute:
        for graph in [attr.g] if attr.type == AttributeProto.GRAPH else list(attr.graphs):
            for inner in graph.node:
                names.update(inner.input)
                names |= subgraph_reads(inner)
    return names


def prune(model_or_graph: Any, outputs: set[str] | None = None) -> int:
    """Remove the nodes no output of the graph needs (``outputs``: these names instead of the
    graph's outputs), and the initializers nothing reads; returns the number of nodes removed.
    Takes a ``ModelProto`` or a ``GraphProto`` (a ``Loop`` body: its outer-scope reads stay)."""
    g = getattr(model_or_graph, "graph", model_or_graph)
    needed = {o.name for o in g.output} if outputs is None else set(outputs)
    kept = []
    for node in reversed(g.node):
        if any(o in needed for o in node.output if o):
            kept.append(node)
            needed.update(node.input)
            needed |= subgraph_reads(node)
    kept.reverse()
    removed = len(g.node) - len(kept)
    del g.node[:]
    g.node.extend(kept)
    inits = [t for t in g.initializer if t.name in needed]
    del g.initializer[:]
    g.initializer.extend(inits)
    return removed


__all__ = ["FOLDABLE", "MAX_FOLDED", "fold_static_shapes", "node_attr", "prune", "subgraph_reads"]
