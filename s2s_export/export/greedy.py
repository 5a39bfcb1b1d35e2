"""The fused greedy graph: greedy decoding as one ONNX ``Loop`` over the decoder step (torch-free).

Greedy search at small batch sizes spends as much time in Python around each step (feeds,
argmax bookkeeping, the ORT call itself) as in the step of a small model; this graph moves that
loop into ONNX Runtime. It is built from a bundle's ``decoder_step`` graph (any precision), by
graph surgery only: the step's nodes become the ``Loop`` body unchanged, its weights stay in the
outer graph (read from the body as outer-scope values), except what the loop never needs: the
step's ``Gather(state, reorder)`` (rows never move in the loop: identities) and the nodes only
its other outputs need (``attn``...). ONNX Runtime on the CPU only: TensorRT
and the CUDA backend run the step graph (``If``/``Loop`` are what TensorRT's compatibility rules
avoid). Not built for graphs over 2 GB (external data). Cost: a second copy of the decoder
weights, on disk and (once greedy decoding runs) in memory.

    inputs:  max_lengths [batch] int64 (per sentence, >= 1), every static, every state
             (the encoder's outputs, same names)
    (``BundleIO.greedy`` declares this IO)
    outputs: ids [batch, steps] int64 (PAD after a sentence's end), scores [batch] float64
             (sum of the chosen tokens' log-probs, EOS included), lengths [batch] int64

Semantics = ``runtime.search.greedy_search`` without its optional features: start from the
decoder's start token (the target BOS, or the framing's ``decoder_start``), take
``topk_ids[:, 0]`` every step (the step's top-K already leaves out the tokens never generated),
a row is done at EOS or at its maximum length; the loop stops when every row is done. The ids
come from the bundle's conventions (``conventions.Conventions``), as constants of the graph. Done rows keep running (batch rows never leave the loop), their
outputs are masked. Scores add float32 log-probs in float64, as the Python loop does, so the
two paths agree exactly.

Body (per iteration): tokens [batch], every state, done [batch] bool, scores [batch] f64,
lengths [batch] int64 -> the same, plus the scan output ``ids`` (the emitted token or PAD).

The combined graph (``build_encoder_greedy``, ``encoder_greedy.onnx``, ``BundleIO.encoder_greedy``):
the encoder's nodes followed by this graph's, so a batch decodes in one session run from
``src [batch, src_len]``, ``src_lengths [batch]`` and ``max_lengths [batch]`` to the same
``ids``, ``scores``, ``lengths``: no second session call and no static or state tensor through
Python between the encoder and the loop, and the encoder's operators run on the loop session's
threads (busy-waiting with the default ``spinning="step"``, where a separate encoder session's
threads sleep and pay a wake-up). Its nodes are the two graphs' unchanged, so it computes
exactly what they compute. Cost: a third copy of the decoder weights on disk (``greedy.onnx``
stays for older runtimes); the runtime loads only one of the two fused graphs.
"""

from __future__ import annotations

import os
from typing import Any

from ..conventions import Conventions
from ..graphio import BATCH, BundleIO, next_name
from .onnx_io import value_info
from .simplify import prune, subgraph_reads


def _carried(name: str) -> str:
    return f"carried/{name}"  # body-side name of a state (an outer input has the plain name)


def _is_reorder(node: Any) -> bool:
    """Whether ``node`` is the step's ``Gather(state, reorder)`` (``StepGraph``: rows of the
    previous state, an identity when rows never move)."""
    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
    return node.op_type == "Gather" and len(node.input) == 2 and node.input[1] == "reorder" and axis == 0


