"""``export_model``: a model (checkpoint path or ``nn.Module``) -> a verified bundle directory.

Steps: load the checkpoint (weights only) or take the module; discover its static/state
tensors (``spec.discover``); export ``encoder.onnx`` and ``decoder_step.onnx`` (``onnx.py``);
write ``manifest.json``; check parity (``parity.py``); all inside ``bundle.atomic_dir``, so a
failure at any point leaves neither a partial bundle nor a temporary directory.

Modules outside the zoo: anything with ``encode``/``decode_step`` and ``pad_id``/``bos_id``/
``eos_id`` (0/1/2: the bundle format fixes the special ids, see ``s2s_export.vocab``) exports.
Vocabularies: ``src_vocab``/``tgt_vocab`` (token lists starting with the four specials, or
``Vocab``). Without them the sizes come from ``model.config.src_vocab_size``/``tgt_vocab_size``
or ``model.src_vocab_size``/``tgt_vocab_size`` (the target size also from ``log_probs``), and
the vocabularies are placeholders: the specials, then ``<tok4>``, ``<tok5>``, ... (the bundle
then runs on ids; text translation needs the real vocabularies). The manifest's model config
is then ``{"class": "<module>.<QualifiedName>"}`` plus the module's ``config`` when it is a
dict, a dataclass or has ``to_dict()``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from .. import __version__
from ..bundle import GRAPHS, GREEDY, Manifest, atomic_dir
from ..errors import BadInputError, UsageError
from ..graphio import BundleIO
from ..vocab import BOS_ID, EOS_ID, PAD_ID, SPECIALS, UNK_ID, Vocab, tokenizer_kinds
from . import parity as parity_mod
from .greedy import write_greedy
from .onnx import EXPORTER, MIN_OPSET, export_graph
from .spec import EXAMPLE, discover, make_sources
from .wrap import EncoderGraph, StepGraph

FP32_GRAPHS = {g: f"{g}.onnx" for g in GRAPHS}
FP32_GREEDY = f"{GREEDY}.onnx"


@dataclass
class Bundle:
    """A written bundle: its directory, its manifest and the parity report (``{}`` unverified)."""

    path: Path
    manifest: Manifest
    parity: dict[str, Any]


@dataclass
class _Source:
    model: nn.Module
    model_config: dict[str, Any]
    src_vocab: list[str] | None
    tgt_vocab: list[str] | None
    tokenizer: str


def max_opset() -> int:
    try:
        from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET

        return int(ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET)
    except ImportError:  # pragma: no cover - other torch versions
        return 20


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d, default=str))


def _module_config(model: nn.Module) -> dict[str, Any]:
    cls = type(model)
    out: dict[str, Any] = {"class": f"{cls.__module__}.{cls.__qualname__}"}
    cfg = getattr(model, "config", None)
    if isinstance(cfg, dict):
        out.update(cfg)
    elif dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        out.update(dataclasses.asdict(cfg))
    elif callable(getattr(cfg, "to_dict", None)):
        out.update(getattr(cfg, "to_dict")())
    return _jsonable(out)


def _resolve(model_or_path: nn.Module | str | os.PathLike[str], trust_pickle: bool) -> _Source:
    if isinstance(model_or_path, (str, os.PathLike)):
        from ..models import load_checkpoint
        from ..models.checkpoint import read_file

        if trust_pickle:  # opted in: a whole pickled module exports like an nn.Module
            obj = read_file(model_or_path, trust_pickle=True)
            if isinstance(obj, nn.Module):
                return _resolve(obj, trust_pickle)
        ckpt = load_checkpoint(model_or_path, trust_pickle=trust_pickle)
        return _Source(ckpt.model, ckpt.config.to_dict(), list(ckpt.src_vocab.tokens),
                       list(ckpt.tgt_vocab.tokens), ckpt.tokenizer)
    if not isinstance(model_or_path, nn.Module):
        raise UsageError(f"cannot export a {type(model_or_path).__name__}",
                         "pass a checkpoint path or an nn.Module implementing the decoding contract")
    from ..models import Seq2Seq

    model = model_or_path
    config = model.config.to_dict() if isinstance(model, Seq2Seq) else _module_config(model)
    return _Source(model, config, None, None, "char")


def _vocab_size(model: nn.Module, side: str) -> int | None:
    """``config.<side>_vocab_size`` (a dict or an object) or ``model.<side>_vocab_size``."""
    for owner in (getattr(model, "config", None), model):
        size = owner.get(f"{side}_vocab_size") if isinstance(owner, dict) else getattr(owner, f"{side}_vocab_size", None)
        if isinstance(size, int):
            return size
    return None


def _tokens(vocab: Sequence[str] | Vocab | None, what: str) -> list[str] | None:
    if vocab is None:
        return None
    tokens = list(vocab.tokens if isinstance(vocab, Vocab) else vocab)
    Vocab(tuple(tokens))  # BadInputError unless the specials come first
    if len(set(tokens)) != len(tokens):
        raise UsageError(f"the {what} vocabulary has duplicate tokens", "pass a list of distinct tokens")
    return tokens


def placeholder_vocab(size: int) -> list[str]:
    """The four specials, then ``<tok4>`` ... ``<tok{size-1}>``."""
    return list(SPECIALS) + [f"<tok{i}>" for i in range(len(SPECIALS), size)]


def _check_args(opset: int, topk: int, max_batch: int, max_src_len: int) -> None:
    if not MIN_OPSET <= opset <= max_opset():
        raise UsageError(f"opset {opset} is not supported by the TorchScript exporter",
                         f"use --opset between {MIN_OPSET} and {max_opset()}")
    for name, value in (("topk", topk), ("max_batch", max_batch), ("max_src_len", max_src_len)):
        if value < 1:
            raise UsageError(f"{name} must be >= 1 (got {value})", f"pass a positive --{name.replace('_', '-')}")


def _check_specials(model: nn.Module) -> dict[str, int]:
    want = {"pad": PAD_ID, "bos": BOS_ID, "eos": EOS_ID}
    for key, value in want.items():
        got = getattr(model, f"{key}_id", None)
        if not isinstance(got, int):
            raise UsageError(f"the model has no integer {key}_id attribute",
                             "implement the decoding contract (pad_id, bos_id, eos_id)")
        if got != value:
            raise UsageError(f"the model's {key}_id is {got}; bundles use pad 0, bos 1, eos 2, unk 3",
                             "remap the vocabulary so that the specials come first")
    return {**want, "unk": UNK_ID}


def _cpu_float32(model: nn.Module) -> nn.Module:
    tensors = [*model.parameters(), *model.buffers()]
    if any(t.is_floating_point() and t.dtype != torch.float32 for t in tensors):
        raise UsageError("the model has non-float32 weights",
                         "export the float32 model (model.float()); FP16 graphs are made from it")
    if any(t.device.type != "cpu" for t in tensors):
        model = copy.deepcopy(model).cpu()
    return model


def versions() -> dict[str, str]:
    import onnx

    out = {"exporter": EXPORTER, "torch": torch.__version__, "onnx": onnx.__version__,
           "s2s_export": __version__}
    try:
        import onnxruntime

        out["onnxruntime"] = onnxruntime.__version__
    except ImportError:  # pragma: no cover - onnxruntime is needed for verify only
        pass
    return out


def export_model(model_or_path: nn.Module | str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                 opset: int = 17, topk: int = 8, max_batch: int = 64, max_src_len: int = 256,
                 verify: bool = True, force: bool = False,
                 src_vocab: Sequence[str] | Vocab | None = None, tgt_vocab: Sequence[str] | Vocab | None = None,
                 tokenizer: str | None = None, trust_pickle: bool = False, int8: bool = False,
                 int8_variant: str | None = None, calibrate: str | os.PathLike[str] | None = None,
                 trt: bool = False) -> Bundle:
    """Export ``model_or_path`` to the bundle directory ``out_dir`` and return it.

    ``topk``: K of the step's ``topk_log_probs``/``topk_ids`` (clipped to the target vocabulary
    size). ``max_batch``/``max_src_len``: recorded for engine profiles; they also cap the parity
    set. ``verify``: parity check (raises ``ParityError``, nothing written). ``force``: replace an
    existing ``out_dir`` (only on success). ``tokenizer``: default the checkpoint's, else
    ``char``. ``trust_pickle``: allow checkpoints with pickled objects. ``int8``: also add INT8
    graphs for the CPU (``s2s_export.int8.quantize_bundle``: ``int8_variant`` rowwise or static,
    ``calibrate`` a text file of sources for static). ``trt``: then add the
    FP16 graphs and TensorRT engines (``add_tensorrt``; without TensorRT or a GPU it raises
    ``UnsupportedError`` after the ONNX and FP16 bundle is written).
    """
    _check_args(opset, topk, max_batch, max_src_len)
    if int8:
        from ..int8 import resolve_variant

        int8_variant = resolve_variant(int8_variant, calibrate)  # bad options fail before any work
    elif int8_variant is not None or calibrate is not None:
        raise UsageError("an INT8 variant or calibration file is given without INT8 graphs",
                         "add --int8 (export_model: int8=True)")
    src = _resolve(model_or_path, trust_pickle)
    tokenizer = tokenizer or src.tokenizer
    try:
        tokenizer_kinds(tokenizer)
    except BadInputError as exc:
        raise UsageError(exc.problems) from None
    model = src.model
    specials = _check_specials(model)
    src_tokens = _tokens(src_vocab, "source") or src.src_vocab
    tgt_tokens = _tokens(tgt_vocab, "target") or src.tgt_vocab
    src_size = len(src_tokens) if src_tokens else _vocab_size(model, "src")
    if src_size is None:
        raise UsageError("cannot tell the model's source vocabulary size",
                         "pass src_vocab=[...] or give the model a src_vocab_size attribute")

    model = _cpu_float32(model)
    was_training = model.training
    model.eval()
    try:
        contract = discover(model, src_size)
        tgt_size = contract.tgt_vocab_size
        if tgt_tokens is not None and len(tgt_tokens) != tgt_size:
            raise UsageError(f"the target vocabulary has {len(tgt_tokens)} tokens but the model "
                             f"predicts {tgt_size}", "pass the vocabulary the model was trained with")
        k = min(topk, tgt_size)
        io = BundleIO.build(contract.static, contract.state, tgt_size, k)
        manifest = Manifest(
            model_config=src.model_config,
            src_vocab=src_tokens or placeholder_vocab(src_size),
            tgt_vocab=tgt_tokens or placeholder_vocab(tgt_size),
            specials=specials, tokenizer=tokenizer, io=io, opset=opset,
            max_batch=max_batch, max_src_len=max_src_len,
            graphs={"fp32": dict(FP32_GRAPHS)}, versions=versions())
        with atomic_dir(out_dir, force=force) as tmp:
            _write(tmp, model, contract.static_names, contract.state_names, io, manifest, src_size, opset)
            manifest.trt_compat = _trt_compat(tmp)
            if verify:
                manifest.parity = _verify(tmp, model, io, src_size, max_batch, max_src_len)
                manifest.save(tmp)
    finally:
        model.train(was_training)
    bundle = Bundle(Path(out_dir).absolute(), manifest, manifest.parity)
    if int8:
        from ..bundle import load_manifest
        from ..int8 import quantize_bundle

        quantize_bundle(bundle.path, int8_variant, calibrate)
        bundle = Bundle(bundle.path, load_manifest(bundle.path), manifest.parity)
    if trt:
        bundle = add_tensorrt(bundle)
    return bundle


def _write(tmp: Path, model: nn.Module, static_names: list[str], state_names: list[str], io: BundleIO,
           manifest: Manifest, src_size: int, opset: int) -> None:
    """Export both graphs into ``tmp`` and save the manifest (without parity)."""
    B, S, lengths = EXAMPLE
    src, src_lengths = make_sources(lengths, S, src_size, EOS_ID, PAD_ID)
    encoder = EncoderGraph(model, static_names, state_names)
    files = export_graph(encoder, (src, src_lengths), io.encoder, tmp / FP32_GRAPHS["encoder"], opset)
    with torch.no_grad():
        outputs = encoder(src, src_lengths)
    tokens = torch.full((B,), BOS_ID, dtype=torch.int64)
    reorder = torch.tensor([1, 0, 1], dtype=torch.int64)  # non-identity: nothing folds the gather away
    step = StepGraph(model, static_names, state_names, io.topk)
    files += export_graph(step, (tokens, reorder, *outputs), io.step, tmp / FP32_GRAPHS["decoder_step"], opset)
    if write_greedy(tmp / FP32_GRAPHS["decoder_step"], tmp / FP32_GREEDY, io):
        manifest.graphs["fp32"][GREEDY] = FP32_GREEDY
    manifest.files = {f: "" for f in files}  # hashed by save
    manifest.save(tmp)


def _verify(tmp: Path, model: nn.Module, io: BundleIO, src_size: int, max_batch: int, max_src_len: int
            ) -> dict[str, Any]:
    """Parity report (raises ``ParityError`` when it fails)."""
    report = parity_mod.check_parity(tmp, model, io, src_size, max_batch=max_batch, max_src_len=max_src_len)
    parity_mod.raise_on_failure(report)
    return report


def add_tensorrt(bundle: Bundle) -> Bundle:
    """Hook of the TensorRT path (``--trt``): adds the mixed-precision FP16 graphs and, where this
    machine has TensorRT and a GPU, the engines to a written bundle, atomically. Without them the
    bundle keeps its ONNX and FP16 graphs and ``UnsupportedError`` (exit 2) says how to build the
    engines on the target (``s2s build-engines``)."""
    from ..bundle import load_manifest
    from ..tensorrt.builder import add_tensorrt as _add

    _add(bundle.path)
    manifest = load_manifest(bundle.path)
    return Bundle(bundle.path, manifest, manifest.parity)


def _trt_compat(tmp: Path) -> list[str]:
    """TensorRT-compatibility problems of the fp32 graphs (checked on any machine at export)."""
    from ..tensorrt.compat import check_trt_compat

    return [str(p) for name in FP32_GRAPHS.values() for p in check_trt_compat(tmp / name, name=name)]


__all__ = ["Bundle", "export_model", "add_tensorrt", "placeholder_vocab", "versions"]
