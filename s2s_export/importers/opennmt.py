"""Importer for OpenNMT-py RNN checkpoints (``model_step_N.pt``): 3.x files and 1.x/2.x files.

A checkpoint is a dict ``{"model": state dict without the generator, "generator": its state
dict, "vocab": ..., "opt": argparse.Namespace (the training options), "optim": ...}``
(onmt/models/model_saver.py). ``vocab`` is, in 3.x, ``{"src": [tokens], "tgt": [tokens],
"data_task", "decoder_start_token"}``; in 1.x/2.x the pickled torchtext fields
(``opennmt_legacy``). Reading never runs code from the file: 3.x loads with
``torch.load(weights_only=True)`` allowing ``argparse.Namespace`` and nothing else; 1.x/2.x
adds the plain-data stand-ins of ``opennmt_legacy.STAND_INS`` under the real class paths;
any other global is refused (one ``CheckpointError`` line naming it) unless ``trust_pickle``.

The module (``opennmt_model.OpenNMTRNN``) is built from the tensors (sizes) and ``opt``
(kinds: ``encoder_type``, ``rnn_type``, ``global_attention``, ``input_feed``, ``bridge``), both
checked against each other; what it cannot reproduce is refused by name, one line each (copy
attention, coverage attention, context gates, Transformer/CNN/mean encoders or decoders,
sparsemax, position encoding, source features, SRU, LoRA/quantized layers, language models,
unequal encoder/decoder layers or sizes, weights stored outside the file).

Conventions (OpenNMT-py 3.5.1 onmt_translate):

* vocabularies as stored, fillers (``averyunlikelytoken<N>``, 3.x pads to a multiple of 8 by
  default) included;
  special ids read from the tokens ``<blank>`` (pad), ``<s>``, ``</s>``, ``<unk>`` (a 1.x/2.x
  field's own ``pad_token``/``init_token``/``eos_token``/``unk_token``); a 1.x/2.x source
  vocabulary has no ``<s>``/``</s>``;
* framing: nothing is added to sources (no BOS, no EOS); the decoder starts from
  ``vocab["decoder_start_token"]`` (default ``<s>``);
* text: ``word`` (whitespace split, printed space-separated, as onmt_translate reads and prints
  tokens), or the ``sentencepiece``/``bpe`` transform's subword model carried in the bundle
  (``_text``); other transforms are not applied (a warning says so);
* search defaults = onmt_translate's (translate options of onmt/opts.py 3.5.1): beam 5,
  n_best 1, length penalty ``avg`` with alpha 1.0 (cumulative log-prob / (generated tokens
  + 1, the BOS counted)), min_length 0, max_length 250, ``max_length_ratio`` 1.25 as the
  style's batch factor (``int(min(250, 1.25 * longest source of the batch + 5))``), nothing
  banned; style ``opennmt`` (``runtime/styles/opennmt.py``). 1.x/2.x files get the same
  defaults: they decode as OpenNMT-py 3.5.1 decodes them once converted with its
  ``tools/convertv2_v3.py``. The 1.2.0/2.3.0 translators had other defaults (length penalty
  none, max_length 100, no ratio); given those, the style gives their beam-search 1-best
  (tested), but their n-best lists can differ (they stop once beam 0 has finished at any step,
  3.5.1 only when it finishes at the current one) and 1.2's greedy logs the last token's
  log-prob as its score.
"""

from __future__ import annotations

import argparse
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

from ..conventions import Framing, SearchDefaults, Specials, Text, TextSide
from ..errors import CheckpointError, Problem, one_line, unreadable_as_checkpoint_error
from ..text.spec import bundle_name
from . import opennmt_legacy as legacy
from .base import ImportedModel

FORMAT = "opennmt"
SPECIAL_TOKENS = {"pad": "<blank>", "bos": "<s>", "eos": "</s>", "unk": "<unk>"}
FILLER = re.compile(r"^averyunlikelytoken\d+$")
# onmt_translate's defaults (onmt/opts.py 3.5.1 _add_decoding_opts, translate_opts)
TRANSLATE_DEFAULTS: dict[str, Any] = {"beam_size": 5, "n_best": 1, "length_penalty": "avg", "alpha": 1.0,
                                      "min_length": 0, "max_length": 250, "max_length_ratio": 1.25,
                                      "batch_size": 30, "batch_type": "sents"}
