"""Checkpoint format: round trip, weights-only loading, and a clear error for each bad file."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from conftest import tiny_overrides
from s2s_export.errors import CheckpointError, ConfigError
from s2s_export.models import (PRESETS, Checkpoint, ModelConfig, Seq2Seq, load_checkpoint, preset_config,
                               save_checkpoint)
from s2s_export.vocab import BOS_ID, EOS_ID, PAD_ID, Vocab

torch.set_num_threads(1)
SRC = Vocab.build([list("abcdefgh")])
TGT = Vocab.build([["AA", "B", "CH", "D", "EH"]])


def checkpoint(preset: str = "luong-general", seed: int = 0) -> Checkpoint:
    torch.manual_seed(seed)
    cfg = preset_config(preset, len(SRC), len(TGT), **tiny_overrides(preset))
    return Checkpoint(Seq2Seq(cfg).eval(), SRC, TGT, "char", {"task": "unit", "steps": 0})


def outputs(m: Seq2Seq) -> list[torch.Tensor]:
    src = torch.tensor([[4, 5, 6, EOS_ID], [7, EOS_ID, PAD_ID, PAD_ID]])
    with torch.no_grad():
        static, state = m.encode(src, torch.tensor([4, 2]))
        out = [*static.values(), *state.values()]
        tok = torch.full((2,), BOS_ID)
        for _ in range(3):
            lp, state, attn = m.decode_step(tok, static, state)
            out += [lp, attn, *state.values()]
            tok = lp.argmax(-1)
    return out


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, checkpoint())
    return path


def raw(path: Path) -> dict:  # type: ignore[type-arg]
    return torch.load(path, weights_only=True)


def error_for(path: Path, **kwargs: object) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "Traceback" not in message and ";" in message  # "problem; fix"
    assert len(message.splitlines()) == 1, message
    return message


@pytest.mark.parametrize("preset", list(PRESETS))
def test_round_trip_identical_outputs(preset: str, tmp_path: Path) -> None:
    ckpt = checkpoint(preset, seed=3)
    save_checkpoint(tmp_path / "m.pt", ckpt)
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert loaded.config == ckpt.config and not loaded.model.training
    assert loaded.src_vocab == SRC and loaded.tgt_vocab == TGT
    assert loaded.tokenizer == "char" and loaded.meta == {"task": "unit", "steps": 0}
    for a, b in zip(outputs(ckpt.model), outputs(loaded.model), strict=True):
        assert torch.equal(a, b)


def test_file_loads_with_weights_only(saved: Path) -> None:
    data = raw(saved)
    assert data["format"] == "s2s-export-checkpoint" and data["version"] == 1
    assert data["specials"] == {"pad": 0, "bos": 1, "eos": 2, "unk": 3}
    assert all(isinstance(v, torch.Tensor) for v in data["state_dict"].values())
    assert not list(saved.parent.glob(".*tmp*"))  # the atomic write left no temporary file


def test_missing_file(tmp_path: Path) -> None:
    assert "does not exist" in error_for(tmp_path / "nope.pt")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_random_bytes(tmp_path: Path) -> None:
    """Many random files: each must give a CheckpointError (the unpickler raises IndexError,
    KeyError... on some of them)."""
    path = tmp_path / "noise.pt"
    for seed in range(300):
        path.write_bytes(random.Random(seed).randbytes(512))
        message = error_for(path)
        assert "--trust-pickle" not in message  # garbage is not "a trusted pickle away" from loading


def test_json_file(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"format": "s2s-export-checkpoint", "version": 1}))
    assert "--trust-pickle" not in error_for(path)


@pytest.mark.parametrize("fraction", [0.5, 0.95])
def test_truncated_file(saved: Path, tmp_path: Path, fraction: float) -> None:
    data = saved.read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: int(len(data) * fraction)])
    assert "truncated" in error_for(path)


def test_not_our_format(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    assert "not an s2s-export checkpoint" in error_for(path)


def test_wrong_version(saved: Path, tmp_path: Path) -> None:
    data = raw(saved)
    data["version"] = 99
    torch.save(data, tmp_path / "v99.pt")
    assert "version 99" in error_for(tmp_path / "v99.pt")


def test_config_and_weights_mismatch(saved: Path, tmp_path: Path) -> None:
    data = raw(saved)
    data["config"]["dec_hidden"] = 32  # weights are for 64
    torch.save(data, tmp_path / "mismatch.pt")
    assert "do not match" in error_for(tmp_path / "mismatch.pt")


def test_vocabulary_size_mismatch(saved: Path, tmp_path: Path) -> None:
    data = raw(saved)
    data["tgt_vocab"] = data["tgt_vocab"][:-1]
    torch.save(data, tmp_path / "vocab.pt")
    assert "vocabular" in error_for(tmp_path / "vocab.pt")


@pytest.mark.parametrize("key", ["src_vocab", "tgt_vocab", "config", "state_dict"])
def test_missing_entry(saved: Path, tmp_path: Path, key: str) -> None:
    data = raw(saved)
    del data[key]
    torch.save(data, tmp_path / "partial.pt")
    assert key in error_for(tmp_path / "partial.pt")


def test_pickled_module_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "module.pt"
    torch.save(checkpoint().model, path)  # a whole pickled nn.Module
    message = error_for(path)
    assert "--trust-pickle" in message and "pickle" in message
    # trusted, it unpickles, but it is still not an s2s-export checkpoint
    assert "not an s2s-export checkpoint" in error_for(path, trust_pickle=True)


def test_invalid_config_lists_every_problem() -> None:
    cfg = ModelConfig(src_vocab_size=10, tgt_vocab_size=0, attention="dot", enc_hidden=64,
                      bidirectional=True, dec_hidden=100, dropout=1.5, bridge="copy", enc_layers=2)
    with pytest.raises(ConfigError) as info:
        cfg.validate()
    message = str(info.value)
    lines = message.splitlines()
    assert len(lines) == len(info.value.problems) == 5, message
    for part in ("tgt_vocab_size", "dropout", "dot attention", "copy bridge needs dec_hidden",
                 "copy bridge needs enc_layers"):
        assert part in message
    assert all(";" in line for line in lines)  # each problem comes with its fix


def test_invalid_preset_overrides_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="dot attention needs dec_hidden"):
        preset_config("luong-dot", 10, 10, dec_hidden=100)
    with pytest.raises(ConfigError, match="unknown preset 'nope'; choose one of: seed-global-mha"):
        preset_config("nope", 10, 10)


def test_save_through_a_symbolic_link_keeps_the_link(tmp_path: Path) -> None:
    """``s2s train -o LINK``: the file the link points to is written (atomically), the link stays."""
    real, link = tmp_path / "real.pt", tmp_path / "link.pt"
    real.write_bytes(b"old")
    link.symlink_to(real)
    save_checkpoint(link, checkpoint())
    assert link.is_symlink() and load_checkpoint(real).config == checkpoint().config
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.pt", "real.pt"]
