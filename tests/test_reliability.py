"""Reliability and security (issue 8) through the real CLIs: the bad-input matrix (exit code and
exactly one ``error: problem; fix`` line, never a traceback), tampered and malicious bundles,
disk-full and unwritable output, interrupted runs (injected KeyboardInterrupt, real SIGINT and
SIGTERM) that leave the previous bundle intact and no temporary directory, thousands of input
lines (one output line each, streamed), custom-op libraries, ``--trust-pickle``, the soak script.

Covered elsewhere and not repeated here: a missing checkpoint, random bytes, an existing output
without --force, a bad --opset (test_cli_export); a non-UTF-8 file or stdin, a missing input
file, --beam 0, an unknown backend, --n-best > --beam, an over-long TEXT argument
(test_cli_translate); checkpoint errors at the library level (test_checkpoint); hashes, missing
files and injected failures of ``export_model`` (test_bundle); one Translator shared by 8 threads
(test_runtime).
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from conftest import run_cli  # noqa: E402
from s2s_export.bundle import Manifest, load_manifest  # noqa: E402
from s2s_export.errors import BundleError  # noqa: E402
from s2s_export.runtime import Translator  # noqa: E402

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
TRAIN_STEPS, TRAIN_EMB, TRAIN_HIDDEN = 120, 16, 32  # the model of test_runtime / test_cli_translate
MAX_SRC_LEN = 32


# ---------------------------------------------------------------- fixtures and helpers
@pytest.fixture(scope="module")
def trained(tiny_checkpoint: Callable[..., Path]) -> Path:
    from conftest import tiny_overrides

    return tiny_checkpoint("luong-general", steps=TRAIN_STEPS,
                           **tiny_overrides("luong-general", TRAIN_EMB, TRAIN_HIDDEN))


@pytest.fixture(scope="module")
def bundle(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from s2s_export.export import export_model

    return export_model(trained, tmp_path_factory.mktemp("reliability") / "bundle", topk=8, verify=False,
                        max_src_len=MAX_SRC_LEN).path


@pytest.fixture(scope="module")
def translator(bundle: Path) -> Translator:
    return Translator.load(bundle, intra_op_threads=1)


def cli(entry: str, argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        stdin: bytes | None = None) -> tuple[int, str, str]:
    return run_cli(entry, argv, capsys, monkeypatch, stdin)


# the library's parameter names: CLI messages name the flags the user typed instead
PYTHON_NAMES = ("beam_size", "n_best", "max_length", "max_length_ratio", "min_length", "length_penalty",
                "no_repeat_ngram_size", "full_distribution", "intra_op_threads", "max_batch_size", "max_batch",
                "max_src_len", "trust_pickle", "topk", "search_style")


def one_error(err: str, *needles: str) -> str:
    """stderr is exactly one ``error: problem; fix`` line holding every needle, naming no
    Python parameter where a flag was typed, and never "this is a bug"."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "; " in lines[0], err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "this is a bug" not in lines[0] and "unexpected" not in lines[0], lines[0]
    text = lines[0].replace("the bundle's max_src_len", "")  # a property of the bundle, not a flag
    named = [n for n in PYTHON_NAMES if re.search(rf"(?<![\w./-]){n}(?![\w-])", text)]
    assert not named, (named, lines[0])
    return lines[0]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name
                  or p.name.endswith(".export"))


def copy_bundle(bundle: Path, dst: Path) -> Path:
    shutil.copytree(bundle, dst)
    return dst


