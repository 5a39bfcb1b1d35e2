"""The schema of ``manifest.json``, validated completely and once, at load (pydantic; torch-free).

Every wrong type, missing key, empty list and absurd size is one ``BundleError`` line naming
where it is (``manifest.json: graphs.fp32: ...``), never a Python exception from deeper down.
Cross-field rules: the special ids and their token strings agree with the vocabularies; the
vocabularies pass the hygiene rules of their tokenizers (``vocab.vocab_problems``); the step
graph's IO agrees with the target vocabulary size and the top-K, and both graphs' IO is exactly
what the encoder's outputs make of them (``io_problems``: no duplicate, every role and batch
axis where the exporter puts it); ``search.never_generate`` and ``io.blocked`` are target ids
other than eos that leave something to generate, and ``io.blocked`` is what the step graph
masks (``derived_problems``); a zoo model config passes ``ModelConfig``; each precision's graph
table names an encoder and a decoder step, no file twice, and every file it names has a sha256
in ``files``.

Format 1 documents (pad 0 / bos 1 / eos 2 / unk 3 on both sides, EOS appended to sources, the
``s2s`` search) are upgraded to the format-2 shape by ``upgrade_v1`` before validation.
"""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath
from typing import Any, Literal, Optional

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)
from typing_extensions import Annotated

from .conventions import FORMAT1, FORMAT1_SPECIALS, SPECIAL_NAMES, Framing, SearchDefaults, Specials, Text
from .errors import BundleError, Problem
from .vocab import MAX_VOCAB, tokenizer_kinds, vocab_problems

MANIFEST = "manifest.json"
PRECISIONS = ("fp32", "fp16", "int8")
GRAPH_KEYS = ("encoder", "decoder_step", "greedy", "encoder_greedy")
DTYPES = ("float32", "float16", "int64", "int32", "bool", "float64")
ROLES = ("input", "static", "state", "output")
MAX_DIM = 1 << 24  # a fixed tensor axis larger than this is a corrupted document
MAX_ERRORS = 6  # validation errors listed (the rest counted)


def _file_name(name: str) -> str:
    """A bundle file name: a relative path inside the bundle (no absolute path, no ``..``)."""
    if not name or name == MANIFEST or len(name) > 255:
        raise ValueError(f"{name!r} is not a valid bundle file name")
    if PurePosixPath(name).is_absolute() or "\\" in name or ".." in PurePosixPath(name).parts or "\0" in name:
        raise ValueError(f"{name!r} is outside the bundle (never load a bundle whose manifest points elsewhere)")
    return name


