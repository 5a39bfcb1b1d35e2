"""``s2s_export.verify``: the teacher-forced per-step check and the free-running check on real
bundles (fp32, int8, deliberately broken ones), their numbers against direct computations,
near-tie classification, BLEU, the comparison math and the tolerances."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from s2s_export.bundle import load_manifest  # noqa: E402
from s2s_export.errors import BadInputError, ParityError, UsageError  # noqa: E402
from s2s_export.runtime import Translator  # noqa: E402
from s2s_export.runtime.backends.base import Backend, StateAccess  # noqa: E402
from s2s_export.verify import compare as cmp  # noqa: E402
from s2s_export.verify import inputs as vin  # noqa: E402
from s2s_export.verify.api import verify_bundle  # noqa: E402
from s2s_export.verify.bleu import corpus_bleu  # noqa: E402
from s2s_export.verify.freerun import classify, free_running, quality  # noqa: E402
from s2s_export.verify.reference import forced_log_probs, reference_search  # noqa: E402
from s2s_export.verify.stepwise import teacher_forced  # noqa: E402
from s2s_export.verify.tolerances import defaults, parse_tol  # noqa: E402
from s2s_export.vocab import BOS_ID, Vocab  # noqa: E402

torch.set_num_threads(1)

TRAIN_STEPS, TRAIN_EMB, TRAIN_HIDDEN = 120, 16, 32  # the model of test_runtime / test_cli_translate
N = 40  # sentences


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def setup(tiny_checkpoint: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A trained tiny model, its fp32 bundle, an int8 copy, and the held-out sources."""
    from conftest import tiny_overrides, tiny_task

    from s2s_export.export import export_model
    from s2s_export.int8 import quantize_bundle
    from s2s_export.models import load_checkpoint

    path = tiny_checkpoint("luong-general", steps=TRAIN_STEPS,
                           **tiny_overrides("luong-general", TRAIN_EMB, TRAIN_HIDDEN))
    root = tmp_path_factory.mktemp("verify")
    fp32 = export_model(path, root / "fp32", verify=False, max_src_len=32).path
    int8 = root / "int8"
    shutil.copytree(fp32, int8)
    quantize_bundle(int8)
    ckpt = load_checkpoint(path)
    m = load_manifest(fp32)
    pairs = tiny_task("reverse").test[:N]
    data = vin.from_ids([Vocab(tuple(m.src_vocab)).encode(list(s), add_eos=True) for s, _ in pairs],
                        Vocab(tuple(m.src_vocab)), m.max_src_len, references=[list(t) for _, t in pairs],
                        description="tiny reverse test pairs")
    return {"path": path, "ckpt": ckpt, "model": ckpt.model, "fp32": fp32, "int8": int8, "data": data, "root": root}


def perturbed_copy(src: Path, dst: Path, pick: Any, change: Any) -> Path:
    """Copy a bundle, change one initializer of decoder_step.onnx in place, re-hash the manifest."""
    from onnx import numpy_helper

    shutil.copytree(src, dst)
    g = onnx.load(str(dst / "decoder_step.onnx"))
    name = pick(g.graph)
    init = next(i for i in g.graph.initializer if i.name == name)
    arr = numpy_helper.to_array(init).copy()
    change(arr)
    init.CopyFrom(numpy_helper.from_array(arr, name))
    onnx.save(g, str(dst / "decoder_step.onnx"))
    m = load_manifest(dst, verify=False)
    m.save(dst)  # re-hash: the bundle loads, only the numbers are wrong
    load_manifest(dst)
    return dst


def embedding_name(graph: Any) -> str:
    """The target embedding table: the initializer gathered by the ``tokens`` input."""
    inits = {i.name for i in graph.initializer}
    return next(n.input[0] for n in graph.node if n.op_type == "Gather" and n.input[1] == "tokens"
                and n.input[0] in inits)


@pytest.fixture(scope="module")
def fp32_result(setup: dict[str, Any]) -> Any:
    return verify_bundle(setup["fp32"], setup["model"], setup["data"], backend="onnxruntime", beam_size=3)


