"""Will the TensorRT ONNX parser take this graph? A static check that runs on any machine.

``check_trt_compat(model_or_path)`` returns one ``Problem`` per violation (empty: compatible).
The exporter runs it on every graph it writes; ``build_engines`` runs it before parsing.

Data: the operator support matrix of the ONNX-TensorRT parser (onnx-tensorrt
``docs/operators.md``, TensorRT 10.15 revision, opsets 9-24) with the data types each op takes
and the restrictions that concern graphs like ours. What is flagged:

* an op the parser lacks (marked N, or absent from the matrix), an op outside the default ONNX
  domain (it would need a TensorRT plugin), an opset outside 9-20 (TensorRT 10.0, the oldest 10.x
  that Jetson ships, parses 9-20);
* a data type the op does not take (its "Supported Types" column), checked on the op's data
  operands, not on index/shape operands (Gather indices, Slice starts, Reshape shape, ...).
  TensorRT >= 10 takes INT64 natively in most ops (the old "cast down to INT32" rule is gone), so
  int64 is flagged only where the matrix lacks it (MatMul, Softmax, LSTM, ... on int64 data).
  DOUBLE anywhere is flagged: TensorRT casts it down to float32 with clamping;
* RNN/LSTM/GRU: ``layout`` must be 0 (no batch-first RNN ops), LSTM ``input_forget`` 0, a
  bidirectional op uses the same activations in both directions;
* TopK: ``sorted`` 1; K a build-time constant <= 3840, or a shape tensor (computed only from
  tensor shapes, like the encoder's length sort where K = batch: allowed, and bounded by the
  engine profile's maximum batch, which ``build_engines`` checks); K computed from tensor data
  is flagged;
* ``axes`` of Reduce*/Squeeze/Unsqueeze and CumSum's ``axis`` must be build-time constants;
  Dropout's ``is_training`` a constant false; ScatterND ``reduction`` none; MaxPool without its
  Indices output; Constant without sparse/string values;
* If/Loop/Scan: TensorRT runs them as conditional/loop layers (slow, shape-restricted); an
  exported seq2seq step never needs them, so they are flagged;
* graph inputs without a known rank.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import Problem, require

TRT_OPSET_MIN, TRT_OPSET_MAX = 9, 20
TOPK_MAX_K = 3840

# op -> data types it takes (onnx-tensorrt docs/operators.md, TensorRT 10.15); "q" = quantized
_MATRIX = """
Abs f32 f16 bf16 i32 i64
Acos f32 f16 bf16
Acosh f32 f16 bf16
Add f32 f16 bf16 i32 i64
And bool
ArgMax f32 f16 bf16 i32 i64
ArgMin f32 f16 bf16 i32 i64
Asin f32 f16 bf16
Asinh f32 f16 bf16
Atan f32 f16 bf16
Atanh f32 f16 bf16
Attention f32 f16 bf16 q
AveragePool f32 f16 bf16
BatchNormalization f32 f16 bf16
BlackmanWindow f32 f16
Cast f32 f16 bf16 i32 i64 u8 bool
CastLike f32 f16 bf16 i32 i64 u8 bool
Ceil f32 f16 bf16
Celu f32 f16 bf16
Clip f32 f16 bf16
Concat f32 f16 bf16 i32 i64 bool
Constant f32 f16 bf16 q i32 i64 bool
ConstantOfShape f32 f16 bf16 q i32 i64 bool
Conv f32 f16 bf16
ConvTranspose f32 f16 bf16
Cos f32 f16 bf16
Cosh f32 f16 bf16
CumSum f32 f16 bf16
DeformConv f32 f16
DepthToSpace f32 f16 bf16 i32 i64
DequantizeLinear q
Div f32 f16 bf16 i32 i64
Dropout f32 f16 bf16
Einsum f32 f16 bf16
Elu f32 f16 bf16
Equal f32 f16 bf16 i32 i64
Erf f32 f16 bf16
Exp f32 f16 bf16
Expand f32 f16 bf16 i32 i64 bool
EyeLike f32 f16 bf16 i32 i64 bool
Flatten f32 f16 bf16 i32 i64 bool
Floor f32 f16 bf16
Gather f32 f16 bf16 i32 i64 bool
GatherElements f32 f16 bf16 i32 i64 bool
GatherND f32 f16 bf16 i32 i64 bool
Gelu f32 f16 bf16 q i32 i64
Gemm f32 f16 bf16
GlobalAveragePool f32 f16 bf16
GlobalLpPool f32 f16 bf16
GlobalMaxPool f32 f16 bf16
Greater f32 f16 bf16 i32 i64
GreaterOrEqual f32 f16 bf16 i32 i64
GridSample f32 f16
GroupNormalization f32 f16 bf16
GRU f32 f16 bf16
HammingWindow f32 f16
HannWindow f32 f16
HardSigmoid f32 f16 bf16
HardSwish f32 f16 bf16
Hardmax f32 f16 bf16
Identity f32 f16 bf16 i32 i64 bool
If f32 f16 bf16 i32 i64 bool
ImageScaler f32 f16 bf16
InstanceNormalization f32 f16 bf16
IsInf f32 f16 bf16
IsNaN f32 f16 bf16 i32 i64
LayerNormalization f32 f16 bf16
LeakyRelu f32 f16 bf16
Less f32 f16 bf16 i32 i64
LessOrEqual f32 f16 bf16 i32 i64
Log f32 f16 bf16
LogSoftmax f32 f16 bf16
Loop f32 f16 bf16 i32 i64 bool
LRN f32 f16 bf16
LSTM f32 f16 bf16
LpNormalization f32 f16 bf16
LpPool f32 f16 bf16
MatMul f32 f16 bf16
Max f32 f16 bf16 i32 i64
MaxPool f32 f16 bf16
Mean f32 f16 bf16 q i32 i64
MeanVarianceNormalization f32 f16 bf16
Min f32 f16 bf16 i32 i64
Mish f32 f16
Mod f32 f16 bf16 i32 i64
Mul f32 f16 bf16 i32 i64
Neg f32 f16 bf16 i32 i64
NonMaxSuppression f32 f16
NonZero f32 f16
Not bool
OneHot f32 f16 bf16 i32 i64 bool
Or bool
Pad f32 f16 bf16 i32 i64
ParametricSoftplus f32 f16 bf16
Pow f32 f16 bf16 i32 i64
PRelu f32 f16 bf16
QuantizeLinear f32 f16 bf16
RandomNormal f32 f16 bf16
RandomNormalLike f32 f16 bf16
RandomUniform f32 f16 bf16
RandomUniformLike f32 f16 bf16
Range f32 f16 bf16 i32 i64
Reciprocal f32 f16 bf16
ReduceL1 f32 f16 bf16 i32 i64
ReduceL2 f32 f16 bf16 i32 i64
ReduceLogSum f32 f16 bf16 i32 i64
ReduceLogSumExp f32 f16 bf16 i32 i64
ReduceMax f32 f16 bf16 i32 i64
ReduceMean f32 f16 bf16 i32 i64
ReduceMin f32 f16 bf16 i32 i64
ReduceProd f32 f16 bf16 i32 i64
ReduceSum f32 f16 bf16 i32 i64
ReduceSumSquare f32 f16 bf16 i32 i64
Relu f32 f16 bf16 i32 i64
Reshape f32 f16 bf16 i32 i64 bool
Resize f32 f16 bf16
ReverseSequence f32 f16 bf16 i32 i64 bool
RMSNormalization f32 f16 bf16
RNN f32 f16 bf16
RoiAlign f32 f16
RotaryEmbedding f32 f16 bf16
Round f32 f16 bf16
STFT f32
ScaledTanh f32 f16 bf16
Scan f32 f16 bf16
Scatter f32 f16 bf16 i32 i64
ScatterElements f32 f16 bf16 i32 i64
ScatterND f32 f16 bf16 i32 i64
Selu f32 f16 bf16
Shape f32 f16 bf16 i32 i64 bool
Shrink f32 f16 bf16 i32 i64
Sigmoid f32 f16 bf16
Sign f32 f16 bf16 i32 i64
Sin f32 f16 bf16
Sinh f32 f16 bf16
Size f32 f16 bf16 i32 i64 bool
Slice f32 f16 bf16 i32 i64 bool
Softmax f32 f16 bf16
Softplus f32 f16 bf16
Softsign f32 f16 bf16
SpaceToDepth f32 f16 bf16 i32 i64
Split f32 f16 bf16 i32 i64 bool
Sqrt f32 f16 bf16
Squeeze f32 f16 bf16 i32 i64 bool
Sub f32 f16 bf16 i32 i64
Sum f32 f16 bf16 i32 i64
Tan f32 f16 bf16
Tanh f32 f16 bf16
TensorScatter f32 f16 bf16 i32
ThresholdedRelu f32 f16 bf16
Tile f32 f16 bf16 i32 i64 bool
TopK f32 f16 bf16 i32 i64
Transpose f32 f16 bf16 i32 i64 bool
Trilu f32 f16 bf16 i32 i64 bool
Unsqueeze f32 f16 bf16 i32 i64 bool
Upsample f32 f16 bf16
Where f32 f16 bf16 i32 i64 bool
Xor bool
"""
SUPPORTED_OPS: dict[str, frozenset[str]] = {
    line.split()[0]: frozenset(line.split()[1:]) for line in _MATRIX.strip().splitlines()}
# marked N in the matrix
UNSUPPORTED_OPS = frozenset("""
AffineGrid Bernoulli BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor Col2Im CenterCropPad
Compress ConcatFromSequence ConvInteger DFT Det DynamicQuantizeLinear ImageDecoder MatMulInteger
MaxRoiPool MaxUnpool MelWeightMatrix Multinomial NegativeLogLikelihoodLoss Optional
OptionalGetElement OptionalHasElement QLinearConv QLinearMatMul RegexFullMatch SequenceAt
SequenceConstruct SequenceEmpty SequenceErase SequenceInsert SequenceLength SequenceMap
SoftmaxCrossEntropyLoss SplitToSequence StringConcat StringNormalizer StringSplit TfIdfVectorizer
Unique""".split())
CONTROL_FLOW = frozenset({"If", "Loop", "Scan"})

# ONNX TensorProto element type -> matrix name
_DTYPES = {1: "f32", 10: "f16", 16: "bf16", 6: "i32", 7: "i64", 3: "i8", 2: "u8", 9: "bool",
           11: "f64", 5: "i16", 4: "u16", 12: "u32", 13: "u64", 8: "string", 17: "q", 18: "q",
           19: "q", 20: "q", 21: "q", 22: "q", 23: "q"}
_IO_TYPES = {"f32", "f16", "bf16", "i32", "i64", "i8", "u8", "bool", "q"}
# inputs that are indices, shapes or axes (not data): exempt from the type column
_INDEX_INPUTS: dict[str, tuple[int, ...]] = {
    "Gather": (1,), "GatherElements": (1,), "GatherND": (1,), "Slice": (1, 2, 3, 4),
    "Reshape": (1,), "Expand": (1,), "Tile": (1,), "Squeeze": (1,), "Unsqueeze": (1,),
    "TopK": (1,), "CumSum": (1,), "ConstantOfShape": (0,), "Pad": (1, 3), "Resize": (1, 2, 3),
    "Upsample": (1,), "ScatterElements": (1,), "ScatterND": (1,), "Scatter": (1,), "Split": (1,),
    "LSTM": (4,), "GRU": (4,), "RNN": (4,), "OneHot": (0, 1), "Where": (0,), "Trilu": (1,),
    "ReverseSequence": (1,), "Dropout": (1, 2), "Shape": (0,), "Size": (0,), "Clip": (),
    "ReduceSum": (1,), "ReduceMean": (1,), "ReduceMax": (1,), "ReduceMin": (1,),
    "ReduceProd": (1,), "ReduceL1": (1,), "ReduceL2": (1,), "ReduceLogSum": (1,),
    "ReduceLogSumExp": (1,), "ReduceSumSquare": (1,), "Range": (), "EyeLike": (0,),
}
_REDUCE = {op for op in SUPPORTED_OPS if op.startswith("Reduce")}
# ops through which a shape tensor stays a shape tensor
_SHAPE_OPS = {"Shape", "Size", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Cast",
              "Add", "Sub", "Mul", "Div", "Min", "Max", "Reshape", "Identity", "Constant",
              "ConstantOfShape", "Neg", "Abs", "Equal", "Where", "Floor", "Ceil"}


def check_trt_compat(model_or_path: Any, name: str | None = None) -> list[Problem]:
    """Every reason the TensorRT 10/11 ONNX parser would reject or mistreat the graph.

    ``model_or_path``: an ``onnx.ModelProto`` or a path to an ``.onnx`` file; ``name`` labels
    the messages (default: the file name or the graph name)."""
    require("onnx", "export")
    import onnx

    if isinstance(model_or_path, (str, os.PathLike)):
        label = name or Path(model_or_path).name
        model = onnx.load(str(model_or_path))
    else:
        model = model_or_path
        label = name or model.graph.name or "graph"
    problems: list[Problem] = []

    def add(what: str, fix: str) -> None:
        problems.append(Problem(f"{label}: {what}", fix))

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and not TRT_OPSET_MIN <= opset <= TRT_OPSET_MAX:
        add(f"opset {opset} is outside the opsets every TensorRT 10.x parses "
            f"({TRT_OPSET_MIN}-{TRT_OPSET_MAX})", "export with opset 17")

    graph = model.graph
    types = _types(model)
    const = _constants(graph)
    shape_derived = _shape_derived(graph, const)
    init_names = {t.name for t in graph.initializer}
    for v in graph.input:
        if v.name in init_names:
            continue
        t = v.type.tensor_type
        if not t.HasField("shape"):
            add(f"input {v.name!r} has no known rank", "export with fixed ranks (dynamic sizes are fine)")
        dt = _DTYPES.get(t.elem_type, str(t.elem_type))
        if dt not in _IO_TYPES:
            add(f"input {v.name!r} has type {dt}, which TensorRT does not take", "export it as float32 or int64")
    for v in graph.output:
        dt = _DTYPES.get(v.type.tensor_type.elem_type, "?")
        if dt not in _IO_TYPES:
            add(f"output {v.name!r} has type {dt}, which TensorRT does not take", "export it as float32 or int64")

    for node in graph.node:
        where = f"node {node.name or '?'} ({node.op_type})"
        if node.domain not in ("", "ai.onnx"):
            add(f"{where} is in domain {node.domain!r}; TensorRT would need a plugin for it",
                "export with standard ONNX ops only")
            continue
        op = node.op_type
        if op in CONTROL_FLOW:
            add(f"{where}: control flow; TensorRT runs {op} as slow, shape-restricted "
                "conditional/loop layers", "export without data-dependent control flow "
                "(the decoding loop belongs to the runtime, one step per graph run)")
            continue
        if op not in SUPPORTED_OPS:
            why = "is not supported" if op in UNSUPPORTED_OPS else "is not in the supported operator list"
            add(f"{where} {why} by the TensorRT ONNX parser", "rewrite it with supported ops")
            continue
        # data types
        allowed = SUPPORTED_OPS[op]
        skip = _INDEX_INPUTS.get(op, ())
        operands = [(i, t) for i, t in enumerate(node.input) if t and i not in skip]
        if op == "Cast":
            to = next((a.i for a in node.attribute if a.name == "to"), 1)
            if _DTYPES.get(to, "?") not in allowed:
                add(f"{where} casts to {_DTYPES.get(to, to)}, which TensorRT does not take",
                    "cast to float32/float16/int32/int64/bool")
        for _, tensor in operands:
            kind = _DTYPES.get(types.get(tensor, 0))
            if kind is None:
                continue  # type unknown to shape inference
            if kind == "f64":
                add(f"{where}: input {tensor!r} is double; TensorRT casts it down to float32 "
                    "(clamped)", "export float32")
            elif kind not in allowed:
                add(f"{where}: input {tensor!r} is {kind}; TensorRT's {op} takes "
                    f"{', '.join(sorted(allowed))}", f"cast it to a type {op} takes")
        problems.extend(Problem(f"{label}: {where}: {w}", f) for w, f in
                        _restrictions(node, const, shape_derived))
    return problems


def _restrictions(node: Any, const: dict[str, Any], shape_derived: set[str]) -> list[tuple[str, str]]:
    """(what, fix) for each op-specific restriction the node breaks."""
    op = node.op_type
    attrs = {a.name: a for a in node.attribute}
    out: list[tuple[str, str]] = []

    def attr_int(name: str, default: int) -> int:
        return int(attrs[name].i) if name in attrs else default

    if op in ("LSTM", "GRU", "RNN"):
        if attr_int("layout", 0) != 0:
            out.append((f"layout={attr_int('layout', 0)} (batch-first); TensorRT takes layout 0 only",
                        "export the RNN time-major (layout 0): batch_first modules export that way "
                        "with the TorchScript exporter"))
        if op == "LSTM" and attr_int("input_forget", 0) != 0:
            out.append(("input_forget=1 (coupled input/forget gates) is not supported by TensorRT",
                        "use a standard LSTM (input_forget 0)"))
        direction = attrs["direction"].s.decode() if "direction" in attrs else "forward"
        acts = [a.decode().lower() for a in attrs["activations"].strings] if "activations" in attrs else []
        if direction == "bidirectional" and acts and acts[:len(acts) // 2] != acts[len(acts) // 2:]:
            out.append((f"different activations per direction ({acts}); TensorRT needs the same "
                        "activations in both directions", "use the same activations in both directions"))
    elif op == "TopK":
        if attr_int("sorted", 1) != 1:
            out.append(("sorted=0; TensorRT's TopK returns sorted results only", "export with sorted=1"))
        k = node.input[1] if len(node.input) > 1 else None
        if k is None:
            kval = attr_int("k", 1)
            if kval > TOPK_MAX_K:
                out.append((f"K={kval} > {TOPK_MAX_K}, the largest K TensorRT's TopK supports",
                            f"use K <= {TOPK_MAX_K}"))
        elif k in const:
            kval = int(const[k].reshape(-1)[0])
            if kval > TOPK_MAX_K:
                out.append((f"K={kval} > {TOPK_MAX_K}, the largest K TensorRT's TopK supports",
                            f"use a top-k of at most {TOPK_MAX_K} candidates (beam search needs "
                            "only 2 x beam)"))
        elif k not in shape_derived:
            out.append((f"K ({k!r}) is computed from tensor data; TensorRT needs K to be a "
                        f"build-time constant (<= {TOPK_MAX_K}) or computed from tensor shapes",
                        "export K as a constant (topk(k) with a Python int)"))
    elif op in _REDUCE or op in ("Squeeze", "Unsqueeze"):
        if len(node.input) > 1 and node.input[1] and node.input[1] not in const:
            out.append(("axes are not a build-time constant", "use constant axes"))
    elif op == "CumSum":
        if node.input[1] not in const:
            out.append(("axis is not a build-time constant", "use a constant axis"))
    elif op == "Dropout":
        if len(node.input) > 2 and node.input[2]:
            flag = const.get(node.input[2])
            if flag is None or bool(flag.reshape(-1)[0]):
                out.append(("is_training is not a constant false", "export in eval mode"))
    elif op == "ScatterND":
        if "reduction" in attrs and attrs["reduction"].s.decode() != "none":
            out.append(("reduction other than none", "use reduction='none'"))
    elif op == "MaxPool":
        if len(node.output) > 1 and node.output[1]:
            out.append(("the Indices output is unsupported", "do not use the pooling indices"))
    elif op == "Constant":
        if any(n in attrs for n in ("sparse_value", "value_string", "value_strings")):
            out.append(("sparse or string values are unsupported", "use a dense numeric constant"))
    return out


def _types(model: Any) -> dict[str, int]:
    """Tensor name -> ONNX element type, from shape inference (best effort)."""
    from ..fp16.convert import tensor_types

    try:
        return tensor_types(model)
    except Exception:  # noqa: BLE001 - an uninferable graph still gets the other checks
        g = model.graph
        types = {v.name: v.type.tensor_type.elem_type for v in (*g.input, *g.output, *g.value_info)}
        types.update({t.name: t.data_type for t in g.initializer})
        return types


def _constants(graph: Any) -> dict[str, Any]:
    """Build-time constants: initializers (not graph inputs), Constant outputs, and what a few
    pure ops compute from them (name -> numpy value)."""
    import numpy as np
    from onnx import numpy_helper

    inputs = {i.name for i in graph.input}
    const: dict[str, Any] = {t.name: numpy_helper.to_array(t) for t in graph.initializer
                             if t.name not in inputs}
    for n in graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    const[n.output[0]] = numpy_helper.to_array(a.t)
                elif a.name in ("value_int", "value_float"):
                    const[n.output[0]] = np.array(a.i if a.name == "value_int" else a.f)
                elif a.name in ("value_ints", "value_floats"):
                    const[n.output[0]] = np.array(list(a.ints) or list(a.floats))
        elif n.op_type in ("Identity", "Cast", "Reshape", "Unsqueeze", "Squeeze") and n.input \
                and n.input[0] in const:
            if all(i in const for i in n.input if i):
                # the value itself only matters for TopK K and Dropout flags (scalars)
                const[n.output[0]] = np.asarray(const[n.input[0]]).reshape(-1)
    return const


def _shape_derived(graph: Any, const: dict[str, Any]) -> set[str]:
    """Tensors computed only from tensor shapes and constants (TensorRT shape tensors)."""
    derived: set[str] = set(const)
    for n in graph.node:
        if n.op_type in ("Shape", "Size"):
            derived.update(n.output)
        elif n.op_type in _SHAPE_OPS and all((not i) or i in derived for i in n.input):
            derived.update(n.output)
    return derived - set(const)
