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


# ---------------------------------------------------------------- output paths (attack F1, F2, F3, F14, F22)
def test_atomic_file_follows_links_and_writes_fifos_in_place(tmp_path: Path) -> None:
    """A symbolic link -o keeps the link and writes its target (atomically); a dangling link
    creates the file it names; a FIFO is written, never replaced by a regular file; a directory
    is refused."""
    import os
    import stat

    from s2s_export.bundle import AtomicFile
    from s2s_export.errors import BadInputError

    real, fifo = tmp_path / "real.txt", tmp_path / "fifo"
    real.write_text("keep\n")
    os.mkfifo(fifo)
    (tmp_path / "link").symlink_to(real)
    (tmp_path / "dangling").symlink_to(tmp_path / "new.txt")
    (tmp_path / "fifo-link").symlink_to(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader first: the writer's open does not wait
    try:
        for name in ("link", "dangling", "fifo", "fifo-link"):
            out = AtomicFile(tmp_path / name)
            out.write(f"{name}\n")
            out.commit()
        assert os.read(reader, 1000) == b"fifo\nfifo-link\n"
    finally:
        os.close(reader)
    assert real.read_text() == "link\n" and (tmp_path / "new.txt").read_text() == "dangling\n"
    assert os.readlink(tmp_path / "link") == str(real) and (tmp_path / "dangling").is_symlink()
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and (tmp_path / "fifo-link").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "fifo", "fifo-link", "link", "new.txt",
                                                          "real.txt"]  # no temporary file left
    with pytest.raises(BadInputError, match="is a directory"):
        AtomicFile(tmp_path)


def test_atomic_file_writes_a_device_in_place(tmp_path: Path) -> None:
    """A character device (our own null and full devices, made in tmp_path) is written
    directly and stays a device; a write error on it is reported, the node kept."""
    import os
    import stat

    from s2s_export.bundle import AtomicFile, atomic_file
    from s2s_export.errors import BadInputError

    null, full = tmp_path / "null", tmp_path / "full"
    try:
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.mknod(full, stat.S_IFCHR | 0o666, os.makedev(1, 7))
        os.close(os.open(null, os.O_WRONLY))
    except (PermissionError, OSError) as exc:  # not root, or tmp mounted nodev
        pytest.skip(f"cannot make and open a device node in {tmp_path} ({exc})")
    out = AtomicFile(null)
    out.write("x\n")
    out.commit()
    with pytest.raises(BadInputError, match=r"\(No space left on device\); what was written before stays"):
        with atomic_file(full) as f:
            f.write("x" * 100_000)
    for node in (null, full):
        assert stat.S_ISCHR(os.lstat(node).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "null"]


def test_atomic_file_on_this_process_stdout_socket(tmp_path: Path) -> None:
    """-o naming this process's stdout (a link to /proc/self/fd/1, as /dev/stdout is) when
    stdout is a socket, which cannot be opened by name: written through the descriptor."""
    import socket
    import subprocess
    import sys

    link = tmp_path / "stdout"
    link.symlink_to("/proc/self/fd/1")
    code = ("import sys; from s2s_export.bundle import AtomicFile; f = AtomicFile(sys.argv[1]); "
            "f.write('hello\\n'); f.commit()")
    ours, theirs = socket.socketpair()
    with ours, theirs:
        proc = subprocess.run([sys.executable, "-c", code, str(link)], stdout=theirs.fileno(),
                              stderr=subprocess.PIPE, text=True, timeout=60)
        theirs.close()
        assert proc.returncode == 0, proc.stderr
        assert ours.recv(100) == b"hello\n"
    assert link.is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == ["stdout"]


def test_check_apart_refuses_an_output_over_an_input(tmp_path: Path) -> None:
    from s2s_export.bundle import check_apart
    from s2s_export.errors import UsageError

    model_dir, model = tmp_path / "joey", tmp_path / "d" / "model.pt"
    model_dir.mkdir()
    model.parent.mkdir()
    model.write_bytes(b"x")
    (tmp_path / "link").symlink_to(model_dir)
    for out, inp, relation in [(model_dir, model_dir, "is"), (tmp_path / "link", model_dir, "is"),
                               (model.parent, model, "contains"), (tmp_path, model_dir, "contains"),
                               (model_dir / "bundle", model_dir, "lies inside"),
                               (tmp_path / "link" / "b", model_dir, "lies inside")]:
        with pytest.raises(UsageError) as info:
            check_apart(out, [("the model", inp)])
        assert f"output directory {out} {relation} the model {inp}" in str(info.value)
        assert f"choose an -o outside {inp}" in str(info.value) and info.value.exit_code == 1
    check_apart(tmp_path / "elsewhere", [("the model", model_dir), ("the model", model)])
    check_apart(tmp_path / "d" / "model_bundle", [("the model", model)])  # beside a model file: fine


def _fake_bundle(path: Path, tag: str) -> Path:
    path.mkdir()
    (path / "manifest.json").write_text(json.dumps({"tag": tag}))
    (path / "graph.onnx").write_text(tag)
    return path


def _digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256((path / "manifest.json").read_bytes()).hexdigest()


def _content(path: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(path.iterdir())}