@pytest.fixture(scope="module")
def int8_result(setup: dict[str, Any]) -> Any:
    return verify_bundle(setup["int8"], setup["model"], setup["data"], backend="onnxruntime", precision="int8",
                         beam_size=3, batch_size=64)


# ---------------------------------------------------------------- fp32

def test_fp32_bundle_passes_with_every_output_checked(setup: dict[str, Any], fp32_result: Any) -> None:
    r = fp32_result.report
    assert r["passed"] and r["failures"] == [] and r["precision"] == "fp32" and r["backend"] == "onnxruntime"
    tf = r["teacher_forced"]
    states = ["h", "c", "feed"]
    assert list(tf["outputs"]) == ([f"encoder/{s}" for s in states] + [f"decoder_step/next_{s}" for s in states]
                                   + [f"decoder_step/{o}" for o in ("attn", "log_probs", "topk_log_probs", "topk_ids")])
    for key, o in tf["outputs"].items():
        assert o["ok"] and o["max_abs"] < 1e-4 and o["p99_abs"] <= o["max_abs"], key
        assert (o["atol"], o["rtol"]) == (1e-4, 1e-3)
    assert tf["first_failure"] is None and tf["state_checked"]
    # every sentence is checked at every step of its trajectory
    traj = reference_search(setup["model"], setup["data"].sources, beam_size=1, max_length=200)
    lengths = [len(t[0][0]) for t in traj]
    assert tf["steps"] == max(lengths) and tf["row_steps"] == sum(lengths)
    assert [s["rows"] for s in tf["per_step"]] == [sum(n > t for n in lengths) for t in range(max(lengths))]
    for name in ("greedy", "beam"):
        run = r["free_running"][name]
        assert run["exact"] == N and run["divergent"] == 0 and run["passed"] and run["scores_ok"]
        q = run["quality"]
        assert q["metric"] == "bleu" and q["difference"] == {"bleu": 0.0, "accuracy": 0.0}
        assert q["agreement_bleu"] == pytest.approx(100.0)
    assert r["free_running"]["beam"]["beam_size"] == 3
    assert r["tolerances"]["min_exact"] == 1.0


def test_free_running_counts_match_a_direct_comparison(setup: dict[str, Any], fp32_result: Any) -> None:
    srcs = setup["data"].sources
    t = Translator.load(setup["fp32"], intra_op_threads=1)
    got = t.translate_ids(srcs, beam_size=3, add_eos=False)
    ref = reference_search(setup["model"], srcs, beam_size=3)
    same = sum([h[0].ids for h in got][i] == [int(x) for x in ref[i][0][0]] for i in range(N))
    assert fp32_result.report["free_running"]["beam"]["exact"] == same
    # quality vs the references, computed directly
    refs = setup["data"].references
    pt_tokens = [t.tgt_vocab.decode(r[0][0]) for r in ref]
    acc = sum(p == list(r) for p, r in zip(pt_tokens, refs)) / N
    q = fp32_result.report["free_running"]["beam"]["quality"]
    assert q["pytorch"]["accuracy"] == pytest.approx(acc)
    assert q["pytorch"]["bleu"] == pytest.approx(corpus_bleu(pt_tokens, refs))


# ---------------------------------------------------------------- int8

