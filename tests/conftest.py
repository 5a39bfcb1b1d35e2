"""Shared test fixtures.

``tiny_checkpoint`` (session scope) trains tiny models once per test session and caches them::

    def test_something(tiny_checkpoint):
        path = tiny_checkpoint("luong-general")                  # reverse, 300 steps -> Path
        path = tiny_checkpoint("bahdanau", task="g2p", steps=50)  # char -> phoneme (word) model

    tiny_checkpoint(preset, task="reverse", steps=300, seed=0, **overrides) -> Path

* ``task``: ``reverse``/``copy``/``sort`` are the small tasks of ``tiny_task`` (strings of 2..6
  letters a-j; 300 steps reach >= 0.9 exact match on every preset), ``g2p`` is the real CMUdict
  task (a few hundred steps only give a weak model: fine for parity tests, not for accuracy).
* sizes: ``tiny_overrides(preset)`` (emb 32, dec_hidden 64, enc_hidden 64 / directions, so the
  ``dot`` and ``copy``-bridge presets stay valid); ``overrides`` change any config field.
* the same arguments return the same file (trained once per session, deterministic: seed and
  ``torch.set_num_threads(1)`` while training). Load it with
  ``s2s_export.models.load_checkpoint(path)``; ``ckpt.meta["task"]`` names the task and
  ``tiny_task(name)`` gives its pairs (``.test`` are held-out examples).

torch is imported lazily (inside the fixture), so tests that check that the runtime never
imports torch keep working in the same session.
"""

from __future__ import annotations

import functools
import io
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

TINY_STEPS = 300
TINY_EMB, TINY_HIDDEN = 32, 64


def tiny_overrides(preset: str, emb: int = TINY_EMB, hidden: int = TINY_HIDDEN) -> dict[str, Any]:
    """Config overrides that shrink ``preset``: emb, dec_hidden = hidden, enc_hidden = hidden /
    directions (keeps dot attention and the copy bridge valid)."""
    from s2s_export.models.presets import PRESETS

    dirs = 2 if PRESETS[preset].get("bidirectional", True) else 1
    return {"emb_size": emb, "enc_hidden": hidden // dirs, "dec_hidden": hidden}


@functools.lru_cache(maxsize=None)
def tiny_task(name: str = "reverse") -> Any:
    """The task behind ``tiny_checkpoint``: generated tasks with 5000 training pairs of 2..6
    letters and 200 held-out dev/test pairs; ``g2p`` is the full CMUdict task."""
    from s2s_export.train.data import g2p_task, generated_task

    if name == "g2p":
        return g2p_task()
    return generated_task(name, seed=0, n_train=5000, n_test=200, min_len=2, max_len=6)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``tiny_checkpoint(preset, task="reverse", steps=300, seed=0, **overrides) -> Path``."""
    cache: dict[tuple[Any, ...], Path] = {}
    root = tmp_path_factory.mktemp("tiny_checkpoints")

    def make(preset: str, task: str = "reverse", steps: int = TINY_STEPS, seed: int = 0,
             **overrides: Any) -> Path:
        fields = {**tiny_overrides(preset), **overrides}
        key = (preset, task, steps, seed, tuple(sorted(fields.items())))
        if key not in cache:
            import torch

            from s2s_export.models import save_checkpoint
            from s2s_export.train.trainer import train

            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                ckpt = train(preset, tiny_task(task), steps=steps, seed=seed, batch_size=32, lr=0.01,
                             progress=False, evaluate_on=None if task == "g2p" else "test", **fields)
            finally:
                torch.set_num_threads(threads)
            path = root / f"{preset}-{task}-{steps}-{seed}-{len(cache)}.pt"
            save_checkpoint(path, ckpt)
            cache[key] = path
        return cache[key]

    return make


SHARED_STEPS, SHARED_EMB, SHARED_HIDDEN = 120, 16, 32  # the luong-general model most runtime tests share


def export_shared_bundle(tiny_checkpoint: Callable[..., Path], out_dir: Path) -> Path:
    """The shared tiny luong-general model (``SHARED_*``; its checkpoint trained once a session by
    ``tiny_checkpoint``) exported to ``out_dir`` (top-K 8, max_src_len 32, unverified)."""
    import torch

    from s2s_export.export import export_model

    torch.set_num_threads(1)
    path = tiny_checkpoint("luong-general", steps=SHARED_STEPS,
                           **tiny_overrides("luong-general", SHARED_EMB, SHARED_HIDDEN))
    return export_model(path, out_dir, topk=8, verify=False, force=True, max_src_len=32).path


def run_cli(entry: str, argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
            stdin: bytes | None = None) -> tuple[int, str, str]:
    """Run a console script's ``main()`` in-process (``entry``: ``s2s`` or ``s2s-export``):
    (exit code, stdout, stderr)."""
    if entry == "s2s-export":
        from s2s_export.cli.export import main
    else:
        from s2s_export.cli.main import main
    monkeypatch.setattr(sys, "argv", [entry, *argv])
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main()
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err
