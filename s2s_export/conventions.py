"""A model's conventions: special ids per vocabulary, source framing, search defaults (torch-free).

Bundle format 2 stores these in ``manifest.json``; format 1 bundles and zoo checkpoints have the
fixed ones (``FORMAT1_SPECIALS``: pad 0, bos 1, eos 2, unk 3 on both sides, EOS appended to every
source, HF-style beam search). The decoding contract of a module exposes them as attributes
(see ``specials_of``); importers set them from the tool's own files.

* ``Specials``: the id of pad, bos, eos and unk in one vocabulary (``None`` where it has none:
  g2p_en's source vocabulary has no bos). The token strings are ``vocab[id]``.
* ``Framing``: what every entry point adds around a source (``prepend_bos``, ``append_eos``) and
  the token the decoder starts from (``decoder_start``: a target id, default the target BOS).
* ``SearchDefaults``: what a search option means when the user does not give it, and the
  ``style`` (whose decoder the search reproduces: ``s2s``, ``joeynmt``, ``opennmt``).
"""

from __future__ import annotations

import math
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator
from typing_extensions import Annotated

SPECIAL_NAMES = ("pad", "bos", "eos", "unk")
STYLES = ("s2s", "joeynmt", "opennmt")
PENALTIES = ("none", "gnmt", "avg")
Style = Literal["s2s", "joeynmt", "opennmt"]
Penalty = Literal["none", "gnmt", "avg"]

# The ids every format-1 bundle and zoo checkpoint uses, on both sides.
FORMAT1_SPECIALS = {"pad": 0, "bos": 1, "eos": 2, "unk": 3}
FORMAT1_TOKENS = {"pad": "<pad>", "bos": "<s>", "eos": "</s>", "unk": "<unk>"}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class Specials(_Frozen):
    """Ids of one vocabulary's special tokens; ``None`` = the vocabulary has no such token."""

    pad: Optional[int] = Field(default=None, ge=0)
    bos: Optional[int] = Field(default=None, ge=0)
    eos: Optional[int] = Field(default=None, ge=0)
    unk: Optional[int] = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _distinct(self) -> "Specials":
        ids = [i for i in (self.pad, self.bos, self.eos, self.unk) if i is not None]
        if len(set(ids)) != len(ids):
            raise ValueError(f"special ids must be distinct (got {self.as_dict()})")
        return self

    def as_dict(self) -> dict[str, int | None]:
        return {k: getattr(self, k) for k in SPECIAL_NAMES}

    def ids(self) -> list[int]:
        """The ids that are set, in the order pad, bos, eos, unk."""
        return [i for i in (self.pad, self.bos, self.eos, self.unk) if i is not None]

    def check_size(self, size: int, side: str) -> None:
        """``ValueError`` when an id is outside a vocabulary of ``size`` tokens."""
        for name, i in self.as_dict().items():
            if i is not None and i >= size:
                raise ValueError(f"the {side} {name} id {i} is outside its vocabulary of {size} tokens")


FORMAT1 = Specials(**FORMAT1_SPECIALS)


class Framing(_Frozen):
    """What surrounds a source, and the decoder's first input token."""

    prepend_bos: bool = False  # source: BOS first (needs a source bos id)
    append_eos: bool = True  # source: EOS last (needs a source eos id)
    decoder_start: Optional[int] = Field(default=None, ge=0)  # target id; None = the target BOS

    def frame(self, ids: list[int], src: Specials) -> list[int]:
        """A source id list with the framing applied."""
        head = [src.bos] if self.prepend_bos and src.bos is not None else []
        tail = [src.eos] if self.append_eos and src.eos is not None else []
        return head + ids + tail

    def extra_tokens(self) -> int:
        """How many tokens the framing adds to a source."""
        return int(self.prepend_bos) + int(self.append_eos)

    def start_id(self, tgt: Specials) -> int:
        """The decoder's first input token (``ValueError`` when neither it nor a target BOS exists)."""
        start = self.decoder_start if self.decoder_start is not None else tgt.bos
        if start is None:
            raise ValueError("the target vocabulary has no bos and no decoder_start is set")
        return start


