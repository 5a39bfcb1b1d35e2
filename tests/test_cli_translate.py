"""``s2s translate``: inputs from arguments, a file and stdin; plain, n-best and JSON output;
the attention plot; exit codes with one-line messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from conftest import run_cli  # noqa: E402
from s2s_export.runtime import Translator  # noqa: E402

TRAIN_STEPS, TRAIN_EMB, TRAIN_HIDDEN = 120, 16, 32  # the same model as test_runtime / test_reference


@pytest.fixture(scope="module")
def bundle(tiny_checkpoint: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import tiny_overrides

    from s2s_export.export import export_model

    torch.set_num_threads(1)
    path = tiny_checkpoint("luong-general", steps=TRAIN_STEPS,
                           **tiny_overrides("luong-general", TRAIN_EMB, TRAIN_HIDDEN))
    return export_model(path, tmp_path_factory.mktemp("cli") / "bundle", topk=8, verify=False,
                        force=True, max_src_len=32).path


@pytest.fixture(scope="module")
def translator(bundle: Path) -> Translator:
    return Translator.load(bundle, intra_op_threads=1)


def run(argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        stdin: bytes | None = None) -> tuple[int, str, str]:
    """``s2s translate ...`` in-process: (exit code, stdout, stderr)."""
    return run_cli("s2s", ["translate", *argv], capsys, monkeypatch, stdin)


def texts(translator: Translator, inputs: list[str], **kw: Any) -> list[str]:
    return ["\t".join(h.text for h in hyps) for hyps in translator.translate(inputs, **kw)]


def test_text_arguments(bundle: Path, translator: Translator, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run([str(bundle), "abc", "hgfe", "--threads", "1"], capsys, monkeypatch)
    assert code == 0, err
    assert out.splitlines() == texts(translator, ["abc", "hgfe"]) == ["cba", "efgh"]
    code, out, err = run([str(bundle), "abc", "hgfe", "--threads", "2", "--spinning", "off"], capsys, monkeypatch)
    assert code == 0 and out.splitlines() == ["cba", "efgh"], err


def test_file_with_progress_and_batches(bundle: Path, translator: Translator, tmp_path: Path,
                                        capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    lines = ["abc", "", "jihg", "a?b", "abcdef", "ba"]
    f = tmp_path / "in.txt"
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, err = run([str(bundle), "-i", str(f), "--batch-size", "2", "--beam", "3"], capsys, monkeypatch)
    assert code == 0, err
    assert out.splitlines() == texts(translator, lines, beam_size=3)  # one line per input, empty ones too
    assert "translating" in err


def test_stdin(bundle: Path, translator: Translator, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run([str(bundle)], capsys, monkeypatch, stdin="abc\r\nedcb\n\nxy\n".encode())
    assert code == 0, err
    assert out.splitlines() == texts(translator, ["abc", "edcb", "", "xy"])
    code, out, _ = run([str(bundle), "-i", "-"], capsys, monkeypatch, stdin=b"abc\n")
    assert code == 0 and out.splitlines() == texts(translator, ["abc"])


def test_n_best_and_json(bundle: Path, translator: Translator, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run([str(bundle), "abc", "de", "--beam", "4", "--n-best", "3"], capsys, monkeypatch)
    assert code == 0, err
    assert [line.split("\t") for line in out.splitlines()] == \
        [[h.text for h in hyps] for hyps in translator.translate(["abc", "de"], beam_size=4, n_best=3)]
    code, out, err = run([str(bundle), "abc", "de", "--beam", "4", "--n-best", "2", "--json",
                          "--length-penalty", "gnmt", "--alpha", "0.6"], capsys, monkeypatch)
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    want = translator.translate(["abc", "de"], beam_size=4, n_best=2, length_penalty="gnmt", alpha=0.6)
    assert [r["input"] for r in records] == ["abc", "de"]
    for r, hyps in zip(records, want):
        assert [h["text"] for h in r["hypotheses"]] == [h.text for h in hyps]
        assert [h["tokens"] for h in r["hypotheses"]] == [h.tokens for h in hyps]
        assert [h["score"] for h in r["hypotheses"]] == pytest.approx([h.score for h in hyps], abs=1e-6)


def test_plot_attention(bundle: Path, tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("matplotlib")
    png = tmp_path / "attn.png"
    code, out, err = run([str(bundle), "abcd", "ef", "--plot-attention", str(png)], capsys, monkeypatch)
    assert code == 0, err
    assert len(out.splitlines()) == 2 and f"wrote {png}" in err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    code, out, err = run([str(bundle), "abcd", "--plot-attention", str(tmp_path / "b.png")], capsys, monkeypatch)
    assert code == 2 and "pip install matplotlib" in err and len(err.strip().splitlines()) == 1
    assert out == ""  # refused before translating anything


@pytest.mark.parametrize("argv,code,message", [
    (["abc", "--beam", "0"], 1, "beam_size must be >= 1"),
    (["abc", "--beam", "2", "--n-best", "3"], 1, "n_best 3 must be within"),
    (["abc", "--beam", "9"], 1, "beam_size 9 exceeds the bundle's top-K (8)"),
    (["abc", "--backend", "bogus"], 1, "unknown backend 'bogus'"),
    (["abc", "--length-penalty", "wu"], 1, "length_penalty 'wu' is unknown"),
    (["a" * 40], 4, "more than the bundle's max_src_len 32"),
])
def test_exit_codes(bundle: Path, argv: list[str], code: int, message: str, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    got, out, err = run([str(bundle), *argv], capsys, monkeypatch)
    assert got == code and message in err and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")


def test_bad_input_files(bundle: Path, tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9\n".encode("latin-1"))
    code, out, err = run([str(bundle), "-i", str(latin1)], capsys, monkeypatch)
    assert code == 4 and "not UTF-8" in err and len(err.strip().splitlines()) == 1 and out == ""
    code, _, err = run([str(bundle)], capsys, monkeypatch, stdin=b"\xff\xfe\n")
    assert code == 4 and "stdin is not UTF-8" in err
    code, _, err = run([str(bundle), "-i", str(tmp_path / "missing.txt")], capsys, monkeypatch)
    assert code == 4 and "cannot read" in err
    code, _, err = run([str(tmp_path / "no_bundle"), "abc"], capsys, monkeypatch)
    assert code == 4 and "does not exist" in err
    code, _, err = run([str(bundle), "abc", "-i", str(latin1)], capsys, monkeypatch)
    assert code == 1 and "not both" in err


def test_console_entry_point(bundle: Path, translator: Translator) -> None:
    proc = subprocess.run([sys.executable, "-m", "s2s_export.cli.main", "translate", str(bundle), "--threads", "1"],
                          input="abc\nfed\n", capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == texts(translator, ["abc", "fed"])
