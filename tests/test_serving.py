"""Serving on Triton Inference Server: the model repository (``s2s triton-repo``), the request
handler the Python-backend model runs, and a real ``tritonserver`` started by ``s2s serve`` on
loopback ports, answering 16 concurrent KServe v2 clients over HTTP and gRPC with exactly
``s2s translate``'s text, reporting metrics, and stopping cleanly on SIGTERM.

The server tests need the ``serve`` extra (nvidia-pytriton, tritonclient; numpy<2) and skip
with the reason without it. One server serves all of them (about 3-15 s to start)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from conftest import run_cli  # noqa: E402
from s2s_export.bundle import sha256_file  # noqa: E402
from s2s_export.errors import OutputExistsError, UnsupportedError  # noqa: E402
from s2s_export.runtime import Translator  # noqa: E402
from s2s_export.serving import handler  # noqa: E402
from s2s_export.serving.repository import ServingConfig, config_pbtxt, write_repository  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = 16
READY_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def bundle(tiny_checkpoint: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import export_shared_bundle

    return export_shared_bundle(tiny_checkpoint, tmp_path_factory.mktemp("serving") / "bundle")


@pytest.fixture(scope="module")
def translator(bundle: Path) -> Translator:
    return Translator.load(bundle, intra_op_threads=1)


def sources(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    letters = "abcdefghij"
    return ["".join(rng.choice(list(letters), size=int(rng.integers(0, 8)))) for _ in range(n)]


def padded(groups: list[list[Any]], n: int = 2) -> tuple[list[list[str]], list[list[float]]]:
    """The n-best texts and scores the handler sends: rows with fewer hypotheses (an empty
    source has one, empty) padded with "" and NaN."""
    return ([[h.text for h in g] + [""] * (n - len(g)) for g in groups],
            [[h.score for h in g] + [float("nan")] * (n - len(g)) for g in groups])


# --------------------------------------------------------------------------- repository


def test_repository_layout_and_config(bundle: Path, tmp_path: Path) -> None:
    cfg = ServingConfig(name="g2p", max_batch=32, instances=2, intra_op_threads=1)
    model = write_repository(bundle, tmp_path / "repo", cfg)
    assert model == tmp_path / "repo" / "g2p"
    assert sorted(p.name for p in model.iterdir()) == ["1", "config.pbtxt"]
    assert (model / "1" / "model.py").read_text() == (ROOT / "s2s_export/serving/model.py").read_text()
    copied = model / "1" / "bundle"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert sorted(p.name for p in copied.iterdir()) == sorted(["manifest.json", *manifest["files"]])
    assert all(sha256_file(copied / name) == digest for name, digest in manifest["files"].items())
    text = (model / "config.pbtxt").read_text()
    assert 'name: "g2p"' in text and 'backend: "python"' in text and "max_batch_size: 32" in text
    assert '{ name: "text" data_type: TYPE_STRING dims: [ 1 ] }' in text
    assert '{ name: "beam_size" data_type: TYPE_INT32 dims: [ 1 ] optional: true }' in text
    assert '{ name: "translations" data_type: TYPE_STRING dims: [ -1 ] }' in text
    assert "preferred_batch_size: [ 4, 8, 16, 32 ]" in text and "max_queue_delay_microseconds: 1000" in text
    assert "instance_group [ { count: 2 kind: KIND_CPU } ]" in text
    assert 'parameters { key: "intra_op_threads" value: { string_value: "1" } }' in text
    assert "precision" not in text  # unset options stay the runtime's defaults
    # no dynamic batching; GPU instances for a GPU backend
    plain = config_pbtxt(ServingConfig(dynamic_batching=False, backend="tensorrt"), "KIND_GPU")
    assert "dynamic_batching" not in plain and "kind: KIND_GPU" in plain
    with pytest.raises(OutputExistsError, match="already exists"):
        write_repository(bundle, tmp_path / "repo", cfg)


def test_triton_repo_cli(bundle: Path, tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    code, out, err = run_cli("s2s", ["triton-repo", str(bundle), "-o", str(tmp_path / "repo"), "--max-batch", "8",
                                     "--no-dynamic-batching"], capsys, monkeypatch)
    assert code == 0, err
    assert "wrote" in out and "s2s serve" in out
    text = (tmp_path / "repo" / "s2s" / "config.pbtxt").read_text()
    assert "max_batch_size: 8" in text and "dynamic_batching" not in text
    code, _, err = run_cli("s2s", ["triton-repo", str(bundle), "-o", str(tmp_path / "r2"), "--max-batch", "0"],
                           capsys, monkeypatch)
    assert code == 1 and err.strip() == "error: --max-batch must be >= 1 (got 0); pass a positive --max-batch"
    code, _, err = run_cli("s2s", ["triton-repo", str(tmp_path / "missing"), "-o", str(tmp_path / "r3")],
                           capsys, monkeypatch)
    assert code == 4 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r3").exists()


# --------------------------------------------------------------------------- request handler


def request(texts: list[str | bytes], **options: Any) -> dict[str, np.ndarray]:
    arrays = {"text": np.array([[t if isinstance(t, bytes) else t.encode()] for t in texts], dtype=object)}
    for name, value in options.items():
        arrays[name] = np.full((len(texts), 1), value, dtype=np.int32)
    return arrays


def test_handler_answers_like_the_api(translator: Translator) -> None:
    texts = sources(12, seed=1)
    plain, beam = handler.answer(translator, [request(texts[:5]), request(texts[5:], beam_size=3, n_best=2)])
    assert isinstance(plain, dict) and isinstance(beam, dict)
    want = translator.translate(texts[:5])
    assert plain["translation"].shape == (5, 1) and plain["score"].dtype == np.float32
    assert [t.decode() for t in plain["translation"][:, 0]] == [h[0].text for h in want]
    np.testing.assert_allclose(plain["score"][:, 0], [h[0].score for h in want], rtol=1e-6)
    want = translator.translate(texts[5:], beam_size=3, n_best=2)
    assert beam["translations"].shape == (7, 2)
    assert any(t == "" for t in texts[5:])  # an empty source: one empty hypothesis, padded
    assert [[t.decode() for t in row] for row in beam["translations"]] == padded(want)[0]
    np.testing.assert_allclose(beam["scores"], padded(want)[1], rtol=1e-6)


@pytest.mark.parametrize("arrays, message", [
    (request(["ab"], beam_size=0), "bad request option: beam_size must be >= 1 (got 0); send beam_size between 1 and 8"),
    (request(["ab"], beam_size=9), "beam_size 9 exceeds the bundle's top-K (8); send beam_size between 1 and 8"),
    (request(["ab"], n_best=2), "n_best 2 must be within 1..beam_size (1); send n_best between 1 and beam_size"),
    ({**request(["ab", "cd"]), "beam_size": np.array([[2], [3]], dtype=np.int32)},
     "input 'beam_size' must hold one value for the whole request (got [2, 3])"),
    ({**request(["ab"]), "n_best": np.array([[1.5]], dtype=np.float32)}, "input 'n_best' must hold integers"),
    (request(["ab", b"\xff"]), "input 'text' row 1 is not UTF-8 (byte 0); send UTF-8 text"),
    (request(["ab", "a" * 40]), "bad input 'text': row 1 has 41 source tokens (framing included), more than the "
                                "bundle's max_src_len 32"),
    ({"beam_size": np.array([[1]], dtype=np.int32)}, "request has no input 'text'"),
])
def test_handler_refuses_bad_requests(translator: Translator, arrays: dict[str, Any], message: str) -> None:
    good = request(["abc"])
    results = handler.answer(translator, [arrays, good])
    assert isinstance(results[0], handler.RequestError) and message in str(results[0])
    assert isinstance(results[1], dict)  # the rest of the batch is answered


def test_serving_modules_import_no_heavy_package() -> None:
    code = textwrap.dedent("""
        import json, sys
        import s2s_export.runtime, s2s_export.serving.handler, s2s_export.serving.repository
        import s2s_export.serving.server, s2s_export.distributed, s2s_export.cli.serve
        heavy = ("torch", "onnx", "onnxscript", "ray", "tritonclient", "pytriton", "pyarrow")
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_numpy_2_is_refused_for_the_wheels_server(monkeypatch: Any) -> None:
    import importlib.metadata

    from s2s_export.serving import server

    monkeypatch.setattr(importlib.metadata, "version", lambda name: "2.4.6")
    with pytest.raises(UnsupportedError, match=r"needs numpy 1.x \(found numpy 2.4.6"):
        server.check_numpy()