def build_greedy(step: Any, io: BundleIO, conv: Conventions) -> Any:
    """The fused greedy ``ModelProto`` of a ``decoder_step`` ``ModelProto`` (see the module);
    ``conv``: the start token, EOS and the filler of ``ids`` after a row's end (the target pad,
    else EOS)."""
    start, eos = conv.start_id, int(conv.tgt.eos)  # type: ignore[arg-type]
    pad = conv.tgt.pad if conv.tgt.pad is not None else eos
    from onnx import TensorProto as TP
    from onnx import helper

    def const(name: str, dtype: int, value: Any, dims: list[int] | None = None) -> Any:
        vals = value if isinstance(value, list) else [value]
        return helper.make_node("Constant", [], [name], name=name,
                                value=helper.make_tensor(name, dtype, dims if dims is not None else [], vals))

    def vi(name: str, dtype: int, shape: list[Any]) -> Any:
        return helper.make_tensor_value_info(name, dtype, shape)

    g = step.graph
    state = [t.name for t in io.state]
    rename = {s: _carried(s) for s in state}
    # rows never move inside the loop: the step's Gather(state, reorder) are identities, dropped
    for node in g.node:
        if _is_reorder(node) and node.input[0] in rename:
            rename[node.output[0]] = rename[node.input[0]]
    body_nodes = []
    for node in g.node:
        if _is_reorder(node) and node.input[0] in rename:
            continue
        copy = type(node)()
        copy.CopyFrom(node)
        for i, name in enumerate(copy.input):
            if name in rename:
                copy.input[i] = rename[name]
        body_nodes.append(copy)
    p = "greedy/"  # names of the added nodes and values
    body_nodes += [
        const(p + "first", TP.INT64, 0),
        helper.make_node("Gather", ["topk_ids", p + "first"], [p + "tok"], axis=1),  # [batch] argmax
        helper.make_node("Gather", ["topk_log_probs", p + "first"], [p + "lp32"], axis=1),
        helper.make_node("Cast", [p + "lp32"], [p + "lp"], to=TP.DOUBLE),
        const(p + "zero_f64", TP.DOUBLE, 0.0), const(p + "eos", TP.INT64, eos),
        const(p + "pad", TP.INT64, pad),
        helper.make_node("Where", ["done", p + "zero_f64", p + "lp"], [p + "lp_alive"]),
        helper.make_node("Add", ["scores", p + "lp_alive"], [p + "scores_out"]),
        helper.make_node("Not", ["done"], [p + "alive"]),
        helper.make_node("Cast", [p + "alive"], [p + "alive_i"], to=TP.INT64),
        helper.make_node("Add", ["lengths", p + "alive_i"], [p + "lengths_out"]),
        helper.make_node("Where", ["done", p + "pad", p + "tok"], [p + "emitted"]),
        helper.make_node("Equal", [p + "tok", p + "eos"], [p + "is_eos"]),
        helper.make_node("GreaterOrEqual", [p + "lengths_out", "max_lengths"], [p + "at_max"]),
        helper.make_node("Or", ["done", p + "is_eos"], [p + "done1"]),
        helper.make_node("Or", [p + "done1", p + "at_max"], [p + "done_out"]),
        helper.make_node("Cast", [p + "done_out"], [p + "done_i"], to=TP.INT32),
        helper.make_node("ReduceMin", [p + "done_i"], [p + "all_done_i"], keepdims=0),
        helper.make_node("Cast", [p + "all_done_i"], [p + "all_done"], to=TP.BOOL),
        helper.make_node("Not", [p + "all_done"], [p + "cond_out"]),
    ]
    batch = [BATCH]
    body = helper.make_graph(
        body_nodes, "greedy_body",
        [vi(p + "iteration", TP.INT64, []), vi(p + "cond_in", TP.BOOL, []), vi("tokens", TP.INT64, batch),
         *(value_info(t, _carried(t.name)) for t in io.state),
         vi("done", TP.BOOL, batch), vi("scores", TP.DOUBLE, batch), vi("lengths", TP.INT64, batch)],
        [vi(p + "cond_out", TP.BOOL, []), vi(p + "tok", TP.INT64, batch),
         *(value_info(t, next_name(t.name)) for t in io.state),
         vi(p + "done_out", TP.BOOL, batch), vi(p + "scores_out", TP.DOUBLE, batch),
         vi(p + "lengths_out", TP.INT64, batch), vi(p + "emitted", TP.INT64, batch)])
    prune(body)  # what only the step's other outputs need (attn, ...) never runs
    outer_nodes = [
        helper.make_node("ReduceMax", ["max_lengths"], [p + "trips"], keepdims=0),
        const(p + "true", TP.BOOL, True),
        helper.make_node("Shape", ["max_lengths"], [p + "batch_shape"]),
        helper.make_node("ConstantOfShape", [p + "batch_shape"], [p + "bos"],
                         value=helper.make_tensor(p + "bos_v", TP.INT64, [1], [start])),
        helper.make_node("ConstantOfShape", [p + "batch_shape"], [p + "done0"],
                         value=helper.make_tensor(p + "done_v", TP.BOOL, [1], [False])),
        helper.make_node("ConstantOfShape", [p + "batch_shape"], [p + "scores0"],
                         value=helper.make_tensor(p + "scores_v", TP.DOUBLE, [1], [0.0])),
        helper.make_node("ConstantOfShape", [p + "batch_shape"], [p + "lengths0"],
                         value=helper.make_tensor(p + "lengths_v", TP.INT64, [1], [0])),
        # the step gathers state[reorder]: the identity here (rows never move)
        const(p + "zero_s", TP.INT64, 0), const(p + "one_s", TP.INT64, 1), const(p + "axis0", TP.INT64, [0], [1]),
        helper.make_node("Squeeze", [p + "batch_shape", p + "axis0"], [p + "batch"]),
        helper.make_node("Range", [p + "zero_s", p + "batch", p + "one_s"], ["reorder"]),
        helper.make_node("Loop", [p + "trips", p + "true", p + "bos", *state, p + "done0", p + "scores0",
                                  p + "lengths0"],
                         [p + "last_tokens", *(p + "last_" + s for s in state), p + "done", "scores", "lengths",
                          p + "ids_tb"], body=body),
        helper.make_node("Transpose", [p + "ids_tb"], ["ids"], perm=[1, 0]),
    ]
    spec = io.greedy
    read = {name for node in body.node for name in (*node.input, *subgraph_reads(node))}
    inputs = [value_info(t) for t in spec.inputs if t.role != "static" or t.name in read]  # statics the body reads
    outputs = [value_info(t) for t in spec.outputs]
    graph = helper.make_graph(outer_nodes, "greedy", inputs, outputs, initializer=list(g.initializer))
    model = helper.make_model(graph, opset_imports=list(step.opset_import), ir_version=step.ir_version,
                              producer_name="s2s-export", doc_string=__doc__.splitlines()[0])
    model.metadata_props.extend(step.metadata_props)  # e.g. the INT8 variant of a quantized step
    prune(model)  # the identity reorder when nothing reads it, weights only the dropped nodes read
    return model


