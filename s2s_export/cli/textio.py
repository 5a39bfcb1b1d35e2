"""Input and output of ``s2s translate`` (torch-free): a streaming line reader and the writers.

Reading (``LineReader``): a file or stdin is read in blocks of at most ``READ_BYTES`` as the
lines are needed, never as a whole, and cut into chunks (``chunks(n)``): a chunk ends after
``n`` lines or as soon as no further complete line is ready (an interactive pipe gets its answer
before the next line arrives: readiness is asked of the file descriptor with ``select``; a
stream without one, such as a test's ``BytesIO``, is always ready). Memory is bounded by one
chunk and one block, whatever the input's size. Lines end at ``"\\n"`` only (a form feed or
U+2028 inside a line stays inside it); a trailing ``"\\r"`` (CRLF files) and a UTF-8 byte order
mark are dropped; a last line without ``"\\n"`` is a line. A line that is not UTF-8, or longer
than ``MAX_LINE_BYTES`` (read and dropped without being kept), comes back as a ``Line`` with a
``problem`` instead of text, numbered from 1.

Writing (``Formatter``): the output formats of ``s2s translate``, fixed:

* plain: ``TEXT``, one line per input (its best hypothesis);
* ``--n-best N`` or ``--scores``: ``TEXT<TAB>SCORE`` per hypothesis, best first, N lines per
  input (fewer hypotheses, or a skipped input: empty lines, so every input has N lines);
  SCORE = the hypothesis' score (cumulative log-prob / length penalty) with 6 decimals;
* ``--json``: one object per input line, ``{"input": TEXT, "hypotheses": [{"text", "tokens",
  "ids", "score"}, ...]}`` (a skipped input: ``"hypotheses": []`` and ``"error": MESSAGE``);
  strict JSON: a non-finite score is ``null``.

``AtomicFile`` writes ``-o FILE``: into a temporary file beside it, renamed over ``FILE`` at the
end; on an error or a signal the temporary file is removed and ``FILE`` is left as it was.
"""

from __future__ import annotations

import codecs
import json
import math
import os
import select
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator, Sequence

from .. import interrupts
from ..bundle import AtomicFile  # noqa: F401 - -o FILE is written through it (re-exported)
from ..output import Formatter, dumps, json_score, score_text, strict_json  # noqa: F401 - re-exported
from ..errors import UTF8_FIX, BadInputError, Problem, UsageError

READ_BYTES = 1 << 16  # one read() of the input
MAX_LINE_BYTES = 1 << 20  # a longer line is refused (read and dropped, never kept whole)


@dataclass
class Line:
    """One input: ``number`` (1-based), ``text``, or ``problem`` when it cannot be used (then
    ``text`` is what could be decoded, for the JSON output's ``input``)."""

    number: int
    text: str
    label: str  # "in.txt line 4", "stdin line 4", "argument 2": how messages name it
    problem: Problem | None = None


