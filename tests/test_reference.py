"""The PyTorch reference search (s2s_export.verify.reference) on its own: exhaustive search on a
tiny vocabulary, the options' semantics, and a trained tiny model."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from s2s_export.models import Seq2Seq, load_checkpoint, preset_config  # noqa: E402
from s2s_export.verify import reference as ref_mod  # noqa: E402
from s2s_export.verify.reference import reference_search  # noqa: E402
from s2s_export.vocab import BOS_ID, EOS_ID  # noqa: E402

TRAIN_STEPS, TRAIN_EMB, TRAIN_HIDDEN = 120, 16, 32  # the same as test_runtime: trained once a session


@pytest.fixture(scope="module")
def tiny_model() -> Seq2Seq:
    """Random weights, target vocabulary of 5 (4 non-EOS tokens), EOS likely enough."""
    torch.set_num_threads(1)
    torch.manual_seed(1)
    model = Seq2Seq(preset_config("luong-general", 9, 5, emb_size=8, enc_hidden=8, dec_hidden=16)).eval()
    with torch.no_grad():
        model.generator.weight.mul_(3.0)
    return model


def exhaustive(model: Seq2Seq, src: list[int], L: int, min_length: int, penalty) -> list:
    """Every hypothesis up to length L (EOS-terminated, or L tokens), best normalised score first."""
    out = []
    with torch.no_grad():
        static, state = model.encode(torch.tensor([src]), torch.tensor([len(src)]))

        def rec(gen: list[int], score: float, state: dict) -> None:
            token = gen[-1] if gen else BOS_ID
            lp, new_state, _ = model.decode_step(torch.tensor([token]), static, state)
            for tok in range(lp.size(1)):
                if tok == EOS_ID and len(gen) < min_length:
                    continue
                s = score + float(lp[0, tok])
                if tok == EOS_ID:
                    out.append((gen + [tok], s / penalty(len(gen) + 1)))
                elif len(gen) + 1 == L:
                    out.append((gen + [tok], s / penalty(L)))
                else:
                    rec(gen + [tok], s, new_state)

        rec([], 0.0, state)
    return sorted(out, key=lambda h: -h[1])


@pytest.mark.parametrize("penalty,alpha,min_length", [("none", 0.0, 0), ("gnmt", 0.8, 0), ("avg", 1.0, 1)])
def test_beam_with_room_for_everything_is_exhaustive(tiny_model: Seq2Seq, penalty: str, alpha: float,
                                                     min_length: int) -> None:
    sources = [[4, 5, 6, EOS_ID], [EOS_ID], [8, 8, EOS_ID]]
    got = reference_search(tiny_model, sources, beam_size=256, n_best=256, max_length=4, min_length=min_length,
                           length_penalty=penalty, alpha=alpha)
    for res, src in zip(got, sources):
        want = exhaustive(tiny_model, src, 4, min_length, lambda n: ref_mod._penalty(penalty, alpha, n))[:256]
        assert [ids for ids, _ in res] == [ids for ids, _ in want]
        assert [s for _, s in res] == pytest.approx([s for _, s in want], abs=1e-5)  # batch of n vs 1
    assert any(ids[-1] == EOS_ID for res in got for ids, _ in res)  # EOS- and length-terminated both
    assert any(ids[-1] != EOS_ID for res in got for ids, _ in res)


def test_greedy_is_a_beam_of_one(tiny_model: Seq2Seq) -> None:
    sources = [[4, 5, 6, EOS_ID], [EOS_ID], [8, 7, 6, 5, 4, EOS_ID]]
    pen = lambda n: 1.0  # noqa: E731
    with torch.no_grad():
        for src in sources:
            static, state = tiny_model.encode(torch.tensor([src]), torch.tensor([len(src)]))
            g = ref_mod._greedy(tiny_model, static, state, 10, 2, 0, pen, (BOS_ID, EOS_ID, ()))
            b = ref_mod._beam(tiny_model, static, state, 10, 1, 2, 0, pen, 1, (BOS_ID, EOS_ID, ()))
            assert [h[:2] for h in g] == [h[:2] for h in b]


def test_options(tiny_model: Seq2Seq) -> None:
    sources = [[4, EOS_ID], [4, 5, 6, 7, 8, 4, 5, EOS_ID]]
    for beam in (1, 3):
        res = reference_search(tiny_model, sources, beam_size=beam, n_best=beam, max_length=20,
                               max_length_ratio=0.5, min_length=0)
        assert all(len(ids) <= n for r, n in zip(res, (1, 4)) for ids, _ in r)
        res = reference_search(tiny_model, sources, beam_size=beam, n_best=beam, max_length=8, min_length=3)
        assert all(EOS_ID not in ids[:3] for r in res for ids, _ in r)
        res = reference_search(tiny_model, sources, beam_size=beam, n_best=beam, max_length=12, no_repeat_ngram_size=2)
        for ids, _ in (h for r in res for h in r):
            grams = [tuple(ids[i:i + 2]) for i in range(len(ids) - 1)]
            assert len(grams) == len(set(grams))
        res = reference_search(tiny_model, sources, beam_size=beam, n_best=beam, max_length=8)
        assert all([s for _, s in r] == sorted((s for _, s in r), reverse=True) for r in res)
        assert all(len(r) == beam for r in res)


def test_attention_and_modes(tiny_model: Seq2Seq) -> None:
    tiny_model.train()
    res = reference_search(tiny_model, [[4, 5, EOS_ID]], beam_size=2, n_best=2, max_length=5, return_attention=True)
    assert tiny_model.training  # the mode is restored (decoding itself ran in eval mode)
    tiny_model.eval()
    for ids, score, attn in res[0]:
        assert attn.shape == (len(ids), 3) and np.allclose(attn.sum(1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="n_best"):
        reference_search(tiny_model, [[EOS_ID]], beam_size=2, n_best=3)


def test_trained_model_translates(tiny_checkpoint) -> None:
    """On a trained tiny model the reference decodes the held-out reverse examples."""
    from conftest import tiny_overrides, tiny_task

    ckpt = load_checkpoint(tiny_checkpoint("luong-general", steps=TRAIN_STEPS,
                                           **tiny_overrides("luong-general", TRAIN_EMB, TRAIN_HIDDEN)))
    pairs = tiny_task("reverse").test[:30]
    sources = [ckpt.src_vocab.encode(s, add_eos=True) for s, _ in pairs]
    greedy = reference_search(ckpt.model, sources, max_length=20)
    beam = reference_search(ckpt.model, sources, beam_size=4, n_best=4, max_length=20,
                            length_penalty="gnmt", alpha=0.6)
    exact = np.mean([g[0][0] == ckpt.tgt_vocab.encode(t) + [EOS_ID] for g, (_, t) in zip(greedy, pairs)])
    assert exact >= 0.8
    for b in beam:
        assert len({tuple(ids) for ids, _ in b}) == 4  # distinct hypotheses
