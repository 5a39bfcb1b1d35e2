"""The model zoo: decoding-contract shapes, masking, teacher forcing and learning, for every preset."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_overrides, tiny_task
from s2s_export.models import PRESETS, Seq2Seq, load_checkpoint, preset_config
from s2s_export.train.trainer import evaluate, train
from s2s_export.vocab import BOS_ID, EOS_ID, PAD_ID

torch.set_num_threads(1)
SRC_V, TGT_V = 13, 11
ALL = list(PRESETS)
BIDIRECTIONAL = [p for p in PRESETS if PRESETS[p].get("bidirectional", True)]


def model(preset: str, seed: int = 0, **overrides: object) -> Seq2Seq:
    torch.manual_seed(seed)
    cfg = preset_config(preset, SRC_V, TGT_V, **{**tiny_overrides(preset), **overrides})
    m = Seq2Seq(cfg).eval()
    with torch.no_grad():  # non-zero pad rows and larger weights: masking bugs then show up
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return m


def batch(lengths: list[int], extra_pad: int = 2, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """src [B, max(lengths)+extra_pad], each row: random ids then EOS, then PAD."""
    g = torch.Generator().manual_seed(seed)
    src = torch.full((len(lengths), max(lengths) + extra_pad), PAD_ID, dtype=torch.long)
    for i, n in enumerate(lengths):
        src[i, : n - 1] = torch.randint(4, SRC_V, (n - 1,), generator=g)
        src[i, n - 1] = EOS_ID
    return src, torch.tensor(lengths)


def tokens_for(step: int, B: int) -> torch.Tensor:
    return torch.full((B,), BOS_ID) if step == 0 else (torch.arange(B) + step) % (TGT_V - 4) + 4


@pytest.mark.parametrize("preset", ALL)
def test_shapes_and_normalisation(preset: str) -> None:
    m = model(preset)
    src, lengths = batch([5, 3, 7, 1])
    B, S = src.shape
    with torch.no_grad():
        static, state = m.encode(src, lengths)
        assert all(t.size(0) == B for t in (*static.values(), *state.values()))
        assert static["src_mask"].shape == (B, S) and static["src_mask"].dtype == torch.bool
        H, L = m.config.dec_hidden, m.config.dec_layers
        assert state["h"].shape == (B, L, H)
        if m.config.cell == "lstm":
            assert state["c"].shape == (B, L, H)
        if "memory" in static:
            assert static["memory"].shape == (B, S, m.config.memory_size)
        for step in range(3):
            log_probs, new_state, attn = m.decode_step(tokens_for(step, B), static, state)
            assert log_probs.shape == (B, TGT_V) and attn.shape == (B, S)
            assert list(new_state) == list(state)
            for k in state:
                assert new_state[k].shape == state[k].shape and new_state[k].dtype == state[k].dtype
            torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(B), atol=1e-5, rtol=0)
            if m.config.attention != "none":
                assert bool((attn >= 0).all()) and bool((attn.sum(-1) <= 1 + 1e-5).all())
            state = new_state


def _alone(t: torch.Tensor, i: int, n: int, S: int) -> torch.Tensor:
    """Row i of a batched tensor, cut to the sentence's length n on a source axis (size S)."""
    row = t[i : i + 1]
    return row[:, :n] if row.dim() >= 2 and row.size(1) == S else row


@pytest.mark.parametrize("preset", ALL)
def test_padding_in_a_batch_changes_nothing(preset: str) -> None:
    """Each sentence of a padded batch: same encoder outputs (where valid), same log-probs and
    attention over several steps as the sentence alone; attention exactly 0 on padding."""
    m = model(preset)
    lengths = [4, 9, 1, 6]
    src, lens = batch(lengths, extra_pad=3)
    B, S = src.shape
    with torch.no_grad():
        static_b, state_b = m.encode(src, lens)
        alone = [m.encode(src[i : i + 1, :n], lens[i : i + 1]) for i, n in enumerate(lengths)]
        for i, n in enumerate(lengths):
            static_1, state_1 = alone[i]
            for k in static_1:
                torch.testing.assert_close(_alone(static_b[k], i, n, S), static_1[k], atol=1e-5, rtol=1e-5)
            for k in state_1:
                torch.testing.assert_close(state_b[k][i : i + 1], state_1[k], atol=1e-5, rtol=1e-5)
        states_1 = [s for _, s in alone]
        for step in range(5):
            tok = tokens_for(step, B)
            lp_b, state_b, attn_b = m.decode_step(tok, static_b, state_b)
            for i, n in enumerate(lengths):
                lp_1, states_1[i], attn_1 = m.decode_step(tok[i : i + 1], alone[i][0], states_1[i])
                torch.testing.assert_close(lp_b[i : i + 1], lp_1, atol=1e-5, rtol=1e-5)
                torch.testing.assert_close(attn_b[i : i + 1, :n], attn_1, atol=1e-5, rtol=1e-5)
                assert bool((attn_b[i, n:] == 0).all()), "attention on padding must be exactly 0"


