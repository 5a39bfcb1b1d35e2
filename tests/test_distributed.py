"""Batch translation on Ray (``s2s translate --ray``, ``distributed.translate_file``): the input
rules of ``s2s translate -i``, a 20,000-line file on a local 2-CPU cluster written exactly as a
single process writes it, n-best JSON with the bundle shipped through the object store, and
errors (one line, no partial output). The Ray tests need the ``ray`` extra and skip without it;
one local cluster serves them all."""

from __future__ import annotations

import importlib.util
import json
import logging
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from conftest import run_cli  # noqa: E402
from s2s_export.cli.translate import read_inputs  # noqa: E402
from s2s_export.distributed import read_blocks, translate_file  # noqa: E402
from s2s_export.errors import BadInputError  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")  # Ray Data's own settings

LINES = 20_000


def ray_missing() -> str:
    try:
        for module in ("ray", "ray.data", "pyarrow"):
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed (pip install 's2s-export[ray]')"
    except ModuleNotFoundError:
        return "ray is not installed (pip install 's2s-export[ray]')"
    return ""


needs_ray = pytest.mark.skipif(bool(ray_missing()), reason=ray_missing() or "ok")


@pytest.fixture(scope="module")
def bundle(tiny_checkpoint: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import export_shared_bundle

    return export_shared_bundle(tiny_checkpoint, tmp_path_factory.mktemp("distributed") / "bundle")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def corpus(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    letters = list("abcdefghij")
    return ["".join(rng.choice(letters, size=int(rng.integers(0, 9)))) for _ in range(n)]


@pytest.mark.parametrize("data", [
    b"ab\ncd\n", b"ab\ncd", b"\xef\xbb\xbfab\r\ncd\r\n", b"", b"\n\n", b"a\x0cb\ncd\n", b"x\rz\n\n\ny",
])
def test_read_blocks_follows_translate_rules(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(data)
    for size in (1, 2, 100):
        assert [line for block in read_blocks(path, size) for line in block] == read_inputs(None, path)


def test_read_blocks_non_utf8_names_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(b"ab\ncd\xff\n")
    with pytest.raises(BadInputError) as local:
        read_inputs(None, path)
    with pytest.raises(BadInputError) as blocks:
        list(read_blocks(path, 1))
    assert str(blocks.value) == str(local.value) and "(byte 3 of the line)" in str(local.value)


@needs_ray
def test_ray_writes_what_a_single_process_writes(cluster: Any, bundle: Path, tmp_path: Path, capsys: Any,
                                                 monkeypatch: Any) -> None:
    lines = corpus(LINES)
    lines[7] = ""  # empty lines stay lines
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n")
    code, _, err = run_cli("s2s", ["translate", str(bundle), "-i", str(tmp_path / "in.txt"), "-o",
                                   str(tmp_path / "local.txt"), "--threads", "1"], capsys, monkeypatch)
    assert code == 0, err
    code, out, err = run_cli("s2s", ["translate", str(bundle), "-i", str(tmp_path / "in.txt"), "-o",
                                     str(tmp_path / "ray.txt"), "--ray"], capsys, monkeypatch)
    assert code == 0, err
    assert out == "" and "translating" in err  # the progress bar on stderr
    local, ray = (tmp_path / "local.txt").read_bytes(), (tmp_path / "ray.txt").read_bytes()
    assert local.count(b"\n") == LINES and ray == local
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "local.txt", "ray.txt"]  # no temporary file


@needs_ray
def test_ray_n_best_json_with_a_shipped_bundle(cluster: Any, bundle: Path, tmp_path: Path, capsys: Any,
                                               monkeypatch: Any) -> None:
    (tmp_path / "in.txt").write_text("\n".join(corpus(300, seed=1)) + "\n")
    code, _, err = run_cli("s2s", ["translate", str(bundle), "-i", str(tmp_path / "in.txt"), "-o",
                                   str(tmp_path / "local.jsonl"), "--beam", "3", "--n-best", "2", "--json",
                                   "--batch-size", "16"], capsys, monkeypatch)
    assert code == 0, err
    seen: list[int] = []
    n = translate_file(bundle, tmp_path / "in.txt", tmp_path / "ray.jsonl", num_actors=1, batch_size=16,
                       mode="json", ship_bundle=True, progress=seen.append, beam_size=3, n_best=2)
    assert n == 300 and sum(seen) == 300
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    first = json.loads((tmp_path / "ray.jsonl").read_text().splitlines()[0])
    assert len(first["hypotheses"]) == 2


@needs_ray
def test_ray_int8_writes_what_a_single_process_writes(cluster: Any, bundle: Path, tmp_path: Path, capsys: Any,
                                                      monkeypatch: Any) -> None:
    """INT8 is batch-independent: Ray's blocks and batch size (16) give the file a single
    process writes with its own (64)."""
    import shutil

    from s2s_export.int8 import quantize_bundle

    q = tmp_path / "int8"
    shutil.copytree(bundle, q)
    quantize_bundle(q)
    (tmp_path / "in.txt").write_text("\n".join(corpus(500, seed=3)) + "\n")
    code, _, err = run_cli("s2s", ["translate", str(q), "-i", str(tmp_path / "in.txt"), "-o", str(tmp_path / "local.txt"),
                                   "--precision", "int8", "--beam", "3", "--scores"], capsys, monkeypatch)
    assert code == 0, err
    translate_file(q, tmp_path / "in.txt", tmp_path / "ray.txt", num_actors=2, batch_size=16, precision="int8",
                   mode="scores", beam_size=3)
    assert (tmp_path / "ray.txt").read_bytes() == (tmp_path / "local.txt").read_bytes()


@needs_ray
def test_ray_errors_leave_no_output(cluster: Any, bundle: Path, tmp_path: Path, capsys: Any,
                                    monkeypatch: Any) -> None:
    lines = corpus(50, seed=2)
    lines[33] = "a" * 40  # longer than the bundle's max_src_len (32)
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "out.txt").write_text("previous\n")
    code, _, err = run_cli("s2s", ["translate", str(bundle), "-i", str(tmp_path / "in.txt"), "-o",
                                   str(tmp_path / "out.txt"), "--ray", "--batch-size", "8"], capsys, monkeypatch)
    assert code == 4
    assert err.strip().splitlines()[-1].startswith(f"error: {tmp_path / 'in.txt'} line 34 has 41 source tokens")
    assert (tmp_path / "out.txt").read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.txt"]


def test_connect_uses_the_address_or_this_process_ray() -> None:
    from s2s_export.raycluster import connect

    class FakeRay:
        def __init__(self, initialized: bool) -> None:
            self.initialized, self.calls = initialized, []  # type: ignore[var-annotated]

        def is_initialized(self) -> bool:
            return self.initialized

        def init(self, **kwargs: Any) -> None:
            self.calls.append(kwargs)

    ray, checked = FakeRay(initialized=True), []
    address = "ray://head:10001"  # usable (the check passes): connect, disconnect after
    assert connect(ray, address, None, check=lambda a: checked.append(a) or None) is True
    assert ray.calls[0]["address"] == address and checked == [address]
    ray = FakeRay(initialized=True)
    assert connect(ray, None, None) is False and ray.calls == []  # this process's Ray: used, left running
    ray = FakeRay(initialized=False)
    assert connect(ray, None, 2) is True and ray.calls[0]["num_cpus"] == 2  # a local one for the job
    assert ray.calls[0]["address"] == "local"  # a new cluster, never the latest one started here

    class Unreachable(FakeRay):
        def init(self, **kwargs: Any) -> None:
            raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379")

    from s2s_export.errors import UnsupportedError

    with pytest.raises(UnsupportedError) as info:  # one line naming our flag and the fix, exit 2
        connect(Unreachable(initialized=False), "10.0.0.1:6379", None, check=lambda a: None)
    assert str(info.value) == ("cannot reach a Ray cluster at --ray-address 10.0.0.1:6379 (Failed to connect to Ray "
                               "cluster at 10.0.0.1:6379); start one there (ray start --head), or leave out "
                               "--ray-address to use a local cluster")


def test_an_address_that_answers_nothing_fails_in_seconds(monkeypatch: Any) -> None:
    """Ray's client retries an address where nothing answers for minutes (a cluster that was
    killed leaves its address in /tmp/ray/ray_current_cluster, which ``auto`` reads, as it reads
    RAY_ADDRESS): the address Ray would dial is tried first, and ray.init never runs."""
    from s2s_export.errors import UnsupportedError
    from s2s_export.raycluster import bootstrap_address, connect, probe

    class NeverInit:
        def init(self, **kwargs: Any) -> None:
            raise AssertionError("ray.init must not run")

    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]  # closed below: nothing answers there any more
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    assert bootstrap_address("auto") == f"127.0.0.1:{port}"  # Ray's own lookup
    started = time.monotonic()
    with pytest.raises(UnsupportedError) as info:
        connect(NeverInit(), "auto", None)
    assert time.monotonic() - started < 5
    assert str(info.value) == (f"cannot reach a Ray cluster at --ray-address auto (127.0.0.1:{port}: nothing answers "
                               "there); start one there (ray start --head), or leave out --ray-address to use a "
                               "local cluster")
    assert bootstrap_address(f"127.0.0.1:{port + 1}") == f"127.0.0.1:{port + 1}"  # as ray.init: a given one wins
    assert bootstrap_address("local") is None  # a new cluster: nothing to check
    monkeypatch.delenv("RAY_ADDRESS")
    for address in [f"127.0.0.1:{port}", "ray://host.invalid:10001", "ray://host.invalid", ":6379",
                    "127.0.0.1:99999"]:  # refused; no such host (.invalid), with Ray's port; no host; no port
        with pytest.raises(UnsupportedError) as info:
            connect(NeverInit(), address, None)
        assert str(info.value).startswith(f"cannot reach a Ray cluster at --ray-address {address} (")
        assert str(info.value).endswith("start one there (ray start --head), or leave out --ray-address to use "
                                        "a local cluster") and "\n" not in str(info.value)
    assert probe(":6379") == "the address names no host" and probe("h:99999") == "port 99999 is out of range"


