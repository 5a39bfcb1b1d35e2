"""The benchmark harness runs end to end on a tiny model and produces well-formed results.

No timing assertions (timings live in benchmarks/, never in the suite): only structure, the
baseline's correctness (the eager loops reproduce the torch reference search, so the
comparison is like for like) and agreement between the configurations' outputs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import pytest

from s2s_export.bench import BenchSpec, WorkerConfig, markdown, plan, run_bench, run_quality, summarize
from s2s_export.bench.configs import combos, parse_ints, random_sources
from s2s_export.bench.report import details_markdown, figures, machine_info, machine_slug, quality_markdown
from s2s_export.bench.workers import launch, summary, worker_env
from s2s_export.errors import UsageError

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

# the same tiny model as test_runtime / test_reference (trained once per session)
TRAIN_STEPS, TRAIN_EMB, TRAIN_HIDDEN = 120, 16, 32
COMBOS = ((1, 1), (4, 3))


@pytest.fixture(scope="module")
def tiny(tiny_checkpoint: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A trained tiny luong-general model, its bundle with int8 graphs, held-out sources."""
    from conftest import tiny_overrides, tiny_task

    from s2s_export.export import export_model
    from s2s_export.int8 import quantize_bundle
    from s2s_export.models import load_checkpoint

    torch.set_num_threads(1)
    path = tiny_checkpoint("luong-general", steps=TRAIN_STEPS, **tiny_overrides("luong-general", TRAIN_EMB, TRAIN_HIDDEN))
    ckpt = load_checkpoint(path)
    bundle = export_model(path, tmp_path_factory.mktemp("bench") / "bundle", topk=8, verify=False, max_src_len=24)
    quantize_bundle(bundle.path)
    pairs = [(ckpt.src_vocab.encode(list(s)), ckpt.tgt_vocab.encode(list(t))) for s, t in tiny_task("reverse").test[:12]]
    return {"model": path, "bundle": bundle.path, "ckpt": ckpt, "pairs": pairs, "sources": [p[0] for p in pairs]}


@pytest.fixture(scope="module")
def bench_result(tiny: dict[str, Any]) -> dict[str, Any]:
    spec = BenchSpec(bundle=tiny["bundle"], model=tiny["model"], sources=tiny["sources"], name="tiny",
                     combos=COMBOS, threads=(1,), torch_grid=False, iters=2, warmup=1, step_iters=3,
                     encoder_iters=2, sentences=4, max_length=12)
    lines: list[str] = []
    result = run_bench(spec, log=lines.append)
    result["log"] = lines
    return result


# ---------------------------------------------------------------------------------------- baseline
@pytest.mark.parametrize("beam", [1, 3])
def test_eager_loops_match_reference_search(tiny: dict[str, Any], beam: int) -> None:
    """The PyTorch baseline runs the same search as the runtime (checked against the reference)."""
    from s2s_export.bench.eager import translate
    from s2s_export.verify.reference import reference_search
    from s2s_export.vocab import EOS_ID

    from s2s_export.verify.inputs import ZOO

    model, sources = tiny["ckpt"].model, tiny["sources"]
    with torch.inference_mode():
        got = translate(model, sources, batch=5, beam_size=beam, max_length=12, max_length_ratio=None, conv=ZOO,
                        blocked=(0, 1))
    want = reference_search(model, [s + [EOS_ID] for s in sources], beam_size=beam, max_length=12, blocked=(0, 1))
    assert got == [list(h[0][0]) for h in want]


def test_eager_ratio_limits(tiny: dict[str, Any]) -> None:
    from s2s_export.bench.eager import translate

    with torch.inference_mode():
        from s2s_export.verify.inputs import ZOO

        got = translate(tiny["ckpt"].model, tiny["sources"], batch=3, beam_size=2, max_length=50, max_length_ratio=0.5,
                        conv=ZOO)
    for src, ids in zip(tiny["sources"], got):
        assert 1 <= len(ids) <= math.ceil(0.5 * (len(src) + 1))


# ---------------------------------------------------------------------------------------- the floor
@pytest.mark.parametrize("preset", ["luong-general", "luong-dot", "bahdanau", "luong-local-p", "seed-layerwise",
                                    "seed-global-mha"])
def test_floor_runs_every_architecture(preset: str) -> None:
    from s2s_export.bench.floor import Floor
    from s2s_export.models import Seq2Seq, preset_config

    from conftest import tiny_overrides

    cfg = preset_config(preset, 20, 30, **tiny_overrides(preset, 8, 16))
    weights = {k: v.numpy() for k, v in Seq2Seq(cfg).state_dict().items()}
    floor = Floor(weights, cfg.to_dict())
    floor.step(3, 7)()
    floor.encoder(2, 5)()
    floor.replay([["encode", 2, 5], ["step", 2, 5], ["step", 1, 5]])()