def test_int8_passes_its_tolerances_and_fails_the_fp32_ones(setup: dict[str, Any], int8_result: Any) -> None:
    r = int8_result.report
    assert r["passed"], r["failures"]
    assert r["precision"] == "int8" and r["tolerances"]["precision_defaults"] == "int8"
    tf = r["teacher_forced"]["outputs"]
    assert tf["decoder_step/log_probs"]["atol"] == 1.0 and tf["decoder_step/next_h"]["atol"] == 0.5
    # what gates int8: top-1 agreement, near ties only, the task metric; raw errors are reported
    tol = r["tolerances"]
    assert tol["min_exact"] == 1.0 and tol["tie_margin"] == 1.0 and tol["min_top1"] == 0.97
    assert tol["max_metric_drop"] == 1.0 and tol["gate_raw"] is False
    top1 = r["teacher_forced"]["top1"]
    assert top1["sentence_steps"] == r["teacher_forced"]["row_steps"] and top1["agreement"] >= 0.97
    # int8 really is less precise: errors far above the fp32 tolerance
    assert tf["decoder_step/log_probs"]["max_abs"] > 1e-2
    strict = verify_bundle(setup["int8"], setup["model"], setup["data"], backend="onnxruntime", precision="int8",
                           beam_size=1, tolerances=defaults("fp32"))
    assert not strict.passed
    failed = {k for k, o in strict.report["teacher_forced"]["outputs"].items() if not o["ok"]}
    assert {"encoder/h", "decoder_step/log_probs", "decoder_step/next_h"} <= failed
    assert strict.report["teacher_forced"]["first_failure"]["step"] == "encoder"
    with pytest.raises(ParityError) as info:
        strict.raise_on_failure()
    assert "first failure: encoder/h at the initial state" in str(info.value)


def test_int8_verdict_does_not_depend_on_the_size_of_raw_errors(setup: dict[str, Any], int8_result: Any) -> None:
    """The same int8 bundle against reference lines 1000x tighter than its errors still passes
    (raw errors are reported, not gating: their size depends on the CPU's int8 kernels), and
    fails as soon as the user asks for raw tolerances; a bundle that picks other tokens than
    PyTorch fails the top-1 gate whatever its raw errors."""
    from dataclasses import replace as dc_replace

    tight = dc_replace(defaults("int8"), outputs=dict(defaults("fp32").outputs))
    r = verify_bundle(setup["int8"], setup["model"], setup["data"], backend="onnxruntime", precision="int8",
                      beam_size=1, tolerances=tight).report
    assert r["passed"], r["failures"]
    assert not all(o["ok"] for o in r["teacher_forced"]["outputs"].values())  # errors over the lines
    asked = verify_bundle(setup["int8"], setup["model"], setup["data"], backend="onnxruntime", precision="int8",
                          beam_size=1, tolerances=tight, overrides={"atol": 1e-4})
    assert not asked.passed and asked.report["tolerances"]["gate_raw"]


def test_top1_gate_fails_a_bundle_that_chooses_other_tokens(setup: dict[str, Any], tmp_path: Path) -> None:
    def swap_rows(arr: np.ndarray) -> None:  # the output rows of half the tokens swap pairwise
        for a in range(4, arr.shape[0] - 1, 4):
            arr[[a, a + 1]] = arr[[a + 1, a]]

    broken = perturbed_copy(setup["fp32"], tmp_path / "swapped", lambda g: "model.generator.weight", swap_rows)
    r = verify_bundle(broken, setup["model"], setup["data"], backend="onnxruntime", beam_size=1,
                      tolerances=defaults("int8")).report
    assert not r["passed"]
    assert r["teacher_forced"]["top1"]["agreement"] < 0.97
    assert any(f.startswith("teacher-forced top-1 agreement") for f in r["failures"])


def test_score_gate_fails_a_bundle_whose_log_probs_are_shifted(setup: dict[str, Any], tmp_path: Path) -> None:
    """Shifting every log-prob by -1 nat keeps every greedy decision (top-1, outputs, metric), so
    only the scores show it: the quantized gates fail it on the score per output token."""
    from onnx import helper, numpy_helper

    dst = tmp_path / "shifted"
    shutil.copytree(setup["fp32"], dst)
    g = onnx.load(str(dst / "decoder_step.onnx"))
    for name in ("log_probs", "topk_log_probs"):
        for node in g.graph.node:
            node.output[:] = [f"{name}_raw" if o == name else o for o in node.output]
        g.graph.initializer.append(numpy_helper.from_array(np.array(-1.0, dtype=np.float32), f"{name}_shift"))
        g.graph.node.append(helper.make_node("Add", [f"{name}_raw", f"{name}_shift"], [name]))
    onnx.save(g, str(dst / "decoder_step.onnx"))
    m = load_manifest(dst, verify=False)
    for key in ("greedy", "encoder_greedy"):  # the fused graphs carry their own (unscaled) copy of the step
        m.graphs["fp32"].pop(key, None)
        m.files.pop(f"{key}.onnx", None)
        (dst / f"{key}.onnx").unlink(missing_ok=True)
    m.save(dst)
    r = verify_bundle(dst, setup["model"], setup["data"], backend="onnxruntime", beam_size=1,
                      tolerances=defaults("int8")).report
    run = r["free_running"]["greedy"]
    assert run["exact"] == run["sentences"] and r["teacher_forced"]["top1"]["agreement"] == 1.0
    assert not r["passed"] and any("nats per output token (at most 0.25)" in f for f in r["failures"])
    assert defaults("int8").max_score_per_token == 0.25 and defaults("fp16").max_score_per_token == 0.1


