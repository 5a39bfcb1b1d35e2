"""The pure parts of ``benchmarks/tools.py`` (the comparison with the tools users run today):
output comparison, line reading, CPU flags, goals and their verdicts, the markdown report, the
search flags given to ``s2s translate``, and the process measurement on a trivial command. No
tool, model or bundle is involved, and no timing is asserted."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tools() -> Any:
    spec = importlib.util.spec_from_file_location("s2s_bench_tools", ROOT / "benchmarks" / "tools.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_harness_imports_neither_torch_nor_onnxruntime(tools: Any) -> None:
    source = (ROOT / "benchmarks" / "tools.py").read_text()
    assert "import torch" not in source and "import onnxruntime" not in source
    workers = (ROOT / "benchmarks" / "tool_workers.py").read_text()
    top = workers.split("\ndef ", 1)[0]  # the workers import their tools inside functions only
    assert "import torch" not in top and "import onnxruntime" not in top


def test_compare_counts_every_difference_and_keeps_the_first(tools: Any) -> None:
    inputs = ["a", "b", "c", "d"]
    same = tools.compare(["x", "y", "z", "w"], ["x", "y", "z", "w"], inputs)
    assert (same["identical"], same["lines"], same["first_differences"]) == (4, 4, [])
    got = tools.compare(["x", "y", "z", "w"], ["x", "Y", "z"], inputs, keep=1)
    assert (got["identical"], got["lines"], got["tool_lines"], got["ours_lines"]) == (2, 4, 4, 3)
    assert got["first_differences"] == [{"line": 2, "input": "b", "tool": "y", "ours": "Y"}]
    missing = tools.compare(["x", "y", "z", "w"], ["x", "Y", "z"], inputs)["first_differences"][-1]
    assert missing == {"line": 4, "input": "d", "tool": "w", "ours": None}  # a missing line is a difference


def test_read_lines_splits_at_newline_only(tmp_path: Path, tools: Any) -> None:
    f = tmp_path / "x.txt"
    f.write_bytes("a b\r\n\nc\x0cd\u2028e\nlast".encode())
    assert tools.read_lines(f) == ["a b", "", "c\x0cd\u2028e", "last"]
    f.write_text("one\n")
    assert tools.read_lines(f) == ["one"]


def test_cpu_flags_and_machine_name(tools: Any) -> None:
    text = "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse avx2 fma avx512f amx_tile\n"
    assert tools.cpu_flags(text) == ["avx2", "fma", "avx512f", "amx_tile"]
    assert tools.cpu_flags("no flags here") == []
    slug = tools.cpu_slug({"cpu": "AMD EPYC 7B13 64-Core Processor", "cpus": 2})
    assert slug == "2cpu-amd-epyc-7b13-64-core-processor"


def test_search_flags_for_onmt_runner_and_their_library_options(tools: Any) -> None:
    flags = tools.runner_flags()
    assert flags == ["--max-length", "100", "--min-length", "0", "--length-penalty", "none", "--alpha", "0.0"]
    assert tools.flag_options(flags) == {"max_length": 100, "min_length": 0, "length_penalty": "none", "alpha": 0.0}
    assert tools.flag_options(["--max-length-ratio", "1.5"]) == {"max_length_ratio": 1.5}


def _result(model: str, tool: str, mode: str, batch: str, tool_s: float, ours_s: float, tool_mb: float,
            ours_mb: float, call_ms: tuple[float, float] | None = None) -> dict[str, Any]:
    agree = {"identical": 3, "lines": 4, "first_differences": [{"line": 2, "input": "in", "tool": "t", "ours": "o"}]}
    side = lambda s, mb: {"median_s": s, "median_cpu_s": s * 0.9, "peak_rss_mb": mb}  # noqa: E731
    inproc = {"tool": side(tool_s / 2, tool_mb), "ours": side(ours_s / 2, ours_mb), "agreement": dict(agree)}
    if call_ms:
        inproc["tool"]["call_ms"] = {"median": call_ms[0]}
        inproc["ours"]["call_ms"] = {"median": call_ms[1]}
    return {"model": model, "tool": tool, "mode": mode, "batch": batch, "tool_batch": 1 if batch == "1" else 30,
            "ours_batch": 1 if batch == "1" else 30, "sentences": 4,
            "whole": {"tool": side(tool_s, tool_mb), "ours": side(ours_s, ours_mb), "agreement": agree},
            "inproc": inproc}


def test_goals_say_met_or_by_how_much_missed(tools: Any) -> None:
    results = [_result("m", "opennmt", "beam5", "1", 10.0, 1.0, 300.0, 90.0),
               _result("m", "opennmt", "beam5", "default", 8.0, 2.0, 300.0, 150.0),
               _result("m", "opennmt", "greedy", "1", 8.0, 2.0, 300.0, 150.0),  # no goal at greedy
               _result("g", "g2p_en", "greedy", "1", 6.0, 1.0, 100.0, 120.0, call_ms=(1.8, 0.9))]
    goals = tools.goals(results)
    by = {(g["where"], g["goal"].split()[0] + g["goal"].split()[1]): g for g in goals}
    speed = by[("m / onmt_translate / beam5 / batch 1", ">=5x")]
    assert speed["met"] and speed["verdict"] == "met (10.00x >= 5x; CPU time 10.00x)"
    slow = by[("m / onmt_translate / beam5 / batch default", ">=5x")]
    assert not slow["met"] and slow["verdict"] == "missed: 4.00x, 1.25x short of 5x; CPU time 4.00x"
    memory = by[("m / onmt_translate / beam5 / batch default", "peakmemory")]
    assert not memory["met"] and memory["verdict"] == "missed: 0.50 of the tool's, 1.50x over 1/3"
    assert by[("m / onmt_translate / beam5 / batch 1", "peakmemory")]["met"]
    assert not [g for g in goals if g["where"].startswith("m /") and "greedy" in g["where"]]
    g2p = [g for g in goals if g["where"].startswith("g /")]
    word = [g for g in g2p if "per word" in g["goal"]][0]
    assert not word["met"] and word["verdict"] == "missed: 2.00x, 1.50x short of 3x"
    g2p_memory = [g for g in g2p if "memory" in g["goal"]][0]
    assert not g2p_memory["met"] and "1.20x over 1x" in g2p_memory["verdict"]


def test_render_has_the_tables_the_differences_and_the_goals(tools: Any) -> None:
    results = [_result("m", "opennmt", "beam5", "1", 10.0, 1.0, 300.0, 90.0)]
    doc = {"date": "2026-12-01T00:00:00+00:00", "preliminary": True, "quick": False,
           "machine": {"cpus": 2, "cpu": "Some CPU", "isa": ["avx2"]}, "load_before": [1.0, 1.0, 1.0],
           "load_after": [2.0, 2.0, 2.0], "versions": {"OpenNMT-py": "3.5.1", "onnxruntime": "1.32.0"},
           "command": "python benchmarks/tools.py", "settings": {"threads": 1, "spinning": None, "repeats": 3,
                                                                  "passes": 3, "rounds": 2},
           "models": {"m": {"title": "a model", "notes": ["A note."]}, "x": {"title": "broken", "error": "no venv"}},
           "results": results, "goals": tools.goals(results)}
    md = tools.render(doc)
    assert "**Preliminary**" in md and "2 x Some CPU (avx2)" in md and "OpenNMT-py 3.5.1" in md
    assert ("| onmt_translate | beam5 | 1/1 | 4 | 10.00 (9.00) | 1.00 (0.90) | 10.00x (10.00x) | 5.00 / 0.50 | 300 | "
            "90 | 0.30 | 3/4 |") in md
    assert "| onmt_translate | beam5 | 1/1 | 5.000 (4.500) | 0.500 (0.450) | 10.00x (10.00x) | - | 3/4 |" in md
    assert "line 2 `in`: tool `t`, s2s `o`" in md and "A note." in md
    assert "## x: broken\n\nNot measured: no venv" in md
    assert "| >= 5x whole process | m / onmt_translate / beam5 / batch 1 | met (10.00x >= 5x; CPU time 10.00x) |" in md


def test_run_measured_reports_time_memory_and_exit_code(tmp_path: Path, tools: Any) -> None:
    out = tmp_path / "out.txt"
    m = tools.run_measured(["sh", "-c", "echo hi; exit 3"], dict(os.environ), stdout=out)
    assert m["rc"] == 3 and m["wall_s"] > 0 and m["cpu_s"] >= 0 and m["peak_rss_mb"] > 0
    assert tools.read_lines(out) == ["hi"]
    assert tools.tree_rss_mb(os.getpid()) > 1
