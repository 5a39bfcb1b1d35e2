"""OpenNMT-py checkpoints: the importer and the ``opennmt`` search style against the tool's own
outputs (tests/fixtures/peers/opennmt/, made by tests/fixtures/peers/make_opennmt.py with
OpenNMT-py 3.5.1, and real 1.2.0/2.3.0 files). OpenNMT-py is not needed here.

Each fixture holds the tool's 1-best outputs (``greedy``: ``-beam_size 1``, ``beam5``), its
5-best lists (``nbest5``) and, per hypothesis, the score it logged (``PRED SCORE``/``BEST HYP``,
4 decimals): ``scores.json``. Inputs are batched as onmt_translate batches them (sorted by
length, 30 sentences), because its length limit is per batch.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from s2s_export.errors import CheckpointError  # noqa: E402
from s2s_export.importers import opennmt as onmt  # noqa: E402
from s2s_export.runtime.search import SearchOptions, search  # noqa: E402
from torch_backend import TorchBackend  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "peers" / "opennmt"
V3 = ["a_brnn_lstm_general", "b_gru_mlp_bridge", "c_lstm_dot_shared", "d_spm_brnn_lstm"]
LEGACY = ["v1_gru_mlp", "v2_brnn_lstm_dot_bridge"]
ALL = V3 + LEGACY
MODES = {"greedy": (1, 1), "beam5": (5, 1), "nbest5": (5, 5)}
TOL = 1e-4  # the tool logs scores with 4 decimals


@functools.lru_cache(maxsize=None)
def imported(name: str) -> Any:
    return onmt.load(FIXTURES / name / "model.pt")


@functools.lru_cache(maxsize=None)
def expected(name: str) -> dict[str, Any]:
    """scores.json: ``src`` (inputs as the tool logged them) and, per mode, per line, the
    tool's hypotheses as (token list, logged score)."""
    data = json.loads((FIXTURES / name / "scores.json").read_text())
    return {k: v if k == "src" else [[(text.split(), score) for text, score in hyps] for hyps in v]
            for k, v in data.items()}


@functools.lru_cache(maxsize=None)
def sources(name: str) -> list[list[int]]:
    """The test inputs as source ids (the tool splits on single spaces; unknown -> <unk>)."""
    m = imported(name)
    path = FIXTURES / name / ("test.tok.src" if (FIXTURES / name / "test.tok.src").exists() else "test.src")
    index = {t: i for i, t in enumerate(m.src_vocab)}
    return [[index.get(t, m.model.src_unk_id) for t in line.split(" ")] for line in path.read_text().splitlines()]


def batches(src_ids: list[list[int]], size: int = 30) -> list[list[int]]:
    """onmt_translate's batches: line numbers sorted by source length (stable), 30 per batch."""
    order = sorted(range(len(src_ids)), key=lambda i: len(src_ids[i]))
    return [order[i:i + size] for i in range(0, len(order), size)]


def options(m: Any, beam: int, n_best: int, **over: Any) -> SearchOptions:
    d = m.search
    kw = dict(style="opennmt", beam_size=beam, n_best=n_best, length_penalty=d.length_penalty, alpha=d.alpha,
              min_length=d.min_length, max_length=d.max_length, max_length_batch_factor=d.max_length_batch_factor,
              start_id=m.framing.start_id(specials(m)[1]), eos_id=m.model.tgt_eos_id, pad_id=m.model.tgt_pad_id,
              unk_id=m.model.tgt_unk_id)
    kw.update(over)
    return SearchOptions(**kw)


def specials(m: Any) -> Any:
    from s2s_export.conventions import specials_of

    return specials_of(m.model)