def test_metric_drop_in_points() -> None:
    from s2s_export.verify.api import metric_drop

    assert metric_drop({"agreement_bleu": 90.0}) is None  # no references
    assert metric_drop({"metric": "bleu", "difference": {"bleu": -1.5, "accuracy": 0.0}}) == ("BLEU", 1.5)
    assert metric_drop({"metric": "per/wer", "difference": {"per": 0.004, "wer": 0.02}}) == ("WER", 2.0)


def test_report_numbers_match_a_direct_computation(setup: dict[str, Any], int8_result: Any) -> None:
    """Steps 0 and 1 of the teacher-forced check recomputed with plain ONNX Runtime sessions and
    the PyTorch model (one batch, input order: what verify does with batch_size >= N)."""
    from s2s_export.verify.stepwise import pad

    m = load_manifest(setup["int8"])
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    enc = ort.InferenceSession(str(setup["int8"] / m.graphs["int8"]["encoder"]), so)
    step = ort.InferenceSession(str(setup["int8"] / m.graphs["int8"]["decoder_step"]), so)
    model = setup["model"]
    srcs = setup["data"].sources
    traj = [r[0][0] for r in reference_search(model, srcs, beam_size=1)]
    assert min(map(len, traj)) >= 2  # every sentence is alive at step 1: identity reorder
    src, lengths = pad(srcs)
    outs = enc.run(None, {"src": src, "src_lengths": lengths})
    n_static = len(m.io.static)
    static, state = outs[:n_static], outs[n_static:]
    with torch.no_grad():
        t_static, t_state = model.encode(torch.from_numpy(src), torch.from_numpy(lengths))
    per_step = int8_result.report["teacher_forced"]["per_step"]
    reorder = np.arange(len(srcs), dtype=np.int64)
    for t in (0, 1):
        tokens = np.full(len(srcs), BOS_ID) if t == 0 else np.array([tr[0] for tr in traj])
        got = dict(zip(m.io.step.output_names,
                       step.run(None, dict(zip(m.io.step.input_names, [tokens, reorder, *static, *state])))))
        state = [got[f"next_{s.name}"] for s in m.io.state]
        with torch.no_grad():
            lp, t_state, _ = model.decode_step(torch.from_numpy(tokens), t_static, t_state)
        diff = np.abs(got["log_probs"].astype(np.float64) - lp.numpy().astype(np.float64))
        figs = per_step[t]["outputs"]["log_probs"]
        assert figs["max_abs"] == pytest.approx(float(diff.max()), rel=1e-6)
        ref = np.abs(lp.numpy().astype(np.float64))
        big = ref > 1.0  # max rel is taken over |ref| > atol (1.0 for int8 log-probs)
        assert figs["max_rel"] == pytest.approx(float((diff[big] / ref[big]).max()), rel=1e-6)
        exact_p99 = float(np.quantile(diff, 0.99, method="inverted_cdf"))
        assert exact_p99 <= figs["p99_abs"] + 1e-12 and figs["p99_abs"] <= exact_p99 * 10 ** (1 / 20) + 1e-12
        h_diff = np.abs(got["next_h"].astype(np.float64) - t_state["h"].numpy())
        assert per_step[t]["outputs"]["next_h"]["max_abs"] == pytest.approx(float(h_diff.max()), rel=1e-6)
        assert per_step[t]["rows"] == len(srcs)


