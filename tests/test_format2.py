"""Bundle format 2: each side's special ids anywhere in its vocabulary, source framing, search
defaults carried by the bundle, and format-1 bundles loading and translating as they always did.

The permuted model wraps a trained zoo model: its vocabularies are the zoo model's in another
order (specials anywhere, different on each side; the source without bos), ids mapped to the
zoo model's at its input and output. It must export, pass parity and translate token for token
as the plain model, through every entry point."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from s2s_export.bundle import load_manifest
from s2s_export.conventions import Framing, SearchDefaults
from s2s_export.errors import BundleError
from s2s_export.runtime import Translator

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from torch import nn  # noqa: E402

from s2s_export.export import export_model  # noqa: E402
from s2s_export.models import load_checkpoint  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "format1"
TEXTS = ["abc", "jihgf", "a", "", "cafe", "beaded", "ij", "ffff", "gabbi", "dd"]


class Permuted(nn.Module):
    """A zoo model seen through permuted vocabularies: ``src_order[i]`` / ``tgt_order[i]`` is the
    zoo id of the permuted id i (the source may leave some zoo ids out)."""

    def __init__(self, base: nn.Module, src_order: list[int], tgt_order: list[int], **ids: int | None) -> None:
        super().__init__()
        self.base = base
        self.register_buffer("src_map", torch.tensor(src_order))
        self.register_buffer("tgt_map", torch.tensor(tgt_order))
        self.register_buffer("tgt_back", torch.argsort(torch.tensor(tgt_order)))  # zoo id -> permuted id
        for name, value in ids.items():
            setattr(self, name, value)

    def encode(self, src: Any, src_lengths: Any) -> Any:
        return self.base.encode(self.src_map[src], src_lengths)

    def decode_step(self, tokens: Any, static: Any, state: Any) -> Any:
        log_probs, state, attn = self.base.decode_step(self.tgt_map[tokens], static, state)
        return log_probs[:, self.tgt_map], state, attn  # [B,V] in the permuted order


def permutation(n: int, seed: int) -> list[int]:
    return [int(i) for i in np.random.default_rng(seed).permutation(n)]


@pytest.fixture(scope="module")
def zoo(tiny_checkpoint: Callable[..., Path]) -> Any:
    from conftest import tiny_overrides

    torch.set_num_threads(1)
    return load_checkpoint(tiny_checkpoint("luong-general", steps=120,
                                           **tiny_overrides("luong-general", 16, 32)))


@pytest.fixture(scope="module")
def pair(zoo: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The plain bundle and the permuted one (source without bos), both verified at export."""
    root = tmp_path_factory.mktemp("format2")
    plain = export_model(zoo.model, root / "plain", src_vocab=zoo.src_vocab, tgt_vocab=zoo.tgt_vocab,
                         tokenizer=zoo.tokenizer, max_src_len=24)
    src_tokens, tgt_tokens = list(zoo.src_vocab.tokens), list(zoo.tgt_vocab.tokens)
    src_order = [i for i in permutation(len(src_tokens), 1) if i != 1]  # no source bos (zoo id 1)
    tgt_order = permutation(len(tgt_tokens), 2)
    ids = {f"src_{k}_id": (src_order.index(z) if z in src_order else None)
           for k, z in (("pad", 0), ("bos", 1), ("eos", 2), ("unk", 3))}
    ids.update({f"tgt_{k}_id": tgt_order.index(z) for k, z in (("pad", 0), ("bos", 1), ("eos", 2), ("unk", 3))})
    model = Permuted(zoo.model, src_order, tgt_order, **ids).eval()
    permuted = export_model(model, root / "permuted", src_vocab=[src_tokens[i] for i in src_order],
                            tgt_vocab=[tgt_tokens[i] for i in tgt_order], tokenizer=zoo.tokenizer, max_src_len=24)
    return {"plain": plain, "permuted": permuted, "model": model, "ids": ids, "root": root}


def translations(bundle: Path, **options: Any) -> list[list[tuple[str, float]]]:
    t = Translator.load(bundle, intra_op_threads=1)
    return [[(h.text, h.score) for h in hyps] for hyps in t.translate(TEXTS, **options)]


