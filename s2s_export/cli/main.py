"""``s2s``: the toolbox. Each command lives in its own module ``s2s_export.cli.<name>`` exposing
``register(app)``; commands are thin wrappers over library calls and import heavy packages
only when they run."""

from __future__ import annotations

if __name__ == "__main__":  # python -m: the signal handlers first, before the imports below
    from s2s_export import interrupts as _interrupts

    _interrupts.install()

import importlib
import importlib.util

import typer

from .common import run_app, version_option

COMMANDS = ("train", "translate", "verify", "bench", "inspect", "build_engines", "quantize", "triton_repo", "serve")

app = typer.Typer(name="s2s", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="s2s-export toolbox: train, translate, verify, bench, inspect, build-engines, quantize, "
                       "triton-repo, serve.")


@app.callback()
def _root(version: bool = version_option()) -> None:
    """s2s-export toolbox (the callback keeps a lone registered command a subcommand)."""


for _name in COMMANDS:
    if importlib.util.find_spec(f"{__package__}.{_name}") is not None:
        importlib.import_module(f"{__package__}.{_name}").register(app)


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()
