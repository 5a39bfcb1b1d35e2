"""The floor: the matrix products of one encoder run / one decoder step as single numpy BLAS
calls over the model's own weights, i.e. what moving the weights and doing the arithmetic costs
with no framework at all (no gates, softmax, top-k, bindings or Python search around them).

Decoder step at R rows and source length S (zoo ``Seq2Seq``, ``ModelConfig`` fields):

* each decoder layer: one GEMM ``[R, in+H] @ [in+H, G*H]`` (input and recurrent weights
  concatenated; G = 4 LSTM, 3 GRU);
* each attention: scores ``keys [R,S,H] @ q [R,H,1]`` and context ``a [R,1,S] @ memory
  [R,S,M]`` (batched matmuls), plus its query/position projections (concat, additive, local-p,
  multi-head W_q/W_o);
* each combine ``[R, ctx+H] @ [ctx+H, H]``; the generator ``[R, H] @ [H, V]``.

Encoder at B x S: per layer and direction the input projection of all steps as one GEMM
``[B*S, in] @ [in, G*He]`` and S recurrent GEMMs ``[B, He] @ [He, G*He]``; the attention's key
(and value) projections ``[B*S, M] @ [M, H]``; the linear bridge ``[B*L, M] @ [M, H]``.

Weights: ``{state_dict name: array}`` (``weights.npz`` written by the torch worker) and the
model's config dict. Activations are random (their values do not change the cost) and every
output buffer is preallocated (``out=``), so only the products are timed. Torch-free.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..errors import UnsupportedError

Call = Callable[[], None]


def _t(w: np.ndarray) -> np.ndarray:
    """[out,in] (torch Linear layout) -> contiguous [in,out] for ``x @ w``."""
    return np.ascontiguousarray(np.asarray(w, dtype=np.float32).T)


class Floor:
    """Matmul-only encoder and decoder step of a zoo ``Seq2Seq`` (see the module docstring)."""

    def __init__(self, weights: dict[str, np.ndarray], config: dict[str, Any], seed: int = 0) -> None:
        cfg = dict(config)
        if "src_vocab_size" not in cfg or "cell" not in cfg:
            raise UnsupportedError("the floor needs a zoo Seq2Seq config (cell, sizes)",
                                   "benchmark a checkpoint written by s2s train / save_checkpoint")
        self.cfg = cfg
        self.rng = np.random.default_rng(seed)
        self.H = int(cfg["dec_hidden"])
        self.He = int(cfg["enc_hidden"])
        self.dirs = 2 if cfg["bidirectional"] else 1
        self.M = self.He * self.dirs
        self.w = weights
        L = int(cfg["dec_layers"])
        self.cells = [_t(np.concatenate([weights[f"cells.{l}.weight_ih"], weights[f"cells.{l}.weight_hh"]], 1))
                      for l in range(L)]  # [in+H, G*H]
        self.n_attn = sum(1 for k in weights if k.startswith("combine.") and k.endswith(".weight"))
        self.combine = [_t(weights[f"combine.{i}.weight"]) for i in range(self.n_attn)]  # [ctx+H, H]
        self.generator = _t(weights["generator.weight"])  # [H, V]
        self.enc: list[tuple[np.ndarray, np.ndarray]] = []  # per layer x direction: [in, G*He], [He, G*He]
        for layer in range(int(cfg["enc_layers"])):
            for suffix in ("", "_reverse")[: self.dirs]:
                self.enc.append((_t(weights[f"encoder.weight_ih_l{layer}{suffix}"]),
                                 _t(weights[f"encoder.weight_hh_l{layer}{suffix}"])))
        self.bridges = [_t(weights[k]) for k in ("bridge_h.weight", "bridge_c.weight") if k in weights]
        self.attn_kind = str(cfg["attention"])

    def _buf(self, *shape: int) -> np.ndarray:
        return self.rng.standard_normal(shape, dtype=np.float32)

    def _gemm(self, rows: int, w: np.ndarray) -> Call:
        return _matmul(self._buf(rows, w.shape[0]), w, np.empty((rows, w.shape[1]), np.float32))

    def _bmm(self, a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> Call:
        out = np.empty(np.broadcast_shapes(a_shape[:-2], b_shape[:-2]) + (a_shape[-2], b_shape[-1]), np.float32)
        return _matmul(self._buf(*a_shape), self._buf(*b_shape), out)

    def _attention_calls(self, i: int, R: int, S: int) -> list[Call]:
        H, M, kind = self.H, self.M, self.attn_kind
        w = self.w
        calls: list[Call] = []
        if kind == "multihead":
            heads = int(self.cfg["heads"])
            d = H // heads
            calls += [self._gemm(R, _t(w[f"attn.{i}.W_q.weight"])),
                      self._bmm((R, heads, 1, d), (R, heads, d, S)),
                      self._bmm((R, heads, 1, S), (R, heads, S, d)),
                      self._gemm(R, _t(w[f"attn.{i}.W_o.weight"]))]
            return calls
        if kind in ("concat", "additive"):
            calls += [self._gemm(R, _t(w[f"attn.{i}.W_q.weight"])),
                      self._gemm(R * S, _t(w[f"attn.{i}.v.weight"]))]
        else:  # dot, general, local-m, local-p: keys (or memory) times the query
            key_width = M if kind == "dot" else H
            calls.append(self._bmm((R, S, key_width), (R, key_width, 1)))
        if kind == "local-p":
            calls += [self._gemm(R, _t(w[f"attn.{i}.W_p.weight"])), self._gemm(R, _t(w[f"attn.{i}.v_p.weight"]))]
        calls.append(self._bmm((R, 1, S), (R, S, M)))  # context
        return calls

    def step(self, rows: int, src_len: int) -> Call:
        """One decoder step's products at ``rows`` x ``src_len``."""
        R, S = int(rows), int(src_len)
        layerwise = self.cfg.get("placement") == "layerwise"
        calls: list[Call] = []
        for layer, w in enumerate(self.cells):
            calls.append(self._gemm(R, w))
            if layerwise and layer < self.n_attn:
                calls += self._attention_calls(layer, R, S) + [self._gemm(R, self.combine[layer])]
        if not layerwise and self.n_attn:
            calls += self._attention_calls(0, R, S) + [self._gemm(R, self.combine[0])]
        calls.append(self._gemm(R, self.generator))
        return _sequence(calls)

    def encoder(self, batch: int, src_len: int) -> Call:
        """One encoder run's products at ``batch`` x ``src_len``."""
        B, S = int(batch), int(src_len)
        calls: list[Call] = []
        for w_ih, w_hh in self.enc:
            calls.append(self._gemm(B * S, w_ih))
            recurrent = self._gemm(B, w_hh)
            calls += [recurrent] * S
        w = self.w
        for i in range(self.n_attn):
            for name in ("W_a", "W_k", "W_v"):
                key = f"attn.{i}.{name}.weight"
                if key in w and not (name == "W_k" and self.attn_kind not in ("concat", "additive", "multihead")):
                    calls.append(self._gemm(B * S, _t(w[key])))
        L = int(self.cfg["dec_layers"])
        calls += [self._gemm(B * L, b) for b in self.bridges]
        return _sequence(calls)

    def replay(self, schedule: list[list[Any]]) -> Call:
        """The products of a recorded run: ``[["encode", B, S] | ["step", rows, S], ...]``."""
        cache: dict[tuple[Any, ...], Call] = {}
        calls: list[Call] = []
        for kind, rows, S in schedule:
            key = (kind, int(rows), int(S))
            if key not in cache:
                cache[key] = self.encoder(rows, S) if kind == "encode" else self.step(rows, S)
            calls.append(cache[key])
        return _sequence(calls)


def _matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> Call:
    def run() -> None:
        np.matmul(a, b, out=out)

    return run


def _sequence(calls: list[Call]) -> Call:
    def run() -> None:
        for call in calls:
            call()

    return run


__all__ = ["Floor"]
