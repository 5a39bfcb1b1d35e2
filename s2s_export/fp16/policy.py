"""The FP16 policy: which nodes of a seq2seq graph stay in float32 (one small rule set).

TensorRT 11 (and 10 with ``STRONGLY_TYPED``) takes precision from the ONNX graph itself, so the
mixed-precision graph *is* the precision decision. Everything runs in float16 except the nodes
these rules keep in float32; graph inputs and outputs stay float32 (``keep_io_types``: the
runtime and the state buffers see float32 only).

Rules, applied in this order; each FP32 node records the first rule that claimed it:

``sensitive-op``
    Ops whose float16 result breaks decoding: Softmax, LogSoftmax, TopK (ranking near-ties),
    reductions (ReduceSum/Mean/Max/..., e.g. the mean of the attention heads), Exp/Log/Pow/Sqrt,
    CumSum/Range (positions: float16 counts exactly only up to 2048), comparisons
    (Less/Greater/Equal... on lengths, positions and windows), Where (mask fill), ArgMax/ArgMin.
``recurrent-op``
    ONNX LSTM/GRU/RNN (the encoder): the cell state accumulates over the whole source sentence.
``cast-to-float``
    Cast nodes into float (lengths and counters turned into floats) keep their float32 output.
``island``
    The backward closure of every sensitive op through cheap elementwise and data-movement ops
    (Add, Mul, Div, Sigmoid, Where, Not, Unsqueeze, Reshape, ...): the attention scores with
    their scaling and mask, the local-attention window test and its Gaussian
    exp(-(s-p_t)^2/(2 sigma^2)) with p_t, the positions. The closure stops at MatMul/Gemm,
    Concat, Gather and graph inputs, with two exceptions below.
``attention-scores`` (``attention_scores_fp32``)
    The MatMul/Gemm that computes the scores feeding a Softmax stays FP32 too (it is B x S x H
    work, cheap next to the vocabulary projection).
``vocab-projection`` (``vocab_projection_fp32``)
    The MatMul/Gemm feeding the final LogSoftmax (the generator, B x H x V: the biggest matmul
    of the step). Off by default: float16 inputs with float32 accumulation keep top-1 on the
    trained models we measured (below).
``state-accumulator`` (``state_accumulators_fp32``)
    For every state input ``s`` with an output ``next_s``: the nodes on the paths from ``s`` to
    ``next_s`` that cross no MatMul/Gemm (only elementwise and data movement) stay FP32: the
    LSTM cell state c_t = f*c_{t-1} + i*g, the GRU interpolation z*h_{t-1} + (1-z)*n, the
    local-m step counter. These carry a value across every step of the recurrence, where
    float16 rounding would compound. States recomputed by a matmul every step (the
    input-feeding vector) have no such path.
``constant-of-fp32``
    Constants (Constant nodes, ConstantOfShape) whose consumers are all FP32 stay FP32, so that
    a float32 island does not see a value rounded through float16.
``extra-node`` (``extra_fp32_nodes``; ``extra_fp32_op_types`` extends ``sensitive-op``)
    Escape hatches for models outside the zoo.

Measurements (tests/test_fp16.py; tiny models trained on ``reverse``; float16 executed for real
by ``onnx.reference``; 24 test sentences, greedy, teacher-forced errors over the float32 top-k):

* default policy: top-1 agreement 1.000 and greedy exact match 1.000 on luong-local-p, bahdanau
  and seed-global-mha; max top-k log-prob error 1.0e-2 / 1.1e-2 / 2.1e-2 nats;
* attention scores in float16 (``attention_scores_fp32=False``): error 4.1e-2 / 1.6e-2 / 6.1e-2,
  and on luong-local-p top-1 0.994 and exact match 0.958: the scores island matters;
* cell state accumulation in float16 (``state_accumulators_fp32=False``): the one-step error of
  c doubles (3.1e-3 -> 6.9e-3; 6.4e-3 -> 1.1e-2) and over 60 free-running steps the drift of c
  doubles too (0.04 -> 0.06, 0.21 -> 0.44), while the log-prob error stays within noise on these
  short outputs. It matters for long outputs and costs a few elementwise ops: kept FP32;
* the encoder LSTM/GRU in float16 (``recurrent_ops_fp32=False``): encoder output error 2-2.5x
  (1.4e-3 -> 3.0e-3), no effect on top-1 here: kept FP32 (it runs once per sentence);
* the vocabulary projection in float32 (``vocab_projection_fp32=True``) halves the log-prob error
  (1e-2 -> 5e-3) at the cost of the step's biggest matmul running in float32: off by default.

Everything else (embeddings, the decoder LSTM/GRU cell matmuls and activations, the context
matmul, the combine layer and the generator) is float16.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable

SENSITIVE_OPS = frozenset({
    "Softmax", "LogSoftmax", "TopK", "ArgMax", "ArgMin",
    "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceLogSum",
    "ReduceLogSumExp", "ReduceSumSquare", "ReduceL1", "ReduceL2",
    "Exp", "Log", "Pow", "Sqrt", "Reciprocal",
    "CumSum", "Range",
    "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Equal",
    "Where",
})
RECURRENT_OPS = frozenset({"LSTM", "GRU", "RNN"})
# cheap ops the island closure walks through (elementwise or pure data movement)
ELEMENTWISE_OPS = frozenset({
    "Add", "Sub", "Mul", "Div", "Neg", "Abs", "Sigmoid", "Tanh", "Relu", "Clip", "Min", "Max",
    "Not", "And", "Or", "Xor", "Where", "Cast", "Identity", "Unsqueeze", "Squeeze", "Reshape",
    "Flatten", "Transpose", "Expand", "Slice", "Split", "Gather", "Concat", "Constant",
    "ConstantOfShape", "Exp", "Log", "Pow", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round",
    "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Equal", "CumSum", "Range",
})
# ...but the island closure does not cross these (they are real data movement between paths)
CLOSURE_STOPS = frozenset({"Concat", "Gather", "Split"})
MATMUL_OPS = frozenset({"MatMul", "Gemm"})
CONSTANT_OPS = frozenset({"Constant", "ConstantOfShape"})
FLOAT_TYPES = (1, 10, 11, 16)  # TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16


@dataclass(frozen=True)
class FP16Policy:
    """Switches of the rule set (module docstring). Defaults are the measured choice."""

    recurrent_ops_fp32: bool = True
    attention_scores_fp32: bool = True
    vocab_projection_fp32: bool = False
    state_accumulators_fp32: bool = True
    keep_io_types: bool = True
    extra_fp32_op_types: tuple[str, ...] = ()
    extra_fp32_nodes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_POLICY = FP16Policy()


def _producers(graph: Any) -> dict[str, Any]:
    return {o: n for n in graph.node for o in n.output if o}


def _consumers(graph: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for n in graph.node:
        for i in n.input:
            if i:
                out.setdefault(i, []).append(n)
    return out


def _cast_to_float(node: Any) -> bool:
    to = next((a.i for a in node.attribute if a.name == "to"), None)
    return to in FLOAT_TYPES


def fp32_nodes(model: Any, policy: FP16Policy = DEFAULT_POLICY) -> dict[str, str]:
    """Name of every node the policy keeps in float32 -> the rule that claimed it.

    ``model`` is an ``onnx.ModelProto`` whose nodes all have unique names (``convert`` names
    them first)."""
    graph = model.graph
    producers, consumers = _producers(graph), _consumers(graph)
    fp32: dict[str, str] = {}

    def claim(nodes: Iterable[Any], rule: str) -> None:
        for n in nodes:
            fp32.setdefault(n.name, rule)

    sensitive = SENSITIVE_OPS | set(policy.extra_fp32_op_types)
    claim((n for n in graph.node if n.op_type in sensitive), "sensitive-op")
    claim((n for n in graph.node if n.name in policy.extra_fp32_nodes), "extra-node")
    if policy.recurrent_ops_fp32:
        claim((n for n in graph.node if n.op_type in RECURRENT_OPS), "recurrent-op")
    claim((n for n in graph.node if n.op_type == "Cast" and _cast_to_float(n)), "cast-to-float")

    # island: backward closure of the sensitive ops through cheap ops
    seeds = [n for n in graph.node if n.op_type in sensitive]
    stack = [(n, n.op_type) for n in seeds]
    seen: set[str] = set()
    while stack:
        node, seed_op = stack.pop()
        if node.name in seen:
            continue
        seen.add(node.name)
        for name in node.input:
            prod = producers.get(name)
            if prod is None:
                continue
            if prod.op_type in MATMUL_OPS:
                if seed_op == "Softmax" and policy.attention_scores_fp32:
                    claim([prod], "attention-scores")
                elif seed_op == "LogSoftmax" and policy.vocab_projection_fp32:
                    claim([prod], "vocab-projection")
                continue
            if prod.op_type in ELEMENTWISE_OPS and prod.op_type not in CLOSURE_STOPS:
                claim([prod], "island")
                stack.append((prod, seed_op))

    if policy.state_accumulators_fp32:
        outputs = {o.name for o in graph.output}
        for inp in graph.input:
            nxt = f"next_{inp.name}"
            if nxt in outputs:
                claim(_path_nodes(graph, inp.name, nxt, producers, consumers), "state-accumulator")

    # constants whose consumers are all FP32
    for n in graph.node:
        if n.op_type in CONSTANT_OPS and n.name not in fp32:
            users = [c for o in n.output for c in consumers.get(o, [])]
            if users and all(u.name in fp32 for u in users):
                claim([n], "constant-of-fp32")
    return fp32


def _path_nodes(graph: Any, src: str, dst: str, producers: dict[str, Any],
                consumers: dict[str, list[Any]]) -> list[Any]:
    """Nodes on the paths from tensor ``src`` to tensor ``dst`` that go through elementwise and
    data-movement ops only (graph order)."""
    forward: set[str] = set()
    stack = [src]
    while stack:
        for n in consumers.get(stack.pop(), []):
            if n.name not in forward and n.op_type in ELEMENTWISE_OPS:
                forward.add(n.name)
                stack.extend(o for o in n.output if o)
    backward: set[str] = set()
    stack = [dst]
    while stack:
        n = producers.get(stack.pop())
        if n is not None and n.name not in backward and n.op_type in ELEMENTWISE_OPS:
            backward.add(n.name)
            stack.extend(i for i in n.input if i)
    on_path = forward & backward
    return [n for n in graph.node if n.name in on_path]