class SearchDefaults(_Frozen):
    """What each search option means when the user leaves it out, and the search ``style``.

    ``max_length``: most output tokens, EOS included. ``max_length_ratio``: per sentence at most
    ``ceil(ratio * source length)`` (framing included). ``max_length_batch_factor``: Joey NMT's
    rule when its config leaves ``max_output_length`` unset: every sentence of a batch may have
    ``int(factor * longest source length in the batch)`` tokens (the source length counts the
    framing; Joey: 1.5). ``never_generate``: target ids the search never emits (beyond pad and
    bos, which no style emits). ``batch_size``/``batch_type``: with the batch length rule, the
    inputs are grouped as the tool groups them (``sentence``: consecutive inputs, ``batch_size``
    at a time, as Joey NMT; ``token``: Joey's token batches, a batch closes when its longest
    source times its size reaches ``batch_size``; ``sorted``: sorted by length (stable), then
    ``batch_size`` at a time, as onmt_translate), so that every sentence gets the tool's limit."""

    style: Style = "s2s"
    beam_size: int = Field(default=1, ge=1, le=1024)
    n_best: int = Field(default=1, ge=1, le=1024)
    length_penalty: Penalty = "none"
    alpha: float = 0.0
    min_length: int = Field(default=0, ge=0)
    max_length: int = Field(default=200, ge=1, le=1_000_000)
    max_length_ratio: Optional[float] = Field(default=None, gt=0)
    max_length_batch_factor: Optional[float] = Field(default=None, gt=0)
    never_generate: tuple[Annotated[int, Field(ge=0)], ...] = ()  # target ids
    no_repeat_ngram_size: int = Field(default=0, ge=0)
    # how the tool groups consecutive inputs into batches, where its length rule depends on the
    # batch (max_length_batch_factor): None = the runtime's own batching (sorted by length)
    batch_size: Optional[int] = Field(default=None, ge=1, le=1 << 20)
    batch_type: Literal["sentence", "token", "sorted"] = "sentence"

    @model_validator(mode="after")
    def _consistent(self) -> "SearchDefaults":
        if self.n_best > self.beam_size:
            raise ValueError(f"n_best {self.n_best} exceeds beam_size {self.beam_size}")
        for name in ("alpha", "max_length_ratio", "max_length_batch_factor"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and abs(value) <= 1e6):
                raise ValueError(f"{name} must be a finite number of reasonable size (got {value})")
        return self

    def to_dict(self) -> dict[str, Any]:
        d = self.model_dump()
        d["never_generate"] = list(self.never_generate)
        return d


class Conventions(_Frozen):
    """A model's special ids on both sides and its source framing: what export, verify and the
    runtime need to feed the model as it was trained."""

    src: Specials
    tgt: Specials
    framing: Framing = Framing()

    @property
    def start_id(self) -> int:
        return self.framing.start_id(self.tgt)

    def frame(self, ids: list[int]) -> list[int]:
        return self.framing.frame(list(ids), self.src)

    def blocked(self, never_generate: tuple[int, ...] = ()) -> tuple[int, ...]:
        """The target ids never generated: pad, bos (when the vocabulary has them) and
        ``never_generate``, sorted."""
        ids = {i for i in (self.tgt.pad, self.tgt.bos) if i is not None} | set(never_generate)
        return tuple(sorted(ids))


TOKENIZER_KINDS = ("char", "word", "pretokenized", "sentencepiece", "bpe", "hf")
FILE_KINDS = ("sentencepiece", "bpe", "hf")  # tokenizers that need a model/codes file
Unicode = Literal["NFC", "NFKC"]


