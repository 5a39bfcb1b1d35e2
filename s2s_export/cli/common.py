"""Shared CLI plumbing: error mapping (exception tree -> one-line messages + exit codes).

Exit codes: 0 ok, 1 usage, 2 unsupported here, 3 parity failed, 4 bad input, 130 interrupted.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable, TypeVar

import click
import typer

from ..errors import S2SError

F = TypeVar("F", bound=Callable[..., Any])

# typer >= 0.2x vendors click (typer._click): catch its usage errors and click's
try:
    from typer._click.exceptions import UsageError as _TyperUsageError
except ImportError:  # pragma: no cover - older typer uses click itself
    _TyperUsageError = click.exceptions.UsageError  # type: ignore[misc,assignment]
USAGE_ERRORS = (click.exceptions.UsageError, _TyperUsageError)
ABORTS = (click.exceptions.Abort, typer.Abort)


def report(error: S2SError) -> None:
    for problem in error.problems:
        typer.echo(f"error: {problem}", err=True)


def handle_errors(fn: F) -> F:
    """Decorator for CLI commands: S2SError -> messages on stderr and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except S2SError as exc:
            report(exc)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


def run_app(app: typer.Typer) -> None:
    """Run a Typer app mapping click's usage errors to exit code 1 (not click's 2)."""
    try:
        code = app(standalone_mode=False)
    except USAGE_ERRORS as exc:
        exc.show()
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
    sys.exit(code if isinstance(code, int) else 0)
