"""INT8 graphs for the CPU whose output depends neither on the batch nor on the CPU vendor.

``quantize_bundle(bundle)`` adds ``encoder.int8.onnx``, ``decoder_step.int8.onnx`` (and
``greedy.int8.onnx`` when the bundle has a fused greedy graph) to a bundle; the runtime uses them
with ``precision="int8"``. Torch-free: it needs onnx and onnxruntime only (``s2s quantize`` on a
runtime-plus-onnx install). Two variants, both batch-independent:

* ``static`` (default; ``static.py``): ONNX Runtime ``quantize_static`` (QDQ), one fixed
  activation scale per tensor, calibrated at quantization time on real encoder inputs and the
  decoder-step inputs of greedy decodes made with the float32 graphs (``calibration.py``: a text
  file of sources, ``--calibrate FILE``, or 256 sources generated from the source vocabulary).
  Fixed scales: a sentence's rounding cannot depend on other sentences.
* ``rowwise`` (``rowwise.py``): dynamic quantization with one activation scale per row, i.e. per
  sentence in the decoder step and per source position in the encoder, computed in the graph
  (``max|x| / 127``, symmetric, uint8 with zero point 128), weights int8 per output channel.
  No calibration, no clipping of activations outside a calibrated range.

The default is the batch-independent variant that was fastest at batch 1 with a task metric
within 1 point of float32 (measured side by side, ``benchmarks/int8_variants.py``,
``benchmarks/README.md``, 2026-11-30 on a quiet 2-core Xeon, 1 thread): G2P greedy batch 1
static 1,413 / rowwise 1,146 sentences/s (FP32 690), NMT-sized 70.6 / 65.3 (FP32 29.2); G2P word
error rate (CMUdict test, 6,004 words) FP32 33.38%, static 33.44%
(generated calibration sources; 33.41% calibrated on 256 training words), rowwise 33.44%.

Only weight products (``MatMul``/``Gemm`` with a constant weight) become integer products; the
attention products, softmax, log_softmax, top-k and the encoder's LSTM/GRU stay float32 (ONNX
Runtime's int8 LSTM quantizes a whole batch, padding included, with one scale).

Why the output was batch-dependent before: ``quantize_dynamic`` inserts DynamicQuantizeLinear,
which computes one scale and zero point for a whole tensor, i.e. for all sentences of the batch
(and the padding positions of the encoder), so a sentence's rounding changed with its neighbours.
Both variants give each row a scale that depends on that row alone (static: on nothing at all).
What remains is float32 rounding: attention over a padded source can round its last bit
differently with the amount of padding, in the FP32 graphs too. A fixed scale absorbs such a
change unless the value sits on a rounding boundary: static outputs (ids and scores) were
identical at batch 1 and 64 for all 6,004 G2P test words and on every preset of the model zoo.
A row scale passes a last-bit change of the row's largest value on to the whole row: rowwise
ids were identical there too, scores differed by up to ~2e-7 (tests/test_int8.py holds static
to identical outputs and rowwise to identical ids).

Why it is exact on every x86 CPU (issue 14): ONNX Runtime multiplies uint8 activations by int8
weights with MLAS's U8S8 kernels, chosen by CPU (ONNX Runtime sources, github
microsoft/onnxruntime: ``onnxruntime/core/mlas/lib/platform.cpp``, ``MLAS_PLATFORM``): AVX2
``MlasGemmU8S8KernelAvx2`` (and its matrix-vector ``MlasGemvU8S8KernelAvx2``) and AVX512BW
``MlasGemmU8S8KernelAvx512Core`` use ``vpmaddubsw`` + ``vpmaddwd`` (``mlas/lib/x86_64/``
``QgemmU8S8KernelAvx2.S`` macro ``MultiplyAccumulateRow``, ``QgemvU8S8KernelAvx2.S``,
``QgemmU8S8KernelAvx512Core.S`` macro ``MultiplyAccumulateCell``): ``vpmaddubsw`` adds
two adjacent u8 x s8 products into a *saturating* int16; AVX-VNNI / AVX512-VNNI
(``vpdpbusd``) and AMX-INT8 accumulate in int32 exactly. With full-range weights a pair reaches
2 x 255 x 127 = 64,770 > 32,767, so CPUs without VNNI (e.g. a 2-core AMD EPYC with AVX2 only)
clip where VNNI CPUs do not (the ``decoder_step/next_c`` errors of 1.4 vs 0.25). Here every int8
weight lies in [-64, 64] (``WEIGHT_QMAX``: ``rowwise`` quantizes weights to 7 bits itself,
``static`` passes ``reduce_range=True``), so a pair is at most 2 x 255 x 64 = 32,640 <= 32,767:
no kernel saturates, every kernel computes the exact int32 products, and the graphs' integer
results are identical on every x86 CPU. ONNX Runtime uses the same bound: its optional
``Avx2WeightS8ToU8Transformer`` (session option ``session.x64quantprecision``, PR #12088;
``onnxruntime/core/optimizer/qdq_transformer/s8_to_u8.h`` ``Int8TensorProto2Uint8`` and
``s8_to_u8.cc`` ``ConvertS8WeightToU8``) switches a product to the slower uint8 x uint8 kernels
on CPUs without VNNI only when an int8 weight lies outside [-64, 64], as it cannot overflow
within; and the docstring of its ``quantize_static`` (onnxruntime 1.32) recommends
``reduce_range`` (7-bit weights) for CPUs without VNNI.
``check.saturation_problems`` tests the property on a graph; ``quantize_bundle`` refuses to
write a graph that breaks it. The float32 parts (scales, attention, the LSTM) still round as
every float32 graph does (last-bit differences between CPUs), nothing more.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from ..bundle import ENCODER_GREEDY, GRAPHS, GREEDY, Manifest, atomic_dir, load_manifest
from ..errors import BadInputError, BundleError, UsageError, one_line, require
from .rowwise import WEIGHT_QMAX

VARIANTS = ("static", "rowwise")
DEFAULT_VARIANT = "static"  # batch-independent and fastest at batch 1 (module docstring)
METADATA_KEY = "s2s_export.int8"  # metadata_props entry naming the variant in each int8 graph


def require_quantizer() -> None:
    """``MissingDependencyError`` (exit 2, naming the install command) unless onnx and ONNX
    Runtime's quantizer can be imported: checked before any work, so that a runtime-only install
    is told what to install, not that its bundle is broken."""
    require("onnx", "export")
    require("onnxruntime.quantization", "cpu")


def quantize_graph(src: str | os.PathLike[str], dst: str | os.PathLike[str], variant: str = DEFAULT_VARIANT,
                   feeds: list[dict[str, Any]] | None = None) -> None:
    """src float32 ONNX -> dst INT8 ONNX of ``variant`` (``static`` needs the calibration
    ``feeds``: one dict of input arrays per run of the graph)."""
    import onnx

    if variant == "static":
        from .static import quantize_static_graph

        quantize_static_graph(src, dst, feeds or [])
        model = onnx.load(str(dst))
    else:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        from .rowwise import quantize_rowwise

        with tempfile.TemporaryDirectory(prefix=".quantize-", dir=Path(dst).parent) as tmp:  # inside the
            # bundle being written: an interrupted run leaves nothing behind
            pre = Path(tmp) / "pre.onnx"
            try:  # ONNX shape inference + graph optimizations (constant folding), as for static
                quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            except Exception:  # noqa: BLE001 - the raw graph is valid input too
                pre = Path(src)
            model = quantize_rowwise(onnx.load(str(pre)))
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, METADATA_KEY: variant})
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def check_graph(path: str | os.PathLike[str]) -> None:
    """Raise unless every integer product of the graph at ``path`` is exact on every x86 CPU
    (``check.saturation_problems``)."""
    import onnx

    from .check import saturation_problems

    problems = saturation_problems(onnx.load(str(path)))
    if problems:
        raise RuntimeError(f"{Path(path).name} could saturate int16 on CPUs without VNNI: {problems[0]}")


def resolve_variant(variant: str | None, calibrate: str | os.PathLike[str] | None = None) -> str:
    """The variant to use: ``variant``, else ``static`` when a calibration file is given, else
    ``DEFAULT_VARIANT``. ``UsageError`` for an unknown variant, or a calibration file with a
    variant that does not calibrate."""
    if variant is None:
        variant = "static" if calibrate is not None else DEFAULT_VARIANT
    if variant not in VARIANTS:
        raise UsageError(f"INT8 variant {variant!r} is unknown", f"use one of: {', '.join(VARIANTS)}")
    if calibrate is not None and variant != "static":
        raise UsageError(f"a calibration file applies to the static INT8 variant, not {variant}",
                         "drop the calibration file, or use the static variant")
    return variant


def quantize_into(directory: str | os.PathLike[str], manifest: Manifest, variant: str | None = None,
                  calibrate: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Write ``encoder.int8.onnx`` and ``decoder_step.int8.onnx`` of ``variant`` (and
    ``greedy.int8.onnx`` when the fp32 graphs have a fused greedy graph, ``encoder_greedy.int8.onnx``
    when they also have the combined encoder + greedy graph) into ``directory``, a
    complete bundle being written, and record them in ``manifest.graphs["int8"]`` (not saved).
    Returns that entry. ``static`` calibrates by decoding with the fp32 graphs of ``directory``.
    A graph the quantizer cannot read raises ``BadInputError``; a missing package, a full disk
    or an interrupt pass through unchanged; a graph whose integer products could saturate on a
    CPU without VNNI is never written (``check_graph``)."""
    variant = resolve_variant(variant, calibrate)
    directory = Path(directory)
    fp32 = manifest.graphs.get("fp32")
    if not fp32:
        raise BundleError(f"{directory} has no fp32 graphs to quantize", "re-export the bundle")
    entry = {g: f"{g}.int8.onnx" for g in GRAPHS}
    feeds: dict[str, list[dict[str, Any]] | None] = {g: None for g in GRAPHS}
    if variant == "static":  # decodes with the bundle's fp32 graphs (their errors name the bundle)
        from .calibration import collect_feeds

        feeds["encoder"], feeds["decoder_step"] = collect_feeds(directory, calibrate)
    for g in GRAPHS:
        try:
            quantize_graph(directory / fp32[g], directory / entry[g], variant, feeds[g])
        except (ImportError, OSError, MemoryError):
            raise  # a missing package, disk full, permissions: reported as what they are
        except Exception as exc:  # noqa: BLE001 - onnx/ORT raise many types on a bad graph
            raise BadInputError(f"quantizing {fp32[g]} failed ({one_line(exc)})",
                                "re-export the bundle with s2s-export and try again") from None
        check_graph(directory / entry[g])
    if GREEDY in fp32:
        from ..export.greedy import write_encoder_greedy, write_greedy

        if write_greedy(directory / entry["decoder_step"], directory / f"{GREEDY}.int8.onnx", manifest.io,
                        manifest.conventions):
            entry[GREEDY] = f"{GREEDY}.int8.onnx"
            check_graph(directory / entry[GREEDY])
            combined = f"{ENCODER_GREEDY}.int8.onnx"  # the int8 encoder and the int8 greedy graph in one
            if ENCODER_GREEDY in fp32 and write_encoder_greedy(directory / entry["encoder"], directory / entry[GREEDY],
                                                               directory / combined, manifest.io):
                entry[ENCODER_GREEDY] = combined
                check_graph(directory / combined)
    manifest.graphs["int8"] = entry
    return entry


