"""Dynamic INT8 graphs for the CPU (ONNX Runtime ``quantize_dynamic`` after its pre-processing).

Weights of MatMul/Gemm (and the encoder's LSTM/GRU) become int8; activations are quantized on the
fly per batch. The attention softmax, log_softmax and top-k stay float32 (they are not in
``OP_TYPES``). The runtime uses these graphs with ``precision="int8"``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..bundle import GRAPHS, GREEDY, Manifest, atomic_dir, load_manifest
from ..errors import BadInputError, BundleError, one_line, require

OP_TYPES = ("MatMul", "Gemm", "LSTM", "GRU")


def require_quantizer() -> None:
    """``MissingDependencyError`` (exit 2, naming the install command) unless onnx and ONNX
    Runtime's quantizer can be imported: checked before any work, so that a runtime-only install
    is told what to install, not that its bundle is broken."""
    require("onnx", "export")
    require("onnxruntime.quantization", "cpu")


def quantize_graph(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """src fp32 ONNX -> dst dynamic-INT8 ONNX (per-channel int8 weights). The pre-processed
    intermediate graph lives in a temporary directory beside ``dst`` (inside the bundle being
    written, so an interrupted run leaves nothing behind)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix=".quantize-", dir=Path(dst).parent) as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:
            # symbolic shape inference cannot follow the recurrent ops' sequence_lens; ONNX
            # shape inference and the graph optimizations are what the quantizer needs
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        except (ImportError, OSError, MemoryError):
            raise
        except Exception:  # noqa: BLE001 - fall back to the raw graph, still valid input
            pre = Path(src)
        quantize_dynamic(pre, dst, op_types_to_quantize=list(OP_TYPES), per_channel=True,
                         weight_type=QuantType.QInt8)


def quantize_into(directory: str | os.PathLike[str], manifest: Manifest) -> dict[str, str]:
    """Write ``encoder.int8.onnx`` and ``decoder_step.int8.onnx`` (and ``greedy.int8.onnx`` when
    the fp32 graphs have a fused greedy graph) into ``directory``, a bundle being written, and
    record them in ``manifest.graphs["int8"]`` (not saved). Returns that entry. A graph the
    quantizer cannot read raises ``BadInputError``; a missing package, a full disk or an
    interrupt pass through unchanged."""
    directory = Path(directory)
    fp32 = manifest.graphs.get("fp32")
    if not fp32:
        raise BundleError(f"{directory} has no fp32 graphs to quantize", "re-export the bundle")
    entry = {g: f"{g}.int8.onnx" for g in GRAPHS}
    for g in GRAPHS:
        try:
            quantize_graph(directory / fp32[g], directory / entry[g])
        except (ImportError, OSError, MemoryError):
            raise  # a missing package, disk full, permissions: reported as what they are
        except Exception as exc:  # noqa: BLE001 - onnx/ORT raise many types on a bad graph
            raise BadInputError(f"quantizing {fp32[g]} failed ({one_line(exc)})",
                                "re-export the bundle with s2s-export and try again") from None
    if GREEDY in fp32:
        from ..export.greedy import write_greedy

        if write_greedy(directory / entry["decoder_step"], directory / f"{GREEDY}.int8.onnx", manifest.io,
                        manifest.conventions):
            entry[GREEDY] = f"{GREEDY}.int8.onnx"
    manifest.graphs["int8"] = entry
    return entry


def quantize_bundle(bundle_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Add ``encoder.int8.onnx`` and ``decoder_step.int8.onnx`` to a bundle (atomically: the
    bundle is rewritten in a temporary copy and swapped in on success). Returns the new
    ``graphs["int8"]`` entry. When the fp32 graphs have a fused greedy graph, the int8 step gets
    one too (``greedy.int8.onnx``, built from the quantized step). ``MissingDependencyError``
    (exit 2) before any work when onnx or ONNX Runtime's quantizer is not installed."""
    bundle_dir = Path(bundle_dir)
    manifest = load_manifest(bundle_dir)
    if not manifest.graphs.get("fp32"):
        raise BundleError(f"{bundle_dir} has no fp32 graphs to quantize", "re-export the bundle")
    require_quantizer()
    with atomic_dir(bundle_dir, copy_from=bundle_dir) as tmp:
        entry = quantize_into(tmp, manifest)
        manifest.save(tmp)
    return entry
