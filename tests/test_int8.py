"""Dynamic INT8 graphs: `s2s-export --int8` / `s2s quantize`, used with precision="int8"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from s2s_export.bundle import load_manifest
from s2s_export.export import export_model
from s2s_export.int8 import quantize_bundle
from s2s_export.runtime import Translator


@pytest.fixture(scope="module")
def bundle(tiny_checkpoint, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("int8") / "b"
    export_model(tiny_checkpoint("luong-general"), out, int8=True)
    return out


def all_nodes(graph: Any) -> list[Any]:
    """Nodes of ``graph`` and of its subgraphs (Loop/If bodies)."""
    out = []
    for node in graph.node:
        out.append(node)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                out += all_nodes(attr.g)
    return out


def test_export_int8_adds_hashed_graphs(bundle: Path) -> None:
    m = load_manifest(bundle)  # verifies every sha256, the int8 files included
    assert m.graphs["int8"] == {"encoder": "encoder.int8.onnx", "decoder_step": "decoder_step.int8.onnx",
                                "greedy": "greedy.int8.onnx"}
    assert set(m.graphs["int8"].values()) <= set(m.files)
    for name in m.graphs["int8"].values():
        model = onnx.load(str(bundle / name))
        ops = {n.op_type for n in all_nodes(model.graph)}  # the greedy graph's are in its Loop body
        assert ops & {"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeLSTM", "ConvInteger"}, ops
        assert (bundle / name).stat().st_size < (bundle / m.graphs["fp32"][name.split(".")[0]]).stat().st_size


def test_int8_translation_is_close_to_fp32(bundle: Path, tiny_checkpoint) -> None:  # type: ignore[no-untyped-def]
    from conftest import tiny_task

    words = ["".join(src) for src, _ in tiny_task("reverse").test[:40]]
    fp32 = Translator.load(bundle, precision="fp32").translate(words)
    int8 = Translator.load(bundle, precision="int8").translate(words)
    same = np.mean([a[0].ids == b[0].ids for a, b in zip(fp32, int8)])
    assert same >= 0.9, same  # small logit changes may flip a near tie, not the model


def test_quantize_is_atomic_on_failure(bundle: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import shutil

    import s2s_export.int8 as int8

    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    before = {p.name: p.read_bytes() for p in copy.iterdir()}

    def boom(src, dst):  # type: ignore[no-untyped-def]
        Path(dst).write_bytes(b"partial")
        raise RuntimeError("injected")

    monkeypatch.setattr(int8, "quantize_graph", boom)
    with pytest.raises(Exception):
        quantize_bundle(copy)
    assert {p.name: p.read_bytes() for p in copy.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["copy"]  # no temp directory left behind
