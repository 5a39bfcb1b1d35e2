"""How far the FP16 decoder step is from float32, measured on the CPU with real float16 math.

ONNX Runtime's CPU provider computes float16 nodes in float32 (it understated the float16 error
~30x), so the FP16 step runs in ``onnx.reference.ReferenceEvaluator`` (numpy: float16 tensors,
float16 elementwise math, matmuls accumulated in float32 like TensorRT's float16 GEMMs). The
float32 reference runs in ONNX Runtime.

Greedy decoding from the float32 encoder's output, three decoders side by side:

* float32 (reference) with its own tokens and state;
* float16 *teacher-forced*: every step fed the float32 decoder's tokens and state, so each
  step's error is measured alone: log-prob error, top-1 agreement, state error;
* float16 *free-running*: its own tokens and state, like the runtime: exact-match rate of the
  greedy outputs.

``onnx.reference``'s LSTM ignores ``sequence_lens``, so the float16 *encoder* can only be run on
batches whose sentences all have the same length (``encoder_fp16``: used for the free-running
decoder when the lengths allow it).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import BundleError, require
from ..graphio import next_name


@dataclass
class FidelityReport:
    """FP16 vs FP32 on one batch (errors are absolute, in nats)."""

    sentences: int
    steps: int
    max_logprob_error_topk: float     # over the float32 top-k entries (what the search reads)
    max_logprob_error: float          # over the whole vocabulary
    mean_logprob_error_topk: float
    top1_agreement: float             # teacher-forced steps whose argmax agrees
    topk_agreement: float             # teacher-forced steps whose top-k id set agrees
    exact_match: float                # free-running greedy outputs identical to float32
    max_logprob_error_free: float = 0.0  # free-running, top-k entries, while its tokens agree
    max_state_error: dict[str, float] = field(default_factory=dict)  # teacher-forced, one step
    max_encoder_error: dict[str, float] = field(default_factory=dict)  # FP16 encoder outputs
    fp16_encoder: bool = False        # the free-running decoder started from the FP16 encoder

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Reference:
    """``onnx.reference.ReferenceEvaluator`` with a name -> array interface."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from onnx.reference import ReferenceEvaluator

        self.ref = ReferenceEvaluator(str(path))
        self.input_names = list(self.ref.input_names)
        self.output_names = list(self.ref.output_names)

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self.ref.run(None, {k: feeds[k] for k in self.input_names})
        return dict(zip(self.output_names, outs))


class _Ort:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        ort = require("onnxruntime", "cpu")
        opts = ort.SessionOptions()  # type: ignore[attr-defined]
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(str(path), opts,  # type: ignore[attr-defined]
                                         providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.sess.get_inputs()]
        self.output_names = [o.name for o in self.sess.get_outputs()]

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self.sess.run(None, {k: feeds[k] for k in self.input_names})
        return dict(zip(self.output_names, outs))


