"""Dynamic INT8 graphs for the CPU (ONNX Runtime ``quantize_dynamic`` after its pre-processing).

Weights of MatMul/Gemm (and the encoder's LSTM/GRU) become int8; activations are quantized on the
fly per batch. The attention softmax, log_softmax and top-k stay float32 (they are not in
``OP_TYPES``). The runtime uses these graphs with ``precision="int8"``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..bundle import GRAPHS, GREEDY, atomic_dir, load_manifest
from ..errors import BadInputError, BundleError, one_line

OP_TYPES = ("MatMul", "Gemm", "LSTM", "GRU")


def quantize_graph(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """src fp32 ONNX -> dst dynamic-INT8 ONNX (per-channel int8 weights)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:
            # symbolic shape inference cannot follow the recurrent ops' sequence_lens; ONNX
            # shape inference and the graph optimizations are what the quantizer needs
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        except Exception:  # noqa: BLE001 - fall back to the raw graph, still valid input
            pre = Path(src)
        quantize_dynamic(pre, dst, op_types_to_quantize=list(OP_TYPES), per_channel=True,
                         weight_type=QuantType.QInt8)


def quantize_bundle(bundle_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Add ``encoder.int8.onnx`` and ``decoder_step.int8.onnx`` to a bundle (atomically: the
    bundle is rewritten in a temporary copy and swapped in on success). Returns the new
    ``graphs["int8"]`` entry. When the fp32 graphs have a fused greedy graph, the int8 step gets
    one too (``greedy.int8.onnx``, built from the quantized step)."""
    bundle_dir = Path(bundle_dir)
    manifest = load_manifest(bundle_dir)
    fp32 = manifest.graphs.get("fp32")
    if not fp32:
        raise BundleError(f"{bundle_dir} has no fp32 graphs to quantize", "re-export the bundle")
    entry = {g: f"{g}.int8.onnx" for g in GRAPHS}
    with atomic_dir(bundle_dir, copy_from=bundle_dir) as tmp:
        for g in GRAPHS:
            try:
                quantize_graph(tmp / fp32[g], tmp / entry[g])
            except OSError:
                raise  # disk full, permissions: atomic_dir reports it (nothing changed)
            except Exception as exc:  # noqa: BLE001 - onnx/ORT raise many types on a bad graph
                raise BadInputError(f"quantizing {fp32[g]} failed ({one_line(exc)})",
                                    "re-export the bundle with s2s-export and try again") from None
        if GREEDY in fp32:
            from ..export.greedy import write_greedy

            if write_greedy(tmp / entry["decoder_step"], tmp / f"{GREEDY}.int8.onnx", manifest.io,
                            manifest.conventions):
                entry[GREEDY] = f"{GREEDY}.int8.onnx"
        manifest.graphs["int8"] = entry
        manifest.save(tmp)
    return entry
