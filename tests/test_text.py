"""Text in, text out: every tokenizer kind round-trips through the bundle's vocabulary, is carried
in the bundle (file copied in and hashed), and a zoo model trained with subword tokenizers
trains, exports, translates and verifies end to end; normalisation is recorded and applied.

The subword models are trained here, in a fraction of a second, by the libraries themselves
(sentencepiece, subword-nmt, tokenizers) on generated text: nothing is downloaded."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from s2s_export.conventions import Specials, TextSide
from s2s_export.errors import BundleError, UsageError
from s2s_export.text import TextProcessor, parse_normalize, parse_spec
from s2s_export.vocab import Vocab

spm = pytest.importorskip("sentencepiece")
pytest.importorskip("subword_nmt")
hf = pytest.importorskip("tokenizers")

WORDS = ["abc", "abd", "cab", "bad", "dab", "cabbage", "baggage", "abbey", "adage", "gab"]
SENTENCES = [" ".join(WORDS[i:i + 3]) for i in range(len(WORDS) - 2)] * 20


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A SentencePiece model, subword-nmt codes and a HF tokenizer, trained on SENTENCES."""
    root = tmp_path_factory.mktemp("subwords")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(root / "sp"), vocab_size=24,
                                   model_type="unigram", hard_vocab_limit=False, bos_id=-1, eos_id=-1,
                                   minloglevel=2)
    from subword_nmt.learn_bpe import learn_bpe

    with open(corpus) as src, open(root / "codes.txt", "w") as out:
        learn_bpe(src, out, num_symbols=12)
    tok = hf.Tokenizer(hf.models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = hf.pre_tokenizers.Whitespace()
    tok.decoder = hf.decoders.BPEDecoder()
    tok.train_from_iterator(SENTENCES, hf.trainers.BpeTrainer(vocab_size=30, special_tokens=["[UNK]"],
                                                                end_of_word_suffix="</w>"))
    tok.save(str(root / "hf.json"))
    return {"sentencepiece": root / "sp.model", "bpe": root / "codes.txt", "hf": root / "hf.json"}


def processor(kind: str, models: dict[str, Path], **kw: Any) -> TextProcessor:
    spec = f"{kind}:{models[kind]}" if kind in models else kind
    side, path = parse_spec(spec, "src")
    if kw:
        side = side.model_copy(update=kw)
    return TextProcessor(side, path=path)


@pytest.mark.parametrize("kind", ["char", "word", "pretokenized", "sentencepiece", "bpe", "hf"])
def test_round_trip_text_ids_text(kind: str, models: dict[str, Path]) -> None:
    """text -> tokens -> ids (a vocabulary of everything the tokenizer produced) -> tokens -> text."""
    proc = processor(kind, models)
    texts = ["abc cab", "cabbage adage", "bad"]
    tokens = [proc.tokenize(t) for t in texts]
    vocab = Vocab.build(tokens)
    for text, toks in zip(texts, tokens):
        ids = vocab.encode(toks)
        assert vocab.decode(ids) == toks
        back = proc.detokenize(vocab.decode(ids))
        assert back == (text.replace(" ", "") if kind == "char" else text), (kind, toks, back)
    if kind == "bpe":
        assert any(t.endswith("@@") for toks in tokens for t in toks)  # real subword splits
    if kind in ("sentencepiece", "hf"):
        assert sum(len(t) for t in tokens) > sum(len(t.split()) for t in texts)


def test_char_with_a_space_token_and_normalisation(models: dict[str, Path]) -> None:
    proc = processor("char", models, space="\u2581", lowercase=True, unicode="NFKC")
    assert proc.tokenize("ＡＢ c") == ["a", "b", "\u2581", "c"]  # NFKC full-width, then lower
    assert proc.detokenize(["a", "b", "\u2581", "c"]) == "ab c"
    assert parse_normalize("lower,nfkc") == (True, "NFKC") and parse_normalize("none") == (False, None)
    for bad in ("upper", "nfc,nfkc"):
        with pytest.raises(UsageError):
            parse_normalize(bad)
    with pytest.raises(UsageError, match="unknown kind 'moses'"):
        parse_spec("moses", "src")
    with pytest.raises(UsageError, match="does not exist"):
        parse_spec("sentencepiece:/nonexistent.model", "src")


# ---------------------------------------------------------------- a zoo model with subwords, end to end
@pytest.fixture(scope="module")
def subword_model(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The copy task with SentencePiece pieces in and BPE pieces out, trained, then exported."""
    import torch

    from conftest import tiny_task
    from s2s_export.export import export_model
    from s2s_export.models import load_checkpoint, save_checkpoint
    from s2s_export.train.trainer import train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("subword_model")
    ckpt = train("luong-general", tiny_task("copy"), steps=200, seed=0, batch_size=32, lr=0.01, progress=False,
                 evaluate_on=None, emb_size=16, enc_hidden=16, dec_hidden=32,
                 src_tokenizer=f"sentencepiece:{models['sentencepiece']}", tgt_tokenizer=f"bpe:{models['bpe']}")
    save_checkpoint(root / "model.pt", ckpt)
    models["sentencepiece"].unlink()  # the checkpoint carries the files: the originals are not needed
    bundle = export_model(root / "model.pt", root / "bundle", max_src_len=40)
    return {"ckpt": load_checkpoint(root / "model.pt"), "bundle": bundle, "root": root}


def test_subword_model_trains_exports_translates_and_verifies(subword_model: dict[str, Any]) -> None:
    from s2s_export.runtime import Translator
    from s2s_export.verify import inputs as vin
    from s2s_export.verify.api import verify_bundle

    ckpt, bundle = subword_model["ckpt"], subword_model["bundle"]
    assert ckpt.text.src.kind == "sentencepiece" and ckpt.text.tgt.kind == "bpe"
    m = bundle.manifest
    assert (m.text.src.file, m.text.tgt.file) == ("src.sentencepiece.model", "tgt.bpe.txt")
    assert {"src.sentencepiece.model", "tgt.bpe.txt"} <= set(m.files)  # copied in and hashed
    assert m.tokenizer == "sentencepiece:bpe" and bundle.parity["passed"]
    t = Translator.load(bundle.path, intra_op_threads=1)
    assert any(len(tok) > 1 for tok in t.src_text.tokenize("abcdefghij"))  # pieces, not characters
    pairs = [("".join(s), "".join(r)) for s, r in subword_model_pairs()]
    got = [h[0].text for h in t.translate([s for s, _ in pairs])]
    right = sum(g.replace(" ", "") == r for g, (_, r) in zip(got, pairs))
    assert right >= len(pairs) // 2, list(zip(got, pairs))[:5]  # the copy task learned, through both tokenizers
    data = vin.from_file(write_lines(subword_model["root"] / "data.txt", [s for s, _ in pairs]), t.src_vocab,
                         t.src_text, t.tgt_text, m.max_src_len, 30, conv=m.conventions)
    assert verify_bundle(bundle.path, ckpt.model, data, backend="onnxruntime", beam_size=2).passed


def subword_model_pairs() -> list:
    from conftest import tiny_task

    return tiny_task("copy").test[:40]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_tampered_tokenizer_file_is_refused(subword_model: dict[str, Any], tmp_path: Path) -> None:
    from s2s_export.bundle import load_manifest

    copy = tmp_path / "b"
    shutil.copytree(subword_model["bundle"].path, copy)
    with open(copy / "src.sentencepiece.model", "ab") as f:
        f.write(b"x")
    with pytest.raises(BundleError, match="src.sentencepiece.model does not match its sha256"):
        load_manifest(copy)


def test_hf_and_pretokenized_sides_export_and_translate(models: dict[str, Path], tmp_path: Path) -> None:
    import torch

    from conftest import tiny_task
    from s2s_export.export import export_model
    from s2s_export.runtime import Translator
    from s2s_export.train.trainer import train

    torch.set_num_threads(1)
    ckpt = train("luong-general", tiny_task("copy"), steps=30, seed=0, batch_size=32, lr=0.01, progress=False,
                 evaluate_on=None, emb_size=8, enc_hidden=8, dec_hidden=16,
                 src_tokenizer=f"hf:{models['hf']}", tgt_tokenizer="pretokenized")
    bundle = export_model(ckpt.model, tmp_path / "b", src_vocab=ckpt.src_vocab, tgt_vocab=ckpt.tgt_vocab,
                          src_tokenizer=f"hf:{models['hf']}", tgt_tokenizer="pretokenized", verify=False)
    assert bundle.manifest.tokenizer == "hf:pretokenized" and (bundle.path / "src.hf.json").is_file()
    t = Translator.load(bundle.path, intra_op_threads=1)
    assert t.src_text.tokenize("cabbage") == json.loads(json.dumps(
        hf.Tokenizer.from_file(str(models["hf"])).encode("cabbage").tokens))
    assert isinstance(t.translate(["abc"])[0][0].text, str)


def test_vocabulary_tokens_must_round_trip_through_their_tokenizer() -> None:
    from s2s_export.vocab import vocab_problems

    specials = Specials(pad=0, bos=1, eos=2, unk=3)
    vocab = ["<pad>", "<s>", "</s>", "<unk>", "a", "ab", "\u2581"]
    assert vocab_problems(vocab, specials, TextSide(kind="char", space="\u2581"), "source") == [
        "the source vocabulary has tokens the 'char' tokenizer cannot produce or print back (whitespace "
        "inside, more than one character): id 5 ('ab')"]
    assert vocab_problems(vocab + ["a b"], specials, TextSide(kind="word"), "target")[0].endswith("id 7 ('a b')")
    assert vocab_problems(vocab, specials, TextSide(kind="pretokenized"), "target") == []
