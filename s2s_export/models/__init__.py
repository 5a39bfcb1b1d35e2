"""Model zoo: ``ModelConfig``, presets, the ``Seq2Seq`` family and the checkpoint format."""

from .config import ModelConfig
from .presets import PRESETS, preset_config
from .seq2seq import Seq2Seq

__all__ = ["ModelConfig", "PRESETS", "preset_config", "Seq2Seq"]

from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint  # noqa: E402

__all__ += ["Checkpoint", "load_checkpoint", "save_checkpoint"]
