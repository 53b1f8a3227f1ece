"""Mann–Kendall trend test and Theil–Sen slope, vectorised.

``S = Σ_{i<j} sign(x_j − x_i)`` for a series in time order. Two exact ways to
count it:

- :func:`_s_pairwise`: all pairs at once, O(n²) memory-light comparisons; fastest
  for the short series the detector tests (block velocities, n ≲ 200);
- :func:`_s_merge`: bottom-up merge counting in O(n log n) with one vectorised
  step per level (log₂ n levels), for long series.

Both handle ties; the variance uses the tie correction of Kendall (1975).

The ``*_rows`` functions (and :func:`mann_kendall_stats`) do the same for every row of
a (k, n) stack at once — the detector tests the block velocities of all the rows of
one schedule together; the one-series functions are them on a single row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.special import ndtr

from analytics._arrays import BoolArray, FloatArray, IntArray
from analytics.noise import row_median

PAIRWISE_MAX_N = 256


@dataclass(frozen=True, slots=True)
class MannKendall:
    """s: Kendall's S; var_s: its variance under no trend (tie-corrected);
    z: continuity-corrected normal score; p_increasing: one-sided p-value of an
    upward trend; tau: Kendall's tau-a; n: series length."""

    s: int
    var_s: float
    z: float
    p_increasing: float
    tau: float
    n: int


def mann_kendall(x: FloatArray) -> MannKendall:
    """Mann–Kendall test of ``x`` (n,), finite, in time order."""
    return mann_kendall_rows(x[None, :])[0]


def mann_kendall_rows(x: FloatArray) -> list[MannKendall]:
    """:func:`mann_kendall` of each row of ``x`` (k, n), finite, in time order."""
    s, var_s, z, p, tau = mann_kendall_stats(x)
    n = x.shape[1]
    return [
        MannKendall(*row, n)
        for row in zip(s.tolist(), var_s.tolist(), z.tolist(), p.tolist(), tau.tolist(), strict=True)
    ]


