"""Discover the graph IO of a model implementing the decoding contract.

``encode`` is run at two (batch, src_len) sizes; an axis of a static/state tensor is ``batch``
when it equals the batch size at both, ``src_len`` when it equals the padded source length at
both, a fixed int when it is the same at both, and anything else is refused. The second run
pads beyond the longest sentence, so a tensor sized by ``max(src_lengths)`` instead of the
padded length is caught here rather than at run time. One ``decode_step`` checks the rest of
the contract: ``log_probs [B,V]``, ``attn [B,S]``, ``new_state`` with the names, shapes and
dtypes of ``state``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import BadInputError
from ..graphio import BATCH, SRC_LEN, Axis, TensorSpec
from ..conventions import Conventions
from ..vocab import content_ids

DTYPES = {torch.float32: "float32", torch.float16: "float16", torch.int64: "int64",
          torch.int32: "int32", torch.bool: "bool"}

# (batch, padded src_len, lengths): the first is the export example (mixed lengths, unsorted);
# the second pads one position beyond its longest sentence.
EXAMPLE = (3, 9, (9, 5, 7))
SECOND = (2, 6, (5, 3))


def contract_error(what: str) -> BadInputError:
    return BadInputError(f"the model does not implement the decoding contract: {what}",
                         "see s2s_export/models/seq2seq.py (encode/decode_step, batch-major dicts)")


def make_sources(lengths: Sequence[int], src_len: int, vocab_size: int, conv: Conventions,
                 seed: int = 0) -> tuple[Tensor, Tensor]:
    """A padded batch of random sources as the model sees them: src [B,src_len] int64 (ordinary
    tokens with the framing around them: e.g. EOS last; the source pad id after), lengths [B]
    (framing included; each at least the framing's own tokens, and at least 1)."""
    ids = content_ids(vocab_size, conv.src)
    rng = np.random.default_rng(seed)
    pad = conv.src.pad if conv.src.pad is not None else 0
    extra = conv.framing.extra_tokens()
    rows = [conv.frame([int(ids[j]) for j in rng.integers(0, len(ids), max(n - extra, 0 if extra else 1))])
            for n in lengths]
    lens = [len(r) for r in rows]
    src = np.full((len(rows), max(src_len, *lens)), pad, dtype=np.int64)
    for row, r in zip(src, rows):
        row[: len(r)] = r
    return torch.from_numpy(src), torch.tensor(lens, dtype=torch.int64)


def dtype_name(t: Tensor, what: str) -> str:
    if t.dtype not in DTYPES:
        raise contract_error(f"{what} has dtype {t.dtype}; supported: {', '.join(DTYPES.values())}")
    return DTYPES[t.dtype]


@dataclass(frozen=True)
class ContractSpec:
    """The model's static and state tensors (symbolic shapes) and its target vocabulary size."""

    static: tuple[TensorSpec, ...]
    state: tuple[TensorSpec, ...]
    tgt_vocab_size: int

    @property
    def static_names(self) -> list[str]:
        return [t.name for t in self.static]

    @property
    def state_names(self) -> list[str]:
        return [t.name for t in self.state]


def _encode(model: nn.Module, size: tuple[int, int, tuple[int, ...]], src_vocab_size: int, conv: Conventions
            ) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor]:
    B, S, lengths = size
    src, src_lengths = make_sources(lengths, S, src_vocab_size, conv)
    with torch.no_grad():
        out = getattr(model, "encode")(src, src_lengths)
    if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(d, dict) for d in out)):
        raise contract_error("encode must return a tuple (static: dict, state: dict)")
    static, state = out
    for kind, d in (("static", static), ("state", state)):
        for name, t in d.items():
            if not isinstance(name, str) or not isinstance(t, Tensor):
                raise contract_error(f"encode's {kind} must map names to tensors (got {name!r})")
    return static, state, src


