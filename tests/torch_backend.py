"""``TorchBackend``: the runtime's ``Backend`` protocol over a PyTorch module implementing the
decoding contract, for tests only.

It lets a search style (``runtime/search.py``'s ``STYLES``) run on an imported or zoo model
without exporting it first: the runtime's search code is then tested against a tool's own
outputs independently of the ONNX graphs (whose parity with PyTorch export checks separately).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from s2s_export.runtime.backends.base import StepResult


class TorchBackend:
    """``encode``/``keep``/``step`` of ``runtime.backends.base.Backend`` on ``model`` (eval, no
    grad, CPU). ``topk``: K of the top-K candidates each step returns (default: the whole
    target vocabulary, so any beam is exact)."""

    name = "torch"
    max_rows = None

    def __init__(self, model: Any, vocab_size: int, topk: int | None = None) -> None:
        self.model = model.eval()
        self.vocab_size = int(vocab_size)
        self.topk = int(topk or vocab_size)
        self.static: dict[str, Any] = {}
        self.state: dict[str, Any] = {}

    def encode(self, src: np.ndarray, src_lengths: np.ndarray) -> None:
        import torch

        with torch.no_grad():
            self.static, self.state = self.model.encode(torch.from_numpy(np.asarray(src, dtype=np.int64)),
                                                        torch.from_numpy(np.asarray(src_lengths, dtype=np.int64)))

    def keep(self, rows: np.ndarray) -> None:
        import torch

        index = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        self.static = {k: v.index_select(0, index) for k, v in self.static.items()}

    def step(self, tokens: np.ndarray, reorder: np.ndarray, full: bool = False, attn: bool = False) -> StepResult:
        import torch

        index = torch.from_numpy(np.asarray(reorder, dtype=np.int64))
        state = {k: v.index_select(0, index) for k, v in self.state.items()}
        with torch.no_grad():
            lp, self.state, att = self.model.decode_step(torch.from_numpy(np.asarray(tokens, dtype=np.int64)),
                                                         self.static, state)
            top_lp, top_ids = torch.topk(lp, min(self.topk, lp.shape[1]), dim=-1)
        return StepResult(top_lp.numpy(), top_ids.numpy(), lp.numpy() if full else None,
                          att.numpy() if attn else None)


__all__ = ["TorchBackend"]