@pytest.mark.parametrize("preset", BIDIRECTIONAL)
def test_bidirectional_encoder_padded_vs_alone(preset: str) -> None:
    """The backward direction must start at each sentence's last real token (packing)."""
    m = model(preset)
    lengths = [2, 8, 5]
    src, lens = batch(lengths, extra_pad=4)
    with torch.no_grad():
        static_b, state_b = m.encode(src, lens)
        for i, n in enumerate(lengths):
            emb = m.src_emb(src[i : i + 1, :n])
            out, final = m.encoder(emb)  # the plain RNN on the unpadded sentence
            torch.testing.assert_close(static_b["memory"][i, :n], out[0], atol=1e-5, rtol=1e-5)
            assert bool((static_b["memory"][i, n:] == 0).all())
            h = final[0] if isinstance(final, tuple) else final  # [dirs, 1, He]
            expect_h = m._bridge(h, getattr(m, "bridge_h", None) if m.config.bridge == "linear" else None)
            torch.testing.assert_close(state_b["h"][i : i + 1], expect_h, atol=1e-5, rtol=1e-5)
            # the backward half of the first memory position is the backward final state
            He = m.config.enc_hidden
            torch.testing.assert_close(static_b["memory"][i, 0, He:], h[-1, 0], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("preset", ALL)
def test_forward_equals_decode_step_loop(preset: str) -> None:
    m = model(preset)
    src, lens = batch([6, 3, 4])
    tgt_in = torch.tensor([[BOS_ID, 5, 6, 7, 8], [BOS_ID, 9, 4, PAD_ID, PAD_ID], [BOS_ID, 4, 4, 5, PAD_ID]])
    with torch.no_grad():
        got = m(src, lens, tgt_in)
        static, state = m.encode(src, lens)
        steps = []
        for t in range(tgt_in.size(1)):
            lp, state, _ = m.decode_step(tgt_in[:, t], static, state)
            steps.append(lp)
    assert got.shape == (3, 5, TGT_V)
    torch.testing.assert_close(got, torch.stack(steps, 1), atol=0, rtol=0)


@pytest.mark.parametrize("preset", ["seed-global-mha", "luong-general", "bahdanau"])
def test_dropout_only_in_training_mode(preset: str) -> None:
    m = model(preset, dropout=0.5, enc_layers=2, dec_layers=2)
    ref = model(preset, dropout=0.0, enc_layers=2, dec_layers=2)
    ref.load_state_dict(m.state_dict())
    src, lens = batch([5, 3])
    tgt_in = torch.tensor([[BOS_ID, 5, 6], [BOS_ID, 7, 8]])
    with torch.no_grad():
        torch.testing.assert_close(m.eval()(src, lens, tgt_in), ref(src, lens, tgt_in), atol=0, rtol=0)
        torch.manual_seed(0)
        assert not torch.allclose(m.train()(src, lens, tgt_in), ref(src, lens, tgt_in))


def _learn(preset: str) -> pytest.param:  # type: ignore[valid-type]
    slow = preset.startswith("seed-")  # two-layer models: the slowest to train
    return pytest.param(preset, marks=[pytest.mark.slow] if slow else [])


@pytest.mark.parametrize("preset", [_learn(p) for p in ALL])
def test_every_preset_learns_reverse(preset: str, tiny_checkpoint) -> None:  # type: ignore[no-untyped-def]
    """Tiny sizes (emb 32, hidden 64), 300 steps of batch 32 on strings of 2..6 letters:
    >= 0.9 exact match on held-out strings (greedy decoding of the reloaded checkpoint)."""
    ckpt = load_checkpoint(tiny_checkpoint(preset))
    metrics = evaluate(ckpt, tiny_task("reverse").test)
    assert metrics["exact_match"] >= 0.9, metrics
    assert ckpt.meta["metrics"]["test"]["exact_match"] == pytest.approx(metrics["exact_match"])


def test_loss_decreases_from_chance() -> None:
    """A few dozen steps already take the loss well below the uniform-guess loss."""
    task = tiny_task("copy")
    ckpt = train("luong-general", task, steps=40, batch_size=32, lr=0.01, progress=False,
                 evaluate_on=None, **tiny_overrides("luong-general"))
    chance = torch.log(torch.tensor(float(len(task.tgt_vocab)))).item()
    assert ckpt.meta["final_loss"] < 0.7 * chance
