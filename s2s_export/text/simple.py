"""The tokenizers without a model: ``char``, ``word``, ``pretokenized`` (torch-free)."""

from __future__ import annotations

from typing import Sequence

from ..conventions import TextSide


class CharTokenizer:
    """Every character is a token. Whitespace is dropped, or each whitespace character becomes
    the ``space`` token (Joey NMT's char level: ``list(line.replace(" ", "▁"))``, joeynmt 2.3
    tokenizers.py) and prints as a space again."""

    def __init__(self, side: TextSide) -> None:
        self.space = side.space

    def tokenize(self, text: str) -> list[str]:
        if self.space is None:
            return [ch for ch in text if not ch.isspace()]
        return [self.space if ch.isspace() else ch for ch in text]

    def detokenize(self, tokens: Sequence[str]) -> str:
        text = "".join(tokens)
        return text if self.space is None else text.replace(self.space, " ")


class WordTokenizer:
    """Whitespace-separated words."""

    def __init__(self, side: TextSide) -> None:
        pass

    def tokenize(self, text: str) -> list[str]:
        return text.split()

    def detokenize(self, tokens: Sequence[str]) -> str:
        return " ".join(tokens)


class PretokenizedTokenizer(WordTokenizer):
    """The text is the tokens, space-separated, exactly as given (subword pieces included); the
    output is the tokens, space-separated, not detokenized."""


__all__ = ["CharTokenizer", "PretokenizedTokenizer", "WordTokenizer"]
