"""The g2p_en importer (``s2s_export/importers/g2p_en.py``) against g2p_en 2.1.0 itself.

``tests/fixtures/peers/g2p_en/``: 1,000 words outside CMUdict and what ``G2p().predict(word)``
returned for each (``make_g2p_en.py`` there, run with g2p_en's own interpreter). The weights come
from the installed ``g2p-en`` package (``pip install g2p-en``, in the dev extra; the package is
never imported, only its ``checkpoint20.npz`` read); tests that need them skip without it. The
importer's mechanics (ids, framing, refusals) also run on a tiny g2p_en-shaped npz.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from s2s_export.conventions import Specials, specials_of  # noqa: E402
from s2s_export.errors import CheckpointError, MissingDependencyError  # noqa: E402
from s2s_export.importers import g2p_en as imp  # noqa: E402
from s2s_export.runtime.search import SearchOptions, search  # noqa: E402
from s2s_export.runtime.translator import pad_sources  # noqa: E402
from torch_backend import TorchBackend  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "peers" / "g2p_en"
HAVE_G2P_EN = importlib.util.find_spec("g2p_en") is not None
needs_g2p_en = pytest.mark.skipif(not HAVE_G2P_EN, reason="g2p-en is not installed (pip install g2p-en==2.1.0, "
                                                          "in the dev extra): these tests read its checkpoint20.npz")
# g2p_en's conventions as the runtime's search takes them: start at <s> 2, stop at </s> 3, never
# emit <pad> 0 or <s> 2; G2p.predict's 20-step limit (EOS counted in our length)
G2P_OPTS = dict(max_length=20, start_id=2, eos_id=3, pad_id=0, unk_id=1, blocked=(0, 2))
E, H = 4, 6  # the tiny npz's sizes


def tiny_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 arrays with g2p_en's names and vocabulary sizes, E=4, H=6."""
    rng = np.random.default_rng(seed)
    sizes = {"S": len(imp.GRAPHEMES), "T": len(imp.PHONEMES), "E": E, "H": H, "3H": 3 * H}
    return {name: rng.standard_normal([sizes[d] for d in dims]).astype(np.float32)
            for name, dims in imp.ARRAYS.items()}


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("g2p_en") / "tiny.npz"
    np.savez(path, **tiny_arrays())
    return path


@pytest.fixture(scope="module")
def real() -> Any:
    if not HAVE_G2P_EN:
        pytest.skip("g2p-en is not installed (pip install g2p-en==2.1.0, in the dev extra)")
    return imp.load(imp.package_checkpoint())


@pytest.fixture(scope="module")
def fixture_words() -> tuple[list[str], list[str]]:
    words = (FIXTURE / "words.txt").read_text().splitlines()
    predictions = (FIXTURE / "predictions.txt").read_text().splitlines()
    assert len(words) == len(predictions) == 1000
    return words, predictions


def phonemes(words: list[str], model: Any, **opts: Any) -> list[list[Any]]:
    """Search results for ``words`` over the PyTorch module (letters + ``</s>``)."""
    index = {g: i for i, g in enumerate(imp.GRAPHEMES)}
    src, lengths = pad_sources([[index.get(ch, 1) for ch in w] + [2] for w in words])
    return search(TorchBackend(model, len(imp.PHONEMES)), src, lengths, SearchOptions(**{**G2P_OPTS, **opts}))


def text(ids: list[int]) -> str:
    """What g2p_en prints: the phonemes before ``</s>``."""
    return " ".join(imp.PHONEMES[i] for i in (ids[:ids.index(3)] if 3 in ids else ids))


# ------------------------------------------------------------------ the importer

