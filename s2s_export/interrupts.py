"""Signals end the command-line tools cleanly, wherever they arrive (torch-free, stdlib only).

The console scripts call ``install()`` first thing at start-up, before any heavy import. From
then on SIGINT, SIGTERM and SIGHUP end the process with exit code 128 + the signal number (130,
143, 129) after running the registered cleanups, without raising an exception into whatever
code happens to run: an exception raised by a signal handler inside an import, a pybind11
callback or a ``finally`` block can turn into a RecursionError, an abort
(``pybind11::error_already_set``) or be swallowed. The handler instead

1. runs the cleanups registered with ``on_interrupt`` (newest first): ``bundle.atomic_dir``
   removes its temporary directory and puts a moved-away bundle back, ``s2s translate -o``
   removes its temporary file;
2. writes ``interrupted`` (SIGINT) or ``terminated`` to stderr (the one the process started
   with: a copy of file descriptor 2 made at ``install``, since a library may have redirected
   fd 2 at that moment);
3. calls ``os._exit(128 + signum)``.

``deferred()`` marks a short critical section (the renames that commit a bundle): a signal
arriving inside it takes effect when the section ends, so the filesystem is never left between
two renames. A signal that was ignored when the process started (``nohup``, a background job's
SIGINT) stays ignored.

Without ``install()`` (library use) nothing changes: Python raises ``KeyboardInterrupt`` as
usual and the ``except``/``finally`` blocks clean up; registering cleanups is then harmless.
The handler runs in the main thread between two bytecodes; a long call into C (an ONNX Runtime
run) finishes first.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import threading
from typing import Any, Callable, Iterator

SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))

_cleanups: dict[int, Callable[[], Any]] = {}
_tokens = itertools.count(1)
_depth = 0  # nesting of deferred() sections (any thread)
_depth_lock = threading.Lock()
_pending: int | None = None  # a signal that arrived inside a deferred() section
_exiting = False
_stderr: int | None = None  # a copy of fd 2 made by install(): fd 2 may be redirected when a signal comes


def on_interrupt(cleanup: Callable[[], Any]) -> int:
    """Register ``cleanup`` to run when a signal ends the process; returns a token for
    ``discard``. Cleanups must be quick, idempotent and safe at any point of the code they
    protect (they run between two of its bytecodes); their exceptions are ignored."""
    token = next(_tokens)
    _cleanups[token] = cleanup
    return token


def discard(token: int) -> None:
    """Forget a cleanup (its work is done, or it was undone normally)."""
    _cleanups.pop(token, None)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A critical section: a signal arriving inside it ends the process when it is left."""
    global _depth
    with _depth_lock:
        _depth += 1
    try:
        yield
    finally:
        with _depth_lock:
            _depth -= 1
            left = _depth == 0
        if left and _pending is not None:
            terminate(_pending)


def terminate(signum: int) -> None:
    """Run the cleanups, say why on stderr and exit with ``128 + signum`` (never returns,
    except for a second signal arriving while the first one is being handled)."""
    global _exiting
    if _exiting:  # a second signal while cleaning up: the first exit proceeds
        return
    _exiting = True
    for token in sorted(_cleanups, reverse=True):
        cleanup = _cleanups.pop(token, None)
        if cleanup is None:
            continue
        try:
            cleanup()
        except BaseException:  # noqa: BLE001 - exiting anyway; the next cleanup still runs
            pass
    try:  # to the real stderr, even while a library has fd 2 redirected (the ONNX exporter does)
        os.write(2 if _stderr is None else _stderr,
                 b"interrupted\n" if signum == getattr(signal, "SIGINT", 2) else b"terminated\n")
    except OSError:
        pass
    os._exit(128 + signum)


def _handle(signum: int, frame: Any) -> None:
    global _pending
    if _depth > 0:
        _pending = signum
        return
    terminate(signum)


def install() -> dict[int, Any] | None:
    """Install the handler for SIGINT, SIGTERM and SIGHUP (main thread only; a signal ignored
    at start-up stays ignored). Returns the previous handlers for ``restore`` (None when
    nothing was installed: not the main thread). Idempotent."""
    global _stderr
    if threading.current_thread() is not threading.main_thread():
        return None
    if _stderr is None:
        try:
            _stderr = os.dup(2)  # not inherited by child processes
        except OSError:
            pass
    previous: dict[int, Any] = {}
    for sig in SIGNALS:
        current = signal.getsignal(sig)
        if current in (signal.SIG_IGN, _handle):
            continue
        previous[sig] = current
        signal.signal(sig, _handle)
    return previous


def restore(previous: dict[int, Any] | None) -> None:
    """Put back the handlers ``install`` replaced."""
    if not previous or threading.current_thread() is not threading.main_thread():
        return
    for sig, handler in previous.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def installed() -> bool:
    """Whether the handler is installed for SIGTERM."""
    return signal.getsignal(signal.SIGTERM) is _handle


__all__ = ["SIGNALS", "deferred", "discard", "install", "installed", "on_interrupt", "restore", "terminate"]