def decode(name: str, opts: SearchOptions, lines: list[int] | None = None) -> dict[int, Any]:
    """line -> [Result], decoding onmt_translate's batches (restricted to ``lines``)."""
    m = imported(name)
    src_ids = sources(name)
    backend = TorchBackend(m.model, len(m.tgt_vocab))
    wanted = set(range(len(src_ids)) if lines is None else lines)
    out: dict[int, Any] = {}
    for batch in batches(src_ids):
        if not wanted & set(batch):
            continue
        lengths = np.array([len(src_ids[i]) for i in batch], dtype=np.int64)
        src = np.full((len(batch), int(lengths.max())), m.model.src_pad_id, dtype=np.int64)
        for r, i in enumerate(batch):
            src[r, :lengths[r]] = src_ids[i]
        for r, res in enumerate(search(backend, src, lengths, opts)):
            out[batch[r]] = res
    return {i: out[i] for i in sorted(wanted)}


def same_hyps(a: list[tuple[list[int], float]], b: list[tuple[list[int], float]], tol: float) -> bool:
    """Two n-best lists hold the same hypotheses with scores within ``tol`` (their order among
    scores that tie within ``tol`` aside: torch's topk leaves the order of exact ties unspecified)."""
    sa, sb = sorted((tuple(ids), s) for ids, s in a), sorted((tuple(ids), s) for ids, s in b)
    if [x[0] for x in sa] != [x[0] for x in sb] or any(abs(x[1] - y[1]) > tol for x, y in zip(sa, sb)):
        return False
    return all(abs(x[1] - y[1]) <= tol or x[0] == y[0] for x, y in zip(a, b))


def tokens(m: Any, ids: list[int]) -> list[str]:
    return [m.tgt_vocab[i] for i in ids if i != m.model.tgt_eos_id]


# ------------------------------------------------------------------------------ the importer