def test_ids_framing_and_defaults(tiny_npz: Path) -> None:
    m = imp.load(tiny_npz)
    assert m.format == "g2p_en" and m.tokenizer == "char:word"
    assert m.src_vocab[:4] == ["<pad>", "<unk>", "</s>", "a"] and m.src_vocab[-1] == "z" and len(m.src_vocab) == 29
    assert m.tgt_vocab[:5] == ["<pad>", "<unk>", "<s>", "</s>", "AA0"] and m.tgt_vocab[-1] == "ZH"
    assert len(m.tgt_vocab) == 74 and len(set(m.tgt_vocab)) == 74
    src, tgt = specials_of(m.model)
    assert src == Specials(pad=0, bos=None, eos=2, unk=1)
    assert tgt == Specials(pad=0, bos=2, eos=3, unk=1)
    assert m.framing.frame([7, 8], src) == [7, 8, 2]  # letters + </s>, no bos
    assert m.framing.start_id(tgt) == 2
    assert (m.search.style, m.search.beam_size, m.search.max_length) == ("s2s", 1, 20)
    assert m.search.length_penalty == "none" and m.search.min_length == 0 and m.search.never_generate == ()
    assert m.model_config["normalize"] == "lower" and m.model_config["format"] == "g2p_en"
    assert (m.model_config["emb_size"], m.model_config["hidden_size"]) == (E, H)
    assert not m.model.training and not m.warnings


def test_weights_are_the_npz_arrays(tiny_npz: Path) -> None:
    arrays, model = tiny_arrays(), imp.load(tiny_npz).model
    pairs = {"enc_emb": model.src_emb.weight, "enc_w_ih": model.encoder.weight_ih_l0,
             "enc_b_hh": model.encoder.bias_hh_l0, "dec_emb": model.tgt_emb.weight,
             "dec_w_hh": model.decoder.weight_hh, "dec_b_ih": model.decoder.bias_ih,
             "fc_w": model.fc.weight, "fc_b": model.fc.bias}
    for name, param in pairs.items():
        np.testing.assert_array_equal(param.detach().numpy(), arrays[name], err_msg=name)


def test_contract_shapes(tiny_npz: Path) -> None:
    model = imp.load(tiny_npz).model
    src = torch.tensor([[3, 4, 5, 2], [6, 2, 0, 0]])
    with torch.no_grad():
        static, state = model.encode(src, torch.tensor([4, 2]))
        lp, new, attn = model.decode_step(torch.tensor([2, 2]), static, state)
        # padding is ignored: the short sentence alone gives the same state
        _, alone = model.encode(src[1:, :2], torch.tensor([2]))
    assert list(static) == ["src_mask"] and list(state) == ["h"] and state["h"].shape == (2, H)
    assert lp.shape == (2, 74) and attn.shape == (2, 4) and not attn.any() and new["h"].shape == (2, H)
    torch.testing.assert_close(alone["h"][0], state["h"][1])
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(2))


def test_describe(tiny_npz: Path) -> None:
    d = imp.describe(tiny_npz)
    assert d["format"] == "g2p_en" and d["unsupported"] == []
    assert (d["emb_size"], d["hidden_size"], d["src_vocab_size"], d["tgt_vocab_size"]) == (E, H, 29, 74)
    assert d["parameters"] == sum(a.size for a in tiny_arrays().values())
    assert "no attention" in d["architecture"]


def test_detect(tiny_npz: Path, tmp_path: Path) -> None:
    assert imp.detect(tiny_npz)
    np.savez(tmp_path / "other.npz", weights=np.zeros(3, np.float32))
    (tmp_path / "model.pt").write_bytes(tiny_npz.read_bytes())  # g2p_en's arrays, not an .npz name
    (tmp_path / "cut.npz").write_bytes(tiny_npz.read_bytes()[:100])
    for path in ("other.npz", "model.pt", "cut.npz", "missing.npz"):
        assert not imp.detect(tmp_path / path), path
    assert not imp.detect(tmp_path)


def _refused(path: Path) -> str:
    with pytest.raises(CheckpointError) as info:
        imp.load(path)
    assert info.value.exit_code == 4
    return str(info.value)


