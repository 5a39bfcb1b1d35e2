"""The torch-free runtime on real bundles (ONNX Runtime CPU): token identity with the PyTorch
reference search for every preset, batching, edge inputs, errors, threads, no torch import."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from s2s_export.errors import BadInputError, BundleError, ConfigError, UnsupportedError, UsageError
from s2s_export.runtime import Hypothesis, Translator
from s2s_export.runtime.backends.onnxruntime import OnnxRuntimeBackend
from s2s_export.vocab import EOS_ID, UNK_ID, tokenize

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from s2s_export.export import export_model  # noqa: E402
from s2s_export.models import PRESETS, load_checkpoint  # noqa: E402
from s2s_export.verify.reference import reference_search  # noqa: E402

TRAIN_STEPS, TRAIN_EMB, TRAIN_HIDDEN = 120, 16, 32  # the same as test_reference: trained once a session
MAX_SRC_LEN = 24

# (beam_size, n_best, options): greedy; beams through the top-K path (K = 8 >= beam + 1), the
# full path (beam == K); length penalties, a short cap that cuts outputs, a ratio
CONFIGS: list[tuple[int, int, dict[str, Any]]] = [
    (1, 1, {}),
    (1, 1, {"max_length": 4}),
    (3, 3, {}),
    (5, 2, {"length_penalty": "gnmt", "alpha": 0.6, "max_length_ratio": 1.5}),
    (7, 3, {"length_penalty": "avg", "alpha": 1.0, "max_length": 5}),
    (8, 2, {}),
]


def tiny_task_pairs() -> list:
    from conftest import tiny_task

    return tiny_task("reverse").test


def texts() -> list[str]:
    """Held-out examples plus edge cases: one character, unknown characters, spaces (an empty
    input is not run through the model: test_edge_inputs)."""
    held_out = ["".join(s) for s, _ in tiny_task_pairs()[:10]]
    return held_out + ["a", "zz?a", "ab cd", "jihgfedcba"]


@pytest.fixture(scope="module")
def bundles(tiny_checkpoint: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory
            ) -> Callable[[str], tuple[Any, Path]]:
    """bundles(preset) -> (checkpoint, bundle dir): a tiny model trained on ``reverse``."""
    from conftest import tiny_overrides

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runtime_bundles")
    cache: dict[str, tuple[Any, Path]] = {}

    def make(preset: str) -> tuple[Any, Path]:
        if preset not in cache:
            path = tiny_checkpoint(preset, steps=TRAIN_STEPS, **tiny_overrides(preset, TRAIN_EMB, TRAIN_HIDDEN))
            bundle = export_model(path, root / preset, topk=8, verify=False, force=True, max_src_len=MAX_SRC_LEN)
            cache[preset] = (load_checkpoint(path), bundle.path)
        return cache[preset]

    return make


@pytest.fixture(scope="module")
def general(bundles: Callable[[str], tuple[Any, Path]]) -> tuple[Any, Path, Translator]:
    ckpt, path = bundles("luong-general")
    return ckpt, path, Translator.load(path, intra_op_threads=1)


def source_ids(ckpt: Any, text: str) -> list[int]:
    return ckpt.src_vocab.encode(tokenize(text, ckpt.tokenizer), add_eos=True)


def assert_same(got: list[list[Hypothesis]], want: list[list[tuple]], tol: float = 1e-4) -> None:
    assert [[h.ids for h in g] for g in got] == [[w[0] for w in ws] for ws in want]
    for g, ws in zip(got, want):
        assert [h.score for h in g] == pytest.approx([w[1] for w in ws], abs=tol)


# ---------------------------------------------------------------- identity with the reference
@pytest.mark.parametrize("preset", list(PRESETS))
def test_matches_reference_search(bundles: Callable[[str], tuple[Any, Path]], preset: str) -> None:
    ckpt, path = bundles(preset)
    translator = Translator.load(path, intra_op_threads=1)
    inputs = texts()
    sources = [source_ids(ckpt, t) for t in inputs]
    cut = 0
    for beam, n_best, kw in CONFIGS:
        got = translator.translate(inputs, beam_size=beam, n_best=n_best, **kw)
        want = reference_search(ckpt.model, sources, beam_size=beam, n_best=n_best, **kw)
        assert_same(got, want)
        cut += sum(h.ids[-1] != EOS_ID for g in got for h in g)
    assert cut > 0  # some outputs stopped at their maximum length, the others at EOS


def test_masking_features_match_reference(general: tuple[Any, Path, Translator]) -> None:
    ckpt, _, translator = general
    inputs = texts()
    sources = [source_ids(ckpt, t) for t in inputs]
    for beam, kw in [(1, {"min_length": 7}), (4, {"min_length": 6, "max_length": 9}),
                     (1, {"no_repeat_ngram_size": 1}), (3, {"no_repeat_ngram_size": 2, "max_length": 12})]:
        got = translator.translate(inputs, beam_size=beam, n_best=beam, **kw)
        assert_same(got, reference_search(ckpt.model, sources, beam_size=beam, n_best=beam, **kw))


def test_full_distribution_beyond_k_matches_reference(general: tuple[Any, Path, Translator]) -> None:
    ckpt, _, translator = general
    inputs = texts()[:6]
    with pytest.raises(ConfigError, match=r"beam_size 10 exceeds the bundle's top-K \(8\); use a beam of at most 8 or re-export with --topk 11"):
        translator.translate(inputs, beam_size=10)
    got = translator.translate(inputs, beam_size=10, n_best=4, full_distribution=True)
    assert_same(got, reference_search(ckpt.model, [source_ids(ckpt, t) for t in inputs], beam_size=10, n_best=4))
    # the full path on a beam the top-K path also serves gives the same result
    assert [[h.ids for h in g] for g in translator.translate(inputs, beam_size=4, n_best=4)] == \
        [[h.ids for h in g] for g in translator.translate(inputs, beam_size=4, n_best=4, full_distribution=True)]


def test_attention_matches_reference(general: tuple[Any, Path, Translator]) -> None:
    ckpt, _, translator = general
    inputs = ["abcde", "j", "jj"]
    sources = [source_ids(ckpt, t) for t in inputs]
    for beam in (1, 3):
        got = translator.translate(inputs, beam_size=beam, n_best=beam, return_attention=True)
        want = reference_search(ckpt.model, sources, beam_size=beam, n_best=beam, return_attention=True)
        for g, ws, src in zip(got, want, sources):
            for h, w in zip(g, ws):
                assert h.ids == w[0] and h.attention.shape == (len(h.ids), len(src))
                np.testing.assert_allclose(h.attention, w[2], atol=1e-4)
    assert translator.translate(["ab"])[0][0].attention is None


# ---------------------------------------------------------------- the Translator
def test_hypothesis_fields(general: tuple[Any, Path, Translator]) -> None:
    ckpt, _, translator = general
    pairs = tiny_task_pairs()[:20]
    got = translator.translate(["".join(s) for s, _ in pairs], beam_size=2, n_best=2)
    assert np.mean([g[0].text == "".join(t) for g, (_, t) in zip(got, pairs)]) >= 0.8  # it reverses
    for g in got:
        assert len(g) == 2 and g[0].score >= g[1].score
        for h in g:
            assert h.tokens == ckpt.tgt_vocab.decode(h.ids) and h.text == "".join(h.tokens)
            assert "</s>" not in h.tokens and h.ids[-1] == EOS_ID


def test_batches_equal_one_at_a_time(general: tuple[Any, Path, Translator]) -> None:
    _, _, translator = general
    inputs = texts()
    for beam in (1, 4):
        alone = [translator.translate([t], beam_size=beam, n_best=beam)[0] for t in inputs]
        for size in (64, 3, 1):
            together = translator.translate(inputs, beam_size=beam, n_best=beam, max_batch_size=size)
            assert [[h.ids for h in g] for g in together] == [[h.ids for h in g] for g in alone]
            assert [h.score for g in together for h in g] == pytest.approx(
                [h.score for g in alone for h in g], abs=1e-5)


def test_progress_and_order(general: tuple[Any, Path, Translator]) -> None:
    _, _, translator = general
    inputs = ["abcdefgh", "a", "abc", "", "abcdef"]
    seen: list[int] = []
    got = translator.translate(inputs, max_batch_size=2, progress=seen.append)
    assert seen == [2, 2, 1]
    assert [g[0].ids for g in got] == [translator.translate([t])[0][0].ids for t in inputs]
    assert translator.translate([]) == []


def test_edge_inputs(general: tuple[Any, Path, Translator]) -> None:
    ckpt, _, translator = general
    a, b = ckpt.src_vocab.index["a"], ckpt.src_vocab.index["b"]
    for text in ("", "  \t "):  # an empty or blank input is not run: one empty hypothesis
        (empty,) = translator.translate([text], beam_size=3, n_best=2)[0]
        assert (empty.ids, empty.text, empty.score) == ([], "", 0.0)
    just_eos = translator.translate_ids([[]])[0][0].ids  # ids in: the source is just EOS, and it runs
    assert [just_eos] == [w[0] for w in reference_search(ckpt.model, [[EOS_ID]])[0]]
    unknown = translator.translate(["a?Xb"], beam_size=2)[0]
    assert [h.ids for h in unknown] == [h.ids for h in translator.translate_ids([[a, UNK_ID, UNK_ID, b]], beam_size=2)[0]]
    assert translator.translate_ids([[a, b, EOS_ID]], add_eos=False)[0][0].ids == \
        translator.translate_ids([[a, b]])[0][0].ids


def test_over_long_input_is_refused(general: tuple[Any, Path, Translator]) -> None:
    _, _, translator = general
    fits = "a" * (MAX_SRC_LEN - 1)  # + EOS = the limit
    assert translator.translate([fits])[0]
    with pytest.raises(BadInputError) as err:
        translator.translate(["ab", fits + "b"])
    msg = str(err.value)
    assert f"input 1 has {MAX_SRC_LEN + 1} source tokens" in msg and f"max_src_len {MAX_SRC_LEN}" in msg
    assert "--max-src-len" in msg and "\n" not in msg


def test_bad_requests(general: tuple[Any, Path, Translator]) -> None:
    ckpt, path, translator = general
    with pytest.raises(ConfigError, match="n_best 3 must be within 1..beam_size"):
        translator.translate(["ab"], beam_size=2, n_best=3)
    with pytest.raises(ConfigError, match="beam_size must be >= 1"):
        translator.translate(["ab"], beam_size=0)
    with pytest.raises(ConfigError, match="max_batch_size"):
        translator.translate(["ab"], max_batch_size=0)
    with pytest.raises(UsageError, match="list of strings"):
        translator.translate("ab")  # type: ignore[arg-type]
    with pytest.raises(BadInputError, match="outside 0.."):
        translator.translate_ids([[len(ckpt.src_vocab)]])
    with pytest.raises(UsageError, match="unknown backend 'cuda'.*auto, onnxruntime, onnxruntime-cuda, tensorrt"):
        Translator.load(path, backend="cuda")
    with pytest.raises(ConfigError, match="no int4 graphs .*fp32"):
        Translator.load(path, precision="int4")


def test_backends(general: tuple[Any, Path, Translator], monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from s2s_export.runtime import translator as translator_mod

    _, path, _ = general
    assert Translator.load(path, backend="auto").backend.name in ("tensorrt", "onnxruntime")
    if importlib.util.find_spec("s2s_export.runtime.backends.tensorrt") is None:
        with pytest.raises(UnsupportedError, match="tensorrt backend is not part of this installation"):
            Translator.load(path, backend="tensorrt")
    # auto walks AUTO_ORDER and skips a backend that cannot run here
    monkeypatch.setattr(translator_mod, "AUTO_ORDER", ("no_such_backend", "onnxruntime"))
    monkeypatch.setattr(translator_mod, "BACKENDS", (*translator_mod.BACKENDS, "no_such_backend"))
    assert Translator.load(path, backend="auto").backend.name == "onnxruntime"


def spins(session: Any) -> bool:
    return session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "1"


def test_session_options(general: tuple[Any, Path, Translator]) -> None:
    _, path, translator = general
    inputs = texts()
    backend: Any = Translator.load(path, intra_op_threads=2).backend
    for session in (backend.encoder, backend.step_session):
        so = session.get_session_options()
        assert so.intra_op_num_threads == 2 and so.inter_op_num_threads == 1
        assert session.get_providers() == ["CPUExecutionProvider"]
    # default "step": only the decoder step's threads busy-wait; "off" / "all": none / both
    assert backend.spinning == "step" and spins(backend.step_session) and not spins(backend.encoder)
    want = [[(h.ids, h.score) for h in hyps] for hyps in translator.translate(inputs, beam_size=2)]
    for policy, expected in (("off", (False, False)), ("all", (True, True))):
        other = Translator.load(path, intra_op_threads=2, spinning=policy)
        assert (spins(other.backend.encoder), spins(other.backend.step_session)) == expected  # type: ignore[attr-defined]
        got = other.translate(inputs, beam_size=2)
        assert [[(h.ids, h.score) for h in hyps] for hyps in got] == want
    with pytest.raises(UsageError, match="intra_op_threads"):
        Translator.load(path, intra_op_threads=0)
    with pytest.raises(UsageError, match="spinning 'yes' is unknown.*off, step, all"):
        Translator.load(path, spinning="yes")
    with pytest.raises(ConfigError, match="spinning 'on' is unknown"):
        OnnxRuntimeBackend(path / "encoder.onnx", path / "decoder_step.onnx", translator.manifest.io,
                           spinning="on")


def test_corrupted_and_tampered_bundles(general: tuple[Any, Path, Translator], tmp_path: Path) -> None:
    _, path, _ = general
    bad = tmp_path / "bad"
    shutil.copytree(path, bad)
    (bad / "decoder_step.onnx").write_bytes(b"not an onnx graph" * 10)
    with pytest.raises(BundleError, match="decoder_step.onnx does not match its sha256"):
        Translator.load(bad)
    with pytest.raises(BundleError, match="ONNX Runtime cannot load decoder_step.onnx") as err:
        Translator.load(bad, verify_hashes=False)
    assert "\n" not in str(err.value)
    swapped = tmp_path / "swapped"  # graphs that do not belong to the manifest
    shutil.copytree(path, swapped)
    shutil.copy(path / "encoder.onnx", swapped / "decoder_step.onnx")
    with pytest.raises(BundleError, match="do not belong together"):
        Translator.load(swapped, verify_hashes=False)
    with pytest.raises(BundleError, match="does not exist"):
        Translator.load(tmp_path / "nowhere")


def test_one_translator_many_threads(general: tuple[Any, Path, Translator]) -> None:
    _, path, _ = general
    translator = Translator.load(path, intra_op_threads=1)
    inputs = texts()
    jobs = [(1 + i % 4, inputs[i:] + inputs[:i]) for i in range(8)]
    expected = [translator.translate(t, beam_size=b, n_best=b, max_batch_size=4) for b, t in jobs]
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs))

    def work(i: int) -> None:
        try:
            start.wait()
            for _ in range(3):
                b, t = jobs[i]
                results[i] = translator.translate(t, beam_size=b, n_best=b, max_batch_size=4)
                assert [[h.ids for h in g] for g in results[i]] == [[h.ids for h in g] for g in expected[i]]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert all(r is not None for r in results)


def test_runtime_never_imports_torch_or_onnx(general: tuple[Any, Path, Translator]) -> None:
    _, path, _ = general
    code = textwrap.dedent(f"""
        import json, sys
        import s2s_export.runtime
        from s2s_export.runtime import Translator
        t = Translator.load({str(path)!r}, backend="auto", intra_op_threads=1)
        out = t.translate(["abc", ""], beam_size=3, n_best=2, return_attention=True)
        out += t.translate(["abc"], min_length=2)
        out += t.translate(["abc", "de"])  # plain greedy: the fused greedy graph
        assert t.backend._greedy_session is not None
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "onnx", "onnxscript"))
        print(json.dumps({{"heavy": heavy, "text": out[0][0].text}}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["heavy"] == [] and report["text"]


def test_backend_input_errors(general: tuple[Any, Path, Translator]) -> None:
    _, _, translator = general
    backend: Any = translator.backend
    src = np.array([[4, 5, EOS_ID]], dtype=np.int64)
    with pytest.raises(BadInputError, match="source lengths must be within 1..3"):
        backend.encode(src, np.array([0]))
    with pytest.raises(BadInputError, match=r"src \[B,S\] and src_lengths \[B\]"):
        backend.encode(src[0], np.array([3]))
    backend.encode(src, np.array([3]))
    with pytest.raises(BadInputError, match="tokens and reorder of 1 rows"):
        backend.step(np.array([1, 1]), np.array([0, 0]))
    with pytest.raises(BadInputError, match="ONNX Runtime failed running the decoder step") as err:
        backend.step(np.array([10_000]), np.array([0]))  # a token id outside the vocabulary
    assert "\n" not in str(err.value)
    res = backend.step(np.array([1]), np.array([0]), full=True, attn=True)
    assert res.topk_ids.shape == (1, 8) and res.log_probs.shape == (1, backend.vocab_size)
    assert res.attn.shape == (1, 3) and np.all(np.diff(res.topk_log_probs[0]) <= 0)
