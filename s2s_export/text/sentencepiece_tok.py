"""SentencePiece models (the ``sentencepiece`` library; torch-free)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..conventions import TextSide
from ..errors import BundleError, require


class SentencePieceTokenizer:
    """``encode(text, out_type=str)`` pieces in; ``decode_pieces`` out (``▁`` back to spaces,
    an unknown piece as sentencepiece's `` ⁇ ``)."""

    def __init__(self, side: TextSide, path: Path) -> None:
        spm: Any = require("sentencepiece", "text")
        try:
            self.sp = spm.SentencePieceProcessor(model_file=str(path))
        except (OSError, RuntimeError) as exc:
            raise BundleError(f"{path.name} is not a SentencePiece model ({exc})", "re-export the bundle") from None

    def tokenize(self, text: str) -> list[str]:
        return list(self.sp.encode(text, out_type=str))

    def detokenize(self, tokens: Sequence[str]) -> str:
        return str(self.sp.decode_pieces(list(tokens)))


__all__ = ["SentencePieceTokenizer"]