# ---------------------------------------------------------------- broken bundles

def test_a_perturbed_generator_is_caught_at_step_0_in_log_probs(setup: dict[str, Any], tmp_path: Path) -> None:
    def change(a: np.ndarray) -> None:
        a[5] += 0.05  # one output bias: only the log-probs (and top-K) can notice

    bad = perturbed_copy(setup["fp32"], tmp_path / "bad", lambda g: "model.generator.bias", change)
    result = verify_bundle(bad, setup["model"], setup["data"], backend="onnxruntime", beam_size=1)
    r = result.report
    assert not r["passed"]
    first = r["teacher_forced"]["first_failure"]
    assert (first["output"], first["step"], first["sentence"]) == ("decoder_step/log_probs", 0, 0)
    assert first["max_abs"] == pytest.approx(0.05, rel=0.2)
    outs = r["teacher_forced"]["outputs"]
    for key in ("encoder/h", "decoder_step/next_h", "decoder_step/next_c", "decoder_step/next_feed",
                "decoder_step/attn"):
        assert outs[key]["ok"], key  # the state is untouched: the failure is located
    assert outs["decoder_step/log_probs"]["first_failing_step"] == 0
    with pytest.raises(ParityError) as info:
        result.raise_on_failure()
    text = str(info.value)
    assert text.splitlines()[0].startswith("first failure: decoder_step/log_probs at step 0, sentence 0")
    assert "teacher-forced check failed for decoder_step/log_probs: max abs error" in text


def test_a_perturbed_embedding_row_is_located_at_the_step_it_is_first_fed(setup: dict[str, Any],
                                                                         tmp_path: Path) -> None:
    model, data = setup["model"], setup["data"]
    traj = [r[0][0] for r in reference_search(model, data.sources, beam_size=1)]
    # token X, and the sentences whose output does not start with X: X is first fed at step >= 2
    token = int(np.bincount([t for tr in traj for t in tr[1:-1]]).argmax())
    keep = [i for i, tr in enumerate(traj) if tr[0] != token]
    subset = vin.from_ids([data.sources[i] for i in keep], Vocab(tuple(setup["ckpt"].src_vocab.tokens)), 32)
    step, sentence = min((t, n) for n, i in enumerate(keep) for t, tok in enumerate(traj[i][:-1], start=1)
                         if tok == token)  # step t feeds traj[t-1]
    assert step >= 2
    data = subset

    def change(a: np.ndarray) -> None:
        a[token] += 0.5

    bad = perturbed_copy(setup["fp32"], tmp_path / "bad", embedding_name, change)
    r = verify_bundle(bad, model, data, backend="onnxruntime", beam_size=1).report
    first = r["teacher_forced"]["first_failure"]
    assert (first["step"], first["sentence"]) == (step, sentence)
    assert first["output"] == "decoder_step/next_h"  # the first thing the step computes from it
    for s in r["teacher_forced"]["per_step"][:step]:
        assert all(o["ok"] for o in s["outputs"].values())


def test_a_backend_without_state_access_still_checks_the_other_outputs(setup: dict[str, Any]) -> None:
    inner = Translator.load(setup["fp32"], intra_op_threads=1).backend
    assert isinstance(inner, StateAccess) and isinstance(inner, Backend)

    class NoState:  # the protocol without the optional method
        name, topk, vocab_size, max_rows = inner.name, inner.topk, inner.vocab_size, 7

        def encode(self, src: Any, lengths: Any) -> None:
            inner.encode(src, lengths)

        def keep(self, rows: Any) -> None:
            inner.keep(rows)

        def step(self, *args: Any, **kwargs: Any) -> Any:
            return inner.step(*args, **kwargs)

    backend = NoState()
    assert isinstance(backend, Backend) and not isinstance(backend, StateAccess)
    srcs = setup["data"].sources[:10]
    traj = [r[0][0] for r in reference_search(setup["model"], srcs, beam_size=1)]
    section = teacher_forced(setup["model"], backend, srcs, traj, defaults("fp32"),  # batches of max_rows 7
                             blocked=load_manifest(setup["fp32"]).io.blocked)
    assert section["passed"] and not section["state_checked"] and "state" in section["note"]
    assert list(section["outputs"]) == [f"decoder_step/{o}" for o in ("attn", "log_probs", "topk_log_probs",
                                                                       "topk_ids")]
    assert section["row_steps"] == sum(map(len, traj))