def test_bad_files_are_refused_with_one_line(tiny_npz: Path, tmp_path: Path) -> None:
    data = tiny_npz.read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    msg = _refused(tmp_path / "truncated.npz")
    assert "\n" not in msg and "not a readable .npz file" in msg and "g2p_en" in msg
    np.savez(tmp_path / "foreign.npz", weights=np.zeros(3, np.float32), bias=np.zeros(3, np.float32))
    msg = _refused(tmp_path / "foreign.npz")
    assert "\n" not in msg and "not a g2p_en checkpoint" in msg and "enc_emb" in msg
    msg = _refused(tmp_path / "missing.npz")
    assert "\n" not in msg and "does not exist" in msg
    assert "directory" in _refused(tmp_path)
    (tmp_path / "text.npz").write_text("hello")
    assert "\n" not in _refused(tmp_path / "text.npz")


def test_pickled_arrays_are_refused_without_running_them(tmp_path: Path) -> None:
    ran = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> Any:
            return (Path.touch, (ran,))

    arrays: dict[str, Any] = tiny_arrays()
    arrays["fc_b"] = np.array([Payload()], dtype=object)
    np.savez(tmp_path / "pickled.npz", **arrays)
    msg = _refused(tmp_path / "pickled.npz")
    assert "\n" not in msg and "pickle" in msg.lower() and not ran.exists()


def test_wrong_shapes_name_every_array(tmp_path: Path) -> None:
    arrays = tiny_arrays()
    arrays["enc_emb"] = np.zeros((30, E), np.float32)  # one grapheme too many
    arrays["fc_w"] = np.zeros((74, H + 1), np.float32)
    arrays["dec_b_hh"] = arrays["dec_b_hh"].astype(np.int32)
    np.savez(tmp_path / "bad.npz", **arrays)
    lines = _refused(tmp_path / "bad.npz").splitlines()
    assert len(lines) == 3  # one per problem, in the npz's array order
    assert "enc_emb has shape [30, 4], expected [29, 4] (g2p_en has 29 graphemes)" in lines[0]
    assert "dec_b_hh has dtype int32" in lines[1]
    assert "fc_w has shape [74, 7], expected [74, 6]" in lines[2]


@needs_g2p_en
def test_package_checkpoint_is_found_without_importing_g2p_en() -> None:
    had = "g2p_en" in sys.modules
    path = imp.package_checkpoint()
    assert path.name == "checkpoint20.npz" and path.parent.name == "g2p_en" and imp.detect(path)
    assert ("g2p_en" in sys.modules) == had  # importing it would try to download nltk data


def test_package_checkpoint_when_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError) as info:
        imp.package_checkpoint()
    assert info.value.exit_code == 2 and "pip install g2p-en==2.1.0" in str(info.value)
    assert "\n" not in str(info.value)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name: SimpleNamespace(submodule_search_locations=[str(tmp_path)]))
    with pytest.raises(CheckpointError, match="no checkpoint20.npz"):
        imp.package_checkpoint()


@needs_g2p_en
def test_real_checkpoint(real: Any) -> None:
    d = imp.describe(imp.package_checkpoint())
    assert (d["emb_size"], d["hidden_size"]) == (256, 256)
    assert d["parameters"] == sum(p.numel() for p in real.model.parameters()) == 834_890


# ------------------------------------------------------------------ g2p_en's own outputs

@needs_g2p_en
def test_greedy_reproduces_g2p_en_predict(real: Any, fixture_words: tuple[list[str], list[str]]) -> None:
    """All 1,000 unseen words: the s2s greedy search over the imported module prints exactly
    what ``G2p.predict`` returned (measured: 1000/1000)."""
    words, want = fixture_words
    got = []
    for start in range(0, len(words), 250):
        got += [text(res[0].ids) for res in phonemes(words[start:start + 250], real.model)]
    wrong = [(w, g, p) for w, g, p in zip(words, got, want) if g != p]
    assert not wrong, f"{len(words) - len(wrong)}/{len(words)} agree; first: {wrong[:3]}"


