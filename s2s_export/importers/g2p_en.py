"""Importer for g2p_en (package ``g2p-en`` 2.1.0), the English grapheme-to-phoneme model inside
many TTS front ends: its weights ``g2p_en/checkpoint20.npz`` become a module implementing the
decoding contract whose greedy decode prints what ``G2p.predict(word)`` returns.

What g2p_en does (``g2p_en/g2p.py`` of g2p-en 2.1.0, read, never imported):

* ``G2p.encode``: the word's characters plus ``</s>``, each looked up in ``graphemes``
  (unknown -> ``<unk>``); no ``<s>`` on the source. ``G2p.__call__`` lowercases text (and
  strips accents, expands numbers, keeps ``[ a-z'.,?!-]``) before it reaches ``predict``.
* ``G2p.predict``: a one-layer GRU (``G2p.gru``/``G2p.grucell``: PyTorch's gate layout r, z, n,
  with ``b_hh`` inside ``r * (W_hn h + b_hn)``) over the source from a zero state; the decoder,
  one ``grucell`` starting from the encoder's last state, no attention, is fed ``<s>`` (id 2)
  first, then its own argmax of ``fc_w h + fc_b``; it stops at ``</s>`` (id 3, not output)
  or after 20 predicted tokens.
* Weights (``G2p.load_variables``): ``enc_emb`` [29,E], ``enc_w_ih`` [3H,E], ``enc_w_hh``
  [3H,H], ``enc_b_ih``/``enc_b_hh`` [3H], the same ``dec_*`` with ``dec_emb`` [74,E], ``fc_w``
  [74,H], ``fc_b`` [74] (E = H = 256 in the shipped file; the comments there say 64/128).

Here: ``G2pEnModel`` (an ``nn.GRU`` over ``pack_padded_sequence`` as encoder, the step as plain
matmuls and gates, ``log_softmax`` output), search defaults greedy with ``max_length`` 20 (our
length counts EOS: 19 phonemes + ``</s>`` is 20 tokens, and a row still going after 20 phonemes
stops there without EOS, exactly predict's two ways out).
"""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from ..conventions import Framing, SearchDefaults, Text, TextSide
from ..errors import CheckpointError, MissingDependencyError, Problem, one_line
from ..models.seq2seq import gru_cell
from .base import ImportedModel

FORMAT = "g2p_en"
PACKAGE, PACKAGE_VERSION = "g2p-en", "2.1.0"
CHECKPOINT = "checkpoint20.npz"
INSTALL = f"pip install {PACKAGE}=={PACKAGE_VERSION}"

# The two symbol lists of G2p.__init__ (g2p-en 2.1.0, g2p_en/g2p.py), in id order.
GRAPHEMES = ("<pad>", "<unk>", "</s>", *"abcdefghijklmnopqrstuvwxyz")
PHONEMES = ("<pad>", "<unk>", "<s>", "</s>",
            "AA0", "AA1", "AA2", "AE0", "AE1", "AE2", "AH0", "AH1", "AH2", "AO0", "AO1", "AO2",
            "AW0", "AW1", "AW2", "AY0", "AY1", "AY2", "B", "CH", "D", "DH", "EH0", "EH1", "EH2",
            "ER0", "ER1", "ER2", "EY0", "EY1", "EY2", "F", "G", "HH", "IH0", "IH1", "IH2", "IY0",
            "IY1", "IY2", "JH", "K", "L", "M", "N", "NG", "OW0", "OW1", "OW2", "OY0", "OY1", "OY2",
            "P", "R", "S", "SH", "T", "TH", "UH0", "UH1", "UH2", "UW", "UW0", "UW1", "UW2", "V", "W",
            "Y", "Z", "ZH")
MAX_PREDICTED = 20  # G2p.predict: `for i in range(20)`

# array name -> shape, with E, H, S (graphemes), T (phonemes) symbolic
ARRAYS: dict[str, tuple[str, ...]] = {
    "enc_emb": ("S", "E"), "enc_w_ih": ("3H", "E"), "enc_w_hh": ("3H", "H"), "enc_b_ih": ("3H",), "enc_b_hh": ("3H",),
    "dec_emb": ("T", "E"), "dec_w_ih": ("3H", "E"), "dec_w_hh": ("3H", "H"), "dec_b_ih": ("3H",), "dec_b_hh": ("3H",),
    "fc_w": ("T", "H"), "fc_b": ("T",),
}


