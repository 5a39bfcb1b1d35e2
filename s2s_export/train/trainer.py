"""CPU trainer: Adam, gradient clipping, NLL loss ignoring padding; greedy evaluation.

Deterministic for a seed: ``torch.manual_seed(seed)`` before the model is built, and batches
drawn from ``numpy.random.default_rng(seed)`` (a fresh permutation of the training pairs per
epoch). Learning rate: constant for the first half of the steps, then linear decay to lr/10.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..conventions import Text, TextSide
from ..errors import ConfigError
from ..models import Checkpoint, ModelConfig, PRESETS, Seq2Seq, preset_config
from ..vocab import BOS_ID, EOS_ID, PAD_ID, Vocab
from . import metrics
from .data import Pair, Task, load_task, retokenize


def pad(seqs: Sequence[Sequence[int]]) -> Tensor:
    """Right-pad int sequences with PAD -> [B, max_len] int64."""
    out = torch.full((len(seqs), max(len(s) for s in seqs)), PAD_ID, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


def encode_sources(srcs: Sequence[Sequence[str]], vocab: Vocab) -> tuple[Tensor, Tensor]:
    """Token lists -> src [B,S] (each row ends with EOS), src_lengths [B]."""
    ids = [vocab.encode(s, add_eos=True) for s in srcs]
    return pad(ids), torch.tensor([len(s) for s in ids], dtype=torch.long)


def make_batch(pairs: Sequence[tuple[list[int], list[int]]]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Pre-encoded (src ids + EOS, tgt ids) pairs -> src [B,S], src_lengths [B],
    tgt_in [B,T] = [BOS]+y, tgt_out [B,T] = y+[EOS] (both PAD-padded)."""
    src = pad([s for s, _ in pairs])
    lengths = torch.tensor([len(s) for s, _ in pairs], dtype=torch.long)
    return (src, lengths, pad([[BOS_ID] + t for _, t in pairs]), pad([t + [EOS_ID] for _, t in pairs]))


@torch.no_grad()
def greedy_decode(model: Seq2Seq, src: Tensor, src_lengths: Tensor, max_len: int) -> list[list[int]]:
    """Batched greedy search: argmax each step, a row stops at EOS (EOS not returned) or after
    ``max_len`` tokens. src [B,S] -> B lists of token ids."""
    static, state = model.encode(src, src_lengths)
    tokens = torch.full((src.size(0),), model.bos_id, dtype=torch.long)
    done = torch.zeros(src.size(0), dtype=torch.bool)
    steps: list[Tensor] = []
    for _ in range(max_len):
        log_probs, state, _ = model.decode_step(tokens, static, state)
        tokens = log_probs.argmax(-1)
        steps.append(tokens)
        done |= tokens == model.eos_id
        if bool(done.all()):
            break
    out = []
    for row in torch.stack(steps, 1).tolist():
        out.append(row[: row.index(model.eos_id)] if model.eos_id in row else row)
    return out


def translate(ckpt: Checkpoint, srcs: Sequence[Sequence[str]], batch_size: int = 256,
              max_len: int | None = None) -> list[tuple[str, ...]]:
    """Greedy outputs (target token strings) for source token lists. ``max_len`` defaults to
    2 * source length + 5 (per batch)."""
    model = ckpt.model
    was_training = model.training
    model.eval()
    order = sorted(range(len(srcs)), key=lambda i: len(srcs[i]))  # similar lengths per batch
    hyps: list[tuple[str, ...]] = [()] * len(srcs)
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            src, lengths = encode_sources([srcs[i] for i in idx], ckpt.src_vocab)
            limit = max_len if max_len is not None else 2 * src.size(1) + 5
            for i, ids in zip(idx, greedy_decode(model, src, lengths, limit)):
                hyps[i] = tuple(ckpt.tgt_vocab.decode(ids))
    finally:
        model.train(was_training)
    return hyps


def evaluate(ckpt: Checkpoint, pairs: Sequence[Pair], batch_size: int = 256) -> dict[str, float]:
    """Greedy-decode the sources of ``pairs`` and score against the targets (``metrics.score``)."""
    hyps = translate(ckpt, [s for s, _ in pairs], batch_size)
    return metrics.score(hyps, [tuple(t) for _, t in pairs])


class Progress:
    """One status line on stderr (rewritten in place on a terminal, every 5% otherwise)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.start = total, enabled, time.monotonic()
        self.tty = sys.stderr.isatty()
        self.every = 1 if self.tty else max(total // 20, 1)

    def update(self, step: int, loss: float, extra: str = "") -> None:
        if not self.enabled or (step % self.every and step != self.total and not extra):
            return
        rate = step / max(time.monotonic() - self.start, 1e-9)
        line = f"step {step}/{self.total}  loss {loss:.4f}  {rate:.1f} steps/s{extra}"
        sys.stderr.write(("\r" + line + "\x1b[K") if self.tty else line + "\n")
        if self.tty and step == self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def tokenizer_spec(task: Task) -> str:
    """The checkpoint's tokenizer: ``"char"``/``"word"``, or ``"SRC:TGT"`` (g2p: ``"char:word"``)."""
    return task.src_tokenizer if task.src_tokenizer == task.tgt_tokenizer else \
        f"{task.src_tokenizer}:{task.tgt_tokenizer}"


def build_config(model: str | ModelConfig, task: Task, **overrides: Any) -> ModelConfig:
    """The task-sized ``ModelConfig`` of a preset name or a config (vocab sizes from the task)."""
    sizes: dict[str, Any] = dict(src_vocab_size=len(task.src_vocab), tgt_vocab_size=len(task.tgt_vocab))
    if isinstance(model, ModelConfig):
        return dataclasses.replace(model, **sizes, **overrides).validate()
    return preset_config(model, **sizes, **overrides)


