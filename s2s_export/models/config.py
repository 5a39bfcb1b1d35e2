"""``ModelConfig``: the one frozen description of every model in the zoo, and its validation."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, Literal

from pydantic import ConfigDict, ValidationError
from pydantic.dataclasses import dataclass

from ..errors import ConfigError, Problem

Cell = Literal["lstm", "gru"]
AttentionType = Literal[
    "none", "dot", "general", "concat", "additive", "local-m", "local-p", "multihead"
]
Placement = Literal["top", "layerwise"]
Query = Literal["post", "pre"]
Bridge = Literal["zero", "copy", "linear"]

CELLS = ("lstm", "gru")
ATTENTIONS = ("none", "dot", "general", "concat", "additive", "local-m", "local-p", "multihead")
PLACEMENTS = ("top", "layerwise")
QUERIES = ("post", "pre")
BRIDGES = ("zero", "copy", "linear")


# upper bounds: beyond them a config is a corrupted or hostile document, not a model
LIMITS = {"src_vocab_size": 10_000_000, "tgt_vocab_size": 10_000_000, "emb_size": 65_536, "enc_hidden": 65_536,
          "dec_hidden": 65_536, "enc_layers": 64, "dec_layers": 64, "heads": 1024, "window": 100_000}


@dataclass(frozen=True, config=ConfigDict(strict=True, extra="forbid"))
class ModelConfig:
    """Architecture of one encoder-decoder.

    Types are checked when it is built (a pydantic dataclass, strict: ``enc_layers='2'`` is
    refused, not coerced); ``problems``/``validate`` check the values and their consistency.

    Sizes: ``enc_hidden`` is per direction, so the encoder memory width is
    ``M = enc_hidden * (2 if bidirectional else 1)``; every decoder layer has width ``dec_hidden``.

    ``query``: ``post`` = Luong (attention reads the state after the recurrent update h_t);
    ``pre`` = Bahdanau (attention reads the top-layer state before the update s_{t-1} and the
    context is concatenated with the first decoder layer's input).
    """

    src_vocab_size: int
    tgt_vocab_size: int
    cell: Cell = "lstm"
    emb_size: int = 64
    enc_hidden: int = 64
    dec_hidden: int = 128
    enc_layers: int = 1
    dec_layers: int = 1
    bidirectional: bool = True
    attention: AttentionType = "general"
    placement: Placement = "top"
    query: Query = "post"
    heads: int = 4
    window: int = 5
    input_feeding: bool = True
    bridge: Bridge = "linear"
    dropout: float = 0.0

    @property
    def memory_size(self) -> int:
        """M: width of the encoder memory h̄_s."""
        return self.enc_hidden * (2 if self.bidirectional else 1)

    def problems(self) -> list[Problem]:
        """Every inconsistency in the configuration, each with its fix."""
        p: list[Problem] = []

        def bad(cond: bool, what: str, fix: str) -> None:
            if cond:
                p.append(Problem(what, fix))

        bad(self.cell not in CELLS, f"cell {self.cell!r} is unknown", f"use one of {CELLS}")
        bad(self.attention not in ATTENTIONS, f"attention {self.attention!r} is unknown",
            f"use one of {ATTENTIONS}")
        bad(self.placement not in PLACEMENTS, f"placement {self.placement!r} is unknown",
            f"use one of {PLACEMENTS}")
        bad(self.query not in QUERIES, f"query {self.query!r} is unknown", f"use one of {QUERIES}")
        bad(self.bridge not in BRIDGES, f"bridge {self.bridge!r} is unknown", f"use one of {BRIDGES}")
        for name, limit in LIMITS.items():
            value = int(getattr(self, name))
            bad(not 1 <= value <= limit, f"{name} must be within 1..{limit:,} (got {value})",
                f"set {name} to a positive integer of a sensible size")
        bad(not 0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1) (got {self.dropout})",
            "set dropout between 0 and 1")
        bad(self.attention == "dot" and self.dec_hidden != self.memory_size,
            f"dot attention needs dec_hidden == memory size ({self.dec_hidden} != {self.memory_size})",
            "set dec_hidden to enc_hidden * directions, or use 'general'")
        bad(self.attention == "multihead" and self.dec_hidden % max(self.heads, 1) != 0,
            f"multihead needs dec_hidden divisible by heads ({self.dec_hidden} % {self.heads})",
            "choose heads that divide dec_hidden")
        bad(self.bridge == "copy" and self.dec_hidden != self.memory_size,
            f"copy bridge needs dec_hidden == enc_hidden * directions ({self.dec_hidden} != "
            f"{self.memory_size})", "use bridge 'linear' or match the sizes")
        bad(self.bridge == "copy" and self.enc_layers != self.dec_layers,
            f"copy bridge needs enc_layers == dec_layers ({self.enc_layers} != {self.dec_layers})",
            "use bridge 'linear' or match the layer counts")
        bad(self.attention == "none" and self.input_feeding,
            "input feeding needs an attention", "set input_feeding=False or pick an attention")
        bad(self.attention == "none" and self.placement == "layerwise",
            "layerwise placement needs an attention", "use placement 'top'")
        bad(self.placement == "layerwise" and self.query == "pre",
            "query 'pre' (context fed into the first layer) is only defined for placement 'top'",
            "use query 'post' with layerwise attention")
        return p

    def validate(self) -> "ModelConfig":
        problems = self.problems()
        if problems:
            raise ConfigError(problems)
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}", f"known keys: {sorted(known)}")
        missing = [k for k in ("src_vocab_size", "tgt_vocab_size") if k not in d]
        if missing:
            raise ConfigError(f"config lacks {missing}", "add the vocabulary sizes")
        try:
            config = cls(**d)
        except ValidationError as exc:
            raise ConfigError([Problem(f"config {'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r:.40})",
                                       "fix that value in the config") for e in exc.errors(include_url=False)]
                              ) from None
        return config.validate()