# ---------------------------------------------------------------- near ties

def test_classify_near_ties() -> None:
    lp = np.log(np.array([0.5, 0.3, 0.2 - 1e-5, 1e-5]))
    close = classify(lp, 0, 1, tie_margin=0.6)
    assert close["near_tie"] and close["margin"] == pytest.approx(math.log(0.5 / 0.3))
    far = classify(lp, 0, 3, tie_margin=0.6)
    assert not far["near_tie"] and far["margin"] == pytest.approx(math.log(0.5 / 1e-5))
    assert not classify(lp, 0, None, tie_margin=10.0)["near_tie"]  # one side ended: no margin
    # beam: the whole hypotheses decide, not the local margin
    assert classify(lp, 0, 3, tie_margin=0.01, score_gap=0.005)["near_tie"]
    assert not classify(lp, 0, 1, tie_margin=0.6, score_gap=0.9)["near_tie"]


class SwappedTranslator:
    """A translator whose greedy output is PyTorch's, except one token replaced at one step."""

    def __init__(self, real: Translator, swaps: dict[int, tuple[int, int]]) -> None:
        self.real, self.swaps = real, swaps
        self.tgt_vocab, self.src_vocab = real.tgt_vocab, real.src_vocab
        self.src_tokenizer, self.tgt_tokenizer = real.src_tokenizer, real.tgt_tokenizer
        self.options = real.options

    def translate_ids(self, ids: Any, **kwargs: Any) -> Any:
        out = self.real.translate_ids(ids, **kwargs)
        for i, (step, token) in self.swaps.items():
            hyp = out[i][0]
            hyp.ids = hyp.ids[:step] + [token]
        return out


def test_divergences_are_measured_under_pytorch_and_classified(setup: dict[str, Any]) -> None:
    model, srcs = setup["model"], setup["data"].sources[:6]
    ref = reference_search(model, srcs, beam_size=1)
    swaps, margins = {}, {}
    for i, rank in ((1, 1), (3, -1)):  # sentence 1: the runner-up token; sentence 3: the least likely
        ids = [int(x) for x in ref[i][0][0]]
        lp = forced_log_probs(model, srcs[i], ids)[1]  # step 1, given ids[:1]
        order = np.argsort(-lp)
        swaps[i] = (1, int(order[rank]))
        margins[i] = float(lp[order[0]] - lp[order[rank]])
    fake = SwappedTranslator(Translator.load(setup["fp32"], intra_op_threads=1), swaps)
    tie = (margins[1] + margins[3]) / 2  # between the two margins
    section, _ = free_running(model, fake, srcs, beam_size=1, tie_margin=tie, min_exact=0.9, reference=ref)
    by_sentence = {m["sentence"]: m for m in section["mismatches"]}
    assert set(by_sentence) == {1, 3}
    for i in (1, 3):
        m = by_sentence[i]
        assert m["step"] == 1 and m["backend_token"] == swaps[i][1] and m["pytorch_token"] == ref[i][0][0][1]
        assert m["margin"] == pytest.approx(margins[i], abs=1e-5)
    assert by_sentence[1]["near_tie"] and not by_sentence[3]["near_tie"]
    assert (section["exact"], section["near_ties"], section["divergent"]) == (4, 1, 1)
    assert section["agreement"] == pytest.approx(5 / 6) and not section["passed"]  # 5/6 < 0.9