ENCODER_PREFIX = "encoder/"  # the encoder's inner names in the combined graph


def build_encoder_greedy(encoder: Any, greedy: Any, io: BundleIO) -> Any:
    """The combined graph (``BundleIO.encoder_greedy``: src, src_lengths, max_lengths -> ids,
    scores, lengths) of an ``encoder`` ``ModelProto`` and the fused greedy ``ModelProto`` built
    from the same bundle's step (``build_greedy``): the encoder's nodes, then the greedy graph's,
    in one graph, so one session run decodes a batch (no static or state tensor crosses into
    Python). The encoder's nodes and weights are unchanged (its inner names get the prefix
    ``encoder/``); its outputs keep their names, which the greedy nodes read."""
    from onnx import helper

    outer = {t.name for t in (*io.static, *io.state)} | {"src", "src_lengths"}

    def name(n: str) -> str:
        return n if not n or n in outer else ENCODER_PREFIX + n

    eg, gg = encoder.graph, greedy.graph
    nodes = []
    for node in eg.node:
        copy = type(node)()
        copy.CopyFrom(node)
        copy.name = ENCODER_PREFIX + node.name if node.name else ""
        copy.input[:] = [name(n) for n in node.input]
        copy.output[:] = [name(n) for n in node.output]
        nodes.append(copy)
    inits = []
    for t in eg.initializer:
        copy = type(t)()
        copy.CopyFrom(t)
        copy.name = name(t.name)
        inits.append(copy)
    spec = io.encoder_greedy
    graph = helper.make_graph([*nodes, *gg.node], "encoder_greedy", [value_info(t) for t in spec.inputs],
                              [value_info(t) for t in spec.outputs], initializer=[*inits, *gg.initializer])
    model = helper.make_model(graph, opset_imports=list(greedy.opset_import), ir_version=greedy.ir_version,
                              producer_name="s2s-export", doc_string="encoder + fused greedy graph")
    model.metadata_props.extend(greedy.metadata_props)  # e.g. the INT8 variant of a quantized step
    prune(model)  # encoder outputs the step never reads (e.g. a memory without attention)
    return model


def write_greedy(step_path: str | os.PathLike[str], out_path: str | os.PathLike[str], io: BundleIO,
                 conv: Conventions) -> bool:
    """Build the fused greedy graph of ``step_path`` and save it (checked) at ``out_path``.
    Returns False, writing nothing, for a step graph whose weights live in an external data
    file (over 2 GB): such bundles decode with the search's Python loop."""
    import onnx

    step = onnx.load(str(step_path), load_external_data=False)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in step.graph.initializer):
        return False
    model = build_greedy(step, io, conv)
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path))
    return True


def write_encoder_greedy(encoder_path: str | os.PathLike[str], greedy_path: str | os.PathLike[str],
                         out_path: str | os.PathLike[str], io: BundleIO) -> bool:
    """Build the combined encoder + greedy graph (``build_encoder_greedy``) of a bundle's encoder
    and fused greedy graphs and save it (checked) at ``out_path``. Returns False, writing nothing,
    when the encoder's weights live in an external data file (over 2 GB)."""
    import onnx

    encoder = onnx.load(str(encoder_path), load_external_data=False)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in encoder.graph.initializer):
        return False
    model = build_encoder_greedy(encoder, onnx.load(str(greedy_path)), io)
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path))
    return True


__all__ = ["build_encoder_greedy", "build_greedy", "write_encoder_greedy", "write_greedy"]
