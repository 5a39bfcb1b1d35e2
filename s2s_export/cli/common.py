"""Shared CLI plumbing: error mapping (exception tree -> one-line messages + exit codes), the
library's parameter names replaced by the command's flags in messages, signals, help output.

Exit codes: 0 ok, 1 usage (and unexpected errors, reported as bugs), 2 unsupported here (a
missing package, no GPU, out of threads or memory), 3 parity failed, 4 bad input (OS errors
included: missing file, disk full, permission denied), 129/130/143 SIGHUP/SIGINT/SIGTERM
(``s2s_export.interrupts``).
"""

from __future__ import annotations

import errno
import functools
import os
import re
import sys
from typing import Any, Callable, Mapping, TypeVar

import click
import typer

from .. import __version__, interrupts
from ..errors import (BadInputError, EXTRAS, Problem, S2SError, UsageError, missing_dependency, one_line,
                      resource_error)

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
    """An exception outside the tree as one ``S2SError``: running out of memory or threads is
    this machine's limit (exit 2); an OS error (disk full, permission denied, ...) is bad input
    (exit 4); a missing optional package names its install command (exit 2); anything else is
    reported as a bug (exit 1)."""
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in EXTRAS:
        return missing_dependency(exc.name or "")
    # out of memory or threads (an OSError counts only as ENOMEM: EAGAIN is not always threads)
    resource = resource_error(exc) if not isinstance(exc, OSError) or exc.errno == errno.ENOMEM else None
    if resource is not None:
        return resource
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return BadInputError(f"{where}{exc.strerror or one_line(exc)}",
                             "check the path and its permissions, and free disk space")
    return S2SError(f"unexpected {type(exc).__name__}: {one_line(exc)}",
                    f"this is a bug: rerun with {DEBUG_ENV}=1 for the traceback and report it")


def with_flags(error: S2SError, flags: Mapping[str, str]) -> S2SError:
    """``error`` with the library's parameter names replaced by the command's flags (``flags``:
    parameter -> flag): ``intra_op_threads must be >= 1`` -> ``--threads must be >= 1``,
    ``pass full_distribution=True`` -> ``pass --full-distribution``, ``max_length=5`` ->
    ``--max-length 5``. Whole identifiers only (``max_length`` is not part of
    ``max_length_ratio``), never inside a flag already there (``--topk``)."""
    def rename(text: str) -> str:
        for param, flag in flags.items():
            # a whole identifier, not a document key (search.beam_size)
            name = rf"(?<![\w-])(?<!\w\.){re.escape(param)}(?!\w)(?!\.\w)"
            text = re.sub(name + r"=True\b", flag, text)
            text = re.sub(name + r"=", flag + " ", text)
            text = re.sub(name, flag, text)
        return text

    renamed = [Problem(rename(p.what), rename(p.fix)) for p in error.problems]
    out = type(error).__new__(type(error))
    S2SError.__init__(out, renamed)
    return out


def handle_errors(fn: F | None = None, *, flags: Mapping[str, str] | None = None) -> Any:
    """Decorator for CLI commands (``@handle_errors`` or ``@handle_errors(flags={...})``):
    S2SError -> messages on stderr (parameter names replaced by ``flags``, see ``with_flags``)
    and its exit code; Ctrl-C -> "interrupted" and exit 130; any other exception -> one line
    (``unexpected``), never a traceback (unless ``S2S_DEBUG=1``). A broken stdout pipe is left
    to typer (exit 1, quiet)."""
    if fn is None:
        return functools.partial(handle_errors, flags=flags)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except S2SError as exc:
            report(with_flags(exc, flags or {}))
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


def cli_threads(value: int | None, flag: str) -> int | None:
    """A thread-count flag: below 1 refused (exit 1); more than the cores this process may use
    capped to them, with a warning on stderr (no thread is ever made for the excess)."""
    from ..runtime.threads import available_cores

    if value is None:
        return None
    if value < 1:
        raise UsageError(f"{flag} must be >= 1 (got {value})", f"pass a positive {flag} (or leave it out)")
    cores = available_cores()
    if value > cores:
        typer.echo(f"warning: {flag} {value} is more than the {cores} CPU cores this process may use; "
                   f"using {cores}", err=True)
        return cores
    return value


def show_version(value: bool) -> None:
    """Callback of ``--version`` (eager): print the version and exit 0."""
    if value:
        typer.echo(f"s2s-export {__version__}")
        raise typer.Exit(0)


def version_option() -> Any:
    return typer.Option(False, "--version", callback=show_version, is_eager=True,
                        help="print the version and exit")


def _tidy_help() -> None:
    """Help output as click prints it: flags without a ``<bool>`` type label, arguments in the
    usage line as ``MODEL`` / ``[TEXTS]...`` (newer typer prints ``{model}``). Applied to
    typer's parameter classes only where they have these methods (older typer already does)."""
    core = getattr(typer, "core", None)
    option = getattr(core, "TyperOption", None)
    if option is not None and hasattr(option, "display_type_rich") and not hasattr(option, "_s2s_tidy"):
        original = option.display_type_rich

        def display_type_rich(self: Any, ctx: Any) -> Any:
            if getattr(self, "is_flag", False) and not getattr(self, "count", False):
                return None
            return original(self, ctx)

        option.display_type_rich = display_type_rich
        option._s2s_tidy = True
    argument = getattr(core, "TyperArgument", None)
    if argument is not None and hasattr(argument, "_usage_display_name"):
        def usage_name(self: Any) -> str:
            name = (self.metavar or self.name or "").upper()
            name = name if self.required else f"[{name}]"
            return name + ("..." if self.nargs != 1 else "")

        argument._usage_display_name = usage_name


_tidy_help()


def run_app(app: typer.Typer) -> None:
    """Run a Typer app: click's usage errors -> one ``error:`` line and exit 1 (not click's 2);
    SIGINT/SIGTERM/SIGHUP -> cleanups, then exit 130/143/129 (``interrupts``: installed here
    unless the console script's launcher did it first)."""
    previous = interrupts.install()
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
    except (*CLI_FLOW, BrokenPipeError):
        raise
    except Exception as exc:  # noqa: BLE001 - outside a command too (typer's parsing imports lazily)
        if os.environ.get(DEBUG_ENV):
            raise
        error = unexpected(exc)
        report(error)
        sys.exit(error.exit_code)
    finally:
        interrupts.restore(previous)
    sys.exit(code if isinstance(code, int) else 0)