# ---------------------------------------------------------------- BLEU and quality

def test_bleu_on_hand_made_examples() -> None:
    s = "the cat sat on the mat".split()
    assert corpus_bleu([s], [s]) == pytest.approx(100.0)
    # p1..p4 = 4/5, 3/4, 2/3, 1/2; same length: BLEU = (0.2)^(1/4)
    assert corpus_bleu([list("abcde")], [list("abcdf")]) == pytest.approx(100 * 0.2 ** 0.25)
    # every n-gram matches, hypothesis 4 of 6 tokens: brevity penalty exp(1 - 6/4)
    assert corpus_bleu([list("abcd")], [list("abcdef")]) == pytest.approx(100 * math.exp(-0.5))
    # clipping: "the" counted at most twice; no bigram match -> 0
    assert corpus_bleu([["the"] * 7], [s]) == 0.0
    # corpus level: counts add up over sentences (p_n pooled, not averaged)
    hyps, refs = [list("abcde"), list("abcd")], [list("abcdf"), list("abcd")]
    p = [(4 + 4) / 9, (3 + 3) / 7, (2 + 2) / 5, (1 + 1) / 3]
    assert corpus_bleu(hyps, refs) == pytest.approx(100 * math.prod(p) ** 0.25)
    assert corpus_bleu([[]], [list("ab")]) == 0.0


def test_quality_g2p_uses_phoneme_and_word_error_rates() -> None:
    refs = [["HH", "AH", "L", "OW"], ["K", "AE", "T"]]
    pt = [["HH", "AH", "L", "OW"], ["K", "AE", "D"]]
    be = [["HH", "EH", "L", "OW"], ["K", "AE", "D"]]
    q = quality(pt, be, refs, g2p=True)
    assert q["metric"] == "per/wer"
    assert q["pytorch"] == {"per": pytest.approx(1 / 7), "wer": pytest.approx(0.5)}
    assert q["backend"] == {"per": pytest.approx(2 / 7), "wer": pytest.approx(1.0)}
    assert q["difference"]["per"] == pytest.approx(1 / 7) and q["difference"]["wer"] == pytest.approx(0.5)
    assert quality(pt, pt, None, g2p=False) == {"agreement_bleu": pytest.approx(100.0)}


# ---------------------------------------------------------------- comparison math, tolerances, inputs

def test_compare_figures_and_quantile() -> None:
    ref = np.array([[1.0, -2.0, 0.0, 1e-6]], dtype=np.float32)
    got = ref + np.float32(5e-5)
    r = cmp.compare(got, ref, 1e-4, 1e-3)
    assert r["ok"] and r["max_abs"] == pytest.approx(5e-5, rel=1e-2)
    assert r["max_rel"] == pytest.approx(5e-5, rel=1e-2)  # |ref| <= atol is left out of max rel
    assert cmp.compare(got, ref, 1e-4, 1e-3, rel_floor=1e-7)["max_rel"] == pytest.approx(50.0, rel=1e-2)
    assert not cmp.compare(ref + np.float32(2e-3), ref, 1e-4, 1e-3)["ok"]
    assert cmp.compare(np.array([3, 4]), np.array([3, 5]), 1.0, 1.0) == {
        "max_abs": 1.0, "max_rel": float("inf"), "p99_abs": 1.0, "ok": False}  # integers: equal or not
    nan = cmp.compare(np.array([np.nan, 1.0]), np.array([0.0, 1.0]), 1e-4, 1e-3)
    assert not nan["ok"] and nan["max_abs"] == float("inf")
    assert "shape" in cmp.compare(np.zeros(2), np.zeros(3), 1.0, 1.0)["detail"]
    errors = np.concatenate([np.zeros(50), np.logspace(-6, -2, 50)])
    rng = np.random.default_rng(0)
    rng.shuffle(errors)
    h = cmp.ErrorHistogram()
    h.add(errors)
    exact = float(np.quantile(errors, 0.99, method="inverted_cdf"))
    assert exact <= h.quantile(0.99) <= exact * 10 ** (1 / 20) and h.quantile(0.4) == 0.0
    assert h.total == 100
    bad = cmp.failing_rows(np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), np.zeros((3, 2)), 0.5, 0.0)
    assert bad.tolist() == [1, 2]


