"""Start a real Triton Inference Server on a model repository (``s2s serve``), torch-free.

The ``tritonserver`` binary: ``tritonserver=`` if given, else the one the ``nvidia-pytriton``
wheel ships (``pytriton/tritonserver/bin/tritonserver``, Triton 2.51 with the Python backend,
runs on a CPU-only machine), else one on PATH (e.g. in NVIDIA's Triton container). For the
wheel's server a backends directory is laid out in a temporary directory: its Python backend
(``libtriton_python.so``, ``triton_python_backend_utils.py``) and the backend stub built for the
running Python (``python_backend_stubs/3.X/triton_python_backend_stub``), which loads this
interpreter's ``libpython`` (LD_LIBRARY_PATH). The stub's interpreter runs isolated (it ignores
PYTHONPATH), so this process's ``sys.path`` is passed in ``S2S_SERVE_SYS_PATH`` and the model
(``serving/model.py``) puts it first: the server imports the same ``s2s_export`` as ``s2s serve``.

``TritonServer`` is a context manager: ``start()`` launches the server in a session of its own
(its output goes to ``server.log`` in the temporary directory), ``wait_ready()`` polls
``/v2/health/ready`` until it answers 200, ``stop()`` sends SIGTERM, waits (then SIGKILLs the
process group), removes the Python backend's shared-memory regions and the temporary directory.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .. import interrupts
from ..bundle import MANIFEST, load_manifest
from ..errors import BadInputError, MissingDependencyError, S2SError, UnsupportedError
from .repository import ServingConfig, fill_model

SYS_PATH_ENV = "S2S_SERVE_SYS_PATH"
EXIT_TIMEOUT_S = 10  # tritonserver --exit-timeout-secs: in-flight requests get this long at stop
LOG_LINES = 6  # server log lines quoted when it fails


@dataclass(frozen=True)
class Tritonserver:
    """A ``tritonserver`` binary and, for the wheel's, where its Python backend lives."""

    binary: Path
    python_backend: Path | None = None  # pytriton/tritonserver (backends/python, python_backend_stubs)
    libs: Path | None = None  # the wheel's shared libraries (nvidia_pytriton.libs)


def find_tritonserver(explicit: str | os.PathLike[str] | None = None) -> Tritonserver:
    """The server to run (see the module docstring); ``MissingDependencyError`` (exit 2) when
    there is none."""
    if explicit is not None:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BadInputError(f"--tritonserver {path} is not an executable file", "pass the tritonserver binary")
        return Tritonserver(path)
    spec = importlib.util.find_spec("pytriton")  # the package's location only: nothing is imported
    if spec is not None and spec.submodule_search_locations:
        root = Path(list(spec.submodule_search_locations)[0]) / "tritonserver"
        if (root / "bin" / "tritonserver").is_file():
            return Tritonserver(root / "bin" / "tritonserver", root, root.parent.parent / "nvidia_pytriton.libs")
    found = shutil.which("tritonserver")
    if found:
        return Tritonserver(Path(found))
    raise MissingDependencyError("no tritonserver found (neither the nvidia-pytriton wheel nor one on PATH)",
                                 "install it: pip install 's2s-export[serve]'")