def same(a: list[list[tuple[str, float]]], b: list[list[tuple[str, float]]]) -> None:
    assert [[h[0] for h in x] for x in a] == [[h[0] for h in x] for x in b]
    for x, y in zip(a, b):
        assert [h[1] for h in x] == pytest.approx([h[1] for h in y], abs=1e-4)


# ---------------------------------------------------------------- per-side special ids
def test_permuted_specials_are_stored_per_side(pair: dict[str, Any]) -> None:
    m = pair["permuted"].manifest
    ids = pair["ids"]
    assert m.src_specials.bos is None and m.src_specials.eos == ids["src_eos_id"]
    assert m.tgt_specials.as_dict() == {k: ids[f"tgt_{k}_id"] for k in ("pad", "bos", "eos", "unk")}
    assert m.src_specials.as_dict() != {"pad": 0, "bos": 1, "eos": 2, "unk": 3}
    raw = json.loads((pair["permuted"].path / "manifest.json").read_text())
    assert raw["format_version"] == 2 and raw["specials"]["src"]["bos"] is None
    assert raw["specials"]["tgt"]["eos"] == {"id": ids["tgt_eos_id"], "token": "</s>"}
    assert sorted(raw["io"]["blocked"]) == sorted([ids["tgt_pad_id"], ids["tgt_bos_id"]])
    assert pair["permuted"].parity["passed"] and pair["permuted"].parity["greedy"]["identical"] == 6


@pytest.mark.parametrize("options", [{}, {"beam_size": 4, "n_best": 3},
                                     {"beam_size": 3, "length_penalty": "gnmt", "alpha": 0.6, "min_length": 2}])
def test_permuted_model_translates_as_the_plain_one(pair: dict[str, Any], options: dict[str, Any]) -> None:
    same(translations(pair["permuted"].path, **options), translations(pair["plain"].path, **options))


def test_permuted_fused_greedy_equals_its_loop(pair: dict[str, Any]) -> None:
    t = Translator.load(pair["permuted"].path, intra_op_threads=1)
    fused = t.translate(TEXTS, max_batch_size=8)
    t.backend.fused_greedy = False
    loop = t.translate(TEXTS, max_batch_size=8)
    assert [h[0].ids for h in fused] == [h[0].ids for h in loop]
    assert [h[0].score for h in fused] == [h[0].score for h in loop]


def test_permuted_bundle_verifies(pair: dict[str, Any]) -> None:
    from s2s_export.verify import inputs as vin
    from s2s_export.verify.api import verify_bundle
    from s2s_export.vocab import Vocab

    m = pair["permuted"].manifest
    src_vocab = Vocab(tuple(m.src_vocab), m.src_specials)
    data = vin.random_sources(src_vocab, m.max_src_len, 12, conv=m.conventions)
    assert all(s[-1] == m.src_specials.eos for s in data.sources)
    assert all(i not in (m.src_specials.pad, m.src_specials.eos) for s in data.sources for i in s[:-1])
    result = verify_bundle(pair["permuted"].path, pair["model"], data, backend="onnxruntime", beam_size=3)
    assert result.passed, result.report["failures"]


def test_text_never_spells_a_control_id(pair: dict[str, Any]) -> None:
    t = Translator.load(pair["permuted"].path, intra_op_threads=1)
    m = t.manifest
    control = {m.src_specials.pad, m.src_specials.eos}
    for text in ("</s>", "<pad>", "<s>", "a</s>b"):  # characters here: never the control ids
        assert not set(t.encode([text])[0]) & control, text
    from s2s_export.conventions import Specials
    from s2s_export.vocab import Vocab, tokenize

    words = Vocab(("<unk>", "<pad>", "<s>", "</s>", "cat"), Specials(unk=0, pad=1, bos=2, eos=3))
    assert words.encode(tokenize("c a t </s> cat <pad> <s> <unk>", "word")) == [0, 0, 0, 0, 4, 0, 0, 0]