def step_fidelity(encoder_fp32: str | os.PathLike[str], step_fp32: str | os.PathLike[str],
                  step_fp16: str | os.PathLike[str], src: np.ndarray, src_lengths: np.ndarray,
                  max_len: int, bos_id: int = 1, eos_id: int = 2,
                  encoder_fp16: str | os.PathLike[str] | None = None) -> FidelityReport:
    """Compare the FP16 step with the FP32 step over ``max_len`` greedy steps.

    ``src [B,S]`` int64 (EOS-terminated, 0-padded), ``src_lengths [B]``."""
    src = np.asarray(src, dtype=np.int64)
    src_lengths = np.asarray(src_lengths, dtype=np.int64)
    B = src.shape[0]
    enc32, s32, s16 = _Ort(encoder_fp32), _Ort(step_fp32), _Reference(step_fp16)
    enc_feeds = {"src": src, "src_lengths": src_lengths}
    ctx32 = enc32(enc_feeds)
    state_names = [n for n in s32.input_names if next_name(n) in s32.output_names]
    states = [next_name(n) for n in state_names]

    use_enc16 = encoder_fp16 is not None and bool(np.all(src_lengths == src.shape[1]))
    ctx16 = _Reference(encoder_fp16)(enc_feeds) if use_enc16 else dict(ctx32)  # type: ignore[arg-type]
    enc_err = {n: float(np.abs(ctx16[n].astype(np.float32) - v).max()) for n, v in ctx32.items()
               if use_enc16 and v.dtype.kind == "f" and v.size}

    tok32 = np.full(B, bos_id, dtype=np.int64)
    tok16 = tok32.copy()
    reorder = np.arange(B, dtype=np.int64)
    out32: list[list[int]] = [[] for _ in range(B)]
    out16: list[list[int]] = [[] for _ in range(B)]
    done32, done16 = np.zeros(B, bool), np.zeros(B, bool)
    err_topk: list[float] = []
    err_all: list[float] = []
    err_free: list[float] = []
    same = np.ones(B, bool)  # free-running FP16 tokens so far equal the FP32 ones
    top1: list[bool] = []
    topk_same: list[bool] = []
    state_err = {n: 0.0 for n in state_names}
    for _ in range(max_len):
        if done32.all() and done16.all():
            break
        feeds32 = {**ctx32, "tokens": tok32, "reorder": reorder}
        r32 = s32(feeds32)
        tf = s16(feeds32)  # teacher-forced FP16 step
        live = ~done32
        lp32, lp16 = r32["log_probs"][live], tf["log_probs"][live].astype(np.float32)
        ids32 = r32["topk_ids"][live]
        if live.any():
            diff = np.abs(lp16 - lp32)
            err_all.append(float(diff.max()))
            err_topk.extend(np.take_along_axis(diff, ids32, axis=1).max(axis=1).tolist())
            top1.extend((lp16.argmax(1) == lp32.argmax(1)).tolist())
            topk_same.extend(set(a) == set(b) for a, b in zip(ids32.tolist(), tf["topk_ids"][live].tolist()))
            for n, nxt in zip(state_names, states):
                d = np.abs(tf[nxt][live].astype(np.float32) - r32[nxt][live])
                state_err[n] = max(state_err[n], float(d.max()) if d.size else 0.0)
        r16 = s16({**ctx16, "tokens": tok16, "reorder": reorder})  # free-running FP16
        agree = same & live
        if agree.any():
            d = np.abs(r16["log_probs"][agree].astype(np.float32) - r32["log_probs"][agree])
            err_free.append(float(np.take_along_axis(d, r32["topk_ids"][agree], axis=1).max()))
        tok32 = r32["log_probs"].argmax(1).astype(np.int64)
        tok16 = r16["log_probs"].argmax(1).astype(np.int64)
        same &= tok16 == tok32
        for b in range(B):
            if not done32[b]:
                out32[b].append(int(tok32[b]))
                done32[b] = tok32[b] == eos_id
            if not done16[b]:
                out16[b].append(int(tok16[b]))
                done16[b] = tok16[b] == eos_id
        for n, nxt in zip(state_names, states):
            ctx32[n] = r32[nxt]
            ctx16[n] = r16[nxt]
    steps = len(err_all)
    return FidelityReport(
        sentences=B, steps=steps,
        max_logprob_error_topk=max(err_topk, default=0.0),
        max_logprob_error=max(err_all, default=0.0),
        mean_logprob_error_topk=float(np.mean(err_topk)) if err_topk else 0.0,
        top1_agreement=float(np.mean(top1)) if top1 else 1.0,
        topk_agreement=float(np.mean(topk_same)) if topk_same else 1.0,
        exact_match=float(np.mean([a == b for a, b in zip(out32, out16)])),
        max_logprob_error_free=max(err_free, default=0.0),
        max_state_error=state_err, max_encoder_error=enc_err, fp16_encoder=use_enc16)


def bundle_fidelity(bundle_dir: str | os.PathLike[str], src: Sequence[Sequence[int]],
                    max_len: int = 50) -> FidelityReport:
    """``step_fidelity`` for a bundle with ``fp32`` and ``fp16`` graphs; ``src``: token ids of
    each source sentence as the model sees them (framing included). For ``s2s verify``."""
    from ..bundle import load_manifest

    directory = Path(bundle_dir)
    manifest = load_manifest(directory)
    graphs = manifest.graphs
    if "fp16" not in graphs or "fp32" not in graphs:
        raise BundleError(f"bundle {directory} has no fp16 graphs",
                          "re-export with s2s-export --trt (writes encoder.fp16.onnx and decoder_step.fp16.onnx)")
    seqs = [list(s) for s in src]
    S = max(len(s) for s in seqs)
    pad = manifest.src_specials.pad if manifest.src_specials.pad is not None else 0
    arr = np.array([s + [pad] * (S - len(s)) for s in seqs], dtype=np.int64)
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    return step_fidelity(directory / graphs["fp32"]["encoder"], directory / graphs["fp32"]["decoder_step"],
                         directory / graphs["fp16"]["decoder_step"], arr, lengths, max_len,
                         bos_id=manifest.start_id, eos_id=int(manifest.tgt_specials.eos),  # type: ignore[arg-type]
                         encoder_fp16=directory / graphs["fp16"]["encoder"])


__all__ = ["FidelityReport", "bundle_fidelity", "step_fidelity"]