_TRUST_HINT = "pass --trust-pickle only if you trust the file's author (it can then run code)"


# ----------------------------------------------------------------------------- reading

def detect(path: Path) -> bool:
    """Whether ``path`` looks like an OpenNMT-py checkpoint: a torch file (zip or legacy) whose
    pickle names ``argparse.Namespace`` (the ``opt``) and has ``generator`` and ``vocab``
    entries. Reads at most 4 MB of it, unpickles nothing."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                pkl = next((n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
                if pkl is None:
                    return False
                head = z.read(pkl)[:4_000_000]
        else:
            with open(path, "rb") as f:
                head = f.read(4_000_000)
    except (OSError, zipfile.BadZipFile, KeyError):
        return False
    return all(word in head for word in (b"argparse", b"Namespace", b"generator", b"vocab"))


def _unsupported_global(exc: Exception) -> str | None:
    """The global a weights-only unpickling error names (torch drops a ``builtins`` prefix)."""
    m = re.search(r"GLOBAL ([\w.]+)", str(exc))
    if not m:
        return None
    name = m.group(1)
    return name if "." in name.strip(".") else "builtins." + name.strip(".")


class _TrustingUnpickler(pickle.Unpickler):
    """``--trust-pickle``: the real classes are looked up, except torchtext/onmt ones (usually
    not installed), which become the stand-ins."""

    def find_class(self, module: str, name: str) -> Any:
        full = f"{module}.{name}"
        if full in legacy.STAND_INS:
            return legacy.STAND_INS[full]
        return super().find_class(module, name)


class _TrustingPickle:
    Unpickler = _TrustingUnpickler
    load = pickle.load
    __name__ = "pickle"


def _load(path: Path, trust_pickle: bool) -> Any:
    """The checkpoint object (3.x: weights and ``argparse.Namespace`` only; else with the 1.x/2.x
    stand-ins; ``trust_pickle``: anything, torchtext/onmt classes as stand-ins)."""
    import torch

    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not an OpenNMT-py checkpoint", "pass the model_step_N.pt file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist", "check the path")
    with unreadable_as_checkpoint_error(path, "pass a complete model_step_N.pt written by onmt_train"):
        try:
            if trust_pickle:
                return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_TrustingPickle)
            try:
                with torch.serialization.safe_globals([argparse.Namespace]):
                    return torch.load(path, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError as exc:
                if not legacy.is_legacy_global(_unsupported_global(exc) or ""):
                    raise
            with torch.serialization.safe_globals([argparse.Namespace, *legacy.safe_globals()]):
                return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            name = _unsupported_global(exc)
            if name:
                raise CheckpointError(f"{path} pickles {name}, which no OpenNMT-py text checkpoint holds and which "
                                      "could run code when loaded (nothing was run)", _TRUST_HINT) from None
            raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({one_line(exc, 160)})",
                                  "pass a model_step_N.pt written by onmt_train") from None


# ----------------------------------------------------------------------------- inspecting

def _opt(data: dict[str, Any]) -> dict[str, Any]:
    opt = data.get("opt")
    if isinstance(opt, argparse.Namespace):
        return dict(vars(opt))
    if isinstance(opt, dict):
        return dict(opt)
    raise ValueError("its 'opt' is not the training options (argparse.Namespace)")


def _vocabs(data: dict[str, Any]) -> tuple[list[str], list[str], dict[str, Any]]:
    """(source tokens, target tokens, {"specials": per side token names, "data_task",
    "decoder_start_token", "src_feats"}) from a 3.x vocab dict (token lists) or 1.x/2.x
    fields."""
    voc = data.get("vocab")
    if isinstance(voc, dict) and isinstance(voc.get("src"), list):
        for side in ("src", "tgt"):
            if not isinstance(voc.get(side), list) or not all(isinstance(t, str) for t in voc[side]):
                raise ValueError(f"its vocab[{side!r}] is not a token list")
        extra = {"specials": {"src": dict(SPECIAL_TOKENS), "tgt": dict(SPECIAL_TOKENS)},
                 "data_task": voc.get("data_task", "seq2seq"),
                 "decoder_start_token": voc.get("decoder_start_token", "<s>"),
                 "src_feats": len(voc.get("src_feats") or [])}
        return list(voc["src"]), list(voc["tgt"]), extra
    src, tgt = legacy.field_vocab(voc, "src"), legacy.field_vocab(voc, "tgt")
    specials = {}
    for side in ("src", "tgt"):
        specials[side] = {"pad": legacy.field_token(voc, side, "pad_token") or "<blank>",
                          "bos": legacy.field_token(voc, side, "init_token"),
                          "eos": legacy.field_token(voc, side, "eos_token"),
                          "unk": legacy.field_token(voc, side, "unk_token") or "<unk>"}
    extra = {"specials": specials, "data_task": "seq2seq", "decoder_start_token": specials["tgt"]["bos"] or "<s>",
             "src_feats": legacy.n_feature_fields(voc, "src")}
    return src, tgt, extra


def _specials(tokens: list[str], names: dict[str, Any]) -> Specials:
    index = {t: i for i, t in reversed(list(enumerate(tokens)))}  # first occurrence
    return Specials(**{k: index.get(v) if isinstance(v, str) else None for k, v in names.items()})


def _refusals(opt: dict[str, Any], extra: dict[str, Any], state: Any) -> list[Problem]:
    """One Problem per feature the module cannot reproduce, named."""
    fix = "only OpenNMT-py RNN models (rnn/brnn encoder, rnn decoder, dot/general/mlp attention) are supported"
    out: list[Problem] = []

    def refuse(cond: Any, what: str) -> None:
        if cond:
            out.append(Problem(what, fix))

    enc, dec = opt.get("encoder_type", "rnn"), opt.get("decoder_type", "rnn")
    refuse(opt.get("model_type", "text") != "text", f"model_type {opt.get('model_type')!r} (only text models)")
    tasks = (extra["data_task"], opt.get("data_task"), opt.get("model_task"))
    refuse(any(task not in (None, "seq2seq") for task in tasks),
           "a language model (data_task/model_task 'lm'), not an encoder-decoder")
    refuse(enc not in ("rnn", "brnn"), f"the {enc!r} encoder (encoder_type; Transformer, CNN and mean encoders "
                                       "are not reproduced)")
    refuse(dec != "rnn", f"the {dec!r} decoder (decoder_type; Transformer and CNN decoders are not reproduced)")
    refuse(opt.get("rnn_type", "LSTM") not in ("LSTM", "GRU"), f"rnn_type {opt.get('rnn_type')!r} (LSTM and GRU only)")
    refuse(opt.get("copy_attn"), "copy attention (copy_attn)")
    refuse(opt.get("coverage_attn"), "coverage attention (coverage_attn)")
    refuse(opt.get("context_gate"), f"context gates (context_gate {opt.get('context_gate')!r})")
    refuse(opt.get("global_attention", "general") not in ("dot", "general", "mlp", "none", None),
           f"global_attention {opt.get('global_attention')!r}")
    refuse(opt.get("global_attention_function", "softmax") != "softmax",
           f"sparsemax attention (global_attention_function {opt.get('global_attention_function')!r})")
    refuse(opt.get("generator_function", "softmax") != "softmax",
           f"a {opt.get('generator_function')!r} generator (generator_function)")
    refuse(opt.get("position_encoding"), "position encoding on the embeddings (position_encoding)")
    refuse(extra["src_feats"] or opt.get("n_src_feats") or opt.get("src_feats_vocab"),
           "source word features (src_feats)")
    refuse(opt.get("lora_layers") or opt.get("lora_embedding"), "LoRA layers (lora_layers)")
    refuse(opt.get("quant_layers"), "quantized layers (quant_layers)")
    refuse(opt.get("model_dtype") not in (None, "fp32", "fp16"), f"model_dtype {opt.get('model_dtype')!r}")
    refuse(not isinstance(state, dict), "no weights in the file ('model' missing: a safetensors-mode checkpoint)")
    return out


def _size(opt: dict[str, Any], *names: str) -> int | None:
    for n in names:
        v = opt.get(n)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def _arch(opt: dict[str, Any], model: dict[str, Any], gen: dict[str, Any], n_src: int, n_tgt: int,
          is_legacy: bool) -> tuple[Any, list[Problem]]:
    """The architecture from the tensors, checked against ``opt``: (OnmtArch or None, problems)."""
    from .opennmt_model import OnmtArch

    problems: list[Problem] = []
    fix = "pass a checkpoint written by onmt_train, unmodified"

    def bad(what: str) -> tuple[None, list[Problem]]:
        problems.append(Problem(what, fix))
        return None, problems

    def shape(name: str) -> tuple[int, ...] | None:
        t = model.get(name)
        return tuple(t.shape) if t is not None and hasattr(t, "shape") else None

    src_e, tgt_e = shape("encoder.embeddings.make_embedding.emb_luts.0.weight"), \
        shape("decoder.embeddings.make_embedding.emb_luts.0.weight")
    if src_e is None or tgt_e is None:
        return bad("its weights lack the encoder or decoder embeddings "
                   "(encoder/decoder.embeddings.make_embedding.emb_luts.0.weight)")
    if src_e[0] != n_src or tgt_e[0] != n_tgt:
        return bad(f"its embeddings have {src_e[0]}/{tgt_e[0]} rows but its vocabularies {n_src}/{n_tgt} tokens")
    brnn = "encoder.rnn.weight_hh_l0_reverse" in model
    if (opt.get("encoder_type") == "brnn" or opt.get("brnn")) != brnn:
        return bad(f"its opt says encoder_type {opt.get('encoder_type')!r} but its encoder is "
                   f"{'bi' if brnn else 'uni'}directional")
    layers = sum(1 for k in model if re.fullmatch(r"encoder\.rnn\.weight_hh_l\d+", k))
    hh = shape("encoder.rnn.weight_hh_l0")
    if not layers or hh is None:
        return bad("its weights lack the encoder RNN (encoder.rnn.weight_hh_l0)")
    rnn_type = str(opt.get("rnn_type", "LSTM"))
    gates = 4 if rnn_type == "LSTM" else 3
    h = hh[1]
    if hh[0] != gates * h:
        return bad(f"its encoder weight_hh_l0 {list(hh)} is not a {rnn_type} of hidden size {h}")
    H = h * (2 if brnn else 1)
    input_feed = "decoder.rnn.layers.0.weight_hh" in model
    dec_layers = sum(1 for k in model if re.fullmatch(
        r"decoder\.rnn\." + (r"layers\.\d+\.weight_hh" if input_feed else r"weight_hh_l\d+"), k))
    if bool(opt.get("input_feed", 1)) != input_feed:
        return bad(f"its opt says input_feed {opt.get('input_feed')!r} but its decoder is "
                   f"{'an InputFeedRNNDecoder' if input_feed else 'a StdRNNDecoder'}")
    if dec_layers != layers:
        problems.append(Problem(f"its encoder has {layers} layers and its decoder {dec_layers}",
                                "only equal layer counts are supported (the decoder starts from the encoder's "
                                "final states)"))
        return None, problems
    dec_hh = shape("decoder.rnn.layers.0.weight_hh" if input_feed else "decoder.rnn.weight_hh_l0")
    if dec_hh is None or dec_hh[1] != H:
        problems.append(Problem(f"its decoder hidden size ({dec_hh and dec_hh[1]}) differs from its encoder's ({H})",
                                "only equal sizes are supported"))
        return None, problems
    attention = opt.get("global_attention", "general") or "none"
    has_out = "decoder.attn.linear_out.weight" in model
    if (attention != "none") != has_out or (attention == "general") != ("decoder.attn.linear_in.weight" in model) \
            or (attention == "mlp") != ("decoder.attn.v.weight" in model):
        return bad(f"its opt says global_attention {attention!r} but its attention weights do not match")
    bridge = "encoder.bridge.0.weight" in model
    if bool(opt.get("bridge", False)) != bridge:
        return bad(f"its opt says bridge {opt.get('bridge')!r} but its weights {'have' if bridge else 'lack'} one")
    if bridge and is_legacy and layers > 1:
        problems.append(Problem(
            f"its bridge mixes the sentences of a batch: OpenNMT-py 1.x/2.x RNNEncoder._bridge views the time-major "
            f"final states of {layers} layers as rows without transposing, so its results depend on the batch",
            "re-train with OpenNMT-py 3.x (which fixed it), or without -bridge"))
        return None, problems
    gen_w = gen.get("weight", gen.get("0.weight")) if isinstance(gen, dict) else None
    if gen_w is None or tuple(gen_w.shape) != (n_tgt, H):
        return bad(f"its generator is not a Linear({H}, {n_tgt}) ('generator' weight "
                   f"{None if gen_w is None else list(gen_w.shape)})")
    arch = OnmtArch(rnn_type=rnn_type, brnn=brnn, layers=layers, hidden=H, src_emb=src_e[1], tgt_emb=tgt_e[1],
                    src_vocab=n_src, tgt_vocab=n_tgt, attention=attention, input_feed=input_feed, bridge=bridge,
                    share_embeddings=bool(opt.get("share_embeddings")),
                    share_decoder_embeddings=bool(opt.get("share_decoder_embeddings")))
    return arch, problems


def _state_dict(arch: Any, model: dict[str, Any], gen: dict[str, Any]) -> dict[str, Any]:
    """OpenNMT-py names -> ``OpenNMTRNN`` names (float32 tensors)."""
    out: dict[str, Any] = {
        "src_emb.weight": model["encoder.embeddings.make_embedding.emb_luts.0.weight"],
        "tgt_emb.weight": model["decoder.embeddings.make_embedding.emb_luts.0.weight"],
        "generator.weight": gen.get("weight", gen.get("0.weight")),
        "generator.bias": gen.get("bias", gen.get("0.bias")),
    }
    for k, v in model.items():
        if k.startswith("encoder.rnn."):
            out["encoder." + k[len("encoder.rnn."):]] = v
        elif k.startswith("encoder.bridge."):
            out["bridge." + k[len("encoder.bridge."):]] = v
        elif k.startswith("decoder.attn."):
            out[k[len("decoder.attn."):]] = v
        elif k.startswith("decoder.rnn.layers."):
            out["cells." + k[len("decoder.rnn.layers."):]] = v
        elif m := re.fullmatch(r"decoder\.rnn\.(weight|bias)_(ih|hh)_l(\d+)", k):
            out[f"cells.{m.group(3)}.{m.group(1)}_{m.group(2)}"] = v
    return {k: v.float() if hasattr(v, "float") else v for k, v in out.items()}


def _known(k: str) -> bool:
    return bool(re.fullmatch(r"(encoder|decoder)\.embeddings\.make_embedding\.emb_luts\.0\.weight"
                             r"|encoder\.rnn\.(weight|bias)_(ih|hh)_l\d+(_reverse)?|encoder\.bridge\.\d\.(weight|bias)"
                             r"|decoder\.rnn\.layers\.\d+\.(weight|bias)_(ih|hh)"
                             r"|decoder\.rnn\.(weight|bias)_(ih|hh)_l\d+"
                             r"|decoder\.attn\.(linear_in|linear_out|linear_context|linear_query|v)\.(weight|bias)", k))


def _text(opt: dict[str, Any], path: Path, warnings: list[str]) -> tuple[Text, dict[str, Path | bytes]]:
    """The bundle's text processing: onmt_translate reads space-separated tokens and prints them
    space-separated (``word``). With the ``sentencepiece`` or ``bpe`` transform (onmt/transforms/
    tokenize.py) the side's model (``src_subword_model``/``tgt_subword_model``: SentencePiece, or
    subword-nmt codes with the ``@@`` joiner) travels in the bundle, found where the options say
    or, by its name, beside the checkpoint; not found (or another transform), the side stays
    ``word`` with a warning (pass ``--src-tokenizer``/``--tgt-tokenizer``)."""
    transforms = _transforms(opt, warnings)
    kind = next((k for k in ("sentencepiece", "bpe") if k in transforms), None)
    sides: dict[str, TextSide] = {}
    files: dict[str, Path | bytes] = {}
    for side in ("src", "tgt"):
        sides[side] = TextSide(kind="word")
        configured = opt.get(f"{side}_subword_model")
        if kind is None:
            continue
        if not configured or not isinstance(configured, (str, Path)):
            warnings.append(f"it was trained with the {kind} transform, but its opt names no {side}_subword_model "
                            f"(got {configured!r}): the bundle reads {side} pieces as space-separated words; "
                            f"pass --{side}-tokenizer {kind}:FILE")
            continue
        found = next((p for p in (Path(str(configured)), path.parent / Path(str(configured)).name) if p.is_file()),
                     None)
        if found is None:
            warnings.append(f"its {side}_subword_model {configured} ({kind}) was not found, nor "
                            f"{Path(str(configured)).name} beside {path.name}: the bundle reads {side} pieces as "
                            f"space-separated words; pass --{side}-tokenizer {kind}:FILE")
            continue
        name = bundle_name(side, kind, found)
        files[name] = found
        sides[side] = TextSide(kind=kind, file=name, joiner="@@" if kind == "bpe" else None)  # type: ignore[arg-type]
    other = [t for t in transforms if t not in ("sentencepiece", "bpe", "filtertoolong")]
    if other:
        warnings.append(f"it was trained with the transforms {other}, which the bundle does not apply: give it "
                        "input tokenized the same way")
    return Text(src=sides["src"], tgt=sides["tgt"]), files


def _transforms(opt: dict[str, Any], warnings: list[str] | None = None) -> list[str]:
    """``opt.transforms`` as a list of names: a list as it is, a single string as the names it
    holds (separated by commas or spaces, as a command line would give them), anything else
    nothing (with a warning naming it)."""
    value = opt.get("transforms")
    if isinstance(value, str):
        return [t for t in re.split(r"[,\s]+", value) if t]
    if isinstance(value, (list, tuple)):
        return [str(t) for t in value if t]
    if value and warnings is not None:
        warnings.append(f"its opt.transforms {value!r} is not a list of transform names: no transform is applied")
    return []


def _is_legacy(data: dict[str, Any]) -> bool:
    """1.x/2.x layout: the vocab is torchtext fields, not 3.x token lists."""
    voc = data.get("vocab")
    return not (isinstance(voc, dict) and isinstance(voc.get("src"), list))


def _inspect(path: Path, data: Any) -> dict[str, Any]:
    """Everything ``load`` and ``describe`` need; ``problems`` lists what is refused."""
    if not isinstance(data, dict) or not {"opt", "vocab"} <= set(data):
        missing = [k for k in ("opt", "vocab") if not isinstance(data, dict) or k not in data]
        lacks = " and no ".join(map(repr, missing))
        raise CheckpointError(f"{path} is not an OpenNMT-py checkpoint (it has no {lacks} entry; onmt_train saves "
                              "the training options as 'opt', the vocabularies as 'vocab')",
                              "pass a model_step_N.pt written by onmt_train")
    try:
        opt = _opt(data)
        src, tgt, extra = _vocabs(data)
    except ValueError as exc:
        raise CheckpointError(f"{path} is not a usable OpenNMT-py checkpoint: {exc}",
                              "pass a model_step_N.pt written by onmt_train") from None
    model, gen = data.get("model"), data.get("generator")
    is_legacy = _is_legacy(data)
    problems = _refusals(opt, extra, model)
    arch = None
    if not problems and isinstance(model, dict):
        arch, more = _arch(opt, model, gen or {}, len(src), len(tgt), is_legacy)
        problems += more
        unknown = sorted(k for k in model if not _known(k))
        if unknown:
            problems.append(Problem(f"its weights hold parameters this importer does not reproduce: "
                                    f"{', '.join(unknown[:4])}{' ...' if len(unknown) > 4 else ''}",
                                    "only plain OpenNMT-py RNN models are supported"))
    sp = extra["specials"]
    src_sp, tgt_sp = _specials(src, sp["src"]), _specials(tgt, sp["tgt"])
    start_tok = extra["decoder_start_token"]
    start = tgt.index(start_tok) if start_tok in tgt else None
    for what, ok in ((f"its target vocabulary has no {sp['tgt']['eos']!r} (EOS)", tgt_sp.eos is not None),
                     (f"its target vocabulary has no decoder start token {start_tok!r}", start is not None)):
        if not ok:
            problems.append(Problem(what, "pass a checkpoint written by onmt_train, unmodified"))
    return {"opt": opt, "src": src, "tgt": tgt, "extra": extra, "arch": arch, "problems": problems,
            "layout": "1.x/2.x" if is_legacy else "3.x",
            "src_specials": src_sp, "tgt_specials": tgt_sp, "start": start, "model": model, "gen": gen}


# ----------------------------------------------------------------------------- interface

def load(path: Path, trust_pickle: bool = False) -> ImportedModel:
    """Read ``path`` and build the module; ``CheckpointError`` (one line per problem) when the
    file cannot be read safely or holds a model this importer cannot reproduce."""
    from .opennmt_model import OpenNMTRNN

    path = Path(path)
    data = _load(path, trust_pickle)
    info = _inspect(path, data)
    if info["problems"]:
        raise CheckpointError([Problem(f"{path}: {p.what}", p.fix) for p in info["problems"]])
    arch = info["arch"]
    module = OpenNMTRNN(arch)
    try:
        module.load_state_dict(_state_dict(arch, info["model"], info["gen"]), strict=True)
    except (RuntimeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: its weights do not fit the architecture its opt describes "
                              f"({one_line(exc, 200)})",
                              "pass a checkpoint written by onmt_train, unmodified") from None
    src_sp, tgt_sp = info["src_specials"], info["tgt_specials"]
    for side, sp in (("src", src_sp), ("tgt", tgt_sp)):
        for name, value in sp.as_dict().items():
            setattr(module, f"{side}_{name}_id", value)
    module.eval()
    opt = info["opt"]
    warnings: list[str] = []
    text, text_files = _text(opt, Path(path), warnings)
    transforms = _transforms(opt)
    if src_sp.unk is not None and src_sp.unk != 0:
        warnings.append(f"its source <unk> has id {src_sp.unk}: OpenNMT-py 3.5 maps unknown source tokens to id 0 "
                        f"({info['src'][0]!r}), the bundle to <unk>")
    if opt.get("model_dtype") == "fp16":
        warnings.append("it was trained in fp16; the bundle computes in float32")
    d = TRANSLATE_DEFAULTS
    search = SearchDefaults(style="opennmt", beam_size=d["beam_size"], n_best=d["n_best"],
                            length_penalty=d["length_penalty"], alpha=d["alpha"], min_length=d["min_length"],
                            max_length=d["max_length"], max_length_batch_factor=d["max_length_ratio"],
                            batch_size=d["batch_size"], batch_type="sorted")  # its length limit is per batch
    framing = Framing(prepend_bos=False, append_eos=False, decoder_start=info["start"])
    config = {"format": FORMAT, "layout": info["layout"], "architecture": arch.to_dict(),
              "decoder_start_token": info["extra"]["decoder_start_token"], "transforms": transforms,
              "src_subword_model": opt.get("src_subword_model"), "tgt_subword_model": opt.get("tgt_subword_model"),
              "translate_defaults": dict(d)}
    return ImportedModel(model=module, src_vocab=list(info["src"]), tgt_vocab=list(info["tgt"]),
                         tokenizer=text.tokenizer, text=text, text_files=text_files,
                         framing=framing, search=search, model_config=config, format=FORMAT, warnings=warnings)


def describe(path: Path) -> dict[str, Any]:
    """What ``path`` holds, for ``s2s inspect``: layout (3.x or 1.x/2.x), architecture, vocabulary
    sizes and special ids, transforms, and ``unsupported`` (what ``load`` refuses, by name).
    Reads like ``load`` (``CheckpointError`` when the file cannot be read safely)."""
    path = Path(path)
    info = _inspect(path, _load(path, False))
    opt = info["opt"]
    arch = info["arch"]
    return {
        "format": FORMAT, "layout": info["layout"],
        "architecture": arch.to_dict() if arch else {
            k: opt.get(k) for k in ("encoder_type", "decoder_type", "rnn_type", "global_attention", "input_feed",
                                    "bridge", "layers", "hidden_size", "rnn_size")},
        "src_vocab_size": len(info["src"]), "tgt_vocab_size": len(info["tgt"]),
        "src_specials": info["src_specials"].as_dict(), "tgt_specials": info["tgt_specials"].as_dict(),
        "decoder_start_token": info["extra"]["decoder_start_token"],
        "transforms": _transforms(opt),
        "unsupported": [p.what for p in info["problems"]],
    }


__all__ = ["FORMAT", "TRANSLATE_DEFAULTS", "describe", "detect", "load"]
