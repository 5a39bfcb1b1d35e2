"""``export_model``: a model (checkpoint path or ``nn.Module``) -> a verified bundle directory.

Steps: read the model (``importers``: an s2s-export checkpoint, an OpenNMT-py checkpoint, a Joey
NMT model directory, g2p_en's npz; weights only) or take the module; discover its static/state
tensors (``spec.discover``); export ``encoder.onnx`` and ``decoder_step.onnx`` (``onnx.py``);
write ``manifest.json`` (format 2: both vocabularies with their special ids, the source framing,
the search defaults and style); check parity (``parity.py``); all inside ``bundle.atomic_dir``,
so a failure at any point leaves neither a partial bundle nor a temporary directory.

Modules outside the zoo: anything with ``encode``/``decode_step`` exports. Its special ids come
from its attributes (``conventions.specials_of``: ``src_pad_id`` ... ``tgt_unk_id``, or the
side-less ``pad_id``/``bos_id``/``eos_id``/``unk_id``), in any order; the target needs an eos
and a start token (its bos, or ``decoder_start_id``). Vocabularies: ``src_vocab``/``tgt_vocab``
(token lists in id order, or ``Vocab``). Without them the sizes come from
``model.config.src_vocab_size``/``tgt_vocab_size`` or ``model.src_vocab_size``/``tgt_vocab_size``
(the target size also from ``log_probs``), and the vocabularies are placeholders
(``<tok4>``...: a warning says so; the bundle then runs on ids, and text translation needs the
real vocabularies). The manifest's model config is then ``{"class": "<module>.<QualifiedName>"}``
plus the module's ``config`` when it is a dict, a dataclass or has ``to_dict()``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from .. import __version__
from ..bundle import ENCODER_GREEDY, GRAPHS, GREEDY, Manifest, atomic_dir, check_apart, load_manifest
from ..conventions import FORMAT1_TOKENS, Conventions, Framing, SearchDefaults, Specials, Text, TextSide, conventions_of
from ..errors import BadInputError, Problem, UsageError, one_line
from ..graphio import BundleIO
from ..importers.base import ImportedModel
from ..vocab import Vocab, tokenizer_kinds, vocab_problems
from . import parity as parity_mod
from .greedy import write_encoder_greedy, write_greedy
from .onnx import EXPORTER, MIN_OPSET, export_graph, optimize_graph, record_blocked
from .spec import EXAMPLE, ContractSpec, discover, make_sources
from .wrap import EncoderGraph, StepGraph

FP32_GRAPHS = {g: f"{g}.onnx" for g in GRAPHS}
FP32_GREEDY = f"{GREEDY}.onnx"
FP32_ENCODER_GREEDY = f"{ENCODER_GREEDY}.onnx"


@dataclass
class Bundle:
    """A written bundle: its directory, its manifest, the parity report (``{}`` unverified) and
    the warnings of the export (one line each: placeholder vocabularies, an importer's notes)."""

    path: Path
    manifest: Manifest
    parity: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


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


def _resolve(model_or_path: nn.Module | str | os.PathLike[str], trust_pickle: bool,
             source_format: str | None) -> ImportedModel:
    """The model and its conventions: a path through the importers (format detected unless
    ``source_format``), a module from its attributes."""
    if isinstance(model_or_path, (str, os.PathLike)):
        from ..importers import load_model

        if trust_pickle and source_format in (None, "s2s"):  # opted in: a pickled nn.Module exports as is
            from ..models.checkpoint import read_file

            path = Path(model_or_path)
            obj = read_file(path, trust_pickle=True) if path.is_file() else None
            if isinstance(obj, nn.Module):
                return _resolve(obj, trust_pickle, None)
        return load_model(Path(model_or_path), source_format, trust_pickle=trust_pickle)
    if not isinstance(model_or_path, nn.Module):
        raise UsageError(f"cannot export a {type(model_or_path).__name__}",
                         "pass a checkpoint path or an nn.Module implementing the decoding contract")
    from ..models import Seq2Seq

    model = model_or_path
    from ..importers import check_weights

    check_weights(model, "the model")
    config = model.config.to_dict() if isinstance(model, Seq2Seq) else _module_config(model)
    search = getattr(model, "search_defaults", None)
    return ImportedModel(model=model, src_vocab=[], tgt_vocab=[], tokenizer="",
                         framing=conventions_of(model).framing,
                         search=search if isinstance(search, SearchDefaults) else SearchDefaults(),
                         model_config=config, format="module")


def _vocab_size(model: nn.Module, side: str) -> int | None:
    """``config.<side>_vocab_size`` (a dict or an object) or ``model.<side>_vocab_size``."""
    for owner in (getattr(model, "config", None), model):
        size = owner.get(f"{side}_vocab_size") if isinstance(owner, dict) else getattr(owner, f"{side}_vocab_size", None)
        if isinstance(size, int):
            return size
    return None


def _tokens(vocab: Sequence[str] | Vocab | None) -> list[str] | None:
    if vocab is None:
        return None
    return list(vocab.tokens if isinstance(vocab, Vocab) else vocab)


def placeholder_vocab(size: int, specials: Specials) -> list[str]:
    """``<tokN>`` for every id, the special ids named ``<pad>``, ``<s>``, ``</s>``, ``<unk>``."""
    names = {i: FORMAT1_TOKENS[k] for k, i in specials.as_dict().items() if i is not None}
    return [names.get(i, f"<tok{i}>") for i in range(size)]


def _check_args(opset: int, topk: int, max_batch: int, max_src_len: int) -> None:
    if not MIN_OPSET <= opset <= max_opset():
        raise UsageError(f"opset {opset} is not supported by the TorchScript exporter",
                         f"use --opset between {MIN_OPSET} and {max_opset()}")
    for name, value in (("topk", topk), ("max_batch", max_batch), ("max_src_len", max_src_len)):
        if value < 1:
            raise UsageError(f"{name} must be >= 1 (got {value})", f"pass a positive --{name.replace('_', '-')}")


def _conventions(model: nn.Module, framing: Framing) -> Conventions:
    """The model's special ids (its attributes) with ``framing``; ``UsageError`` naming what is
    missing or inconsistent."""
    fix = "declare the special ids as module attributes (src_pad_id ... tgt_unk_id, or pad_id/bos_id/eos_id)"
    try:
        conv = conventions_of(model, framing)
    except ValueError as exc:
        raise UsageError(f"the model's special ids are not usable ({one_line(exc)})", fix) from None
    if conv.tgt.eos is None:
        raise UsageError("the model declares no target eos id", fix)
    try:
        conv.start_id
    except ValueError:
        raise UsageError("the model declares neither a target bos id nor a decoder_start_id", fix) from None
    if framing.append_eos and conv.src.eos is None:
        raise UsageError("the framing appends EOS to sources but the model declares no source eos id",
                         "set framing.append_eos=False or declare src_eos_id")
    if framing.prepend_bos and conv.src.bos is None:
        raise UsageError("the framing prepends BOS to sources but the model declares no source bos id",
                         "set framing.prepend_bos=False or declare src_bos_id")
    return conv


def _text(imported: ImportedModel, tokenizer: str | None, src_tokenizer: str | TextSide | None,
          tgt_tokenizer: str | TextSide | None, normalize: str | None, placeholders: bool
          ) -> tuple[Text, dict[str, Path | bytes]]:
    """The bundle's text processing and the tokenizer files to copy in: the model's own (an
    importer's or a checkpoint's), then the combined ``tokenizer`` (format-1 ``char``/``word``/
    ``SRC:TGT``), then each side's spec, then the source ``normalize``. A model with placeholder
    vocabularies defaults to ``word`` (``<tokN>`` are words, not characters)."""
    from ..text import parse_normalize, parse_spec

    text = imported.text or Text.from_tokenizer(imported.tokenizer or ("word" if placeholders else "char"))
    files = dict(imported.text_files)
    if tokenizer:
        try:
            tokenizer_kinds(tokenizer)
        except BadInputError as exc:
            raise UsageError(exc.problems) from None
        text = Text.from_tokenizer(tokenizer)
    sides = {"src": text.src, "tgt": text.tgt}
    for side, spec in (("src", src_tokenizer), ("tgt", tgt_tokenizer)):
        if spec is None:
            continue
        if isinstance(spec, TextSide):
            sides[side] = spec
            continue
        sides[side], path = parse_spec(spec, side)
        if path is not None:
            files[str(sides[side].file)] = path
    if normalize is not None:
        lower, form = parse_normalize(normalize)
        sides["src"] = sides["src"].model_copy(update={"lowercase": lower, "unicode": form})
    text = Text(src=sides["src"], tgt=sides["tgt"])
    needed = {f for f in (text.src.file, text.tgt.file) if f is not None}
    missing = sorted(needed - set(files))
    if missing:
        raise UsageError(f"tokenizer files {missing} are named but not given", "pass --src-tokenizer/--tgt-tokenizer KIND:FILE")
    return text, {k: v for k, v in files.items() if k in needed}


def _vocabularies(src: ImportedModel, src_vocab: list[str] | None, tgt_vocab: list[str] | None,
                  src_size: int | None, tgt_size: int, conv: Conventions, text: Text,
                  warnings: list[str]) -> tuple[list[str], list[str]]:
    """The bundle's vocabularies: the model's own (an importer's or a checkpoint's, which given
    lists must equal), the given ones, or placeholders (with a warning). Each is checked: sizes
    against the model, the special ids within it, the hygiene rules of its side's tokenizer
    (``vocab.vocab_problems``)."""
    fixed: list[list[str] | None] = []
    for side, own, given, size in (("source", src.src_vocab, src_vocab, src_size),
                                   ("target", src.tgt_vocab, tgt_vocab, tgt_size)):
        if own and given is not None and list(given) != list(own):
            raise BadInputError(f"the given {side} vocabulary differs from the one in the checkpoint "
                                f"({len(given)} vs {len(own)} tokens"
                                + (", same tokens in another order" if sorted(given) == sorted(own) else "") + ")",
                                f"leave the {side} vocabulary out: the checkpoint's is the one the model was "
                                "trained with")
        tokens = list(own) if own else given
        if tokens is not None and size is not None and len(tokens) != size:
            raise BadInputError(f"the {side} vocabulary has {len(tokens)} tokens but the model's "
                                f"{'embedding' if side == 'source' else 'output layer'} has {size} rows",
                                "pass the vocabulary the model was trained with")
        fixed.append(tokens)
    placeholders = [side for side, tokens in zip(("source", "target"), fixed) if tokens is None]
    if placeholders:
        warnings.append(f"no {' or '.join(placeholders)} vocabulary was given: the bundle has placeholder "
                        "tokens (<tokN>) and translates ids, not text; pass src_vocab/tgt_vocab to export text")
    if src_size is None:
        raise UsageError("cannot tell the model's source vocabulary size",
                         "pass src_vocab=[...] or give the model a src_vocab_size attribute")
    srcs = fixed[0] if fixed[0] is not None else placeholder_vocab(src_size, conv.src)
    tgts = fixed[1] if fixed[1] is not None else placeholder_vocab(tgt_size, conv.tgt)
    problems = (vocab_problems(srcs, conv.src, text.src, "source") + vocab_problems(tgts, conv.tgt, text.tgt, "target"))
    if problems:
        raise BadInputError([Problem(p, "fix the vocabulary: every token a distinct non-empty string the "
                                        f"tokenizer ({text.tokenizer}) can produce and print") for p in problems])
    return srcs, tgts


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
                 trt: bool = False, source_format: str | None = None, framing: Framing | None = None,
                 search: SearchDefaults | None = None, src_tokenizer: str | TextSide | None = None,
                 tgt_tokenizer: str | TextSide | None = None, normalize: str | None = None,
                 int8_variant: str | None = None, calibrate: str | os.PathLike[str] | None = None) -> Bundle:
    """Export ``model_or_path`` to the bundle directory ``out_dir`` and return it.

    ``source_format``: the importer to read a path with (``importers.FORMATS``; default:
    detected). ``topk``: K of the step's ``topk_log_probs``/``topk_ids`` (clipped to the target
    vocabulary size). ``max_batch``/``max_src_len``: recorded for engine profiles; they also cap
    the parity set. ``verify``: parity check (raises ``ParityError``, nothing written).
    ``force``: replace an existing ``out_dir`` (only on success). ``tokenizer``: default the
    model's (a checkpoint's or an importer's), else ``char``. ``framing``/``search``: override
    the model's source framing and search defaults (an importer sets its tool's).
    ``trust_pickle``: allow checkpoints with pickled objects. ``int8``: also add INT8 graphs for
    the CPU (``s2s_export.int8``: ``int8_variant`` static (default) or rowwise, ``calibrate`` a
    text file of sources for static). ``trt``: then add the FP16 graphs and TensorRT engines
    (``tensorrt.builder.fp16_hook``; without TensorRT or a GPU it raises ``UnsupportedError``
    after the ONNX and FP16 bundle is written). Everything is written in one ``atomic_dir``
    transaction: a failure or interrupt at any point leaves a previous bundle as it was. Errors:
    ``UsageError`` (exit 1) for bad arguments, an ``out_dir`` that is, contains or lies inside
    the model or another file read (``bundle.check_apart``), or a model that does not declare what a bundle
    needs, ``MissingDependencyError`` (exit 2, before any work) for a package ``int8``/``trt``
    need, ``CheckpointError``/``BadInputError`` (exit 4) for an unreadable model,
    ``ParityError`` (exit 3).
    """
    _check_args(opset, topk, max_batch, max_src_len)
    check_apart(out_dir, _inputs(model_or_path, calibrate))  # --force would delete them: before any work
    _check_extras(int8, trt)
    if int8:
        from ..int8 import resolve_variant

        int8_variant = resolve_variant(int8_variant, calibrate)  # bad options fail before any work
    elif int8_variant is not None or calibrate is not None:
        raise UsageError("an INT8 variant or calibration file is given without INT8 graphs",
                         "add --int8 (export_model: int8=True)")
    imported = _resolve(model_or_path, trust_pickle, source_format)
    model = _cpu_float32(imported.model)
    framing = framing or imported.framing
    search = search or imported.search
    conv = _conventions(model, framing)
    warnings = list(imported.warnings)
    given_src, given_tgt = _tokens(src_vocab), _tokens(tgt_vocab)
    declared = _vocab_size(model, "src")
    src_size = len(imported.src_vocab or given_src or []) or declared
    if declared is not None and src_size != declared:
        raise BadInputError(f"the source vocabulary has {src_size} tokens but the model's embedding has "
                            f"{declared} rows", "pass the vocabulary the model was trained with")
    if src_size is None:
        raise UsageError("cannot tell the model's source vocabulary size",
                         "pass src_vocab=[...] or give the model a src_vocab_size attribute")
    was_training = model.training
    model.eval()
    try:
        contract = discover(model, src_size, conv)
        tgt_size = contract.tgt_vocab_size
        placeholders = not (imported.tgt_vocab or given_tgt) or not (imported.src_vocab or given_src)
        text, text_files = _text(imported, tokenizer, src_tokenizer, tgt_tokenizer, normalize, placeholders)
        check_apart(out_dir, [("the tokenizer file", p) for p in text_files.values() if isinstance(p, Path)])
        srcs, tgts = _vocabularies(imported, given_src, given_tgt, src_size, tgt_size, conv, text, warnings)
        if conv.tgt.eos in search.never_generate or any(i >= tgt_size for i in search.never_generate):
            raise UsageError(f"search.never_generate {list(search.never_generate)} must name target ids other "
                             f"than eos, below {tgt_size}", "fix the search defaults")
        io = BundleIO.build(contract.static, contract.state, tgt_size, min(topk, tgt_size),
                            conv.blocked(search.never_generate))
        manifest = Manifest(
            model_config=imported.model_config, src_vocab=srcs, tgt_vocab=tgts, text=text, io=io,
            opset=opset, max_batch=max_batch, max_src_len=max_src_len, src_specials=conv.src,
            tgt_specials=conv.tgt, framing=framing, search=search,
            graphs={"fp32": dict(FP32_GRAPHS)}, versions=versions())
        hook = None
        # one transaction: the graphs, INT8 and FP16 included, replace a previous bundle together
        with atomic_dir(out_dir, force=force) as tmp:
            _copy_files(tmp, text_files)
            _write(tmp, model, contract, io, manifest, conv, opset)
            manifest.trt_compat = _trt_compat(tmp)
            if verify:
                manifest.parity = _verify(tmp, model, io, conv, src_size, max_batch, max_src_len)
            if int8:
                from ..int8 import quantize_into

                quantize_into(tmp, manifest, int8_variant, calibrate)
            if trt:
                from ..tensorrt.builder import fp16_hook

                hook = fp16_hook(tmp, manifest)
            manifest.save(tmp)
            load_manifest(tmp)  # the document passes its own schema before it is committed
    finally:
        model.train(was_training)
    bundle = Bundle(Path(out_dir).absolute(), manifest, manifest.parity, warnings)
    if hook is not None and hook.unsupported is not None:
        from ..tensorrt.builder import engines_missing

        raise engines_missing(hook.unsupported, bundle.path, bundle)
    return bundle


