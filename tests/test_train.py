"""Tasks, metrics, trainer determinism, greedy evaluation and the ``s2s train`` CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import tiny_overrides, tiny_task
from s2s_export.cli.main import app
from s2s_export.errors import ConfigError
from s2s_export.models import load_checkpoint
from s2s_export.train import metrics
from s2s_export.train.data import generated_task, load_task, split_of, strip_stress
from s2s_export.train.trainer import evaluate, greedy_decode, tokenizer_spec, train, translate

torch.set_num_threads(1)


def tiny_train(seed: int, steps: int = 25, **kwargs: object):  # type: ignore[no-untyped-def]
    return train("luong-general", tiny_task("reverse"), steps=steps, seed=seed, batch_size=16, lr=0.01,
                 progress=False, evaluate_on=None, **{**tiny_overrides("luong-general"), **kwargs})


# ------------------------------------------------------------------ trainer


def test_same_seed_same_weights_different_seed_different() -> None:
    a, b, c = tiny_train(0), tiny_train(0), tiny_train(1)
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.meta == b.meta
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_teacher_forcing_below_one_is_deterministic_too() -> None:
    a, b = tiny_train(0, steps=10, dropout=0.2), tiny_train(0, steps=10, dropout=0.2)
    a2 = train("luong-general", tiny_task("reverse"), steps=10, seed=0, batch_size=16, lr=0.01,
               teacher_forcing=0.5, progress=False, evaluate_on=None, **tiny_overrides("luong-general"))
    b2 = train("luong-general", tiny_task("reverse"), steps=10, seed=0, batch_size=16, lr=0.01,
               teacher_forcing=0.5, progress=False, evaluate_on=None, **tiny_overrides("luong-general"))
    for x, y in ((a, b), (a2, b2)):
        sx, sy = x.model.state_dict(), y.model.state_dict()
        assert all(torch.equal(sx[k], sy[k]) for k in sx)
    assert not a.model.training  # returned in eval mode


def test_meta_records_the_run(tiny_checkpoint) -> None:  # type: ignore[no-untyped-def]
    ckpt = load_checkpoint(tiny_checkpoint("luong-general"))
    meta = ckpt.meta
    assert meta["task"] == "reverse" and meta["preset"] == "luong-general"
    assert meta["steps"] == 300 and meta["seed"] == 0 and meta["overrides"]["emb_size"] == 32
    assert set(meta["metrics"]["test"]) == {"n", "exact_match", "token_error_rate", "word_error_rate"}
    assert meta["metrics"]["test"]["n"] == len(tiny_task("reverse").test)


def test_unknown_names_and_bad_options() -> None:
    with pytest.raises(ConfigError, match="unknown preset 'nope'; choose one of: .*luong-general"):
        train("nope", "reverse", steps=1)
    with pytest.raises(ConfigError, match="unknown task 'nope'; choose one of: reverse, copy, sort, g2p"):
        train("luong-general", "nope", steps=1)
    with pytest.raises(ConfigError, match="bad training options"):
        train("luong-general", "reverse", steps=0)


def test_greedy_decode_stops_at_eos_and_max_len(tiny_checkpoint) -> None:  # type: ignore[no-untyped-def]
    ckpt = load_checkpoint(tiny_checkpoint("luong-general"))
    pairs = tiny_task("reverse").test[:20]
    hyps = translate(ckpt, [s for s, _ in pairs])
    assert sum(h == t for h, (_, t) in zip(hyps, pairs)) >= 18
    assert all(len(h) <= 2 for h in translate(ckpt, [s for s, _ in pairs], max_len=2))
    src = torch.tensor([[4, 5, 2]])
    ids = greedy_decode(ckpt.model, src, torch.tensor([3]), max_len=10)[0]
    assert 2 not in ids  # EOS is not returned
    # batched == one by one (finished rows do not disturb the others)
    one_by_one = [translate(ckpt, [s], batch_size=1)[0] for s, _ in pairs[:6]]
    assert one_by_one == hyps[:6]


def test_evaluate_scores_the_greedy_outputs(tiny_checkpoint) -> None:  # type: ignore[no-untyped-def]
    ckpt = load_checkpoint(tiny_checkpoint("bahdanau"))
    pairs = tiny_task("reverse").test[:50]
    hyps = translate(ckpt, [s for s, _ in pairs])
    assert evaluate(ckpt, pairs) == metrics.score(hyps, [t for _, t in pairs])


# ------------------------------------------------------------------ tasks


@pytest.mark.parametrize("name", ["reverse", "copy", "sort"])
def test_generated_tasks(name: str) -> None:
    a = generated_task(name, seed=5, n_train=300, n_test=40, min_len=3, max_len=7)
    b = generated_task(name, seed=5, n_train=300, n_test=40, min_len=3, max_len=7)
    c = generated_task(name, seed=6, n_train=300, n_test=40, min_len=3, max_len=7)
    assert (a.train, a.dev, a.test) == (b.train, b.dev, b.test)
    assert a.train != c.train
    assert len(a.train) == 300 and len(a.dev) == len(a.test) == 40
    train_src = {s for s, _ in a.train}
    held = [s for s, _ in a.dev + a.test]
    assert not train_src & set(held) and len(set(held)) == len(held)
    expect = {"reverse": lambda s: s[::-1], "copy": lambda s: s, "sort": lambda s: tuple(sorted(s))}[name]
    for src, tgt in a.train + a.test:
        assert 3 <= len(src) <= 7 and set(src) <= set("abcdefghij")
        assert tgt == expect(src)
    assert a.src_tokenizer == a.tgt_tokenizer == "char"
    assert set(a.src_vocab.tokens[4:]) == set("abcdefghij")


def test_g2p_task_from_cmudict() -> None:
    task = load_task("g2p")
    assert (task.src_tokenizer, task.tgt_tokenizer) == ("char", "word")
    assert tokenizer_spec(task) == "char:word" and tokenizer_spec(tiny_task("sort")) == "char"
    n = len(task.train) + len(task.dev) + len(task.test)
    assert n > 100_000
    assert 0.04 < len(task.test) / n < 0.06 and 0.04 < len(task.dev) / n < 0.06
    words = {"".join(s): t for s, t in task.train + task.dev + task.test}
    assert len(words) == n  # one pronunciation per word, each word in one split
    assert words["hello"] == ("HH", "AH", "L", "OW")  # stress digits stripped
    assert all(split_of("".join(s)) == "test" for s, _ in task.test)
    assert all(set(s) <= set("abcdefghijklmnopqrstuvwxyz") for s in words)
    phonemes = task.tgt_vocab.tokens[4:]
    assert len(phonemes) == 39 and not any(ch.isdigit() for p in phonemes for ch in p)
    assert strip_stress("AH0") == "AH" and strip_stress("ER1") == "ER"


# ------------------------------------------------------------------ metrics


def test_metrics_on_hand_made_examples() -> None:
    assert metrics.edit_distance("kitten", "sitting") == 3
    assert metrics.edit_distance([], ["a", "b"]) == 2
    assert metrics.edit_distance(["a", "b"], []) == 2
    refs = [("HH", "AH", "L", "OW"), ("K", "AE", "T"), ("D", "AO", "G")]
    hyps = [("HH", "EH", "L", "OW"), ("K", "AE", "T"), ("D", "AO")]
    # errors: 1 substitution + 0 + 1 deletion over 4 + 3 + 3 reference phonemes
    assert metrics.token_error_rate(hyps, refs) == pytest.approx(2 / 10)
    assert metrics.word_error_rate(hyps, refs) == pytest.approx(2 / 3)
    assert metrics.exact_match(hyps, refs) == pytest.approx(1 / 3)
    scores = metrics.score(hyps, refs)
    assert scores == {"n": 3.0, "exact_match": pytest.approx(1 / 3),
                      "token_error_rate": pytest.approx(0.2), "word_error_rate": pytest.approx(2 / 3)}
    assert metrics.token_error_rate([("A", "B", "C", "D")], [("A",)]) == 3.0  # insertions count
    with pytest.raises(ValueError):
        metrics.exact_match([("a",)], [])


# ------------------------------------------------------------------ CLI


def test_cli_train_writes_a_loadable_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "model.pt"
    result = CliRunner().invoke(app, ["train", "--preset", "luong-dot", "--task", "copy", "-o", str(out),
                                      "--steps", "3", "--batch-size", "8", "--emb", "16", "--enc-hidden", "16",
                                      "--dec-hidden", "32", "--seed", "2", "--threads", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "exact match" in result.output
    ckpt = load_checkpoint(out)
    assert ckpt.config.dec_hidden == 32 and ckpt.config.attention == "dot"
    assert ckpt.meta["task"] == "copy" and ckpt.meta["seed"] == 2 and ckpt.meta["steps"] == 3
    assert ckpt.tokenizer == "char"


def test_cli_unknown_preset_one_line_exit_1(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "s2s_export.cli.main", "train", "--preset", "nope", "--task",
                           "reverse", "-o", str(tmp_path / "m.pt")], capture_output=True, text=True)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown preset 'nope'" in lines[0] and "luong-general" in lines[0]
    assert "Traceback" not in proc.stderr and not (tmp_path / "m.pt").exists()


def test_cli_unknown_task_and_bad_override(tmp_path: Path) -> None:
    runner = CliRunner()
    out = str(tmp_path / "x.pt")
    result = runner.invoke(app, ["train", "--preset", "luong-dot", "--task", "nope", "-o", out])
    assert result.exit_code == 1 and "unknown task 'nope'" in result.output
    result = runner.invoke(app, ["train", "--preset", "luong-dot", "--task", "copy", "-o", out,
                                 "--dec-hidden", "100", "--steps", "1"])
    assert result.exit_code == 1 and "dot attention needs dec_hidden" in result.output
    assert not (tmp_path / "x.pt").exists()


# ------------------------------------------------------------------ the shipped example

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "g2p.pt"


@pytest.mark.skipif(not EXAMPLE.exists(), reason="examples/g2p.pt not built (see examples/README.md)")
def test_shipped_g2p_model() -> None:
    ckpt = load_checkpoint(EXAMPLE)
    assert EXAMPLE.stat().st_size < 8_000_000
    assert ckpt.meta["task"] == "g2p" and ckpt.tokenizer == "char:word"
    recorded = ckpt.meta["metrics"]["test"]
    assert recorded["n"] == len(load_task("g2p").test) and recorded["word_error_rate"] < 0.4
    sample = load_task("g2p").test[::20]  # ~300 held-out words
    assert evaluate(ckpt, sample)["token_error_rate"] < 0.15
    assert translate(ckpt, [tuple("cat"), tuple("fish")]) == [("K", "AE", "T"), ("F", "IH", "SH")]
