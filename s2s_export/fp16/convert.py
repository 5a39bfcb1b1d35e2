"""float32 ONNX -> mixed-precision FP16 ONNX, following ``policy`` (for TensorRT, strongly typed).

Tool: onnxconverter-common's ``convert_float_to_float16`` (the ``fp16`` extra) with the policy's
FP32 nodes as its ``node_block_list`` and ``keep_io_types=True``, wrapped in the passes it needs
to produce a correct graph:

* before: every node named; every graph output produced by its own Identity (an output that is
  also consumed inside the graph otherwise gets an invalid Cast chain); constants and
  initializers shared by FP16 and FP32 consumers duplicated (the tool keeps a shared
  initializer in float32 and feeds it to float16 nodes);
* after: every ``Cast(to=float32)(Cast(to=float16)(x))`` with ``x`` float32 is routed around, so
  values passed between FP32 nodes, from FP32 nodes to graph outputs and from graph inputs to
  FP32 nodes are never rounded to float16 on the way; dead nodes removed; ``onnx.checker``
  with strict type inference.

NVIDIA ModelOpt AutoCast (``modelopt.onnx.autocast``) was tried: it works on the CPU, but its
lean install needs ~10 packages beyond the ones documented (pynvml, safetensors, tqdm, pydantic,
rich, ...), with unmet pins, and its ``[onnx]`` extra pulls onnxruntime-gpu and cupy; it cannot
be expressed as a pip extra of ours. The policy (``policy.fp32_nodes``) is tool-independent: its
node list is what AutoCast takes as ``nodes_to_exclude``.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BadInputError, Problem, require
from .policy import CONSTANT_OPS, DEFAULT_POLICY, FP16Policy, fp32_nodes

FLOAT, FLOAT16 = 1, 10
FP16_MAX = 65504.0
OUTPUT_SUFFIX = "__output"  # the Identity nodes that produce graph outputs


@dataclass
class FP16Report:
    """What ``to_fp16`` did: counts, the FP32 nodes with the rule that kept each, problems."""

    tool: str
    policy: dict[str, Any]
    nodes: int = 0                 # compute nodes of the input graph (no Constant)
    fp32_nodes: dict[str, str] = field(default_factory=dict)  # node name -> rule
    fp16_nodes: int = 0
    casts: int = 0                 # Cast nodes in the result
    round_trips_removed: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def rules(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for rule in self.fp32_nodes.values():
            out[rule] = out.get(rule, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rules"] = self.rules
        return d


def to_fp16(onnx_in: str | os.PathLike[str], onnx_out: str | os.PathLike[str],
            policy: FP16Policy | None = None) -> FP16Report:
    """Convert the float32 graph ``onnx_in`` into the mixed-precision graph ``onnx_out``."""
    require("onnx", "export")
    import onnx

    path = Path(onnx_in)
    if not path.is_file():
        raise BadInputError(f"{path} does not exist", "pass an exported float32 .onnx file")
    model = onnx.load(str(path))
    out, report = convert_model(model, policy or DEFAULT_POLICY)
    onnx.save(out, str(onnx_out))
    return report


def convert_model(model: Any, policy: FP16Policy = DEFAULT_POLICY) -> tuple[Any, FP16Report]:
    """``(fp16 model, report)`` for an in-memory float32 ``onnx.ModelProto`` (not modified)."""
    require("onnx", "export")
    require("onnxconverter_common", "fp16")
    import onnx
    import onnxconverter_common
    from onnxconverter_common import float16

    model = _copy(model)
    graph = model.graph
    if any(_elem_type(v) == FLOAT16 for v in (*graph.input, *graph.output)) or any(
            t.data_type == FLOAT16 for t in graph.initializer):
        raise BadInputError("the graph already contains float16 tensors",
                            "convert the float32 graph (encoder.onnx / decoder_step.onnx)")
    _name_nodes(graph)
    n_nodes = sum(n.op_type not in CONSTANT_OPS for n in graph.node)
    _isolate_outputs(graph)
    keep = {n: r for n, r in fp32_nodes(model, policy).items() if not n.endswith(OUTPUT_SUFFIX)}
    _split_shared_constants(graph, keep)
    report = FP16Report(tool=f"onnxconverter-common {onnxconverter_common.__version__}",
                        policy=policy.to_dict(),
                        nodes=n_nodes,
                        fp32_nodes={n: r for n, r in keep.items()})
    report.problems = [str(p) for p in overflow_problems(model, keep)]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tool warns about every clamped value
        out = float16.convert_float_to_float16(
            model, min_positive_val=0.0, max_finite_val=FP16_MAX, keep_io_types=policy.keep_io_types,
            op_block_list=[], node_block_list=sorted(keep))
    report.round_trips_removed = _remove_round_trips(out.graph)
    _remove_dead_nodes(out.graph)
    del out.graph.value_info[:]
    out = onnx.shape_inference.infer_shapes(out, strict_mode=True)
    onnx.checker.check_model(out, full_check=True)
    report.casts = sum(n.op_type == "Cast" for n in out.graph.node)
    report.fp16_nodes = len(fp16_compute_nodes(out))
    return out, report


def fp16_compute_nodes(model: Any) -> list[str]:
    """Names of the non-Cast, non-constant nodes of ``model`` that read or write float16."""
    types = tensor_types(model)
    return [n.name for n in model.graph.node
            if n.op_type not in ("Cast", *CONSTANT_OPS)
            and any(types.get(t) == FLOAT16 for t in (*n.input, *n.output) if t)]


def tensor_types(model: Any) -> dict[str, int]:
    """Element type of every tensor of ``model`` that shape inference can type."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {v.name: _elem_type(v) for v in (*g.input, *g.output, *g.value_info)}
    types.update({t.name: t.data_type for t in g.initializer})
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    types[n.output[0]] = a.t.data_type
    return types