def edit_manifest(path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    data = json.loads((path / "manifest.json").read_text())
    change(data)
    (path / "manifest.json").write_text(json.dumps(data))
    return path


def rehash(path: Path) -> Path:
    """Record the current files' hashes (a corrupted graph that passes the sha256 check)."""
    load_manifest(path, verify=False).save(path)
    return path


def checkpoint_data(trained: Path) -> dict[str, Any]:
    return torch.load(trained, weights_only=True)


def save_raw(path: Path, data: Any) -> Path:
    torch.save(data, path)
    return path


# ---------------------------------------------------------------- the bad-input matrix
def _bad_config(trained: Path, tmp: Path) -> Path:
    data = checkpoint_data(trained)
    data["config"]["cell"] = "rnn"
    return save_raw(tmp / "badcfg.pt", data)


def _mismatch(trained: Path, tmp: Path) -> Path:
    data = checkpoint_data(trained)
    data["config"]["dec_hidden"] = 48
    return save_raw(tmp / "mismatch.pt", data)


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _corrupt_graph(b: Path) -> Path:
    (b / "decoder_step.onnx").write_bytes(b"\x08\x07not a graph" * 40)
    return rehash(b)


def _unlisted_graph(b: Path) -> Path:
    shutil.copy(b / "encoder.onnx", b / "other.onnx")
    return edit_manifest(b, lambda d: d["graphs"]["fp32"].update(encoder="other.onnx"))


S = Path  # (tmp, trained checkpoint, bundle copy) -> argv, for the table below
CASES: list[tuple[str, str, Callable[[S, S, S], list[str]], int, tuple[str, ...]]] = [
    # checkpoints (s2s-export)
    ("text-file-as-checkpoint", "s2s-export",
     lambda t, c, b: [str(_write(t / "model.py", "import torch\nprint('hi')\n")), "-o", str(t / "o")],
     4, ("model.py", "checkpoint", "pass a")),
    ("empty-checkpoint", "s2s-export", lambda t, c, b: [str(_write(t / "e.pt", "")), "-o", str(t / "o")],
     4, ("e.pt", "checkpoint")),
    ("truncated-checkpoint", "s2s-export",
     lambda t, c, b: [str(_write_bytes(t / "cut.pt", c.read_bytes()[: c.stat().st_size * 6 // 10])),
                      "-o", str(t / "o")], 4, ("cut.pt", "truncated")),
    ("other-torch-file", "s2s-export",
     lambda t, c, b: [str(save_raw(t / "sd.pt", {"state_dict": {"w": torch.zeros(2)}})), "-o", str(t / "o")],
     4, ("not an s2s-export checkpoint",)),
    ("directory-as-checkpoint", "s2s-export", lambda t, c, b: [str(b)], 4, ("is a directory",)),
    ("invalid-config", "s2s-export", lambda t, c, b: [str(_bad_config(c, t)), "-o", str(t / "o")],
     4, ("badcfg.pt", "config cell", "'lstm' or 'gru'", "got 'rnn'")),
    ("config-weights-mismatch", "s2s-export", lambda t, c, b: [str(_mismatch(c, t)), "-o", str(t / "o")],
     4, ("mismatch.pt", "config and weights do not match")),
    ("output-is-a-file", "s2s-export",
     lambda t, c, b: [str(c), "-o", str(_write(t / "f", "x")), "--no-verify"], 1, ("is not a directory",)),
    ("output-parent-is-a-file", "s2s-export",
     lambda t, c, b: [str(c), "-o", str(_write(t / "f", "x") / "b"), "--no-verify"], 4,
     ("cannot write to", "a file, not a directory")),
    ("output-dangling-symlink", "s2s-export",
     lambda t, c, b: [str(c), "-o", str(_symlink(t / "link", t / "gone")), "--no-verify"], 1,
     ("exists and is not a directory",)),
    ("export-max-batch-negative", "s2s-export", lambda t, c, b: [str(c), "-o", str(t / "o"), "--max-batch", "-1"],
     1, ("--max-batch must be >= 1 (got -1)", "pass a positive --max-batch")),
    ("export-max-src-len-negative", "s2s-export",
     lambda t, c, b: [str(c), "-o", str(t / "o"), "--max-src-len", "-1"], 1, ("--max-src-len must be >= 1",)),
    ("export-topk-0", "s2s-export", lambda t, c, b: [str(c), "-o", str(t / "o"), "--topk", "0"],
     1, ("--topk must be >= 1",)),
    ("export-option-not-a-number", "s2s-export", lambda t, c, b: [str(c), "--max-batch", "many"],
     1, ("--max-batch", "see 's2s-export --help'")),
    ("export-unknown-option", "s2s-export", lambda t, c, b: [str(c), "--bogus"], 1, ("--bogus", "--help")),
    # configurations (s2s train fails before any training)
    ("unknown-preset", "s2s", lambda t, c, b: ["train", "--preset", "nope", "--task", "reverse", "-o", str(t / "m.pt")],
     1, ("unknown preset 'nope'", "choose one of", "luong-general")),
    ("unknown-task", "s2s", lambda t, c, b: ["train", "--preset", "bahdanau", "--task", "nope", "-o", str(t / "m.pt")],
     1, ("unknown task 'nope'",)),
    # bundles
    ("bundle-without-manifest", "s2s",
     lambda t, c, b: ["translate", str(_unlink(b / "manifest.json")), "abc"], 4, ("has no manifest.json",)),
    ("quantize-bundle-without-manifest", "s2s",
     lambda t, c, b: ["quantize", str(_unlink(b / "manifest.json"))], 4, ("has no manifest.json",)),
    ("newer-format-version", "s2s",
     lambda t, c, b: ["translate", str(edit_manifest(b, lambda d: d.update(format_version=3))), "abc"],
     4, ("format version 3 is newer", "(2)", "upgrade")),
    ("quantize-newer-format-version", "s2s",
     lambda t, c, b: ["quantize", str(edit_manifest(b, lambda d: d.update(format_version=9)))],
     4, ("format version 9 is newer",)),
    ("tampered-graph", "s2s", lambda t, c, b: ["translate", str(_tamper(b / "encoder.onnx")), "abc"],
     4, ("encoder.onnx does not match its sha256", "re-export")),
    ("quantize-tampered-graph", "s2s", lambda t, c, b: ["quantize", str(_tamper(b / "decoder_step.onnx"))],
     4, ("decoder_step.onnx does not match its sha256",)),
    ("corrupted-onnx", "s2s", lambda t, c, b: ["translate", str(_corrupt_graph(b)), "abc"],
     4, ("ONNX Runtime cannot load decoder_step.onnx", "re-export")),
    ("quantize-corrupted-onnx", "s2s", lambda t, c, b: ["quantize", str(_corrupt_graph(b))],
     4, ("cannot load decoder_step.onnx", "re-export")),  # static INT8 calibrates on the fp32 graphs first
    ("quantize-rowwise-corrupted-onnx", "s2s", lambda t, c, b: ["quantize", str(_corrupt_graph(b)), "--variant",
                                                                "rowwise"],
     4, ("quantizing decoder_step.onnx failed", "re-export")),
    ("manifest-not-json", "s2s",
     lambda t, c, b: ["translate", str(_write(b / "manifest.json", "{not json").parent), "abc"],
     4, ("not valid JSON",)),
    ("manifest-wrong-types", "s2s",
     lambda t, c, b: ["translate", str(edit_manifest(b, lambda d: d.update(graphs="fp32"))), "abc"],
     4, ("manifest.json: graphs:", "re-export")),
    ("manifest-points-outside", "s2s",
     lambda t, c, b: ["translate", str(edit_manifest(
         b, lambda d: d["graphs"]["fp32"].update(encoder="../elsewhere/encoder.onnx"))), "abc"],
     4, ("outside the bundle", "../elsewhere/encoder.onnx")),
    ("manifest-absolute-path", "s2s",
     lambda t, c, b: ["translate", str(edit_manifest(b, lambda d: d["files"].update({"/etc/hostname": "0" * 64}))),
                      "abc"], 4, ("outside the bundle",)),
    ("graph-without-hash", "s2s", lambda t, c, b: ["translate", str(_unlisted_graph(b)), "abc"],
     4, ("other.onnx has no sha256",)),
    ("checkpoint-as-bundle", "s2s", lambda t, c, b: ["translate", str(c), "abc"], 4, ("not a bundle directory",)),
    # inputs and options of s2s translate
    ("over-long-line-first-in-file", "s2s",
     lambda t, c, b: ["translate", str(b), "-i", str(_write(t / "in.txt", "a" * 40 + "\nab\n\ncd\nef\n"))],
     4, ("in.txt line 1 has 41 source tokens", "max_src_len 32", "--max-src-len 41")),
    ("input-is-a-directory", "s2s", lambda t, c, b: ["translate", str(b), "-i", str(t)], 4, ("cannot read",)),
    ("max-length-negative", "s2s", lambda t, c, b: ["translate", str(b), "abc", "--max-length", "-1"],
     1, ("--max-length must be >= 1 (got -1)",)),
    ("batch-size-negative", "s2s", lambda t, c, b: ["translate", str(b), "abc", "--batch-size", "-1"],
     1, ("--batch-size must be >= 1 (got -1)",)),
    ("min-length-negative", "s2s", lambda t, c, b: ["translate", str(b), "abc", "--min-length", "-1"],
     1, ("--min-length must be >= 0",)),
    ("ratio-negative", "s2s", lambda t, c, b: ["translate", str(b), "abc", "--max-length-ratio", "-1"],
     1, ("--max-length-ratio must be > 0",)),
    ("ngram-negative", "s2s", lambda t, c, b: ["translate", str(b), "abc", "--no-repeat-ngram-size", "-1"],
     1, ("--no-repeat-ngram-size must be >= 0",)),
    ("threads-zero", "s2s", lambda t, c, b: ["translate", str(b), "abc", "--threads", "0"],
     1, ("--threads must be >= 1 (got 0)",)),
    ("spinning-unknown", "s2s", lambda t, c, b: ["translate", str(b), "abc", "--spinning", "always"],
     1, ("--spinning 'always' is unknown", "off, step, all")),
    ("n-best-zero", "s2s", lambda t, c, b: ["translate", str(b), "abc", "--n-best", "0"], 1, ("--n-best must be >= 1",)),
    ("beam-over-topk", "s2s", lambda t, c, b: ["translate", str(b), "abc", "--beam", "12"],
     1, ("--beam 12 exceeds the bundle's top-K (8)", "--topk 13", "--full-distribution")),
    ("threads-not-a-number", "s2s", lambda t, c, b: ["translate", str(b), "abc", "--threads", "many"],
     1, ("--threads", "see 's2s translate --help'")),
    ("on-error-unknown", "s2s", lambda t, c, b: ["translate", str(b), "abc", "--on-error", "continue"],
     1, ("--on-error 'continue' is unknown", "stop, skip")),
    ("output-into-missing-directory", "s2s",
     lambda t, c, b: ["translate", str(b), "abc", "-o", str(t / "missing" / "out.txt")], 4, ("cannot write",)),
    ("argument-not-utf8", "s2s", lambda t, c, b: ["translate", str(b), "ab\udcffc"],
     4, ("argument 1 is not UTF-8 text", "iconv")),
    ("beam-not-a-number", "s2s", lambda t, c, b: ["translate", str(b), "abc", "--beam", "wide"],
     1, ("--beam", "see 's2s translate --help'")),
    ("missing-bundle-argument", "s2s", lambda t, c, b: ["translate"], 1, ("Missing argument",)),
]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _symlink(path: Path, to: Path) -> Path:
    path.symlink_to(to)
    return path


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _unlink(path: Path) -> Path:
    path.unlink()
    return path.parent


def _tamper(path: Path) -> Path:
    _flip_byte(path)
    return path.parent


@pytest.mark.parametrize("name,entry,make,code,needles", CASES, ids=[c[0] for c in CASES])
def test_bad_input_matrix(name: str, entry: str, make: Callable[[S, S, S], list[str]], code: int,
                          needles: tuple[str, ...], trained: Path, bundle: Path, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    b = copy_bundle(bundle, tmp_path / "b")
    argv = make(tmp_path, trained, b)
    after_setup = snapshot(b) if b.is_dir() else {}
    got, out, err = cli(entry, argv, capsys, monkeypatch)
    assert got == code, (got, err)
    line = one_error(err, *needles)
    assert out == ""  # nothing half-printed either
    if name == "text-file-as-checkpoint":
        assert "pickle" not in line  # a text file is not "pickled objects"
    if b.is_dir():
        assert snapshot(b) == after_setup  # a failed command never changes a bundle
    assert not (tmp_path / "o").exists() and leftovers(tmp_path) == []


# ---------------------------------------------------------------- inputs: lines in, lines out
def test_every_line_gets_one_output_line(bundle: Path, translator: Translator, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Empty lines, blanks, CRLF and characters str.splitlines() would split at (form feed,
    U+2028, U+0085): one output line per "\\n"-terminated input line, in order."""
    lines = ["abc", "", "   ", "a\x0cb", "x\u2028y", "c\x85d", "e\x1cf", "", "jihg"]
    f = tmp_path / "in.txt"
    f.write_bytes(("\r\n".join(lines[:3]) + "\r\n" + "\n".join(lines[3:]) + "\n").encode("utf-8"))
    code, out, err = cli("s2s", ["translate", str(bundle), "-i", str(f)], capsys, monkeypatch)
    assert code == 0, err
    want = [h[0].text for h in translator.translate(lines)]
    assert out.split("\n")[:-1] == want and len(want) == len(lines)
    # no trailing newline on the last line: still one output line per line
    f.write_bytes(b"abc\nde")
    code, out, _ = cli("s2s", ["translate", str(bundle), "-i", str(f)], capsys, monkeypatch)
    assert code == 0 and out.splitlines() == [h[0].text for h in translator.translate(["abc", "de"])]
    f.write_bytes(b"")  # an empty file: no output, no error
    code, out, err = cli("s2s", ["translate", str(bundle), "-i", str(f)], capsys, monkeypatch)
    assert (code, out) == (0, ""), err


def test_output_is_streamed_in_chunks(bundle: Path, translator: Translator, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Inputs are translated and printed chunk by chunk (memory stays flat on any corpus); the
    first call, with no input, checks the options (test_cli_translate: streaming, --on-error)."""
    from s2s_export.cli import translate as translate_cli

    inputs = ["".join(random.Random(i).choice("abcdefghij") for _ in range(i % 7)) for i in range(50)]
    f = tmp_path / "in.txt"
    f.write_text("\n".join(inputs) + "\n")
    sizes: list[int] = []
    real = Translator.translate_ids

    def spy(self: Translator, ids: Any, **kw: Any) -> Any:
        sizes.append(len(ids))
        return real(self, ids, **kw)

    monkeypatch.setattr(Translator, "translate_ids", spy)
    monkeypatch.setattr(translate_cli, "CHUNK_BATCHES", 2)
    code, out, err = cli("s2s", ["translate", str(bundle), "-i", str(f), "--batch-size", "8"], capsys, monkeypatch)
    assert code == 0, err
    chunks = [inputs[k:k + 16] for k in range(0, len(inputs), 16)]  # 2 batches of 8 lines
    assert sizes == [sum(1 for text in c if text) for c in chunks]  # empty lines are not run
    monkeypatch.undo()
    assert out.splitlines() == [h[0].text for h in translator.translate(inputs)]


def test_thousands_of_lines_through_the_console_script(bundle: Path, translator: Translator, tmp_path: Path) -> None:
    rng = random.Random(8)
    lines = ["".join(rng.choice("abcdefghij?") for _ in range(rng.randint(0, 12))) for _ in range(3000)]
    f = tmp_path / "many.txt"
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "s2s_export.cli.main", "translate", str(bundle), "-i", str(f),
                           "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.split("\n")
    assert out[-1] == "" and len(out) - 1 == len(lines)
    picks = sorted(rng.sample(range(len(lines)), 40))
    assert [out[i] for i in picks] == [h[0].text for h in translator.translate([lines[i] for i in picks])]
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------- disk full, unwritable output
def _fail_mid_write(exc: BaseException) -> Callable[..., None]:
    """An ``onnx.save_model`` that writes half of the graph, then raises ``exc``."""
    import onnx

    def save_model(model: Any, path: str, *args: Any, **kwargs: Any) -> None:
        data = model.SerializeToString() if hasattr(model, "SerializeToString") else onnx.load(model).SerializeToString()
        Path(path).write_bytes(data[: len(data) // 2])
        raise exc

    return save_model


@pytest.mark.parametrize("failure", ["disk-full", "interrupt"])
def test_export_failing_mid_write_keeps_the_previous_bundle(
        failure: str, trained: Path, bundle: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import onnx

    out = copy_bundle(bundle, tmp_path / "out")  # max_src_len 32; the new export would have 256
    before = snapshot(out)
    exc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) if failure == "disk-full" else KeyboardInterrupt()
    monkeypatch.setattr(onnx, "save_model", _fail_mid_write(exc))
    code, stdout, err = cli("s2s-export", [str(trained), "-o", str(out), "--force", "--no-verify"], capsys, monkeypatch)
    if failure == "disk-full":
        assert code == 4
        one_error(err, "No space left on device", "nothing was changed", "free disk space")
    else:
        assert code == 130 and err.strip() == "interrupted"
    assert stdout == "" and snapshot(out) == before
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("failure", ["disk-full", "interrupt"])
def test_quantize_failing_mid_write_keeps_the_bundle(
        failure: str, bundle: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import s2s_export.int8 as int8

    b = copy_bundle(bundle, tmp_path / "b")
    before = snapshot(b)
    real = int8.quantize_graph
    calls: list[str] = []

    def second_fails(src: Path, dst: Path, *args: Any) -> None:  # the encoder is quantized, then the step fails
        calls.append(Path(dst).name)
        if len(calls) == 1:
            return real(src, dst, *args)
        Path(dst).write_bytes(b"\0" * 100)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) if failure == "disk-full" else KeyboardInterrupt()

    monkeypatch.setattr(int8, "quantize_graph", second_fails)
    code, out, err = cli("s2s", ["quantize", str(b)], capsys, monkeypatch)
    assert calls == ["encoder.int8.onnx", "decoder_step.int8.onnx"]
    if failure == "disk-full":
        assert code == 4
        one_error(err, "No space left on device", "nothing was changed")
    else:
        assert code == 130 and err.strip() == "interrupted"
    assert snapshot(b) == before and leftovers(tmp_path) == []
    load_manifest(b)  # still a valid bundle


def test_unwritable_output_directory(trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    from s2s_export import bundle as bundle_mod

    parent = tmp_path / "readonly"
    parent.mkdir()
    parent.chmod(0o555)
    real: Callable[..., str] = tempfile.mkdtemp

    def denied(*args: Any, dir: Any = None, **kwargs: Any) -> str:
        if dir is not None and Path(dir) == parent:  # root ignores the mode: raise what it would
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(parent))
        return real(*args, dir=dir, **kwargs)

    try:
        if os.access(parent, os.W_OK):
            monkeypatch.setattr(bundle_mod.tempfile, "mkdtemp", denied)
        code, out, err = cli("s2s-export", [str(trained), "-o", str(parent / "b"), "--no-verify"],
                             capsys, monkeypatch)
    finally:
        parent.chmod(0o755)
    assert code == 4
    one_error(err, f"cannot write to {parent}", "Permission denied", "choose a writable output directory")
    assert list(parent.iterdir()) == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_stdout_on_a_full_disk(bundle: Path) -> None:
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "s2s_export.cli.main", "translate", str(bundle), "abc",
                               "--threads", "1"], stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 4
    one_error(proc.stderr, "No space left on device", "free disk space")


# ---------------------------------------------------------------- interrupted runs
def test_interrupt_between_the_renames_restores_the_previous_bundle(
        bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The one window of ``atomic_dir`` where the target is moved away: an interrupt there
    puts the previous bundle back."""
    from s2s_export import bundle as bundle_mod

    out = copy_bundle(bundle, tmp_path / "out")
    before = snapshot(out)
    real = os.replace
    calls: list[str] = []

    def replace(src: Any, dst: Any) -> None:
        calls.append(Path(dst).name)
        if len(calls) == 2:  # target -> .old-* done; tmp -> target interrupted
            raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(bundle_mod.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        with bundle_mod.atomic_dir(out, force=True) as tmp:
            (tmp / "manifest.json").write_text("{}")
    monkeypatch.undo()
    assert len(calls) == 3 and calls[1] == "out" and calls[2] == "out"  # moved back
    assert snapshot(out) == before and leftovers(tmp_path) == []


def _signal_export_while_writing(trained: Path, out: Path, sig: signal.Signals) -> tuple[int, str] | None:
    """Start ``s2s-export --force`` over ``out``, send ``sig`` once its temporary directory holds
    its first entry; (exit code, stderr), or None when the export ended first."""
    proc = subprocess.Popen([sys.executable, "-m", "s2s_export.cli.export", str(trained), "-o", str(out),
                             "--force"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if any(any(True for _ in p.iterdir()) for p in out.parent.iterdir() if ".tmp-" in p.name):
                    break  # the temporary bundle holds its first entry: it is writing
            except FileNotFoundError:  # removed while we looked
                pass
            time.sleep(0.002)
        if proc.poll() is not None:
            return None
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_real_signal_during_export(sig: signal.Signals, trained: Path, bundle: Path, tmp_path: Path) -> None:
    """``s2s-export --force`` over an existing bundle, signalled while it writes: exit 130
    (SIGINT) / 143 (SIGTERM), the old bundle intact (a finished export would differ: default
    --max-src-len), nothing left over."""
    out = tmp_path / "out"
    for _ in range(3):  # a loaded machine may let the export finish before the signal: retry
        shutil.rmtree(out, ignore_errors=True)
        copy_bundle(bundle, out)
        before = snapshot(out)
        result = _signal_export_while_writing(trained, out, sig)
        if result is not None:
            break
    assert result is not None, "the export always ended before it could be interrupted"
    code, err = result
    assert code == 128 + sig, err
    assert "Traceback" not in err
    if sig == signal.SIGINT:
        assert err.strip().splitlines()[-1] == "interrupted"
    assert snapshot(out) == before and leftovers(tmp_path) == []


# ---------------------------------------------------------------- racing exports (issue 14, item 5)
def test_two_writers_racing_for_one_output_directory(tmp_path: Path) -> None:
    """Two ``atomic_dir`` writers without --force that both passed the existence check: the
    final rename refuses the target the other one created, so exactly one succeeds; the
    target holds the winner's files; nothing is left over."""
    import threading

    from s2s_export.bundle import atomic_dir
    from s2s_export.errors import OutputExistsError

    target = tmp_path / "new_dir"
    both_inside = threading.Barrier(2, timeout=30)
    outcome: dict[str, Any] = {}

    def write(name: str) -> None:
        try:
            with atomic_dir(target) as tmp:
                (tmp / "manifest.json").write_text(name)
                both_inside.wait()  # both have checked that target does not exist
            outcome[name] = "ok"
        except OutputExistsError as exc:
            outcome[name] = exc

    threads = [threading.Thread(target=write, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    winners = [name for name, result in outcome.items() if result == "ok"]
    (loser,) = [result for result in outcome.values() if result != "ok"]
    assert len(winners) == 1 and (target / "manifest.json").read_text() == winners[0]
    assert "was created by another process while this one was writing it" in str(loser)
    assert "--force" in str(loser) and loser.exit_code == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new_dir"]


def test_export_loses_the_race_cleanly(trained: Path, bundle: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The command's side of the race: another export commits ``-o new_dir`` while this one
    writes (no --force): exit 1, one line, the other's bundle untouched, nothing left over."""
    from s2s_export.export import api

    out = tmp_path / "new_dir"
    real = api._trt_compat

    def the_other_export_commits_first(tmp: Path) -> Any:
        shutil.copytree(bundle, out)
        return real(tmp)

    monkeypatch.setattr(api, "_trt_compat", the_other_export_commits_first)
    code, stdout, err = cli("s2s-export", [str(trained), "-o", str(out), "--no-verify"], capsys, monkeypatch)
    assert code == 1 and stdout == ""
    one_error(err, f"output directory {out} was created by another process", "--force")
    assert snapshot(out) == snapshot(bundle) and leftovers(tmp_path) == []


# ---------------------------------------------------------------- signals at any moment (item 6)
def _catches(pid: int, sig: signal.Signals) -> bool:
    """Whether process ``pid`` has a handler for ``sig`` (Linux: SigCgt in /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
    return bool(mask >> (int(sig) - 1) & 1)


LAUNCH_EXPORT = "import sys; from s2s_export.cli.launch import export; export()"  # the console script


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads SigCgt from /proc/PID/status (Linux)")
def test_signals_at_early_moments_of_export(trained: Path, bundle: Path, tmp_path: Path) -> None:
    """SIGTERM/SIGINT at several moments of start-up (imports of typer, torch, onnx: the first
    second), from the moment the console script's handler is installed: always exit 143/130,
    one line, the previous bundle untouched, nothing left over. Each moment is bounded."""
    out = copy_bundle(bundle, tmp_path / "out")  # max_src_len 32: a finished export would differ
    before = snapshot(out)
    tried = 0
    for sig, delay, launcher in [(signal.SIGTERM, 0.0, "script"), (signal.SIGTERM, 0.05, "script"),
                                 (signal.SIGTERM, 0.15, "-m"), (signal.SIGTERM, 0.3, "script"),
                                 (signal.SIGTERM, 0.6, "-m"), (signal.SIGINT, 0.0, "script"),
                                 (signal.SIGINT, 0.4, "script")]:
        head = ["-c", LAUNCH_EXPORT] if launcher == "script" else ["-m", "s2s_export.cli.export"]
        proc = subprocess.Popen([sys.executable, *head, str(trained), "-o", str(out), "--force"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # SIGTERM is caught once our handler is installed (SIGINT is Python's from the start)
            deadline = time.monotonic() + 30
            while not _catches(proc.pid, signal.SIGTERM) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.001)
            assert _catches(proc.pid, signal.SIGTERM), "the handler was never installed"
            time.sleep(delay)
            if proc.poll() is not None:  # a fast machine finished first: this moment is not tested
                continue
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        tried += 1
        assert proc.returncode == 128 + sig, (sig, delay, proc.returncode, err)
        assert err.strip().splitlines()[-1] == ("interrupted" if sig == signal.SIGINT else "terminated"), err
        assert "Traceback" not in err and not any(line.startswith("error:") for line in err.splitlines()), err
        assert snapshot(out) == before and leftovers(tmp_path) == [], (sig, delay)
    assert tried >= 4


def test_export_with_int8_is_one_transaction(trained: Path, bundle: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """``--force --int8`` interrupted while quantizing, after the fp32 graphs were written:
    the previous bundle is untouched (the fp32 graphs never replaced it alone)."""
    import s2s_export.int8 as int8

    out = copy_bundle(bundle, tmp_path / "out")
    before = snapshot(out)

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(int8, "quantize_graph", interrupted)
    code, stdout, err = cli("s2s-export", [str(trained), "-o", str(out), "--force", "--no-verify", "--int8"],
                            capsys, monkeypatch)
    assert code == 130 and err.strip() == "interrupted"
    assert snapshot(out) == before and leftovers(tmp_path) == []


# ---------------------------------------------------------------- errors that tell the truth (item 10)
class _Exec:
    """An object whose pickle calls ``os.system``: torch's weights-only loader refuses the
    blocked module with "Trying to load unsupported GLOBAL posix.system ..."."""

    def __reduce__(self) -> Any:
        return (os.system, ("true",))


def test_refused_pickles_get_the_trust_pickle_explanation(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Every way torch's weights-only loader refuses a pickled object (a blocked module's
    GLOBAL, a global that is not allowed, a REDUCE of an unknown function) is reported as
    pickled objects + --trust-pickle, in full, never cut in the middle of a word."""
    path = tmp_path / "evil.pt"
    torch.save({"run": _Exec()}, path)
    code, out, err = cli("s2s-export", [str(path), "-o", str(tmp_path / "b")], capsys, monkeypatch)
    assert code == 4
    line = one_error(err, "evil.pt contains pickled Python objects", "arbitrary code", "--trust-pickle")
    assert line.endswith("if you trust its author")
    assert not (tmp_path / "b").exists()


def test_messages_are_never_cut_in_the_middle_of_a_word() -> None:
    from s2s_export.errors import one_line, shorten

    text = "pthread_create failed: Resource temporarily unavailable " * 10
    cut = one_line(RuntimeError(text), 100)
    assert len(cut) <= 100 and cut.endswith("...") and text.startswith(cut[:-3])
    assert cut[:-3].split()[-1] in text.split()  # the last word is whole
    assert shorten("short message", 100) == "short message" and one_line(ValueError()) == "ValueError"


def test_quantize_without_onnx_names_the_missing_package(bundle: Path, tmp_path: Path) -> None:
    """A runtime-only install (no onnx): ``s2s quantize`` names the package to install (exit 2),
    never "re-export the bundle" (exit 4)."""
    b = copy_bundle(bundle, tmp_path / "b")
    before = snapshot(b)
    code = f"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "onnx":
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Block())
from s2s_export.cli.main import main
sys.argv = ["s2s", "quantize", {str(b)!r}]
main()
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    line = one_error(proc.stderr, "onnx is not installed", "pip install 's2s-export[export]'")
    assert "re-export" not in line
    assert snapshot(b) == before and leftovers(tmp_path) == []


def test_build_engines_without_tensorrt_says_where_to_run_it(bundle: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Without TensorRT (or a GPU), ``s2s build-engines`` says what to install and where to run
    it; it never tells the user to run the command they are running."""
    from s2s_export.errors import UnsupportedError
    from s2s_export.tensorrt import builder

    def missing() -> Any:
        raise UnsupportedError("TensorRT is not installed here (No module named 'tensorrt')", builder.BUILD_HINT)

    monkeypatch.setattr(builder, "import_tensorrt", missing)  # whatever this machine has
    b = copy_bundle(bundle, tmp_path / "b")
    code, out, err = cli("s2s", ["build-engines", str(b)], capsys, monkeypatch)
    assert code == 2
    line = one_error(err, "TensorRT is not installed here", "run this command on the target device",
                     "pip install 's2s-export[gpu]'")
    assert "build-engines" not in line


@pytest.mark.skipif(not hasattr(__import__("resource"), "RLIMIT_AS"), reason="needs RLIMIT_AS (POSIX)")
def test_out_of_threads_is_not_a_corrupted_bundle(bundle: Path) -> None:
    """A process that cannot start ONNX Runtime's threads (address space limited just above
    what it uses: pthread_create fails for the thread stacks) is told so, exit 2, never
    "corrupted, re-export the bundle" nor "this is a bug"."""
    code = f"""
import resource, sys
import numpy, onnxruntime
from s2s_export.cli.main import main
import s2s_export.runtime.backends.onnxruntime
try:
    import typer._adapters  # typer imports it (and pydantic) lazily while parsing
except ImportError:
    pass
sys.argv = ["s2s", "translate", {str(bundle)!r}, "abc", "--threads", "2"]
vm = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (4 << 20), resource.RLIM_INFINITY))
main()
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    line = one_error(proc.stderr)
    assert "could not start a thread" in line or "ran out of memory" in line, line
    assert "re-export" not in line and "corrupted" not in line and proc.stdout == ""


# ---------------------------------------------------------------- untrusted files
def test_pickled_module_needs_trust_pickle(trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from s2s_export.models import load_checkpoint

    module = tmp_path / "module.pt"
    torch.save(load_checkpoint(trained).model, module)
    code, out, err = cli("s2s-export", [str(module), "-o", str(tmp_path / "b")], capsys, monkeypatch)
    assert code == 4
    one_error(err, "pickled Python objects", "arbitrary code", "--trust-pickle")
    assert not (tmp_path / "b").exists()
    code, out, err = cli("s2s", ["inspect", str(module)], capsys, monkeypatch)
    assert code == 4 and "--trust-pickle" in one_error(err)
    # opted in, the whole module exports (placeholder vocabularies: it carries none)
    code, out, err = cli("s2s-export", [str(module), "-o", str(tmp_path / "b"), "--trust-pickle", "--no-verify"],
                         capsys, monkeypatch)
    assert code == 0, err
    assert load_manifest(tmp_path / "b").model_config["attention"] == "general"


def test_every_command_that_loads_checkpoints_has_trust_pickle() -> None:
    """s2s-export and every s2s command reading a checkpoint (an argument or option, not an
    output, whose help names a checkpoint) offer --trust-pickle."""
    import typer

    from s2s_export.cli.export import app as export_app
    from s2s_export.cli.main import app

    def reads_checkpoint(param: Any) -> bool:
        opts = set(getattr(param, "opts", []))
        return "checkpoint" in (getattr(param, "help", None) or "") and not opts & {"-o", "--output"}

    commands = {"s2s-export": typer.main.get_command(export_app)}
    group: Any = typer.main.get_command(app)
    commands.update({f"s2s {name}": command for name, command in group.commands.items()})
    loaders, missing = [], []
    for name, command in sorted(commands.items()):
        if any(reads_checkpoint(p) for p in command.params):
            loaders.append(name)
            if "--trust-pickle" not in {o for p in command.params for o in getattr(p, "opts", [])}:
                missing.append(name)
    assert {"s2s-export", "s2s inspect"} <= set(loaders)
    assert missing == [], f"{missing} load checkpoints without offering --trust-pickle"


def test_no_custom_op_library_is_ever_registered(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bundles come from elsewhere: ONNX Runtime sessions never load custom-op libraries."""
    import onnxruntime as ort

    for path in (ROOT / "s2s_export").rglob("*.py"):
        text = path.read_text()
        assert "register_custom_ops_library" not in text, path
        # ctypes only ever opens this process's own C library (CDLL(None): prctl in s2s serve)
        assert re.search(r"CDLL\((?!None\b)", text) is None and "load_library" not in text, path
    made: list[Any] = []
    registered: list[Any] = []

    class SpyOptions(ort.SessionOptions):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            made.append(self)

        def register_custom_ops_library(self, *args: Any) -> None:
            registered.append(args)

    monkeypatch.setattr(ort, "SessionOptions", SpyOptions)
    t = Translator.load(bundle, intra_op_threads=1)
    assert t.translate(["abc"], beam_size=2)[0]
    assert made and registered == []


def test_graph_with_a_custom_domain_op_is_refused(bundle: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A graph using an op from an unknown domain (it would need a custom-op library) does not
    load, hashes matching or not."""
    import onnx
    from onnx import TensorProto, helper

    b = copy_bundle(bundle, tmp_path / "b")
    node = helper.make_node("Backdoor", ["src"], ["out"], domain="com.example.evil")
    graph = helper.make_graph([node], "evil", [helper.make_tensor_value_info("src", TensorProto.INT64, ["b", "s"])],
                              [helper.make_tensor_value_info("out", TensorProto.INT64, ["b", "s"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.example.evil", 1)])
    onnx.save(model, str(b / "encoder.onnx"))
    rehash(b)
    with pytest.raises(BundleError, match="ONNX Runtime cannot load encoder.onnx"):
        Translator.load(b)
    code, out, err = cli("s2s", ["translate", str(b), "abc"], capsys, monkeypatch)
    assert code == 4 and out == ""
    one_error(err, "ONNX Runtime cannot load encoder.onnx", "re-export")


def test_manifest_changes_are_refused_by_load_manifest(bundle: Path, tmp_path: Path) -> None:
    """Library level: file tables of the wrong type and names outside the bundle raise
    BundleError (never AttributeError or a read outside the bundle)."""
    for i, change in enumerate([lambda d: d.update(files=["encoder.onnx"]),
                                lambda d: d.update(engines="x"),
                                lambda d: d["graphs"].update(fp32=["encoder.onnx"]),
                                lambda d: d["graphs"]["fp32"].update(decoder_step=7),
                                lambda d: d["engines"].append({"file": "/etc/passwd"}),
                                lambda d: d["files"].update({"a\\..\\b": "0"})]):
        b = edit_manifest(copy_bundle(bundle, tmp_path / f"b{i}"), change)
        with pytest.raises(BundleError):
            load_manifest(b, verify=False)
    m = load_manifest(bundle)
    assert Manifest.from_dict(m.to_dict()).files == m.files


# ---------------------------------------------------------------- the soak script
def test_soak_script_small_corpus(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("s2s_soak", ROOT / "benchmarks" / "soak.py")
    assert spec is not None and spec.loader is not None
    soak = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "s2s_soak", soak)  # dataclasses look their module up
    spec.loader.exec_module(soak)
    report = soak.soak(bundle, lines=2000, interval=0.02, batch_size=16)
    assert report.returncode == 0, report.stderr_tail
    assert report.lines_out == report.lines_in == 2000 and report.lines_ok
    assert report.samples >= 1 and report.rss_peak_mb > 10
    assert report.memory in ("flat", "inconclusive")  # 2000 lines are too few to judge for sure
    assert any(line.startswith("soak: 2000 lines") for line in soak.summary(report))
    # the verdict on synthetic series: flat, a leak, too few samples
    flat = [soak.Sample(t, 100_000 + (t % 3) * 100, 10 * t) for t in range(1, 40)]
    leak = [soak.Sample(t, 100_000 + t * 2_000, 10 * t) for t in range(1, 40)]
    assert soak.judge(flat, 400, 0.1, 0.10, 16.0)[0] == "flat"
    assert soak.judge(leak, 400, 0.1, 0.10, 16.0)[0] == "grew"
    assert soak.judge(flat[:5], 400, 0.1, 0.10, 16.0)[0] == "inconclusive"


@pytest.mark.parametrize("argv", [["s2s-export", "MODEL", "-o", "OUT"], ["s2s", "train", "--preset", "luong-dot",
                                                                         "--task", "reverse", "-o", "OUT"]])
def test_missing_torch_names_the_install_command(argv: list[str], tmp_path: Path) -> None:
    """A runtime-only install has no torch: commands that need it say how to install it."""
    import subprocess
    import sys

    argv = [a.replace("MODEL", str(ROOT / "examples" / "g2p.pt")).replace("OUT", str(tmp_path / "out"))
            for a in argv]
    entry = "s2s_export.cli.export" if argv[0] == "s2s-export" else "s2s_export.cli.main"
    code = f"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Block())
from {entry} import main
sys.argv = {argv!r}
main()
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: torch is not installed; install it: pip install torch==2.13.0 --index-url "
        "https://download.pytorch.org/whl/cpu && pip install 's2s-export[export]'"]
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- outputs that are not plain directories or files
def test_translate_output_to_a_fifo_and_a_link(bundle: Path, translator: Translator, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """``s2s translate -o`` a FIFO writes into it (its reader gets the lines) and keeps it a FIFO;
    -o a symbolic link writes the file it points to and keeps the link."""
    import stat

    fifo, real, link = tmp_path / "fifo", tmp_path / "real.txt", tmp_path / "link"
    os.mkfifo(fifo)
    real.write_text("keep\n")
    link.symlink_to(real)
    expected = translator.translate(["abc"])[0][0].text + "\n"
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # the reader first: the command's open does not wait
    try:
        code, out, err = cli("s2s", ["translate", str(bundle), "abc", "-o", str(fifo)], capsys, monkeypatch)
        assert code == 0 and out == "", err
        assert os.read(reader, 1000).decode() == expected
    finally:
        os.close(reader)
    code, out, err = cli("s2s", ["translate", str(bundle), "abc", "-o", str(link)], capsys, monkeypatch)
    assert code == 0, err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and link.is_symlink() and real.read_text() == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "link", "real.txt"]


def test_export_never_writes_over_its_model(trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """``s2s-export MODEL -o DIR --force`` where DIR is, or holds, the model (a checkpoint file, a
    Joey NMT directory) or the tokenizer file: exit 1, one line naming both, nothing touched."""
    holder = tmp_path / "holder"
    holder.mkdir()
    model = holder / "model.pt"
    shutil.copy(trained, model)
    joey = tmp_path / "joey"
    shutil.copytree(ROOT / "tests" / "fixtures" / "peers" / "joeynmt" / "gru_nomax", joey)
    joey_before = snapshot(joey)
    sp = ROOT / "tests" / "fixtures" / "peers" / "joeynmt" / "spm_lstm"
    tokenizer = next(sp.rglob("*.model"), None)
    cases = [([str(model), "-o", str(holder)], f"output directory {holder} contains the model {model}"),
             ([str(joey), "-o", str(joey)], f"output directory {joey} is the model {joey}"),
             ([str(joey), "-o", str(joey / "bundle")], f"output directory {joey / 'bundle'} lies inside the model")]
    if tokenizer is not None:
        shutil.copy(tokenizer, holder / "sp.model")
        cases.append(([str(trained), "-o", str(holder), "--src-tokenizer", f"sentencepiece:{holder / 'sp.model'}"],
                      f"output directory {holder} contains the tokenizer file {holder / 'sp.model'}"))
    holder_before = snapshot(holder)
    for argv, message in cases:
        code, out, err = cli("s2s-export", [*argv, "--force", "--no-verify"], capsys, monkeypatch)
        assert code == 1 and out == "", err
        one_error(err, message, "choose an -o outside")
    assert snapshot(holder) == holder_before and snapshot(joey) == joey_before
    assert leftovers(tmp_path) == [] and leftovers(joey) == []


def test_triton_repo_never_writes_over_or_into_its_bundle(bundle: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    b = copy_bundle(bundle, tmp_path / "b")
    before = snapshot(b)
    for out, relation in [(b, "is"), (b / "repo", "lies inside"), (tmp_path, "contains")]:
        code, stdout, err = cli("s2s", ["triton-repo", str(b), "-o", str(out), "--force"], capsys, monkeypatch)
        assert code == 1 and stdout == "", err
        one_error(err, f"output directory {out} {relation} the bundle {b}", "choose an -o outside")
    assert snapshot(b) == before and leftovers(tmp_path) == []


def test_quantize_loses_to_an_export_committed_meanwhile(bundle: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The lost update of ``s2s quantize`` racing ``s2s-export --force``, interleaved
    deterministically: the export commits while quantize works on its copy. quantize fails
    (exit 1, one line, run again); the exported bundle stays as the export wrote it."""
    import s2s_export.int8 as int8
    from s2s_export.bundle import atomic_dir

    b = copy_bundle(bundle, tmp_path / "b")
    exported = edit_manifest(copy_bundle(bundle, tmp_path / "exported"), lambda m: m.update(max_src_len=40))
    real = int8.quantize_into

    def export_commits_meanwhile(*args: Any, **kwargs: Any) -> Any:
        with atomic_dir(b, force=True) as tmp:  # what s2s-export --force does
            shutil.copytree(exported, tmp, dirs_exist_ok=True)
        return real(*args, **kwargs)

    monkeypatch.setattr(int8, "quantize_into", export_commits_meanwhile)
    code, out, err = cli("s2s", ["quantize", str(b)], capsys, monkeypatch)
    assert code == 1 and out == "", err
    one_error(err, f"the bundle {b} changed while it was being quantized", "run the command again")
    assert snapshot(b) == snapshot(exported) and load_manifest(b).max_src_len == 40
    assert leftovers(tmp_path) == []


def test_export_force_onto_a_link_keeps_the_link(trained: Path, bundle: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``s2s-export -o LINK --force``, LINK a symbolic link to a bundle: the bundle it points to
    is replaced, the link stays, nothing is left beside either."""
    (tmp_path / "store").mkdir()
    (tmp_path / "links").mkdir()
    target = copy_bundle(bundle, tmp_path / "store" / "b")  # max_src_len 32; the export writes 256
    link = tmp_path / "links" / "link"
    link.symlink_to(target)
    code, out, err = cli("s2s-export", [str(trained), "-o", str(link), "--force", "--no-verify"], capsys, monkeypatch)
    assert code == 0, err
    assert link.is_symlink() and link.resolve() == target and load_manifest(target).max_src_len == 256
    assert sorted(p.name for p in (tmp_path / "links").iterdir()) == ["link"]
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == ["b"]
