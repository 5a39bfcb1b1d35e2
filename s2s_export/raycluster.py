"""Connecting to a Ray cluster without hanging (``distributed.translate_file``, ``s2s translate --ray``).

``ray.init(address=...)`` retries an address for minutes, printing C++ warnings, when nothing
answers there (a stopped cluster whose address ``auto`` still reads from
``/tmp/ray/ray_current_cluster``), when something that is not Ray answers (any other server on
that port), or when a ``ray://`` address has no port (measured with Ray 2.60: still retrying
after 2 minutes; 31 s for ``ray://host``). ``connect`` therefore checks an existing cluster's
address first: a TCP connection (``probe``: refused or unknown hosts in milliseconds), then the
same ``ray.init`` in a child process with a time limit (``check_cluster``, ``CONNECT_TIMEOUT_S``):
a bad address ends in one ``UnsupportedError`` line (exit 2), never in a hang or Ray's log
lines. The check costs an existing-cluster job a few seconds (a second interpreter importing
Ray and connecting once, which the cluster lists as a short driver job); a local cluster is not
checked.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from typing import Any, Callable

from .errors import UnsupportedError, one_line, shorten

CONNECT_TIMEOUT_S = 30.0  # the child's ray.init must connect within this (Ray itself gives up on some addresses after ~20 s)
RAY_CLIENT_PORT = 10001  # a ray:// address without a port dials this (Ray's default)

_CHECK = """import json, logging, sys
import ray
try:
    ray.init(address=sys.argv[1], logging_level=logging.ERROR, log_to_driver=False)
except Exception as exc:
    print(json.dumps(f"{type(exc).__name__}: {exc}"))
    sys.exit(3)
ray.shutdown()
"""


def connect(ray: Any, address: str | None, num_cpus: int | None, source: str = "--ray-address",
            check: Callable[[str], str | None] | None = None) -> bool:
    """Connect to ``address``, or reuse this process's Ray, or start a new local cluster; True
    when this call connected (and so disconnects at the end). ``source``: where ``address`` came
    from (``--ray-address`` or ``RAY_ADDRESS``), named by the error. ``check``: why ``address``
    cannot be used, or None (default: ``probe`` of the address Ray will dial, then
    ``check_cluster``). Raises ``UnsupportedError`` (exit 2) naming the address and the fix."""
    quiet = dict(logging_level=logging.ERROR, log_to_driver=False)
    if address is None:
        if ray.is_initialized():
            return False
        # "local": always a new cluster; ray.init() without an address joins the latest one
        # started on this machine (/tmp/ray/ray_current_cluster), a stale one included
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **quiet)
        return True
    fix = ("start one there (ray start --head), or "
           + ("unset RAY_ADDRESS" if source == "RAY_ADDRESS" else "leave out --ray-address") + " to use a local cluster")
    why = (check or usable)(address)
    if why is not None:
        raise UnsupportedError(f"cannot reach a Ray cluster at {source} {address} ({why})", fix)
    try:
        ray.init(address=address, **quiet)
    except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError...
        raise UnsupportedError(f"cannot reach a Ray cluster at {source} {address} ({one_line(exc, 160)})", fix) from None
    return True


def usable(address: str) -> str | None:
    """Why ``ray.init(address=address)`` would not connect, or None: ``probe`` of the address
    it dials (``bootstrap_address``), then ``check_cluster``; ``local`` is always usable."""
    try:
        target = bootstrap_address(address)
    except ConnectionError:
        return "no running Ray cluster was found on this machine"
    if target is None:
        return None
    why = probe(target)
    if why is not None:
        return why if target == address else f"{target}: {why}"
    return check_cluster(address)


def bootstrap_address(address: str) -> str | None:
    """The address ``ray.init(address=address)`` dials: ``address`` itself, or for ``auto`` what
    Ray's own lookup finds (``ray._private.services.get_ray_address_from_environment``:
    ``RAY_ADDRESS``, then the latest cluster started on this machine, read from
    ``/tmp/ray/ray_current_cluster``, which outlives a killed cluster); None for ``local`` (a new
    cluster) or when the lookup is unavailable (another Ray). Raises ``ConnectionError`` when
    ``auto`` finds no cluster."""
    if address == "local":
        return None
    if address != "auto":
        return address
    try:
        from ray._private.services import get_ray_address_from_environment
    except ImportError:
        return None
    try:
        return str(get_ray_address_from_environment(address, None))
    except ConnectionError:
        raise
    except Exception:  # noqa: BLE001 - another Ray's lookup: ray.init judges
        return None


def probe(address: str, timeout_s: float = 5.0) -> str | None:
    """Why no TCP connection opens to ``address`` (``[ray://]host:port``; a ``ray://`` address
    without a port: ``RAY_CLIENT_PORT``) within ``timeout_s`` seconds; None when one opens, or
    when ``address`` names no port to try (``check_cluster`` judges it)."""
    import socket

    parts = re.fullmatch(r"(?:[a-z]+://)?(\[[^\]]*\]|[^:/\[\]]*)(?::([^/]*))?/?", address)
    if parts is None:
        return None
    host, port, default = parts.group(1), parts.group(2), ""
    if port is None and address.startswith("ray://"):
        port, default = str(RAY_CLIENT_PORT), f" at port {RAY_CLIENT_PORT}, Ray Client's default"
    if not host:
        return "the address names no host"
    if port is None or not port.isdigit():
        return None
    if not 0 < int(port) < 65536:
        return f"port {port} is out of range"
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except socket.timeout:
        return f"no answer within {timeout_s:g} s{default}"
    except OSError as exc:  # refused, unknown host, unreachable network
        return ("nothing answers there" if isinstance(exc, ConnectionRefusedError) else one_line(exc, 120)) + default
    return None


def check_cluster(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> str | None:
    """Why ``ray.init(address=address)`` fails, tried in a child process (this interpreter, the
    same environment) that is killed after ``timeout_s`` seconds; None when it connected. The
    child's output (Ray's log lines) is kept out of this process's."""
    try:
        done = subprocess.run([sys.executable, "-c", _CHECK, address], capture_output=True, text=True,
                              timeout=timeout_s, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"no Ray cluster answered within {timeout_s:g} s"
    if done.returncode == 0:
        return None
    lines = done.stdout.strip().splitlines()
    try:
        return shorten(str(json.loads(lines[-1])), 160)
    except (IndexError, ValueError):
        tail = done.stderr.strip().splitlines()
        return shorten(tail[-1] if tail else f"exit code {done.returncode}", 160)


__all__ = ["CONNECT_TIMEOUT_S", "bootstrap_address", "check_cluster", "connect", "probe", "usable"]