class TextSide(_Frozen):
    """How one side's text becomes tokens and back (``s2s_export.text`` applies it).

    ``kind``: ``char`` (every character; whitespace dropped, or written as the ``space`` token:
    Joey NMT's char level uses ``"▁"``), ``word`` (whitespace split), ``pretokenized`` (the text
    is the tokens, space-separated, exactly as given), ``sentencepiece`` (a SentencePiece model),
    ``bpe`` (subword-nmt codes, continuation marker ``joiner``: ``"@@"``), ``hf`` (a Hugging Face
    ``tokenizers`` JSON). ``file``: the model/codes file's name inside the bundle. Normalisation
    of input text (before tokenizing; the source side): ``lowercase``, ``unicode`` NFC or NFKC."""

    kind: Literal["char", "word", "pretokenized", "sentencepiece", "bpe", "hf"] = "char"
    file: Optional[str] = Field(default=None, min_length=1, max_length=255)
    space: Optional[str] = Field(default=None, min_length=1, max_length=8)
    joiner: Optional[str] = Field(default=None, min_length=1, max_length=8)
    lowercase: bool = False
    unicode: Optional[Unicode] = None

    @model_validator(mode="after")
    def _consistent(self) -> "TextSide":
        if (self.kind in FILE_KINDS) != (self.file is not None):
            raise ValueError(f"tokenizer {self.kind} {'needs' if self.kind in FILE_KINDS else 'takes no'} file")
        if self.space is not None and (self.kind != "char" or any(ch.isspace() for ch in self.space)):
            raise ValueError("space is the token a char tokenizer writes for a space: a visible string, char only")
        if self.joiner is not None and self.kind != "bpe":
            raise ValueError("joiner belongs to the bpe tokenizer")
        return self

    @property
    def label(self) -> str:
        """The spec as the CLI writes it (``char``, ``sentencepiece:src.model``...)."""
        return f"{self.kind}:{self.file}" if self.file else self.kind


class Text(_Frozen):
    """Both sides' text processing (``manifest.text``)."""

    src: TextSide = TextSide()
    tgt: TextSide = TextSide()

    @property
    def tokenizer(self) -> str:
        """The format-1 style summary (``char``, ``char:word``, ``sentencepiece:bpe``...)."""
        return self.src.kind if self.src.kind == self.tgt.kind else f"{self.src.kind}:{self.tgt.kind}"

    @classmethod
    def from_tokenizer(cls, spec: str) -> "Text":
        """The ``Text`` of a format-1 tokenizer spec (``char``, ``word``, ``SRC:TGT`` of those)."""
        src, _, tgt = str(spec).partition(":")
        return cls(src=TextSide(kind=src), tgt=TextSide(kind=tgt or src))  # type: ignore[arg-type]


def _attr(model: Any, side: str, name: str) -> Any:
    """``model.<side>_<name>_id``, else ``model.<name>_id`` (the same on both sides), else
    the attribute's absence (``...``)."""
    for attr in (f"{side}_{name}_id", f"{name}_id"):
        if hasattr(model, attr):
            return getattr(model, attr)
    return ...


def conventions_of(model: Any, framing: Framing | None = None) -> Conventions:
    """The ``Conventions`` a module declares (``specials_of``), with ``framing`` or, else, the
    module's ``framing`` attribute or the default (EOS appended; the module's
    ``decoder_start_id`` attribute, if any, as the decoder's first token)."""
    src, tgt = specials_of(model)
    if framing is None:
        framing = getattr(model, "framing", None)
        if not isinstance(framing, Framing):
            start = getattr(model, "decoder_start_id", None)
            framing = Framing(decoder_start=start if isinstance(start, int) and not isinstance(start, bool) else None)
    return Conventions(src=src, tgt=tgt, framing=framing)


def specials_of(model: Any) -> tuple[Specials, Specials]:
    """The (source, target) ``Specials`` a module declares: ``src_pad_id``, ``src_bos_id``,
    ``src_eos_id``, ``src_unk_id``, ``tgt_pad_id``, ... (int or None); a side-less ``pad_id``,
    ``bos_id``, ``eos_id``, ``unk_id`` means the same id on both sides. An attribute that is
    absent everywhere is ``None`` (no such token), except ``unk`` of a module that declares
    nothing per side (format 1: 3). ``ValueError`` names a value that is not an int or None."""
    out = []
    per_side = any(hasattr(model, f"{s}_{n}_id") for s in ("src", "tgt") for n in SPECIAL_NAMES)
    for side in ("src", "tgt"):
        values: dict[str, int | None] = {}
        for name in SPECIAL_NAMES:
            v = _attr(model, side, name)
            if v is ...:
                v = FORMAT1_SPECIALS["unk"] if name == "unk" and not per_side else None
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                raise ValueError(f"the model's {side}_{name}_id is {v!r}, not an int or None")
            values[name] = v
        out.append(Specials(**values))
    return out[0], out[1]


__all__ = ["Conventions", "FILE_KINDS", "TOKENIZER_KINDS", "Text", "TextSide", "conventions_of", "FORMAT1", "FORMAT1_SPECIALS", "FORMAT1_TOKENS", "Framing", "PENALTIES", "SPECIAL_NAMES",
           "STYLES", "SearchDefaults", "Specials", "specials_of"]
