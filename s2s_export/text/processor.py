"""``TextProcessor``: normalise, tokenize and detokenize one side's text (torch-free).

The ``Tokenizer`` protocol is two methods; each kind lives in its own module and imports its
library only when it is loaded (``load_tokenizer``)."""

from __future__ import annotations

import importlib
import os
import unicodedata
from pathlib import Path
from typing import Protocol, Sequence

from ..conventions import TextSide

# kind -> (module in this package, class)
MODULES = {"char": ("simple", "CharTokenizer"), "word": ("simple", "WordTokenizer"),
           "pretokenized": ("simple", "PretokenizedTokenizer"), "sentencepiece": ("sentencepiece_tok", "SentencePieceTokenizer"),
           "bpe": ("bpe", "BpeTokenizer"), "hf": ("hf", "HfTokenizer")}


class Tokenizer(Protocol):
    def tokenize(self, text: str) -> list[str]:
        """Text (already normalised) -> token strings."""
        ...

    def detokenize(self, tokens: Sequence[str]) -> str:
        """Token strings (specials already stripped) -> text."""
        ...


def load_tokenizer(side: TextSide, directory: str | os.PathLike[str] | None = None,
                   path: str | os.PathLike[str] | None = None) -> Tokenizer:
    """The tokenizer of ``side``; a file-based one reads ``path``, else ``directory / side.file``
    (a bundle: the file must stay inside it)."""
    module, cls = MODULES[side.kind]
    make = getattr(importlib.import_module(f"{__package__}.{module}"), cls)
    if side.file is None:
        return make(side)  # type: ignore[no-any-return]
    if path is None:
        if directory is None:
            raise ValueError(f"the {side.kind} tokenizer needs the directory that holds {side.file}")
        from ..bundle import bundle_path

        path = bundle_path(directory, side.file)
    return make(side, Path(path))  # type: ignore[no-any-return]


def normalize(text: str, side: TextSide) -> str:
    """Unicode normal form (NFC/NFKC), then lowercase, as ``side`` says."""
    if side.unicode is not None:
        text = unicodedata.normalize(side.unicode, text)
    return text.lower() if side.lowercase else text


class TextProcessor:
    """One side of a bundle: ``tokenize(text)`` (normalised first) and ``detokenize(tokens)``."""

    def __init__(self, side: TextSide, directory: str | os.PathLike[str] | None = None,
                 path: str | os.PathLike[str] | None = None) -> None:
        self.side = side
        self.tokenizer = load_tokenizer(side, directory, path)

    def tokenize(self, text: str) -> list[str]:
        return self.tokenizer.tokenize(normalize(text, self.side))

    def detokenize(self, tokens: Sequence[str]) -> str:
        return self.tokenizer.detokenize(tokens)


__all__ = ["MODULES", "TextProcessor", "Tokenizer", "load_tokenizer", "normalize"]
