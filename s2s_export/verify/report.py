"""Presenting a verify report: the terminal summary, the JSON file and a self-contained HTML page
(matplotlib PNGs inlined as base64: the error of every output per step, and the attention of a
diverging example, PyTorch beside the bundle). torch-free."""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from pathlib import Path
from typing import Any

from ..errors import BadInputError, MissingDependencyError

MAX_LISTED = 5  # divergences listed in the terminal summary


def _g(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and (math.isinf(x) or math.isnan(x)):
        return str(x)
    return f"{x:.1e}" if isinstance(x, float) else str(x)


def _tol_groups(tol: dict[str, Any]) -> str:
    groups: dict[tuple[float, float], list[str]] = {}
    for name, t in tol["outputs"].items():
        groups.setdefault((t["atol"], t["rtol"]), []).append("others" if name == "*" else name)
    return "; ".join(f"{', '.join(names)} atol {a:g} rtol {r:g}" for (a, r), names in groups.items())


def _quality(q: dict[str, Any]) -> str:
    metric = q.get("metric")
    if metric == "bleu":
        p, b = q["pytorch"], q["backend"]
        return (f"BLEU {p['bleu']:.2f} -> {b['bleu']:.2f} ({b['bleu'] - p['bleu']:+.2f}), "
                f"accuracy {p['accuracy']:.1%} -> {b['accuracy']:.1%}")
    if metric == "per/wer":
        p, b = q["pytorch"], q["backend"]
        return (f"PER {p['per']:.2%} -> {b['per']:.2%} ({b['per'] - p['per']:+.2%}), "
                f"WER {p['wer']:.2%} -> {b['wer']:.2%} ({b['wer'] - p['wer']:+.2%})")
    return f"BLEU vs PyTorch {q['agreement_bleu']:.2f}"


def run_label(name: str, s: dict[str, Any]) -> str:
    """``greedy`` or ``beam N`` for a free-running section ``s`` named ``name``."""
    return "greedy" if name == "greedy" else f"beam {s['beam_size']}"


def step_label(step: int | str) -> str:
    """Where a teacher-forced figure comes from: ``the initial state`` (``"encoder"``) or ``step t``."""
    return "the initial state" if step == "encoder" else f"step {step}"


def _verdict(r: dict[str, Any], gating: bool = True) -> str:
    """``ok``, ``FAIL at the initial state`` or ``FAIL from step t`` of one output's figures
    (``over from ...`` where raw errors do not gate)."""
    where = r["first_failing_step"]
    word = "FAIL" if gating else "over"
    return "ok" if r["ok"] else (f"{word} at the initial state" if where == "encoder" else f"{word} from step {where}")


def _divergence(m: dict[str, Any]) -> str:
    kind = "near tie" if m["near_tie"] else "DIVERGES"
    gap = "" if m.get("score_gap") is None else f", score gap {m['score_gap']:.3g}"
    return (f"sentence {m['sentence']} step {m['step']}: PyTorch {m['pytorch_token_text']!r} vs bundle "
            f"{m['backend_token_text']!r}, margin {m['margin']:.3g}{gap} ({kind})")


def top1_line(top1: dict[str, Any], gate: float | None) -> str:
    """The teacher-forced top-1 agreement, with its verdict where it gates."""
    verdict = "" if gate is None else (" ok" if top1["agreement"] >= gate - 1e-12 else " FAIL")
    return (f"top-1 agreement {top1['agreement']:.2%} ({top1['agreeing']}/{top1['sentence_steps']}"
            f"{'' if gate is None else f', min {gate:.0%}'}){verdict}; near ties {top1['near_ties']}, "
            f"largest margin {top1['max_margin']:.3g} nats")


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The terminal summary: what ran, the tolerances, the per-output table, the free-running
    comparisons, the divergences and the verdict."""
    tol = report["tolerances"]
    model = report.get("model") or {}
    lines = [f"s2s verify: {report['bundle']} ({report['backend']}, {report['precision']}) vs "
             f"{model.get('path', 'the PyTorch model')}",
             f"inputs: {report['inputs']['description']}, source lengths "
             f"{report['inputs']['src_lengths'][0]}..{report['inputs']['src_lengths'][1]} (framing included)",
             f"tolerances ({tol['precision_defaults']} defaults"
             + (f"; changed: {', '.join(tol['overridden'])}" if tol["overridden"] else "")
             + f"): {_tol_groups(tol)}{'' if tol.get('gate_raw', True) else ' (reported, not gating)'}; "
             f"identical or near tie >= {tol['min_exact']:.0%}; near tie <= {tol['tie_margin']:g} nats"
             + (f"; top-1 agreement >= {tol['min_top1']:.0%}" if tol.get("min_top1") is not None else "")
             + (f"; task metric within {tol['max_metric_drop']:g} point" if tol.get("max_metric_drop") is not None
                else "")
             + (f"; scores within {tol['max_score_per_token']:g} nats per token"
                if tol.get("max_score_per_token") is not None and not tol.get("gate_raw", True) else "")]
    tf = report["teacher_forced"]
    lines += ["", f"teacher-forced ({tf['sentences']} sentences, {tf['steps']} steps, {tf['row_steps']} "
                  f"sentence-steps; PyTorch's greedy tokens fed to both)"]
    if tf.get("note"):
        lines.append(f"  note: {tf['note']}")
    width = max([len(k) for k in tf["outputs"]] + [6])
    lines.append(f"  {'output':<{width}}  {'max abs':>8}  {'max rel':>8}  {'p99 abs':>8}  {'atol':>7}  "
                 f"{'rtol':>7}  result")
    for key, r in tf["outputs"].items():
        lines.append(f"  {key:<{width}}  {_g(r['max_abs']):>8}  {_g(r['max_rel']):>8}  {_g(r['p99_abs']):>8}  "
                     f"{r['atol']:>7g}  {r['rtol']:>7g}  {_verdict(r, tol.get('gate_raw', True))}")
    if tf.get("top1"):
        lines.append("  " + top1_line(tf["top1"], tol.get("min_top1")))
    first = tf.get("first_failure")
    if first and tol.get("gate_raw", True):
        lines.append(f"  first failure: {first['output']} at {step_label(first['step'])}, sentence {first['sentence']} "
                     f"(max abs {first['max_abs']:.3g}, atol {first['atol']:g})")
    lines += ["", "free-running (runtime search vs PyTorch reference search)"]
    for name, s in report["free_running"].items():
        lines.append(f"  {run_label(name, s):<7} identical {s['exact']}/{s['sentences']}, near ties "
                     f"{s['near_ties']}, diverging {s['divergent']}: {s['agreement']:.1%} (min "
                     f"{s['min_exact']:.0%}) {'ok' if s['agreement'] >= s['min_exact'] - 1e-12 else 'FAIL'}; "
                     f"score diff {s['max_score_diff']:.2g}"
                     f"{'' if s['scores_ok'] or not tol.get('gate_raw', True) else ' FAIL'}; "
                     f"{_quality(s['quality'])}")
        listed = sorted(s["mismatches"], key=lambda m: m["near_tie"])[:MAX_LISTED]
        for m in listed:
            lines.append(f"          {_divergence(m)}")
        if len(s["mismatches"]) > len(listed):
            lines.append(f"          ... {len(s['mismatches']) - len(listed)} more in the JSON report")
    real = report.get("fp16_real_arithmetic")
    if real:
        lines += ["", f"fp16 with real float16 arithmetic ({real['evaluator']}; informational, "
                  f"{real['sentences']} sentences, {real['steps']} steps) vs fp32: top-1 agreement "
                  f"{real['top1_agreement']:.1%}, greedy exact match {real['exact_match']:.1%}, max top-k "
                  f"log-prob error {_g(real['max_logprob_error_topk'])}"]
    lines += ["", f"result: {'PASSED' if report['passed'] else 'FAILED'}"]
    return lines


def write_json(report: dict[str, Any], path: str | os.PathLike[str]) -> None:
    _write(Path(path), json.dumps(_jsonable(report), indent=1) + "\n")


def _jsonable(x: Any) -> Any:
    """inf/nan -> strings (JSON has neither)."""
    if isinstance(x, float) and (math.isinf(x) or math.isnan(x)):
        return str(x)
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise BadInputError(f"cannot write {path} ({exc.strerror})", "choose a writable path") from None


def require_matplotlib(needed_by: str = "--html") -> Any:
    """``matplotlib.pyplot`` (Agg backend) or ``MissingDependencyError`` naming the option
    that needs it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError(f"matplotlib is not installed (needed by {needed_by})",
                                     "install it: pip install 's2s-export[plot]'") from None
    return plt


def _png(fig: Any, plt: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def error_plot(report: dict[str, Any], plt: Any) -> str:
    """Max abs error of every step output per step (log scale), atol lines dashed: base64 PNG."""
    tf = report["teacher_forced"]
    steps = [s["step"] for s in tf["per_step"]]
    fig, ax = plt.subplots(figsize=(8.0, 4.2))
    names = [k.split("/", 1)[1] for k in tf["outputs"] if k.startswith("decoder_step/")]
    for name in names:
        ys = [max(s["outputs"][name]["max_abs"], 1e-12) if name in s["outputs"] else float("nan")
              for s in tf["per_step"]]
        line, = ax.plot(steps, ys, marker="." if len(steps) < 40 else None, label=name)
        atol = tf["outputs"][f"decoder_step/{name}"]["atol"]
        ax.axhline(atol, color=line.get_color(), linestyle="--", linewidth=0.7, alpha=0.6)
    first = tf.get("first_failure")
    if first and first["step"] != "encoder":
        ax.axvline(first["step"], color="red", linewidth=1.0, label=f"first failure ({first['output']})")
    ax.set_yscale("log")
    ax.set_xlabel("decoder step")
    ax.set_ylabel("max |bundle - PyTorch|")
    ax.set_title("teacher-forced error per step (dashed: atol)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return _png(fig, plt)


def attention_plot(example: dict[str, Any], plt: Any) -> str:
    """PyTorch's and the bundle's greedy attention of one example side by side: base64 PNG."""
    xs = example["source"]
    panels = [("PyTorch", example["pytorch"], example["pytorch_attention"]),
              ("bundle", example["backend"], example["backend_attention"])]
    rows = max(len(p[1]) for p in panels)
    fig, axes = plt.subplots(1, 2, figsize=(max(6.0, 0.6 * len(xs) + 3.0), max(3.2, 0.32 * rows + 2.0)),
                             layout="constrained")
    for ax, (title, ys, attn) in zip(axes, panels):
        im = ax.imshow(attn, cmap="viridis", aspect="auto", vmin=0.0, vmax=1.0)
        ax.set_xticks(range(len(xs)), labels=xs, rotation=90, fontsize=7)
        ax.set_yticks(range(len(ys)), labels=ys, fontsize=7)
        ax.set_xlabel("source")
        ax.set_title(title)
        if example.get("step") is not None and example["step"] < len(ys):  # the first diverging step
            ax.add_patch(plt.Rectangle((-0.5, example["step"] - 0.5), len(xs), 1.0, fill=False,
                                       edgecolor="red", linewidth=1.5))
    axes[0].set_ylabel("output")
    fig.colorbar(im, ax=list(axes), shrink=0.8)
    return _png(fig, plt)


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:75em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;font-size:0.9em}
th{background:#f3f3f3}td.n{text-align:right;font-family:monospace}.ok{color:#080}.fail{color:#b00;font-weight:bold}
.tie{color:#a60}code{background:#f6f6f6;padding:0 3px}"""


def _row(cells: list[Any], header: bool = False, classes: list[str] | None = None) -> str:
    tag = "th" if header else "td"
    classes = classes or [""] * len(cells)
    return "<tr>" + "".join(f"<{tag}{f' class={c!r}' if c else ''}>{html.escape(str(x))}</{tag}>"
                            for x, c in zip(cells, classes)) + "</tr>"


def html_page(report: dict[str, Any], example: dict[str, Any], plt: Any) -> str:
    """The whole HTML report (one file, images inlined)."""
    e = html.escape
    tf = report["teacher_forced"]
    tol = report["tolerances"]
    verdict = ('<span class="ok">PASSED</span>' if report["passed"] else '<span class="fail">FAILED</span>')
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>s2s verify: {e(report['bundle'])}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>s2s verify: {verdict}</h1>",
             f"<p>Bundle <code>{e(report['bundle'])}</code> on <b>{e(report['backend'])}</b>, precision "
             f"<b>{e(report['precision'])}</b>, against the PyTorch model "
             f"<code>{e(str((report.get('model') or {}).get('path', '')))}</code>.<br>Inputs: "
             f"{e(report['inputs']['description'])}.</p>"]
    if report["failures"]:
        parts.append("<ul>" + "".join(f"<li class='fail'>{e(f)}</li>" for f in report["failures"]) + "</ul>")
    parts.append(f"<h2>Tolerances</h2><p>{e(tol['precision_defaults'])} defaults"
                 + (f" (changed: {e(', '.join(tol['overridden']))})" if tol["overridden"] else "")
                 + ". An element passes iff |bundle − PyTorch| ≤ atol + rtol·|PyTorch|. Max rel error is "
                 "taken over the elements with |PyTorch| &gt; atol (below it relative error means nothing "
                 f"and atol governs); p99 is the 99th percentile of the absolute error (to one log bin, "
                 f"20 per decade). Free-running: identical or near tie ≥ {tol['min_exact']:.0%}; near tie: "
                 f"PyTorch's margin ≤ {tol['tie_margin']:g} nats.</p><table>")
    parts.append(_row(["output", "atol", "rtol"], header=True))
    for name, t in tol["outputs"].items():
        parts.append(_row(["other outputs" if name == "*" else name, t["atol"], t["rtol"]]))
    parts.append("</table>")
    parts.append(f"<h2>Teacher-forced, per step</h2><p>{tf['sentences']} sentences, {tf['steps']} steps, "
                 f"{tf['row_steps']} sentence-steps: both decoders fed PyTorch's greedy tokens, each with its "
                 "own state." + (f" Note: {e(tf['note'])}" if tf.get("note") else "") + "</p><table>")
    parts.append(_row(["output", "max abs", "max rel", "p99 abs", "atol", "rtol", "result"], header=True))
    for key, r in tf["outputs"].items():
        parts.append(_row([key, _g(r["max_abs"]), _g(r["max_rel"]), _g(r["p99_abs"]), r["atol"], r["rtol"], _verdict(r, tol.get("gate_raw", True))],
                          classes=["", "n", "n", "n", "n", "n", "ok" if r["ok"] else "fail"]))
    parts.append("</table>")
    if tf.get("top1"):
        parts.append(f"<p>{e(top1_line(tf['top1'], tol.get('min_top1')))}</p>")
    first = tf.get("first_failure")
    if first and tol.get("gate_raw", True):
        parts.append(f"<p class='fail'>First failure: {e(first['output'])} at {e(step_label(first['step']))}, sentence "
                     f"{first['sentence']} (max abs {first['max_abs']:.3g}, atol {first['atol']:g}).</p>")
    if tf["per_step"]:
        parts.append(f"<img alt='error per step' src='data:image/png;base64,{error_plot(report, plt)}'>")
    parts.append("<h2>Free-running</h2><table>")
    parts.append(_row(["search", "identical", "near ties", "diverging", "agreement (min)", "max score diff",
                       "quality (PyTorch → bundle)"], header=True))
    for name, s in report["free_running"].items():
        ok = s["agreement"] >= s["min_exact"] - 1e-12
        parts.append(_row([run_label(name, s), f"{s['exact']}/{s['sentences']}", s["near_ties"], s["divergent"],
                           f"{s['agreement']:.1%} ({s['min_exact']:.0%})", f"{s['max_score_diff']:.2g}",
                           _quality(s["quality"])],
                          classes=["", "n", "n", "n", "ok" if ok else "fail", "n" if s["scores_ok"] else "fail", ""]))
    parts.append("</table>")
    for name, s in report["free_running"].items():
        if not s["mismatches"]:
            continue
        parts.append(f"<h3>{e(run_label(name, s))}: differences</h3><table>")
        parts.append(_row(["sentence", "source", "PyTorch", "bundle", "step", "tokens (PyTorch / bundle)", "margin",
                           "score gap", "verdict"], header=True))
        for m in s["mismatches"][:200]:
            parts.append(_row([m["sentence"], m["source"], m["pytorch_output"], m["backend_output"], m["step"],
                               f"{m['pytorch_token_text']} / {m['backend_token_text']}", f"{m['margin']:.3g}",
                               "-" if m["score_gap"] is None else f"{m['score_gap']:.3g}",
                               "near tie" if m["near_tie"] else "diverges"],
                              classes=["n", "", "", "", "n", "", "n", "n", "tie" if m["near_tie"] else "fail"]))
        parts.append("</table>")
    if example and example.get("pytorch_attention") is not None:  # a style without attention: no plot
        what = ("the first diverging sentence" if example["diverges"] and not example["near_tie"]
                else "the first near tie" if example["diverges"] else "the first sentence (none diverges)")
        parts.append(f"<h2>Attention (greedy), {e(what)}: sentence {example['sentence']}</h2>"
                     + ("<p>Red frame: the first diverging step.</p>" if example.get("step") is not None else "")
                     + f"<img alt='attention' src='data:image/png;base64,{attention_plot(example, plt)}'>")
    parts.append("<h2>Raw report</h2><details><summary>JSON</summary><pre>"
                 + e(json.dumps(_jsonable(report), indent=1)) + "</pre></details></body></html>\n")
    return "\n".join(parts)


def write_html(report: dict[str, Any], example: dict[str, Any], path: str | os.PathLike[str]) -> None:
    _write(Path(path), html_page(report, example, require_matplotlib()))


__all__ = ["attention_plot", "error_plot", "html_page", "require_matplotlib", "run_label", "step_label",
           "summary_lines", "write_html", "write_json"]
