"""Test support for the FP16 and TensorRT checks: tiny trained models and their bundles.

Not used by the pipeline. ``export_graphs`` writes a bundle (``encoder.onnx``,
``decoder_step.onnx``, ``manifest.json``) with ``export_model``; ``preset_graphs`` caches one
per preset and process (shared by test modules); ``train_tiny`` fits a model on the ``reverse``
task for a few hundred steps (seconds on a CPU).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..graphio import BundleIO


def export_graphs(model: Any, directory: str | Path, topk: int = 4, opset: int = 17) -> BundleIO:
    """Export ``model`` into the bundle directory ``directory`` (``export_model`` without the
    parity check; an existing directory is replaced) and return its graph IO."""
    from ..export import export_model

    bundle = export_model(model, directory, opset=opset, topk=topk, verify=False, force=True)
    return bundle.manifest.io


def train_tiny(preset: str = "luong-general", steps: int = 300, seed: int = 0,
               **overrides: Any) -> Any:
    """A ``Seq2Seq`` of ``preset`` trained on the ``reverse`` task (alphabet a..j, lengths 3..8)
    for ``steps`` Adam steps of 64 pairs: accurate enough that its argmaxes are meaningful."""
    import torch
    import torch.nn.functional as F

    from ..models import Seq2Seq, preset_config
    from ..train.data import generated_task

    torch.manual_seed(seed)
    task = generated_task("reverse", seed=seed, n_train=4000, n_test=50, min_len=3, max_len=8)
    cfg = preset_config(preset, len(task.src_vocab), len(task.tgt_vocab), **overrides)
    model = Seq2Seq(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    pairs = task.train
    for _ in range(steps):
        idx = torch.randint(len(pairs), (64,), generator=gen).tolist()
        src, lengths, tgt = batch_tensors([pairs[i] for i in idx], task.src_vocab, task.tgt_vocab)
        log_probs = model(src, lengths, tgt[:, :-1])
        loss = F.nll_loss(log_probs.reshape(-1, log_probs.size(-1)), tgt[:, 1:].reshape(-1),
                          ignore_index=model.pad_id)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.task = task  # type: ignore[assignment]  # handy for tests: vocabularies and test pairs
    return model


def batch_tensors(pairs: list[Any], src_vocab: Any, tgt_vocab: Any) -> tuple[Any, Any, Any]:
    """(src [B,S] with EOS, src_lengths [B], tgt [B,T] = BOS y EOS), padded with 0."""
    import torch

    from ..vocab import BOS_ID

    srcs = [src_vocab.encode(s, add_eos=True) for s, _ in pairs]
    tgts = [[BOS_ID] + tgt_vocab.encode(t, add_eos=True) for _, t in pairs]
    S, T = max(map(len, srcs)), max(map(len, tgts))
    src = torch.tensor([s + [0] * (S - len(s)) for s in srcs])
    tgt = torch.tensor([t + [0] * (T - len(t)) for t in tgts])
    return src, torch.tensor([len(s) for s in srcs]), tgt


@functools.lru_cache(maxsize=None)
def preset_graphs(preset: str, vocab: int = 20, topk: int = 4) -> Path:
    """Bundle of an untrained ``preset`` model, exported once per process into a temporary
    directory (shared by test modules; removed when the process exits)."""
    import torch

    from ..models import Seq2Seq, preset_config

    torch.manual_seed(0)
    model = Seq2Seq(preset_config(preset, vocab, vocab))
    root = Path(tempfile.mkdtemp(prefix=f"s2s-{preset}-"))
    atexit.register(shutil.rmtree, root, True)
    directory = root / "bundle"
    export_graphs(model, directory, topk=topk)
    return directory
