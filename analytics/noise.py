"""Measurement noise of a sensor, estimated from its own data.

Two views of the same noise:

- :func:`interpolation_residuals` / :func:`white_noise_sigma`: the scatter of each
  reading about the straight line through its two neighbours. A steady (or slowly
  changing) movement cancels, so this sees the sample-to-sample (white) part of the
  noise, robustly (MAD) so that spikes and a minority of fast-moving readings do
  not inflate it.
- :func:`velocity_noise` scales up block-velocity uncertainties when the noise is
  correlated over hours (GNSS multipath, troposphere), judged from how much the
  velocities of neighbouring blocks differ in the quiet part of the window.
"""

from __future__ import annotations

import math

import numpy as np

from analytics._arrays import BoolArray, FloatArray, IntArray

_MAD_TO_SIGMA = 1.4826


def interpolation_residuals(t_s: FloatArray, x: FloatArray, seg: IntArray) -> FloatArray:
    """(n,) residual of each reading from the line through its neighbours, scaled to unit noise.

    t_s: (n,) increasing times; x: (n,) finite values; seg: (n,) segment ids. For
    white noise of standard deviation σ each residual has standard deviation σ.
    NaN at the first and last reading of every segment (no neighbour on one side).
    """
    n = x.size
    out = np.full(n, np.nan)
    if n < 3:
        return out
    dt_prev = t_s[1:-1] - t_s[:-2]
    dt_next = t_s[2:] - t_s[1:-1]
    span = dt_prev + dt_next
    w_prev = dt_next / span
    w_next = dt_prev / span
    r = x[1:-1] - (w_prev * x[:-2] + w_next * x[2:])
    # Var(r) = σ²(1 + w_prev² + w_next²) for independent readings.
    r /= np.sqrt(1.0 + w_prev * w_prev + w_next * w_next)
    inside = (seg[:-2] == seg[1:-1]) & (seg[2:] == seg[1:-1])
    out[1:-1] = np.where(inside, r, np.nan)
    return out


def white_noise_sigma(residuals: FloatArray, *, mask: BoolArray | None = None) -> float:
    """Robust standard deviation of unit-scaled residuals (MAD × 1.4826); NaN if fewer than 5."""
    r = residuals[np.isfinite(residuals)] if mask is None else residuals[mask & np.isfinite(residuals)]
    if r.size < 5:
        return math.nan
    # The residuals are centred on zero by construction (a steady movement cancels), so
    # the median absolute value is the MAD without a second median.
    return float(_MAD_TO_SIGMA * np.median(np.abs(r)))


def velocity_noise(v: FloatArray, se: FloatArray) -> float:
    """Factor (≥ 1) by which the white-noise block-velocity errors ``se`` understate the real scatter.

    v, se: (m,) velocities of consecutive blocks and their white-noise standard errors.
    The difference of neighbouring block velocities is mostly noise in a quiet
    period; the median (robust to the accelerating minority) of its normalised size
    measures the real noise. Returns 1.0 when fewer than 4 pairs are available.
    """
    ok = np.isfinite(v) & np.isfinite(se) & (se > 0)
    vv = v[ok]
    ss = se[ok]
    if vv.size < 5:
        return 1.0
    z = np.diff(vv) / np.sqrt(ss[1:] ** 2 + ss[:-1] ** 2)
    ratio = _MAD_TO_SIGMA * float(np.median(np.abs(z)))
    return max(1.0, ratio)