class G2pEnModel(nn.Module):
    """g2p_en's encoder-decoder under the decoding contract (float32, eval mode).

    ``encode(src [B,S] int64, src_lengths [B] int64)`` -> static ``{"src_mask": [B,S] bool}``,
    state ``{"h": [B,H] float32}`` (the encoder GRU's final state, padding ignored).
    ``decode_step(tokens [B] int64, static, state)`` -> ``log_probs [B,74]`` float32,
    ``{"h": [B,H]}``, ``attn [B,S]`` float32 zeros (no attention). Ids: source ``<pad>`` 0,
    ``<unk>`` 1, ``</s>`` 2 (no bos); target ``<pad>`` 0, ``<unk>`` 1, ``<s>`` 2, ``</s>`` 3."""

    src_pad_id, src_bos_id, src_eos_id, src_unk_id = 0, None, 2, 1
    tgt_pad_id, tgt_bos_id, tgt_eos_id, tgt_unk_id = 0, 2, 3, 1

    def __init__(self, emb_size: int = 256, hidden_size: int = 256) -> None:
        super().__init__()
        self.src_vocab_size, self.tgt_vocab_size = len(GRAPHEMES), len(PHONEMES)
        self.config = {"format": FORMAT, "cell": "gru", "layers": 1, "attention": "none",
                       "emb_size": emb_size, "hidden_size": hidden_size,
                       "src_vocab_size": self.src_vocab_size, "tgt_vocab_size": self.tgt_vocab_size}
        self.src_emb = nn.Embedding(self.src_vocab_size, emb_size)
        self.encoder = nn.GRU(emb_size, hidden_size, batch_first=True)
        self.tgt_emb = nn.Embedding(self.tgt_vocab_size, emb_size)
        self.decoder = nn.GRUCell(emb_size, hidden_size)
        self.fc = nn.Linear(hidden_size, self.tgt_vocab_size)

    def encode(self, src: Tensor, src_lengths: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        emb = self.src_emb(src)  # [B,S,E]
        packed = pack_padded_sequence(emb, src_lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, h_n = self.encoder(packed)  # [1,B,H]; the output sequence is not needed (no attention)
        src_mask = torch.arange(src.size(1), device=src.device).unsqueeze(0) < src_lengths.unsqueeze(1)  # [B,S]
        return {"src_mask": src_mask}, {"h": h_n[0]}

    def decode_step(self, tokens: Tensor, static: dict[str, Tensor], state: dict[str, Tensor]
                    ) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        h = gru_cell(self.tgt_emb(tokens), state["h"], self.decoder)  # [B,H]
        log_probs = torch.log_softmax(self.fc(h), dim=-1)  # [B,T]
        return log_probs, {"h": h}, torch.zeros_like(static["src_mask"], dtype=log_probs.dtype)


# ------------------------------------------------------------------ reading the npz

def _fix() -> str:
    return f"pass g2p_en's {CHECKPOINT} (from `{INSTALL}`), or `s2s-export --from g2p_en`"


def _read(path: Path) -> dict[str, np.ndarray]:
    """Every array of the npz (no pickles), or a one-line ``CheckpointError``."""
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a g2p_en checkpoint", _fix())
    if not path.is_file():
        raise CheckpointError(f"g2p_en checkpoint {path} does not exist", _fix())
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: np.asarray(npz[name]) for name in npz.files}
    except Exception as exc:  # truncated zip (BadZipFile, zlib.error, EOFError), object arrays (ValueError)...
        raise CheckpointError(f"{path} is not a readable .npz file ({type(exc).__name__}: {one_line(exc, 120)})",
                              _fix()) from None


def _sizes(path: Path, arrays: dict[str, np.ndarray]) -> tuple[int, int]:
    """(E, H) from the arrays, after checking names, dtypes and every shape (one problem each)."""
    missing = [n for n in ARRAYS if n not in arrays]
    if missing:
        raise CheckpointError(f"{path} is not a g2p_en checkpoint (it lacks the arrays {', '.join(missing)})",
                              _fix())
    E, H3 = arrays["enc_emb"].shape[-1], arrays["enc_w_ih"].shape[0]
    sizes = {"S": len(GRAPHEMES), "T": len(PHONEMES), "E": E, "H": H3 // 3, "3H": H3}
    problems = []
    if H3 % 3 or H3 == 0:
        problems.append(Problem(f"{path}: enc_w_ih has {H3} rows, not 3 x hidden size", _fix()))
    for name, dims in ARRAYS.items():
        a = arrays[name]
        want = tuple(sizes[d] for d in dims)
        if a.shape != want:
            why = {"S": f" (g2p_en has {len(GRAPHEMES)} graphemes)",
                   "T": f" (g2p_en has {len(PHONEMES)} phonemes)"}.get(dims[0], "")
            problems.append(Problem(f"{path}: {name} has shape {list(a.shape)}, expected {list(want)}{why}", _fix()))
        elif a.dtype.kind != "f":
            problems.append(Problem(f"{path}: {name} has dtype {a.dtype}, not floating point", _fix()))
        elif not np.isfinite(a).all():
            problems.append(Problem(f"{path}: {name} holds NaN or infinite values", _fix()))
    if problems:
        raise CheckpointError(problems)
    return int(E), int(H3 // 3)


def _weights(arrays: dict[str, np.ndarray]) -> dict[str, Tensor]:
    """``G2pEnModel``'s state dict from g2p_en's arrays (the gate layouts are the same)."""
    t = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in arrays.items() if k in ARRAYS}
    return {
        "src_emb.weight": t["enc_emb"],
        "encoder.weight_ih_l0": t["enc_w_ih"], "encoder.weight_hh_l0": t["enc_w_hh"],
        "encoder.bias_ih_l0": t["enc_b_ih"], "encoder.bias_hh_l0": t["enc_b_hh"],
        "tgt_emb.weight": t["dec_emb"],
        "decoder.weight_ih": t["dec_w_ih"], "decoder.weight_hh": t["dec_w_hh"],
        "decoder.bias_ih": t["dec_b_ih"], "decoder.bias_hh": t["dec_b_hh"],
        "fc.weight": t["fc_w"], "fc.bias": t["fc_b"],
    }


# ------------------------------------------------------------------ importer interface

def detect(path: Path) -> bool:
    """Whether ``path`` is an ``.npz`` holding g2p_en's arrays (reads the zip's member names
    only; never raises)."""
    path = Path(path)
    if path.suffix.lower() != ".npz" or not path.is_file():
        return False
    try:
        with zipfile.ZipFile(path) as z:
            names = {n[:-4] for n in z.namelist() if n.endswith(".npy")}
    except (OSError, zipfile.BadZipFile, ValueError):
        return False
    return set(ARRAYS) <= names


def load(path: Path, trust_pickle: bool = False) -> ImportedModel:
    """g2p_en's ``checkpoint20.npz`` -> ``ImportedModel`` (``trust_pickle`` is ignored: the
    npz is read with ``allow_pickle=False``). ``CheckpointError`` (exit 4), one line per
    problem: a missing, truncated or foreign file, arrays of the wrong shape or dtype."""
    path = Path(path)
    arrays = _read(path)
    emb, hidden = _sizes(path, arrays)
    model = G2pEnModel(emb, hidden)
    model.load_state_dict(_weights(arrays))
    model.eval()
    config = {**model.config, "checkpoint": path.name, "tool": f"{PACKAGE} {PACKAGE_VERSION}",
              "normalize": "lower"}  # G2p.__call__ lowercases text before predict
    return ImportedModel(
        model=model, src_vocab=list(GRAPHEMES), tgt_vocab=list(PHONEMES), tokenizer="char:word",
        text=Text(src=TextSide(kind="char", lowercase=True), tgt=TextSide(kind="word")),  # G2p.__call__: lower()
        framing=Framing(prepend_bos=False, append_eos=True, decoder_start=None),  # start: target <s>
        search=SearchDefaults(style="s2s", beam_size=1, n_best=1, max_length=MAX_PREDICTED),
        model_config=config, format=FORMAT)


def describe(path: Path) -> dict[str, Any]:
    """What the file holds, for ``s2s inspect`` (``CheckpointError`` as ``load``)."""
    path = Path(path)
    arrays = _read(path)
    emb, hidden = _sizes(path, arrays)
    return {
        "format": FORMAT, "tool": f"{PACKAGE} {PACKAGE_VERSION}",
        "architecture": f"GRU encoder (1 layer, {hidden}) -> GRU decoder (1 layer, {hidden}), no attention",
        "emb_size": emb, "hidden_size": hidden,
        "src_vocab_size": len(GRAPHEMES), "tgt_vocab_size": len(PHONEMES),
        "parameters": int(sum(arrays[n].size for n in ARRAYS)),
        "search": f"greedy, at most {MAX_PREDICTED} phonemes",
        "unsupported": [],
    }


def package_checkpoint() -> Path:
    """``checkpoint20.npz`` of the installed ``g2p_en`` package, found without importing it
    (importing g2p_en downloads nltk data). ``MissingDependencyError`` (exit 2) with the install
    command when the package is missing; ``CheckpointError`` (exit 4) when its npz is."""
    spec = importlib.util.find_spec("g2p_en")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("the g2p_en package is not installed", f"install it: {INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"the installed g2p_en package has no {CHECKPOINT} ({path})",
                              f"reinstall it: {INSTALL} --force-reinstall")
    return path


__all__ = ["ARRAYS", "FORMAT", "G2pEnModel", "GRAPHEMES", "MAX_PREDICTED", "PHONEMES", "describe", "detect",
           "load", "package_checkpoint"]