def test_in_place_rewrite_fails_when_another_writer_committed_meanwhile(tmp_path: Path) -> None:
    """quantize's lost update, interleaved deterministically: an export --force commits between
    the rewrite's copy and its commit; the rewrite fails (exit 1, run again), the export stays."""
    from s2s_export.bundle import atomic_dir
    from s2s_export.errors import BundleChangedError

    b = _fake_bundle(tmp_path / "b", "old")
    with pytest.raises(BundleChangedError) as info:
        with atomic_dir(b, copy_from=b, expect=_digest(b), action="it was being quantized") as tmp:
            (tmp / "graph.int8.onnx").write_text("int8 of old")
            with atomic_dir(b, force=True) as other:  # the other writer: s2s-export --force
                _fake_bundle(other / "x", "new")
                for p in (other / "x").iterdir():
                    p.rename(other / p.name)
                (other / "x").rmdir()
    assert str(info.value).startswith(f"the bundle {b} changed while it was being quantized")
    assert str(info.value).endswith("; run the command again") and info.value.exit_code == 1
    assert _content(b) == {"graph.onnx": "new", "manifest.json": json.dumps({"tag": "new"})}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_in_place_rewrite_based_on_an_older_manifest_fails_at_the_copy(tmp_path: Path) -> None:
    """The manifest was read (``expect``), then another writer committed before the copy."""
    from s2s_export.bundle import atomic_dir
    from s2s_export.errors import BundleChangedError

    b = _fake_bundle(tmp_path / "b", "old")
    expect = _digest(b)
    (b / "manifest.json").write_text(json.dumps({"tag": "new"}))
    with pytest.raises(BundleChangedError):
        with atomic_dir(b, copy_from=b, expect=expect):
            raise AssertionError("never reached: the copy is not the bundle the work was based on")
    assert json.loads((b / "manifest.json").read_text()) == {"tag": "new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_in_place_rewrite_fails_when_another_writer_fills_the_target_between_the_renames(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from s2s_export import bundle as bundle_mod
    from s2s_export.errors import BundleChangedError

    b = _fake_bundle(tmp_path / "b", "old")
    real = os.rename

    def rename(src: str, dst: str) -> None:
        if Path(dst) == b and ".tmp-" in Path(src).name:  # the rewrite's rename in: an export got there first
            _fake_bundle(b, "new")
        real(src, dst)

    monkeypatch.setattr(bundle_mod.os, "rename", rename)
    with pytest.raises(BundleChangedError):
        with bundle_mod.atomic_dir(b, copy_from=b, expect=_digest(b)) as tmp:
            (tmp / "graph.int8.onnx").write_text("int8 of old")
    monkeypatch.undo()
    assert _content(b) == {"graph.onnx": "new", "manifest.json": json.dumps({"tag": "new"})}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_forced_write_when_another_writer_moved_the_target_away(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--force while a rewrite has the old bundle renamed aside: nothing to move, the export lands."""
    import os

    from s2s_export import bundle as bundle_mod

    b = _fake_bundle(tmp_path / "b", "old")
    real = os.replace

    def replace(src: str, dst: str) -> None:
        if Path(src) == b and ".old-" in Path(dst).name:  # another writer renamed it aside just before
            real(b, tmp_path / "elsewhere")
        real(src, dst)

    monkeypatch.setattr(bundle_mod.os, "replace", replace)
    with bundle_mod.atomic_dir(b, force=True) as tmp:
        (tmp / "manifest.json").write_text("forced")
    monkeypatch.undo()
    assert _content(b) == {"manifest.json": "forced"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "elsewhere"]


@pytest.mark.parametrize("rewrite", [False, True], ids=["force", "copy_from"])
def test_a_link_to_a_bundle_keeps_the_link(rewrite: bool, tmp_path: Path) -> None:
    """--force (and quantize) on a symbolic link replace the directory it points to; the link
    stays and nothing is left beside either."""
    from s2s_export.bundle import atomic_dir

    (tmp_path / "store").mkdir()
    (tmp_path / "links").mkdir()
    b = _fake_bundle(tmp_path / "store" / "b", "old")
    link = tmp_path / "links" / "link"
    link.symlink_to(b)
    with atomic_dir(link, force=not rewrite, copy_from=link if rewrite else None) as tmp:
        (tmp / "added").write_text("new")
    assert link.is_symlink() and link.resolve() == b
    assert (b / "added").read_text() == "new" and ("graph.onnx" in _content(b)) == rewrite
    assert sorted(p.name for p in (tmp_path / "links").iterdir()) == ["link"]
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == ["b"]


def test_non_regular_bundle_files_are_named_as_such(bundle: Bundle, tmp_path: Path) -> None:
    import os
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(bundle.path, copy)
    (copy / "decoder_step.onnx").unlink()
    os.mkfifo(copy / "decoder_step.onnx")
    with pytest.raises(BundleError, match=r"decoder_step.onnx is not a regular file \(a FIFO\)"):
        load_manifest(copy)
    (copy / "decoder_step.onnx").unlink()
    (copy / "decoder_step.onnx").mkdir()
    with pytest.raises(BundleError, match=r"decoder_step.onnx is not a regular file \(a directory\)"):
        load_manifest(copy)