# ---------------------------------------------------------------------------------------- configs
def test_plan_order_and_labels() -> None:
    spec = BenchSpec(bundle=Path("b"), model=Path("m"), sources=[[5]], threads=(1, 2))
    labels = [c.label for c in plan(spec)]
    assert labels == ["torch default", "torch 1t onednn", "torch 1t no-onednn", "torch 2t onednn",
                      "torch 2t no-onednn", "ort fp32 1t", "ort fp32 2t", "ort fp32 2t spin-step",
                      "ort fp32 2t spin-all", "ort int8 1t", "ort int8 2t", "ort int8 2t spin-step",
                      "ort int8 2t spin-all", "floor 1t", "floor 2t"]
    assert "ort int8 1t" not in [c.label for c in plan(spec, int8=False)]
    assert WorkerConfig.from_dict(WorkerConfig("torch", 2, mkldnn=False).to_dict()).label == "torch 2t no-onednn"
    # results files written before the spinning policies (spin was a bool: all sessions spun)
    old = {"engine": "onnxruntime", "threads": 2, "precision": "fp32", "mkldnn": None}
    assert WorkerConfig.from_dict({**old, "spin": True}).label == "ort fp32 2t spin-all"
    assert WorkerConfig.from_dict({**old, "spin": False}).label == "ort fp32 2t"


def test_rounds_keep_each_figures_best_round() -> None:
    from s2s_export.bench.report import merge_rounds

    def worker(rnd: int, step: float, pass_s: float) -> dict[str, Any]:
        t = {"median": step, "p10": step, "p90": step}
        d = {"sentences": 10, "tokens": 50, "pass": {"median": pass_s, "p10": pass_s, "p90": pass_s}}
        return {"label": "ort fp32 1t", "round": rnd, "config": {"engine": "onnxruntime", "precision": "fp32"},
                "step_b1": t, "decode": {"b1-beam1": d}, "memory": {"maxrss_mb": 100.0}, "loop": {"r": rnd}}

    merged = merge_rounds([worker(0, 0.002, 1.0), worker(1, 0.001, 2.0)])
    assert len(merged) == 1 and merged[0]["rounds"] == 2
    figs = merged[0]["figures"]
    assert figs["step_b1"]["median"] == pytest.approx(1.0) and figs["step_b1"]["round"] == 1  # ms, lower wins
    assert figs["sent_s_b1-beam1"]["median"] == pytest.approx(10.0) and figs["sent_s_b1-beam1"]["round"] == 0
    assert merged[0]["loop"] == {"r": 0}  # the rest from the round with the best greedy figure


def test_spec_inputs_and_validation() -> None:
    srcs = random_sources(50, 5, 2, 6, seed=1)
    assert srcs == random_sources(50, 5, 2, 6, seed=1) and all(4 <= i < 50 for s in srcs for i in s)
    spec = BenchSpec(bundle=Path("b"), model=Path("m"), sources=srcs, sentences=3, combos=((1, 1), (8, 5)))
    wl = spec.workload()
    assert len(wl["passes"]["1"]) == 3 and len(wl["passes"]["8"]) == 8  # the pool is cycled
    assert wl["latency_source"] == sorted(srcs, key=len)[2]
    assert combos((1, 32), (1, 5)) == ((1, 1), (1, 5), (32, 1), (32, 5))
    assert parse_ints("1, 2", "threads") == (1, 2)
    for bad in ("", "a,b"):
        with pytest.raises(UsageError):
            parse_ints(bad, "threads")
    for kwargs in ({"threads": (0,)}, {"combos": ((0, 1),)}, {"iters": 0}, {"sources": []}, {"precisions": ("fp16",)},
                   {"rounds": 0}):
        with pytest.raises(UsageError):
            BenchSpec(**{"bundle": Path("b"), "model": Path("m"), "sources": srcs, **kwargs}).validate()


def test_worker_env_and_failure_is_reported(tmp_path: Path) -> None:
    assert worker_env(2)["OMP_NUM_THREADS"] == "2" and worker_env(2)["OPENBLAS_NUM_THREADS"] == "2"
    assert "MKL_NUM_THREADS" not in worker_env(None)
    job = {"kind": "measure", "config": WorkerConfig("floor", 1).to_dict(), "weights": str(tmp_path / "none.npz"),
           "workload": {}}
    res = launch(job, tmp_path, "bad", 1, timeout_s=120)
    assert "error" in res and "none.npz" in res["error"]