@needs_g2p_en
def test_the_20_step_limit(real: Any, fixture_words: tuple[list[str], list[str]]) -> None:
    """Our length counts EOS: 19 phonemes end with </s> as token 20; at 20 phonemes the search
    stops without </s>, as predict's loop does (the fixture's long words have both)."""
    words, want = fixture_words
    n19 = [w for w, p in zip(words, want) if len(p.split()) == 19]
    n20 = [w for w, p in zip(words, want) if len(p.split()) == 20]
    assert len(n19) >= 5 and len(n20) >= 5
    for res in phonemes(n19, real.model):
        assert len(res[0].ids) == 20 and res[0].ids[-1] == 3
    for res in phonemes(n20, real.model):
        assert len(res[0].ids) == 20 and 3 not in res[0].ids
    longer = phonemes(n20, real.model, max_length=40)  # without the limit some go on
    assert any(len(r[0].ids) > 21 for r in longer)


@needs_g2p_en
def test_beam_search_keeps_g2p_en_conventions(real: Any, fixture_words: tuple[list[str], list[str]]) -> None:
    words = fixture_words[0][:40]
    greedy = phonemes(words, real.model)
    beam1 = phonemes(words, real.model, beam_size=1)
    assert [r[0].ids for r in greedy] == [r[0].ids for r in beam1]
    beam = phonemes(words, real.model, beam_size=4, n_best=4)
    for hyps in beam:
        assert len(hyps) == 4 and [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        for h in hyps:
            assert not {0, 2} & set(h.ids) and (h.ids[-1] == 3 or len(h.ids) == 20)
            assert 3 not in h.ids[:-1]


@needs_g2p_en
def test_exported_bundle_reproduces_g2p_en(tmp_path: Path) -> None:
    """The imported module exports (its encoder returns no memory) with g2p_en's own ids and
    framing, passes parity, and the runtime on the ONNX Runtime bundle prints all 1,000
    predictions with no option given (measured: 1000/1000 FP32)."""
    pytest.importorskip("onnxruntime")
    from s2s_export.export import export_model
    from s2s_export.runtime import Translator

    bundle = export_model(imp.package_checkpoint(), tmp_path / "g2p_en")
    m = bundle.manifest
    assert bundle.parity["passed"] and [t.name for t in m.io.static] == ["src_mask"]
    assert m.src_specials.bos is None and m.tgt_specials.eos == 3 and m.search.max_length == 20
    assert m.tokenizer == "char:word" and m.model_config["format"] == "g2p_en"
    words = (FIXTURE / "words.txt").read_text().splitlines()
    want = (FIXTURE / "predictions.txt").read_text().splitlines()
    got = [hyps[0].text for hyps in Translator.load(bundle.path, intra_op_threads=1).translate(words)]
    assert sum(g == w for g, w in zip(got, want)) == len(words)


# ------------------------------------------------------------------ end to end

@needs_g2p_en
def test_export_and_translate_print_g2p_en_predictions(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    """``s2s-export PATH/checkpoint20.npz -o OUT`` and ``s2s-export --from g2p_en -o OUT``, then
    ``s2s translate OUT -i words.txt`` (greedy, no option) prints g2p_en's predictions."""
    from conftest import run_cli

    want = (FIXTURE / "predictions.txt").read_text().splitlines()
    for argv in ([str(imp.package_checkpoint()), "-o", str(tmp_path / "a")], ["--from", "g2p_en", "-o", str(tmp_path / "b")]):
        code, out, err = run_cli("s2s-export", argv, capsys, monkeypatch)
        assert code == 0, err
        assert "parity" in out and "passed" in out
    for bundle in ("a", "b"):
        code, out, err = run_cli("s2s", ["translate", str(tmp_path / bundle), "-i", str(FIXTURE / "words.txt")],
                                 capsys, monkeypatch)
        assert code == 0, err
        assert out.splitlines() == want
    # the text path lowercases as G2p.__call__ does: "Cairnwiouss" is spelled like "cairnwiouss"
    words = (FIXTURE / "words.txt").read_text().splitlines()
    code, out, _ = run_cli("s2s", ["translate", str(tmp_path / "a"), words[0].capitalize(), words[0]],
                           capsys, monkeypatch)
    assert code == 0 and out.splitlines() == [want[0], want[0]]
