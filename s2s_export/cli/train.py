"""``s2s train``: train a preset on a task (CPU) and write a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from .common import cli_threads, handle_errors


TOKENIZER_HELP = ("the {side} side's tokenizer: char, word, pretokenized, sentencepiece:FILE, bpe:CODES or hf:FILE "
                  "(default: the task's)")


def _options(**values: Optional[Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


@handle_errors
def train_command(
    preset: str = typer.Option(..., "--preset", help="model preset (see s2s_export.models.PRESETS)"),
    task: str = typer.Option(..., "--task", help="reverse, copy, sort or g2p"),
    output: Path = typer.Option(..., "-o", "--output", help="checkpoint to write (model.pt)"),
    steps: int = typer.Option(1000, help="training steps (batches)"),
    seed: int = typer.Option(0, help="seed for the weights and the batch order"),
    batch_size: int = typer.Option(64, "--batch-size", help="training pairs per step"),
    lr: float = typer.Option(3e-3, help="Adam learning rate (decays to lr/10 over the 2nd half)"),
    teacher_forcing: float = typer.Option(1.0, "--teacher-forcing", help="probability of feeding the gold token"),
    emb: Optional[int] = typer.Option(None, "--emb", help="override emb_size"),
    enc_hidden: Optional[int] = typer.Option(None, "--enc-hidden", help="override enc_hidden (per direction)"),
    dec_hidden: Optional[int] = typer.Option(None, "--dec-hidden", help="override dec_hidden"),
    dropout: Optional[float] = typer.Option(None, "--dropout", help="override dropout"),
    eval_every: int = typer.Option(0, "--eval-every", help="print dev metrics every N steps (0: never)"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads"),
    src_tokenizer: Optional[str] = typer.Option(None, "--src-tokenizer", help=TOKENIZER_HELP.format(side="source")),
    tgt_tokenizer: Optional[str] = typer.Option(None, "--tgt-tokenizer", help=TOKENIZER_HELP.format(side="target")),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress line"),
) -> None:
    """Train a preset on a task and save a checkpoint; prints the test-split metrics."""
    from ..errors import ConfigError
    from ..models import PRESETS, save_checkpoint
    from ..train.data import TASKS

    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}", f"choose one of: {', '.join(PRESETS)}")
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}", f"choose one of: {', '.join(TASKS)}")
    import torch

    from ..train.trainer import train

    threads = cli_threads(threads, "--threads")  # never more torch threads than cores
    if threads is not None:
        torch.set_num_threads(threads)
    overrides = _options(emb_size=emb, enc_hidden=enc_hidden, dec_hidden=dec_hidden, dropout=dropout)
    ckpt = train(preset, task, steps=steps, seed=seed, batch_size=batch_size, lr=lr,
                 teacher_forcing=teacher_forcing, progress=not quiet, eval_every=eval_every,
                 src_tokenizer=src_tokenizer, tgt_tokenizer=tgt_tokenizer, **overrides)
    save_checkpoint(output, ckpt)
    m = ckpt.meta.get("metrics", {}).get("test", {})
    ter = "PER" if task == "g2p" else "token error rate"
    typer.echo(f"wrote {output}")
    if m:
        typer.echo(f"test ({int(m['n'])} examples): exact match {m['exact_match']:.4f}  "
                   f"{ter} {m['token_error_rate']:.4f}  WER {m['word_error_rate']:.4f}")


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