def quantize_bundle(bundle_dir: str | os.PathLike[str], variant: str | None = None,
                    calibrate: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Add ``encoder.int8.onnx`` and ``decoder_step.int8.onnx`` of ``variant`` (``VARIANTS``;
    module docstring) to a bundle, atomically (the bundle is rewritten in a temporary copy and
    swapped in on success); returns the new ``graphs["int8"]`` entry. When the fp32 graphs have
    a fused greedy graph, the int8 step gets one too (``greedy.int8.onnx``, built from the
    quantized step). ``variant`` None: ``resolve_variant``. ``calibrate``: a text file of sources
    (one per line) for ``static``; without it, ``static`` calibrates on sources generated from
    the source vocabulary.

    Raises ``UsageError`` for an unknown variant or ``calibrate`` with ``rowwise``,
    ``BundleError``/``BadInputError`` for a bundle without fp32 graphs, a graph that cannot be
    quantized, or an unreadable calibration file; OS errors (disk full) propagate, nothing changed;
    ``BundleChangedError`` (exit 1) when another process replaced the bundle meanwhile (an export
    with --force, another quantize: its bundle is kept; ``bundle.atomic_dir``)."""
    variant = resolve_variant(variant, calibrate)
    bundle_dir = Path(bundle_dir)
    manifest = load_manifest(bundle_dir)
    if not manifest.graphs.get("fp32"):
        raise BundleError(f"{bundle_dir} has no fp32 graphs to quantize", "re-export the bundle")
    require_quantizer()
    with atomic_dir(bundle_dir, copy_from=bundle_dir, expect=manifest.digest,
                    action="it was being quantized") as tmp:  # another writer meanwhile: BundleChangedError
        entry = quantize_into(tmp, manifest, variant, calibrate)
        manifest.save(tmp)
    return entry


__all__ = ["DEFAULT_VARIANT", "METADATA_KEY", "VARIANTS", "WEIGHT_QMAX", "check_graph", "quantize_bundle",
           "quantize_graph", "quantize_into", "require_quantizer", "resolve_variant"]
