"""Row-wise versions of the detector's array stages, for k series on one time axis.

Each function does, for every row of ``x`` (k, n), what its 1-D counterpart does for
one series — the same operations in the same order, so the results are the same
numbers (``tests/analytics/test_equivalence.py`` holds them to that) — but with one
numpy call per stage for all k rows. A GNSS sensor's horizontal and vertical
components share their times, and so do the sensors of a site read on one schedule
(:func:`analytics.evaluate.evaluate_many`): numpy's fixed cost per call, not the
arithmetic, is what a 2,000-sample evaluation spends its time on.

Reductions stay row-wise and bit-identical to the 1-D code: ``reduceat``, ``sum`` and
``mean`` along the last axis of a C-contiguous array sum each row as the 1-D call
does (on a column selection, which numpy lays out column-major, they do not: such
stacks are made C-contiguous first); ``np.vecdot`` calls the same BLAS dot per row
as ``np.dot`` (a matrix-vector product sums in another order); a median depends on
the values only (:func:`analytics.noise.row_median` finds the same two middle values
with one partition). Large stacks keep their k × n temporaries few, or a few rows at
a time (``_CHUNK_ROWS``): a fresh k × n array costs more in page faults than its
arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from analytics._arrays import DAY_S, BoolArray, FloatArray, IntArray
from analytics.despike import row_nanmedian
from analytics.noise import _MAD_TO_SIGMA, row_median
from analytics.segments import segment_bounds
from analytics.smoothing import Blocks, TrailingLine, TrailingQuadratic, _newest_slice

#: Rows per temporary in the stages that need one (about 0.5 MB for 2,000 readings).
_CHUNK_ROWS = 32


def interpolation_residuals_rows(t_s: FloatArray, x: FloatArray, seg: IntArray) -> FloatArray:
    """(k, n): :func:`analytics.noise.interpolation_residuals` of each row of ``x`` (k, n)."""
    k, n = x.shape
    out = np.full((k, n), np.nan)
    if n < 3:
        return out
    dt_prev = t_s[1:-1] - t_s[:-2]
    dt_next = t_s[2:] - t_s[1:-1]
    span = dt_prev + dt_next
    w_prev = dt_next / span
    w_next = dt_prev / span
    # The same operations as the 1-D function (x₁ − (w₋·x₀ + w₊·x₂), over the norm),
    # written into ``out``; the one temporary is a few rows at a time, as a fresh k × n
    # array costs more in page faults than its arithmetic.
    r = out[:, 1:-1]
    np.multiply(w_prev, x[:, :-2], out=r)
    for lo in range(0, k, _CHUNK_ROWS):
        r[lo : lo + _CHUNK_ROWS] += w_next * x[lo : lo + _CHUNK_ROWS, 2:]
    np.subtract(x[:, 1:-1], r, out=r)
    r /= np.sqrt(1.0 + w_prev * w_prev + w_next * w_next)
    inside = (seg[:-2] == seg[1:-1]) & (seg[2:] == seg[1:-1])
    if not inside.all():
        r[:, ~inside] = np.nan
    return out


def white_noise_sigma_rows(residuals: FloatArray) -> FloatArray:
    """(k,): :func:`analytics.noise.white_noise_sigma` of each row. The NaN pattern of
    interpolation residuals depends on the time axis only, so it is shared by the rows."""
    k = residuals.shape[0]
    if k == 0:
        return np.zeros(0)
    ok = np.isfinite(residuals[0])
    r = np.compress(ok, residuals, axis=1)
    np.abs(r, out=r)
    # every row finite where the first is (a sum of absolute values is finite only if
    # they all are; an overflow just takes the slow path) and nowhere else
    shared = bool(np.isfinite(r.sum(axis=1)).all()) and not np.isfinite(residuals[:, ~ok]).any()
    if not shared:
        from analytics.noise import white_noise_sigma

        return np.array([white_noise_sigma(row) for row in residuals])
    if r.shape[1] < 5:
        return np.full(k, np.nan)
    out: FloatArray = _MAD_TO_SIGMA * row_median(r)
    return out


def hampel_rows(
    t_s: FloatArray,
    x: FloatArray,
    seg: IntArray,
    residuals: FloatArray,
    *,
    sigma: FloatArray,
    half_window: int = 3,
    n_sigma: float = 5.0,
) -> BoolArray:
    """(k, n) spike flags: :func:`analytics.despike.hampel` on each row (sigma: (k,), finite)."""
    k, n = x.shape
    is_spike = np.zeros((k, n), dtype=np.bool_)
    if n < 3:
        return is_spike
    starts, stops = segment_bounds(seg)
    limit = (0.5 * n_sigma * sigma)[:, None]
    # |r| > limit, without a k × n temporary of |r|
    screen = residuals > limit
    screen |= residuals < -limit
    screen[:, starts] = True
    screen[:, stops - 1] = True
    flat = np.flatnonzero(screen)
    rows, cand = flat // n, flat % n
    h = half_window
    offs = np.concatenate((np.arange(-h, 0), np.arange(1, h + 1)))
    idx = cand[:, None] + offs[None, :]
    lo = starts[seg[cand]][:, None]
    hi = stops[seg[cand]][:, None]
    inside = (idx >= lo) & (idx < hi)
    idx_c = np.clip(idx, 0, n - 1)
    xf = np.ascontiguousarray(x).ravel()
    nb_x = np.where(inside, xf.take(rows[:, None] * n + idx_c), np.nan)
    nb_t = t_s[idx_c] - t_s[cand][:, None]
    dx = np.diff(nb_x, axis=1)
    dt = np.diff(nb_t, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        slopes = dx / dt
    slope = row_nanmedian(slopes)
    slope = np.where(np.isfinite(slope), slope, 0.0)
    detr = nb_x - slope[:, None] * nb_t
    enough = np.sum(inside, axis=1) >= 2
    med = row_nanmedian(detr)
    mad = row_nanmedian(np.abs(detr - med[:, None]))
    scale = np.maximum(1.4826 * mad, sigma[rows])
    dev = np.abs(xf.take(flat) - med) / scale
    with np.errstate(invalid="ignore"):
        hit = enough & (dev > n_sigma)
    is_spike[rows[hit], cand[hit]] = True
    return is_spike


@dataclass(frozen=True, slots=True)
class BlockRows:
    """:class:`analytics.smoothing.Blocks` for k rows on one time axis: the block times
    (m,) are shared, ``value`` / ``velocity_per_day`` / ``velocity_se_per_day`` are (k, m)."""

    t_mid_s: FloatArray
    t_first_s: FloatArray
    t_last_s: FloatArray
    n: IntArray
    value: FloatArray
    velocity_per_day: FloatArray
    velocity_se_per_day: FloatArray

    def row(self, i: int) -> Blocks:
        return Blocks(
            self.t_mid_s,
            self.t_first_s,
            self.t_last_s,
            self.n,
            self.value[i],
            self.velocity_per_day[i],
            self.velocity_se_per_day[i],
        )


def block_fits_rows(
    t_s: FloatArray,
    x: FloatArray,
    seg: IntArray,
    *,
    block_s: float,
    sigma: FloatArray,
    min_count: int = 4,
    min_span_fraction: float = 0.5,
    end_s: float | None = None,
) -> BlockRows:
    """:func:`analytics.smoothing.block_fits` of each row of ``x`` (k, n), n ≥ 1; sigma: (k,)."""
    n = x.shape[1]
    t_end = t_s[-1]
    bin_no = np.floor(((t_end if end_s is None else end_s) - t_s) / block_s).astype(np.int64)
    change = np.empty(n, dtype=np.bool_)
    change[0] = True
    change[1:] = (bin_no[1:] != bin_no[:-1]) | (seg[1:] != seg[:-1])
    first = np.flatnonzero(change)
    td = (t_s - t_end) / DAY_S
    cnt = np.diff(np.append(first, n))
    st = np.add.reduceat(td, first)
    stt = np.add.reduceat(td * td, first)
    sx = np.add.reduceat(x, first, axis=1)
    # Σ τ·x of each block, a few rows at a time (no k × n temporary)
    if x.shape[0] <= _CHUNK_ROWS:
        stx = np.add.reduceat(td * x, first, axis=1)
    else:
        stx = np.empty((x.shape[0], first.size))
        for lo in range(0, x.shape[0], _CHUNK_ROWS):
            stx[lo : lo + _CHUNK_ROWS] = np.add.reduceat(td * x[lo : lo + _CHUNK_ROWS], first, axis=1)
    last = np.append(first[1:], n) - 1
    keep: BoolArray = (cnt >= min_count) & (t_s[last] - t_s[first] >= min_span_fraction * block_s)
    # The line of each kept block, as smoothing._line_from_sums computes it, in place (k × m
    # temporaries cost page faults) and for the kept blocks only (each block on its own).
    cnt_k, st_k, stt_k = cnt[keep], st[keep], stt[keep]
    mean_t = st_k / cnt_k
    s1 = cnt_k.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_x = np.compress(keep, sx, axis=1)
        mean_x /= s1
        sxx_t = stt_k - st_k * mean_t
        slope = np.compress(keep, stx, axis=1)
        slope -= st_k * mean_x
        slope /= sxx_t
        ok = (s1 >= 3) & (sxx_t > 1e-12)
        bad = ~ok
        some_bad = bool(bad.any())
        if some_bad:
            slope[:, bad] = np.nan
        # (a block has at least one reading, so the value is never the NaN of an empty one)
        value = np.where(ok, slope, 0.0)
        value *= mean_t - mean_t
        value += mean_x
        se = np.divide.outer(sigma, np.sqrt(sxx_t))
        if some_bad:
            se[:, bad] = np.nan
    return BlockRows(
        t_mid_s=t_end + mean_t * DAY_S,
        t_first_s=t_s[first][keep],
        t_last_s=t_s[last][keep],
        n=cnt_k,
        value=value,
        velocity_per_day=slope,
        velocity_se_per_day=se,
    )


def velocity_noise_rows(v: FloatArray, se: FloatArray) -> FloatArray:
    """(k,): :func:`analytics.noise.velocity_noise` of each row of ``v``, ``se`` (k, m)."""
    k = v.shape[0]
    ok = np.isfinite(v) & np.isfinite(se) & (se > 0)
    out = np.ones(k)
    if k == 0:
        return out
    if not (ok == ok[0]).all():
        # rows that disagree on which blocks are usable: one at a time
        from analytics.noise import velocity_noise

        return np.array([velocity_noise(v[i], se[i]) for i in range(k)])
    vv = np.compress(ok[0], v, axis=1)
    ss = np.compress(ok[0], se, axis=1)
    if vv.shape[1] < 5:
        return out
    # |Δv| / sqrt(se₂² + se₁²), in place
    z = np.diff(vv, axis=1)
    q = np.square(ss[:, 1:])
    q += np.square(ss[:, :-1])
    np.sqrt(q, out=q)
    z /= q
    np.abs(z, out=z)
    ratio = _MAD_TO_SIGMA * (row_median(z) if np.isfinite(z.sum(axis=1)).all() else np.median(z, axis=1))
    # max(1.0, ratio) of each row, as the 1-D function takes it
    return np.where(ratio > 1.0, ratio, 1.0)


def trailing_lines(
    t_s: FloatArray, x: FloatArray, seg: IntArray, *, window_s: float, sigma: FloatArray
) -> list[TrailingLine]:
    """:func:`analytics.smoothing.trailing_line` of each row of ``x`` (k, n); sigma: (k,)."""
    nan = float("nan")
    k = x.shape[0]
    if t_s.size == 0:
        return [TrailingLine(nan, nan, nan, 0) for _ in range(k)]
    lo = _newest_slice(t_s, seg, window_s)
    tau = (t_s[lo:] - t_s[-1]) / DAY_S
    xx = x[:, lo:]
    n = int(tau.size)
    if n < 3:
        return [TrailingLine(float(xx[i, -1]), nan, nan, n) for i in range(k)]
    tm = float(tau.mean())
    xm = xx.mean(axis=1)
    dt = tau - tm
    stt = float(np.dot(dt, dt))
    if stt <= 1e-12:
        return [TrailingLine(float(xm[i]), nan, nan, n) for i in range(k)]
    # np.vecdot sums each row as np.dot does
    slope = np.vecdot(dt, xx - xm[:, None]) / stt
    value = xm - slope * tm
    se = sigma / math.sqrt(stt)
    return [TrailingLine(vi, si, ei, n) for vi, si, ei in zip(value.tolist(), slope.tolist(), se.tolist(), strict=True)]


Quadratics = tuple[FloatArray, FloatArray, float, int] | int


def trailing_quadratics(t_s: FloatArray, x: FloatArray, seg: IntArray, *, window_s: float) -> Quadratics:
    """The parabola of :func:`analytics.smoothing.trailing_quadratic` for each row of ``x`` (k, n):
    ``(velocity (k,), accel (k,), sqrt(cov_aa), n)``; the caller scales the third by its σ.
    Only ``n`` where the 1-D function returns NaN (too few readings, too short a span, singular)."""
    if t_s.size == 0:
        return 0
    lo = _newest_slice(t_s, seg, window_s)
    tau = (t_s[lo:] - t_s[-1]) / DAY_S
    n = int(tau.size)
    if n < 6 or float(tau[0]) > -0.25 * window_s / DAY_S:
        return n
    q = 0.5 * tau * tau
    design = np.stack((np.ones(n), tau, q))
    gram = design @ design.T
    try:
        cov = np.linalg.inv(gram)
    except np.linalg.LinAlgError:
        return n
    k = x.shape[0]
    vel = np.empty(k)
    acc = np.empty(k)
    for i in range(k):
        coef = cov @ (design @ x[i, lo:])
        vel[i] = coef[1]
        acc[i] = coef[2]
    return vel, acc, math.sqrt(max(float(cov[2, 2]), 0.0)), n


def quadratic_row(fit: Quadratics, i: int, sigma: float, direction: int) -> TrailingQuadratic:
    """Row ``i`` of :func:`trailing_quadratics` as the 1-D function returns it for ``x * direction``
    (negating the data negates the fit exactly: rounding is symmetric)."""
    nan = float("nan")
    if isinstance(fit, int):
        return TrailingQuadratic(nan, nan, nan, fit)
    vel, acc, root, n = fit
    return TrailingQuadratic(float(vel[i]) * direction, float(acc[i]) * direction, sigma * root, n)
