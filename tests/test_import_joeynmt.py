"""Joey NMT 2.3 import and the ``joeynmt`` search style, held to Joey's own outputs.

The fixtures (``tests/fixtures/peers/joeynmt/<variant>/``, made by
``tests/fixtures/peers/make_joeynmt.py`` with the real tool) hold Joey's model directories, 200
test inputs (``test.src``; ``test.src.tokens``: Joey's split of each), and what ``python -m
joeynmt test`` printed: greedy, beam 5 and beam 5 n-best 5 hypotheses with their scores. Joey
is not needed here. Sources are fed in Joey's batches (``testing.batch_size`` consecutive
lines), which matters for the variant whose length limit depends on the batch.
"""

from __future__ import annotations

import ast
import json
import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch

from s2s_export.conventions import specials_of
from s2s_export.errors import CheckpointError, ConfigError
from s2s_export.importers import joeynmt as joey
from s2s_export.runtime.search import Result, SearchOptions
from s2s_export.runtime.styles.joeynmt import joeynmt_search
from s2s_export.verify.reference import reference_search
from torch_backend import TorchBackend

FIXTURES = Path(__file__).parent / "fixtures" / "peers" / "joeynmt"
VARIANTS = sorted(p.name for p in FIXTURES.iterdir() if (p / "joey.json").is_file())
SPACE = "\u2581"  # Joey's char level writes a space as this token
TOL = 1e-4

# what each variant's config.yaml sets in `testing` (see make_joeynmt.py VARIANTS)
EXPECTED_DEFAULTS = {
    "gru_bahdanau": dict(length_penalty="gnmt", alpha=1.0, max_length=16, max_length_batch_factor=None, min_length=1),
    "lstm_luong": dict(length_penalty="gnmt", alpha=0.6, max_length=24, max_length_batch_factor=None, min_length=1),
    "gru_nomax": dict(length_penalty="none", alpha=0.0, max_length_batch_factor=1.5, min_length=1),
    "spm_lstm": dict(length_penalty="gnmt", alpha=1.0, max_length=20, max_length_batch_factor=None, min_length=1),
    "gru_tied": dict(length_penalty="none", alpha=0.0, max_length=18, max_length_batch_factor=None),
}


def test_fixtures_cover_the_variants() -> None:
    assert set(EXPECTED_DEFAULTS) <= set(VARIANTS)


# ---------------------------------------------------------------------- fixture readers
@lru_cache(maxsize=None)
def imported(variant: str) -> joey.ImportedModel:
    return joey.load(FIXTURES / variant)


def literal_lines(variant: str, name: str) -> list:
    return [ast.literal_eval(line) for line in (FIXTURES / variant / name).read_text(encoding="utf-8").splitlines()]


def info(variant: str) -> dict:
    return json.loads((FIXTURES / variant / "joey.json").read_text())


@lru_cache(maxsize=None)
def sources(variant: str) -> list[list[int]]:
    """Joey's source ids: its tokens looked up in the source vocabulary, then </s>."""
    m = imported(variant)
    stoi = {t: i for i, t in enumerate(m.src_vocab)}
    src, _ = specials_of(m.model)
    return [[stoi.get(t, src.unk) for t in toks] + [src.eos] for toks in literal_lines(variant, "test.src.tokens")]


def options(variant: str, beam: int, n_best: int) -> SearchOptions:
    """SearchOptions from the imported defaults (what the Translator will set from the bundle)."""
    m = imported(variant)
    d, (_, tgt) = m.search, specials_of(m.model)
    return SearchOptions(beam_size=beam, n_best=n_best, max_length=d.max_length, min_length=d.min_length,
                         length_penalty=d.length_penalty, alpha=d.alpha, style=d.style,
                         max_length_batch_factor=d.max_length_batch_factor, start_id=m.framing.start_id(tgt),
                         eos_id=tgt.eos, pad_id=tgt.pad, unk_id=tgt.unk, blocked=d.never_generate)


def batches(variant: str, limit: int | None = None):
    """Joey's test batches: (src [B,S] padded, lengths [B])."""
    ids = sources(variant)[:limit]
    size = info(variant)["testing"]["batch_size"]
    pad = specials_of(imported(variant).model)[0].pad
    for k in range(0, len(ids), size):
        chunk = ids[k:k + size]
        src = np.full((len(chunk), max(map(len, chunk))), pad, dtype=np.int64)
        for i, s in enumerate(chunk):
            src[i, :len(s)] = s
        yield src, np.array([len(s) for s in chunk], dtype=np.int64)


