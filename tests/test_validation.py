"""Bad inputs found by the hostile test (F5-F12, F15, F16, F21, F22): each class ends in one
``error:`` line per problem naming it and its fix, with exit 4, never "this is a bug".

One tiny exported bundle (the format-1 fixture's model, unverified) is shared by the manifest
tests; the checkpoint tests edit that model's file; the importer tests edit copies of the
smallest Joey NMT and OpenNMT-py fixtures.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from conftest import run_cli
from s2s_export.bundle import load_manifest
from s2s_export.errors import BundleError, CheckpointError
from s2s_export.importers import load_model
from s2s_export.models import load_checkpoint
from s2s_export.vocab import vocab_problems

torch.set_num_threads(1)
FIXTURES = Path(__file__).parent / "fixtures"
MODEL = FIXTURES / "format1" / "model.pt"
JOEY = FIXTURES / "peers" / "joeynmt" / "gru_nomax"
ONMT = FIXTURES / "peers" / "opennmt" / "a_brnn_lstm_general" / "model.pt"


def _lines(exc: pytest.ExceptionInfo[Exception]) -> list[str]:
    text = str(exc.value)
    assert "Traceback" not in text and "this is a bug" not in text
    return text.splitlines()


# ---------------------------------------------------------------- checkpoints (F5, F6, F8, F15, F16, F21)
def _edited(tmp_path: Path, edit: Callable[[dict[str, Any]], Any]) -> Path:
    data = torch.load(MODEL, weights_only=True)
    edit(data)
    out = tmp_path / "edited.pt"
    torch.save(data, out)
    return out


@pytest.mark.parametrize("edit, expected", [
    (lambda c: c["state_dict"]["tgt_emb.weight"].__setitem__(5, float("inf")),
     "the weight tgt_emb.weight has 16 of 224 values NaN or infinite"),
    (lambda c: c["state_dict"]["generator.bias"].__setitem__(5, float("nan")),
     "the weight generator.bias has 1 of 14 values NaN or infinite"),
    (lambda c: c["state_dict"]["generator.weight"].__setitem__(0, 1e30),
     "the weight generator.weight has 32 of 448 values of magnitude 1e+30 or more"),
])
def test_unusable_weights_are_refused_at_import(tmp_path: Path, edit: Any, expected: str) -> None:
    path = _edited(tmp_path, edit)
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    assert _lines(err) == [f"{path}: {expected}; use a checkpoint saved before training diverged (or retrain: "
                           "the weights are unusable)"]


def test_unusable_weights_are_refused_for_every_importer(tmp_path: Path) -> None:
    data = torch.load(ONMT, weights_only=False)
    data["generator"]["weight"][3, 2] = float("-inf")
    torch.save(data, tmp_path / "onmt.pt")
    with pytest.raises(CheckpointError) as err:
        load_model(tmp_path / "onmt.pt")
    assert _lines(err)[0].endswith("the weight generator.weight has 1 of "
                                   f"{data['generator']['weight'].numel()} values NaN or infinite; use a checkpoint "
                                   "saved before training diverged (or retrain: the weights are unusable)")


def test_cli_export_of_nan_weights_is_a_bad_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = _edited(tmp_path, lambda c: c["state_dict"]["generator.bias"].__setitem__(5, float("nan")))
    code, _, err = run_cli("s2s-export", [str(path), "-o", str(tmp_path / "b")], capsys, monkeypatch)
    assert code == 4 and err.count("error:") == 1 and "generator.bias has 1 of 14 values NaN" in err
    assert not (tmp_path / "b").exists()
    code, _, err = run_cli("s2s", ["inspect", str(path)], capsys, monkeypatch)
    assert code == 4 and "generator.bias has 1 of 14 values NaN" in err


@pytest.mark.parametrize("edit, expected", [
    (lambda c: c.__setitem__("meta", "str"), "meta: Input should be a valid dictionary (got 'str')"),
    (lambda c: c.__setitem__("tokenizer", 5), "tokenizer: Input should be a valid string (got 5)"),
    (lambda c: c.__setitem__("state_dict", [1]), "state_dict: Input should be a valid dictionary"),
    (lambda c: c.__setitem__("src_vocab", "abcdefghijklmn"), "src_vocab: Input should be a valid list"),
    (lambda c: c["tgt_vocab"].__setitem__(6, ["a"]),
     "the target vocabulary has tokens that are not strings: id 6 (['a']) (tgt_vocab)"),
    (lambda c: c["src_vocab"].__setitem__(6, {"a": 1}),
     "the source vocabulary has tokens that are not strings: id 6 ({'a': 1}) (src_vocab)"),
    (lambda c: c["src_vocab"].__setitem__(6, "\udc80"),
     "the source vocabulary has tokens that are not valid Unicode text (a lone surrogate, which neither UTF-8 nor "
     "JSON can carry): id 6 ('\\udc80') (src_vocab)"),
    (lambda c: c["specials"].__setitem__("eos", 100),
     "specials {'pad': 0, 'bos': 1, 'eos': 100, 'unk': 3} differ from the ids this checkpoint format fixes"),
    (lambda c: c.__setitem__("specials", {}), "specials {} differ from the ids this checkpoint format fixes"),
    (lambda c: c.__setitem__("version", "1"), "its checkpoint version '1' is a str, not an integer"),
])
def test_checkpoint_fields_of_the_wrong_type_are_named(tmp_path: Path, edit: Any, expected: str) -> None:
    path = _edited(tmp_path, edit)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    lines = _lines(err)
    assert len(lines) == 1 and lines[0].startswith(f"{path}: {expected}"), lines


def test_another_tools_checkpoint_is_named_not_called_ours(tmp_path: Path) -> None:
    data = torch.load(ONMT, weights_only=False)
    del data["opt"]
    torch.save(data, tmp_path / "no_opt.pt")
    with pytest.raises(CheckpointError) as err:
        load_model(tmp_path / "no_opt.pt")
    assert "looks like an OpenNMT-py checkpoint (model, generator, vocab, opt) but lacks 'opt'" in _lines(err)[0]
    with pytest.raises(CheckpointError) as err:
        load_model(tmp_path / "no_opt.pt", "opennmt")
    assert "is not an OpenNMT-py checkpoint (it has no 'opt' entry" in _lines(err)[0]
    with pytest.raises(CheckpointError) as err:
        load_model(JOEY / "best.ckpt", "s2s")
    assert "it is a Joey NMT checkpoint (model_state)" in _lines(err)[0]


def test_vocab_problems_never_crash_on_unhashable_tokens() -> None:
    from s2s_export.conventions import FORMAT1

    tokens: list[object] = ["<pad>", "<s>", "</s>", "<unk>", ["a"], {"b": 1}, "c", "c"]
    assert vocab_problems(tokens, FORMAT1, "char", "target") == [
        "the target vocabulary has tokens that are not strings: id 4 (['a']), id 5 ({'b': 1})",
        "the target vocabulary has duplicate tokens: 'c' (ids 6 and 7)"]


# ---------------------------------------------------------------- manifests (F9, F10, F21)
@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from s2s_export.export import export_model

    out = tmp_path_factory.mktemp("validation") / "b"
    export_model(MODEL, out, verify=False, max_batch=4, max_src_len=16)
    return out


def _manifest_error(bundle: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], Any]) -> list[str]:
    copy_dir = tmp_path / "b"
    shutil.copytree(bundle, copy_dir, copy_function=os.link)
    raw = json.loads((copy_dir / "manifest.json").read_text())
    edit(raw)
    (copy_dir / "manifest.json").unlink()
    (copy_dir / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError) as err:
        load_manifest(copy_dir)
    lines = _lines(err)
    assert all(line.startswith("manifest.json: ") and line.endswith("; re-export the bundle with s2s-export")
               for line in lines), lines
    return [line.removeprefix("manifest.json: ").removesuffix("; re-export the bundle with s2s-export")
            for line in lines]


def _step_input(raw: dict[str, Any], i: int = 0) -> dict[str, Any]:
    return raw["io"]["decoder_step"]["inputs"][i]  # type: ignore[no-any-return]


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(raw: dict[str, Any]) -> None:
        *keys, last = path.split(".")
        node = raw
        for k in keys:
            node = node[int(k)] if isinstance(node, list) else node[k]
        node[int(last) if isinstance(node, list) else last] = value
    return edit


def _int8_is_fp32(raw: dict[str, Any]) -> None:
    raw["graphs"]["int8"] = {"encoder": "encoder.onnx", "decoder_step": "decoder_step.onnx"}


def _duplicate_input(raw: dict[str, Any]) -> None:
    raw["io"]["decoder_step"]["inputs"].append(copy.deepcopy(_step_input(raw)))


def _consistent_blocked(raw: dict[str, Any]) -> None:
    raw["search"]["never_generate"] = [5]
    raw["io"]["blocked"] = [0, 1, 4]


@pytest.mark.parametrize("edit, expected", [
    (_set("tgt_vocab.6", ["a"]), ["tgt_vocab: the target vocabulary has tokens that are not strings: id 6 (['a'])"]),
    (_set("src_vocab.6", {"a": 1}), ["src_vocab: the source vocabulary has tokens that are not strings: id 6 "
                                     "({'a': 1})"]),
    (_set("io.blocked", [2]), ["io.blocked names the target eos id 2: nothing could ever end"]),
    (_set("io.blocked", [0, 1, 5]), ["io.blocked [0, 1, 5] is not what the step graph masks: the target pad and "
                                     "bos and search.never_generate, [0, 1]"]),
    (_consistent_blocked, ["io.blocked [0, 1, 4] is not what the step graph masks: the target pad and bos and "
                           "search.never_generate, [0, 1, 5]"]),
    (_set("search.never_generate", [-3]), ["search.never_generate.0: Input should be greater than or equal to 0 "
                                           "(got -3)"]),
    (_set("search.never_generate", [20]), ["search.never_generate names ids outside the target vocabulary of 14 "
                                           "tokens: [20]"]),
    (_set("search.never_generate", [i for i in range(14) if i != 2]),
     ["search.never_generate and io.blocked leave no target token but eos to generate"]),
    (_set("model_config.cell", "transformer"), ["model_config: config cell: Input should be 'lstm' or 'gru' "
                                                "(got 'transformer')"]),
    (_set("model_config.emb_size", "64"), ["model_config: config emb_size: Input should be a valid integer "
                                           "(got '64')"]),
    (_set("model_config.dec_hidden", -5), ["model_config: dec_hidden must be within 1..65,536 (got -5)"]),
    (_set("model_config.tgt_vocab_size", 99999), ["model_config vocabulary sizes (14, 99999) differ from the "
                                                  "vocabularies (14, 14)"]),
    (_set("model_config.format", "fairseq"), ["model_config.format 'fairseq' is not an importer's (opennmt, "
                                              "joeynmt, g2p_en)"]),
    (_duplicate_input, ["io.decoder_step.inputs declares tokens more than once"]),
    (_set("io.decoder_step.inputs.0.batch_axis", 5), ["io.decoder_step.inputs: tokens has batch_axis 5, but its "
                                                      "batch axis is 0 (shape ['batch'])"]),
    (_set("io.decoder_step.inputs.0.role", "output"), ["io.decoder_step.inputs entry 0 is tokens int64 ['batch'] "
                                                       "role 'output', where the encoder's outputs make it tokens "
                                                       "int64 ['batch'] role 'input'"]),
    (_set("io.encoder.outputs.0.role", "input"), ["io.encoder.outputs: src_mask has role 'input'; an encoder output "
                                                  "is 'static' or 'state'"]),
    (_int8_is_fp32, ["graphs.int8.encoder names encoder.onnx, which graphs.fp32.encoder names too (each graph of "
                     "each table has a file of its own)",
                     "graphs.int8.decoder_step names decoder_step.onnx, which graphs.fp32.decoder_step names too "
                     "(each graph of each table has a file of its own)"]),
])
def test_manifest_schema_gaps_are_closed(bundle: Path, tmp_path: Path, edit: Any, expected: list[str]) -> None:
    assert _manifest_error(bundle, tmp_path, edit) == expected


def test_format1_bundle_has_no_blocked_ids(tmp_path: Path) -> None:
    def edit(raw: dict[str, Any]) -> None:
        raw["io"]["blocked"] = [0, 1]

    assert _manifest_error(FIXTURES / "format1" / "bundle", tmp_path, edit) == [
        "io.blocked must be empty in a format 1 bundle (its graphs mask nothing)"]


def test_manifest_list_token_is_exit_4_on_the_cli(bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    copy_dir = tmp_path / "b"
    shutil.copytree(bundle, copy_dir)
    raw = json.loads((copy_dir / "manifest.json").read_text())
    raw["tgt_vocab"][6] = ["a"]
    (copy_dir / "manifest.json").write_text(json.dumps(raw))
    code, out, err = run_cli("s2s", ["translate", str(copy_dir), "abc"], capsys, monkeypatch)
    assert (code, out) == (4, "") and err.count("error:") == 1
    assert "target vocabulary has tokens that are not strings: id 6" in err


# ---------------------------------------------------------------- Joey NMT (F7, F11, F22)
def _joey(tmp_path: Path, edit: Callable[[dict[str, Any]], Any] | None = None) -> Path:
    import yaml

    d = tmp_path / "joey"
    shutil.copytree(JOEY, d, symlinks=True)
    if edit is not None:
        cfg = yaml.safe_load((d / "config.yaml").read_text())
        edit(cfg)
        (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    return d


@pytest.mark.parametrize("key, value, expected", [
    ("model.encoder.num_layers", 0, "Input should be greater than or equal to 1 (got 0)"),
    ("model.decoder.hidden_size", -1, "Input should be greater than or equal to 1 (got -1)"),
    ("model.decoder.hidden_size", "32", "Input should be a valid integer (got '32')"),
    ("model.encoder.embeddings.embedding_dim", 10**9, "Input should be less than or equal to 65536 (got 1000000000)"),
    ("testing.beam_size", 5.7, "Input should be a valid integer (got 5.7)"),
    ("testing.beam_size", True, "Input should be a valid integer (got True)"),
    ("testing.batch_type", "tokens", "batch_type 'tokens' is neither 'sentence' nor 'token'"),
    ("data.src.level", "chars", "Input should be 'word', 'char' or 'bpe' (got 'chars')"),
    ("data.trg.level", "CHAR", "Input should be 'word', 'char' or 'bpe' (got 'CHAR')"),
    ("data.src.lowercase", "no", "Input should be a valid boolean (got 'no')"),
    ("data.special_symbols.lang_tags", ["x", 1], "Input should be a valid string (got 1)"),
])
def test_joey_config_values_are_validated(tmp_path: Path, key: str, value: Any, expected: str) -> None:
    def edit(cfg: dict[str, Any]) -> None:
        cfg["data"].setdefault("special_symbols", {})
        _set(key, value)(cfg)

    d = _joey(tmp_path, edit)
    with pytest.raises(CheckpointError) as err:
        load_model(d)
    where = "data.special_symbols.lang_tags.1" if key.endswith("lang_tags") else key
    assert _lines(err) == [f"{d / 'config.yaml'}: {where}: {expected}; fix that value in config.yaml (as Joey NMT "
                           "2.3 reads it) or restore the config.yaml written with the model"]


def test_joey_config_reads_what_joey_reads(tmp_path: Path) -> None:
    """A negative max_output_length is Joey's batch rule (search.py); batch_type in any case."""
    def edit(cfg: dict[str, Any]) -> None:
        cfg["testing"].update(max_output_length=-5, batch_type="Token")

    m = load_model(_joey(tmp_path, edit))
    assert (m.search.max_length_batch_factor, m.search.batch_type) == (1.5, "token")


