"""Gap-respecting smoothing and velocities.

Both functions fit straight lines by least squares to the readings of a time
window (a Savitzky–Golay filter of order 1 generalised to irregular sampling): the
line's value is the smoothed displacement and its slope the velocity. Windows are
clipped to their segment, so nothing is ever interpolated across a gap.

- :func:`local_linear` slides a window of ``± half_width_s`` over every reading;
  neighbouring outputs share readings, so they are correlated.
- :func:`block_fits` cuts the series into consecutive, non-overlapping blocks
  counted back from the newest reading; block velocities share no reading, so with
  white noise they are independent, which the trend test needs.

Sums are accumulated in days relative to a reference time, which keeps the
cumulative sums well conditioned for 30-day windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from analytics._arrays import DAY_S, FloatArray, IntArray
from analytics.segments import segment_bounds


@dataclass(frozen=True, slots=True)
class Smoothed:
    """value: (n,) smoothed series (unit of x); velocity_per_day: (n,) unit of x per day;
    velocity_se_per_day: (n,) its white-noise standard error; NaN where the window had
    fewer than 3 readings."""

    value: FloatArray
    velocity_per_day: FloatArray
    velocity_se_per_day: FloatArray


def local_linear(
    t_s: FloatArray, x: FloatArray, seg: IntArray, *, half_width_s: float, sigma: float, trailing: bool = False
) -> Smoothed:
    """Moving least-squares line through the readings within ``half_width_s`` of each reading.

    t_s: (n,) increasing times, s; x: (n,) finite values; seg: (n,) segment ids.
    With ``trailing`` the window is ``(t - 2·half_width_s, t]``: causal, as a live
    monitor sees it. O(n) through cumulative sums.
    """
    n = x.size
    if n == 0:
        e = np.zeros(0)
        return Smoothed(e, e, e)
    td = (t_s - t_s[-1]) / DAY_S
    zero = np.zeros(1)
    c1 = np.concatenate((zero, np.cumsum(np.ones(n))))
    ct = np.concatenate((zero, np.cumsum(td)))
    ctt = np.concatenate((zero, np.cumsum(td * td)))
    cx = np.concatenate((zero, np.cumsum(x)))
    ctx = np.concatenate((zero, np.cumsum(td * x)))
    if trailing:
        lo = np.searchsorted(t_s, t_s - 2.0 * half_width_s, side="right")
        hi = np.arange(1, n + 1)
    else:
        lo = np.searchsorted(t_s, t_s - half_width_s, side="left")
        hi = np.searchsorted(t_s, t_s + half_width_s, side="right")
    starts, stops = segment_bounds(seg)
    lo = np.maximum(lo, starts[seg])
    hi = np.minimum(hi, stops[seg])
    value, slope, se = _line_from_sums(
        c1[hi] - c1[lo], ct[hi] - ct[lo], ctt[hi] - ctt[lo], cx[hi] - cx[lo], ctx[hi] - ctx[lo], td, sigma
    )
    return Smoothed(value, slope, se)


@dataclass(frozen=True, slots=True)
class Blocks:
    """Straight-line fits to consecutive blocks; every array is (m,), oldest block first.

    t_mid_s: mean time of the block's readings, epoch s; t_first_s / t_last_s: its first
    and last reading; n: readings used; value: fitted value at t_mid_s (unit of x);
    velocity_per_day / velocity_se_per_day: slope and its white-noise standard error.
    Blocks with fewer than ``min_count`` readings are dropped.
    """

    t_mid_s: FloatArray
    t_first_s: FloatArray
    t_last_s: FloatArray
    n: IntArray
    value: FloatArray
    velocity_per_day: FloatArray
    velocity_se_per_day: FloatArray

    def __len__(self) -> int:
        return int(self.t_mid_s.size)


def block_fits(
    t_s: FloatArray,
    x: FloatArray,
    seg: IntArray,
    *,
    block_s: float,
    sigma: float,
    min_count: int = 4,
    min_span_fraction: float = 0.5,
    end_s: float | None = None,
) -> Blocks:
    """Fit a line to each block of ``block_s`` seconds, counted back from the newest reading.

    t_s: (n,) increasing times, s; x: (n,) finite values; seg: (n,) segment ids.
    A block also ends at a gap. A block whose readings span less than
    ``min_span_fraction`` of ``block_s`` gives no velocity worth having and is dropped.
    end_s: where the newest block ends (default: the newest reading).
    """
    if x.size == 0:
        return _empty_blocks()
    # One implementation: the stacked one (analytics._stacked), on a single row.
    from analytics._stacked import block_fits_rows

    return block_fits_rows(
        t_s,
        x[None, :],
        seg,
        block_s=block_s,
        sigma=np.array([sigma], dtype=np.float64),
        min_count=min_count,
        min_span_fraction=min_span_fraction,
        end_s=end_s,
    ).row(0)


def _line_from_sums(
    s1: FloatArray, st: FloatArray, stt: FloatArray, sx: FloatArray, stx: FloatArray, at: FloatArray, sigma: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Least-squares line from window sums; value at ``at`` (days), slope per day, slope SE."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_t = st / s1
        mean_x = sx / s1
        sxx_t = stt - st * mean_t
        slope = (stx - st * mean_x) / sxx_t
        ok = (s1 >= 3) & (sxx_t > 1e-12)
        slope = np.where(ok, slope, np.nan)
        value = np.where(s1 >= 1, mean_x + np.where(ok, slope, 0.0) * (at - mean_t), np.nan)
        se = np.where(ok, sigma / np.sqrt(sxx_t), np.nan)
    return value, slope, se


def _empty_blocks() -> Blocks:
    e = np.zeros(0)
    return Blocks(e, e, e, np.zeros(0, dtype=np.int64), e, e, e)


def bin_means(
    t_s: FloatArray,
    x: FloatArray,
    seg: IntArray,
    *,
    bin_s: float,
    coarse_bin_s: float | None = None,
    fine_span_s: float = float("inf"),
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(t_mean_s, x_mean, count)``, each (k,): means over consecutive bins counted back
    from the newest reading, oldest first; a bin also ends at a gap.

    t_s, x, seg: (n,) increasing times (s), finite values, segment ids. Bins are
    ``bin_s`` long over the newest ``fine_span_s`` and ``coarse_bin_s`` before that:
    the recent past, where acceleration shows, keeps its detail.
    """
    n = x.size
    if n == 0:
        e = np.zeros(0)
        return e, e, e
    age = t_s[-1] - t_s
    bin_no = np.floor(age / bin_s).astype(np.int64)
    if coarse_bin_s is not None and np.isfinite(fine_span_s):
        n_fine = int(np.ceil(fine_span_s / bin_s))
        edge = n_fine * bin_s
        coarse_no = n_fine + np.floor((age - edge) / coarse_bin_s).astype(np.int64)
        bin_no = np.where(age >= edge, coarse_no, bin_no)
    change = np.empty(n, dtype=np.bool_)
    change[0] = True
    change[1:] = (bin_no[1:] != bin_no[:-1]) | (seg[1:] != seg[:-1])
    first = np.flatnonzero(change)
    cnt = np.diff(np.append(first, n)).astype(np.float64)
    return np.add.reduceat(t_s, first) / cnt, np.add.reduceat(x, first) / cnt, cnt