def raw(name: str) -> dict[str, Any]:
    """The checkpoint as plain data (3.x: weights only + argparse.Namespace)."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(FIXTURES / name / "model.pt", map_location="cpu", weights_only=True)


@pytest.mark.parametrize("name", ALL)
def test_detect(name: str) -> None:
    assert onmt.detect(FIXTURES / name / "model.pt")


def test_detect_refuses_other_files(tmp_path: Path) -> None:
    torch.save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    assert not onmt.detect(tmp_path / "other.pt")
    assert not onmt.detect(tmp_path / "text.pt")
    assert not onmt.detect(tmp_path)


@pytest.mark.parametrize("name", V3)
def test_import_3x_vocab_ids_framing_defaults(name: str) -> None:
    m, data = imported(name), raw(name)
    assert m.format == "opennmt" and m.model_config["layout"] == "3.x"
    assert m.src_vocab == data["vocab"]["src"] and m.tgt_vocab == data["vocab"]["tgt"]  # fillers included
    assert len(m.tgt_vocab) % 8 == 0 and any(t.startswith("averyunlikelytoken") for t in m.tgt_vocab)
    for side, vocab in (("src", m.src_vocab), ("tgt", m.tgt_vocab)):
        for attr, tok in (("pad", "<blank>"), ("bos", "<s>"), ("eos", "</s>"), ("unk", "<unk>")):
            assert getattr(m.model, f"{side}_{attr}_id") == vocab.index(tok)
    assert not m.framing.prepend_bos and not m.framing.append_eos
    assert m.framing.decoder_start == m.tgt_vocab.index("<s>")
    s = m.search
    assert (s.style, s.beam_size, s.n_best, s.length_penalty, s.alpha, s.min_length, s.max_length,
            s.max_length_batch_factor, s.never_generate) == ("opennmt", 5, 1, "avg", 1.0, 0, 250, 1.25, ())
    assert m.tokenizer == ("sentencepiece" if name.startswith("d_") else "word")
    emb = data["model"]["encoder.embeddings.make_embedding.emb_luts.0.weight"]
    assert m.model.src_emb.weight.shape == emb.shape and torch.equal(m.model.src_emb.weight, emb)
    assert torch.equal(m.model.generator.weight, data["generator"]["weight"])


def test_import_architectures() -> None:
    arch = {n: imported(n).model_config["architecture"] for n in V3}
    a, b, c, d = (arch[n] for n in V3)
    assert (a["rnn_type"], a["brnn"], a["layers"], a["attention"], a["input_feed"]) == \
        ("LSTM", True, 2, "general", True)
    assert (b["rnn_type"], b["attention"], b["bridge"], b["layers"]) == ("GRU", "mlp", True, 2)
    assert (c["attention"], c["input_feed"], c["brnn"], c["share_embeddings"]) == ("dot", False, False, True)
    m = imported("c_lstm_dot_shared")
    assert m.src_vocab == m.tgt_vocab and torch.equal(m.model.src_emb.weight, m.model.tgt_emb.weight)
    assert torch.equal(m.model.generator.weight, m.model.tgt_emb.weight)  # share_decoder_embeddings
    assert d["brnn"] and imported("d_spm_brnn_lstm").model_config["transforms"] == ["sentencepiece"]
    spm = imported("d_spm_brnn_lstm")  # its subword models travel in the bundle (found beside the checkpoint)
    assert not spm.warnings and set(spm.text_files) == {"src.sentencepiece.model", "tgt.sentencepiece.model"}


@pytest.mark.parametrize("name", LEGACY)
def test_import_legacy_fields(name: str) -> None:
    """Real OpenNMT-py 1.2.0/2.3.0 files: torchtext fields read with the stand-ins."""
    m = imported(name)
    assert m.model_config["layout"] == "1.x/2.x"
    assert m.src_vocab[:2] == ["<unk>", "<blank>"] and m.tgt_vocab[:4] == ["<unk>", "<blank>", "<s>", "</s>"]
    assert (m.model.src_bos_id, m.model.src_eos_id, m.model.src_pad_id, m.model.src_unk_id) == (None, None, 1, 0)
    assert (m.model.tgt_bos_id, m.model.tgt_eos_id) == (2, 3) and m.framing.decoder_start == 2
    assert m.search.style == "opennmt" and m.search.length_penalty == "avg"
    # the vocabulary is the pickled Vocab's itos, read without torchtext
    with zipfile.ZipFile(FIXTURES / name / "model.pt") as z:
        pkl = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    assert b"torchtext.vocab" in pkl and all(t.encode() in pkl for t in m.src_vocab[2:])


def test_char_vocabularies_and_decoder_start(tmp_path: Path) -> None:
    """A side whose real tokens are single characters stays space-separated tokens, as
    onmt_translate reads and prints them; the decoder starts from vocab["decoder_start_token"]."""
    data = raw("a_brnn_lstm_general")
    n = len(data["vocab"]["tgt"]) - 4  # 4 specials, then letters, then fillers
    data["vocab"]["tgt"][4:] = [chr(0x61 + i) if i < 26 else f"averyunlikelytoken{i}" for i in range(n)]
    data["vocab"]["decoder_start_token"] = "</s>"
    torch.save(data, tmp_path / "chars.pt")
    m = onmt.load(tmp_path / "chars.pt")
    assert m.tokenizer == "word" and not m.warnings
    assert m.framing.decoder_start == m.tgt_vocab.index("</s>")


def test_describe() -> None:
    d = onmt.describe(FIXTURES / "b_gru_mlp_bridge" / "model.pt")
    assert d["format"] == "opennmt" and d["layout"] == "3.x" and d["unsupported"] == []
    assert d["architecture"]["attention"] == "mlp" and d["architecture"]["bridge"]
    assert d["src_vocab_size"] == len(imported("b_gru_mlp_bridge").src_vocab)
    assert d["tgt_specials"] == {"pad": 1, "bos": 2, "eos": 3, "unk": 0}
    d1 = onmt.describe(FIXTURES / "v1_gru_mlp" / "model.pt")
    assert d1["layout"] == "1.x/2.x" and d1["src_specials"]["bos"] is None


# ------------------------------------------------------------------------------ refusals

def edited(tmp_path: Path, name: str = "a_brnn_lstm_general", **opt: Any) -> Path:
    data = raw(name)
    for k, v in opt.items():
        setattr(data["opt"], k, v)
    path = tmp_path / f"edited_{len(list(tmp_path.iterdir()))}.pt"
    torch.save(data, path)
    return path


@pytest.mark.parametrize("opt, words", [
    ({"copy_attn": True}, "copy attention"),
    ({"coverage_attn": True}, "coverage attention"),
    ({"context_gate": "both"}, "context gates"),
    ({"encoder_type": "transformer"}, "'transformer' encoder"),
    ({"encoder_type": "cnn"}, "'cnn' encoder"),
    ({"decoder_type": "transformer"}, "'transformer' decoder"),
    ({"global_attention_function": "sparsemax"}, "sparsemax"),
    ({"position_encoding": True}, "position encoding"),
    ({"n_src_feats": 1}, "source word features"),
    ({"rnn_type": "SRU"}, "rnn_type 'SRU'"),
    ({"lora_layers": ["linear_values"]}, "LoRA"),
    ({"model_task": "lm"}, "language model"),
])
def test_refusals_by_name(tmp_path: Path, opt: dict[str, Any], words: str) -> None:
    path = edited(tmp_path, **opt)
    with pytest.raises(CheckpointError) as err:
        onmt.load(path)
    assert words in str(err.value) and len(err.value.problems) == 1 and "\n" not in str(err.value)
    assert any(words in u for u in onmt.describe(path)["unsupported"])


def test_refusals_one_line_each(tmp_path: Path) -> None:
    path = edited(tmp_path, copy_attn=True, coverage_attn=True, context_gate="source")
    with pytest.raises(CheckpointError) as err:
        onmt.load(path)
    lines = str(err.value).splitlines()
    assert len(lines) == 3 and all(str(path) in line for line in lines)


def test_refuses_inconsistent_opt(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="global_attention 'dot'.*do not match"):
        onmt.load(edited(tmp_path, global_attention="dot"))
    with pytest.raises(CheckpointError, match="input_feed"):
        onmt.load(edited(tmp_path, input_feed=0))


def test_legacy_bridge_over_layers_refused() -> None:
    """1.x/2.x ``RNNEncoder._bridge`` mixes the sentences of a batch when layers*dirs > 1."""
    from s2s_export.importers import opennmt_legacy as legacy

    data = raw("b_gru_mlp_bridge")  # 3.x: brnn, 2 layers, bridge
    assert onmt._inspect(Path("b.pt"), data)["problems"] == []
    fields = {}  # the same model in the 1.x/2.x layout: vocabularies as (stand-in) torchtext fields
    for side in ("src", "tgt"):
        field = legacy.Field()
        field.__setstate__({"vocab": legacy.Vocab(), "pad_token": "<blank>", "unk_token": "<unk>",
                            "init_token": "<s>", "eos_token": "</s>"})
        field.vocab.__setstate__({"itos": data["vocab"][side]})
        fields[side] = legacy.TextMultiField()
        fields[side].__setstate__({"fields": [(side, field)]})
    data["vocab"] = fields
    info = onmt._inspect(Path("b.pt"), data)
    assert info["layout"] == "1.x/2.x"
    assert [p.what for p in info["problems"]] and "bridge mixes the sentences" in info["problems"][0].what


class _Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("touch EVIL_RAN",))


def test_restricted_unpickler_refuses_other_globals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = raw("a_brnn_lstm_general")
    data["opt"].payload = _Evil()
    torch.save(data, tmp_path / "evil.pt")
    for call in (onmt.load, onmt.describe):
        with pytest.raises(CheckpointError) as err:
            call(tmp_path / "evil.pt")
        assert "system" in str(err.value) and "--trust-pickle" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "EVIL_RAN").exists()


def test_restricted_unpickler_refuses_globals_beside_legacy_fields(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1.x/2.x file is read with the torchtext stand-ins, and still nothing else."""
    monkeypatch.chdir(tmp_path)
    with zipfile.ZipFile(FIXTURES / "v2_brnn_lstm_dot_bridge" / "model.pt") as z:
        names = z.namelist()
        pkl_name = next(n for n in names if n.endswith("data.pkl"))
        pkl = z.read(pkl_name)
        # a global of the same length in place of collections.Counter: the pickle stays well formed
        assert b"ccollections\nCounter\n" in pkl and b"torchtext" in pkl
        evil = pkl.replace(b"ccollections\nCounter\n", b"cbuiltins\n__import__\n", 1)
        with zipfile.ZipFile(tmp_path / "evil.pt", "w") as out:
            for n in names:
                out.writestr(z.getinfo(n), evil if n == pkl_name else z.read(n))
    with pytest.raises(CheckpointError, match="pickles builtins.__import__"):
        onmt.load(tmp_path / "evil.pt")


