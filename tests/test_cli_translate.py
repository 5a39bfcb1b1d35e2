"""``s2s translate``: inputs from arguments, a file and stdin (streamed); the output formats
(plain, ``TEXT<TAB>SCORE``, JSON) to stdout or ``-o FILE``; ``--on-error``; search options passed
only when given; thread counts; the attention plot; exit codes with one-line messages."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import time
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from conftest import run_cli  # noqa: E402
from s2s_export.runtime import Translator  # noqa: E402



@pytest.fixture(scope="module")
def bundle(tiny_checkpoint: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import export_shared_bundle

    return export_shared_bundle(tiny_checkpoint, tmp_path_factory.mktemp("cli") / "bundle")


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
    # stderr is not a terminal: no progress bar; one warning: "?" is not in the vocabulary
    assert err.splitlines() == ["warning: 1 of 18 source tokens so far (5.6%) are not in the model's vocabulary "
                                "(check the input's case, script and tokenization)"]
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, out, err = run([str(bundle), "-i", str(f), "--batch-size", "2"], capsys, monkeypatch)
    assert code == 0 and "translating" in err and out.splitlines() == texts(translator, lines)


def test_stdin(bundle: Path, translator: Translator, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run([str(bundle)], capsys, monkeypatch, stdin="abc\r\nedcb\n\nxy\n".encode())
    assert code == 0, err
    assert out.splitlines() == texts(translator, ["abc", "edcb", "", "xy"])
    code, out, _ = run([str(bundle), "-i", "-"], capsys, monkeypatch, stdin=b"abc\n")
    assert code == 0 and out.splitlines() == texts(translator, ["abc"])


def test_n_best_and_json(bundle: Path, translator: Translator, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """--n-best N: N lines TEXT<TAB>SCORE per input, best first; --json: one object per input
    with input and hypotheses (text, tokens, ids, score)."""
    code, out, err = run([str(bundle), "abc", "de", "--beam", "4", "--n-best", "3"], capsys, monkeypatch)
    assert code == 0, err
    want = translator.translate(["abc", "de"], beam_size=4, n_best=3)
    rows = [line.split("\t") for line in out.splitlines()]
    assert [r[0] for r in rows] == [h.text for hyps in want for h in hyps] and len(rows) == 6
    assert [float(r[1]) for r in rows] == pytest.approx([h.score for hyps in want for h in hyps], abs=1e-6)
    assert all(len(r[1].split(".")[1]) == 6 for r in rows)  # 6 decimals
    code, out, err = run([str(bundle), "abc", "de", "--beam", "4", "--n-best", "2", "--json",
                          "--length-penalty", "gnmt", "--alpha", "0.6"], capsys, monkeypatch)
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    want = translator.translate(["abc", "de"], beam_size=4, n_best=2, length_penalty="gnmt", alpha=0.6)
    assert [r["input"] for r in records] == ["abc", "de"]
    for r, hyps in zip(records, want):
        assert set(r) == {"input", "hypotheses", "unknown"}
        assert [set(h) for h in r["hypotheses"]] == [{"text", "tokens", "ids", "score"}] * 2
        assert [h["text"] for h in r["hypotheses"]] == [h.text for h in hyps]
        assert [h["tokens"] for h in r["hypotheses"]] == [h.tokens for h in hyps]
        assert [h["ids"] for h in r["hypotheses"]] == [h.ids for h in hyps]
        assert [h["score"] for h in r["hypotheses"]] == pytest.approx([h.score for h in hyps], abs=1e-6)


def test_scores_flag(bundle: Path, translator: Translator, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run([str(bundle), "abc", "hgfe", "--scores"], capsys, monkeypatch)
    assert code == 0, err
    want = [hyps[0] for hyps in translator.translate(["abc", "hgfe"])]
    assert out.splitlines() == [f"{h.text}\t{h.score:.6f}" for h in want]


def test_json_is_strict_and_non_finite_scores_are_null(bundle: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Every --json line parses with a strict parser; a -inf or NaN score is written as null."""
    from s2s_export.runtime.translator import Hypothesis

    def fake(self: Translator, ids: Any, **kw: Any) -> Any:
        return [[Hypothesis([5, 2], ["x"], "x", float("-inf")), Hypothesis([2], [], "", float("nan")),
                 Hypothesis([6, 2], ["y"], "y", -1.25)] for _ in ids]

    monkeypatch.setattr(Translator, "translate_ids", fake)

    def strict(text: str) -> Any:
        def refuse(name: str) -> None:
            raise ValueError(f"not strict JSON: {name}")
        return json.loads(text, parse_constant=refuse)

    code, out, err = run([str(bundle), "abc", "--json"], capsys, monkeypatch)
    assert code == 0, err
    (record,) = [strict(line) for line in out.splitlines()]
    assert [h["score"] for h in record["hypotheses"]] == [None, None, -1.25]
    code, out, err = run([str(bundle), "abc", "--scores"], capsys, monkeypatch)
    assert code == 0 and out.splitlines() == ["x\t-inf", "\tnan", "y\t-1.250000"], err


