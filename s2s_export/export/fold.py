"""Embedding folding: an embedding lookup followed by a fixed projection becomes one lookup
(torch-free graph surgery on the exported ONNX graphs, applied by ``export_model``).

An RNN reads its input only through its input weights: ``x_t W^T + b`` with ``x_t = E[token]``
is row ``token`` of the table ``T = E W^T + b``. Two rewrites use that:

* **Table** (the decoder step, any graph): ``Gather(E [V,D], ids)`` whose output only feeds
  ``Gemm(x, W, b)`` or ``MatMul(x, W)`` (``+ b``: an ``Add`` of a constant) with constant weights
  becomes ``Gather(T [V,N], ids)``: one matrix-vector product less per step (for a GRU cell the
  ``[3H,E]`` input product, for an LSTM cell the ``[4H,E]`` one). Applied when the tables hold no
  more values than the weights they make unnecessary (``W`` and ``b``, and ``E`` when nothing else
  reads it), so a bundle never grows: g2p_en's decoder (V 74, E 256, 3H 768) folds 215 k values into
  57 k; an NMT-sized vocabulary (V 8000) does not fold.
* **One-hot** (the encoder): ONNX ``RNN``/``GRU``/``LSTM`` nodes take their input weights as an
  input, and compute ``X W^T`` for the whole sequence in one product. When the input is
  ``Gather(E [V,D], src)`` (through row-wise ``Gather``/``Transpose`` nodes that keep the feature
  axis last, as ``pack_padded_sequence`` exports) and V < D, it becomes ``OneHot(src, V)`` and
  ``W`` becomes ``W E^T`` ([dirs, G*H, V]): the product shrinks by D/V (g2p_en: 29 graphemes
  instead of 256 embedding columns) and a one-hot row times ``W E^T`` is exactly a table row.

Exactness: the tables are computed in float64 and rounded once to float32; the graphs they
replace round every product's float32 accumulation, so outputs differ by float32 rounding
(measured on g2p_en: max |delta| of the encoder state and the step's log-probs below 1e-6; the
export's parity check holds every output to atol 1e-4 / rtol 1e-3 against PyTorch). Only float32
initializers are folded; a graph without the patterns is returned unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .simplify import node_attr, subgraph_reads

_RNN_OPS = ("RNN", "GRU", "LSTM")


@dataclass(frozen=True)
class Folded:
    """One rewrite: ``kind`` (``table`` or ``one-hot``), the embedding initializer, the node
    whose weights took it, and the number of weight values before and after."""

    kind: str
    embedding: str
    into: str
    values_before: int
    values_after: int

    def __str__(self) -> str:
        return (f"{self.kind}: {self.embedding} into {self.into} "
                f"({self.values_before:,} -> {self.values_after:,} weight values)")


class _Graph:
    """Indexes of one ``GraphProto``: producers, readers, float32 initializers."""

    def __init__(self, graph: Any) -> None:
        from onnx import numpy_helper

        self.g = graph
        self.nodes = list(graph.node)  # one wrapper per node: identity comparisons hold
        self.inits = {t.name: t for t in graph.initializer}
        self.arrays: dict[str, np.ndarray] = {}
        self._numpy = numpy_helper.to_array
        self.outputs = {o.name for o in graph.output}
        self.readers: dict[str, list[tuple[Any, int]]] = {}
        for node in self.nodes:
            for i, name in enumerate(node.input):
                self.readers.setdefault(name, []).append((node, i))
            for name in subgraph_reads(node):
                self.readers.setdefault(name, []).append((node, -1))

    def array(self, name: str) -> np.ndarray | None:
        """The float32 initializer ``name`` as numpy (None if it is not one)."""
        t = self.inits.get(name)
        if t is None or t.data_type != 1:  # FLOAT
            return None
        if name not in self.arrays:
            self.arrays[name] = self._numpy(t)
        return self.arrays[name]

    def only_reader(self, name: str, rank: int | None = None) -> Any:
        """The single node reading ``name`` (not a graph output), else None. With ``rank``,
        readers that only take the size of an axis other than the last (``Shape`` -> ``Gather``
        of a constant index) do not count: a one-hot input changes only the last axis."""
        readers = [(n, i) for n, i in self.readers.get(name, []) if rank is None or not self._sizes_only(n, rank)]
        if name in self.outputs or len(readers) != 1 or readers[0][1] < 0:
            return None
        return readers[0][0]

    def constant(self, name: str) -> np.ndarray | None:
        """The value of ``name`` when an initializer or a ``Constant`` node gives it."""
        from onnx import numpy_helper

        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        for node in self.nodes:
            if node.op_type == "Constant" and node.output and node.output[0] == name:
                value = next((a for a in node.attribute if a.name == "value"), None)
                return None if value is None else numpy_helper.to_array(value.t)
        return None

    def _sizes_only(self, node: Any, rank: int) -> bool:
        """``node`` is a ``Shape`` whose every reader gathers one axis other than the last."""
        if node.op_type != "Shape" or node.attribute or node.output[0] in self.outputs:
            return False
        for reader, i in self.readers.get(node.output[0], []):
            index = self.constant(reader.input[1]) if reader.op_type == "Gather" and i == 0 else None
            if index is None or index.ndim != 0 or int(index) % rank == rank - 1:
                return False
        return True


def _is_embedding(gr: _Graph, node: Any) -> np.ndarray | None:
    """E [V,D] float32 when ``node`` is a row lookup ``Gather(E, ids, axis=0)``."""
    if node.op_type != "Gather" or node.domain not in ("", "ai.onnx") or node_attr(node, "axis", 0) != 0:
        return None
    emb = gr.array(node.input[0])
    return emb if emb is not None and emb.ndim == 2 else None


def _projection(gr: _Graph, reader: Any, index: int) -> tuple[np.ndarray, list[Any], str, list[str]] | None:
    """For a reader of an embedding lookup's output: (table rows' projection ``f(E) = E W^T + b``
    as a function's pieces: W [D,N] float64, the nodes replaced, the output they produced, the
    weight initializers they read), or None when the reader is not a constant projection."""
    if index != 0:
        return None
    if reader.op_type == "Gemm" and reader.domain in ("", "ai.onnx"):
        if node_attr(reader, "transA", 0):
            return None
        w = gr.array(reader.input[1])
        if w is None or w.ndim != 2:
            return None
        w = (w.T if node_attr(reader, "transB", 0) else w).astype(np.float64) * float(node_attr(reader, "alpha", 1.0))
        names = [reader.input[1]]
        bias = None
        if len(reader.input) > 2 and reader.input[2]:
            bias = gr.array(reader.input[2])
            if bias is None or bias.size not in (1, w.shape[1]):
                return None
            bias = bias.reshape(-1).astype(np.float64) * float(node_attr(reader, "beta", 1.0))
            names.append(reader.input[2])
        return _with_bias(w, bias), [reader], reader.output[0], names
    if reader.op_type == "MatMul" and reader.domain in ("", "ai.onnx"):
        w = gr.array(reader.input[1])
        if w is None or w.ndim != 2:
            return None
        w, nodes, out, names = w.astype(np.float64), [reader], reader.output[0], [reader.input[1]]
        add = gr.only_reader(out)
        if add is not None and add.op_type == "Add" and add.domain in ("", "ai.onnx"):
            other = add.input[1] if add.input[0] == out else add.input[0]
            bias = gr.array(other)
            if bias is not None and bias.size == w.shape[1] and bias.ndim <= 1:
                return _with_bias(w, bias.reshape(-1).astype(np.float64)), [reader, add], add.output[0], \
                    names + [other]
        return _with_bias(w, None), nodes, out, names
    return None


def _with_bias(w: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """W [D,N] and the bias as one [D+1, N] array (last row: the bias, zeros without one)."""
    return np.vstack([w, np.zeros((1, w.shape[1])) if bias is None else np.broadcast_to(bias, (1, w.shape[1]))])


def _sole_reader_values(gr: _Graph, names: list[str], nodes: list[Any]) -> int:
    """How many values of the initializers ``names`` become unused once ``nodes`` are gone."""
    gone = {id(n) for n in nodes}
    total = 0
    for name in set(names):
        if name not in gr.outputs and all(id(r) in gone for r, _ in gr.readers.get(name, [])):
            total += int(np.prod(gr.inits[name].dims))
    return total


def _fold_tables(gr: _Graph) -> list[Folded]:
    """The table rewrite (module docstring) on every embedding lookup of ``gr``."""
    from onnx import helper, numpy_helper

    done: list[Folded] = []
    for node in gr.nodes:
        emb = _is_embedding(gr, node)
        out = node.output[0] if node.output else ""
        readers = gr.readers.get(out, [])
        if emb is None or not readers or out in gr.outputs:
            continue
        folds = [_projection(gr, r, i) for r, i in readers]
        if any(f is None for f in folds) or any(f[0].shape[0] != emb.shape[1] + 1 for f in folds if f):
            continue
        plans = [f for f in folds if f is not None]
        removed = [node, *(n for p in plans for n in p[1])]
        before = _sole_reader_values(gr, [node.input[0], *(w for p in plans for w in p[3])], removed)
        after = sum(emb.shape[0] * p[0].shape[1] for p in plans)
        if after > before:
            continue  # the tables would hold more values than they replace
        nodes = gr.nodes
        at = next(i for i, n in enumerate(nodes) if n is node)
        new_nodes = []
        for k, (w, _, output, names) in enumerate(plans):
            table = (emb.astype(np.float64) @ w[:-1] + w[-1]).astype(np.float32)  # [V,N]
            name = _unique(gr, f"{node.input[0]}@{names[0]}")
            gr.g.initializer.append(numpy_helper.from_array(table, name))
            new_nodes.append(helper.make_node("Gather", [name, node.input[1]], [output], axis=0,
                                              name=_unique_node(gr, f"{node.name or out}/folded{k}")))
        keep = [n for n in nodes if all(n is not r for r in removed)]
        keep[at:at] = new_nodes  # where the lookup was: its ids are defined before it
        del gr.g.node[:]
        gr.g.node.extend(keep)
        done.append(Folded("table", node.input[0], ", ".join(p[1][0].name or p[1][0].op_type for p in plans),
                           before, after))
        _drop_unused_initializers(gr)
        break  # the indexes are stale after a rewrite: one per call (fold_embeddings repeats)
    return done


def _unique(gr: _Graph, base: str) -> str:
    names = set(gr.inits) | {o for n in gr.g.node for o in n.output} | {i.name for i in gr.g.input}
    name, k = base, 1
    while name in names:
        name, k = f"{base}_{k}", k + 1
    return name


def _unique_node(gr: _Graph, base: str) -> str:
    names = {n.name for n in gr.g.node}
    name, k = base, 1
    while name in names:
        name, k = f"{base}_{k}", k + 1
    return name


def _drop_unused_initializers(gr: _Graph) -> None:
    read = {name for n in gr.g.node for name in n.input} | {name for n in gr.g.node for name in subgraph_reads(n)}
    read |= gr.outputs
    keep = [t for t in gr.g.initializer if t.name in read]
    gone = {t.name for t in gr.g.initializer} - {t.name for t in keep}
    del gr.g.initializer[:]
    gr.g.initializer.extend(keep)
    inputs = [v for v in gr.g.input if v.name not in gone]  # initializers listed as inputs (old IR)
    del gr.g.input[:]
    gr.g.input.extend(inputs)


def _ranks(model: Any) -> dict[str, int]:
    """Rank of every value ONNX shape inference knows in the main graph."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - no ranks: the one-hot rewrite is skipped
        return {}
    g = inferred.graph
    out = {}
    for vi in (*g.input, *g.value_info, *g.output):
        if vi.type.tensor_type.HasField("shape"):
            out[vi.name] = len(vi.type.tensor_type.shape.dim)
    for t in g.initializer:
        out[t.name] = len(t.dims)
    return out


