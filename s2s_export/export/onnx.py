"""``torch.onnx.export`` of one graph, driven by its ``GraphSpec``, and the checks of the result.

Exporter: the TorchScript one (``dynamo=False``). It maps ``pack_padded_sequence`` to ONNX
LSTM/GRU with ``sequence_lens``, so the encoder honours ``src_lengths`` exactly; the dynamo
exporter cannot, and can silently freeze dynamic axes to the example's sizes.

After the export the graph is made to match its spec exactly:

* inputs the traced function does not read (the TorchScript exporter drops them, e.g. the
  ``memory`` of a model without attention) are declared again as graph inputs, so every graph
  takes exactly the inputs the manifest lists, in its order (ONNX allows unused inputs);
* fixed axes the exporter left unnamed get their value from the spec; a symbolic axis that came
  out fixed ("frozen" to the example's size) is an error.

Before that, a module that returns scratch outputs after the spec's (``EncoderGraph``: the
unpacked output of every packed RNN, which the TorchScript exporter needs to see consumed) has
them removed with every node only they needed; an ONNX RNN/GRU/LSTM whose ``Y`` then has no
reader gets it as an omitted optional output (so a model without attention computes no memory).

Then ``onnx.checker`` (full check) and strict shape inference. One file per graph; weights go to
an external data file ``<graph>.onnx.data`` only when the graph is over 2 GB.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Iterator

import onnx
import torch
from onnx import TensorProto

from ..errors import UnsupportedError
from ..graphio import BLOCKED_METADATA, GraphSpec
from .onnx_io import ONNX_DTYPES, value_info

EXPORTER = "torch.onnx TorchScript"
MIN_OPSET = 17
_TWO_GB = 2**31 - 1



class GraphCheckError(UnsupportedError):
    """The exported graph does not match its spec (a frozen axis, a missing output...)."""


# native (C++) warnings the TorchScript exporter prints for every packed RNN: harmless here,
# because every output shape is checked against the spec after the export
_NOISE = ("The shape inference of prim::PackPadded", "The shape inference of prim::PadPacked")


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Capture file descriptor 2 while the exporter runs; replay what is not known noise."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (e.g. captured): nothing to do
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile(mode="w+b") as buf:
        os.dup2(buf.fileno(), fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            buf.seek(0)
            lines = buf.read().decode(errors="replace").splitlines(keepends=True)
            kept = "".join(ln for ln in lines if not any(n in ln for n in _NOISE))
            if kept:
                sys.stderr.write(kept)


_RNN_OPS = ("RNN", "GRU", "LSTM")


def _subgraph_inputs(node: onnx.NodeProto) -> set[str]:
    """Every name the nodes of ``node``'s subgraphs (If/Loop bodies) read, recursively
    (a superset of the outer-scope values they capture)."""
    names: set[str] = set()
    for attr in node.attribute:
        for graph in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
            for inner in graph.node:
                names.update(inner.input)
                names |= _subgraph_inputs(inner)
    return names


def _drop_scratch_outputs(model: onnx.ModelProto, keep: int) -> None:
    """Remove the graph outputs after the first ``keep``, then every node and initializer that
    only they needed; an RNN/GRU/LSTM ``Y`` (optional output 0) nobody reads becomes ``""``."""
    g = model.graph
    if len(g.output) <= keep:
        return
    del g.output[keep:]
    needed = {o.name for o in g.output}
    kept = []
    for node in reversed(g.node):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(node.input)
            needed |= _subgraph_inputs(node)
    kept.reverse()
    for node in kept:
        if node.op_type in _RNN_OPS and node.domain in ("", "ai.onnx") and node.output and \
                node.output[0] and node.output[0] not in needed:
            node.output[0] = ""
    del g.node[:]
    g.node.extend(kept)
    initializers = [t for t in g.initializer if t.name in needed]
    dropped = {t.name for t in g.initializer} - {t.name for t in initializers}
    del g.initializer[:]
    g.initializer.extend(initializers)
    inputs = [v for v in g.input if v.name not in dropped]  # initializers listed as inputs (old IR)
    del g.input[:]
    g.input.extend(inputs)
    names = {o for n in kept for o in n.output} | {v.name for v in g.input} | {t.name for t in initializers}
    infos = [v for v in g.value_info if v.name in names]
    del g.value_info[:]
    g.value_info.extend(infos)


def _fix_io(model: onnx.ModelProto, spec: GraphSpec) -> None:
    """Declare dropped inputs again, order inputs as the spec, check names/dtypes/axes."""
    g = model.graph
    initializers = {i.name for i in g.initializer}
    have = {v.name: v for v in g.input if v.name not in initializers}
    extra = [v.name for v in g.input if v.name not in initializers and v.name not in spec.input_names]
    if extra:
        raise GraphCheckError(f"{spec.name} graph has unexpected inputs {extra}",
                              "report this: the exporter renamed an input")
    inputs = [have[t.name] if t.name in have else value_info(t) for t in spec.inputs]
    kept = [v for v in g.input if v.name in initializers]
    del g.input[:]
    g.input.extend(inputs + kept)
    outputs = [v.name for v in g.output]
    if outputs != spec.output_names:
        raise GraphCheckError(f"{spec.name} graph outputs are {outputs}, expected {spec.output_names}",
                              "report this: the exporter renamed or merged outputs")
    for vi, t in zip([*inputs, *g.output], [*spec.inputs, *spec.outputs]):
        tt = vi.type.tensor_type
        if tt.elem_type != ONNX_DTYPES[t.dtype]:
            got = TensorProto.DataType.Name(tt.elem_type)
            raise GraphCheckError(f"{spec.name} graph: {t.name} has dtype {got}, expected {t.dtype}",
                                  "make the model return the dtypes it returns in PyTorch")
        dims = tt.shape.dim
        if len(dims) != len(t.shape):
            raise GraphCheckError(f"{spec.name} graph: {t.name} has rank {len(dims)}, expected {len(t.shape)}",
                                  "report this: the exporter changed a rank")
        for i, (d, axis) in enumerate(zip(dims, t.shape)):
            if isinstance(axis, str):
                if d.HasField("dim_value") or d.dim_param != axis:
                    got = d.dim_value if d.HasField("dim_value") else repr(d.dim_param)
                    raise GraphCheckError(
                        f"{spec.name} graph: axis {i} ({axis}) of {t.name} is {got} in the saved graph, "
                        "not symbolic (frozen to the export example's size)",
                        "the model must not specialise on the batch or source length (no Python ints "
                        "taken from tensor shapes in control flow)")
            elif d.HasField("dim_value") and d.dim_value != axis:
                raise GraphCheckError(f"{spec.name} graph: axis {i} of {t.name} is {d.dim_value}, expected {axis}",
                                      "report this: the exporter changed a fixed size")
            else:
                d.Clear()
                d.dim_value = axis


def export_graph(module: torch.nn.Module, args: tuple[torch.Tensor, ...], spec: GraphSpec,
                 path: Path, opset: int) -> list[str]:
    """Export ``module(*args)`` to ``path`` as described by ``spec``; return the files written
    (names relative to ``path.parent``: the graph, plus its external data when over 2 GB)."""
    if opset < MIN_OPSET:
        raise UnsupportedError(f"opset {opset} is too old", f"use --opset {MIN_OPSET} or newer")
    scratch = path.parent / f".{path.stem}.export"
    scratch.mkdir()
    try:
        raw = scratch / path.name
        with warnings.catch_warnings(), _quiet_native_stderr():
            warnings.simplefilter("ignore")  # deprecation notices of the TorchScript exporter
            torch.onnx.export(module, args, str(raw), input_names=spec.input_names,
                              output_names=spec.output_names, dynamic_axes=spec.dynamic_axes(),
                              opset_version=opset, dynamo=False, do_constant_folding=True)
        model = onnx.load(str(raw))  # external data too, if the exporter wrote some
        if getattr(module, "SCRATCH_OUTPUTS", False):
            _drop_scratch_outputs(model, len(spec.outputs))
        _fix_io(model, spec)
        model.producer_name = "s2s-export"
        model.doc_string = f"s2s-export {spec.name} graph ({EXPORTER})"
        weights = sum(len(t.raw_data) + 4 * len(t.float_data) + 8 * len(t.int64_data)
                      for t in model.graph.initializer)
        large = weights > _TWO_GB - (64 << 20)  # protobuf's 2 GB limit, with room for the graph
        files = [path.name]
        if large:
            data = f"{path.name}.data"
            onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data, size_threshold=1024)
            files.append(data)
        else:
            onnx.save_model(model, str(path))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    check_graph(path, spec)
    return files


def record_blocked(path: Path, blocked: tuple[int, ...]) -> None:
    """Record in the step graph's metadata the ids it masks before its top-K
    (``graphio.BLOCKED_METADATA``), so that a manifest edited afterwards cannot declare another
    mask unnoticed (the runtime compares them when the session loads)."""
    model = onnx.load(str(path), load_external_data=False)
    kept = [p for p in model.metadata_props if p.key != BLOCKED_METADATA]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=BLOCKED_METADATA, value=json.dumps(sorted(int(i) for i in blocked)))
    onnx.save(model, str(path))


def optimize_graph(path: Path, spec: GraphSpec) -> list[str]:
    """Rewrite a saved graph in place with the exact, general rewrites of ``fold.py`` (embedding
    + input projection -> one table or a one-hot input) and ``simplify.py`` (shape arithmetic of
    fixed axes folded), then check it again (``check_graph``). Graphs over 2 GB (external
    data) are left as they are. Returns one line per rewrite."""
    from .fold import fold_embeddings
    from .simplify import fold_static_shapes

    model = onnx.load(str(path), load_external_data=False)
    if any(t.data_location == TensorProto.EXTERNAL for t in model.graph.initializer):
        return []
    done = [str(f) for f in fold_embeddings(model)]
    removed = fold_static_shapes(model)
    if removed:
        done.append(f"shape arithmetic of fixed axes: {removed} nodes folded")
    if done:
        onnx.save_model(model, str(path))
        check_graph(path, spec)
    return done


def check_graph(path: Path, spec: GraphSpec) -> None:
    """``onnx.checker`` (full), strict shape inference, and the IO against ``spec``."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GraphCheckError(f"{path.name} fails onnx.checker ({first})",
                              "report this with the model config; try another --opset") from None
    model = onnx.load(str(path), load_external_data=False)
    if [v.name for v in model.graph.input if v.name not in {i.name for i in model.graph.initializer}] \
            != spec.input_names:
        raise GraphCheckError(f"{path.name} inputs do not match the spec", "report this")
    _fix_io(model, spec)  # raises on frozen axes, dtypes or names that differ


__all__ = ["EXPORTER", "MIN_OPSET", "GraphCheckError", "export_graph", "check_graph", "optimize_graph"]
