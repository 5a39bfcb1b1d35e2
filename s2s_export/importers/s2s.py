"""The zoo's own checkpoints (``model.pt`` from ``s2s train`` or ``save_checkpoint``): the
format-1 conventions (pad 0, bos 1, eos 2, unk 3 on both sides, EOS appended to sources) and the
``s2s`` search style with its defaults (greedy, max_length 200)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..conventions import Framing, SearchDefaults
from .base import ImportedModel

FORMAT = "s2s"


def detect(path: Path) -> bool:
    """Any file the other importers do not claim (tried last): ``load`` says precisely what is
    wrong with a file that is not an s2s-export checkpoint."""
    return path.is_file()


def load(path: Path, trust_pickle: bool = False) -> ImportedModel:
    from ..models import load_checkpoint

    ckpt = load_checkpoint(path, trust_pickle=trust_pickle)
    return ImportedModel(model=ckpt.model, src_vocab=list(ckpt.src_vocab.tokens), tgt_vocab=list(ckpt.tgt_vocab.tokens),
                         tokenizer=ckpt.tokenizer, framing=Framing(), search=SearchDefaults(),
                         model_config=ckpt.config.to_dict(), format=FORMAT, meta=dict(ckpt.meta),
                         text=ckpt.text, text_files=dict(ckpt.text_files))


def describe(path: Path) -> dict[str, Any]:
    from ..models import load_checkpoint

    ckpt = load_checkpoint(path)
    cfg = ckpt.config
    arch = (f"{cfg.enc_layers}-layer {'bidirectional ' if cfg.bidirectional else ''}{cfg.cell.upper()} encoder, "
            f"{cfg.dec_layers}-layer decoder, attention {cfg.attention} ({cfg.placement})"
            + (", input feeding" if cfg.input_feeding else "") + f", bridge {cfg.bridge}")
    return {"architecture": arch, "unsupported": []}
