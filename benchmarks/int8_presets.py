#!/usr/bin/env python
"""INT8 batch independence on every preset of the model zoo (both variants; about 3 minutes).

For each preset: a tiny model (embedding 16, hidden 32) trained 60 steps on the reverse task,
exported, quantized with each INT8 variant; 39 inputs (held-out words and edge cases) translated
at batch 1 and at batch 64, greedy and beam 3: sentences whose ids differ, whose scores differ,
the largest score difference; the fused greedy graph against the Python loop at batch 8; the
saturation problems of every int8 graph (``s2s_export.int8.check``). Prints one line per
preset and variant, and a JSON document with ``--json FILE``.

    python benchmarks/int8_presets.py [--presets luong-general,bahdanau] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # conftest: tiny_task, tiny_overrides (the test suite's tiny models)


def measure(preset: str, root: Path) -> dict[str, Any]:
    import onnx
    import torch

    from conftest import tiny_overrides, tiny_task
    from s2s_export.export import export_model
    from s2s_export.int8 import VARIANTS, quantize_bundle
    from s2s_export.int8.check import saturation_problems
    from s2s_export.models import save_checkpoint
    from s2s_export.runtime import Translator
    from s2s_export.train.trainer import train

    torch.set_num_threads(1)
    task = tiny_task("reverse")
    words = ["abc", "", "jihgfedcba", "a", "zz?a", "hello", "ab cd", "bbbbbbbbbbbb", "abcdefghij" * 2]
    words += ["".join(src) for src, _ in task.test[:30]]
    ckpt = train(preset, task, steps=60, seed=0, batch_size=32, lr=0.01, progress=False, evaluate_on=None,
                 **tiny_overrides(preset, 16, 32))
    save_checkpoint(root / f"{preset}.pt", ckpt)
    fp32 = export_model(root / f"{preset}.pt", root / preset, verify=False, max_src_len=24).path
    out: dict[str, Any] = {}
    for variant in VARIANTS:
        bundle = root / f"{preset}-{variant}"
        shutil.copytree(fp32, bundle)
        quantize_bundle(bundle, variant)
        t = Translator.load(bundle, precision="int8", intra_op_threads=1)
        r: dict[str, Any] = {}
        searches: tuple[tuple[str, dict[str, Any]], ...] = (("greedy", {}), ("beam3", {"beam_size": 3}))
        for name, kw in searches:
            one = [(h[0].ids, h[0].score) for h in t.translate(words, max_batch_size=1, **kw)]
            many = [(h[0].ids, h[0].score) for h in t.translate(words, max_batch_size=64, **kw)]
            r[f"{name}_b1_vs_b64"] = {"n": len(words), "ids_differ": sum(a[0] != b[0] for a, b in zip(one, many)),
                                      "scores_differ": sum(a[1] != b[1] for a, b in zip(one, many)),
                                      "max_score_diff": max(abs(a[1] - b[1]) for a, b in zip(one, many))}
        backend: Any = t.backend
        fused = [(h[0].ids, h[0].score) for h in t.translate(words, max_batch_size=8)]
        backend.fused_greedy = False
        loop = [(h[0].ids, h[0].score) for h in t.translate(words, max_batch_size=8)]
        r["fused_vs_loop_b8_differ"] = sum(a != b for a, b in zip(fused, loop))
        r["saturation_problems"] = sum(len(saturation_problems(onnx.load(str(bundle / f))))
                                       for f in t.manifest.graphs["int8"].values())
        out[variant] = r
    return out


def main() -> int:
    from s2s_export.models import PRESETS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default=",".join(PRESETS), help="comma-separated presets (default: all)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="int8presets-") as tmp:
        for preset in args.presets.split(","):
            results[preset] = measure(preset, Path(tmp))
            for variant, r in results[preset].items():
                g, b = r["greedy_b1_vs_b64"], r["beam3_b1_vs_b64"]
                print(f"{preset:16} {variant:8} b1 vs b64: greedy ids {g['ids_differ']}/{g['n']} scores "
                      f"{g['scores_differ']} (max {g['max_score_diff']:.1e}), beam 3 ids {b['ids_differ']} scores "
                      f"{b['scores_differ']} (max {b['max_score_diff']:.1e}); fused vs loop b8 "
                      f"{r['fused_vs_loop_b8_differ']}; saturation problems {r['saturation_problems']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
