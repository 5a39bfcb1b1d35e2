"""``s2s verify``: exit codes (0 passed, 1 bad options, 3 parity failed, 4 bad input), the summary
table, the JSON and HTML reports, the input choices."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from conftest import run_cli  # noqa: E402
from s2s_export.bundle import load_manifest  # noqa: E402

torch.set_num_threads(1)

TRAIN_STEPS, TRAIN_EMB, TRAIN_HIDDEN = 120, 16, 32  # the model of test_verify / test_runtime


def run(argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
        ) -> tuple[int, str, str]:
    """``s2s verify ...`` in-process: (exit code, stdout, stderr)."""
    return run_cli("s2s", ["verify", *argv], capsys, monkeypatch)


@pytest.fixture(scope="module")
def files(tiny_checkpoint: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """model.pt, its bundle (with int8 graphs), a broken copy of the bundle, a data file."""
    from conftest import tiny_overrides, tiny_task
    from onnx import numpy_helper

    from s2s_export.export import export_model
    from s2s_export.int8 import quantize_bundle

    root = tmp_path_factory.mktemp("cli_verify")
    model = root / "model.pt"
    shutil.copy(tiny_checkpoint("luong-general", steps=TRAIN_STEPS,
                                **tiny_overrides("luong-general", TRAIN_EMB, TRAIN_HIDDEN)), model)
    bundle = export_model(model, root / "bundle", verify=False, max_src_len=32).path
    quantize_bundle(bundle)
    broken = root / "broken"
    shutil.copytree(bundle, broken)
    g = onnx.load(str(broken / "decoder_step.onnx"))
    init = next(i for i in g.graph.initializer if i.name == "model.generator.bias")
    arr = numpy_helper.to_array(init).copy()
    arr[4] += 0.1
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    onnx.save(g, str(broken / "decoder_step.onnx"))
    load_manifest(broken, verify=False).save(broken)  # re-hash
    data = root / "data.tsv"
    data.write_text("".join(f"{''.join(s)}\t{''.join(t)}\n" for s, t in tiny_task("reverse").test[:25]),
                    encoding="utf-8")
    return {"model": model, "bundle": bundle, "broken": broken, "data": data, "root": root}


def test_passing_bundle_exits_0_and_writes_both_reports(files: dict[str, Path], tmp_path: Path, capsys,
                                                        monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rep, page = tmp_path / "r.json", tmp_path / "r.html"
    code, out, err = run([str(files["bundle"]), "--model", str(files["model"]), "--data", str(files["data"]),
                          "--beam", "3", "--report", str(rep), "--html", str(page)], capsys, monkeypatch)
    assert code == 0, err
    assert "teacher-forced" in out and "decoder_step/log_probs" in out and "result: PASSED" in out
    assert "greedy  identical 25/25" in out and "beam 3  identical 25/25" in out and "BLEU" in out
    assert f"wrote {rep}" in out and f"wrote {page}" in out
    report = json.loads(rep.read_text())
    assert report["passed"] and report["inputs"]["sentences"] == 25 and report["inputs"]["references"]
    assert report["precision"] == "fp32" and report["tolerances"]["outputs"]["*"] == {"atol": 1e-4, "rtol": 1e-3}
    assert report["teacher_forced"]["outputs"]["decoder_step/log_probs"]["ok"]
    text = page.read_text()
    assert text.startswith("<!doctype html>") and "PASSED" in text
    assert text.count("data:image/png;base64,") == 2  # error per step + attention, inlined
    assert "src=\"http" not in text and "src='http" not in text  # self-contained


def test_broken_bundle_exits_3_naming_output_and_step(files: dict[str, Path], tmp_path: Path, capsys,
                                                      monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rep, page = tmp_path / "r.json", tmp_path / "r.html"
    code, out, err = run([str(files["broken"]), "--model", str(files["model"]), "--data", str(files["data"]),
                          "--beam", "1", "--report", str(rep), "--html", str(page)], capsys, monkeypatch)
    assert code == 3
    lines = err.splitlines()
    assert lines[0].startswith("error: first failure: decoder_step/log_probs at step 0, sentence 0")
    assert any("teacher-forced check failed for decoder_step/log_probs" in ln for ln in lines)
    assert "result: FAILED" in out and "FAIL from step 0" in out
    report = json.loads(rep.read_text())  # the reports are written before the verdict
    assert not report["passed"] and report["teacher_forced"]["first_failure"]["output"] == "decoder_step/log_probs"
    assert "FAILED" in page.read_text()


def test_int8_passes_its_defaults_and_fails_fp32_tolerances(files: dict[str, Path], capsys,
                                                            monkeypatch) -> None:  # type: ignore[no-untyped-def]
    base = [str(files["bundle"]), "--model", str(files["model"]), "--precision", "int8", "--limit", "15",
            "--beam", "1"]
    code, out, err = run(base, capsys, monkeypatch)
    assert code == 0, err
    assert "(onnxruntime, int8)" in out and "int8 defaults" in out and "log_probs, topk_log_probs atol 1" in out
    assert "the checkpoint's task" in out  # default input: the task stored in the checkpoint
    code, out, err = run(base + ["--atol", "1e-4", "--rtol", "1e-3", "--min-exact", "1"], capsys, monkeypatch)
    assert code == 3 and "changed: atol 0.0001 (all outputs)" in out
    assert "error: first failure: encoder/h at the initial state" in err


def test_input_choices(files: dict[str, Path], tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from s2s_export.models import load_checkpoint, save_checkpoint

    code, out, err = run([str(files["bundle"]), "-m", str(files["model"]), "--task", "copy", "--limit", "8",
                          "--beam", "1", "--tol", "log_probs=1e-3"], capsys, monkeypatch)
    assert code == 0, err
    assert "task copy, test split (8 of 500 examples)" in out and "log_probs atol 0.001" in out
    ckpt = load_checkpoint(files["model"])
    ckpt.meta = {}
    no_task = tmp_path / "no_task.pt"
    save_checkpoint(no_task, ckpt)
    code, out, err = run([str(files["bundle"]), "-m", str(no_task), "--limit", "6", "--beam", "1"],
                         capsys, monkeypatch)
    assert code == 0, err
    assert "random sources (6," in out and "BLEU vs PyTorch 100.00" in out


def test_bad_input_exits_4(files: dict[str, Path], tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from s2s_export.models import load_checkpoint, save_checkpoint
    from s2s_export.vocab import Vocab

    bundle, model = str(files["bundle"]), str(files["model"])
    code, out, err = run([bundle, "-m", model, "--data", str(tmp_path / "missing.txt")], capsys, monkeypatch)
    assert code == 4 and len(err.splitlines()) == 1 and "cannot read" in err
    code, out, err = run([str(tmp_path / "nobundle"), "-m", model], capsys, monkeypatch)
    assert code == 4 and "does not exist" in err
    code, out, err = run([bundle, "-m", str(tmp_path / "none.pt")], capsys, monkeypatch)
    assert code == 4 and "does not exist" in err
    ckpt = load_checkpoint(files["model"])  # another model: same sizes, a different vocabulary
    tokens = list(ckpt.tgt_vocab.tokens)
    tokens[4] = "z"
    ckpt.tgt_vocab = Vocab(tuple(tokens))
    other = tmp_path / "other.pt"
    save_checkpoint(other, ckpt)
    code, out, err = run([bundle, "-m", str(other)], capsys, monkeypatch)
    assert code == 4 and "target vocabulary" in err and "exported from" in err
    long = tmp_path / "long.txt"
    long.write_text("a" * 40 + "\n", encoding="utf-8")
    code, out, err = run([bundle, "-m", model, "--data", str(long)], capsys, monkeypatch)
    assert code == 4 and "max_src_len 32" in err


def test_bad_options_exit_1(files: dict[str, Path], capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    bundle, model = str(files["bundle"]), str(files["model"])
    for extra, pattern in ((["--data", str(files["data"]), "--task", "reverse"], "not both"),
                           (["--tol", "log_probs"], "bad tolerance"),
                           (["--precision", "bf16"], "unknown precision"),
                           (["--precision", "fp16"], "no fp16 graphs"),
                           (["--task", "french"], "unknown task"),
                           (["--beam", "9"], "top-K"),
                           (["--min-exact", "2"], "--min-exact must be within 0..1"),
                           (["--tol", "log_prob=1e-3"], "--tol names log_prob, which the bundle")):
        code, out, err = run([bundle, "-m", model, "--limit", "3", *extra], capsys, monkeypatch)
        assert code == 1, (extra, err)
        assert pattern in err, (extra, err)


def test_html_without_matplotlib_exits_2_before_any_work(files: dict[str, Path], tmp_path: Path, capsys,
                                                         monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    rep = tmp_path / "r.json"
    code, out, err = run([str(files["bundle"]), "-m", str(files["model"]), "--report", str(rep),
                          "--html", str(tmp_path / "r.html")], capsys, monkeypatch)
    assert code == 2 and "matplotlib is not installed" in err and len(err.splitlines()) == 1
    assert not rep.exists() and out == ""


def test_fp16_bundle_passes_under_its_tolerances_with_real_fp16_figures(files: dict[str, Path], tmp_path: Path,
                                                                         capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """An FP16 bundle gets the looser fp16 report, and the fidelity of real float16 arithmetic
    (onnx.reference; ONNX Runtime on the CPU computes float16 in float32) is reported too."""
    import json

    from s2s_export.tensorrt.builder import add_tensorrt
    from s2s_export.verify.tolerances import defaults

    bundle = tmp_path / "fp16"
    shutil.copytree(files["bundle"], bundle)
    add_tensorrt(bundle, build=False)  # the FP16 graphs, no engines
    report = tmp_path / "r.json"
    code, out, err = run([str(bundle), "--model", str(files["model"]), "--data", str(files["data"]),
                          "--precision", "fp16", "--limit", "10", "--beam", "1", "--report", str(report)],
                         capsys, monkeypatch)
    assert code == 0, out + err
    r = json.loads(report.read_text())
    assert r["precision"] == "fp16" and r["passed"]
    assert r["tolerances"] == json.loads(json.dumps(defaults("fp16").to_dict())) | {
        k: r["tolerances"][k] for k in ("rel_floor", "quantile")}
    assert defaults("fp16").of("log_probs")[0] > defaults("fp32").of("log_probs")[0]
    real = r["fp16_real_arithmetic"]
    assert real["sentences"] == 8 and real["steps"] > 0
    assert real["top1_agreement"] >= 0.9 and 0 < real["max_logprob_error_topk"] < 0.1
    assert "real float16 arithmetic" in out