def test_extras_stay_out_of_the_runtime_install() -> None:
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]

    def names(reqs: list[str]) -> set[str]:
        return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in reqs}

    assert {"nvidia-pytriton", "tritonclient", "numpy"} <= names(extras["serve"])
    assert "numpy<2" in extras["serve"] and "ray" in names(extras["ray"])
    for runtime in ("cpu", "gpu"):
        assert not (names(project["dependencies"]) | names(extras[runtime])) & {"nvidia-pytriton", "tritonclient", "ray"}


def test_gpu_instances_see_their_own_device(monkeypatch: Any) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    handler.gpu_environment("CPU", 0)
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    handler.gpu_environment("GPU", 1)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    assert handler.load_options({"backend": "tensorrt", "intra_op_threads": "2", "precision": ""}) == {
        "backend": "tensorrt", "intra_op_threads": 2}


def test_log_problem_quotes_the_servers_reason(tmp_path: Path) -> None:
    from s2s_export.serving.server import log_problem

    log = tmp_path / "server.log"
    log.write_text('I1130 model_lifecycle.cc:472] "loading: s2s:1"\n'
                   'E1130 server.cc:241] "CudaDriverHelper has not been initialized."\n'
                   'E1130 model_lifecycle.cc:642] "failed to load \'s2s\' version 1: Internal: '
                   'UnsupportedError: no GPU\\n\\nAt:\\n  model.py(40)"\n')
    assert log_problem(log) == "failed to load 's2s' version 1: Internal: UnsupportedError: no GPU"


