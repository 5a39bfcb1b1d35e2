"""``s2s_export.cli.textio`` on its own (no bundle, no torch): the streaming line reader over a
real pipe, line splitting rules, the output formats and strict JSON."""

from __future__ import annotations

import io
import json
import os
import threading
from types import SimpleNamespace

from s2s_export.cli.textio import Formatter, LineReader, argument_lines, dumps, score_text


def test_a_chunk_ends_when_no_more_input_is_ready() -> None:
    """Over a real pipe: the lines written so far come back as one chunk without waiting for
    more; the reader then waits for the next line; a last line without "\\n" counts."""
    r, w = os.pipe()
    with os.fdopen(r, "rb", buffering=0) as rf:
        os.write(w, b"a\nb\n")
        chunks = LineReader(rf, "stdin").chunks(100)
        assert [line.text for line in next(chunks)] == ["a", "b"]  # returned while the pipe is open
        timer = threading.Timer(0.2, lambda: (os.write(w, b"c\nd"), os.close(w)))
        timer.start()
        # blocked until they came ("d" may come in a chunk of its own: it has no "\n" until EOF)
        assert [line.text for chunk in chunks for line in chunk] == ["c", "d"]
        timer.join()


def test_chunks_of_n_lines_and_the_splitting_rules() -> None:
    data = "\ufeffone\r\ntwo\x0cthree\n\nfour\u2028five\nsix".encode()
    reader = LineReader(io.BytesIO(data), "in.txt", block=3)  # tiny reads: lines span blocks
    chunks = list(reader.chunks(2))
    assert [[line.text for line in c] for c in chunks] == [["one", "two\x0cthree"], ["", "four\u2028five"], ["six"]]
    assert [line.number for c in chunks for line in c] == [1, 2, 3, 4, 5]
    assert [line.label for c in chunks for line in c][:2] == ["in.txt line 1", "in.txt line 2"]
    assert reader.consumed == len(data)


def test_unusable_lines_come_back_with_their_problem() -> None:
    data = b"ok\ncaf\xe9\n" + b"x" * 50 + b"\nend\n" + b"y" * 60
    lines = [line for c in LineReader(io.BytesIO(data), "f.txt", max_line_bytes=40, block=7).chunks(10) for line in c]
    assert [line.text for line in lines] == ["ok", "caf\ufffd", "", "end", ""]
    assert [str(line.problem) if line.problem else None for line in lines] == [
        None, "f.txt is not UTF-8 text at line 2 (byte 4 of the line); convert it to UTF-8 (e.g. iconv -t utf-8)",
        "f.txt line 3 is longer than 40 bytes; split it into shorter lines", None,
        "f.txt line 5 is longer than 40 bytes; split it into shorter lines"]
    args = argument_lines(["fine", "bad\udcff"])
    assert args[0].problem is None and "argument 2 is not UTF-8 text" in str(args[1].problem)


def test_output_formats() -> None:
    hyps = [SimpleNamespace(text="a b", tokens=["a", "b"], ids=[5, 6, 2], score=-0.12345678),
            SimpleNamespace(text="c", tokens=["c"], ids=[7, 2], score=float("-inf"))]
    line = argument_lines(["x"])[0]
    assert Formatter("text").lines(line.text, hyps) == ["a b"]
    assert Formatter("scores").lines(line.text, hyps) == ["a b\t-0.123457", "c\t-inf"]
    assert Formatter("scores", n_best=3).lines(line.text, hyps[:1]) == ["a b\t-0.123457", "\tnan", "\tnan"]
    assert Formatter("scores", n_best=2).lines(line.text, None) == ["\tnan", "\tnan"]
    (record,) = Formatter("json").lines(line.text, hyps)
    assert json.loads(record) == {"input": "x", "hypotheses": [
        {"text": "a b", "tokens": ["a", "b"], "ids": [5, 6, 2], "score": -0.123457},
        {"text": "c", "tokens": ["c"], "ids": [7, 2], "score": None}], "unknown": 0}
    assert score_text(-1e-9) == "0.000000" and score_text(float("nan")) == "nan"
    assert dumps({"a": [float("inf"), 1.5, {"b": float("nan")}]}) == '{"a": [null, 1.5, {"b": null}]}'