def check_numpy() -> None:
    """The wheel's backend stub (nvidia-pytriton 0.7.0, Triton 2.51) is built for numpy 1.x: under
    numpy 2 every tensor reaches the model corrupted (measured: a BYTES input read as garbage
    lengths), which is why the wheel requires numpy<2. Refuse to start rather than serve that."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("numpy")
    except PackageNotFoundError:
        return
    if int(found.split(".")[0]) >= 2:
        raise UnsupportedError(f"the Python backend of nvidia-pytriton's tritonserver needs numpy 1.x (found "
                               f"numpy {found}; the wheel requires numpy<2)",
                               "pip install 'numpy<2' (as the serve extra does), or run a tritonserver of "
                               "your own with --tritonserver")


def python_backend_dir(server: Tritonserver, root: Path) -> Path | None:
    """For the wheel's server: ``root/backends/python`` with the stub of the running Python;
    returns ``root/backends`` (None for other servers: their own backend directory is used)."""
    if server.python_backend is None:
        return None
    check_numpy()
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    stub = server.python_backend / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise UnsupportedError(f"the nvidia-pytriton wheel has no Python backend stub for Python {version}",
                               "run s2s serve with a Python the wheel supports (3.8 to 3.13)")
    backend = root / "backends" / "python"
    backend.mkdir(parents=True)
    source = server.python_backend / "backends" / "python"
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        os.symlink(source / name, backend / name)
    os.symlink(stub, backend / "triton_python_backend_stub")
    return root / "backends"


def server_environment(server: Tritonserver) -> dict[str, str]:
    """The server's environment: this interpreter's libpython first on LD_LIBRARY_PATH (the stub
    embeds it), the wheel's libraries, and this process's sys.path for the model."""
    env = dict(os.environ)
    libs = [str(server.libs)] if server.libs is not None else []
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        libs.insert(0, str(sysconfig.get_config_var("LIBDIR")))
    if env.get("LD_LIBRARY_PATH"):
        libs.append(env["LD_LIBRARY_PATH"])
    if libs:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(libs)
    # the stub finds its interpreter as "python3" on PATH: this one first, so that its prefix
    # (a virtual environment's pyvenv.cfg included) and so its site-packages are this process's
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)])
    package_root = str(Path(__file__).resolve().parents[2])  # this s2s_export, wherever it is
    paths = [package_root, *(p for p in sys.path if p and p != package_root)]
    env[SYS_PATH_ENV] = os.pathsep.join(paths)
    return env


def _die_with_parent() -> None:
    """In the server's process before exec: SIGTERM it when the thread that started it dies (a
    launcher killed with SIGKILL leaves no server behind; Linux only, elsewhere a no-op)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def log_problem(log: Path) -> str:
    """The server's own reason for failing, from its log: the first error line (``E...``) or
    ``error:`` line, with Triton's escaped traceback cut to its first line."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "no server log"
    for line in lines:
        if (line.startswith("E") and "] " in line) or line.startswith("error:"):
            text = line.split("] ", 1)[-1].strip().strip('"')
            if "CudaDriverHelper" in text:  # CPU-only machine: harmless
                continue
            return text.split("\\n", 1)[0]
    return " | ".join(lines[-LOG_LINES:]) or "the server printed nothing"


class TritonServer:
    """A running ``tritonserver`` over ``repository`` (see the module docstring).

    ``address``: the interface the HTTP, gRPC and metrics endpoints listen on (``127.0.0.1``:
    this machine only; ``0.0.0.0``: every interface). ``log``: where the server's output goes
    (default ``server.log`` in the temporary directory, quoted in errors)."""

    def __init__(self, repository: str | os.PathLike[str], http_port: int = 8000, grpc_port: int = 8001,
                 metrics_port: int = 8002, address: str = "127.0.0.1",
                 tritonserver: str | os.PathLike[str] | None = None, log: str | os.PathLike[str] | None = None,
                 workdir: Path | None = None) -> None:
        self.repository = Path(repository)
        self.ports = (http_port, grpc_port, metrics_port)
        self.address = address
        self.server = find_tritonserver(tritonserver)
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="s2s-serve-"))
        self.log = Path(log) if log is not None else self.workdir / "server.log"
        self.shm_prefix = f"s2s{os.getpid()}x{self.workdir.name.rsplit('-', 1)[-1]}_"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.address in ("0.0.0.0", "") else self.address
        return f"http://{host}:{self.ports[0]}"

    def command(self, backends: Path | None) -> list[str]:
        http, grpc, metrics = self.ports
        cmd = [str(self.server.binary), "--model-repository", str(self.repository),
               "--http-address", self.address, "--http-port", str(http),
               "--grpc-address", self.address, "--grpc-port", str(grpc),
               "--metrics-address", self.address, "--metrics-port", str(metrics),
               "--allow-gpu-metrics", "false", "--exit-timeout-secs", str(EXIT_TIMEOUT_S),
               "--backend-config", f"python,shm-region-prefix-name={self.shm_prefix}"]
        if backends is not None:
            cmd += ["--backend-directory", str(backends)]
        return cmd

    def start(self) -> "TritonServer":
        backends = python_backend_dir(self.server, self.workdir)
        env = server_environment(self.server)
        env["TMPDIR"] = str(self.workdir / "tmp")  # what the server and its libraries leave goes with it
        (self.workdir / "tmp").mkdir(exist_ok=True)
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(self.command(backends), stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                            preexec_fn=_die_with_parent)
        return self

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/v2/health/ready", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        """Block until ``/v2/health/ready`` answers 200. Raises ``S2SError`` with the server's
        reason when it exits first, ``UnsupportedError`` after ``timeout_s`` seconds."""
        assert self.process is not None, "start() first"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise self.failure()
            if self.ready():
                return
            time.sleep(0.25)
        raise UnsupportedError(f"tritonserver was not ready after {timeout_s:.0f} s ({log_problem(self.log)})",
                               "see its log, or raise --ready-timeout")

    def failure(self) -> S2SError:
        code = self.process.returncode if self.process is not None else None
        return S2SError(f"tritonserver exited (code {code}): {log_problem(self.log)}",
                        "fix the model repository or the ports (another server on them?); "
                        "--log FILE keeps the server's log")

    def stop(self) -> None:
        """SIGTERM, wait for a graceful exit (in-flight requests finish), then SIGKILL whatever
        is left of its process group; remove shared memory and the temporary directory."""
        proc, self.process = self.process, None
        try:
            if proc is not None:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(timeout=EXIT_TIMEOUT_S + 10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                try:  # backend stubs left behind (they share the server's process group)
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        finally:
            for region in Path("/dev/shm").glob(f"{self.shm_prefix}*"):
                region.unlink(missing_ok=True)
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def prepare_repository(target: Path, workdir: Path, config: ServingConfig) -> Path:
    """``target`` as a model repository: a bundle (``manifest.json``) gets a repository in
    ``workdir`` linking to it; a repository (a folder of models with ``config.pbtxt``) is used
    as it is, after every bundle in it has been checked (``load_manifest``: a missing, broken
    or tampered bundle is a ``BundleError``, exit 4, before the server starts). ``BadInputError``
    for anything else."""
    if (target / MANIFEST).is_file():
        repo = workdir / "repository"
        fill_model(repo / config.validate().name, target, config, link_bundle=True)
        return repo
    if target.is_dir() and any(target.glob("*/config.pbtxt")):
        for bundle in sorted(target.glob(f"*/*/bundle/{MANIFEST}")):  # REPO/MODEL/VERSION/bundle
            load_manifest(bundle.parent)
        return target
    raise BadInputError(f"{target} is neither a bundle (manifest.json) nor a Triton model repository",
                        "pass a bundle written by s2s-export or a repository written by s2s triton-repo")


def serve(target: str | os.PathLike[str], config: ServingConfig = ServingConfig(), http_port: int = 8000,
          grpc_port: int = 8001, metrics_port: int = 8002, address: str = "127.0.0.1",
          tritonserver: str | os.PathLike[str] | None = None, ready_timeout_s: float = 180.0,
          log: str | os.PathLike[str] | None = None,
          on_ready: Callable[[TritonServer], None] | None = None) -> None:
    """Serve a bundle or a model repository until this process is interrupted (SIGINT,
    SIGTERM, SIGHUP: under the CLI's ``interrupts`` handler the server is stopped gracefully
    and every temporary file removed before the process exits with 128 + the signal; without
    it, KeyboardInterrupt unwinds through here to the same effect). ``on_ready(server)`` runs
    once it answers. Raises ``S2SError`` with the server's reason when it fails to start or
    exits by itself."""
    workdir = Path(tempfile.mkdtemp(prefix="s2s-serve-"))
    running: list[TritonServer] = []

    def cleanup() -> None:
        for server in running:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    token = interrupts.on_interrupt(cleanup)
    try:
        repo = prepare_repository(Path(target), workdir, config)
        running.append(TritonServer(repo, http_port, grpc_port, metrics_port, address, tritonserver, log, workdir))
        server = running[0].start()
        server.wait_ready(ready_timeout_s)
        if on_ready is not None:
            on_ready(server)
        # polled, not Popen.wait(): a signal handler that stops the server must not find
        # Popen's wait lock held by this frame
        while server.process is not None and server.process.poll() is None:
            time.sleep(0.2)
        raise server.failure()
    finally:
        interrupts.discard(token)
        cleanup()


__all__ = ["TritonServer", "Tritonserver", "find_tritonserver", "prepare_repository", "serve"]