@lru_cache(maxsize=None)
def decode(variant: str, beam: int, n_best: int, topk: int | None = None) -> list[list[Result]]:
    m = imported(variant)
    out: list[list[Result]] = []
    for src, lengths in batches(variant):
        backend = TorchBackend(m.model, len(m.tgt_vocab), topk)
        out += joeynmt_search(backend, src, lengths, options(variant, beam, n_best))
    return out


def tokens(variant: str, ids: list[int]) -> list[str]:
    return [imported(variant).tgt_vocab[i] for i in ids]


# ---------------------------------------------------------------------- the importer
@pytest.mark.parametrize("variant", VARIANTS)
def test_import_reads_sizes_ids_framing_and_defaults(variant: str) -> None:
    m = imported(variant)
    d = FIXTURES / variant
    assert m.format == "joeynmt" and joey.detect(d) and joey.detect(d / "best.ckpt")
    assert m.src_vocab == (d / "src_vocab.txt").read_text(encoding="utf-8").splitlines()
    assert m.tgt_vocab == (d / "trg_vocab.txt").read_text(encoding="utf-8").splitlines()
    assert m.model.src_vocab_size == len(m.src_vocab) and m.model.tgt_vocab_size == len(m.tgt_vocab)
    src, tgt = specials_of(m.model)
    for sp, vocab in ((src, m.src_vocab), (tgt, m.tgt_vocab)):
        assert sp.as_dict() == {"unk": 0, "pad": 1, "bos": 2, "eos": 3}
        assert [vocab[i] for i in (sp.unk, sp.pad, sp.bos, sp.eos)] == ["<unk>", "<pad>", "<s>", "</s>"]
    assert m.framing.append_eos and not m.framing.prepend_bos and m.framing.start_id(tgt) == 2
    s = m.search
    assert (s.style, s.beam_size, s.n_best) == ("joeynmt", 1, 1)  # the configs leave beam_size/n_best unset
    assert s.min_length == 1  # Joey 2.3 never passes testing.min_output_length to its search
    assert {k: getattr(s, k) for k in EXPECTED_DEFAULTS[variant]} == EXPECTED_DEFAULTS[variant]
    assert set(s.never_generate) == ({1, 2, 0} if variant == "gru_tied" else {1, 2})  # gru_tied: generate_unk False
    assert m.tokenizer == ("sentencepiece" if variant == "spm_lstm" else "char")
    if variant == "spm_lstm":
        assert m.text.src.file == "src.sentencepiece.model" and set(m.text_files) == {
            "src.sentencepiece.model", "tgt.sentencepiece.model"}
    else:
        assert m.text.src.space == m.text.tgt.space == SPACE  # a space is Joey's SPACE token
    assert [w.split(" ")[0] for w in m.warnings] == {"gru_tied": ["config.yaml"]}.get(variant, [])
    assert not m.model.training and all(p.dtype == torch.float32 for p in m.model.parameters())
    assert m.model_config["batch"] == {"batch_size": 16, "batch_type": "sentence"}
    assert m.model_config["checkpoint"] == info(variant)["checkpoint"]


def test_import_reads_a_ckpt_file_and_the_tied_weights() -> None:
    d = FIXTURES / "gru_tied"
    a, b = imported("gru_tied").model, joey.load(d / info("gru_tied")["checkpoint"]).model
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name
    assert torch.equal(a.src_embed.weight, a.trg_embed.weight)  # tied_embeddings
    assert torch.equal(a.trg_embed.weight, a.output_layer.weight)  # tied_softmax


def _copy(tmp_path: Path, variant: str = "gru_bahdanau") -> Path:
    out = tmp_path / variant
    shutil.copytree(FIXTURES / variant, out, symlinks=True)
    return out


def _edit_config(d: Path, edit) -> None:
    import yaml

    cfg = yaml.safe_load((d / "config.yaml").read_text())
    edit(cfg)
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))


