"""Vocabularies and tokenizers (torch-free: the runtime uses them).

A ``Vocab`` is a token list (id = position) with the ids of its special tokens
(``conventions.Specials``): the zoo's vocabularies (``Vocab.build``) put pad, bos, eos, unk first
(ids 0-3, the format-1 convention); an imported model's keep the tool's own order (Joey NMT:
unk 0, pad 1, bos 2, eos 3; OpenNMT-py: ``<unk>``, ``<blank>``, ``<s>``, ``</s>``; g2p_en's
source has no bos). Text never produces a control id: ``encode`` maps the strings of pad, bos and
eos like any unknown token, to unk.

Hygiene (``vocab_problems``): tokens are non-empty distinct strings that round-trip through the
side's tokenizer (``char``: one non-space character; ``word``: no whitespace inside), except the
special tokens, which text never produces anyway.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Literal, Sequence

from .conventions import FORMAT1, FORMAT1_SPECIALS, FORMAT1_TOKENS, Specials, TextSide
from .errors import BadInputError

# the format-1 (zoo) specials: token strings, ids, and their order at the start of a vocabulary
PAD, BOS, EOS, UNK = (FORMAT1_TOKENS[k] for k in ("pad", "bos", "eos", "unk"))
SPECIALS = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = (FORMAT1_SPECIALS[k] for k in ("pad", "bos", "eos", "unk"))

Tokenizer = Literal["char", "word"]
TOKENIZERS = ("char", "word")
MAX_VOCAB = 10_000_000  # more tokens than any real vocabulary: a corrupted document


def content_ids(vocab_size: int, specials: Specials = FORMAT1) -> list[int]:
    """The ids random test sources may use: the ordinary tokens (not a special), or the unk id
    alone (else id 0) when the vocabulary has nothing else."""
    taken = set(specials.ids())
    ids = [i for i in range(vocab_size) if i not in taken]
    if ids:
        return ids
    return [specials.unk if specials.unk is not None else 0]


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


def round_trips(token: str, text: "TextSide | str") -> bool:
    """Whether the side's tokenizer can produce ``token`` from text and print it back: a token
    without whitespace inside; for ``char`` one character, or its ``space`` token."""
    side = text if isinstance(text, TextSide) else TextSide(kind=text)  # type: ignore[arg-type]
    if not token or any(ch.isspace() for ch in token):
        return False
    return side.kind != "char" or len(token) == 1 or token == side.space


def _encodable(token: str) -> bool:
    """Whether ``token`` is valid Unicode text (UTF-8 encodable: no lone surrogate)."""
    try:
        token.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def vocab_problems(tokens: Sequence[object], specials: Specials, kind: "TextSide | str | None",
                   side: str = "") -> list[str]:
    """What makes ``tokens`` unusable as the ``side`` (source/target) vocabulary of a bundle whose
    tokenizer on that side is ``kind``: non-strings, empty strings, strings that are not valid
    Unicode (a lone surrogate), duplicates, special ids outside the list, and (unless ``kind`` is
    None) tokens that do not round-trip through the tokenizer (special tokens exempt). At most a
    few examples per kind of problem, each quoted with ``repr`` (a newline shows as ``\\n``)."""
    problems: list[str] = []
    name = f"the {side} vocabulary" if side else "the vocabulary"

    def report(what: str, bad: list[str]) -> None:
        if bad:
            more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
            problems.append(f"{name} has {what}: {', '.join(bad[:3])}{more}")

    if not tokens:
        return [f"{name} is empty"]
    if len(tokens) > MAX_VOCAB:
        return [f"{name} has {len(tokens)} tokens (more than {MAX_VOCAB})"]
    report("tokens that are not strings", [f"id {i} ({t!r})" for i, t in enumerate(tokens) if not isinstance(t, str)])
    report("empty tokens", [f"id {i}" for i, t in enumerate(tokens) if t == ""])
    report("tokens that are not valid Unicode text (a lone surrogate, which neither UTF-8 nor JSON can carry)",
           [f"id {i} ({t!r})" for i, t in enumerate(tokens) if isinstance(t, str) and not _encodable(t)])
    seen: dict[str, int] = {}
    dups = []
    for i, t in enumerate(tokens):
        if not isinstance(t, str):  # reported above (a list or dict token is not even hashable)
            continue
        if t in seen:
            dups.append(f"{t!r} (ids {seen[t]} and {i})")
        seen.setdefault(t, i)
    report("duplicate tokens", dups)
    try:
        specials.check_size(len(tokens), side or "vocabulary's")
    except ValueError as exc:
        problems.append(str(exc))
    if kind is None:
        return problems
    exempt = set(specials.ids())
    name_of = kind.kind if isinstance(kind, TextSide) else kind
    report(f"tokens the {name_of!r} tokenizer cannot produce or print back (whitespace inside"
           + (", more than one character" if name_of == "char" else "") + ")",
           [f"id {i} ({t!r})" for i, t in enumerate(tokens)
            if isinstance(t, str) and t and i not in exempt and not round_trips(t, kind)])
    return problems


@dataclass(frozen=True)
class Vocab:
    """An ordered token list (id = position) and the ids of its special tokens.

    ``specials`` defaults to the format-1 convention, whose four tokens must then come first
    (``<pad>``, ``<s>``, ``</s>``, ``<unk>``). ``BadInputError`` for a list that is not a
    vocabulary (``vocab_problems`` without the tokenizer rule)."""

    tokens: tuple[str, ...]
    specials: Specials = FORMAT1
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.specials == FORMAT1 and tuple(self.tokens[:4]) != SPECIALS:
            raise BadInputError(f"vocabulary must start with {SPECIALS}", "rebuild it with Vocab.build")
        problems = vocab_problems(self.tokens, self.specials, None)
        if problems:
            raise BadInputError("; ".join(problems), "pass the vocabulary the model was trained with")
        # text maps to ordinary tokens only: the strings of pad/bos/eos are unknown words
        control = {self.specials.pad, self.specials.bos, self.specials.eos} - {None}
        index = {t: i for i, t in enumerate(self.tokens) if i not in control}
        object.__setattr__(self, "index", index)

    @classmethod
    def build(cls, sequences: Iterable[Sequence[str]]) -> "Vocab":
        """The zoo's vocabulary of ``sequences``: the format-1 specials, then the tokens sorted."""
        seen: dict[str, None] = {}
        for seq in sequences:
            for tok in seq:
                if tok not in SPECIALS:
                    seen.setdefault(tok)
        return cls(SPECIALS + tuple(sorted(seen)))

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: Sequence[str], add_eos: bool = False) -> list[int]:
        """Ids of ``tokens`` (unknown tokens and the strings of pad/bos/eos -> unk), with EOS
        appended when ``add_eos`` (``BadInputError`` when the vocabulary has no unk and a token
        is unknown, or no eos and ``add_eos``)."""
        unk = self.specials.unk
        ids = []
        for t in tokens:
            i = self.index.get(t, unk)
            if i is None:
                raise BadInputError(f"token {t!r} is not in the vocabulary, which has no unknown-token id",
                                    "use only tokens of the model's vocabulary")
            ids.append(i)
        if add_eos:
            if self.specials.eos is None:
                raise BadInputError("the vocabulary has no eos token", "do not append EOS to its sequences")
            ids.append(self.specials.eos)
        return ids

    def decode(self, ids: Iterable[int], strip: bool = True) -> list[str]:
        """Token strings of ``ids``; with ``strip`` stops at EOS and drops pad/bos. An id outside
        the vocabulary becomes the unk token string (``<unk>`` without one)."""
        out: list[str] = []
        eos, drop = self.specials.eos, {self.specials.pad, self.specials.bos} - {None}
        unk = self.tokens[self.specials.unk] if self.specials.unk is not None else UNK
        for i in ids:
            i = int(i)
            if strip and i == eos:
                break
            if strip and i in drop:
                continue
            out.append(self.tokens[i] if 0 <= i < len(self.tokens) else unk)
        return out
