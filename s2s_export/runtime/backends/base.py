"""The backend protocol the search runs over (torch-free).

A backend owns the decoder state between steps; the search only ever sees small host arrays
(top-K candidates, optionally the full log-probs and the attention). Row bookkeeping:

* ``encode(src [B,S], src_lengths [B])`` runs the encoder and keeps static and state (B rows);
* ``keep(rows [B'])`` replaces static by ``static[rows]`` (rows of the *current* static): the
  search calls it when the batch layout changes (beam expansion after the first step, finished
  sentences leaving the batch);
* ``step(tokens [B'], reorder [B'], full, attn)`` first gathers ``state[reorder]`` (rows of the
  previous state), then runs one decoder step; the updated state stays inside the backend.
  ``len(tokens)`` must equal the current number of static rows.

An optional method is the fused greedy fast path (``FusedGreedy.greedy``: the whole greedy
decode as one graph run; the ONNX Runtime backend has it when the bundle has a greedy graph).
One optional method serves verification only (``s2s verify``; the search never calls it):
``state() -> {name: array}``, host copies of the current state tensors (see ``StateAccess``).
A backend without it is still a ``Backend``; verify then skips the state comparisons.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

# Loader settings for ONNX Runtime's CPU threads (other backends ignore them): which sessions'
# intra-op threads busy-wait between runs (see backends/onnxruntime.py).
SPINNING = ("off", "step", "all")
DEFAULT_SPINNING = "step"


@dataclass
class StepResult:
    """Host arrays of one decoder step (B' = rows of this step)."""

    topk_log_probs: np.ndarray  # [B',K] float32, best first
    topk_ids: np.ndarray  # [B',K] int64
    log_probs: np.ndarray | None = None  # [B',V] float32, only when ``full`` was asked
    attn: np.ndarray | None = None  # [B',S] float32, only when ``attn`` was asked


@runtime_checkable
class Backend(Protocol):
    """What ``greedy_search``/``beam_search`` need from an inference engine."""

    name: str  # "onnxruntime", "tensorrt", ...
    topk: int  # K of the step graph's topk_* outputs
    vocab_size: int  # V (target vocabulary)
    max_rows: int | None  # most rows one step accepts (TensorRT profiles); None: no limit

    def encode(self, src: np.ndarray, src_lengths: np.ndarray) -> None:
        """src [B,S] int64 (padded), src_lengths [B] int64 (>= 1): keep static and state."""
        ...

    def keep(self, rows: np.ndarray) -> None:
        """rows [B'] int64: static <- static[rows]."""
        ...

    def step(self, tokens: np.ndarray, reorder: np.ndarray, full: bool = False,
             attn: bool = False) -> StepResult:
        """tokens [B'] int64, reorder [B'] int64: state <- step(state[reorder]); return results."""
        ...


@runtime_checkable
class StateAccess(Protocol):
    """The optional debug/verification method of a backend (never used by the search)."""

    def state(self) -> dict[str, np.ndarray]:
        """Host copies of the current state tensors by state name, in the bundle's order:
        after ``encode`` the encoder's initial state, after ``step`` the step's ``next_<state>``
        outputs ([B', ...] each, B' = rows of the last call)."""
        ...


@runtime_checkable
class FusedGreedy(Protocol):
    """The optional fast path of greedy search: the whole decode in one graph run (no Python per
    step). The search uses it for plain greedy requests (no min_length, n-gram blocking,
    attention or full distribution, no blocked token the top-K may hold) and runs its own loop
    when it returns None."""

    topk_blocked: tuple[int, ...]  # the ids the step graph's top-K leaves out (io.blocked)

    def greedy(self, src: np.ndarray, src_lengths: np.ndarray, max_lengths: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """src [B,S], src_lengths [B], max_lengths [B] int64 -> (ids [B,T] int64, PAD after each
        row's end; scores [B] float64, summed log-probs; lengths [B] int64, EOS included), or
        None when the backend declines (no fused graph, or a batch it runs slower than the
        search's loop), before anything has run."""
        ...


__all__ = ["Backend", "FusedGreedy", "StateAccess", "StepResult"]
