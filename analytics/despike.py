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
from analytics.segments import segment_bounds


@dataclass(frozen=True, slots=True)
class Despiked:
    """is_spike: (n,) True where the reading is an outlier; deviation: (n,) its distance
    from the detrended neighbour median in units of the local robust scale (0 elsewhere)."""

    is_spike: BoolArray
    deviation: FloatArray


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
    n = x.size
    is_spike = np.zeros(n, dtype=np.bool_)
    deviation = np.zeros(n)
    if n < 3 or not np.isfinite(sigma):
        return Despiked(is_spike, deviation)
    starts, stops = segment_bounds(seg)
    # A spike of height h gives an interpolation residual of about 0.8 h; the
    # screen is looser than the final test so that no true spike escapes it.
    screen = np.abs(residuals) > 0.5 * n_sigma * sigma
    screen[starts] = True
    screen[stops - 1] = True
    cand = np.flatnonzero(screen)
    k = half_window
    offs = np.concatenate((np.arange(-k, 0), np.arange(1, k + 1)))
    idx = cand[:, None] + offs[None, :]
    lo = starts[seg[cand]][:, None]
    hi = stops[seg[cand]][:, None]
    inside = (idx >= lo) & (idx < hi)
    idx_c = np.clip(idx, 0, n - 1)
    nb_x = np.where(inside, x[idx_c], np.nan)
    nb_t = t_s[idx_c] - t_s[cand][:, None]
    # Robust local slope: the median of the neighbours' slopes towards the candidate
    # would include the candidate itself, so use slopes between consecutive neighbours.
    dx = np.diff(nb_x, axis=1)
    dt = np.diff(nb_t, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        slopes = dx / dt
    # The pair straddling the candidate spans two steps; it is still a fair slope.
    slope = row_nanmedian(slopes)
    slope = np.where(np.isfinite(slope), slope, 0.0)
    detr = nb_x - slope[:, None] * nb_t
    enough = np.sum(inside, axis=1) >= 2
    med = row_nanmedian(detr)
    mad = row_nanmedian(np.abs(detr - med[:, None]))
    scale = np.maximum(1.4826 * mad, sigma)
    dev = np.abs(x[cand] - med) / scale
    with np.errstate(invalid="ignore"):
        hit = enough & (dev > n_sigma)
    is_spike[cand[hit]] = True
    deviation[cand] = np.where(enough, dev, 0.0)
    return Despiked(is_spike, deviation)


def row_nanmedian(a: FloatArray) -> FloatArray:
    """(m,) median of each row of ``a`` (m, w) ignoring NaN; NaN for an all-NaN row.

    Sorting puts NaN last, so the median sits at the middle of the finite count:
    no warnings and no per-row Python loop.
    """
    m = a.shape[0]
    if m == 0 or a.shape[1] == 0:
        return np.full(m, np.nan)
    s = np.sort(a, axis=1)
    count = np.sum(np.isfinite(a), axis=1)
    rows = np.arange(m)
    lo = np.clip((count - 1) // 2, 0, a.shape[1] - 1)
    hi = np.clip(count // 2, 0, a.shape[1] - 1)
    out: FloatArray = np.where(count > 0, 0.5 * (s[rows, lo] + s[rows, hi]), np.nan)
    return out
