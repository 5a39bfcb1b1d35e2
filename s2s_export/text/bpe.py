"""subword-nmt BPE codes (the ``subword-nmt`` library; torch-free)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..conventions import TextSide
from ..errors import BundleError, require


class BpeTokenizer:
    """Words (whitespace split) segmented by ``subword_nmt.apply_bpe.BPE`` with the continuation
    marker ``joiner`` (``"@@"``: ``low@@ er``); detokenizing removes ``"@@ "`` as subword-nmt's
    users do (``sed -r 's/(@@ )|(@@ ?$)//g'``)."""

    def __init__(self, side: TextSide, path: Path) -> None:
        apply_bpe: Any = require("subword_nmt.apply_bpe", "text")
        self.joiner = side.joiner or "@@"
        try:
            with open(path, encoding="utf-8") as codes:
                self.bpe = apply_bpe.BPE(codes, separator=self.joiner)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise BundleError(f"{path.name} is not a subword-nmt codes file ({exc})", "re-export the bundle") from None

    def tokenize(self, text: str) -> list[str]:
        return self.bpe.process_line(" ".join(text.split())).split()

    def detokenize(self, tokens: Sequence[str]) -> str:
        text = " ".join(tokens).replace(f"{self.joiner} ", "")
        return text.removesuffix(self.joiner)


__all__ = ["BpeTokenizer"]
