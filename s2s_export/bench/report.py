"""Figures, ratios, targets and the markdown table of a benchmark result (torch-free).

Figures per configuration (medians, spread p10..p90; with several rounds, each figure from its
best round): ``step_b1`` (ms, one decoder step at
batch 1), ``encoder_b<N>`` (ms), ``sent_s_<combo>`` (sentences/s) and ``tok_s_<combo>``
(generated tokens/s, best hypotheses, EOS included) for every (batch, beam), ``peak_mb``
(ru_maxrss of the worker). Groups: ``torch default`` (the status quo), ``torch best`` (the
best torch configuration per figure: the honest baseline), ``ort fp32``/``ort int8`` and
``floor`` (each its best thread count per figure). Ratios are speed-ups (> 1: faster than the
baseline) except ``x floor`` (runtime time / floor time, >= 1) and memory (runtime / torch).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
from importlib import metadata
from typing import Any, Iterable

GREEDY_B1 = "b1-beam1"
BEAM5_B32 = "b32-beam5"
# (figure, higher is better)
LOWER_BETTER = ("step_b1", "encoder_", "peak_mb")
GROUPS = ("torch default", "torch best", "ort fp32", "ort int8", "floor")


# ---------------------------------------------------------------------------------------- machine
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """Machine, OS, package versions (from metadata: nothing heavy is imported), load, date."""
    mem_gb = None
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return {"cpu": _cpu_model(), "cpus": os.cpu_count(), "memory_gb": mem_gb, "os": platform.platform(),
            "python": platform.python_version(), "loadavg": list(os.getloadavg()),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "versions": {p: _version(p) for p in ("s2s-export", "torch", "onnxruntime", "numpy", "onnx")}}


def machine_slug(info: dict[str, Any]) -> str:
    """``2cpu-intel-xeon-processor``: a file-name-safe machine name."""
    cpu = "".join(c if c.isalnum() else "-" for c in str(info.get("cpu", "cpu")).lower())
    cpu = "-".join(p for p in cpu.split("-") if p and p not in ("r", "tm"))
    return f"{info.get('cpus')}cpu-{cpu}"[:60]


# ---------------------------------------------------------------------------------------- figures
def _ms(s: dict[str, float]) -> dict[str, float]:
    return {"median": s["median"] * 1e3, "lo": s["p10"] * 1e3, "hi": s["p90"] * 1e3}


def _rate(count: float | None, s: dict[str, float]) -> dict[str, float] | None:
    if not count or s["median"] <= 0:
        return None
    return {"median": count / s["median"], "lo": count / s["p90"], "hi": count / max(s["p10"], 1e-12)}


def _best_round_note(summary: dict[str, Any]) -> str:
    rounds = max((w.get("rounds", 1) for w in summary["workers"]), default=1)
    return f" Each configuration ran {rounds} times (alternating order); each figure is its best round." if rounds > 1 else ""


def figures(worker: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``{figure: {"median", "lo", "hi"}}`` of one worker result (see the module docstring)."""
    out: dict[str, dict[str, float]] = {}
    if "step_b1" in worker:
        out["step_b1"] = _ms(worker["step_b1"])
    if "step_b1_graph" in worker:
        out["step_b1_graph"] = _ms(worker["step_b1_graph"])
    if "step_b1_loop" in worker:  # headline: the mean (stalls count), spread p10..p90
        s = worker["step_b1_loop"]
        out["step_b1_loop"] = {"median": s["mean"] * 1e3, "lo": s["p10"] * 1e3, "hi": s["p90"] * 1e3}
    for b, s in worker.get("encoder", {}).items():
        out[f"encoder_b{b}"] = _ms(s)
    for key, d in worker.get("decode", {}).items():
        for name, count in ((f"sent_s_{key}", d.get("sentences")), (f"tok_s_{key}", d.get("tokens"))):
            rate = _rate(count, d["pass"])
            if rate:
                out[name] = rate
    mem = worker.get("memory", {}).get("maxrss_mb")
    if mem:
        out["peak_mb"] = {"median": mem, "lo": mem, "hi": mem}
    return out


