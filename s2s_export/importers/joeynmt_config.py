"""The parts of a Joey NMT 2.3 ``config.yaml`` the importer reads, validated (pydantic, strict).

Types are never coerced (``hidden_size: '32'``, ``beam_size: 5.7`` or ``True`` are refused, not
read as 32, 5 or 1; a YAML ``yes``/``no`` is a boolean, a quoted ``'no'`` is not: Joey NMT would
read it as true). Ranges: sizes and layer counts at least 1 (at most the zoo's limits), beam
and n-best sizes at least 1, ``level`` one of Joey's (``word``, ``char``, ``bpe``;
tokenizers.py ``_build_tokenizer`` refuses others), ``tokenizer_type`` one of
``sentencepiece``/``subword-nmt``, ``batch_type`` ``sentence``/``token`` in any case (config.py
``parse_test_args`` lowercases it). Keys the importer does not read are left alone.
``max_output_length`` may be negative: Joey 2.3's ``search`` then uses 1.5 x the longest source
(search.py), as when it is unset.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import CheckpointError
from ..models.config import LIMITS


class _Section(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class Embeddings(_Section):
    embedding_dim: int = Field(default=64, ge=1, le=LIMITS["emb_size"])
    scale: bool = False


class Encoder(_Section):
    type: str = "recurrent"
    rnn_type: str = "gru"
    hidden_size: int = Field(default=1, ge=1, le=LIMITS["enc_hidden"])
    num_layers: int = Field(default=1, ge=1, le=LIMITS["enc_layers"])
    bidirectional: bool = True
    activation: str = "tanh"
    embeddings: Embeddings = Embeddings()


class Decoder(Encoder):
    type: str = "transformer"
    hidden_size: Optional[int] = Field(default=None, ge=1, le=LIMITS["dec_hidden"])  # type: ignore[assignment]
    attention: str = "bahdanau"
    input_feeding: bool = True
    init_hidden: str = "bridge"


class Model(_Section):
    encoder: Encoder = Encoder()
    decoder: Decoder = Decoder()
    tied_embeddings: bool = False
    tied_softmax: bool = False


class TokenizerCfg(_Section):
    model_file: Optional[str] = None
    codes: Optional[str] = None
    separator: str = Field(default="@@", min_length=1, max_length=8)
    pretokenizer: str = "none"


class Side(_Section):
    level: Literal["word", "char", "bpe"]
    lowercase: bool = False
    normalize: bool = False
    tokenizer_type: Optional[Literal["sentencepiece", "subword-nmt"]] = None
    bpe_type: Optional[Literal["sentencepiece", "subword-nmt"]] = None  # Joey's older name for it
    tokenizer_cfg: TokenizerCfg = TokenizerCfg()

    @property
    def subword_kind(self) -> str:
        """Joey 2.3's choice for ``level: bpe``: ``tokenizer_type``, else ``bpe_type``, else
        sentencepiece (tokenizers.py ``_build_tokenizer``)."""
        return self.tokenizer_type or self.bpe_type or "sentencepiece"


class SpecialSymbols(_Section):
    unk_token: str = Field(default="<unk>", min_length=1)
    pad_token: str = Field(default="<pad>", min_length=1)
    bos_token: str = Field(default="<s>", min_length=1)
    eos_token: str = Field(default="</s>", min_length=1)
    unk_id: int = Field(default=0, ge=0)
    pad_id: int = Field(default=1, ge=0)
    bos_id: int = Field(default=2, ge=0)
    eos_id: int = Field(default=3, ge=0)
    sep_token: Optional[str] = Field(default=None, min_length=1)
    lang_tags: list[str] = []


class Data(_Section):
    src: Side = Side(level="word")
    trg: Side = Side(level="word")
    special_symbols: SpecialSymbols = SpecialSymbols()


class Testing(_Section):
    beam_size: int = Field(default=1, ge=1, le=1024)
    n_best: int = Field(default=1, ge=1, le=1024)
    beam_alpha: float = -1.0  # NaN is allowed: Joey applies the penalty only when > 0
    alpha: Optional[float] = None  # obsolete name of beam_alpha, which it overrides
    max_output_length: int = Field(default=-1, le=1_000_000)
    min_output_length: int = 1
    generate_unk: bool = True
    no_repeat_ngram_size: int = -1
    repetition_penalty: float = -1.0
    batch_size: int = Field(default=64, ge=1, le=1 << 20)
    batch_type: str = "sentence"

    @field_validator("batch_type")
    @classmethod
    def _batch_type(cls, value: str) -> str:
        if value.lower() not in ("sentence", "token"):
            raise ValueError(f"batch_type {value!r} is neither 'sentence' nor 'token'")
        return value.lower()


class JoeyConfig(_Section):
    model: Model
    data: Data = Data()
    testing: Testing = Testing()


def validate_config(cfg: dict[str, Any], where: str) -> JoeyConfig:
    """The validated config (``CheckpointError``: one line per problem, naming its YAML key path
    as ``model.decoder.hidden_size``, at most 6 then a count)."""
    from ..schema import problems

    try:
        return JoeyConfig.model_validate(cfg)
    except ValidationError as exc:
        raise CheckpointError(problems(exc, where, "fix that value in config.yaml (as Joey NMT 2.3 reads it) or "
                                               "restore the config.yaml written with the model")) from None


__all__ = ["JoeyConfig", "validate_config"]