# ---------------------------------------------------------------- framing
class DropsFirst(nn.Module):
    """The zoo model behind a BOS the framing prepends (asserted, then dropped)."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base, self.pad_id, self.bos_id, self.eos_id, self.unk_id = base, 0, 1, 2, 3

    def encode(self, src: Any, src_lengths: Any) -> Any:
        assert bool((src[:, 0] == 1).all()), "every source starts with BOS"
        rest = torch.cat([src[:, 1:], torch.zeros_like(src[:, :1])], dim=1)
        return self.base.encode(rest, src_lengths - 1)

    def decode_step(self, tokens: Any, static: Any, state: Any) -> Any:
        return self.base.decode_step(tokens, static, state)


def test_framing_reaches_every_entry_point(zoo: Any, pair: dict[str, Any]) -> None:
    """A bundle whose framing prepends BOS: export (discovery, parity), the runtime and the
    reference all feed the model BOS first; the output is the plain model's."""
    bundle = export_model(DropsFirst(zoo.model).eval(), pair["root"] / "bos_first", src_vocab=zoo.src_vocab,
                          tgt_vocab=zoo.tgt_vocab, tokenizer=zoo.tokenizer, max_src_len=24,
                          framing=Framing(prepend_bos=True, append_eos=True))
    assert bundle.manifest.framing.prepend_bos and bundle.parity["passed"]
    t = Translator.load(bundle.path, intra_op_threads=1)
    assert t.encode(["ab"]) == [[zoo.src_vocab.index["a"], zoo.src_vocab.index["b"]]]  # encode: no framing
    assert t._sources([[5, 6]], frame=True) == [[1, 5, 6, 2]]
    got = [[(h.text, h.score) for h in hs] for hs in t.translate(TEXTS, beam_size=3)]
    same(got, translations(pair["plain"].path, beam_size=3))


def test_framing_off_feeds_ids_as_given(pair: dict[str, Any]) -> None:
    plain = Translator.load(pair["plain"].path, intra_op_threads=1)
    ids = plain.encode(TEXTS)
    framed = plain.translate_ids(ids)
    unframed = plain.translate_ids([s + [2] for s in ids], frame=False)
    assert [h[0].ids for h in framed] == [h[0].ids for h in unframed]


# ---------------------------------------------------------------- search defaults
def test_search_defaults_travel_with_the_bundle(zoo: Any, pair: dict[str, Any]) -> None:
    defaults = SearchDefaults(beam_size=3, n_best=2, length_penalty="gnmt", alpha=0.6, max_length=6)
    bundle = export_model(zoo.model, pair["root"] / "defaults", src_vocab=zoo.src_vocab, tgt_vocab=zoo.tgt_vocab,
                          tokenizer=zoo.tokenizer, max_src_len=24, search=defaults, verify=False)
    assert load_manifest(bundle.path).search == defaults
    t = Translator.load(bundle.path, intra_op_threads=1)
    opts = t.options()
    assert (opts.beam_size, opts.n_best, opts.length_penalty, opts.alpha, opts.max_length) == (3, 2, "gnmt", 0.6, 6)
    given = t.options(beam_size=1)  # an option given replaces the default; n_best follows the beam
    assert (given.beam_size, given.n_best, given.length_penalty) == (1, 1, "gnmt")
    same(translations(bundle.path), translations(pair["plain"].path, beam_size=3, n_best=2, length_penalty="gnmt",
                                                 alpha=0.6, max_length=6))