def merge_rounds(workers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per configuration: each figure from its best round (``figures``); the rest
    (loop, outputs, info) from the round with the best greedy batch-1 figure (else the first)."""
    by_label: dict[str, list[dict[str, Any]]] = {}
    for w in workers:
        by_label.setdefault(w["label"], []).append(w)
    merged = []
    for label, ws in by_label.items():
        best: dict[str, dict[str, float]] = {}
        for w in ws:
            for fig, v in figures(w).items():
                if fig not in best or speedup(fig, v["median"], best[fig]["median"]) > 1:
                    best[fig] = {**v, "round": w.get("round", 0)}
        key = f"sent_s_{GREEDY_B1}"
        base = max(ws, key=lambda w: figures(w).get(key, {}).get("median", 0.0))
        decode = {k: dict(d) for k, d in base.get("decode", {}).items()}
        for k, d in decode.items():  # outputs may be kept for one round only (identical runs)
            if "outputs" not in d:
                d["outputs"] = next((w["decode"][k]["outputs"] for w in ws
                                     if "outputs" in w.get("decode", {}).get(k, {})), None)
        merged.append(dict(base, figures=best, rounds=len(ws), decode=decode))
    return merged


def lower_is_better(figure: str) -> bool:
    return figure.startswith(LOWER_BETTER)


def _best(workers: Iterable[dict[str, Any]], figure: str) -> tuple[dict[str, float], str] | None:
    cands = [(w["figures"][figure], w["label"]) for w in workers if figure in w["figures"]]
    if not cands:
        return None
    key = (lambda c: c[0]["median"]) if lower_is_better(figure) else (lambda c: -c[0]["median"])
    return min(cands, key=key)


def speedup(figure: str, new: float, base: float) -> float:
    """> 1: ``new`` is better than ``base``."""
    if lower_is_better(figure):
        return base / new if new else math.inf
    return new / base if base else math.inf


def summarize(result: dict[str, Any], quality: dict[str, Any] | None = None) -> dict[str, Any]:
    """Groups, ratios, agreement, loop overhead and targets of one ``run_bench`` result."""
    workers = merge_rounds([w for w in result["workers"] if "error" not in w])
    by_group: dict[str, list[dict[str, Any]]] = {
        "torch default": [w for w in workers if w["label"] == "torch default"],
        "torch best": [w for w in workers if w["config"]["engine"] == "torch"],
        "ort fp32": [w for w in workers if w["config"]["engine"] == "onnxruntime" and w["config"]["precision"] == "fp32"],
        "ort int8": [w for w in workers if w["config"]["engine"] == "onnxruntime" and w["config"]["precision"] == "int8"],
        "floor": [w for w in workers if w["config"]["engine"] == "floor"],
    }
    names = sorted({f for w in workers for f in w["figures"]}, key=_figure_order)
    table: dict[str, dict[str, Any]] = {}
    for fig in names:
        row: dict[str, Any] = {}
        for group, ws in by_group.items():
            if group == "floor" and fig == "peak_mb":  # the floor holds replay buffers: not comparable
                continue
            best = _best(ws, fig)
            if best:
                row[group] = {**best[0], "config": best[1]}
        table[fig] = row
    if "step_b1_loop" in table and "floor" in table.get("step_b1", {}):  # the floor has no loop
        table["step_b1_loop"]["floor"] = table["step_b1"]["floor"]
    ratios: dict[str, dict[str, float]] = {}
    for fig, row in table.items():
        r: dict[str, float] = {}
        for prec in ("fp32", "int8"):
            rt = row.get(f"ort {prec}")
            if not rt:
                continue
            for base in ("torch default", "torch best"):
                if base in row:
                    r[f"{prec} vs {base}"] = speedup(fig, rt["median"], row[base]["median"])
            if "floor" in row and fig != "peak_mb":
                r[f"{prec} x floor"] = 1.0 / speedup(fig, rt["median"], row["floor"]["median"])
        if "ort int8" in row and "ort fp32" in row:
            r["int8 vs fp32"] = speedup(fig, row["ort int8"]["median"], row["ort fp32"]["median"])
        for base in ("torch default", "torch best"):
            if "floor" in row and base in row and fig != "peak_mb":
                r[f"{base} x floor"] = 1.0 / speedup(fig, row[base]["median"], row["floor"]["median"])
        ratios[fig] = r
    loop = {w["label"]: w["loop"] for w in workers if "loop" in w}
    summary = {"name": result.get("name"), "table": table, "ratios": ratios, "loop": loop,
               "agreement": agreement(workers), "failed": [w for w in result["workers"] if "error" in w],
               "workers": [{"label": w["label"], "figures": w["figures"], "info": w.get("info"),
                            "wall_s": w.get("wall_s"), "rounds": w.get("rounds", 1),
                            "loadavg": [w.get("loadavg_start"), w.get("loadavg_end")]}
                           for w in workers]}
    summary["targets"] = targets(summary, quality)
    return summary


def _figure_order(fig: str) -> tuple[int, str]:
    order = ("step_b1_loop", "step_b1", "encoder_", "sent_s_", "tok_s_", "peak_mb")
    return next((i for i, p in enumerate(order) if fig.startswith(p)), len(order)), fig


def agreement(workers: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per worker and decode pass: the fraction of outputs identical to torch default's."""
    ref = next((w for w in workers if w["label"] == "torch default"), None)
    if ref is None:
        return {}
    out: dict[str, dict[str, float]] = {}
    for w in workers:
        if w is ref or w["config"]["engine"] == "floor":
            continue
        per: dict[str, float] = {}
        for key, d in w.get("decode", {}).items():
            theirs = ref.get("decode", {}).get(key, {}).get("outputs")
            if theirs and d.get("outputs"):
                per[key] = sum(a == b for a, b in zip(d["outputs"], theirs)) / len(theirs)
        out[w["label"]] = per
    return out


# ---------------------------------------------------------------------------------------- targets
def _target(name: str, measured: float | None, goal: float, higher: bool, unit: str = "x") -> dict[str, Any]:
    if measured is None or not math.isfinite(measured):
        return {"target": name, "goal": goal, "measured": None, "met": None, "by": None, "unit": unit}
    met = measured >= goal if higher else measured <= goal
    by = measured / goal if unit == "x" else measured - goal  # > 1 (or > 0): above the goal
    return {"target": name, "goal": goal, "measured": measured, "met": met, "by": by, "unit": unit}


def targets(summary: dict[str, Any], quality: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The issue's targets, met or missed, from a summary (and the INT8 quality result)."""
    r = summary["ratios"]
    g, b = f"sent_s_{GREEDY_B1}", f"tok_s_{BEAM5_B32}"
    out = [
        _target("FP32 greedy b1 sentences/s >= 5x torch default", r.get(g, {}).get("fp32 vs torch default"), 5, True),
        _target("FP32 greedy b1 sentences/s >= 3x torch best", r.get(g, {}).get("fp32 vs torch best"), 3, True),
        _target("FP32 per-step b1 within 1.5x of the floor", r.get("step_b1", {}).get("fp32 x floor"), 1.5, False),
        _target("FP32 per-step inside greedy b1 decoding within 1.5x of the floor",
                r.get("step_b1_loop", {}).get("fp32 x floor"), 1.5, False),
        _target("FP32 beam5 b32 tokens/s >= 3x torch best", r.get(b, {}).get("fp32 vs torch best"), 3, True),
        _target("FP32 beam5 b32 tokens/s >= 3x torch default", r.get(b, {}).get("fp32 vs torch default"), 3, True),
        _target("INT8 greedy b1 sentences/s >= 3x FP32", r.get(g, {}).get("int8 vs fp32"), 3, True),
        _target("INT8 per-step b1 >= 3x FP32", r.get("step_b1", {}).get("int8 vs fp32"), 3, True),
        _target("INT8 per-step inside greedy b1 decoding >= 3x FP32", r.get("step_b1_loop", {}).get("int8 vs fp32"),
                3, True),
    ]
    if quality and "fp32" in quality and "int8" in quality:
        delta = 100.0 * (quality["int8"]["word_error_rate"] - quality["fp32"]["word_error_rate"])
        out.append(_target("INT8 WER within 1 point of FP32 (points)", delta, 1.0, False, unit="points"))
    fp32_loops = {k: v for k, v in summary["loop"].items() if k.startswith("ort fp32")}
    for key, what in ((f"{GREEDY_B1}-fused", "fused greedy graph"), (GREEDY_B1, "Python search loop")):
        overheads = [v.get(key, {}).get("overhead_vs_graph") for v in fp32_loops.values()]
        overheads = [o for o in overheads if o is not None]
        if overheads or key == GREEDY_B1:
            out.append(_target(f"runtime <= 10% over graph executions at b1, {what} (best FP32 config, %)",
                               100.0 * min(overheads) if overheads else None, 10.0, False, unit="%"))
    return out


# ---------------------------------------------------------------------------------------- markdown
FIGURE_NAMES = {"step_b1": "decoder step, batch 1, back to back (ms)",
                "step_b1_loop": "decoder step inside greedy b1 decoding, mean (ms)",
                "step_b1_graph": "decoder step graph only, b1 (ms)",
                "peak_mb": "peak memory (MB, ru_maxrss)"}


def figure_name(fig: str) -> str:
    if fig in FIGURE_NAMES:
        return FIGURE_NAMES[fig]
    if fig.startswith("encoder_b"):
        return f"encoder, batch {fig[len('encoder_b'):]} (ms)"
    for prefix, unit in (("sent_s_", "sentences/s"), ("tok_s_", "tokens/s")):
        if fig.startswith(prefix):
            batch, beam = fig[len(prefix) + 1:].split("-beam")
            kind = "greedy" if beam == "1" else f"beam {beam}"
            return f"{kind}, batch {batch} ({unit})"
    return fig


def _num(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}" if x >= 0.1 else f"{x:.3f}"


def _cell(v: dict[str, Any] | None, spread: bool = True) -> str:
    if not v:
        return "-"
    text = _num(v["median"])
    if spread and v["lo"] != v["hi"]:
        text += f" [{_num(v['lo'])}-{_num(v['hi'])}]"
    return text + f" ({_short(v['config'])})"


def _short(label: str) -> str:
    return label.replace("torch ", "").replace("ort fp32 ", "").replace("ort int8 ", "").replace("floor ", "")


def _ratio(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.2f}x"


def markdown(summary: dict[str, Any], title: str | None = None) -> str:
    """The table of one model (medians [p10-p90] (configuration)), ratios, loop, targets."""
    lines = [f"### {title or summary.get('name')}", ""]
    lines += ["| figure | torch default | torch best | ORT FP32 | ORT INT8 | floor (numpy BLAS) "
              "| FP32 vs default | FP32 vs best | INT8 vs FP32 | FP32 / floor |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for fig, row in summary["table"].items():
        if fig == "step_b1_graph":
            continue
        r = summary["ratios"].get(fig, {})
        lines.append(f"| {figure_name(fig)} | " + " | ".join(_cell(row.get(g)) for g in GROUPS) + " | "
                     + " | ".join(_ratio(r.get(k)) for k in ("fp32 vs torch default", "fp32 vs torch best",
                                                              "int8 vs fp32", "fp32 x floor")) + " |")
    lines += ["", "Medians with [p10-p90] over the timed iterations; (Nt) = threads of the best "
              "configuration of that column; ratios are speed-ups (memory: torch / runtime), FP32 / floor is "
              "runtime time over the floor's time." + _best_round_note(summary), ""]
    if summary["loop"]:
        lines += ["| runtime config | pass | total (ms) | backend calls (ms) | graph runs (ms) | steps "
                  "| overhead over graph runs | of which search loop |", "|---|---|---|---|---|---|---|---|"]
        for label, per in summary["loop"].items():
            for key, e in per.items():
                ov, se = e.get("overhead_vs_graph"), e.get("search_loop_vs_graph")
                lines.append(f"| {label} | {key} | {_num(e['total']['median'] * 1e3)} | "
                             f"{_num(e['backend']['median'] * 1e3)} | {_num(e['graph']['median'] * 1e3)} | "
                             f"{e.get('steps') or '-'} | {'-' if ov is None else f'{100 * ov:.1f}%'} | "
                             f"{'-' if se is None else f'{100 * se:.1f}%'} |")
        lines.append("")
    if summary.get("agreement"):
        parts = []
        for label, per in summary["agreement"].items():
            parts.append(f"{label}: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in per.items()))
        lines += ["Outputs identical to torch default's: " + "; ".join(parts) + ".", ""]
    lines += ["| target | goal | measured | met |", "|---|---|---|---|"]
    for t in summary["targets"]:
        unit = t["unit"]
        goal = f"{t['goal']:g}{'x' if unit == 'x' else ''}"
        if t["measured"] is None:
            measured, met = "n/a", "n/a"
        else:
            measured = f"{t['measured']:.2f}{'x' if unit == 'x' else ''}"
            detail = (f"{t['by']:.2f}x of goal" if unit == "x" else f"{t['by']:+.2f} vs goal")
            met = ("met" if t["met"] else "**missed**") + f" ({detail})"
        lines.append(f"| {t['target']} | {goal} | {measured} | {met} |")
    if summary.get("failed"):
        lines += ["", "Failed configurations: " + "; ".join(f"{w.get('label')}: {w['error']}" for w in summary["failed"])]
    return "\n".join(lines) + "\n"


def details_markdown(summary: dict[str, Any]) -> str:
    """Every configuration's figures (one row each)."""
    figs = [f for f in summary["table"] if f != "step_b1_graph"]
    lines = ["| configuration | " + " | ".join(figure_name(f) for f in figs) + " | wall (s) |",
             "|---|" + "---|" * (len(figs) + 1)]
    for w in summary["workers"]:
        cells = [_num(w["figures"][f]["median"]) if f in w["figures"] else "-" for f in figs]
        lines.append(f"| {w['label']} | " + " | ".join(cells) + f" | {_num(w.get('wall_s') or 0)} |")
    return "\n".join(lines) + "\n"


def quality_markdown(quality: dict[str, Any], title: str = "INT8 quality") -> str:
    lines = [f"### {title}", "", "| precision | WER | PER | exact match | words | identical to FP32 |",
             "|---|---|---|---|---|---|"]
    for prec in ("fp32", "int8"):
        q = quality.get(prec)
        if not q:
            continue
        same = q.get("identical_to_fp32")
        lines.append(f"| {prec} | {100 * q['word_error_rate']:.2f}% | {100 * q['token_error_rate']:.2f}% | "
                     f"{100 * q['exact_match']:.2f}% | {int(q['n'])} | "
                     f"{'-' if same is None else f'{100 * same:.1f}%'} |")
    return "\n".join(lines) + "\n"


__all__ = ["agreement", "details_markdown", "figures", "machine_info", "machine_slug", "markdown",
           "quality_markdown", "summarize", "targets"]