def test_a_listener_that_is_not_ray_is_refused_within_the_time_limit() -> None:
    """Something answers at the address but it is not Ray (here: a socket that accepts and says
    nothing; Ray retried a web server there for minutes): ray.init is tried in a child process,
    killed after the time limit, and the reason is one line."""
    import threading

    from s2s_export.raycluster import check_cluster, probe, usable

    with socket.create_server(("127.0.0.1", 0)) as server:
        port, held = server.getsockname()[1], []
        threading.Thread(target=lambda: held.append(server.accept()), daemon=True).start()
        assert probe(f"127.0.0.1:{port}") is None  # the TCP connection opens
        started = time.monotonic()
        assert check_cluster(f"127.0.0.1:{port}", timeout_s=6) == "no Ray cluster answered within 6 s"
        assert time.monotonic() - started < 15
    assert usable("host:notaport").startswith("ValueError: ")  # Ray's own reason, from the child, one line


def test_ray_address_from_the_environment(bundle: Path, tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    """Without --ray-address the job goes to RAY_ADDRESS (``ray job submit`` sets it), and the
    error names that variable when nothing answers there; no output is written."""
    (tmp_path / "in.txt").write_text("ab\n")
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    code, _, err = run_cli("s2s", ["translate", str(bundle), "-i", str(tmp_path / "in.txt"), "-o",
                                   str(tmp_path / "out.txt"), "--ray"], capsys, monkeypatch)
    assert code == 2
    assert err.strip() == (f"error: cannot reach a Ray cluster at RAY_ADDRESS 127.0.0.1:{port} (nothing answers "
                           "there); start one there (ray start --head), or unset RAY_ADDRESS to use a local cluster")
    assert not (tmp_path / "out.txt").exists()


def test_ray_usage_errors(bundle: Path, tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    (tmp_path / "in.txt").write_text("ab\n")
    code, _, err = run_cli("s2s", ["translate", str(bundle), "-i", str(tmp_path / "in.txt"), "--ray"],
                           capsys, monkeypatch)
    assert code == 1 and err.strip() == ("error: --ray translates a file: it needs -i INPUT and -o OUTPUT (no TEXT, "
                                         "stdin or --plot-attention); pass -i INPUT -o OUTPUT")
    code, _, err = run_cli("s2s", ["translate", str(bundle), "-i", str(tmp_path / "missing.txt"), "-o",
                                   str(tmp_path / "o.txt"), "--ray"], capsys, monkeypatch)
    assert code == 4 and "cannot read" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("s2s", ["translate", str(bundle), "-i", str(tmp_path / "in.txt"), "-o",
                                   str(tmp_path / "o.txt"), "--ray", "--beam", "0"], capsys, monkeypatch)
    assert code == 1 and "--beam must be >= 1" in err
    assert not (tmp_path / "o.txt").exists()