def _sha256(value: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError("is not a sha256 hex digest")
    return value


FileName = Annotated[str, AfterValidator(_file_name)]
Sha256 = Annotated[str, AfterValidator(_sha256)]
Count = Annotated[int, Field(ge=1, le=1 << 30)]


class _Doc(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class TensorDoc(_Doc):
    name: str = Field(min_length=1, max_length=256)
    dtype: Literal["float32", "float16", "int64", "int32", "bool", "float64"]
    shape: list[Any] = Field(min_length=1, max_length=8)
    role: Literal["input", "static", "state", "output"]
    batch_axis: Optional[int] = None

    @field_validator("shape")
    @classmethod
    def _axes(cls, shape: list[Any]) -> list[Any]:
        for axis in shape:
            if isinstance(axis, bool) or not (isinstance(axis, str) and axis in ("batch", "src_len", "steps")
                                              or isinstance(axis, int) and 1 <= axis <= MAX_DIM):
                raise ValueError(f"axis {axis!r} is neither 'batch', 'src_len' nor a size in 1..{MAX_DIM}")
        return shape


class GraphDoc(_Doc):
    name: str
    inputs: list[TensorDoc] = Field(min_length=1, max_length=256)
    outputs: list[TensorDoc] = Field(min_length=1, max_length=256)


class IODoc(_Doc):
    encoder: GraphDoc
    decoder_step: GraphDoc
    topk: Count
    blocked: list[Annotated[int, Field(ge=0)]] = []


class SpecialDoc(_Doc):
    id: int = Field(ge=0)
    token: str


class SideSpecialsDoc(_Doc):
    pad: Optional[SpecialDoc] = None
    bos: Optional[SpecialDoc] = None
    eos: Optional[SpecialDoc] = None
    unk: Optional[SpecialDoc] = None

    def specials(self) -> Specials:
        return Specials(**{k: (None if getattr(self, k) is None else getattr(self, k).id) for k in SPECIAL_NAMES})


class SpecialsDoc(_Doc):
    src: SideSpecialsDoc
    tgt: SideSpecialsDoc


class EngineDoc(BaseModel):
    """A TensorRT engine entry: ``file`` and ``graph`` are checked; the builder's other facts
    (GPU, versions, profile) are kept as they are."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)
    file: FileName
    graph: Literal["encoder", "decoder_step"]


class ManifestDoc(_Doc):
    """``manifest.json``, format 2 (see ``bundle.Manifest`` for the meaning of each field)."""

    format_version: Literal[2]
    model_config_: dict[str, Any] = Field(alias="model_config")
    src_vocab: list[str] = Field(min_length=1, max_length=MAX_VOCAB)
    tgt_vocab: list[str] = Field(min_length=1, max_length=MAX_VOCAB)
    specials: SpecialsDoc
    framing: Framing
    search: SearchDefaults
    tokenizer: str = Field(min_length=1, max_length=200)
    text: Optional[Text] = None  # absent: the format-1 tokenizer spec says it (char, word, SRC:TGT)
    io: IODoc
    topk: Count
    opset: int = Field(ge=7, le=30)
    max_batch: Count
    max_src_len: Count
    graphs: dict[Literal["fp32", "fp16", "int8"],
                 dict[Literal["encoder", "decoder_step", "greedy", "encoder_greedy"], FileName]] = \
        Field(min_length=1)
    files: dict[FileName, Sha256]
    versions: dict[str, str] = {}
    parity: dict[str, Any] = {}
    engines: list[EngineDoc] = []
    trt_compat: list[str] = []

    @model_validator(mode="after")
    def _text(self) -> "ManifestDoc":
        """Without ``text`` (format 1, early format 2) the tokenizer spec must be a format-1 one."""
        if self.text is None:
            try:
                tokenizer_kinds(self.tokenizer)
            except Exception as exc:  # noqa: BLE001 - BadInputError: a ValueError for pydantic
                raise ValueError(str(exc)) from None
        return self

    @property
    def text_sides(self) -> Text:
        return self.text if self.text is not None else Text.from_tokenizer(self.tokenizer)

    def _blocked_problems(self, tgt: Specials) -> list[str]:
        """``search.never_generate`` and ``io.blocked``: target ids; never the eos; not every id."""
        V = len(self.tgt_vocab)
        out = []
        for where, ids in (("search.never_generate", self.search.never_generate), ("io.blocked", self.io.blocked)):
            outside = sorted({i for i in ids if i >= V})
            if outside:
                out.append(f"{where} names ids outside the target vocabulary of {V} tokens: {outside[:5]}")
            if tgt.eos is not None and tgt.eos in ids:
                out.append(f"{where} names the target eos id {tgt.eos}: nothing could ever end")
        if len(set(range(V)) - set(self.io.blocked) - set(self.search.never_generate) - {tgt.eos}) == 0:
            out.append("search.never_generate and io.blocked leave no target token but eos to generate")
        return out

    @model_validator(mode="after")
    def _consistent(self) -> "ManifestDoc":
        problems: list[str] = []
        text = self.text_sides
        for side, vocab, doc, kind in (("source", self.src_vocab, self.specials.src, text.src),
                                       ("target", self.tgt_vocab, self.specials.tgt, text.tgt)):
            specials = doc.specials()
            problems += vocab_problems(vocab, specials, kind, side)
            for name in SPECIAL_NAMES:
                entry = getattr(doc, name)
                if entry is not None and entry.id < len(vocab) and vocab[entry.id] != entry.token:
                    problems.append(f"the {side} {name} token is {entry.token!r} but id {entry.id} is "
                                    f"{vocab[entry.id]!r} in the {side} vocabulary")
        tgt = self.specials.tgt.specials()
        if tgt.eos is None:
            problems.append("the target vocabulary has no eos token")
        src = self.specials.src.specials()
        if self.framing.prepend_bos and src.bos is None:
            problems.append("framing.prepend_bos is set but the source vocabulary has no bos token")
        if self.framing.append_eos and src.eos is None:
            problems.append("framing.append_eos is set but the source vocabulary has no eos token")
        if self.framing.decoder_start is None and tgt.bos is None:
            problems.append("the decoder has no start token (no target bos and no framing.decoder_start)")
        if self.framing.decoder_start is not None and self.framing.decoder_start >= len(self.tgt_vocab):
            problems.append(f"framing.decoder_start {self.framing.decoder_start} is outside the target vocabulary")
        problems += self._blocked_problems(tgt)
        if self.topk != self.io.topk or self.topk > len(self.tgt_vocab):
            problems.append(f"topk {self.topk} (io.topk {self.io.topk}) must be the step graph's K, at most "
                            f"the target vocabulary size {len(self.tgt_vocab)}")
        step_out = {t.name: t for t in self.io.decoder_step.outputs}
        for name, width in (("log_probs", len(self.tgt_vocab)), ("topk_ids", self.topk),
                            ("topk_log_probs", self.topk)):
            t = step_out.get(name)
            if t is None or t.shape[-1] != width:
                problems.append(f"io.decoder_step output {name} must be [batch, {width}] "
                                f"(got {None if t is None else t.shape})")
        problems += io_problems(self.io, len(self.tgt_vocab), self.topk)
        named: dict[str, str] = {}  # file -> the first graphs.<precision>.<graph> naming it
        for precision, table in self.graphs.items():
            missing = [g for g in ("encoder", "decoder_step") if g not in table]
            if missing:
                problems.append(f"graphs.{precision} lacks {' and '.join(missing)}")
            for graph, name in table.items():
                if name in named:
                    problems.append(f"graphs.{precision}.{graph} names {name}, which {named[name]} names too "
                                    "(each graph of each table has a file of its own)")
                named.setdefault(name, f"graphs.{precision}.{graph}")
            for name in table.values():
                if name not in self.files:
                    problems.append(f"bundle file {name} has no sha256 in files (modified manifest)")
        for file in (text.src.file, text.tgt.file):
            if file is not None and file not in self.files:
                problems.append(f"tokenizer file {file} has no sha256 in files (modified manifest)")
        for e in self.engines:
            if e.file not in self.files:
                problems.append(f"engine file {e.file} has no sha256 in files (modified manifest)")
        if "fp32" not in self.graphs:
            problems.append("graphs has no fp32 entry")
        if problems:
            raise ValueError("\n".join(problems))  # one error line each (``problems`` splits them)
        return self


def _tensor_key(t: dict[str, Any]) -> tuple[Any, ...]:
    return (t["name"], t["dtype"], list(t["shape"]), t["role"])


def io_problems(io: IODoc, vocab_size: int, topk: int) -> list[str]:
    """What is wrong with the declared graph IO: names declared twice, a ``batch_axis`` that is
    not the position of the ``batch`` axis, an encoder output that is neither ``static`` nor
    ``state``, and any entry (name, dtype, shape, role, order) other than what the encoder's
    outputs make of both graphs (``graphio.BundleIO.build``, the one rule the exporter follows)."""
    from .graphio import BundleIO, TensorSpec

    out: list[str] = []
    for graph in (io.encoder, io.decoder_step):
        for side, tensors in (("inputs", graph.inputs), ("outputs", graph.outputs)):
            names = [t.name for t in tensors]
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                out.append(f"io.{graph.name}.{side} declares {', '.join(twice)} more than once")
            for t in tensors:
                axis = t.shape.index("batch") if "batch" in t.shape else None
                if t.batch_axis is not None and t.batch_axis != axis:
                    out.append(f"io.{graph.name}.{side}: {t.name} has batch_axis {t.batch_axis}, but its batch "
                               f"axis is {axis} (shape {t.shape})")
    roles = [t for t in io.encoder.outputs if t.role not in ("static", "state")]
    if roles:
        out.append(f"io.encoder.outputs: {roles[0].name} has role {roles[0].role!r}; an encoder output is "
                   "'static' or 'state'")
    if out:
        return out
    spec = [TensorSpec(t.name, t.dtype, tuple(t.shape), t.role) for t in io.encoder.outputs]
    expected = BundleIO.build([t for t in spec if t.role == "static"], [t for t in spec if t.role == "state"],
                              vocab_size, topk, io.blocked).to_dict()
    declared = io.model_dump()
    for key in ("encoder", "decoder_step"):
        for side in ("inputs", "outputs"):
            want = [_tensor_key(t) for t in expected[key][side]]
            got = [_tensor_key(t) for t in declared[key][side]]
            if want != got:
                i = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
                shown = [(f"{t[0]} {t[1]} {t[2]} role {t[3]!r}" if t else "nothing")
                         for t in (got[i] if i < len(got) else None, want[i] if i < len(want) else None)]
                out.append(f"io.{key}.{side} entry {i} is {shown[0]}, where the encoder's outputs make it "
                           f"{shown[1]}")
    return out


def derived_problems(doc: ManifestDoc, version: int) -> list[str]:
    """Rules that depend on the document's format: format 1 graphs mask nothing (no
    ``io.blocked``); format 2 step graphs mask the target pad and bos and ``never_generate``
    (``conventions.Conventions.blocked``), so ``io.blocked`` must be exactly those; a format-2
    model config without a ``format`` (an importer's) or ``class`` (a module's) key is a zoo
    ``ModelConfig`` and passes its validation, with the vocabulary sizes of the bundle."""
    tgt = doc.specials.tgt.specials()
    if version == 1:
        return ["io.blocked must be empty in a format 1 bundle (its graphs mask nothing)"] if doc.io.blocked else []
    out = []
    derived = sorted({i for i in (tgt.pad, tgt.bos) if i is not None} | set(doc.search.never_generate))
    if list(doc.io.blocked) != derived:
        out.append(f"io.blocked {list(doc.io.blocked)} is not what the step graph masks: the target pad and bos "
                   f"and search.never_generate, {derived}")
    config = doc.model_config_
    fmt = config.get("format")
    if "class" in config:
        if not isinstance(config["class"], str):
            out.append("model_config.class must be the module's qualified class name (a string)")
    elif fmt is not None:
        if fmt not in ("opennmt", "joeynmt", "g2p_en"):
            out.append(f"model_config.format {fmt!r} is not an importer's (opennmt, joeynmt, g2p_en)")
    else:
        from .errors import S2SError
        from .models.config import ModelConfig

        try:
            cfg = ModelConfig.from_dict(dict(config))
        except S2SError as exc:
            return out + [f"model_config: {p.what}" for p in exc.problems]
        sizes = (cfg.src_vocab_size, cfg.tgt_vocab_size)
        if sizes != (len(doc.src_vocab), len(doc.tgt_vocab)):
            out.append(f"model_config vocabulary sizes {sizes} differ from the vocabularies "
                       f"({len(doc.src_vocab)}, {len(doc.tgt_vocab)})")
    return out


def upgrade_v1(d: dict[str, Any]) -> dict[str, Any]:
    """A format-1 document in the format-2 shape: the fixed specials on both sides (with the
    tokens found at their ids), EOS appended to sources, the ``s2s`` search defaults."""
    out = dict(d)
    specials = d.get("specials")
    if specials != FORMAT1_SPECIALS:
        raise BundleError(f"{MANIFEST}: a format 1 bundle must have specials {FORMAT1_SPECIALS} (got {specials!r})",
                          "re-export the bundle with s2s-export")
    side: dict[str, Any] = {}
    for key, vocab_key in (("src", "src_vocab"), ("tgt", "tgt_vocab")):
        vocab = d.get(vocab_key)
        side[key] = {name: {"id": i, "token": vocab[i] if isinstance(vocab, list) and i < len(vocab) else ""}
                     for name, i in FORMAT1_SPECIALS.items()}
    out.update(format_version=2, specials=side, framing=Framing().model_dump(),
               search=SearchDefaults().to_dict())
    return out


def specials_doc(specials: Specials, vocab: list[str]) -> dict[str, Any]:
    """The manifest's entry for one side: ``{name: {"id", "token"} or None}``."""
    return {name: (None if i is None else {"id": i, "token": vocab[i]}) for name, i in specials.as_dict().items()}


def validate_manifest(d: Any) -> ManifestDoc:
    """The validated document (``BundleError`` with one line per problem)."""
    if not isinstance(d, dict):
        raise BundleError(f"{MANIFEST} is not a JSON object", "re-export the bundle with s2s-export")
    version = d.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version == 1:
        d = upgrade_v1(d)
    try:  # JSON mode: JSON arrays are the document's tuples too (strict python mode refuses lists)
        doc = ManifestDoc.model_validate_json(json.dumps(d))
    except ValidationError as exc:
        raise BundleError(problems(exc, MANIFEST, "re-export the bundle with s2s-export")) from None
    found = derived_problems(doc, 1 if version == 1 else 2)
    if found:
        raise BundleError([Problem(f"{MANIFEST}: {p}", "re-export the bundle with s2s-export") for p in found])
    return doc


_VOCAB_SIDES = {"src_vocab": "source", "tgt_vocab": "target"}


def problems(exc: ValidationError, document: str, fix: str) -> list[Problem]:
    """A pydantic ``ValidationError`` as one ``Problem`` per error (at most ``MAX_ERRORS``),
    each naming where in ``document`` it is."""
    out = []
    errors = exc.errors(include_url=False)
    for err in errors[:MAX_ERRORS]:
        where = "".join(f"{part}: " for part in [".".join(str(p) for p in err["loc"])] if part)
        got = err.get("input")
        loc = err["loc"]
        if err["type"] == "string_type" and len(loc) == 2 and loc[0] in _VOCAB_SIDES:  # a token of a vocabulary
            out.append(Problem(f"{document}: {loc[0]}: the {_VOCAB_SIDES[str(loc[0])]} vocabulary has tokens "
                               f"that are not strings: id {loc[1]} ({got!r:.60})", fix))
            continue
        shown = "" if err["type"] in ("missing", "value_error") or isinstance(got, (dict, list)) else f" (got {got!r:.60})"
        for msg in str(err["msg"]).removeprefix("Value error, ").split("\n"):
            out.append(Problem(f"{document}: {where}{msg}{shown}", fix))
    if len(errors) > MAX_ERRORS:
        out.append(Problem(f"{document}: {len(errors) - MAX_ERRORS} more problems", fix))
    return out


__all__ = ["DTYPES", "GRAPH_KEYS", "MANIFEST", "ManifestDoc", "PRECISIONS", "ROLES", "derived_problems", "io_problems",
           "problems", "specials_doc", "upgrade_v1", "validate_manifest"]