def _axes(name: str, a: tuple[int, ...], b: tuple[int, ...]) -> tuple[Axis, ...]:
    (Ba, Sa, _), (Bb, Sb, _) = EXAMPLE, SECOND
    if len(a) != len(b):
        raise contract_error(f"{name} changes rank with the input size ({list(a)} vs {list(b)})")
    axes: list[Axis] = []
    for i, (x, y) in enumerate(zip(a, b)):
        if (x, y) == (Ba, Bb):
            axes.append(BATCH)
        elif (x, y) == (Sa, Sb):
            axes.append(SRC_LEN)
        elif x == y:
            axes.append(x)
        else:
            raise contract_error(f"axis {i} of {name} is {x} at (batch {Ba}, src_len {Sa}) and {y} at "
                                 f"(batch {Bb}, src_len {Sb}): it must be batch, src_len or fixed")
    if not axes or axes[0] != BATCH:
        raise contract_error(f"{name} {list(a)} is not batch-major (axis 0 must be the batch)")
    return tuple(axes)


def discover(model: nn.Module, src_vocab_size: int, conv: Conventions) -> ContractSpec:
    """Run ``encode`` twice and ``decode_step`` once (no grad; sources framed and the step fed
    the start token as ``conv`` says) and return the IO of the contract."""
    for attr in ("encode", "decode_step"):
        if not callable(getattr(model, attr, None)):
            raise contract_error(f"it has no {attr} method")
    static_a, state_a, _ = _encode(model, EXAMPLE, src_vocab_size, conv)
    static_b, state_b, _ = _encode(model, SECOND, src_vocab_size, conv)
    names = list(static_a) + list(state_a)
    if len(set(names)) != len(names):
        raise contract_error(f"static and state share names: {sorted(set(static_a) & set(state_a))}")
    if not state_a:
        raise contract_error("encode returned no state")
    if list(static_a) != list(static_b) or list(state_a) != list(state_b):
        raise contract_error("encode returns different names at different input sizes")
    reserved = {"src", "src_lengths", "tokens", "reorder", "topk_log_probs", "topk_ids", "log_probs", "attn"}
    for name in names:
        if name in reserved or name.startswith("next_"):
            raise contract_error(f"tensor name {name!r} clashes with a graph IO name; rename it")

    def specs(a: dict[str, Tensor], b: dict[str, Tensor], role: str) -> tuple[TensorSpec, ...]:
        return tuple(TensorSpec(n, dtype_name(a[n], n), _axes(n, tuple(a[n].shape), tuple(b[n].shape)), role)
                     for n in a)

    static, state = specs(static_a, static_b, "static"), specs(state_a, state_b, "state")

    B, S, _ = EXAMPLE
    tokens = torch.full((B,), conv.start_id, dtype=torch.int64)
    with torch.no_grad():
        out = getattr(model, "decode_step")(tokens, static_a, state_a)
    if not (isinstance(out, tuple) and len(out) == 3):
        raise contract_error("decode_step must return (log_probs, new_state, attn)")
    log_probs, new_state, attn = out
    if not isinstance(log_probs, Tensor) or log_probs.dim() != 2 or log_probs.shape[0] != B:
        raise contract_error(f"log_probs must be [batch, V] (got {getattr(log_probs, 'shape', None)})")
    if log_probs.dtype != torch.float32:
        raise contract_error(f"log_probs must be float32 (got {log_probs.dtype}); export the model in float32")
    if not isinstance(attn, Tensor) or tuple(attn.shape) != (B, S) or attn.dtype != torch.float32:
        raise contract_error(f"attn must be float32 [batch, src_len] = [{B}, {S}] "
                             f"(got {getattr(attn, 'dtype', None)} {list(getattr(attn, 'shape', []))})")
    if not isinstance(new_state, dict) or list(new_state) != list(state_a):
        raise contract_error(f"new_state must have the names of state in the same order "
                             f"({list(state_a)}; got {list(new_state) if isinstance(new_state, dict) else new_state})")
    for n, t in new_state.items():
        if not isinstance(t, Tensor) or t.shape != state_a[n].shape or t.dtype != state_a[n].dtype:
            raise contract_error(f"new_state[{n!r}] must have the shape and dtype of state[{n!r}] "
                                 f"({state_a[n].dtype} {list(state_a[n].shape)})")
    return ContractSpec(static, state, int(log_probs.shape[1]))


__all__ = ["ContractSpec", "EXAMPLE", "discover", "make_sources", "contract_error"]