def test_summary_stats() -> None:
    s = summary([3.0, 1.0, 2.0, 4.0, 5.0])
    assert s["median"] == 3.0 and s["min"] == 1.0 and s["n"] == 5 and s["p10"] < s["q1"] < s["q3"] < s["p90"]


# ---------------------------------------------------------------------------------------- end to end
def test_harness_result_is_well_formed(bench_result: dict[str, Any]) -> None:
    res = bench_result
    labels = [w["label"] for w in res["workers"]]
    assert labels == ["torch default", "torch 1t", "ort fp32 1t", "ort int8 1t", "floor 1t"]
    assert not [w["error"] for w in res["workers"] if "error" in w]
    assert res["machine"]["cpus"] and res["machine"]["versions"]["onnxruntime"]
    assert len(res["log"]) == 2 * len(labels)
    keys = {"b1-beam1", "b4-beam3"}
    for w in res["workers"]:
        assert w["step_b1"]["n"] == 3 and w["step_b1"]["median"] > 0
        assert set(w["encoder"]) == {"1", "4"}
        assert set(w["decode"]) == keys
        for d in w["decode"].values():
            assert d["pass"]["n"] == 2 and d["pass"]["median"] > 0 and d["tokens"] > 0
        assert w["memory"]["maxrss_mb"] >= w["memory"]["after_load_mb"] > 0
        if w["config"]["engine"] != "floor":  # every step of the instrumented greedy b1 passes
            assert w["step_b1_loop"]["n"] == 2 * sum(len(o) for o in w["decode"]["b1-beam1"]["outputs"])
        engine = w["config"]["engine"]
        if engine == "torch":
            assert w["info"]["torch_threads"] >= 1
            assert w["env"]["OMP_NUM_THREADS"] == (None if w["label"] == "torch default" else "1")
        if engine == "onnxruntime":
            assert w["step_b1_graph"]["median"] > 0  # (its ratio to step_b1 is a measurement, not a test)
            for key in keys:
                loop = w["loop"][key]
                assert 0 < loop["graph"]["median"] <= loop["backend"]["median"] <= loop["total"]["median"]
                assert loop["overhead_vs_graph"] >= loop["search_loop_vs_graph"] >= 0
            fused = w["loop"]["b1-beam1-fused"]  # greedy b1 on the bundle's fused greedy graph
            assert 0 < fused["graph"]["median"] <= fused["backend"]["median"] <= fused["total"]["median"]
            assert fused["overhead_vs_graph"] >= 0
        if engine == "floor":  # replays the FP32 runtime's steps
            fp32 = next(x for x in res["workers"] if x["label"] == "ort fp32 1t")
            for key in keys:
                assert w["decode"][key]["steps"] == fp32["loop"][key]["steps"] > 0
                assert w["decode"][key]["tokens"] == fp32["decode"][key]["tokens"]
    assert "schedule" not in next(x for x in res["workers"] if x["label"] == "ort fp32 1t")
    json.dumps(res)


def test_ort_engine_spinning_variant(tiny: dict[str, Any]) -> None:
    from s2s_export.bench.engines import OrtEngine

    wl = {"max_length": 12, "max_length_ratio": None}
    plain = OrtEngine({"bundle": str(tiny["bundle"])}, WorkerConfig("onnxruntime", 1))
    spin = OrtEngine({"bundle": str(tiny["bundle"])}, WorkerConfig("onnxruntime", 2, precision="int8", spin="all"))
    for session in (spin.backend.encoder, spin.backend.step_session):
        opts = session.get_session_options()
        assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert opts.intra_op_num_threads == 2 and spin.info["spinning"] == "all"
    off = plain.backend.step_session.get_session_options()
    assert off.get_session_config_entry("session.intra_op.allow_spinning") == "0"  # configs say "off"
    assert len(spin.translate(tiny["sources"], 4, 1, wl)) == len(plain.translate(tiny["sources"], 4, 1, wl))
    del spin


def test_configurations_agree(bench_result: dict[str, Any]) -> None:
    """Same inputs, same search: torch (any setting) and the FP32 runtime give the same outputs."""
    s = summarize(bench_result)
    assert s["agreement"]["torch 1t"] == {"b1-beam1": 1.0, "b4-beam3": 1.0}
    assert s["agreement"]["ort fp32 1t"] == {"b1-beam1": 1.0, "b4-beam3": 1.0}
    assert set(s["agreement"]["ort int8 1t"]) == {"b1-beam1", "b4-beam3"}


