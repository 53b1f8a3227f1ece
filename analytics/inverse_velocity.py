"""Inverse-velocity failure forecast (Fukuzono 1985; Voight 1988).

In tertiary creep the inverse velocity falls about linearly in time; the line
``1/v = a + b·t`` (b < 0) meets zero at the failure time ``t_f = −a/b``. The fit is
weighted by the inverse variance of ``1/v`` (``v⁴ / se²`` by the delta method), so
slow, noisy velocities whose inverse is meaningless carry little weight, and only
velocities significantly above zero are used at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from analytics._arrays import DAY_S, FloatArray


@dataclass(frozen=True, slots=True)
class InverseVelocityFit:
    """Result of a fit, forecast or not.

    forecast_s: failure time, epoch s, or None (``reason`` says why);
    lower_s / upper_s: 95 % interval of the forecast (delta method);
    a_day_per_mm, b_per_mm: the line ``1/v [day/mm] = a + b·(t − t_ref) [days]``;
    r2: weighted coefficient of determination; n: velocities used;
    t_from_s / t_to_s: the time span of those velocities.
    """

    forecast_s: float | None
    lower_s: float | None
    upper_s: float | None
    a_day_per_mm: float
    b_per_mm: float
    r2: float
    n: int
    t_from_s: float
    t_to_s: float
    reason: str


def fit_inverse_velocity(
    t_s: FloatArray,
    v_mm_per_day: FloatArray,
    se_mm_per_day: FloatArray,
    *,
    t_ref_s: float,
    min_points: int = 4,
    min_r2: float = 0.7,
    min_slope_z: float = 3.0,
    max_horizon_s: float = 60 * DAY_S,
) -> InverseVelocityFit:
    """Fit ``1/v`` against time over the accelerating window and forecast failure.

    t_s, v_mm_per_day, se_mm_per_day: (m,) times (epoch s), velocities and their
    standard errors over the window the caller chose (onset to newest). t_ref_s:
    time origin of the line (the newest reading); the forecast must lie after it.
    """
    nan = math.nan
    usable = np.isfinite(v_mm_per_day) & np.isfinite(se_mm_per_day) & (v_mm_per_day > 2.0 * se_mm_per_day)
    idx = np.flatnonzero(usable)
    m = int(idx.size)
    span = (float(t_s[idx[0]]), float(t_s[idx[-1]])) if m else (nan, nan)
    if m < min_points:
        return InverseVelocityFit(
            None,
            None,
            None,
            nan,
            nan,
            nan,
            m,
            *span,
            f"only {m} velocities significantly above zero in the accelerating window (need {min_points})",
        )
    t = (t_s[usable] - t_ref_s) / DAY_S
    v = v_mm_per_day[usable]
    y = 1.0 / v
    w = v**4 / se_mm_per_day[usable] ** 2
    sw = float(w.sum())
    tm = float(np.dot(w, t)) / sw
    ym = float(np.dot(w, y)) / sw
    dt = t - tm
    stt = float(np.dot(w, dt * dt))
    b = float(np.dot(w, dt * (y - ym))) / stt
    a = ym - b * tm
    resid = y - (a + b * t)
    ss_res = float(np.dot(w, resid * resid))
    ss_tot = float(np.dot(w, (y - ym) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0
    # Scale the covariance up (never down) when the points scatter more than their errors say.
    scale = max(1.0, ss_res / (m - 2)) if m > 2 else 1.0
    var_b = scale / stt
    var_a = scale * (1.0 / sw + tm * tm / stt)
    cov_ab = -scale * tm / stt
    base = (a, b, r2, m, *span)
    if b >= 0:
        return InverseVelocityFit(None, None, None, *base, "inverse velocity is not falling (b ≥ 0)")
    z = -b / math.sqrt(var_b)
    if z < min_slope_z:
        return InverseVelocityFit(None, None, None, *base, f"fall of inverse velocity not significant (z = {z:.1f})")
    if r2 < min_r2:
        return InverseVelocityFit(None, None, None, *base, f"inverse velocity not linear enough (R² = {r2:.2f})")
    tf = -a / b
    if tf <= 0:
        return InverseVelocityFit(
            None, None, None, *base, "the fitted line reaches zero before the newest reading: not a Voight-type trend"
        )
    if tf * DAY_S > max_horizon_s:
        return InverseVelocityFit(
            None, None, None, *base, f"forecast more than {max_horizon_s / DAY_S:.0f} days ahead: too far to be useful"
        )
    var_tf = (var_a + 2.0 * tf * cov_ab + tf * tf * var_b) / (b * b)
    half = 1.96 * math.sqrt(max(var_tf, 0.0))
    return InverseVelocityFit(
        t_ref_s + tf * DAY_S,
        t_ref_s + max(tf - half, 0.0) * DAY_S,
        t_ref_s + (tf + half) * DAY_S,
        *base,
        "forecast made",
    )
