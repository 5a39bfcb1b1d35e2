"""The bundle written by export_model: manifest schema, sha256 hashes, atomic write, --force."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from s2s_export.bundle import FORMAT_VERSION, Manifest, load_manifest, sha256_file
from s2s_export.errors import BundleError, OutputExistsError
from s2s_export.export import Bundle, export_model
from s2s_export.export import api
from s2s_export.export import parity as parity_mod
from s2s_export.graphio import BATCH, SRC_LEN, BundleIO
from s2s_export.models import Seq2Seq, preset_config

torch.set_num_threads(1)


def small_model(seed: int = 0, preset: str = "luong-local-m") -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq(preset_config(preset, 15, 19, emb_size=8, enc_hidden=8, dec_hidden=16)).eval()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """A verified bundle (per-output parity; greedy replaced when the runtime is missing)."""
    out = tmp_path_factory.mktemp("bundle") / "b"
    with pytest.MonkeyPatch.context() as mp:
        try:
            from s2s_export.runtime import Translator  # noqa: F401
        except ImportError:
            mp.setattr(parity_mod, "check_greedy", lambda *a, **k: None)
        return export_model(small_model(), out, topk=5, max_batch=16, max_src_len=40)


def no_leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name
                  or p.name.endswith(".export"))


def test_manifest_schema(bundle: Bundle) -> None:
    raw = json.loads((bundle.path / "manifest.json").read_text())
    assert raw["format_version"] == FORMAT_VERSION
    assert set(raw) >= {"format_version", "model_config", "src_vocab", "tgt_vocab", "specials", "tokenizer",
                        "io", "topk", "opset", "max_batch", "max_src_len", "graphs", "files", "versions",
                        "parity", "engines", "framing", "search"}
    assert raw["model_config"]["attention"] == "local-m" and raw["model_config"]["src_vocab_size"] == 15
    assert len(raw["src_vocab"]) == 15 and len(raw["tgt_vocab"]) == 19
    zoo = {"pad": {"id": 0, "token": "<pad>"}, "bos": {"id": 1, "token": "<s>"}, "eos": {"id": 2, "token": "</s>"},
           "unk": {"id": 3, "token": "<unk>"}}
    assert raw["specials"] == {"src": zoo, "tgt": zoo}
    assert raw["framing"] == {"prepend_bos": False, "append_eos": True, "decoder_start": None}
    assert raw["search"]["style"] == "s2s" and raw["search"]["beam_size"] == 1
    assert raw["io"]["blocked"] == [0, 1]  # the target pad and bos are never generated
    assert raw["tokenizer"] == "word"  # placeholder vocabularies (<tokN>) are words, not characters
    assert (raw["topk"], raw["opset"], raw["max_batch"], raw["max_src_len"]) == (5, 17, 16, 40)
    assert raw["graphs"] == {"fp32": {"encoder": "encoder.onnx", "decoder_step": "decoder_step.onnx",
                                      "greedy": "greedy.onnx", "encoder_greedy": "encoder_greedy.onnx"}}
    assert raw["versions"]["exporter"] == "torch.onnx TorchScript"
    assert set(raw["versions"]) == {"exporter", "torch", "onnx", "onnxruntime", "s2s_export"}
    assert raw["versions"]["torch"] == torch.__version__
    assert raw["engines"] == []
    # every input and output: name, dtype, symbolic axes, role, batch axis
    io = raw["io"]
    assert io["topk"] == 5
    enc, step = io["encoder"], io["decoder_step"]
    assert [t["name"] for t in enc["inputs"]] == ["src", "src_lengths"]
    assert [t["name"] for t in enc["outputs"]] == ["src_mask", "memory", "src_len", "keys", "h", "c", "feed", "step"]
    assert [t["name"] for t in step["inputs"]] == ["tokens", "reorder", "src_mask", "memory", "src_len", "keys",
                                                  "h", "c", "feed", "step"]
    assert [t["name"] for t in step["outputs"]] == ["topk_log_probs", "topk_ids", "log_probs", "next_h",
                                                   "next_c", "next_feed", "next_step", "attn"]
    for t in [*enc["inputs"], *enc["outputs"], *step["inputs"], *step["outputs"]]:
        assert set(t) == {"name", "dtype", "shape", "role", "batch_axis"}
        assert t["batch_axis"] == 0 and t["shape"][0] == BATCH
        assert t["role"] in ("input", "static", "state", "output")
    by_name = {t["name"]: t for t in [*enc["outputs"], *step["outputs"]]}
    assert by_name["src_mask"] == {"name": "src_mask", "dtype": "bool", "shape": [BATCH, SRC_LEN],
                                   "role": "static", "batch_axis": 0}
    assert by_name["memory"]["shape"] == [BATCH, SRC_LEN, 16]
    assert by_name["h"]["role"] == "state" and by_name["h"]["shape"] == [BATCH, 1, 16]
    assert by_name["next_h"]["role"] == "state"
    assert by_name["topk_ids"] == {"name": "topk_ids", "dtype": "int64", "shape": [BATCH, 5], "role": "output",
                                   "batch_axis": 0}
    assert by_name["log_probs"]["shape"] == [BATCH, 19]
    assert by_name["attn"]["shape"] == [BATCH, SRC_LEN]
    # parity summary
    p = raw["parity"]
    assert p["passed"] and p["atol"] == 1e-4 and p["rtol"] == 1e-3
    assert p["max_abs"] < 1e-5 and "decoder_step/next_feed" in p["outputs"]
    assert p["inputs"]["src_lengths"] == [1, 4, 12, 7, 12, 2]


def test_manifest_round_trips(bundle: Bundle) -> None:
    m = load_manifest(bundle.path)
    assert m.to_dict() == bundle.manifest.to_dict()
    assert BundleIO.from_dict(m.io.to_dict()) == m.io == bundle.manifest.io
    assert Manifest.from_dict(json.loads(json.dumps(m.to_dict()))).to_dict() == m.to_dict()


def test_hashes_cover_every_graph(bundle: Bundle) -> None:
    m = load_manifest(bundle.path)
    assert set(m.files) == {"encoder.onnx", "decoder_step.onnx", "greedy.onnx", "encoder_greedy.onnx"}
    for name, digest in m.files.items():
        assert digest == sha256_file(bundle.path / name)


def test_tampering_is_detected(bundle: Bundle, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(bundle.path, copy)
    data = bytearray((copy / "decoder_step.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "decoder_step.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="decoder_step.onnx does not match its sha256"):
        load_manifest(copy)
    load_manifest(copy, verify=False)  # the manifest itself is still readable
    shutil.copy(bundle.path / "decoder_step.onnx", copy / "decoder_step.onnx")
    load_manifest(copy)
    (copy / "encoder.onnx").unlink()
    with pytest.raises(BundleError, match="encoder.onnx is missing"):
        load_manifest(copy)


def test_existing_output_needs_force(bundle: Bundle) -> None:
    before = (bundle.path / "manifest.json").read_bytes()
    with pytest.raises(OutputExistsError, match="already exists; pass --force"):
        export_model(small_model(1), bundle.path, verify=False)
    assert (bundle.path / "manifest.json").read_bytes() == before


def test_injected_failure_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = api.export_graph

    def fail_on_step_graph(module, args, spec, path, opset):  # type: ignore[no-untyped-def]
        calls.append(spec.name)
        if spec.name == "decoder_step":
            raise RuntimeError("injected failure")
        return real(module, args, spec, path, opset)

    monkeypatch.setattr(api, "export_graph", fail_on_step_graph)
    with pytest.raises(RuntimeError, match="injected"):
        export_model(small_model(), tmp_path / "out", verify=False)
    assert calls == ["encoder", "decoder_step"]  # the failure came mid-export
    assert list(tmp_path.iterdir()) == []


def test_failure_during_parity_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(parity_mod, "check_outputs", boom)
    with pytest.raises(KeyboardInterrupt):
        export_model(small_model(), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_force_replaces_only_on_success(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    first = export_model(small_model(0), out, verify=False, topk=4)
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / "stray.txt").write_text("left by the user")

    def fail(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("injected failure")

    with monkeypatch.context() as mp:
        mp.setattr(api, "export_graph", fail)
        with pytest.raises(RuntimeError):
            export_model(small_model(1), out, verify=False, force=True)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != "stray.txt"} == old
    assert no_leftovers(tmp_path) == []

    second = export_model(small_model(1), out, verify=False, force=True, topk=6)
    assert second.manifest.topk == 6 and first.manifest.topk == 4
    assert load_manifest(out).topk == 6
    assert sorted(p.name for p in out.iterdir()) == ["decoder_step.onnx", "encoder.onnx", "encoder_greedy.onnx",
                                                     "greedy.onnx", "manifest.json"]
    assert (out / "encoder.onnx").read_bytes() != old["encoder.onnx"]
    assert no_leftovers(tmp_path) == []


def test_unverified_bundle_has_empty_parity(tmp_path: Path) -> None:
    b = export_model(small_model(), tmp_path / "b", verify=False, max_src_len=20)
    assert b.parity == {} and load_manifest(b.path).parity == {}
    assert b.path == (tmp_path / "b").absolute()


def test_large_graphs_use_one_external_data_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over 2 GB (simulated by lowering the limit) each graph gets one ``.data`` file, hashed too."""
    from s2s_export.export import onnx as onnx_mod
    from s2s_export.export.parity import check_parity

    monkeypatch.setattr(onnx_mod, "_TWO_GB", 0)
    model = small_model()
    b = export_model(model, tmp_path / "b", verify=False)
    names = sorted(p.name for p in b.path.iterdir())
    assert names == ["decoder_step.onnx", "decoder_step.onnx.data", "encoder.onnx", "encoder.onnx.data",
                     "manifest.json"]  # no fused greedy graph over 2 GB: the search loop decodes
    m = load_manifest(b.path)
    assert set(m.files) == set(names) - {"manifest.json"}
    assert check_parity(b.path, model, m.io, 15, greedy=False)["passed"]
    assert no_leftovers(tmp_path) == []