def test_pre_zip_torch_serialization(tmp_path: Path) -> None:
    """Files saved by torch < 1.6 (many published 1.x models) use the older, non-zip format."""
    torch.save(raw("a_brnn_lstm_general"), tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(tmp_path / "old.pt") and onmt.detect(tmp_path / "old.pt")
    m = onmt.load(tmp_path / "old.pt")
    assert m.src_vocab == imported("a_brnn_lstm_general").src_vocab
    assert torch.equal(m.model.generator.weight, imported("a_brnn_lstm_general").model.generator.weight)


def test_trust_pickle_reads_both_layouts() -> None:
    for name in ("a_brnn_lstm_general", "v1_gru_mlp"):
        m = onmt.load(FIXTURES / name / "model.pt", trust_pickle=True)
        assert m.src_vocab == imported(name).src_vocab


def test_bad_files(tmp_path: Path) -> None:
    blob = (FIXTURES / "a_brnn_lstm_general" / "model.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(blob[: len(blob) // 2])
    for path in (tmp_path / "cut.pt", tmp_path / "missing.pt", tmp_path):
        with pytest.raises(CheckpointError) as err:
            onmt.load(path)
        assert "\n" not in str(err.value)
    torch.save({"model": {}, "opt": argparse.Namespace()}, tmp_path / "novocab.pt")
    with pytest.raises(CheckpointError, match="not an OpenNMT-py checkpoint"):
        onmt.load(tmp_path / "novocab.pt")


# ------------------------------------------------------------------------------ scores and search

def limit_of(name: str) -> dict[int, int]:
    """line -> onmt_translate's length limit for it (its batch's longest source)."""
    m, src_ids = imported(name), sources(name)
    out = {}
    for batch in batches(src_ids):
        longest = max(len(src_ids[i]) for i in batch)
        lim = int(min(m.search.max_length, longest * m.search.max_length_batch_factor + 5))
        out.update({i: lim for i in batch})
    return out


@pytest.mark.parametrize("name", ALL)
def test_forced_scores_equal_pred_score(name: str) -> None:
    """The module's log-probs along each hypothesis of the tool's 5-best lists, normalised as
    the tool does (sum / (generated tokens incl. EOS + 1)), equal its logged score (every 4th
    line; a hypothesis as long as its line's limit ended there, without EOS)."""
    m = imported(name)
    src_ids, limits = sources(name), limit_of(name)
    index = {t: i for i, t in enumerate(m.tgt_vocab)}
    eos = m.model.tgt_eos_id
    worst, n = 0.0, 0
    with torch.no_grad():
        for line in range(0, 200, 4):
            hyps = expected(name)["nbest5"][line]
            outs = [[index[t] for t in toks] + ([eos] if len(toks) < limits[line] else []) for toks, _ in hyps]
            T = max(len(o) for o in outs)
            gold = torch.tensor([o + [eos] * (T - len(o)) for o in outs])  # [5,T]
            static, state = m.model.encode(torch.tensor([src_ids[line]]), torch.tensor([len(src_ids[line])]))
            rows = torch.zeros(len(outs), dtype=torch.long)
            static = {k: v.index_select(0, rows) for k, v in static.items()}
            state = {k: v.index_select(0, rows) for k, v in state.items()}
            tokens = torch.full((len(outs),), m.framing.decoder_start)
            steps = []
            for t in range(T):
                lp, state, _ = m.model.decode_step(tokens, static, state)
                steps.append(lp.gather(1, gold[:, t:t + 1]).squeeze(1))
                tokens = gold[:, t]
            lps = torch.stack(steps, dim=1)  # [5,T]
            for k, ((_, score), o) in enumerate(zip(hyps, outs)):
                total = float(lps[k, :len(o)].sum())
                worst = max(worst, abs(total / (len(o) + 1) - score))
                n += 1
    assert n == 250 and worst <= TOL, (n, worst)


# every mode on the 3.x fixtures; beam 5 and 5-best on the legacy ones (greedy is the same code)
@pytest.mark.parametrize("name, mode", [(n, mode) for n in V3 for mode in MODES]
                         + [(n, mode) for n in LEGACY for mode in ("beam5", "nbest5")])
def test_search_reproduces_onmt_translate(name: str, mode: str) -> None:
    m = imported(name)
    beam, n_best = MODES[mode]
    got = decode(name, options(m, beam, n_best))
    exp = expected(name)[mode]
    same = worst = 0.0
    for line, hyps in enumerate(exp):
        mine = [(tokens(m, r.ids), r.score) for r in got[line]]
        assert [h[0] for h in mine] == [h[0] for h in hyps], (name, mode, line)
        worst = max([worst] + [abs(a[1] - b[1]) for a, b in zip(mine, hyps)])
        same += 1
    assert same == len(exp) == 200 and worst <= TOL


def test_sentencepiece_output_detokenized_like_the_tool() -> None:
    """d: the fixture's pieces are the tool's own tokenization of the inputs (it logs them
    through its vocabulary: unknown pieces as <unk>), and the tool prints its output
    detokenized (spm pieces joined, '\u2581' -> space, the leading one dropped)."""
    m = imported("d_spm_brnn_lstm")
    logged = [line.split(" ") for line in expected("d_spm_brnn_lstm")["src"]]
    assert [[m.src_vocab[i] for i in ids] for ids in sources("d_spm_brnn_lstm")] == logged
    got = decode("d_spm_brnn_lstm", options(m, 5, 1))
    printed = (FIXTURES / "d_spm_brnn_lstm" / "beam5.txt").read_text().splitlines()
    for line, text in enumerate(printed):
        text_ = "".join(tokens(m, got[line][0].ids)).replace("\u2581", " ")
        assert (text_[1:] if text_.startswith(" ") else text_) == text  # spm drops the first piece's space


@pytest.mark.parametrize("name", LEGACY)
def test_legacy_1best_equals_its_own_translator(name: str) -> None:
    """With its own version's defaults (length penalty none, max_length 100, no ratio) the
    style gives the 1.x/2.x onmt_translate's 1-best (beam 5) exactly."""
    m = imported(name)
    own = json.loads((FIXTURES / name / "legacy_tool.json").read_text())
    got = decode(name, options(m, 5, 1, length_penalty="none", alpha=0.0, max_length=100,
                               max_length_batch_factor=None))
    for line, hyps in enumerate(own["beam5"]):
        (text, score), = hyps
        assert tokens(m, got[line][0].ids) == text.split() and abs(got[line][0].score - score) <= TOL


def reference(name: str, which: list[int], **kw: Any) -> tuple[list[int], dict[int, Any], dict[int, Any]]:
    """(lines, runtime results, torch reference results) on onmt_translate's batches ``which``
    (each decoded as one batch by both; ``kw``: SearchOptions fields, the same for both)."""
    from s2s_export.verify.reference import reference_search

    m, src_ids = imported(name), sources(name)
    chosen = [batches(src_ids)[k] for k in which]
    lines = [i for b in chosen for i in b]
    opts = options(m, kw.pop("beam_size", 5), kw.pop("n_best", 5), **kw)
    got = decode(name, opts, lines)
    ref: dict[int, Any] = {}
    for b in chosen:
        hyps = reference_search(
            m.model, [src_ids[i] for i in b], beam_size=opts.beam_size, n_best=opts.n_best, style="opennmt",
            max_length=opts.max_length, max_length_ratio=opts.max_length_ratio, min_length=opts.min_length,
            length_penalty=opts.length_penalty, alpha=opts.alpha, no_repeat_ngram_size=opts.no_repeat_ngram_size,
            return_attention=opts.return_attention, max_length_batch_factor=opts.max_length_batch_factor,
            batch_size=len(b), blocked=opts.blocked, start_id=opts.start_id)
        ref.update(zip(b, hyps))
    return lines, got, ref


@pytest.mark.parametrize("name", ["a_brnn_lstm_general", "b_gru_mlp_bridge", "c_lstm_dot_shared", "v1_gru_mlp"])
def test_runtime_style_agrees_with_torch_reference(name: str) -> None:
    """runtime/styles/opennmt.py (numpy, top-K candidates, one row per sentence at the first
    step) against verify/styles/opennmt.py (torch, OpenNMT-py's own tiled layout): the same
    5-best lists, scores within 1e-4, on three of onmt_translate's batches (80 lines, short and
    long sources)."""
    lines, got, ref = reference(name, [0, 3, 6])
    for line in lines:
        assert same_hyps([(r.ids, r.score) for r in got[line]], [(h[0], h[1]) for h in ref[line]], TOL), line


OPTION_OVERRIDES = {  # options.json mode -> SearchOptions fields (what the flags mean)
    "min_length": {"min_length": 12},
    "ban_unk": {"blocked": ("<unk>",)},
    "wu": {"length_penalty": "gnmt", "alpha": 0.6},
    "none": {"length_penalty": "none", "alpha": 1.0},
    "ngram2": {"no_repeat_ngram_size": 2},
    "max_length": {"max_length": 6, "max_length_batch_factor": None},
}


@pytest.mark.parametrize("mode", list(OPTION_OVERRIDES))
def test_options_reproduce_onmt_translate(mode: str) -> None:
    """a: onmt_translate's 3-best lists under -min_length 12, -ban_unk_token, -length_penalty
    wu -alpha 0.6, -length_penalty none, -block_ngram_repeat 2, -max_length 6 -max_length_ratio 0."""
    name = "a_brnn_lstm_general"
    m = imported(name)
    tool = json.loads((FIXTURES / name / "options.json").read_text())[mode]
    over = dict(OPTION_OVERRIDES[mode])
    if "blocked" in over:
        over["blocked"] = tuple(m.tgt_vocab.index(t) for t in over["blocked"])
    got = decode(name, options(m, 5, 3, **over))
    index = {t: i for i, t in enumerate(m.tgt_vocab)}
    for line, hyps in enumerate(tool["hyps"]):
        theirs = [([index[t] for t in text.split()], score) for text, score in hyps]
        mine = [([i for i in r.ids if i != m.model.tgt_eos_id], r.score) for r in got[line]]
        assert same_hyps(mine, theirs, TOL), (mode, line)


@pytest.mark.parametrize("over", [{"min_length": 12}, {"blocked": (0, 4)}, {"max_length_ratio": 0.5},
                                  {"length_penalty": "gnmt", "alpha": 0.6}, {"no_repeat_ngram_size": 2},
                                  {"no_repeat_ngram_size": 3, "min_length": 3}])
def test_options_of_the_style(over: dict[str, Any]) -> None:
    """Options, runtime style vs torch reference, on two batches (n-gram blocking after
    sentences left the batch included), and what each option promises."""
    name = "a_brnn_lstm_general"
    m, src_ids = imported(name), sources(name)
    lines, got, ref = reference(name, [2, 5], n_best=3, **over)
    eos = m.model.tgt_eos_id
    for i in lines:
        assert same_hyps([(r.ids, r.score) for r in got[i]], [(h[0], h[1]) for h in ref[i]], TOL), (over, i)
        for r in got[i]:
            assert len(r.ids) > over.get("min_length", 0) or r.ids[-1] != eos
            assert not set(r.ids) & set(over.get("blocked", ()))
            assert len(r.ids) <= math.ceil(over.get("max_length_ratio", 99) * len(src_ids[i]))


def test_attention_of_the_style() -> None:
    """return_attention: per hypothesis [len(ids), source length] rows of the step's attention,
    equal to the torch reference's."""
    name = "b_gru_mlp_bridge"
    lines, got, ref = reference(name, [1, 6], n_best=2, return_attention=True)
    src_ids = sources(name)
    for i in lines:
        for r, (ids, _, att) in zip(got[i], ref[i]):
            assert r.ids == ids and r.attention.shape == (len(ids), len(src_ids[i]))
            assert np.allclose(r.attention.sum(axis=1), 1.0, atol=1e-5) and np.allclose(r.attention, att, atol=1e-5)


def test_style_module_is_torch_free() -> None:
    import subprocess
    import sys

    code = ("import sys, s2s_export.runtime.styles.opennmt, s2s_export.importers.opennmt_legacy; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_beam_larger_than_vocabulary_refused() -> None:
    from s2s_export.errors import ConfigError

    m = imported("a_brnn_lstm_general")
    with pytest.raises(ConfigError, match="exceeds the target vocabulary"):
        decode("a_brnn_lstm_general", options(m, len(m.tgt_vocab) + 1, 1), [0])


# ------------------------------------------------------------------------------ end to end (format 2)

@pytest.mark.parametrize("name", ["a_brnn_lstm_general", "v1_gru_mlp", "d_spm_brnn_lstm"])
def test_export_and_translate_like_onmt_translate(tmp_path: Path, name: str) -> None:
    """What the lead's merge enables: export the checkpoint with one command and translate the
    test inputs exactly as onmt_translate printed them (1-best per mode, 5-best with scores)."""
    from s2s_export import export_model
    from s2s_export.runtime import Translator

    export_model(FIXTURES / name / "model.pt", tmp_path / "bundle")
    t = Translator.load(tmp_path / "bundle", backend="onnxruntime")
    lines = (FIXTURES / name / "test.src").read_text().splitlines()
    for mode, (beam, n_best) in MODES.items():
        hyps = t.translate(lines, beam_size=beam, n_best=n_best)  # the bundle batches as onmt_translate
        if mode != "nbest5":  # the tool's printed lines (d: detokenized by its sentencepiece transform)
            assert [h[0].text for h in hyps] == (FIXTURES / name / f"{mode}.txt").read_text().splitlines()
        for h, tool in zip(hyps, expected(name)[mode]):
            assert [x.tokens for x in h] == [e[0] for e in tool]
            assert max(abs(x.score - e[1]) for x, e in zip(h, tool)) <= TOL
        if name == "a_brnn_lstm_general":  # an explicit batch size is the tool's -batch_size: honoured
            import s2s_export.runtime.translator as translator_mod

            seen: list[int] = []
            real = translator_mod.search

            def spy(backend: Any, src: Any, lengths: Any, opts: Any) -> Any:
                seen.append(int(src.shape[0]))
                return real(backend, src, lengths, opts)

            translator_mod.search = spy  # type: ignore[assignment]
            try:
                t.translate(lines[:40], beam_size=1)
                assert seen == [30, 10]  # the bundle's batching: onmt_translate's 30 sentences
                seen.clear()
                t.translate(lines[:40], beam_size=1, max_batch_size=1)
                assert seen == [1] * 40
            finally:
                translator_mod.search = real  # type: ignore[assignment]