def test_tolerances_defaults_and_overrides() -> None:
    fp32, int8, fp16 = defaults("fp32"), defaults("int8"), defaults("fp16")
    assert fp32.of("log_probs") == fp32.of("next_h", True) == (1e-4, 1e-3)
    assert int8.of("log_probs")[0] > int8.of("next_h", True)[0] > fp16.of("next_h", True)[0] > fp32.of("h", True)[0]
    # every precision allows near ties only; the lower ones widen the tie margin and gate on
    # top-1 agreement and the task metric instead of raw errors
    assert fp32.min_exact == fp16.min_exact == int8.min_exact == 1.0
    assert fp32.tie_margin < fp16.tie_margin < int8.tie_margin
    assert fp32.gate_raw and not fp16.gate_raw and not int8.gate_raw
    assert fp32.min_top1 is None and fp16.min_top1 == 0.99 and int8.min_top1 == 0.97
    assert not int8.with_overrides(min_exact=0.9).gate_raw and int8.with_overrides(per_output={"attn": (1.0, None)}).gate_raw
    t = fp32.with_overrides(atol=1e-3, per_output={"state": (None, 0.5), "log_probs": (2e-3, None)}, min_exact=0.5)
    assert t.of("attn") == (1e-3, 1e-3) and t.of("next_c", True) == (1e-3, 0.5) and t.of("c", True) == (1e-3, 0.5)
    assert t.of("log_probs") == (2e-3, 1e-3) and t.min_exact == 0.5 and len(t.overridden) == 4
    assert parse_tol(["log_probs=1e-3", "attn=,0.1", "state=1,2"]) == {
        "log_probs": (1e-3, None), "attn": (None, 0.1), "state": (1.0, 2.0)}
    for bad in (["log_probs"], ["x=a"], ["x=1,2,3"]):
        with pytest.raises(UsageError):
            parse_tol(bad)
    with pytest.raises(UsageError):
        fp32.with_overrides(min_exact=1.5)
    with pytest.raises(UsageError):
        fp32.with_overrides(atol=-1.0)
    with pytest.raises(UsageError):
        defaults("bf16")


def test_inputs(tmp_path: Path) -> None:
    v = Vocab.build([list("abc")])
    f = tmp_path / "d.txt"
    f.write_text("ab\tba\n\nc\tc\n", encoding="utf-8")
    d = vin.from_file(f, v, "char", "char", 10, limit=5)
    assert d.sources == [v.encode(["a", "b"], add_eos=True), v.encode(["c"], add_eos=True)]
    assert d.references == [["b", "a"], ["c"]]
    f.write_text("ab\tba\nc\n", encoding="utf-8")
    with pytest.raises(BadInputError, match="line 2"):
        vin.from_file(f, v, "char", "char", 10, limit=5)
    f.write_bytes(b"\xff\xfe")
    with pytest.raises(BadInputError, match="not UTF-8"):
        vin.from_file(f, v, "char", "char", 10, limit=5)
    with pytest.raises(BadInputError, match="cannot read"):
        vin.from_file(tmp_path / "missing", v, "char", "char", 10, limit=5)
    f.write_text("abcabcabc\n", encoding="utf-8")
    with pytest.raises(BadInputError, match="max_src_len"):
        vin.from_file(f, v, "char", "char", 5, limit=5)
    r = vin.random_sources(v, 4, limit=20)
    assert len(r.sources) == 20 and max(map(len, r.sources)) <= 4 and all(s[-1] == 2 for s in r.sources)
    t = vin.from_task("sort", Vocab.build([list("abcdefghij")]), 64, limit=7)
    assert len(t.sources) == 7 and t.task == "sort" and all(list(x) == sorted(x) for x in t.references or [])
    with pytest.raises(UsageError):
        vin.random_sources(v, 4, limit=0)
