"""Graph IO, declared once as frozen data (torch-free).

The same ``GraphSpec`` drives the ONNX export (names, dynamic axes), the TensorRT optimization
profiles (min/opt/max per dynamic input) and the runtime's binding (roles). It is stored in the
bundle's ``manifest.json``.

Symbolic axes: ``batch`` (sentences x beam) and ``src_len``; every other axis is a fixed int.
Roles: ``input`` (src, src_lengths, tokens, reorder), ``static`` (fixed while decoding),
``state`` (updated by every step), ``output`` (results of the step).

Encoder:  src [batch,src_len] int64, src_lengths [batch] int64 -> every static, every state.
Step:     tokens [batch] int64, reorder [batch] int64, every static, every state
          -> topk_log_probs [batch,K] f32, topk_ids [batch,K] int64 (the best K tokens other than
             ``blocked``, the ids never generated), log_probs [batch,V] f32 (all tokens),
             next_<state> for every state, attn [batch,src_len] f32.
Greedy:   max_lengths [batch] int64, every static, every state (the optional fused greedy graph,
          export/greedy.py; derived from the step, not stored)
          -> ids [batch,steps] int64, scores [batch] f64, lengths [batch] int64.
Encoder + greedy: src [batch,src_len] int64, src_lengths [batch] int64, max_lengths [batch] int64
          -> ids, scores, lengths as Greedy (the optional combined graph: the encoder's nodes,
          then the fused greedy graph's, export/greedy.py; derived, not stored).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

BATCH, SRC_LEN = "batch", "src_len"
STEPS = "steps"  # output length axis of the fused greedy graph's ids (never an input axis)
ROLES = ("input", "static", "state", "output")
STEP_OUTPUTS = ("topk_log_probs", "topk_ids", "log_probs", "attn")
# the step graph's metadata key recording the ids it masks before its top-K (a JSON list),
# checked against the manifest's io.blocked when a session loads
BLOCKED_METADATA = "s2s.blocked"


def next_name(state_name: str) -> str:
    """Name of the step output that carries the updated value of state ``state_name``."""
    return f"next_{state_name}"


Axis = str | int


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: float32, float16, int64, int32, bool
    shape: tuple[Axis, ...]
    role: str

    @property
    def batch_axis(self) -> int | None:
        return self.shape.index(BATCH) if BATCH in self.shape else None

    def dynamic_axes(self) -> dict[int, str]:
        return {i: a for i, a in enumerate(self.shape) if isinstance(a, str)}

    def concrete(self, batch: int, src_len: int) -> tuple[int, ...]:
        sizes = {BATCH: batch, SRC_LEN: src_len}  # inputs only (STEPS is an output axis)
        return tuple(sizes[a] if isinstance(a, str) else a for a in self.shape)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape), "role": self.role,
                "batch_axis": self.batch_axis}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TensorSpec":
        return cls(d["name"], d["dtype"], tuple(d["shape"]), d["role"])


@dataclass(frozen=True)
class GraphSpec:
    name: str  # "encoder" or "decoder_step"
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input(self, name: str) -> TensorSpec:
        return next(t for t in self.inputs if t.name == name)

    def output(self, name: str) -> TensorSpec:
        return next(t for t in self.outputs if t.name == name)

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """``dynamic_axes`` argument of ``torch.onnx.export``."""
        return {t.name: t.dynamic_axes() for t in (*self.inputs, *self.outputs) if t.dynamic_axes()}

    def profile(self, min_: tuple[int, int], opt: tuple[int, int], max_: tuple[int, int]
                ) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
        """TensorRT optimization profile: input name -> (min, opt, max) shapes, from
        (batch, src_len) pairs."""
        return {t.name: (t.concrete(*min_), t.concrete(*opt), t.concrete(*max_))
                for t in self.inputs if t.dynamic_axes()}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "inputs": [t.to_dict() for t in self.inputs],
                "outputs": [t.to_dict() for t in self.outputs]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GraphSpec":
        return cls(d["name"], tuple(TensorSpec.from_dict(t) for t in d["inputs"]),
                   tuple(TensorSpec.from_dict(t) for t in d["outputs"]))


@dataclass(frozen=True)
class BundleIO:
    """The two graphs and the static/state names, in graph order."""

    encoder: GraphSpec
    step: GraphSpec
    topk: int
    blocked: tuple[int, ...] = ()  # target ids the step's top-K leaves out (never generated)

    @property
    def static(self) -> list[TensorSpec]:
        return [t for t in self.encoder.outputs if t.role == "static"]

    @property
    def state(self) -> list[TensorSpec]:
        return [t for t in self.encoder.outputs if t.role == "state"]

    @property
    def greedy(self) -> GraphSpec:
        """The fused greedy graph's IO (see the module docstring)."""
        inputs = (TensorSpec("max_lengths", "int64", (BATCH,), "input"), *self.static, *self.state)
        outputs = (TensorSpec("ids", "int64", (BATCH, STEPS), "output"),
                   TensorSpec("scores", "float64", (BATCH,), "output"),
                   TensorSpec("lengths", "int64", (BATCH,), "output"))
        return GraphSpec("greedy", inputs, outputs)

    @property
    def encoder_greedy(self) -> GraphSpec:
        """The combined encoder + fused greedy graph's IO (see the module docstring)."""
        inputs = (*self.encoder.inputs, TensorSpec("max_lengths", "int64", (BATCH,), "input"))
        return GraphSpec("encoder_greedy", inputs, self.greedy.outputs)

    def to_dict(self) -> dict[str, Any]:
        return {"encoder": self.encoder.to_dict(), "decoder_step": self.step.to_dict(), "topk": self.topk,
                "blocked": list(self.blocked)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BundleIO":
        return cls(GraphSpec.from_dict(d["encoder"]), GraphSpec.from_dict(d["decoder_step"]), int(d["topk"]),
                   tuple(int(i) for i in d.get("blocked", ())))

    @classmethod
    def build(cls, static: Iterable[TensorSpec], state: Iterable[TensorSpec], vocab_size: int,
              topk: int, blocked: Iterable[int] = ()) -> "BundleIO":
        """Both graph specs from the static and state tensor specs (shapes with symbolic axes)."""
        static, state = tuple(static), tuple(state)
        enc_in = (TensorSpec("src", "int64", (BATCH, SRC_LEN), "input"),
                  TensorSpec("src_lengths", "int64", (BATCH,), "input"))
        encoder = GraphSpec("encoder", enc_in, static + state)
        step_in = (TensorSpec("tokens", "int64", (BATCH,), "input"),
                   TensorSpec("reorder", "int64", (BATCH,), "input")) + static + state
        step_out = (
            TensorSpec("topk_log_probs", "float32", (BATCH, topk), "output"),
            TensorSpec("topk_ids", "int64", (BATCH, topk), "output"),
            TensorSpec("log_probs", "float32", (BATCH, vocab_size), "output"),
            *(TensorSpec(next_name(t.name), t.dtype, t.shape, "state") for t in state),
            TensorSpec("attn", "float32", (BATCH, SRC_LEN), "output"),
        )
        return cls(encoder, GraphSpec("decoder_step", step_in, step_out), topk, tuple(sorted(set(blocked))))
