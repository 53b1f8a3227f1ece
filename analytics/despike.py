"""Hampel despiking that respects gaps and trends.

A reading is a spike when it lies more than ``n_sigma`` robust standard
deviations from the median of its neighbours (Hampel identifier). Two refinements
make it safe on a moving slope:

- the neighbours are detrended by their own median slope first, so that a fast but
  smooth movement, and the one-sided window at the newest reading, are not mistaken
  for spikes;
- windows never reach across a gap (another segment).

Only readings whose neighbour-interpolation residual is large, plus the ends of
segments, can be spikes; the full test runs on those candidates alone, which keeps
the cost linear in n. Spikes are flagged, not repaired: callers drop them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytics._arrays import BoolArray, FloatArray, IntArray


@dataclass(frozen=True, slots=True)
class Despiked:
    """is_spike: (n,) True where the reading is an outlier (more than ``n_sigma`` local
    robust scales from the detrended median of its neighbours)."""

    is_spike: BoolArray


def hampel(
    t_s: FloatArray,
    x: FloatArray,
    seg: IntArray,
    residuals: FloatArray,
    *,
    sigma: float,
    half_window: int = 3,
    n_sigma: float = 5.0,
) -> Despiked:
    """Flag spikes in ``x``.

    t_s, x, seg, residuals: (n,) times (s), finite values, segment ids and unit-scaled
    interpolation residuals (:func:`analytics.noise.interpolation_residuals`).
    sigma: the sensor's white-noise standard deviation (unit of x); the local scale
    never goes below it, so a quiet stretch does not turn ordinary noise into spikes.
    """
    if x.size < 3 or not np.isfinite(sigma):
        return Despiked(np.zeros(x.size, dtype=np.bool_))
    # One implementation: the stacked one (analytics._stacked), on a single row.
    from analytics._stacked import hampel_rows

    flags = hampel_rows(
        t_s, x[None, :], seg, residuals[None, :], sigma=np.array([sigma]), half_window=half_window, n_sigma=n_sigma
    )
    return Despiked(flags[0])


def row_nanmedian(a: FloatArray) -> FloatArray:
    """(m,) median of each row of ``a`` (m, w) ignoring NaN; NaN for an all-NaN row.

    Sorting puts NaN last, so the median sits at the middle of the finite count:
    no warnings and no per-row Python loop.
    """
    m = a.shape[0]
    if m == 0 or a.shape[1] == 0:
        return np.full(m, np.nan)
    s = np.sort(a, axis=1)
    w = a.shape[1]
    if np.isfinite(s[:, 0]).all() and np.isfinite(s[:, -1]).all():
        # all finite (sorting puts -inf first, inf and NaN last): every row has w values
        out_all: FloatArray = 0.5 * (s[:, (w - 1) // 2] + s[:, w // 2])
        return out_all
    count = np.sum(np.isfinite(a), axis=1)
    rows = np.arange(m)
    lo = np.clip((count - 1) // 2, 0, a.shape[1] - 1)
    hi = np.clip(count // 2, 0, a.shape[1] - 1)
    out: FloatArray = np.where(count > 0, 0.5 * (s[rows, lo] + s[rows, hi]), np.nan)
    return out
