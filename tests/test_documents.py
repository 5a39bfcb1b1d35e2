"""The two documents the product reads, validated completely at load (issue: types and values in
checkpoints and manifests), vocabulary hygiene, and bundles that point outside themselves or
declare IO their graphs do not have. Every case ends in exit 4 with one ``error:`` line per
problem, through the real console-script entry points."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import run_cli
from s2s_export.bundle import load_manifest
from s2s_export.errors import BundleError

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def trained(tiny_checkpoint: Callable[..., Path]) -> Path:
    from conftest import tiny_overrides

    torch.set_num_threads(1)
    return tiny_checkpoint("luong-general", steps=120, **tiny_overrides("luong-general", 16, 32))


@pytest.fixture(scope="module")
def bundle(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from s2s_export.export import export_model

    return export_model(trained, tmp_path_factory.mktemp("documents") / "bundle", verify=False, max_src_len=32).path


def edited(bundle: Path, tmp: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    out = tmp / "edited"
    shutil.copytree(bundle, out)
    data = json.loads((out / "manifest.json").read_text())
    change(data)
    (out / "manifest.json").write_text(json.dumps(data))
    return out


def errors_of(argv: list[str], entry: str, capsys: Any, monkeypatch: Any, code: int = 4) -> list[str]:
    got, out, err = run_cli(entry, argv, capsys, monkeypatch)
    assert got == code, (got, out, err)
    assert "Traceback" not in err and "this is a bug" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and all(line.startswith("error: ") and "; " in line for line in lines), err
    return lines


# ---------------------------------------------------------------- manifests
MANIFEST_CASES: list[tuple[str, Callable[[dict[str, Any]], None], tuple[str, ...]]] = [
    ("an integer in the target vocabulary", lambda d: d["tgt_vocab"].__setitem__(5, 7),
     ("target vocabulary", "not strings", "id 5")),
    ("an empty graph table", lambda d: d["graphs"].__setitem__("fp32", {}), ("graphs.fp32 lacks encoder",)),
    ("a missing key", lambda d: d.pop("io"), ("manifest.json: io: Field required",)),
    ("a string for a size", lambda d: d.__setitem__("max_src_len", "32"), ("max_src_len", "valid integer")),
    ("an absurd size", lambda d: d.__setitem__("max_batch", 10 ** 12), ("max_batch",)),
    ("an empty vocabulary", lambda d: d.__setitem__("src_vocab", []), ("src_vocab",)),
    ("a newline in a target token", lambda d: d["tgt_vocab"].__setitem__(4, "a\nb"),
     ("target vocabulary", "'a\\nb'")),
    ("a duplicate token", lambda d: d["src_vocab"].__setitem__(5, d["src_vocab"][4]), ("duplicate tokens",)),
    ("a special id beyond the vocabulary", lambda d: d["specials"]["tgt"].__setitem__(
        "eos", {"id": 999, "token": "</s>"}), ("eos id 999 is outside",)),
    ("a special token that is not the vocabulary's", lambda d: d["specials"]["src"].__setitem__(
        "unk", {"id": 3, "token": "<oov>"}), ("unk token is '<oov>'",)),
    ("an unknown search style", lambda d: d["search"].__setitem__("style", "fairseq"), ("search.style",)),
    ("a fractional beam", lambda d: d["search"].__setitem__("beam_size", 2.5), ("search.beam_size",)),
    ("an unknown key", lambda d: d.__setitem__("extra", 1), ("extra", "Extra inputs are not permitted")),
    ("a non-hash digest", lambda d: d["files"].__setitem__("encoder.onnx", "abc"), ("sha256",)),
]


@pytest.mark.parametrize("name,change,needles", MANIFEST_CASES, ids=[c[0] for c in MANIFEST_CASES])
def test_bad_manifests_exit_4_naming_the_field(bundle: Path, tmp_path: Path, capsys: Any, monkeypatch: Any,
                                                name: str, change: Any, needles: tuple[str, ...]) -> None:
    path = edited(bundle, tmp_path, change)
    for argv in (["translate", str(path), "abc"], ["inspect", str(path)]):
        lines = errors_of(argv, "s2s", capsys, monkeypatch)
        assert all(line.startswith("error: manifest.json") or "vocabulary" in line or "token" in line
                   for line in lines), lines
        text = "\n".join(lines)
        for needle in needles:
            assert needle in text, (needle, text)


def test_every_problem_is_named_at_once(bundle: Path, tmp_path: Path) -> None:
    def two(d: dict[str, Any]) -> None:
        d["max_batch"] = "x"
        d["opset"] = 3

    with pytest.raises(BundleError) as info:
        load_manifest(edited(bundle, tmp_path, two), verify=False)
    assert {"max_batch", "opset"} <= {p.what.split(":")[1].strip() for p in info.value.problems}


# ---------------------------------------------------------------- checkpoints
def _with(trained: Path, tmp: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    data = torch.load(trained, weights_only=True)
    change(data)
    path = tmp / "edited.pt"
    torch.save(data, path)
    return path


CHECKPOINT_CASES: list[tuple[str, Callable[[dict[str, Any]], None], tuple[str, ...]]] = [
    ("a string for enc_layers", lambda d: d["config"].__setitem__("enc_layers", "2"),
     ("config enc_layers", "valid integer", "'2'")),
    ("a float for a size", lambda d: d["config"].__setitem__("emb_size", 16.0), ("config emb_size",)),
    ("an absurd size", lambda d: d["config"].__setitem__("dec_hidden", 10 ** 9), ("dec_hidden must be within",)),
    ("a bool for a size", lambda d: d["config"].__setitem__("heads", True), ("config heads",)),
    ("an integer token", lambda d: d["src_vocab"].__setitem__(4, 5), ("not strings",)),
    ("a newline in a target token", lambda d: d["tgt_vocab"].__setitem__(4, "x\ny"), ("'x\\ny'",)),
]


@pytest.mark.parametrize("name,change,needles", CHECKPOINT_CASES, ids=[c[0] for c in CHECKPOINT_CASES])
def test_bad_checkpoints_exit_4(trained: Path, tmp_path: Path, capsys: Any, monkeypatch: Any,
                                name: str, change: Any, needles: tuple[str, ...]) -> None:
    path = _with(trained, tmp_path, change)
    text = "\n".join(errors_of([str(path), "-o", str(tmp_path / "out")], "s2s-export", capsys, monkeypatch))
    for needle in needles:
        assert needle in text, (needle, text)
    assert not (tmp_path / "out").exists()


def test_vocabularies_given_to_the_api_are_checked(trained: Path, tmp_path: Path) -> None:
    from s2s_export.errors import BadInputError
    from s2s_export.export import export_model
    from s2s_export.models import load_checkpoint

    ckpt = load_checkpoint(trained)
    tokens = list(ckpt.tgt_vocab.tokens)
    with pytest.raises(BadInputError, match="same tokens in another order"):
        export_model(trained, tmp_path / "b", tgt_vocab=tokens[:4] + sorted(tokens[4:], reverse=True), verify=False)
    words = list(ckpt.tgt_vocab.tokens)
    words[5] = "two words"
    with pytest.raises(BadInputError, match="cannot produce or print back"):
        export_model(ckpt.model, tmp_path / "b", src_vocab=ckpt.src_vocab, tgt_vocab=words, tokenizer="char:word",
                     verify=False)
    assert not (tmp_path / "b").exists()


# ---------------------------------------------------------------- nothing outside the bundle
def test_a_graph_linked_from_outside_is_refused(bundle: Path, tmp_path: Path, capsys: Any,
                                                monkeypatch: Any) -> None:
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    outside = tmp_path / "elsewhere.onnx"
    shutil.move(str(copy / "encoder.onnx"), outside)
    os.symlink(outside, copy / "encoder.onnx")  # same bytes: the sha256 still matches
    lines = errors_of(["translate", str(copy), "abc"], "s2s", capsys, monkeypatch)
    assert "encoder.onnx resolves outside the bundle" in lines[0]
    with pytest.raises(BundleError, match="outside the bundle"):
        load_manifest(copy, verify=False)  # even without the hash check


def test_declared_io_is_checked_against_the_graphs(bundle: Path, tmp_path: Path, capsys: Any,
                                                   monkeypatch: Any) -> None:
    from s2s_export.runtime import Translator

    def bigger_k(d: dict[str, Any]) -> None:  # K 8 -> 10 everywhere in the manifest, not in the graph
        d["topk"] = d["io"]["topk"] = 10
        for t in d["io"]["decoder_step"]["outputs"]:
            if t["name"] in ("topk_ids", "topk_log_probs"):
                t["shape"][-1] = 10

    path = edited(bundle, tmp_path, bigger_k)
    lines = errors_of(["translate", str(path), "abc", "--beam", "9"], "s2s", capsys, monkeypatch)
    assert "is ['batch', 8] in the graph, the manifest declares ['batch', 10]" in lines[0]
    with pytest.raises(BundleError, match="do not belong together"):
        Translator.load(path)

    def half_memory(d: dict[str, Any]) -> None:  # an encoder output and the step input it feeds, both
        for t in (*d["io"]["encoder"]["outputs"], *d["io"]["decoder_step"]["inputs"]):
            if t["name"] == "memory":
                t["dtype"] = "float16"

    (tmp_path / "x").mkdir()
    with pytest.raises(BundleError, match="memory is tensor\\(float\\) in the graph, the manifest declares float16"):
        Translator.load(edited(bundle, tmp_path / "x", half_memory))

    def float_tokens(d: dict[str, Any]) -> None:  # a fixed input: the schema itself refuses it
        d["io"]["decoder_step"]["inputs"][0]["dtype"] = "float32"

    (tmp_path / "y").mkdir()
    with pytest.raises(BundleError, match="entry 0 is tokens float32 \\['batch'\\] role 'input', where the encoder's "
                                          "outputs make it tokens int64"):
        Translator.load(edited(bundle, tmp_path / "y", float_tokens))
