"""Shared CLI plumbing: error mapping (exception tree -> one-line messages + exit codes).

Exit codes: 0 ok, 1 usage (and unexpected errors, reported as bugs), 2 unsupported here,
3 parity failed, 4 bad input (OS errors included: missing file, disk full, permission denied),
130 interrupted.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any, Callable, TypeVar

import click
import typer

from ..errors import BadInputError, EXTRAS, S2SError, missing_dependency, one_line

F = TypeVar("F", bound=Callable[..., Any])

# typer >= 0.2x vendors click (typer._click): catch its usage errors and click's
try:
    from typer._click.exceptions import ClickException as _TyperClickException
    from typer._click.exceptions import UsageError as _TyperUsageError
except ImportError:  # pragma: no cover - older typer uses click itself
    _TyperUsageError = click.exceptions.UsageError  # type: ignore[misc,assignment]
    _TyperClickException = click.exceptions.ClickException  # type: ignore[misc,assignment]
USAGE_ERRORS = (click.exceptions.UsageError, _TyperUsageError)
ABORTS = (click.exceptions.Abort, typer.Abort)
# what click/typer handle themselves (passed through by handle_errors)
CLI_FLOW = (typer.Exit, click.exceptions.Exit, click.exceptions.ClickException, _TyperClickException,
            *ABORTS)
DEBUG_ENV = "S2S_DEBUG"  # set to 1: unexpected exceptions keep their traceback


def report(error: S2SError) -> None:
    for problem in error.problems:
        typer.echo(f"error: {problem}", err=True)


def unexpected(exc: Exception) -> S2SError:
    """An exception outside the tree as one ``S2SError``: an OS error (disk full, permission
    denied, ...) is bad input (exit 4); a missing optional package names its install command
    (exit 2); anything else is reported as a bug (exit 1)."""
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in EXTRAS:
        return missing_dependency(exc.name or "")
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return BadInputError(f"{where}{exc.strerror or one_line(exc)}",
                             "check the path and its permissions, and free disk space")
    return S2SError(f"unexpected {type(exc).__name__}: {one_line(exc)}",
                    f"this is a bug: rerun with {DEBUG_ENV}=1 for the traceback and report it")


def handle_errors(fn: F) -> F:
    """Decorator for CLI commands: S2SError -> messages on stderr and its exit code; Ctrl-C ->
    "interrupted" and exit 130; any other exception -> one line (``unexpected``), never a
    traceback (unless ``S2S_DEBUG=1``). A broken stdout pipe is left to typer (exit 1, quiet)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except S2SError as exc:
            report(exc)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except (*CLI_FLOW, BrokenPipeError):
            raise
        except Exception as exc:  # noqa: BLE001 - the CLI never shows a library traceback
            if os.environ.get(DEBUG_ENV):
                raise
            error = unexpected(exc)
            report(error)
            raise typer.Exit(error.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C: atomic writes clean up


def run_app(app: typer.Typer) -> None:
    """Run a Typer app: click's usage errors -> one ``error:`` line and exit 1 (not click's 2);
    Ctrl-C -> exit 130; SIGTERM unwinds (temporary directories are removed) -> exit 143."""
    import signal
    import threading

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        # prog_name: messages and help say "s2s ..." however it was started (python -m, tests)
        code = app(standalone_mode=False, prog_name=app.info.name or None)
    except USAGE_ERRORS as exc:
        message = " ".join(exc.format_message().split()).rstrip(".")
        if message:  # empty: no arguments, the help was shown
            where = exc.ctx.command_path if exc.ctx is not None else "the command"
            typer.echo(f"error: {message}; see '{where} --help'", err=True)
        sys.exit(1)
    except ABORTS:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except S2SError as exc:  # raised outside a decorated command
        report(exc)
        sys.exit(exc.exit_code)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    sys.exit(code if isinstance(code, int) else 0)
