"""The checkpoint format (``model.pt``), loadable with ``torch.load(weights_only=True)``.

Contents (plain containers and tensors only)::

    {"format": "s2s-export-checkpoint", "version": 1, "config": {...ModelConfig...},
     "src_vocab": [...], "tgt_vocab": [...], "specials": {"pad": 0, "bos": 1, "eos": 2, "unk": 3},
     "tokenizer": "char" | "word" | "SRC:TGT", "state_dict": {...}, "meta": {...},
     "text": {"src": {...}, "tgt": {...}},           optional: conventions.Text (tokenizers...)
     "text_files": {"src.sentencepiece.model": b"..."}}  optional: the tokenizer files it names
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from typing_extensions import Annotated

from ..conventions import FORMAT1, Text
from ..errors import (BadInputError, CheckpointError, Problem, S2SError, one_line, shorten,
                      unreadable_as_checkpoint_error)
from ..vocab import BOS_ID, EOS_ID, PAD_ID, SPECIALS, UNK_ID, Vocab, tokenizer_kinds, vocab_problems
from .config import ModelConfig
from .seq2seq import Seq2Seq

FORMAT = "s2s-export-checkpoint"
VERSION = 1
SPECIAL_IDS = {"pad": PAD_ID, "bos": BOS_ID, "eos": EOS_ID, "unk": UNK_ID}


@dataclass
class Checkpoint:
    model: Seq2Seq
    src_vocab: Vocab
    tgt_vocab: Vocab
    tokenizer: str = "char"  # "char", "word" or "SRC:TGT" (vocab.tokenizer_kinds)
    meta: dict[str, Any] = field(default_factory=dict)
    text: Text | None = None  # both sides' text processing when more than ``tokenizer`` says
    text_files: dict[str, bytes] = field(default_factory=dict)  # the tokenizer files ``text`` names

    @property
    def config(self) -> ModelConfig:
        return self.model.config


def save_checkpoint(path: str | os.PathLike[str], ckpt: Checkpoint) -> None:
    """Write ``ckpt`` to ``path`` atomically (a temporary file beside it, renamed over it); a
    symbolic link keeps pointing at the written file; a FIFO or device is written directly
    (``bundle.output_target``)."""
    data = {
        "format": FORMAT, "version": VERSION, "config": ckpt.config.to_dict(),
        "src_vocab": list(ckpt.src_vocab.tokens), "tgt_vocab": list(ckpt.tgt_vocab.tokens),
        "specials": dict(SPECIAL_IDS), "tokenizer": ckpt.tokenizer,
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in ckpt.model.state_dict().items()},
        "meta": ckpt.meta,
    }
    if ckpt.text is not None:
        data["text"] = ckpt.text.model_dump()
        data["text_files"] = dict(ckpt.text_files)
    from ..bundle import open_direct, output_target

    where, direct = output_target(path)  # a symbolic link's target; a FIFO or device directly
    if direct:
        with open_direct(where, binary=True) as f:
            torch.save(data, f)
        return
    tmp = where.with_name(f".{where.name}.tmp-{os.getpid()}")
    try:
        torch.save(data, tmp)
        os.replace(tmp, where)
    finally:
        tmp.unlink(missing_ok=True)


# what torch's weights-only unpickler says when it refuses a pickled object (torch 2.13,
# torch/_weights_only_unpickler.py: a GLOBAL that is blocked or not allowed, a REDUCE of an
# unknown function, NEWOBJ/BUILD of a class not allowlisted); garbage bytes fail otherwise
# ("Unsupported operand", "String is too long", EOF)
_OBJECT_REFUSALS = ("global", "reduce for unrecognized function", "can only create new object",
                    "can only build", "add_safe_globals", "allowlist", "must be imported to load")


def _refuses_objects(message: str) -> bool:
    low = message.lower()
    return any(marker in low for marker in _OBJECT_REFUSALS)


def _read(path: Path, trust_pickle: bool) -> Any:
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file",
                              "pass the model.pt file (bundle directories go to s2s translate)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist", "check the path")
    with unreadable_as_checkpoint_error(path, "pass a complete model.pt written by `s2s train` or save_checkpoint"):
        try:
            return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
        except pickle.UnpicklingError as exc:
            if _refuses_objects(str(exc)):  # garbage also fails "weights_only", differently
                raise CheckpointError(
                    f"{path} contains pickled Python objects (e.g. a whole nn.Module), which can run "
                    "arbitrary code when loaded",
                    "re-save it as an s2s-export checkpoint, or pass --trust-pickle if you trust "
                    "its author") from None
            text = " ".join(str(exc).split())
            detail = text.partition("WeightsUnpickler error: ")[2].partition(" Check the documentation")[0]
            detail = shorten(detail or text, 200)
            raise CheckpointError(f"{path} is not a PyTorch checkpoint ({detail})",
                                  "pass a model.pt written by `s2s train` or save_checkpoint") from None


def _other_tool(data: Any) -> tuple[str, str]:
    """(what another tool's checkpoint ``data`` looks like, the fix) when its keys say so, else
    ("", "")."""
    if not isinstance(data, dict):
        return "", ""
    if "model_state" in data:
        return ("it is a Joey NMT checkpoint (model_state), which reads only with its model directory's "
                "config.yaml and vocabularies", "pass the Joey NMT model directory (or --from joeynmt)")
    if {"model", "generator"} <= set(data):
        missing = [k for k in ("opt", "vocab") if k not in data]
        return (f"it looks like an OpenNMT-py checkpoint (model, generator, vocab, opt) but lacks "
                f"{' and '.join(repr(k) for k in missing) or 'nothing'}, so no importer can read it",
                "pass the unmodified model_step_N.pt onmt_train wrote (or --from opennmt)")
    return "", ""


def read_file(path: str | os.PathLike[str], trust_pickle: bool = False) -> Any:
    """The raw object in ``path`` (weights only unless ``trust_pickle``), one-line
    ``CheckpointError`` when it cannot be read; ``load_checkpoint`` validates it."""
    return _read(Path(path), trust_pickle)


def load_checkpoint(path: str | os.PathLike[str], trust_pickle: bool = False) -> Checkpoint:
    """Load and validate ``path`` (weights only unless ``trust_pickle``); the model is in eval mode.

    ``CheckpointError`` (one line per problem, naming the file and the field) for a file that
    is not ours, of another version, with a top-level field of the wrong type (``_FIELDS``), a
    vocabulary token that is not a string or not valid Unicode, ``specials`` other than the
    fixed format-1 ids, an invalid config or weights that do not fit it."""
    path = Path(path)
    data = _read(path, trust_pickle)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        other, fix = _other_tool(data)
        if other:
            raise CheckpointError(f"{path} is not an s2s-export checkpoint: {other}", fix)
        raise CheckpointError(f"{path} is not an s2s-export checkpoint (no 'format': '{FORMAT}' key), nor one "
                              "of the other formats s2s-export reads",
                              "train with `s2s train` or save with s2s_export.models.save_checkpoint; for "
                              "another tool's checkpoint pass --from opennmt, joeynmt or g2p_en")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{path}: its checkpoint version {version!r} is a {type(version).__name__}, not an "
                              f"integer (this s2s-export reads version {VERSION})",
                              "re-save it with s2s_export.models.save_checkpoint")
    if version != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {version}, this s2s-export "
                              f"reads version {VERSION}", "re-save it with a matching s2s-export")
    missing = [k for k in ("config", "src_vocab", "tgt_vocab", "state_dict") if k not in data]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}",
                              "save it with s2s_export.models.save_checkpoint")
    _check_fields(path, data)
    try:
        src_vocab, tgt_vocab = Vocab(tuple(data["src_vocab"])), Vocab(tuple(data["tgt_vocab"]))
        config = ModelConfig.from_dict(dict(data["config"]))
    except S2SError as exc:  # an invalid config is bad input here (exit 4), named with the file
        raise CheckpointError([Problem(f"{path}: {p.what}", p.fix) for p in exc.problems]) from None
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} has a malformed config or vocabulary ({type(exc).__name__}: {exc})",
                              "save it with s2s_export.models.save_checkpoint") from None
    if (config.src_vocab_size, config.tgt_vocab_size) != (len(src_vocab), len(tgt_vocab)):
        raise CheckpointError(
            f"{path}: config vocabulary sizes ({config.src_vocab_size}, {config.tgt_vocab_size}) "
            f"do not match the vocabularies ({len(src_vocab)}, {len(tgt_vocab)})",
            "save the checkpoint with the vocabularies it was trained with")
    tokenizer = data.get("tokenizer", "char")
    text, text_files = _text(path, data)
    if text is None:
        try:
            tokenizer_kinds(tokenizer)
        except BadInputError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
    model = Seq2Seq(config)
    try:
        model.load_state_dict(data["state_dict"], strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: config and weights do not match ({one_line(exc)})",
                              "use the config the weights were trained with") from None
    return Checkpoint(model.eval(), src_vocab, tgt_vocab, tokenizer, dict(data.get("meta") or {}), text, text_files)


def _tokens(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


Tokens = Annotated[list[Any], BeforeValidator(_tokens)]  # each token: vocab_problems


class _Fields(BaseModel):
    """The types of a checkpoint's top-level fields (strict: nothing is coerced)."""

    model_config = ConfigDict(strict=True, extra="ignore", arbitrary_types_allowed=True)
    config: dict[str, Any]
    src_vocab: Tokens = Field(min_length=1)
    tgt_vocab: Tokens = Field(min_length=1)
    specials: Optional[dict[str, Any]] = None
    tokenizer: str = Field(default="char", min_length=1, max_length=200)
    state_dict: dict[str, Any]
    meta: Optional[dict[str, Any]] = None
    text: Optional[dict[str, Any]] = None
    text_files: Optional[dict[str, bytes]] = None


def _check_fields(path: Path, data: dict[str, Any]) -> None:
    """``CheckpointError`` naming every top-level field of the wrong type, every vocabulary
    token that is not a string, empty, duplicated or not valid Unicode (with its side and id),
    and ``specials`` other than the format-1 ids this format fixes."""
    from ..schema import problems as schema_problems

    fix = "save it with s2s_export.models.save_checkpoint"
    try:
        _Fields.model_validate(data)
    except ValidationError as exc:
        raise CheckpointError(schema_problems(exc, str(path), fix)) from None
    found: list[Problem] = []
    for key, side in (("src_vocab", "source"), ("tgt_vocab", "target")):
        found += [Problem(f"{path}: {p} ({key})", fix) for p in vocab_problems(list(data[key]), FORMAT1, None, side)]
    specials = data.get("specials")
    if specials is not None and specials != SPECIAL_IDS:
        found.append(Problem(f"{path}: specials {specials!r} differ from the ids this checkpoint format fixes "
                             f"({SPECIAL_IDS}; the vocabularies start with {list(SPECIALS)})", fix))
    if found:
        raise CheckpointError(found)


def _text(path: Path, data: dict[str, Any]) -> tuple[Text | None, dict[str, bytes]]:
    """The optional ``text``/``text_files`` of a checkpoint, validated (``CheckpointError``)."""
    if data.get("text") is None:
        return None, {}
    try:
        text = Text.model_validate(data["text"])
    except ValueError as exc:
        raise CheckpointError(f"{path}: its text section is invalid ({one_line(exc, 200)})",
                              "save it with s2s_export.models.save_checkpoint") from None
    files = data.get("text_files") or {}
    needed = {f for f in (text.src.file, text.tgt.file) if f is not None}
    if not isinstance(files, dict) or not all(isinstance(files.get(n), bytes) for n in needed):
        raise CheckpointError(f"{path}: the tokenizer files {sorted(needed)} are not in the checkpoint",
                              "save it with s2s_export.models.save_checkpoint")
    return text, {n: files[n] for n in needed}