def test_summary_and_markdown(bench_result: dict[str, Any]) -> None:
    s = summarize(bench_result, quality={"fp32": {"word_error_rate": 0.2}, "int8": {"word_error_rate": 0.205}})
    table = s["table"]
    assert {"step_b1", "step_b1_loop", "encoder_b1", "sent_s_b1-beam1", "tok_s_b4-beam3", "peak_mb"} <= set(table)
    assert table["step_b1_loop"]["floor"] == table["step_b1"]["floor"]  # the floor has no decode loop
    for group in ("torch default", "torch best", "ort fp32", "ort int8", "floor"):
        assert table["step_b1"][group]["median"] > 0
    assert table["sent_s_b1-beam1"]["torch best"]["config"] in ("torch default", "torch 1t")
    r = s["ratios"]["sent_s_b1-beam1"]
    fp32, torch_default = table["sent_s_b1-beam1"]["ort fp32"]["median"], table["sent_s_b1-beam1"]["torch default"]["median"]
    assert r["fp32 vs torch default"] == pytest.approx(fp32 / torch_default)
    assert s["ratios"]["step_b1"]["fp32 x floor"] == pytest.approx(
        table["step_b1"]["ort fp32"]["median"] / table["step_b1"]["floor"]["median"])
    targets = {t["target"]: t for t in s["targets"]}
    wer = targets["INT8 WER within 1 point of FP32 (points)"]
    assert wer["measured"] == pytest.approx(0.5) and wer["met"] is True
    assert all(t["met"] in (True, False, None) for t in s["targets"])
    md = markdown(s)
    assert "| decoder step, batch 1, back to back (ms) |" in md and "greedy, batch 1 (sentences/s)" in md
    assert "decoder step inside greedy b1 decoding" in md
    assert "beam 3, batch 4 (tokens/s)" in md and "INT8 WER within 1 point" in md
    assert details_markdown(s).count("\n") == 2 + len(bench_result["workers"])
    assert machine_slug(machine_info()).startswith(f"{machine_info()['cpus']}cpu-")
    for w in bench_result["workers"]:
        assert figures(w)["step_b1"]["lo"] <= figures(w)["step_b1"]["hi"]
    json.dumps(s)


def test_quality_scores_precisions(tiny: dict[str, Any]) -> None:
    q = run_quality(tiny["bundle"], tiny["pairs"], threads=1, max_length=12)
    assert set(q) >= {"fp32", "int8"}, q
    for prec in ("fp32", "int8"):
        assert q[prec]["n"] == len(tiny["pairs"]) and 0 <= q[prec]["word_error_rate"] <= 1
    assert 0 <= q["int8"]["identical_to_fp32"] <= 1
    assert "| int8 |" in quality_markdown(q)


def test_cli_bench(tiny: dict[str, Any], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from s2s_export.cli.main import app

    inputs = tmp_path / "in.txt"
    inputs.write_text("abc\ncdeab\n\nfed\n")
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["bench", str(tiny["bundle"]), "--model", str(tiny["model"]), "--batch", "1",
                                   "--beam", "1", "--threads", "1", "--iters", "1", "--step-iters", "2",
                                   "--encoder-iters", "1", "--sentences", "2", "--no-tuning", "-i", str(inputs),
                                   "--json", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert "| greedy, batch 1 (sentences/s) |" in res.output
    doc = json.loads(out.read_text())
    assert doc["result"]["spec"]["n_sources"] == 3
    assert [w["label"] for w in doc["result"]["workers"]] == ["torch default", "torch 1t", "ort fp32 1t",
                                                              "ort int8 1t", "floor 1t"]
    bad = CliRunner().invoke(app, ["bench", str(tiny["bundle"]), "--model", str(tmp_path / "missing.pt")])
    assert bad.exit_code == 4 and "does not exist" in bad.output
    bad = CliRunner().invoke(app, ["bench", str(tiny["bundle"]), "--model", str(tiny["model"]), "--threads", "x"])
    assert bad.exit_code == 1
    joey = Path(__file__).parent / "fixtures" / "peers" / "joeynmt" / "gru_bahdanau"  # another tool's model
    bad = CliRunner().invoke(app, ["bench", str(tiny["bundle"]), "--model", str(joey)])
    assert bad.exit_code == 2 and "s2s bench measures s2s-export checkpoints" in bad.output
    assert "benchmarks/tools.py" in bad.output and len(bad.output.strip().splitlines()) == 1


def test_runtime_never_imported_torch_in_the_harness() -> None:
    """The harness process stays torch-free (torch lives in the workers)."""
    import subprocess
    import sys

    code = ("import sys, s2s_export.bench, s2s_export.bench.harness, s2s_export.bench.report, "
            "s2s_export.bench.floor; print('torch' in sys.modules, 'onnxruntime' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