@pytest.mark.parametrize("char, name", [("\u2028", "U+2028 LINE SEPARATOR"), ("\x85", "U+0085 NEXT LINE"),
                                        ("a\rb", "CR")])
def test_joey_vocabulary_lines_joey_would_split_are_named(tmp_path: Path, char: str, name: str) -> None:
    d = _joey(tmp_path)
    lines = (d / "src_vocab.txt").read_text(encoding="utf-8").split("\n")
    lines[10] = char
    (d / "src_vocab.txt").write_bytes("\n".join(lines).encode("utf-8"))
    with pytest.raises(CheckpointError) as err:
        load_model(d)
    assert _lines(err) == [f"{d / 'src_vocab.txt'}: line 11 ({char!r}) holds {name}, where Joey NMT's vocabulary "
                           "reader (str.splitlines) breaks the line; remove that line or character from the file: "
                           "Joey NMT 2.3 splits the line there too, so the token never matched the model's ids"]


# ---------------------------------------------------------------- OpenNMT-py (F12)
@pytest.mark.parametrize("transforms", [["sentencepiece"], "sentencepiece"])
def test_onmt_subword_transform_without_a_model_warns(tmp_path: Path, transforms: Any) -> None:
    data = torch.load(ONMT, weights_only=False)
    data["opt"].transforms = transforms
    data["opt"].src_subword_model = data["opt"].tgt_subword_model = None
    torch.save(data, tmp_path / "sp.pt")
    m = load_model(tmp_path / "sp.pt")
    assert m.warnings == [f"it was trained with the sentencepiece transform, but its opt names no {side}_subword_model "
                          f"(got None): the bundle reads {side} pieces as space-separated words; pass "
                          f"--{side}-tokenizer sentencepiece:FILE" for side in ("src", "tgt")]
    assert m.model_config["transforms"] == ["sentencepiece"]


def test_a_consistent_manifest_edit_of_the_mask_is_caught_by_the_graph(bundle: Path, tmp_path: Path) -> None:
    """io.blocked and search.never_generate edited together pass the schema; the step graph
    records the mask it was exported with (metadata) and the session load compares them."""
    from s2s_export.runtime import Translator

    copy_dir = tmp_path / "b"
    shutil.copytree(bundle, copy_dir, copy_function=os.link)
    raw = json.loads((copy_dir / "manifest.json").read_text())
    raw["search"]["never_generate"] = [5]
    raw["io"]["blocked"] = [0, 1, 5]
    (copy_dir / "manifest.json").unlink()
    (copy_dir / "manifest.json").write_text(json.dumps(raw))
    load_manifest(copy_dir)  # consistent: the schema cannot tell
    with pytest.raises(BundleError, match=r"decoder_step.onnx masks the ids \[0, 1\] before its top-K, the "
                                          r"manifest declares io.blocked \[0, 1, 5\]"):
        Translator.load(copy_dir, backend="onnxruntime")
    Translator.load(bundle, backend="onnxruntime")  # the bundle as exported loads
