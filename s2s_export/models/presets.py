"""Named architectures (``s2s train --preset NAME``).

Sizes are small defaults fit for the CPU tasks; ``preset_config(name, ..., **overrides)`` changes
any field.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .config import ModelConfig

PRESETS: dict[str, dict[str, Any]] = {
    # The write-up's example 1: multilayer LSTM, multi-head global attention at the top layer,
    # its output concatenated with the decoder input (query = state before the update).
    "seed-global-mha": dict(cell="lstm", enc_layers=2, dec_layers=2, bidirectional=False,
                            enc_hidden=128, dec_hidden=128, attention="multihead", heads=4,
                            placement="top", query="pre", input_feeding=False, bridge="copy"),
    # Example 2: attention at every decoder layer, widths kept constant (tanh(W_l [c_l; h_l])).
    "seed-layerwise": dict(cell="lstm", enc_layers=2, dec_layers=2, bidirectional=False,
                           enc_hidden=128, dec_hidden=128, attention="multihead", heads=4,
                           placement="layerwise", input_feeding=False, bridge="copy"),
    # Example 3: GRU with local attention over a window (Luong local-p).
    "seed-local-gru": dict(cell="gru", enc_layers=2, dec_layers=2, bidirectional=False,
                           enc_hidden=128, dec_hidden=128, attention="local-p", window=4,
                           input_feeding=False, bridge="copy"),
    "luong-dot": dict(cell="lstm", bidirectional=True, enc_hidden=64, dec_hidden=128,
                      attention="dot", input_feeding=True, bridge="copy"),
    "luong-general": dict(cell="lstm", bidirectional=True, enc_hidden=64, dec_hidden=128,
                          attention="general", input_feeding=True, bridge="linear"),
    "luong-concat": dict(cell="lstm", bidirectional=True, enc_hidden=64, dec_hidden=128,
                         attention="concat", input_feeding=True, bridge="linear"),
    "luong-local-m": dict(cell="lstm", bidirectional=True, enc_hidden=64, dec_hidden=128,
                          attention="local-m", window=4, input_feeding=True, bridge="linear"),
    "luong-local-p": dict(cell="lstm", bidirectional=True, enc_hidden=64, dec_hidden=128,
                          attention="local-p", window=4, input_feeding=True, bridge="linear"),
    "bahdanau": dict(cell="gru", bidirectional=True, enc_hidden=64, dec_hidden=128,
                     attention="additive", query="pre", input_feeding=False, bridge="linear"),
    "no-attention": dict(cell="lstm", bidirectional=False, enc_hidden=128, dec_hidden=128,
                         attention="none", input_feeding=False, bridge="copy"),
}


def preset_config(name: str, src_vocab_size: int, tgt_vocab_size: int, **overrides: Any) -> ModelConfig:
    """The ``ModelConfig`` of a named preset for the given vocabulary sizes."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}", f"choose one of: {', '.join(PRESETS)}")
    fields_ = {**PRESETS[name], **overrides}
    return ModelConfig(src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size, **fields_).validate()