def overflow_problems(model: Any, fp32: dict[str, str] | None = None) -> list[Problem]:
    """Float constants (initializers, Constant/ConstantOfShape values) with a finite magnitude
    above the float16 maximum 65504 (e.g. a -1e9 mask) that flow into float16 computation.

    ``fp32``: names of the nodes that stay float32 (``policy.fp32_nodes``); constants whose
    every consumer is one of them are safe. ``None``: the graph is float32 and about to be
    converted: every float constant counts. A float16 graph is checked with ``fp32=None`` too:
    its float32 constants feed float32 nodes only if they are not cast to float16 afterwards,
    which this check does not follow, so it reports them (the policy never needs such values:
    masks are -inf)."""
    import numpy as np
    from onnx import numpy_helper

    graph = model.graph
    consumers: dict[str, list[Any]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def safe(name: str) -> bool:
        users = consumers.get(name, [])
        return fp32 is not None and bool(users) and all(u.name in fp32 for u in users)

    found: list[tuple[str, Any]] = []
    for t in graph.initializer:
        found.append((t.name, t))
    for n in graph.node:
        for a in n.attribute:
            if a.name in ("value", "value_float", "value_floats") and n.op_type in CONSTANT_OPS:
                if a.type == a.TENSOR:
                    found.append((n.output[0], a.t))
                elif a.type == a.FLOAT:
                    found.append((n.output[0], np.array([a.f], np.float32)))
                elif a.type == a.FLOATS:
                    found.append((n.output[0], np.array(a.floats, np.float32)))
    problems = []
    for name, t in found:
        arr = t if isinstance(t, np.ndarray) else (
            numpy_helper.to_array(t) if t.data_type in (FLOAT, FLOAT16, 11, 16) else None)
        if arr is None or arr.size == 0:
            continue
        arr = np.asarray(arr, dtype=np.float64)
        big = np.isfinite(arr) & (np.abs(arr) > FP16_MAX)
        if big.any() and not safe(name):
            worst = float(arr[big][np.argmax(np.abs(arr[big]))])
            problems.append(Problem(
                f"constant {name!r} holds {worst:g}, beyond the float16 range (|x| <= 65504); "
                "in float16 it becomes infinite (a -1e9 mask turns softmax rows into NaN)",
                "mask with -inf (masked_fill(~mask, float('-inf'))) or keep the node in float32"))
    return problems


# ---------------------------------------------------------------------------------- passes
def _copy(model: Any) -> Any:
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _elem_type(value_info: Any) -> int:
    return int(value_info.type.tensor_type.elem_type)


def _name_nodes(graph: Any) -> None:
    seen: set[str] = set()
    for i, n in enumerate(graph.node):
        name = n.name or f"{n.op_type}_{i}"
        while name in seen:
            name = f"{name}_{i}"
        n.name = name
        seen.add(name)


def _isolate_outputs(graph: Any) -> None:
    """Give every graph output its own producing Identity node, which stays float16 (the tool
    retypes the output of a blocked node to float16 even when it is a graph output)."""
    from onnx import helper

    inputs = {i.name for i in graph.input}
    for out in graph.output:
        name = out.name
        inner = f"{name}__inner"
        for n in graph.node:
            for k, o in enumerate(n.output):
                if o == name:
                    n.output[k] = inner
            for k, i in enumerate(n.input):
                if i == name:
                    n.input[k] = inner
        src = name if name in inputs else inner
        graph.node.append(helper.make_node("Identity", [src], [name], name=f"{name}{OUTPUT_SUFFIX}"))


def _split_shared_constants(graph: Any, keep: dict[str, str]) -> None:
    """Constants/float initializers read by FP16 and FP32 nodes: the FP32 readers get a copy."""
    from onnx import helper

    readers: dict[str, list[Any]] = {}
    for n in graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    const_nodes = {n.output[0]: n for n in graph.node if n.op_type in CONSTANT_OPS}
    inits = {t.name: t for t in graph.initializer if t.data_type == FLOAT}
    for name in list(const_nodes) + list(inits):
        users = readers.get(name, [])
        fp32_users = [u for u in users if u.name in keep]
        if not fp32_users or len(fp32_users) == len(users):
            continue
        copy = f"{name}__fp32"
        if name in const_nodes:
            src = const_nodes[name]
            dup = helper.make_node(src.op_type, list(src.input), [copy], name=f"{src.name}__fp32")
            dup.attribute.extend(src.attribute)
            graph.node.insert(list(graph.node).index(src) + 1, dup)
            keep[dup.name] = "constant-of-fp32"
        else:
            t = graph.initializer.add()
            t.CopyFrom(inits[name])
            t.name = copy
        for u in fp32_users:
            for k, i in enumerate(u.input):
                if i == name:
                    u.input[k] = copy


def _cast_to(node: Any) -> int | None:
    return next((a.i for a in node.attribute if a.name == "to"), None)


def _remove_round_trips(graph: Any) -> int:
    """``Cast32(Cast16(x))`` with float32 ``x`` -> ``x`` (an Identity where it is a graph output)."""
    import onnx

    types: dict[str, int] = {v.name: _elem_type(v) for v in (*graph.input, *graph.value_info)}
    types.update({t.name: t.data_type for t in graph.initializer})
    for n in graph.node:  # float32 producers the value_info may not list
        if n.op_type == "Cast":
            types.setdefault(n.output[0], _cast_to(n) or 0)
    producers = {o: n for n in graph.node for o in n.output}
    outputs = {o.name for o in graph.output}
    removed = 0
    for n in list(graph.node):
        if n.op_type != "Cast" or _cast_to(n) != FLOAT:
            continue
        first = producers.get(n.input[0])
        while first is not None and first.op_type == "Identity":
            first = producers.get(first.input[0])
        if first is None or first.op_type != "Cast" or _cast_to(first) != FLOAT16:
            continue
        x = first.input[0]
        if types.get(x) != FLOAT:
            continue
        removed += 1
        if n.output[0] in outputs:
            ident = onnx.helper.make_node("Identity", [x], [n.output[0]], name=n.name)
            graph.node.insert(list(graph.node).index(n), ident)
            graph.node.remove(n)
        else:
            for m in graph.node:
                for k, i in enumerate(m.input):
                    if i == n.output[0]:
                        m.input[k] = x
    return removed


def _remove_dead_nodes(graph: Any) -> None:
    needed = {o.name for o in graph.output}
    keep = []
    for n in reversed(list(graph.node)):
        if any(o in needed for o in n.output):
            keep.append(n)
            needed.update(i for i in n.input if i)
    live = {id(n) for n in keep}
    for n in list(graph.node):
        if id(n) not in live:
            graph.node.remove(n)
    used = {i for n in graph.node for i in n.input}
    for t in list(graph.initializer):
        if t.name not in used:
            graph.initializer.remove(t)