# --------------------------------------------------------------------------- the real server


def serve_extra_missing() -> str:
    import importlib.metadata
    import importlib.util

    for module in ("tritonclient.http", "tritonclient.grpc"):
        try:
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed (pip install 's2s-export[serve]')"
        except ModuleNotFoundError:
            return f"{module} is not installed (pip install 's2s-export[serve]')"
    from s2s_export.errors import S2SError
    from s2s_export.serving.server import check_numpy, find_tritonserver

    try:
        if find_tritonserver().python_backend is not None:
            check_numpy()
    except S2SError as exc:
        return str(exc)
    return ""


needs_server = pytest.mark.skipif(bool(serve_extra_missing()), reason=serve_extra_missing() or "ok")


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def start_serve(target: Path, tmp: Path, *extra: str) -> tuple[subprocess.Popen[str], list[int]]:
    ports = free_ports(3)
    argv = [sys.executable, "-m", "s2s_export.cli.main", "serve", str(target), "--http-port", str(ports[0]),
            "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]), "--address", "127.0.0.1",
            "--ready-timeout", str(READY_TIMEOUT_S), *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, ports


def wait_ready(proc: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"s2s serve exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise AssertionError("s2s serve was not ready in time")


@pytest.fixture(scope="module")
def server(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("serve_tmp")
    proc, ports = start_serve(bundle, tmp, "--threads", "1", "--max-queue-delay-us", "2000")
    try:
        wait_ready(proc, ports[0])
        yield {"proc": proc, "http": ports[0], "grpc": ports[1], "metrics": ports[2], "tmp": tmp}
    finally:
        if proc.poll() is None:  # a test failed before the SIGTERM test: stop it as a user would
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


def infer_inputs(module: Any, texts: list[str], **options: int) -> list[Any]:
    data = np.array([[t.encode()] for t in texts], dtype=object)
    inputs = [module.InferInput("text", list(data.shape), "BYTES")]
    inputs[0].set_data_from_numpy(data)
    for name, value in options.items():
        tensor = module.InferInput(name, [len(texts), 1], "INT32")
        tensor.set_data_from_numpy(np.full((len(texts), 1), value, dtype=np.int32))
        inputs.append(tensor)
    return inputs


def concurrent(jobs: list[Any]) -> list[Any]:
    """Run the callables on CLIENTS threads at once; their results in order (errors re-raised)."""
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(jobs))

    def work(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = jobs[i]()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[0]
    return results


@needs_server
def test_http_16_clients_get_s2s_translates_text(server: dict[str, Any], bundle: Path, tmp_path: Path,
                                                 capsys: Any, monkeypatch: Any) -> None:
    import tritonclient.http as http

    texts = sources(CLIENTS * 6, seed=2)
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    code, out, err = run_cli("s2s", ["translate", str(bundle), "-i", str(tmp_path / "in.txt"), "--threads", "1"],
                             capsys, monkeypatch)
    assert code == 0, err
    expected = out.split("\n")[:-1]
    assert len(expected) == len(texts)

    def client(i: int) -> list[str]:
        chunk = texts[i * 6:(i + 1) * 6]
        with http.InferenceServerClient(f"127.0.0.1:{server['http']}") as c:
            got = []
            for part in (chunk[:1], chunk[1:6]):  # a request of 1 text, then one of 5
                result = c.infer("s2s", infer_inputs(http, part))
                assert result.as_numpy("translation").shape == (len(part), 1)
                got += [t.decode() for t in result.as_numpy("translation")[:, 0]]
            return got

    answers = concurrent([lambda i=i: client(i) for i in range(CLIENTS)])
    assert [line for a in answers for line in a] == expected


@needs_server
def test_grpc_16_clients_n_best(server: dict[str, Any], translator: Translator) -> None:
    import tritonclient.grpc as grpc

    texts = sources(CLIENTS * 3, seed=3)
    want = translator.translate(texts, beam_size=3, n_best=2)

    def client(i: int) -> tuple[list[list[str]], np.ndarray]:
        c = grpc.InferenceServerClient(f"127.0.0.1:{server['grpc']}")
        try:
            result = c.infer("s2s", infer_inputs(grpc, texts[i * 3:(i + 1) * 3], beam_size=3, n_best=2))
        finally:
            c.close()
        return ([[t.decode() for t in row] for row in result.as_numpy("translations")],
                result.as_numpy("scores"))

    answers = concurrent([lambda i=i: client(i) for i in range(CLIENTS)])
    assert [row for a in answers for row in a[0]] == padded(want)[0]
    np.testing.assert_allclose(np.concatenate([a[1] for a in answers]), padded(want)[1],
                               rtol=1e-5, atol=1e-6)


@needs_server
def test_bad_requests_name_the_input(server: dict[str, Any]) -> None:
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    with http.InferenceServerClient(f"127.0.0.1:{server['http']}") as c:
        with pytest.raises(InferenceServerException, match=r"beam_size must be >= 1 \(got 0\)") as err:
            c.infer("s2s", infer_inputs(http, ["ab"], beam_size=0))
        assert err.value.status() == "400"
        with pytest.raises(InferenceServerException, match=r"n_best 4 must be within 1..beam_size \(2\)"):
            c.infer("s2s", infer_inputs(http, ["ab"], beam_size=2, n_best=4))
        with pytest.raises(InferenceServerException, match="row 0 has 41 source tokens"):
            c.infer("s2s", infer_inputs(http, ["a" * 40]))
        assert c.infer("s2s", infer_inputs(http, ["ab"])).as_numpy("translation").shape == (1, 1)


@needs_server
def test_metrics_endpoint(server: dict[str, Any]) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{server['metrics']}/metrics", timeout=10) as r:
        text = r.read().decode()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("nv_inference_") and 'model="s2s"' in line:
            name = line.split("{")[0]
            counts[name] = counts.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    # the HTTP and gRPC tests sent 2 x 16 + 16 requests, the error test 4; Triton counts a
    # Python-backend response carrying an error as a successful request (failure stays 0)
    assert counts["nv_inference_request_success"] >= 3 * CLIENTS + 4
    assert counts["nv_inference_request_failure"] == 0
    assert counts["nv_inference_count"] >= CLIENTS * 9  # texts (batch rows) inferred
    assert 1 <= counts["nv_inference_exec_count"] <= counts["nv_inference_request_success"]
    assert counts["nv_inference_request_duration_us"] > 0


@needs_server
def test_sigterm_stops_cleanly(server: dict[str, Any]) -> None:
    proc: subprocess.Popen[str] = server["proc"]
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    stderr = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == 143, stderr
    assert "serving" in stderr and "error" not in stderr
    tmp = str(server["tmp"])
    assert list(Path(tmp).iterdir()) == []  # the temporary repository, backends and log are gone
    assert processes_mentioning(tmp) == []  # neither tritonserver nor a backend stub is left
    assert not list(Path("/dev/shm").glob(f"s2s{proc.pid}x*"))


def processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(cmdline)
    return found


@needs_server
def test_repository_served_and_server_dies_with_a_killed_launcher(bundle: Path, translator: Translator,
                                                                  tmp_path: Path) -> None:
    import tritonclient.http as http

    repo = tmp_path / "repo"  # what s2s triton-repo writes (the bundle copied), served as it is
    write_repository(bundle, repo, ServingConfig(name="g2p", intra_op_threads=1, dynamic_batching=False))
    (tmp_path / "tmp").mkdir()
    proc, ports = start_serve(repo, tmp_path / "tmp")
    try:
        wait_ready(proc, ports[0])
        with http.InferenceServerClient(f"127.0.0.1:{ports[0]}") as c:
            result = c.infer("g2p", infer_inputs(http, ["abc", "jihg"]))
        assert [t.decode() for t in result.as_numpy("translation")[:, 0]] == [
            h[0].text for h in translator.translate(["abc", "jihg"])]
        assert processes_mentioning(str(tmp_path / "tmp"))  # tritonserver and its stub run from there
    finally:
        proc.kill()  # SIGKILL: s2s serve cannot clean up, the server must still go
        proc.wait(timeout=30)
    deadline = time.monotonic() + 60
    while processes_mentioning(str(tmp_path / "tmp")) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert processes_mentioning(str(tmp_path / "tmp")) == []


@needs_server
def test_serve_reports_a_model_that_cannot_load(bundle: Path, tmp_path: Path) -> None:
    proc, _ = start_serve(bundle, tmp_path, "--backend", "tensorrt")  # no TensorRT engine on this machine
    try:
        _, err = proc.communicate(timeout=READY_TIMEOUT_S + 30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: tritonserver exited") and "failed to load 's2s'" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_serve_refuses_what_is_not_a_bundle(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    (tmp_path / "empty").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    code, _, err = run_cli("s2s", ["serve", str(tmp_path / "empty")], capsys, monkeypatch)
    assert code == 4 and "is neither a bundle (manifest.json) nor a Triton model repository" in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_serve_checks_the_bundles_of_a_repository_first(bundle: Path, tmp_path: Path, capsys: Any,
                                                       monkeypatch: Any) -> None:
    """A tampered bundle inside a repository is exit 4 (one line) before any server starts."""
    write_repository(bundle, tmp_path / "repo")
    repo = tmp_path / "repo"
    with open(repo / "s2s" / "1" / "bundle" / "encoder.onnx", "ab") as f:
        f.write(b"\0")
    code, _, err = run_cli("s2s", ["serve", str(repo), "--tritonserver", "/nonexistent/tritonserver"], capsys,
                           monkeypatch)
    assert code == 4 and len(err.strip().splitlines()) == 1 and "encoder.onnx" in err, err
