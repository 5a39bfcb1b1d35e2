"""The tokenizer specs of the CLI and the API: ``char``, ``word``, ``pretokenized``,
``sentencepiece:FILE``, ``bpe:CODES``, ``hf:FILE`` (torch-free)."""

from __future__ import annotations

from pathlib import Path

from ..conventions import FILE_KINDS, TOKENIZER_KINDS, TextSide, Unicode
from ..errors import UsageError

NORMALIZE = ("lower", "nfc", "nfkc")


def parse_spec(spec: str, side: str) -> tuple[TextSide, Path | None]:
    """A tokenizer spec -> (``TextSide`` whose ``file`` is the bundle name the file will get,
    the file on disk or None). ``UsageError`` naming the spec and the kinds."""
    kind, sep, arg = str(spec).partition(":")
    if kind not in TOKENIZER_KINDS:
        raise UsageError(f"--{side}-tokenizer {spec!r}: unknown kind {kind!r}",
                         f"use one of: char, word, pretokenized, sentencepiece:FILE, bpe:CODES, hf:FILE")
    if kind in FILE_KINDS:
        if not arg:
            raise UsageError(f"--{side}-tokenizer {spec!r} names no file", f"write {kind}:PATH")
        path = Path(arg)
        if not path.is_file():
            raise UsageError(f"--{side}-tokenizer {spec!r}: {path} does not exist", "check the path")
        return TextSide(kind=kind, file=bundle_name(side, kind, path)), path  # type: ignore[arg-type]
    if kind == "char" and arg:
        return TextSide(kind="char", space=arg), None  # char:▁ (a space is the token ▁)
    if arg:
        raise UsageError(f"--{side}-tokenizer {spec!r}: {kind} takes no argument", f"write {kind}")
    return TextSide(kind=kind), None  # type: ignore[arg-type]


def bundle_name(side: str, kind: str, path: Path) -> str:
    """The file name a tokenizer file gets inside a bundle (one per side and kind)."""
    suffix = "".join(path.suffixes[-1:]) or {"sentencepiece": ".model", "bpe": ".codes", "hf": ".json"}[kind]
    return f"{side}.{kind}{suffix}"


def parse_normalize(spec: str | None) -> tuple[bool, Unicode | None]:
    """``--normalize lower,nfkc`` -> (lowercase, unicode form); None or ``none`` -> (False, None)."""
    if spec is None or spec.strip() in ("", "none"):
        return False, None
    parts = [p.strip().lower() for p in spec.split(",") if p.strip()]
    bad = [p for p in parts if p not in NORMALIZE]
    forms = [p for p in parts if p in ("nfc", "nfkc")]
    if bad or len(forms) > 1:
        raise UsageError(f"--normalize {spec!r} is not a list of lower, nfc, nfkc (one Unicode form at most)",
                         "write e.g. --normalize lower,nfkc")
    return "lower" in parts, (forms[0].upper() if forms else None)  # type: ignore[return-value]


__all__ = ["NORMALIZE", "bundle_name", "parse_normalize", "parse_spec"]
