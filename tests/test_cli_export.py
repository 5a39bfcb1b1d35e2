"""``s2s-export`` and ``s2s inspect``: exit codes, one-line messages, the summary table."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from s2s_export.bundle import load_manifest
from s2s_export.export import parity as parity_mod

torch.set_num_threads(1)


def run(entry: str, argv: list[str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    """Run a console script's ``main()`` in-process: (exit code, stdout, stderr)."""
    if entry == "s2s-export":
        from s2s_export.cli.export import main
    else:
        from s2s_export.cli.main import main
    monkeypatch.setattr(sys, "argv", [entry, *argv])
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main()
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def has_runtime() -> bool:
    try:
        from s2s_export.runtime import Translator  # noqa: F401
        from s2s_export.verify.reference import reference_search  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture()
def model_pt(tmp_path: Path, tiny_checkpoint) -> Path:  # type: ignore[no-untyped-def]
    """A trained tiny checkpoint, copied into this test's directory."""
    path = tmp_path / "model.pt"
    shutil.copy(tiny_checkpoint("luong-general"), path)
    return path


@pytest.mark.skipif(not has_runtime(), reason="s2s_export.runtime lacks Translator: the default "
                                                 "--verify runs the greedy check through it")
def test_export_default_output_and_summary(model_pt: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run("s2s-export", [str(model_pt)], capsys, monkeypatch)
    assert code == 0, err
    bundle = model_pt.parent / "model_bundle"
    assert f"wrote {bundle}" in out
    for name in ("encoder.onnx", "decoder_step.onnx", "greedy.onnx", "manifest.json"):
        assert name in out
    assert " kB" in out
    assert "passed" in out and "max abs" in out and "max rel" in out
    assert "greedy decode 6/6 sentences token-identical" in out
    assert len(out.splitlines()) <= 10  # a short summary
    m = load_manifest(bundle)
    assert m.parity["passed"] and m.topk == 8 and m.opset == 17


def test_export_flags(model_pt: Path, tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    out_dir = tmp_path / "custom"
    code, out, err = run("s2s-export", [str(model_pt), "-o", str(out_dir), "--no-verify", "--topk", "3",
                                        "--max-batch", "5", "--max-src-len", "30", "--opset", "18"],
                         capsys, monkeypatch)
    assert code == 0, err
    assert "not checked (--no-verify)" in out
    m = load_manifest(out_dir)
    assert (m.topk, m.max_batch, m.max_src_len, m.opset, m.parity) == (3, 5, 30, 18, {})
    assert not (tmp_path / "model_bundle").exists()

    # existing output: exit 1, one line, untouched
    code, out, err = run("s2s-export", [str(model_pt), "-o", str(out_dir), "--no-verify"], capsys, monkeypatch)
    assert code == 1
    assert err.splitlines() == [f"error: output directory {out_dir} already exists; pass --force to replace it "
                                "(force=True in Python), or choose another -o"]
    assert load_manifest(out_dir).topk == 3

    # --force replaces it
    code, out, err = run("s2s-export", [str(model_pt), "-o", str(out_dir), "--no-verify", "--force"],
                         capsys, monkeypatch)
    assert code == 0, err
    assert load_manifest(out_dir).topk == 8


def test_missing_and_bad_models_exit_4(tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run("s2s-export", [str(tmp_path / "nope.pt")], capsys, monkeypatch)
    assert code == 4
    assert err.splitlines() == [f"error: model {tmp_path / 'nope.pt'} does not exist; check the path"]
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    code, out, err = run("s2s-export", [str(garbage)], capsys, monkeypatch)
    assert code == 4 and len(err.splitlines()) == 1 and err.startswith("error: ")
    assert list(p.name for p in tmp_path.iterdir()) == ["garbage.pt"]


def test_usage_errors_exit_1(model_pt: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run("s2s-export", [str(model_pt), "--opset", "12", "--no-verify"], capsys, monkeypatch)
    assert code == 1
    assert err.splitlines() == ["error: --opset 12 is not supported by the TorchScript exporter; "
                                "use --opset between 17 and 20"]
    code, out, err = run("s2s-export", [str(model_pt), "--bogus"], capsys, monkeypatch)
    assert code == 1
    assert not (model_pt.parent / "model_bundle").exists()


def test_trt_writes_the_bundle_then_exits_2(model_pt: Path, tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    out_dir = tmp_path / "b"
    code, out, err = run("s2s-export", [str(model_pt), "-o", str(out_dir), "--trt", "--no-verify"],
                         capsys, monkeypatch)
    assert code == 2
    assert out.splitlines()[0] == f"wrote {out_dir}"  # what was written, as without --trt, ...
    assert "encoder.fp16.onnx" in [line.split()[0] for line in out.splitlines()[1:]]  # the files listed
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert lines and "TensorRT" in lines[0]  # ... then what is missing ...
    assert f"s2s build-engines {out_dir}" in lines[-1]  # ... and how to build engines on the target
    assert "Traceback" not in err
    m = load_manifest(out_dir)  # the ONNX + FP16 bundle is complete and verified by hash
    assert m.graphs["fp32"] == {"encoder": "encoder.onnx", "decoder_step": "decoder_step.onnx",
                                "greedy": "greedy.onnx", "encoder_greedy": "encoder_greedy.onnx"}
    assert m.graphs["fp16"] == {"encoder": "encoder.fp16.onnx", "decoder_step": "decoder_step.fp16.onnx"}
    assert m.engines == []


def test_parity_failure_exits_3(model_pt: Path, tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def failing(*args, **kwargs):  # type: ignore[no-untyped-def]
        outputs = {"encoder/memory": {"max_abs": 1e-7, "max_rel": 1e-6, "ok": True},
                   "decoder_step/log_probs": {"max_abs": 0.02, "max_rel": 0.5, "ok": False}}
        return parity_mod.summarize(outputs, None, [3])

    monkeypatch.setattr(parity_mod, "check_parity", failing)
    code, out, err = run("s2s-export", [str(model_pt), "-o", str(tmp_path / "b")], capsys, monkeypatch)
    assert code == 3
    assert err.splitlines()[0].startswith("error: parity failed for decoder_step/log_probs: max abs error 0.02 "
                                          "(atol 0.0001), max rel error 0.5 (rtol 0.001)")
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "b").exists()


def test_inspect_bundle_and_checkpoint(model_pt: Path, tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    out_dir = tmp_path / "b"
    assert run("s2s-export", [str(model_pt), "-o", str(out_dir), "--no-verify"], capsys, monkeypatch)[0] == 0
    code, out, err = run("s2s", ["inspect", str(out_dir)], capsys, monkeypatch)
    assert code == 0, err
    assert "hashes verified" in out and "attention=general" in out
    assert "heads=" not in out and "window=" not in out  # settings general attention never reads
    assert "(never generated): 0 <pad>, 1 <s>" in out
    assert "out topk_ids" in out and "[batch, 8]" in out and "in src_mask" in out
    assert "static" in out and "state" in out and "parity: not checked" in out
    assert "exporter=torch.onnx TorchScript" in out
    code, out, err = run("s2s", ["inspect", str(out_dir), "--json"], capsys, monkeypatch)
    assert code == 0 and json.loads(out)["io"]["topk"] == 8

    code, out, err = run("s2s", ["inspect", str(model_pt)], capsys, monkeypatch)
    assert code == 0, err
    assert "checkpoint" in out and "attention=general" in out and "parameters:" in out and '"task": "reverse"' in out

    code, out, err = run("s2s", ["inspect", str(tmp_path / "missing")], capsys, monkeypatch)
    assert code == 4 and len(err.splitlines()) == 1

    with open(out_dir / "encoder.onnx", "ab") as f:
        f.write(b"\0")
    code, out, err = run("s2s", ["inspect", str(out_dir)], capsys, monkeypatch)
    assert code == 4 and "encoder.onnx does not match its sha256" in err
    code, out, err = run("s2s", ["inspect", str(out_dir), "--no-verify"], capsys, monkeypatch)
    assert code == 0 and "hashes not checked" in out


# ---------------------------------------------------------------- what a new user meets (issue 14, item 11)
def _commands() -> dict[str, list[str]]:
    """argv prefix of every command of both console scripts."""
    import typer

    from s2s_export.cli.main import app

    group = typer.main.get_command(app)
    return {"s2s-export": [], "s2s": [], **{f"s2s {name}": [name] for name in group.commands}}  # type: ignore[attr-defined]


def test_help_has_no_type_labels_on_flags_and_a_plain_usage_line(capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """--help of every command: no ``<bool>`` label on flags, arguments in the usage line as
    MODEL / BUNDLE / [TEXTS]..., never ``{model}``."""
    for name, argv in _commands().items():
        entry = "s2s-export" if name == "s2s-export" else "s2s"
        code, out, err = run(entry, [*argv, "--help"], capsys, monkeypatch)
        assert code == 0, (name, err)
        usage = next(line for line in out.splitlines() if "Usage:" in line)
        assert "<bool>" not in out and "{" not in usage and "}" not in usage, (name, usage)
    code, out, _ = run("s2s-export", ["--help"], capsys, monkeypatch)
    assert "Usage: s2s-export [OPTIONS] [MODEL]" in out
    code, out, _ = run("s2s", ["translate", "--help"], capsys, monkeypatch)
    assert "Usage: s2s translate [OPTIONS] BUNDLE [TEXTS]..." in out
    for flag in ("-o", "--output", "--scores", "--n-best", "--on-error", "--search-style", "--full-distribution"):
        assert flag in out, flag


def test_version(capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from s2s_export import __version__

    for entry in ("s2s-export", "s2s"):
        code, out, err = run(entry, ["--version"], capsys, monkeypatch)
        assert (code, out, err) == (0, f"s2s-export {__version__}\n", "")