class LineReader:
    """Lines of a binary stream, read as they are needed (see the module docstring).
    ``consumed``: bytes read so far (progress)."""

    def __init__(self, stream: IO[bytes], name: str, max_line_bytes: int | None = None,
                 block: int | None = None) -> None:
        self.stream, self.name = stream, name
        self.max_line_bytes = MAX_LINE_BYTES if max_line_bytes is None else max_line_bytes
        self.block = READ_BYTES if block is None else block
        self.consumed = 0
        self.eof = False
        self._buf = bytearray()
        self._scan = 0  # no "\n" in _buf before this offset
        self._dropping = False  # inside an over-long line: its bytes are dropped
        self._number = 0
        try:
            fd = stream.fileno()
            os.fstat(fd)
            self._fd: int | None = fd
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
            self._fd = None

    # ------------------------------------------------------------------ bytes
    def _read(self) -> None:
        if self._fd is not None:
            data = os.read(self._fd, self.block)
        else:
            read = getattr(self.stream, "read1", None) or self.stream.read
            data = read(self.block)
        if not data:
            self.eof = True
            return
        self.consumed += len(data)
        self._buf += data

    def _ready(self) -> bool:
        """Whether reading now would not block (more input, or its end, is there)."""
        if self._fd is None:
            return True
        try:
            return bool(select.select([self._fd], [], [], 0)[0])
        except (OSError, ValueError):  # not selectable here: treat as ready
            return True

    # ------------------------------------------------------------------ lines
    def _line(self, raw: bytes, dropped: bool) -> Line:
        self._number += 1
        n = self._number
        label = f"{self.name} line {n}"
        if dropped:
            return Line(n, "", label, Problem(
                f"{label} is longer than {self.max_line_bytes} bytes", "split it into shorter lines"))
        if n == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8):]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            return Line(n, raw.decode("utf-8"), label)
        except UnicodeDecodeError as exc:
            return Line(n, raw.decode("utf-8", "replace"), label, Problem(
                f"{self.name} is not UTF-8 text at line {n} (byte {exc.start + 1} of the line)", UTF8_FIX))

    def next_line(self, block: bool = True) -> Line | None:
        """The next line; None at the end of the input, or (``block=False``) when no complete
        line can be had without waiting."""
        while True:
            end = self._buf.find(b"\n", self._scan)
            if end >= 0:
                dropped = self._dropping or end > self.max_line_bytes
                raw = b"" if dropped else bytes(self._buf[:end])
                del self._buf[: end + 1]
                self._scan = 0
                self._dropping = False
                return self._line(raw, dropped)
            self._scan = len(self._buf)
            if len(self._buf) > self.max_line_bytes or (self._dropping and self._buf):
                self._dropping = True  # keep nothing of an over-long line
                self._buf.clear()
                self._scan = 0
            if self.eof:
                if self._buf or self._dropping:
                    dropped = self._dropping or len(self._buf) > self.max_line_bytes
                    raw = b"" if dropped else bytes(self._buf)
                    self._buf.clear()
                    self._scan = 0
                    self._dropping = False
                    return self._line(raw, dropped)
                return None
            if not block and not self._ready():
                return None
            self._read()

    def chunks(self, size: int) -> Iterator[list[Line]]:
        """Lists of at most ``size`` lines; a list ends early when the next line is not ready."""
        while True:
            chunk: list[Line] = []
            while len(chunk) < size:
                line = self.next_line(block=not chunk)
                if line is None:
                    break
                chunk.append(line)
            if not chunk:
                return
            yield chunk


def argument_lines(texts: Sequence[str]) -> list[Line]:
    """TEXT arguments as lines (``argument N``); one that is not valid UTF-8 (the shell passed
    bytes Python could only decode with surrogate escapes) gets a problem."""
    out = []
    for n, text in enumerate(texts, start=1):
        label = f"argument {n}"
        try:
            text.encode("utf-8")
            out.append(Line(n, text, label))
        except UnicodeEncodeError:
            shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            out.append(Line(n, shown, label, Problem(f"{label} is not UTF-8 text", UTF8_FIX)))
    return out


def open_input(input_file: Path | None) -> tuple[IO[bytes], str, int | None]:
    """(binary stream, name, size in bytes or None) of ``-i FILE`` (``-`` or None: stdin).
    ``BadInputError`` for a file that cannot be opened, ``UsageError`` for a terminal stdin."""
    if input_file is not None and str(input_file) != "-":
        try:
            f = open(input_file, "rb", buffering=0)  # noqa: SIM115 - closed by the caller
            size = os.fstat(f.fileno()).st_size
        except OSError as exc:
            raise BadInputError(f"cannot read {input_file} ({exc.strerror})", "pass an existing text file") from None
        return f, str(input_file), size if size > 0 else None
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError("no input", "pass TEXT, -i FILE, or pipe lines on stdin")
    stream: IO[bytes] | None = getattr(sys.stdin, "buffer", None)
    if stream is None:  # a text-only stand-in (tests): its text, re-encoded
        import io

        stream = io.BytesIO(sys.stdin.read().encode("utf-8"))
    return stream, "stdin", None


__all__ = ["AtomicFile", "Formatter", "Line", "LineReader", "MAX_LINE_BYTES", "READ_BYTES", "argument_lines",
           "dumps", "json_score", "open_input", "score_text", "strict_json"]
