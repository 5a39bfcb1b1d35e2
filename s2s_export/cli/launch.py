"""Console-script entry points (``s2s-export``, ``s2s``): the signal handlers are installed
first, before typer, torch or ONNX Runtime are imported (``s2s_export.interrupts``), so that a
SIGINT/SIGTERM arriving at any moment of start-up ends the command with exit 130/143 and its
cleanups, never with a half-imported library's exception, an abort or a lost signal. This module
and the package ``__init__`` files it passes through import nothing but the standard library."""

from __future__ import annotations


def export() -> None:
    """``s2s-export``."""
    from .. import interrupts

    interrupts.install()
    from .export import main

    main()


def s2s() -> None:
    """``s2s``."""
    from .. import interrupts

    interrupts.install()
    from .main import main

    main()