def _check_extras(int8: bool, trt: bool) -> None:
    """A missing package for ``--int8`` or ``--trt`` fails before any work (exit 2 naming it)."""
    if int8:
        from ..int8 import require_quantizer

        require_quantizer()
    if trt:
        from ..errors import require

        require("onnxconverter_common", "export")


def _inputs(model_or_path: Any, calibrate: str | os.PathLike[str] | None) -> list[tuple[str, Any]]:
    """The paths ``export_model`` reads before writing (``check_apart``): the model (a file or
    a model directory) and the calibration file."""
    inputs = [("the model", model_or_path)] if isinstance(model_or_path, (str, os.PathLike)) else []
    return inputs + ([("the calibration file", calibrate)] if calibrate is not None else [])


def _copy_files(tmp: Path, files: dict[str, Path | bytes]) -> None:
    """The tokenizer files into the bundle (hashed with the rest by ``Manifest.save``)."""
    for name, source in files.items():
        if isinstance(source, bytes):
            (tmp / name).write_bytes(source)
        else:
            shutil.copyfile(source, tmp / name)


def _write(tmp: Path, model: nn.Module, contract: ContractSpec, io: BundleIO, manifest: Manifest,
           conv: Conventions, opset: int) -> None:
    """Export both graphs (and the fused greedy graph) into ``tmp`` and save the manifest
    (without parity)."""
    B, S, lengths = EXAMPLE
    src, src_lengths = make_sources(lengths, S, len(manifest.src_vocab), conv)
    encoder = EncoderGraph(model, contract.static_names, contract.state_names)
    files = export_graph(encoder, (src, src_lengths), io.encoder, tmp / FP32_GRAPHS["encoder"], opset)
    with torch.no_grad():
        outputs = encoder(src, src_lengths)
    tokens = torch.full((B,), conv.start_id, dtype=torch.int64)
    reorder = torch.tensor([1, 0, 1], dtype=torch.int64)  # non-identity: nothing folds the gather away
    step = StepGraph(model, contract.static_names, contract.state_names, io.topk, io.blocked, contract.tgt_vocab_size)
    files += export_graph(step, (tokens, reorder, *outputs), io.step, tmp / FP32_GRAPHS["decoder_step"], opset)
    for graph, spec in (("encoder", io.encoder), ("decoder_step", io.step)):
        optimize_graph(tmp / FP32_GRAPHS[graph], spec)
    record_blocked(tmp / FP32_GRAPHS["decoder_step"], io.blocked)
    if write_greedy(tmp / FP32_GRAPHS["decoder_step"], tmp / FP32_GREEDY, io, conv):
        manifest.graphs["fp32"][GREEDY] = FP32_GREEDY
        if write_encoder_greedy(tmp / FP32_GRAPHS["encoder"], tmp / FP32_GREEDY, tmp / FP32_ENCODER_GREEDY, io):
            manifest.graphs["fp32"][ENCODER_GREEDY] = FP32_ENCODER_GREEDY
    manifest.files = {f: "" for f in [*files, *(x for x in (manifest.text.src.file, manifest.text.tgt.file) if x)]}
    manifest.save(tmp)


def _verify(tmp: Path, model: nn.Module, io: BundleIO, conv: Conventions, src_size: int, max_batch: int,
            max_src_len: int) -> dict[str, Any]:
    """Parity report (raises ``ParityError`` when it fails)."""
    report = parity_mod.check_parity(tmp, model, io, src_size, conv=conv, max_batch=max_batch,
                                     max_src_len=max_src_len)
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
    return Bundle(bundle.path, manifest, manifest.parity, bundle.warnings)


def _trt_compat(tmp: Path) -> list[str]:
    """TensorRT-compatibility problems of the fp32 graphs (checked on any machine at export)."""
    from ..tensorrt.compat import check_trt_compat

    return [str(p) for name in FP32_GRAPHS.values() for p in check_trt_compat(tmp / name, name=name)]


__all__ = ["Bundle", "export_model", "add_tensorrt", "placeholder_vocab", "versions"]
