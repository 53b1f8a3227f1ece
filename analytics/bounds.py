"""How well *any* forecast could do: the Cramér–Rao bound on the failure time.

The backtest's failing families are Voight's law (α = 2) after steady creep, with
GNSS-like noise (white plus AR(1) correlated over hours, :func:`simulators.scenarios.
colored_noise`). For such a series the Fisher information of the four parameters
(offset ``c``, steady velocity ``v0``, onset ``t_on``, failure time ``t_f``) follows
from the model's derivatives and the noise covariance:
``I = Jᵀ Σ⁻¹ J``; no unbiased estimator of ``t_f`` has a standard deviation below
``√(I⁻¹)_{t_f t_f}``, even one that knows α, the noise model and its parameters.

So a family whose bound is wide cannot meet a target like "forecast within ±25 % of the
remaining time 24 h ahead in 80 % of series", however good the detector: the bound
says how much of the target the data allow, and the backtest prints it beside what the
detector reached. The bound is for complete data: gaps and spikes only widen it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from analytics._arrays import DAY_S, HOUR_S, FloatArray


@dataclass(frozen=True, slots=True)
class ForecastBound:
    """The Cramér–Rao bound on the failure time, ``lead_s`` before failure.

    sd_s: the smallest possible standard deviation of an unbiased forecast, s;
    within: the largest share of series an unbiased Gaussian forecast with that spread
    can bring within ``tolerance`` × ``lead_s`` of the truth.
    """

    lead_s: float
    sd_s: float
    tolerance: float
    within: float


def _voight_displacement(t_d: FloatArray, theta: FloatArray) -> FloatArray:
    """Steady creep then Voight α = 2, continuous at the onset. t_d: (n,) days; theta:
    (c mm, v0 mm/day, t_on day, t_f day)."""
    c, v0, t_on, t_f = (float(x) for x in theta)
    span = t_f - t_on
    left = np.maximum(t_f - t_d, 1e-9)
    out: FloatArray = np.where(t_d < t_on, c + v0 * (t_d - t_on), c + v0 * span * np.log(span / left))
    return out


def failure_time_bound(
    *,
    v0_mm_per_day: float,
    tertiary_days: float,
    interval_s: float,
    noise_mm: float,
    lead_s: float = 24 * HOUR_S,
    window_s: float = 30 * DAY_S,
    tau_s: float = 6 * HOUR_S,
    ar_share: float = 0.6,
    tolerance: float = 0.25,
) -> ForecastBound:
    """Cramér–Rao bound on the failure time from ``window_s`` of readings ending ``lead_s``
    before failure, every ``interval_s``, noise ``noise_mm`` (share ``ar_share`` AR(1) with
    correlation time ``tau_s``, the rest white), for steady creep at ``v0_mm_per_day`` then
    ``tertiary_days`` of Voight acceleration to failure."""
    if interval_s <= 0 or noise_mm <= 0 or lead_s <= 0 or tertiary_days <= 0 or v0_mm_per_day <= 0:
        raise ValueError("interval_s, noise_mm, lead_s, tertiary_days and v0_mm_per_day must be > 0")
    dt = interval_s / DAY_S
    end = -lead_s / DAY_S
    n = math.floor(window_s / interval_s) + 1
    t = end - dt * np.arange(n - 1, -1, -1, dtype=np.float64)
    theta = np.array([0.0, v0_mm_per_day, -tertiary_days, 0.0])
    jac = np.empty((n, 4))
    for i in range(4):
        h = 1e-5 * max(1.0, abs(float(theta[i])))
        up, down = theta.copy(), theta.copy()
        up[i] += h
        down[i] -= h
        jac[:, i] = (_voight_displacement(t, up) - _voight_displacement(t, down)) / (2.0 * h)
    phi = math.exp(-interval_s / tau_s) if tau_s > 0 else 0.0
    lag = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])
    cov = noise_mm**2 * (ar_share * phi**lag + (1.0 - ar_share) * np.eye(n))
    info = jac.T @ np.linalg.solve(cov, jac)
    sd_days = math.sqrt(float(np.linalg.inv(info)[3, 3]))
    sd_s = sd_days * DAY_S
    within = float(2.0 * ndtr(tolerance * lead_s / sd_s) - 1.0)
    return ForecastBound(lead_s=lead_s, sd_s=sd_s, tolerance=tolerance, within=within)