def _retokenized(data: Task, src_spec: str | None, tgt_spec: str | None) -> tuple[Task, Text, dict[str, bytes]]:
    """The task re-tokenized with the given specs, the ``Text`` a checkpoint records, the files."""
    from ..text import TextProcessor, parse_spec

    sides: dict[str, TextSide] = {}
    procs: dict[str, TextProcessor | None] = {}
    files: dict[str, bytes] = {}
    for side, spec, kind in (("src", src_spec, data.src_tokenizer), ("tgt", tgt_spec, data.tgt_tokenizer)):
        if spec is None:
            sides[side], procs[side] = TextSide(kind=kind), None  # type: ignore[arg-type]
            continue
        sides[side], path = parse_spec(spec, side)
        procs[side] = TextProcessor(sides[side], path=path)
        if path is not None:
            files[str(sides[side].file)] = path.read_bytes()
    return retokenize(data, procs["src"], procs["tgt"]), Text(src=sides["src"], tgt=sides["tgt"]), files


def train(model: str | ModelConfig, task: str | Task, steps: int = 1000, seed: int = 0,
          batch_size: int = 64, lr: float = 3e-3, teacher_forcing: float = 1.0, clip: float = 1.0,
          progress: bool = True, eval_every: int = 0, evaluate_on: str | None = "test",
          src_tokenizer: str | None = None, tgt_tokenizer: str | None = None, **overrides: Any) -> Checkpoint:
    """Train a preset (name) or ``ModelConfig`` on a task (name or ``Task``) and return the
    checkpoint, in eval mode, with ``meta`` = task, preset, hyper-parameters, final loss and the
    greedy metrics on the ``evaluate_on`` split (``None``: skip). ``overrides`` change config
    fields (``emb_size=32``...). ``eval_every`` > 0 prints dev metrics (500 evenly spaced pairs).
    ``src_tokenizer``/``tgt_tokenizer``: re-tokenize a side of the task with a tokenizer spec
    (``sentencepiece:FILE``, ``bpe:CODES``, ``hf:FILE``, ``word``, ``pretokenized``, ``char``);
    the checkpoint then carries the text processing and its files (``s2s-export`` copies them
    into the bundle)."""
    if isinstance(model, str) and model not in PRESETS:
        raise ConfigError(f"unknown preset {model!r}", f"choose one of: {', '.join(PRESETS)}")
    if steps < 1 or batch_size < 1 or lr <= 0 or not 0.0 <= teacher_forcing <= 1.0:
        raise ConfigError(f"bad training options (steps={steps}, batch_size={batch_size}, lr={lr}, "
                          f"teacher_forcing={teacher_forcing})",
                          "use steps >= 1, batch_size >= 1, lr > 0, 0 <= teacher_forcing <= 1")
    data = load_task(task) if isinstance(task, str) else task
    text, text_files = None, {}  # type: Text | None, dict[str, bytes]
    if src_tokenizer is not None or tgt_tokenizer is not None:
        data, text, text_files = _retokenized(data, src_tokenizer, tgt_tokenizer)
    if not data.train:
        raise ConfigError(f"task {data.name!r} has no training pairs", "generate more data")
    config = build_config(model, data, **overrides)

    torch.manual_seed(seed)
    net = Seq2Seq(config)
    ckpt = Checkpoint(net, data.src_vocab, data.tgt_vocab, tokenizer_spec(data) if text is None else text.tokenizer,
                      text=text, text_files=text_files)
    encoded = [(data.src_vocab.encode(s, add_eos=True), data.tgt_vocab.encode(t)) for s, t in data.train]
    rng = np.random.default_rng(seed)
    order: list[int] = []
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 1.0 if i < steps // 2 else max(0.1, 1.0 - 0.9 * (i - steps // 2) / max(steps - steps // 2, 1)))
    bar = Progress(steps, progress)
    net.train()
    avg = None
    for step in range(1, steps + 1):
        if len(order) < batch_size:
            order += rng.permutation(len(encoded)).tolist()
        batch, order = [encoded[i] for i in order[:batch_size]], order[batch_size:]
        src, lengths, tgt_in, tgt_out = make_batch(batch)
        log_probs = net(src, lengths, tgt_in, teacher_forcing)  # [B,T,V]
        loss = F.nll_loss(log_probs.reshape(-1, log_probs.size(-1)), tgt_out.reshape(-1), ignore_index=PAD_ID)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        opt.step()
        sched.step()
        avg = loss.item() if avg is None else 0.95 * avg + 0.05 * loss.item()
        extra = ""
        if eval_every and step % eval_every == 0 and data.dev:
            m = evaluate(ckpt, data.dev[:: max(len(data.dev) // 500, 1)][:500])
            extra = f"  dev exact {m['exact_match']:.3f} ter {m['token_error_rate']:.3f}"
        bar.update(step, avg, extra)

    net.eval()
    ckpt.meta = {
        "task": data.name, "preset": model if isinstance(model, str) else None,
        "src_tokenizer": data.src_tokenizer, "tgt_tokenizer": data.tgt_tokenizer,
        "steps": steps, "seed": seed, "batch_size": batch_size, "lr": lr,
        "teacher_forcing": teacher_forcing, "clip": clip, "overrides": dict(overrides),
        "final_loss": float(avg if avg is not None else float("nan")),
    }
    if evaluate_on:
        split = getattr(data, evaluate_on)
        ckpt.meta["metrics"] = {evaluate_on: evaluate(ckpt, split)} if split else {}
    return ckpt
