"""Thread counts: never more threads than the cores this process may use (torch-free).

``--threads 100000`` once made ONNX Runtime create 32,427 threads (16.8 GB) and stop answering
SIGTERM, and 256 threads on 2 cores ran 17x slower than 2: an intra-op pool larger than the
cores only oversubscribes them. ``check_threads`` caps a larger count to ``available_cores()``
with a ``RuntimeWarning`` before any session (and so any thread) is created.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings

from ..errors import UsageError


def _cgroup_cpus() -> int | None:
    """CPUs allowed by a cgroup v2 quota (``cpu.max``: ``"200000 100000"`` = 2), or None."""
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as f:
            quota, period = f.read().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(1, math.ceil(int(quota) / int(period)))
    except (ValueError, ZeroDivisionError):
        return None


def available_cores() -> int:
    """The CPU cores this process may run on: its affinity mask (``taskset``, container
    cpusets), further limited by a cgroup v2 CPU quota; at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = _cgroup_cpus()
    return max(1, min(cores, quota) if quota else cores)


def check_threads(value: object, name: str = "intra_op_threads") -> int | None:
    """``value`` as a thread count: None stays None (the default); anything but an integer
    (bool included) or a count below 1 raises ``UsageError``; a count above
    ``available_cores()`` is capped to it with a ``RuntimeWarning`` naming both."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UsageError(f"{name} must be an integer (got {value!r})", "pass a whole number of threads")
    count = int(value)
    if count < 1:
        raise UsageError(f"{name} must be >= 1 (got {count})", "pass a positive thread count (or leave it unset)")
    cores = available_cores()
    if count > cores:
        warnings.warn(f"{name} {count} is more than the {cores} CPU cores this process may use; using {cores}",
                      RuntimeWarning, stacklevel=3)
        return cores
    return count


__all__ = ["available_cores", "check_threads"]