# ---------------------------------------------------------------- format 1
def test_format1_bundle_translates_exactly_as_before(tmp_path: Path) -> None:
    """A bundle written by the last format-1 release (and what its runtime printed then)."""
    expected = json.loads((FIXTURE / "expected.json").read_text())
    bundle = tmp_path / "bundle"
    shutil.copytree(FIXTURE / "bundle", bundle)
    m = load_manifest(bundle)
    assert m.format_version == 1 and m.io.blocked == () and m.src_specials.as_dict()["eos"] == 2
    t = Translator.load(bundle, intra_op_threads=1)
    inputs = expected["inputs"]
    kept = [i for i, text in enumerate(inputs) if text]  # an empty line now gives an empty output (text rules)
    for name, result in expected["results"].items():
        got = t.translate([inputs[i] for i in kept], **result["options"])
        want = [result["outputs"][i] for i in kept]
        assert [[h.ids for h in hs] for hs in got] == [[h["ids"] for h in hs] for hs in want], name
        assert [[h.text for h in hs] for hs in got] == [[h["text"] for h in hs] for hs in want], name
        for hs, ws in zip(got, want):
            assert [h.score for h in hs] == pytest.approx([w["score"] for w in ws], abs=1e-6), name
    assert [h.text for h in t.translate([""])[0]] == [""]


def test_format1_bundle_with_other_specials_is_refused(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(FIXTURE / "bundle", bundle)
    raw = json.loads((bundle / "manifest.json").read_text())
    raw["specials"] = {"pad": 1, "bos": 2, "eos": 3, "unk": 0}
    (bundle / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="format 1 bundle must have specials"):
        load_manifest(bundle)


def test_newer_format_is_refused_naming_both_versions(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(FIXTURE / "bundle", bundle)
    raw = json.loads((bundle / "manifest.json").read_text())
    raw["format_version"] = 3
    (bundle / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match=r"format version 3 is newer than this s2s-export reads \(2\)"):
        load_manifest(bundle)


def test_batch_rule_groups_inputs_as_the_tool_does() -> None:
    """With a length rule that depends on the batch, inputs are grouped as the tool groups them:
    consecutive sentences, or token batches that close when longest x size reaches the budget
    (joeynmt/datasets.py TokenBatchSampler), or sorted (onmt_translate); otherwise sorted by
    length. An explicit batch size means the tool's own batch-size option: that many
    sentences, consecutive (Joey NMT) or sorted (OpenNMT-py)."""
    from types import SimpleNamespace

    from s2s_export.runtime.search import SearchOptions

    sources = [[5] * n for n in (3, 1, 4, 2, 6, 2, 2)]
    rule = SearchOptions(max_length_batch_factor=1.5)

    def groups(batch_size: int | None, batch_type: str, opts: SearchOptions, explicit: int | None = 3,
               max_rows: int = 0) -> list[list[int]]:
        fake: Any = SimpleNamespace(manifest=SimpleNamespace(search=SearchDefaults(
            batch_size=batch_size, batch_type=batch_type)), backend=SimpleNamespace(max_rows=max_rows))
        return Translator._batches(fake, sources, *Translator.batching(fake, explicit, opts), opts.beam_size)

    assert groups(3, "sentence", rule, None) == [[0, 1, 2], [3, 4, 5], [6]]
    assert groups(8, "token", rule, None) == [[0, 1, 2], [3, 4], [5, 6]]  # 4*3 >= 8, 6*2 >= 8, the rest
    assert groups(3, "sorted", rule, None) == [[1, 3, 5], [6, 0, 2], [4]]
    assert groups(8, "token", rule, 2) == [[0, 1], [2, 3], [4, 5], [6]]  # explicit: 2 consecutive sentences
    assert groups(30, "sorted", rule, 1) == [[1], [3], [5], [6], [0], [2], [4]]  # explicit: 1 at a time
    assert groups(None, "sentence", rule) == [[1, 3, 5], [6, 0, 2], [4]]  # no tool batching: sorted
    assert groups(3, "sentence", SearchOptions()) == [[1, 3, 5], [6, 0, 2], [4]]  # no batch rule
    assert groups(3, "sentence", SearchOptions(), None) == [[1, 3, 5, 6, 0, 2, 4]]  # default 64, sorted
    fake: Any = SimpleNamespace(manifest=SimpleNamespace(search=SearchDefaults(batch_size=30, batch_type="sorted")))
    assert Translator.batching(fake, None, SearchOptions()) == ("length", 64)
    assert Translator.batching(fake, None, rule) == ("sorted", 30)
    assert groups(3, "sentence", rule, None, max_rows=2) == [[0, 1], [2], [3, 4], [5], [6]]  # engine limit
