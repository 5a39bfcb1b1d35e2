"""What every importer returns: a module implementing the decoding contract, with everything the
bundle needs to decode exactly as the tool that trained it.

An importer is one module per tool (``importers/<tool>.py``, as CTranslate2 keeps one converter
per framework) exposing::

    FORMAT: str                                   # "opennmt", "joeynmt", "g2p_en", "s2s"
    def detect(path: Path) -> bool                # cheap: file names and magic, no torch.load
    def load(path: Path, trust_pickle: bool = False) -> ImportedModel
    def describe(path: Path) -> dict[str, Any]    # for `s2s inspect`: format, architecture,
                                                  # "unsupported": [what is refused, by name]

``load`` builds the module from the checkpoint's tensors and the tool's own files alone (the
tool is never imported), refuses what it cannot reproduce with one ``CheckpointError`` line per
problem (naming the feature), and never executes code from the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pathlib import Path

from ..conventions import Framing, SearchDefaults, Text


@dataclass
class ImportedModel:
    """A model ready for ``export_model``.

    ``model``: an ``nn.Module`` implementing the decoding contract (``encode``/``decode_step``,
    float32, eval mode) with its special ids as attributes (``src_pad_id`` ... ``tgt_unk_id``,
    int or None; ``conventions.specials_of``). ``src_vocab``/``tgt_vocab``: the tool's token
    lists, id order (real tokens, fillers included). ``tokenizer``: the bundle's tokenizer spec
    (``char``, ``word`` or ``SRC:TGT``). ``framing``/``search``: the tool's conventions and its
    decoding defaults. ``model_config``: JSON-able description stored in the manifest
    (``{"format": FORMAT, ...}``). ``warnings``: one line each, printed by the CLI. ``meta``:
    what the checkpoint says of its training (the zoo's ``task``, used by ``s2s verify``).
    ``text``: both sides' text processing (``conventions.Text``: tokenizers with their files,
    normalisation) when ``tokenizer`` (``char``/``word``/``SRC:TGT``) does not say it all;
    ``text_files``: the tokenizer files it names (bundle file name -> path or bytes)."""

    model: Any
    src_vocab: list[str]
    tgt_vocab: list[str]
    tokenizer: str
    framing: Framing
    search: SearchDefaults
    model_config: dict[str, Any]
    format: str
    warnings: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)  # training facts (the zoo: its task)
    text: Text | None = None  # the text processing, when more than ``tokenizer`` says
    text_files: dict[str, Path | bytes] = field(default_factory=dict)  # bundle file name -> its content


__all__ = ["ImportedModel"]