def _row_wise(node: Any, ranks: dict[str, int]) -> bool:
    """Whether ``node`` moves whole feature rows (last axis kept last, values untouched)."""
    if node.domain not in ("", "ai.onnx"):
        return False
    if node.op_type == "Identity":
        return True
    rank = ranks.get(node.input[0])
    if rank is None:
        return False
    if node.op_type == "Transpose":
        perm = list(node_attr(node, "perm", list(range(rank))[::-1]))
        return bool(perm) and perm[-1] == rank - 1
    if node.op_type == "Gather":
        axis = int(node_attr(node, "axis", 0))
        axis = axis + rank if axis < 0 else axis
        return 0 <= axis < rank - 1
    return False


def _input_lookup(gr: _Graph, rnn: Any, ranks: dict[str, int]) -> tuple[Any, np.ndarray] | None:
    """The embedding lookup (node, E) whose rows reach ``rnn``'s input X through row-wise nodes
    only, each read by nothing else (but the sizes of other axes), or None."""
    producers = {o: n for n in gr.nodes for o in n.output}
    name, reader = rnn.input[0], rnn
    while name in producers:
        node = producers[name]
        if gr.only_reader(name, ranks.get(name)) is not reader:
            return None
        emb = _is_embedding(gr, node)
        if emb is not None:
            return node, emb
        if not _row_wise(node, ranks):
            return None
        name, reader = node.input[0], node
    return None