def mann_kendall_stats(x: FloatArray) -> tuple[IntArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """The fields of :func:`mann_kendall_rows` as arrays, each (k,): ``(s, var_s, z, p_increasing, tau)``."""
    k, n = x.shape
    if n < 3:
        return np.zeros(k, dtype=np.int64), np.zeros(k), np.zeros(k), np.ones(k), np.zeros(k)
    if n <= PAIRWISE_MAX_N:
        iu, ju = _upper(n)
        s: IntArray = np.sign(x[:, ju] - x[:, iu]).sum(axis=1).astype(np.int64)
    else:
        s = np.array([_s_merge(row) for row in x], dtype=np.int64)
    # Without ties (the rule for measured velocities) the variance is the same for every row.
    xs = np.sort(x, axis=1)
    var_s = np.full(k, n * (n - 1) * (2 * n + 5) / 18.0)
    for i in np.flatnonzero((xs[:, 1:] == xs[:, :-1]).any(axis=1)):
        var_s[i] = _var_s(x[i])
    sf = s.astype(np.float64)
    flat = ~(var_s > 0)
    if flat.any():
        var_s[flat] = 1.0  # a placeholder: these rows get the no-trend result below
    z = np.where(s != 0, (sf - np.sign(sf)) / np.sqrt(var_s), 0.0)
    p = ndtr(-z)
    tau = 2.0 * sf / (n * (n - 1))
    if flat.any():
        var_s[flat] = z[flat] = tau[flat] = 0.0
        p[flat] = 1.0
    return s, var_s, z, p, tau


def kendall_s(x: FloatArray) -> int:
    """Kendall's S of ``x`` (n,) against its order: concordant minus discordant pairs."""
    if x.size <= PAIRWISE_MAX_N:
        return _s_pairwise(x)
    return _s_merge(x)


def _s_pairwise(x: FloatArray) -> int:
    n = x.size
    iu, ju = _upper(n)
    d = x[ju] - x[iu]
    return int(np.count_nonzero(d > 0)) - int(np.count_nonzero(d < 0))


@lru_cache(maxsize=64)
def _upper(n: int) -> tuple[IntArray, IntArray]:
    i, j = np.triu_indices(n, 1)
    return i.astype(np.int64), j.astype(np.int64)


def _s_merge(x: FloatArray) -> int:
    """O(n log n) S by bottom-up merging of sorted runs.

    At each level, adjacent blocks (left earlier in time, right later) are already
    sorted; for every right element ``searchsorted`` counts the left elements below
    and above it. Block keys are offset by ``pair · n`` so one flat ``searchsorted``
    serves every block pair of the level.
    """
    n = x.size
    ranks = _dense_ranks(x)
    size = 1 << max(1, (n - 1).bit_length())
    pad = size - n
    # Padding sits after the data in time and is skipped as a right element; as a left
    # element it only ever faces other padding.
    keys = np.concatenate((ranks, np.full(pad, n + 1, dtype=np.int64)))
    real = np.concatenate((np.ones(n, dtype=np.bool_), np.zeros(pad, dtype=np.bool_)))
    stride = n + 2
    s_total = 0
    w = 1
    while w < size:
        blocks = keys.reshape(-1, 2 * w)
        left = blocks[:, :w]
        right = blocks[:, w:]
        pair = np.arange(blocks.shape[0], dtype=np.int64)[:, None] * stride
        lflat = (left + pair).ravel()
        rflat = (right + pair).ravel()
        below = np.searchsorted(lflat, rflat, side="left") - (pair // stride * w).repeat(w, axis=1).ravel()
        not_above = np.searchsorted(lflat, rflat, side="right") - (pair // stride * w).repeat(w, axis=1).ravel()
        above = w - not_above
        mask = real.reshape(-1, 2 * w)[:, w:].ravel()
        s_total += int(np.sum((below - above)[mask]))
        keys = np.sort(blocks, axis=1, kind="stable").ravel()
        real = np.sort(real.reshape(-1, 2 * w), axis=1)[:, ::-1].ravel()
        w *= 2
    return s_total


def _dense_ranks(x: FloatArray) -> IntArray:
    order = np.argsort(x, kind="stable")
    xs = x[order]
    step = np.concatenate((np.zeros(1, dtype=np.int64), (np.diff(xs) != 0).astype(np.int64)))
    ranks = np.empty(x.size, dtype=np.int64)
    ranks[order] = np.cumsum(step)
    return ranks


def _var_s(x: FloatArray) -> float:
    n = x.size
    var = n * (n - 1) * (2 * n + 5) / 18.0
    xs = np.sort(x)
    tie = np.diff(xs) == 0
    if not tie.any():
        return var
    # lengths of runs of equal values
    edges = np.flatnonzero(np.diff(np.concatenate(([False], tie, [False])).astype(np.int8)))
    t = (edges[1::2] - edges[::2] + 1).astype(np.float64)
    return var - float(np.sum(t * (t - 1) * (2 * t + 5))) / 18.0


def theil_sen(t: FloatArray, x: FloatArray) -> float:
    """Median of pairwise slopes of ``x`` (n,) against ``t`` (n,) increasing; NaN if n < 2."""
    return float(theil_sen_rows(t, x[None, :])[0])


def theil_sen_rows(t: FloatArray, x: FloatArray) -> FloatArray:
    """(k,): :func:`theil_sen` of each row of ``x`` (k, n) against ``t`` (n,)."""
    k, n = x.shape
    if n < 2:
        return np.full(k, math.nan)
    iu, ju = _upper(n)
    slopes = (x[:, ju] - x[:, iu]) / (t[ju] - t[iu])
    if not np.isfinite(slopes.sum(axis=1)).all():
        out: FloatArray = np.median(slopes, axis=1)
        return out
    return row_median(slopes)


def prewhitened(t: FloatArray, x: FloatArray, *, beta: float | None = None) -> tuple[FloatArray, float]:
    """Trend-free prewhitening (Yue et al. 2002): ``(series, r1)``.

    Remove the Theil–Sen trend (``beta`` if the caller has it), estimate the lag-1
    autocorrelation r1 of the rest; when it is significant and positive (1.96/√n),
    remove the AR(1) part and add the trend back, so autocorrelated noise does not
    pass for a trend. Returns (n − 1,) values then, else ``x`` itself.
    """
    if x.size < 6:
        return x, 0.0
    if beta is None:
        beta = theil_sen(t, x)
    y, r1, whitened = prewhitened_rows(t, x[None, :], np.array([beta]))
    return (y[0] if whitened[0] else x), float(r1[0])


def prewhitened_rows(t: FloatArray, x: FloatArray, beta: FloatArray) -> tuple[FloatArray, FloatArray, BoolArray]:
    """:func:`prewhitened` of each row of ``x`` (k, n), with its Theil–Sen slope ``beta`` (k,):
    ``(y, r1, whitened)``; row i of the result is ``y[i]`` (n − 1,) where ``whitened[i]``, else ``x[i]``."""
    k, n = x.shape
    if n < 6:
        return x[:, 1:], np.zeros(k), np.zeros(k, dtype=np.bool_)
    # C order: the row means and dot products then sum each row as for one series
    resid = np.ascontiguousarray(x) - beta[:, None] * t
    resid = resid - resid.mean(axis=1)[:, None]
    # np.vecdot sums each row as np.dot does
    denom = np.vecdot(resid, resid)
    with np.errstate(invalid="ignore", divide="ignore"):
        r1: FloatArray = np.where(denom > 0, np.vecdot(resid[:, 1:], resid[:, :-1]) / denom, 0.0)
    whitened: BoolArray = ~(r1 <= 1.96 / math.sqrt(n))
    y = resid[:, 1:] - r1[:, None] * resid[:, :-1] + beta[:, None] * t[1:]
    return y, r1, whitened