@dataclass(frozen=True, slots=True)
class TrailingQuadratic:
    """Least-squares parabola through the newest readings of the newest segment.

    velocity_per_day: slope at the newest reading; accel_per_day2: second derivative
    (unit of x per day²) with its white-noise standard error; n: readings used.
    """

    velocity_per_day: float
    accel_per_day2: float
    accel_se_per_day2: float
    n: int


def _newest_slice(t_s: FloatArray, seg: IntArray, window_s: float) -> int:
    """Index of the first reading in ``(t_newest − window_s, t_newest]``, in the newest segment."""
    lo = int(np.searchsorted(t_s, t_s[-1] - window_s, side="right"))
    return max(lo, int(np.searchsorted(seg, seg[-1], side="left")))


@dataclass(frozen=True, slots=True)
class TrailingLine:
    """Least-squares line through the readings of the trailing window (newest segment only).

    value: fitted value at the newest reading; velocity_per_day and its white-noise
    standard error; n: readings used. NaN when fewer than 3 readings.
    """

    value: float
    velocity_per_day: float
    velocity_se_per_day: float
    n: int


def trailing_line(t_s: FloatArray, x: FloatArray, seg: IntArray, *, window_s: float, sigma: float) -> TrailingLine:
    """Fit a line to the readings in ``(t_newest − window_s, t_newest]`` of the newest segment.

    t_s, x, seg: (n,) increasing times (s), finite values, segment ids. The causal
    counterpart of :func:`local_linear` at the newest reading, without the O(n) pass.
    """
    nan = float("nan")
    if t_s.size == 0:
        return TrailingLine(nan, nan, nan, 0)
    lo = _newest_slice(t_s, seg, window_s)
    tau = (t_s[lo:] - t_s[-1]) / DAY_S
    xx = x[lo:]
    n = int(tau.size)
    if n < 3:
        return TrailingLine(float(xx[-1]), nan, nan, n)
    tm = float(tau.mean())
    xm = float(xx.mean())
    dt = tau - tm
    stt = float(np.dot(dt, dt))
    if stt <= 1e-12:
        return TrailingLine(xm, nan, nan, n)
    slope = float(np.dot(dt, xx - xm)) / stt
    return TrailingLine(xm - slope * tm, slope, sigma / math.sqrt(stt), n)


def trailing_quadratic(
    t_s: FloatArray, x: FloatArray, seg: IntArray, *, window_s: float, sigma: float
) -> TrailingQuadratic:
    """Fit ``x = c + v·τ + a·τ²/2`` (τ in days before the newest reading) over ``window_s``.

    t_s, x, seg: (n,) increasing times (s), finite values, segment ids. Only the
    newest segment is used: a parabola across a gap would invent the missing part.
    Fewer than 6 readings, or readings spanning under a quarter of the window: NaN.
    """
    # One implementation: the stacked one (analytics._stacked), on a single row.
    from analytics._stacked import quadratic_row, trailing_quadratics

    return quadratic_row(trailing_quadratics(t_s, x[None, :], seg, window_s=window_s), 0, sigma, 1)