def _fold_one_hot(model: Any, gr: _Graph) -> list[Folded]:
    """The one-hot rewrite (module docstring) on every recurrent node of ``gr``."""
    from onnx import helper, numpy_helper

    ranks = _ranks(model)
    done: list[Folded] = []
    for rnn in gr.nodes:
        if rnn.op_type not in _RNN_OPS or rnn.domain not in ("", "ai.onnx") or len(rnn.input) < 2:
            continue
        w = gr.array(rnn.input[1])  # [dirs, G*H, D]
        if w is None or w.ndim != 3 or gr.only_reader(rnn.input[1]) is not rnn:
            continue
        found = _input_lookup(gr, rnn, ranks)
        if found is None:
            continue
        node, emb = found
        V, D = emb.shape
        if V >= D or w.shape[2] != D:
            continue
        folded = np.einsum("ghd,vd->ghv", w.astype(np.float64), emb.astype(np.float64)).astype(np.float32)
        gr.inits[rnn.input[1]].CopyFrom(numpy_helper.from_array(folded, rnn.input[1]))
        depth = _unique(gr, f"{node.input[0]}/one_hot_depth")
        values = _unique(gr, f"{node.input[0]}/one_hot_values")
        gr.g.initializer.extend([numpy_helper.from_array(np.array(V, dtype=np.int64), depth),
                                 numpy_helper.from_array(np.array([0.0, 1.0], dtype=np.float32), values)])
        one_hot = helper.make_node("OneHot", [node.input[1], depth, values], [node.output[0]], axis=-1,
                                   name=_unique_node(gr, f"{node.name or node.output[0]}/one_hot"))
        nodes = [one_hot if n is node else n for n in gr.nodes]
        del gr.g.node[:]
        gr.g.node.extend(nodes)
        before = int(w.size) + (int(emb.size) if gr.only_reader(node.input[0]) is node else 0)
        done.append(Folded("one-hot", node.input[0], rnn.name or rnn.op_type, before, int(folded.size)))
        _drop_unused_initializers(gr)
        break  # the indexes and ranks are stale after a rewrite: one per call (fold_embeddings repeats)
    return done


def fold_embeddings(model: Any) -> list[Folded]:
    """Apply both rewrites (module docstring) to ``model`` (an ``onnx.ModelProto``, changed in
    place) until none applies; returns what was folded (empty: the graph is unchanged)."""
    done: list[Folded] = []
    while True:
        gr = _Graph(model.graph)
        step = _fold_one_hot(model, gr) or _fold_tables(gr)
        if not step:
            return done
        done += step


__all__ = ["Folded", "fold_embeddings"]