def test_search_options_default_to_the_bundle(bundle: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Search options the user leaves out are not passed (the bundle's defaults apply); the
    given ones are passed as they are, --search-style as search_style= (only when given)."""
    calls: list[dict[str, Any]] = []
    real = Translator.translate_ids

    def spy(self: Translator, ids: Any, **kw: Any) -> Any:
        calls.append(dict(kw))
        kw.pop("search_style", None)  # format 2 (bundle defaults, styles) is the lead's: not here yet
        return real(self, ids, **kw)

    monkeypatch.setattr(Translator, "translate_ids", spy)
    code, out, err = run([str(bundle), "abc"], capsys, monkeypatch)
    assert code == 0, err
    assert calls == [{"max_batch_size": None}]  # None: the bundle's batching
    calls.clear()
    code, out, err = run([str(bundle), "abc", "--beam", "3", "--n-best", "2", "--max-length", "9",
                          "--min-length", "1", "--length-penalty", "avg", "--alpha", "0.5",
                          "--no-repeat-ngram-size", "3", "--max-length-ratio", "2.5", "--full-distribution",
                          "--search-style", "s2s", "--batch-size", "7"], capsys, monkeypatch)
    assert code == 0, err
    given = {"beam_size": 3, "n_best": 2, "max_length": 9, "min_length": 1, "length_penalty": "avg",
             "alpha": 0.5, "no_repeat_ngram_size": 3, "max_length_ratio": 2.5, "full_distribution": True,
             "search_style": "s2s"}
    assert calls == [{**given, "max_batch_size": 7}]


def test_search_style_end_to_end(bundle: Path, translator: Translator, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for style in ("s2s", "joeynmt", "opennmt"):
        code, out, err = run([str(bundle), "abc", "--search-style", style, "--beam", "3"], capsys, monkeypatch)
        assert code == 0, err
        assert out.splitlines() == [translator.translate(["abc"], beam_size=3, search_style=style)[0][0].text]
    code, out, err = run([str(bundle), "abc", "--search-style", "fairseq"], capsys, monkeypatch)
    assert code == 1 and out == "" and err.startswith("error: --search-style 'fairseq'")
    assert len(err.strip().splitlines()) == 1


def test_plot_attention(bundle: Path, tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("matplotlib")
    png = tmp_path / "attn.png"
    code, out, err = run([str(bundle), "abcd", "ef", "--plot-attention", str(png)], capsys, monkeypatch)
    assert code == 0, err
    assert len(out.splitlines()) == 2 and f"wrote {png}" in err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    code, out, err = run([str(bundle), "abcd", "--plot-attention", str(tmp_path / "b.png")], capsys, monkeypatch)
    assert code == 2 and "pip install 's2s-export[plot]'" in err and len(err.strip().splitlines()) == 1
    assert out == ""  # refused before translating anything


def test_plot_attention_writes_exactly_the_path_given(bundle: Path, tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A name without .png gets a PNG under exactly that name (no PATH.png beside it); a
    directory is refused with one line before anything is translated."""
    pytest.importorskip("matplotlib")
    bare = tmp_path / "attention"
    code, out, err = run([str(bundle), "abcd", "--plot-attention", str(bare)], capsys, monkeypatch)
    assert code == 0 and f"wrote {bare}" in err, err
    assert bare.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and sorted(p.name for p in tmp_path.iterdir()) == ["attention"]
    code, out, err = run([str(bundle), "abcd", "--plot-attention", str(tmp_path)], capsys, monkeypatch)
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
    assert f"--plot-attention {tmp_path} is a directory" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attention"] and not (tmp_path.parent / f"{tmp_path.name}.png").exists()


# the library's parameter names: a message of the CLI names the flags the user typed instead
PYTHON_NAMES = ("beam_size", "n_best", "max_length", "max_length_ratio", "min_length", "length_penalty",
                "no_repeat_ngram_size", "full_distribution", "intra_op_threads", "max_batch_size", "search_style")


@pytest.mark.parametrize("argv,code,message", [
    (["abc", "--beam", "0"], 1, "--beam must be >= 1"),
    (["abc", "--beam", "2", "--n-best", "3"], 1, "--n-best 3 must be within"),
    (["abc", "--beam", "9"], 1, "--beam 9 exceeds the bundle's top-K (8)"),
    (["abc", "--backend", "bogus"], 1, "unknown backend 'bogus'"),
    (["abc", "--length-penalty", "wu"], 1, "--length-penalty 'wu' is unknown"),
    (["abc", "--alpha", "nan"], 1, "--alpha must be finite"),
    (["abc", "--max-length", "0"], 1, "--max-length must be >= 1 (got 0)"),
    (["abc", "--threads", "0"], 1, "--threads must be >= 1 (got 0)"),
    (["abc", "--on-error", "ignore"], 1, "--on-error 'ignore' is unknown"),
    (["a" * 40], 4, "argument 1 has 41 source tokens (framing included), more than the bundle's max_src_len 32"),
])
def test_exit_codes(bundle: Path, argv: list[str], code: int, message: str, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    got, out, err = run([str(bundle), *argv], capsys, monkeypatch)
    assert got == code and message in err and out == "", err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert not any(re.search(rf"(?<![\w-]){name}(?!\w)", err) for name in PYTHON_NAMES), err
    if "--beam 9" in message:  # the fix names a flag this command has
        assert "--full-distribution" in err and "full_distribution=True" not in err


def test_bad_input_files(bundle: Path, tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9\n".encode("latin-1"))
    code, out, err = run([str(bundle), "-i", str(latin1)], capsys, monkeypatch)
    assert code == 4 and "is not UTF-8 text at line 1" in err and len(err.strip().splitlines()) == 1 and out == ""
    code, _, err = run([str(bundle)], capsys, monkeypatch, stdin=b"abc\n\xff\xfe\n")
    assert code == 4 and "stdin is not UTF-8 text at line 2" in err
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


# ---------------------------------------------------------------- -o FILE and --on-error
def test_output_file_is_written_atomically(bundle: Path, translator: Translator, tmp_path: Path,
                                           capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """-o FILE: nothing on stdout, the file holds the output; a failed run (a bad line, stop)
    leaves the previous file as it was and no temporary file."""
    f, out_file = tmp_path / "in.txt", tmp_path / "out.txt"
    f.write_text("abc\nhgfe\n")
    code, out, err = run([str(bundle), "-i", str(f), "-o", str(out_file), "--scores"], capsys, monkeypatch)
    assert code == 0 and out == "", err
    want = [hyps[0] for hyps in translator.translate(["abc", "hgfe"])]
    assert out_file.read_text().splitlines() == [f"{h.text}\t{h.score:.6f}" for h in want]
    before = out_file.read_bytes()
    f.write_text("abc\n" + "a" * 40 + "\nde\n")
    code, out, err = run([str(bundle), "-i", str(f), "-o", str(out_file)], capsys, monkeypatch)
    assert code == 4 and out == "" and f"{f} line 2 has 41 source tokens" in err
    assert out_file.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.txt"]
    code, out, err = run([str(bundle), "abc", "-o", str(tmp_path)], capsys, monkeypatch)  # a directory
    assert code == 4 and "is a directory" in err and len(err.strip().splitlines()) == 1
    code, out, err = run([str(bundle), "abc", "-o", str(tmp_path / "no" / "such" / "dir.txt")], capsys, monkeypatch)
    assert code == 4 and "cannot write" in err and len(err.strip().splitlines()) == 1


def test_on_error_stop_and_skip(bundle: Path, translator: Translator, tmp_path: Path,
                                capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A line that cannot be translated (over-long, not UTF-8) is named by its 1-based line
    number. Default: stop with exit 4 after the lines before it; --on-error skip: an empty
    result for it (every format keeps one entry per input) and a warning on stderr."""
    f = tmp_path / "in.txt"
    f.write_bytes(b"abc\n" + b"a" * 40 + b"\nde\ncaf\xe9\nhg\n")
    code, out, err = run([str(bundle), "-i", str(f)], capsys, monkeypatch)
    assert code == 4 and out.splitlines() == texts(translator, ["abc"])
    assert err.splitlines() == [f"error: {f} line 2 has 41 source tokens (framing included), more than the bundle's "
                                "max_src_len 32; split the input, or re-export with --max-src-len 41 or more"]
    code, out, err = run([str(bundle), "-i", str(f), "--on-error", "skip"], capsys, monkeypatch)
    assert code == 0, err
    good = texts(translator, ["abc", "de", "hg"])
    assert out.split("\n") == [good[0], "", good[1], "", good[2], ""]
    warnings = err.splitlines()
    assert len(warnings) == 2 and all(w.startswith("warning: ") and w.endswith("skipped (empty result)")
                                      for w in warnings)
    assert f"{f} line 2 has 41 source tokens" in warnings[0] and "not UTF-8 text at line 4" in warnings[1]
    code, out, err = run([str(bundle), "-i", str(f), "--on-error", "skip", "--beam", "2", "--n-best", "2"],
                         capsys, monkeypatch)
    assert code == 0 and len(out.splitlines()) == 5 * 2 and out.splitlines()[2:4] == ["\tnan", "\tnan"]
    code, out, err = run([str(bundle), "-i", str(f), "--on-error", "skip", "--json"], capsys, monkeypatch)
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(records) == 5
    assert records[1]["hypotheses"] == [] and "line 2 has 41 source tokens" in records[1]["error"]
    assert records[3]["input"] == "caf\ufffd" and records[3]["hypotheses"] == []
    assert "error" not in records[0] and records[2]["hypotheses"][0]["text"] == good[1]


def test_over_long_byte_lines_are_never_kept(bundle: Path, tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from s2s_export.cli import textio

    monkeypatch.setattr(textio, "MAX_LINE_BYTES", 100)
    f = tmp_path / "in.txt"
    f.write_bytes(b"abc\n" + b"b" * 5000 + b"\nde")
    code, out, err = run([str(bundle), "-i", str(f), "--on-error", "skip"], capsys, monkeypatch)
    assert code == 0 and out.split("\n")[1:] == ["", "ed", ""], err
    assert "line 2 is longer than 100 bytes; split it into shorter lines; skipped" in err


# ---------------------------------------------------------------- streaming
class _TrickleStream:
    """A binary stream that hands out ``data`` at most ``step`` bytes per read and records,
    at each write to stdout, how many bytes had been read."""

    def __init__(self, data: bytes, step: int = 64) -> None:
        self.data, self.pos, self.step = data, 0, step

    def read1(self, n: int = -1) -> bytes:
        chunk = self.data[self.pos:self.pos + min(self.step, n if n > 0 else self.step)]
        self.pos += len(chunk)
        return chunk

    read = read1

    def isatty(self) -> bool:
        return False


def test_stdin_is_streamed_chunk_by_chunk(bundle: Path, translator: Translator, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Each chunk is written and flushed before the reader goes past it: when the first
    answers reach stdout, only the first chunk (plus one read) of a long input was read."""
    from s2s_export.cli import translate as translate_cli

    lines = [("abcdefghij" * 2)[i % 7:i % 7 + 1 + i % 5] for i in range(300)]
    data = ("\n".join(lines) + "\n").encode()
    stream = _TrickleStream(data)

    class Stdin:
        buffer = stream

        @staticmethod
        def isatty() -> bool:
            return False

    read_at_write: list[int] = []

    class Stdout:
        def write(self, text: str) -> None:
            read_at_write.append(stream.pos)
            written.append(text)

        def flush(self) -> None:
            pass

    written: list[str] = []
    monkeypatch.setattr(translate_cli, "CHUNK_BATCHES", 2)
    monkeypatch.setattr(sys, "stdin", Stdin)
    monkeypatch.setattr(sys, "stdout", Stdout())
    from s2s_export.cli.main import main

    monkeypatch.setattr(sys, "argv", ["s2s", "translate", str(bundle), "--batch-size", "8"])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 0
    first_chunk = sum(len(line) + 1 for line in lines[:16])
    assert len(read_at_write) == 300 // 16 + 1  # one write per chunk
    assert read_at_write[0] <= first_chunk + 64 < len(data) // 4
    assert "".join(written).splitlines() == texts(translator, lines)


def test_interactive_pipe_answers_each_line_when_it_arrives(bundle: Path, translator: Translator) -> None:
    """(echo abc; sleep; echo fed) | s2s translate: the answer to the first line comes while
    the second has not been written yet (a chunk ends when no more input is ready)."""
    proc = subprocess.Popen([sys.executable, "-m", "s2s_export.cli.main", "translate", str(bundle), "--threads", "1"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(b"abc\n")
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "no answer to the first line within 60 s while the pipe stayed open"
        first = proc.stdout.readline().decode()
        assert proc.poll() is None  # still waiting for more input
        proc.stdin.write(b"fed\n")
        proc.stdin.close()
        rest = proc.stdout.read().decode()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert [first.rstrip("\n"), *rest.splitlines()] == texts(translator, ["abc", "fed"])


# ---------------------------------------------------------------- thread counts
def test_thread_counts_are_capped_to_the_cores(bundle: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """--threads far above the cores: a warning, the cores used, no thread storm (the library
    caps it too, with a RuntimeWarning, before any session exists)."""
    from s2s_export.runtime.threads import available_cores

    cores = available_cores()
    seen: list[Any] = []
    real = Translator.load

    def spy(*args: Any, **kw: Any) -> Translator:
        seen.append(kw.get("intra_op_threads"))
        return real(*args, **kw)

    monkeypatch.setattr(Translator, "load", spy)
    code, out, err = run([str(bundle), "abc", "--threads", "100000"], capsys, monkeypatch)
    assert code == 0 and out.splitlines() == ["cba"], err
    assert err.splitlines() == [f"warning: --threads 100000 is more than the {cores} CPU cores this process may "
                                f"use; using {cores}"]
    assert seen == [cores]
    monkeypatch.undo()

    def threads_now() -> int:
        return int(next(line for line in Path("/proc/self/status").read_text().splitlines()
                        if line.startswith("Threads:")).split()[1])

    before = threads_now() if Path("/proc/self/status").exists() else 0
    with pytest.warns(RuntimeWarning, match=f"intra_op_threads 1000000 is more than the {cores} CPU cores"):
        t = Translator.load(bundle, intra_op_threads=10 ** 6)
    assert t.translate(["abc"])[0][0].text == "cba"
    assert t.backend.encoder.get_session_options().intra_op_num_threads == cores
    if before:
        assert threads_now() - before <= 4 * cores  # two or three pools of `cores` threads at most
    for bad in (0, -3, 2.5, True, "2"):
        with pytest.raises(Exception, match="intra_op_threads must be"):
            Translator.load(bundle, intra_op_threads=bad)