@pytest.mark.parametrize("edit, expected", [
    (lambda c: c["model"]["decoder"].update(type="transformer"), ["Transformer decoder"]),
    (lambda c: c["model"]["decoder"].pop("type"), ["Transformer decoder"]),  # Joey's default type
    (lambda c: (c["model"]["encoder"].update(type="transformer"), c["model"]["decoder"].update(type="transformer")),
     ["Transformer encoder", "Transformer decoder"]),
    (lambda c: c["model"]["decoder"].update(attention="dot"), ["attention 'dot'"]),
    (lambda c: c["model"]["decoder"].update(activation="relu"), ["activation 'relu'"]),
    (lambda c: c["model"]["encoder"].update(bidirectional=False), ["unidirectional"]),
])
def test_import_refuses_what_it_cannot_reproduce(tmp_path: Path, edit, expected: list[str]) -> None:
    d = _copy(tmp_path)
    _edit_config(d, edit)
    with pytest.raises(CheckpointError) as err:
        joey.load(d)
    lines = str(err.value).splitlines()
    assert len(lines) == len(expected) and all(e in line for e, line in zip(expected, lines))
    assert [e in u for e, u in zip(expected, joey.describe(d)["unsupported"])] == [True] * len(expected)


def test_import_refuses_a_vocabulary_that_does_not_match(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    with (d / "trg_vocab.txt").open("a", encoding="utf-8") as f:
        f.write("extra\n")
    with pytest.raises(CheckpointError) as err:
        joey.load(d)
    n = len(imported("gru_bahdanau").tgt_vocab)
    assert str(err.value).splitlines() == [
        f"trg_vocab.txt has {n + 1} tokens but the checkpoint's trg_embed.lut.weight has {n} rows; "
        "use the src_vocab.txt and trg_vocab.txt written with this checkpoint",
        f"trg_vocab.txt has {n + 1} tokens but the checkpoint's decoder.output_layer.weight has {n} rows; "
        "use the src_vocab.txt and trg_vocab.txt written with this checkpoint"]


def test_import_refuses_bad_files(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    ckpt = d / info("gru_bahdanau")["checkpoint"]
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        joey.load(d)
    ckpt.unlink()
    with pytest.raises(CheckpointError, match="link to .* which does not exist"):
        joey.load(d)
    (d / "config.yaml").write_text("model: [unclosed\n")
    with pytest.raises(CheckpointError, match="not valid YAML"):
        joey.load(d)
    (d / "config.yaml").unlink()
    assert not joey.detect(d)
    with pytest.raises(CheckpointError, match="has no config.yaml"):
        joey.load(d)
    assert not joey.detect(tmp_path)


def test_describe_names_the_architecture() -> None:
    d = joey.describe(FIXTURES / "lstm_luong")
    assert d["format"] == "joeynmt" and d["unsupported"] == []
    assert d["architecture"].startswith("recurrent lstm encoder (2 layers, 24 units, bidirectional), recurrent lstm "
                                        "decoder (2 layers, 24 units, luong attention, input feeding on, "
                                        "init_hidden bridge)")
    assert d["vocab_sizes"] == {"src_vocab.txt": len(imported("lstm_luong").src_vocab),
                                "trg_vocab.txt": len(imported("lstm_luong").tgt_vocab)}
    assert joey.describe(FIXTURES / "gru_tied")["tied_softmax"] is True
    assert joey.describe(FIXTURES / "gru_nomax")["architecture"].startswith("recurrent gru encoder (1 layer, ")


# ---------------------------------------------------------------------- the module vs Joey's scores
def _forced(variant: str, srcs: list[list[int]], outs: list[list[int]]) -> list[np.ndarray]:
    """The module's log-prob of each token of each ``outs[i]`` given the ones before it and the
    source ``srcs[i]`` (float64 [len(outs[i])] each), teacher-forced in one batch."""
    model, (src_sp, tgt) = imported(variant).model, specials_of(imported(variant).model)
    B, T = len(outs), max(map(len, outs))
    src = torch.full((B, max(map(len, srcs))), src_sp.pad, dtype=torch.long)
    for i, s in enumerate(srcs):
        src[i, :len(s)] = torch.tensor(s)
    gold = torch.full((B, T), tgt.eos, dtype=torch.long)  # [B,T] (EOS after each end: ignored)
    for i, o in enumerate(outs):
        gold[i, :len(o)] = torch.tensor(o)
    with torch.no_grad():
        static, state = model.encode(src, torch.tensor([len(s) for s in srcs]))
        token, rows = torch.full((B,), tgt.bos, dtype=torch.long), []
        for t in range(T):
            lp, state, _ = model.decode_step(token, static, state)
            rows.append(lp.gather(1, gold[:, t:t + 1]).squeeze(1))
            token = gold[:, t]
    lps = torch.stack(rows, dim=1).double().numpy()  # [B,T]
    return [lps[i, :len(o)] for i, o in enumerate(outs)]


@pytest.mark.parametrize("variant", VARIANTS)
def test_module_scores_joeys_hypotheses_as_joey_does(variant: str) -> None:
    """Forced log-probs along each of Joey's n-best hypotheses, normalised by Joey's GNMT
    penalty, equal the score Joey printed; along greedy outputs, each step's log-prob."""
    m, src = imported(variant), sources(variant)
    stoi = {t: i for i, t in enumerate(m.tgt_vocab)}
    alpha = m.search.alpha if m.search.length_penalty == "gnmt" else 0.0
    hyps = [(k // 5, h, score) for k, (h, (score,)) in enumerate(zip(literal_lines(variant, "nbest5.tokens"),
                                                                   literal_lines(variant, "nbest5.scores")))
            if not (h == ["<unk>"] and score == -1)]  # not Joey's filler
    lps = _forced(variant, [src[k] for k, _, _ in hyps], [[stoi[t] for t in h] for _, h, _ in hyps])
    err = [abs(lp.sum() / (((5 + len(h)) / 6) ** alpha if alpha > 0 else 1.0) - score)
           for lp, (_, h, score) in zip(lps, hyps)]
    g_toks, g_scores = literal_lines(variant, "greedy.tokens"), literal_lines(variant, "greedy.scores")
    lps = _forced(variant, src, [[stoi[t] for t in h] for h in g_toks])
    err += [float(np.abs(lp - s[:len(lp)]).max()) for lp, s in zip(lps, g_scores)]
    assert len(hyps) > 900 and max(err) < TOL, (len(hyps), max(err))


# ---------------------------------------------------------------------- the search style vs Joey
def _agreement(variant: str, results: list[list[Result]], name: str, per_input: int) -> tuple[int, int, float]:
    """(identical hypotheses, total, max |score - Joey's|) against Joey's ``name`` outputs."""
    joey_toks, joey_scores = literal_lines(variant, f"{name}.tokens"), literal_lines(variant, f"{name}.scores")
    ours = [h for r in results for h in r[:per_input]]
    assert len(ours) == len(joey_toks) == len(joey_scores)
    same = sum(tokens(variant, h.ids) == t for h, t in zip(ours, joey_toks))
    if name == "greedy":  # Joey prints a log-prob per step the batch ran; the output's are the first len
        err = max(abs(h.score - sum(s[:len(t)])) for h, t, s in zip(ours, joey_toks, joey_scores))
    else:
        err = max(abs(h.score - s[0]) for h, s in zip(ours, joey_scores))
    return same, len(ours), err


@pytest.mark.parametrize("variant", VARIANTS)
def test_joeynmt_style_gives_joeys_greedy_outputs(variant: str) -> None:
    same, total, err = _agreement(variant, decode(variant, 1, 1), "greedy", 1)
    assert (same, total) == (200, 200) and err < TOL, (same, err)


@pytest.mark.parametrize("variant", VARIANTS)
def test_joeynmt_style_gives_joeys_beam_and_nbest_outputs(variant: str) -> None:
    results = decode(variant, 5, 5)  # Joey's n_best only picks from the same search
    same, total, err = _agreement(variant, results, "nbest5", 5)
    assert (same, total) == (1000, 1000) and err < TOL, (same, err)
    same, total, err = _agreement(variant, results, "beam5", 1)
    assert (same, total) == (200, 200) and err < TOL, (same, err)


def test_unset_max_output_length_follows_joeys_batch_rule() -> None:
    """gru_nomax leaves max_output_length unset: Joey cut an output at int(1.5 x the longest
    source of its batch); the same sentence decoded alone is cut at its own limit."""
    v, size = "gru_nomax", info("gru_nomax")["testing"]["batch_size"]
    src, joey_toks = sources(v), literal_lines(v, "greedy.tokens")
    cut = [k for k, t in enumerate(joey_toks) if t[-1] != "</s>"]
    assert cut
    for k in cut:
        batch = src[k - k % size:k - k % size + size]
        assert len(joey_toks[k]) == int(1.5 * max(map(len, batch))) > int(1.5 * len(src[k]))
        m = imported(v)
        alone = joeynmt_search(TorchBackend(m.model, len(m.tgt_vocab)), np.array([src[k]]), np.array([len(src[k])]),
                               options(v, 1, 1))[0][0]
        assert len(alone.ids) == int(1.5 * len(src[k])) and tokens(v, alone.ids) == joey_toks[k][:len(alone.ids)]


def test_beam_and_greedy_differ_somewhere() -> None:
    """The fixtures exercise beam search: its 1-best differs from greedy on some inputs."""
    differ = {v: sum(a != b for a, b in zip(literal_lines(v, "greedy.tokens"), literal_lines(v, "beam5.tokens")))
              for v in VARIANTS}
    assert sum(differ.values()) >= 10 and sum(n > 0 for n in differ.values()) >= 3, differ


def test_nbest_lists_are_padded_as_joey_pads_them() -> None:
    """Joey fills an n-best list with [<unk>] scoring -1 when fewer hypotheses were collected."""
    fillers = {v: sum(t == ["<unk>"] and s == [-1.0] for t, s in zip(literal_lines(v, "nbest5.tokens"),
                                                                          literal_lines(v, "nbest5.scores")))
               for v in VARIANTS}
    ours = {v: sum(h.ids == [0] and h.score == -1.0 for r in decode(v, 5, 5) for h in r) for v in VARIANTS}
    assert ours == fillers


def test_full_distribution_path_gives_the_same_results() -> None:
    """A step graph whose top-K cannot cover the beam after blocking makes the style read the
    full log-probs: same results."""
    v = "gru_bahdanau"
    m = imported(v)
    src, lengths = next(batches(v))
    for beam, n_best in ((1, 1), (5, 5)):
        want = decode(v, beam, n_best)[:len(lengths)]
        got = joeynmt_search(TorchBackend(m.model, len(m.tgt_vocab), topk=4), src, lengths, options(v, beam, n_best))
        assert [[h.ids for h in r] for r in got] == [[h.ids for h in r] for r in want]
        assert np.allclose([h.score for r in got for h in r], [h.score for r in want for h in r], atol=1e-6)


def test_style_refuses_options_joey_does_not_have() -> None:
    v = "gru_bahdanau"
    m = imported(v)
    src, lengths = next(batches(v))
    for change in (dict(no_repeat_ngram_size=2), dict(length_penalty="avg", alpha=1.0)):
        opts = SearchOptions(**{**options(v, 5, 1).__dict__, **change})
        with pytest.raises(ConfigError):
            joeynmt_search(TorchBackend(m.model, len(m.tgt_vocab)), src, lengths, opts)


@pytest.mark.parametrize("variant", ["gru_nomax", "lstm_luong"])
def test_torch_reference_agrees_with_the_runtime_style(variant: str) -> None:
    """verify.reference (style joeynmt: one sentence at a time, Joey's own bookkeeping in torch)
    and the runtime style give the same ids and scores, batch by batch."""
    m = imported(variant)
    d = m.search
    ours = {1: decode(variant, 1, 1), 5: decode(variant, 5, 5)}
    start = 0
    for k, (src, lengths) in enumerate(batches(variant, limit=48)):
        ids = [list(row[:n]) for row, n in zip(src.tolist(), lengths.tolist())]
        for beam in (1, 5):
            ref = reference_search(m.model, ids, beam_size=beam, n_best=beam, max_length=d.max_length,
                                   min_length=d.min_length, length_penalty=d.length_penalty, alpha=d.alpha,
                                   style="joeynmt", max_length_batch_factor=d.max_length_batch_factor,
                                   blocked=d.never_generate)
            run = ours[beam][start:start + len(ids)]
            assert [[h[0] for h in r] for r in ref] == [[h.ids for h in r] for r in run]
            assert np.allclose([h[1] for r in ref for h in r], [h.score for r in run for h in r], atol=1e-5)
        start += len(ids)


# ---------------------------------------------------------------------- text, as Joey prints it
def _joey_text(variant: str, toks: list[str]) -> str:
    """Joey's post_process of an output (tokenizers.py): specials removed (``<unk>`` kept unless
    generate_unk is off; an empty output becomes ``<unk>``), char level: joined and the space
    token back to a space; pieces (``spm.decode``): joined, ``<unk>`` as sentencepiece's `` ⁇ ``,
    the space token to a space, stripped."""
    drop = {"<pad>", "<s>", "</s>"} | ({"<unk>"} if variant == "gru_tied" else set())
    kept = [t for t in toks if t not in drop] or ["<unk>"]
    if variant == "spm_lstm":
        return "".join(" \u2047 " if t == "<unk>" else t for t in kept).replace(SPACE, " ").strip()
    return "".join(kept).replace(SPACE, " ")


@pytest.mark.parametrize("variant", VARIANTS)
def test_outputs_detokenize_to_joeys_text(variant: str) -> None:
    """Our outputs, detokenized the way Joey 2.3 does it, are Joey's printed lines; and Joey's
    char level splits a source into characters with spaces as the space token."""
    for name, beam, n_best in (("greedy", 1, 1), ("nbest5", 5, 5)):
        text = (FIXTURES / variant / f"{name}.txt").read_text(encoding="utf-8").splitlines()
        ours = [_joey_text(variant, tokens(variant, h.ids)) for r in decode(variant, beam, n_best) for h in r]
        assert ours == text
    if variant != "spm_lstm":
        lines = (FIXTURES / variant / "test.src").read_text(encoding="utf-8").splitlines()
        assert [list(line.replace(" ", SPACE)) for line in lines] == literal_lines(variant, "test.src.tokens")


# ---------------------------------------------------------------------- end to end (format 2)
@pytest.mark.parametrize("variant", ["gru_nomax", "lstm_luong"])  # the batch length rule; LSTM, 2 layers, bridge
def test_exported_bundle_translates_as_joey(tmp_path: Path, variant: str, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """What the lead's merge enables: export the Joey directory, translate Joey's test ids in
    Joey's batches with the bundle's defaults (options left out = the bundle's SearchDefaults),
    and get Joey's outputs and scores; for char-level models Joey's printed text too. ``s2s
    verify`` passes against the Joey model directory (its search has no attention to plot)."""
    from s2s_export import export_model
    from s2s_export.runtime import Translator

    bundle = export_model(FIXTURES / variant, tmp_path / "bundle")
    assert bundle is not None
    t = Translator.load(tmp_path / "bundle", backend="onnxruntime")
    size = info(variant)["testing"]["batch_size"]
    assert t.manifest.search.batch_size == size  # the bundle batches as Joey (its length limit can depend on it)
    ids = [s[:-1] for s in sources(variant)]  # translate_ids appends the source EOS itself
    for name, beam, n_best in (("greedy", 1, 1), ("beam5", 5, 1), ("nbest5", 5, 5)):
        hyps = t.translate_ids(ids, beam_size=beam, n_best=n_best)
        results = [[Result(list(h.ids), h.score) for h in r] for r in hyps]
        same, total, err = _agreement(variant, results, name, n_best)
        assert same == total and err < TOL, (name, same, total, err)
    if variant == "lstm_luong":
        from conftest import run_cli

        code, out, err = run_cli("s2s", ["verify", str(tmp_path / "bundle"), "--model", str(FIXTURES / variant),
                                         "--limit", "20", "--html", str(tmp_path / "r.html")], capsys, monkeypatch)
        assert code == 0 and "result: PASSED" in out, out + err
        assert "Attention" not in (tmp_path / "r.html").read_text()


@pytest.mark.parametrize("variant", ["gru_tied", "spm_lstm"])  # char level with spaces; SentencePiece
def test_exported_bundle_prints_joeys_text(tmp_path: Path, variant: str) -> None:
    """Text in, text out: Joey's test sources through the bundle give Joey's printed lines
    (greedy, and the 1-best of beam 5), detokenized as Joey does (char level: ``▁`` back to a
    space; SentencePiece: decoded), in Joey's batches (the bundle batches as Joey)."""
    from s2s_export import export_model
    from s2s_export.runtime import Translator

    export_model(FIXTURES / variant, tmp_path / "bundle")
    t = Translator.load(tmp_path / "bundle", backend="onnxruntime")
    lines = (FIXTURES / variant / "test.src").read_text(encoding="utf-8").splitlines()
    for name, beam in (("greedy", 1), ("beam5", 5)):
        want = (FIXTURES / variant / f"{name}.txt").read_text(encoding="utf-8").splitlines()
        got = [h[0].text for h in t.translate(lines, beam_size=beam)]
        # an empty output: Joey prints <unk> (the text rules keep our line empty)
        same = sum(g == w or (g == "" and w == "<unk>") for g, w in zip(got, want))
        assert same == len(want), (name, [(g, w) for g, w in zip(got, want) if g != w][:5])
