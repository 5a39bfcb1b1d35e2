"""Vocabularies and tokenizers (torch-free: the runtime uses them).

Special ids are fixed and shared by source and target: pad 0, bos 1, eos 2, unk 3.
Every source sequence ends with EOS (so an empty input still has length 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Literal, Sequence

from .errors import BadInputError

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3

Tokenizer = Literal["char", "word"]
TOKENIZERS = ("char", "word")


def content_ids(vocab_size: int) -> tuple[int, int]:
    """[lo, hi) of the ids random test sources may use: the ordinary tokens after the specials,
    or UNK alone when the vocabulary has nothing but the specials."""
    return (len(SPECIALS), vocab_size) if vocab_size > len(SPECIALS) else (UNK_ID, UNK_ID + 1)


def tokenizer_kinds(spec: str) -> tuple[str, str]:
    """Source and target tokenizer of a spec: ``"char"``, ``"word"`` (both sides) or
    ``"SRC:TGT"`` (e.g. ``"char:word"`` for g2p: letters in, space-separated phonemes out)."""
    src, _, tgt = str(spec).partition(":")
    tgt = tgt or src
    for kind in (src, tgt):
        if kind not in TOKENIZERS:
            raise BadInputError(f"tokenizer {spec!r} is unknown",
                                f"use one of {TOKENIZERS} or 'SRC:TGT' such as 'char:word'")
    return src, tgt


def tokenize(text: str, kind: str) -> list[str]:
    """``char``: every non-space character (spaces dropped); ``word``: whitespace split."""
    if kind == "char":
        return [ch for ch in text if not ch.isspace()]
    if kind == "word":
        return text.split()
    raise BadInputError(f"unknown tokenizer {kind!r}", f"use one of {TOKENIZERS}")


def detokenize(tokens: Sequence[str], kind: str) -> str:
    return ("" if kind == "char" else " ").join(tokens)


@dataclass(frozen=True)
class Vocab:
    """An ordered token list whose first four entries are the specials."""

    tokens: tuple[str, ...]
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if tuple(self.tokens[:4]) != SPECIALS:
            raise BadInputError(f"vocabulary must start with {SPECIALS}", "rebuild it with Vocab.build")
        object.__setattr__(self, "index", {t: i for i, t in enumerate(self.tokens)})

    @classmethod
    def build(cls, sequences: Iterable[Sequence[str]]) -> "Vocab":
        seen: dict[str, None] = {}
        for seq in sequences:
            for tok in seq:
                if tok not in SPECIALS:
                    seen.setdefault(tok)
        return cls(SPECIALS + tuple(sorted(seen)))

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: Sequence[str], add_eos: bool = False) -> list[int]:
        ids = [self.index.get(t, UNK_ID) for t in tokens]
        return ids + [EOS_ID] if add_eos else ids

    def decode(self, ids: Iterable[int], strip: bool = True) -> list[str]:
        """Token strings of ``ids``; with ``strip`` stops at EOS and drops pad/bos."""
        out: list[str] = []
        for i in ids:
            i = int(i)
            if strip and i == EOS_ID:
                break
            if strip and i in (PAD_ID, BOS_ID):
                continue
            out.append(self.tokens[i] if 0 <= i < len(self.tokens) else UNK)
        return out
