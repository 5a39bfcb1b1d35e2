"""The comparison math of every parity check (torch-free, numpy only).

``s2s verify`` and the exporter's on-the-spot check (``s2s_export.export.parity``) both use it.

For one output, ``got`` (the bundle) against ``ref`` (PyTorch), element-wise in float64:

* ``abs`` = |got - ref|; equal values count 0 (equal infinities included), a NaN on one side
  only counts +inf;
* ``max_abs`` = max abs;
* ``max_rel`` = max abs / |ref| over the elements with |ref| > ``rel_floor`` (default: the
  output's ``atol``). The floor keeps the denominator away from zero: below it a relative
  error means nothing (a 1e-7 difference on a 1e-9 attention weight is "100 %") and the
  tolerance is governed by its ``atol`` term anyway (atol + rtol * |ref| < 2 atol there), so
  ``max_rel`` reads against ``rtol`` over the elements where ``rtol`` matters;
* ``p99_abs`` = the 99th percentile of abs over all elements, from a histogram (see
  ``ErrorHistogram``: 20 logarithmic bins per decade, the bin's upper edge, capped at max_abs),
  so it merges exactly over steps and batches and is at most ~12 % above the exact value;
* ``ok`` iff every element satisfies abs <= atol + rtol * |ref| (``numpy.allclose``).

Integer and boolean outputs must be equal (``max_rel`` is 0 when they are, inf otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

REL_FLOOR = None  # None: the output's atol
QUANTILE = 0.99
_LO, _HI, _PER_DECADE = -12, 4, 20  # histogram: 1e-12 .. 1e4, 20 bins per decade
_NBINS = (_HI - _LO) * _PER_DECADE


@dataclass
class ErrorHistogram:
    """Counts of absolute errors in logarithmic bins (mergeable; quantiles to one bin).

    Bin 0 holds exact zeros (and errors below 1e-12), the last bin +inf (and >= 1e4)."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(_NBINS + 2, dtype=np.int64))

    def add(self, abs_err: np.ndarray) -> None:
        x = np.asarray(abs_err, dtype=np.float64).ravel()
        with np.errstate(divide="ignore", invalid="ignore"):
            idx = np.floor((np.log10(x) - _LO) * _PER_DECADE) + 1
        idx = np.where(x < 10.0 ** _LO, 0, np.where(x >= 10.0 ** _HI, _NBINS + 1, idx))
        self.counts += np.bincount(idx.astype(np.int64), minlength=_NBINS + 2)

    def merge(self, other: "ErrorHistogram") -> None:
        self.counts += other.counts

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def quantile(self, q: float) -> float:
        """Upper edge of the bin holding the q-quantile (0.0 for zeros, inf for the last bin)."""
        n = self.total
        if n == 0:
            return 0.0
        k = int(np.searchsorted(np.cumsum(self.counts), q * n, side="left"))
        if k == 0:
            return 0.0
        if k >= _NBINS + 1:
            return float("inf")
        return float(10.0 ** (_LO + k / _PER_DECADE))


def abs_error(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|got - ref| in float64 (same shapes); equal values 0, NaN on one side +inf."""
    if ref.dtype.kind in "biu" and got.dtype.kind in "biu":
        return np.abs(got.astype(np.int64) - ref.astype(np.int64)).astype(np.float64)
    g, r = got.astype(np.float64), ref.astype(np.float64)
    with np.errstate(invalid="ignore"):  # inf - inf
        same = (g == r) | (np.isnan(g) & np.isnan(r))  # equal infinities count as equal
        return np.nan_to_num(np.where(same, 0.0, np.abs(g - r)), nan=np.inf)


def within(diff: np.ndarray, ref: np.ndarray, atol: float, rtol: float) -> np.ndarray:
    """Element-wise ``diff <= atol + rtol * |ref|`` (exact equality for integer/bool refs)."""
    if ref.dtype.kind in "biu":
        return diff == 0
    r = np.abs(ref.astype(np.float64))
    return diff <= atol + rtol * np.where(np.isfinite(r), r, 0.0)


def compare(got: np.ndarray, ref: np.ndarray, atol: float, rtol: float, rel_floor: float | None = REL_FLOOR,
            hist: ErrorHistogram | None = None) -> dict[str, Any]:
    """``{max_abs, max_rel, p99_abs, ok}`` of ``got`` against ``ref`` (see the module docstring);
    ``hist``: also add the errors to it. Shapes must match, else ``ok`` is False with a
    ``detail`` and infinite errors."""
    got, ref = np.asarray(got), np.asarray(ref)
    if got.shape != ref.shape:
        return {"max_abs": float("inf"), "max_rel": float("inf"), "p99_abs": float("inf"), "ok": False,
                "detail": f"shape {list(got.shape)} != {list(ref.shape)}"}
    diff = abs_error(got, ref)
    ok = bool(np.all(within(diff, ref, atol, rtol)))
    max_abs = float(diff.max(initial=0.0))
    if ref.dtype.kind in "biu":
        max_rel = 0.0 if max_abs == 0 else float("inf")
    else:
        r = np.abs(ref.astype(np.float64))
        big = r > (atol if rel_floor is None else rel_floor)
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.where(big & (diff > 0), diff / np.where(big, r, 1.0), 0.0)
        max_rel = float(rel.max(initial=0.0))
    h = ErrorHistogram()
    h.add(diff)
    if hist is not None:
        hist.merge(h)
    return {"max_abs": max_abs, "max_rel": max_rel, "p99_abs": min(h.quantile(QUANTILE), max_abs), "ok": ok}


def failing_rows(got: np.ndarray, ref: np.ndarray, atol: float, rtol: float) -> np.ndarray:
    """Indices of the rows (axis 0) with an element out of tolerance (all rows on a shape
    mismatch)."""
    got, ref = np.asarray(got), np.asarray(ref)
    if got.shape != ref.shape:
        return np.arange(max(len(ref), 1) if ref.ndim else 1)
    bad = ~within(abs_error(got, ref), ref, atol, rtol)
    return np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1)) if bad.ndim else np.flatnonzero([bad])


class Accumulator:
    """Figures of one output over several comparisons (steps, batches): maxima, the error
    histogram (for the quantile), ok, the number of compared elements."""

    def __init__(self) -> None:
        self.max_abs = 0.0
        self.max_rel = 0.0
        self.ok = True
        self.hist = ErrorHistogram()
        self.detail: str | None = None

    def add(self, result: dict[str, Any], hist: ErrorHistogram | None = None) -> None:
        self.max_abs = max(self.max_abs, result["max_abs"])
        self.max_rel = max(self.max_rel, result["max_rel"])
        self.ok = self.ok and result["ok"]
        if hist is not None:
            self.hist.merge(hist)
        if "detail" in result and self.detail is None:
            self.detail = result["detail"]

    def update(self, got: np.ndarray, ref: np.ndarray, atol: float, rtol: float,
               rel_floor: float | None = REL_FLOOR) -> dict[str, Any]:
        """Compare and accumulate; returns this comparison's figures."""
        h = ErrorHistogram()
        result = compare(got, ref, atol, rtol, rel_floor, hist=h)
        self.add(result, h)
        return result

    def figures(self) -> dict[str, Any]:
        out: dict[str, Any] = {"max_abs": self.max_abs, "max_rel": self.max_rel,
                               "p99_abs": min(self.hist.quantile(QUANTILE), self.max_abs), "ok": self.ok}
        if self.detail is not None:
            out["detail"] = self.detail
        return out


__all__ = ["Accumulator", "ErrorHistogram", "QUANTILE", "REL_FLOOR", "abs_error", "compare", "failing_rows",
           "within"]
