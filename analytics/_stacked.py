"""Row-wise versions of the detector's array stages, for k series on one time axis.

Each function does, for every row of ``x`` (k, n), what its 1-D counterpart does for
one series — the same operations in the same order, so the results are the same
numbers (``tests/analytics/test_equivalence.py`` holds them to that) — but with one
numpy call per stage for all k rows. A GNSS sensor's horizontal and vertical
components share their times, and so do the sensors of a site read on one schedule
(:func:`analytics.evaluate.evaluate_many`): numpy's fixed cost per call, not the
arithmetic, is what a 2,000-sample evaluation spends its time on.

Reductions stay row-wise and bit-identical to the 1-D code: ``reduceat``, ``median``
and ``mean`` along the last axis of a C-contiguous array sum each row as the 1-D
call does; dot products are left per row (a matrix-vector product sums in another order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from analytics._arrays import DAY_S, BoolArray, FloatArray, IntArray
from analytics.despike import row_nanmedian
from analytics.noise import _MAD_TO_SIGMA
from analytics.segments import segment_bounds
from analytics.smoothing import Blocks, TrailingLine, TrailingQuadratic, _newest_slice


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
    r = x[:, 1:-1] - (w_prev * x[:, :-2] + w_next * x[:, 2:])
    r /= np.sqrt(1.0 + w_prev * w_prev + w_next * w_next)
    inside = (seg[:-2] == seg[1:-1]) & (seg[2:] == seg[1:-1])
    out[:, 1:-1] = np.where(inside, r, np.nan)
    return out


def white_noise_sigma_rows(residuals: FloatArray) -> FloatArray:
    """(k,): :func:`analytics.noise.white_noise_sigma` of each row. The NaN pattern of
    interpolation residuals depends on the time axis only, so it is shared by the rows."""
    ok = np.isfinite(residuals)
    if ok.shape[0] == 0 or not (ok == ok[0]).all():
        from analytics.noise import white_noise_sigma

        return np.array([white_noise_sigma(r) for r in residuals])
    r = residuals[:, ok[0]]
    if r.shape[1] < 5:
        return np.full(residuals.shape[0], np.nan)
    out: FloatArray = _MAD_TO_SIGMA * np.median(np.abs(r), axis=1)
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
    screen = np.abs(residuals) > (0.5 * n_sigma * sigma)[:, None]
    screen[:, starts] = True
    screen[:, stops - 1] = True
    rows, cand = np.nonzero(screen)
    h = half_window
    offs = np.concatenate((np.arange(-h, 0), np.arange(1, h + 1)))
    idx = cand[:, None] + offs[None, :]
    lo = starts[seg[cand]][:, None]
    hi = stops[seg[cand]][:, None]
    inside = (idx >= lo) & (idx < hi)
    idx_c = np.clip(idx, 0, n - 1)
    nb_x = np.where(inside, x[rows[:, None], idx_c], np.nan)
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
    dev = np.abs(x[rows, cand] - med) / scale
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
    """:func:`analytics.smoothing.block_fits` of each row of ``x`` (k, n); sigma: (k,)."""
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
    stx = np.add.reduceat(td * x, first, axis=1)
    last = np.append(first[1:], n) - 1
    keep: BoolArray = (cnt >= min_count) & (t_s[last] - t_s[first] >= min_span_fraction * block_s)
    mean_t = st / cnt
    s1 = cnt.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_x = sx / s1
        sxx_t = stt - st * mean_t
        slope = (stx - st * mean_x) / sxx_t
        ok = (s1 >= 3) & (sxx_t > 1e-12)
        slope = np.where(ok, slope, np.nan)
        value = np.where(s1 >= 1, mean_x + np.where(ok, slope, 0.0) * (mean_t - mean_t), np.nan)
        se = np.where(ok, sigma[:, None] / np.sqrt(sxx_t), np.nan)
    return BlockRows(
        t_mid_s=(t_end + mean_t * DAY_S)[keep],
        t_first_s=t_s[first][keep],
        t_last_s=t_s[last][keep],
        n=cnt[keep],
        value=value[:, keep],
        velocity_per_day=slope[:, keep],
        velocity_se_per_day=se[:, keep],
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
    vv = v[:, ok[0]]
    ss = se[:, ok[0]]
    if vv.shape[1] < 5:
        return out
    z = np.diff(vv, axis=1) / np.sqrt(ss[:, 1:] ** 2 + ss[:, :-1] ** 2)
    ratio = _MAD_TO_SIGMA * np.median(np.abs(z), axis=1)
    return np.maximum(1.0, ratio)


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
    centred = xx - xm[:, None]
    out = []
    root = math.sqrt(stt)
    for i in range(k):
        slope = float(np.dot(dt, centred[i])) / stt
        out.append(TrailingLine(float(xm[i]) - slope * tm, slope, float(sigma[i]) / root, n))
    return out


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
