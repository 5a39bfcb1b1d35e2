"""Hugging Face ``tokenizers`` JSON files (the ``tokenizers`` library; torch-free)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..conventions import TextSide
from ..errors import BundleError, require


class HfTokenizer:
    """``Tokenizer.from_file``; tokens are ``encode(text, add_special_tokens=False).tokens``,
    text comes back through the tokenizer's own decoder (``decoder.decode(tokens)``), or the
    tokens joined by spaces when it has none."""

    def __init__(self, side: TextSide, path: Path) -> None:
        tokenizers: Any = require("tokenizers", "text")
        try:
            self.tok = tokenizers.Tokenizer.from_file(str(path))
        except Exception as exc:  # noqa: BLE001 - the library raises plain Exception on bad JSON
            raise BundleError(f"{path.name} is not a Hugging Face tokenizers file ({exc})",
                              "re-export the bundle") from None

    def tokenize(self, text: str) -> list[str]:
        return list(self.tok.encode(text, add_special_tokens=False).tokens)

    def detokenize(self, tokens: Sequence[str]) -> str:
        decoder = self.tok.decoder
        return str(decoder.decode(list(tokens))) if decoder is not None else " ".join(tokens)


__all__ = ["HfTokenizer"]
