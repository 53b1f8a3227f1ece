"""The Cramér–Rao bound on the failure time (analytics.bounds) against a Monte-Carlo fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import least_squares

from analytics._arrays import DAY_S, HOUR_S
from analytics.bounds import _voight_displacement, failure_time_bound


def test_the_bound_scales_with_the_noise_and_tightens_near_failure() -> None:
    one = failure_time_bound(v0_mm_per_day=2.0, tertiary_days=7.0, interval_s=HOUR_S, noise_mm=1.0)
    two = failure_time_bound(v0_mm_per_day=2.0, tertiary_days=7.0, interval_s=HOUR_S, noise_mm=2.0)
    assert two.sd_s == pytest.approx(2.0 * one.sd_s, rel=1e-6)
    assert two.within < one.within
    later = failure_time_bound(
        v0_mm_per_day=2.0, tertiary_days=7.0, interval_s=HOUR_S, noise_mm=1.0, lead_s=12 * HOUR_S
    )
    assert later.sd_s < one.sd_s
    # faster and longer tertiary creep carry more information
    fast = failure_time_bound(v0_mm_per_day=5.0, tertiary_days=7.0, interval_s=HOUR_S, noise_mm=1.0)
    assert fast.sd_s < one.sd_s
    # correlated noise carries less information than white noise of the same variance
    white = failure_time_bound(v0_mm_per_day=2.0, tertiary_days=7.0, interval_s=HOUR_S, noise_mm=1.0, ar_share=0.0)
    assert white.sd_s < one.sd_s


def test_within_is_the_gaussian_share_inside_the_tolerance() -> None:
    b = failure_time_bound(v0_mm_per_day=2.0, tertiary_days=7.0, interval_s=HOUR_S, noise_mm=1.5)
    z = b.tolerance * b.lead_s / b.sd_s
    assert b.within == pytest.approx(math.erf(z / math.sqrt(2.0)), rel=1e-9)


def test_a_least_squares_forecast_on_white_noise_reaches_the_bound_but_not_below() -> None:
    """High signal, white noise: the maximum-likelihood fit is efficient, so the spread of its
    failure times over many seeds is close to the bound (never far below it)."""
    v0, days, sigma, lead_d = 5.0, 7.0, 1.0, 1.0
    bound = failure_time_bound(
        v0_mm_per_day=v0,
        tertiary_days=days,
        interval_s=HOUR_S,
        noise_mm=sigma,
        lead_s=lead_d * DAY_S,
        window_s=20 * DAY_S,
        ar_share=0.0,
    )
    t = -lead_d - np.arange(20 * 24, -1, -1) / 24.0
    truth = np.array([0.0, v0, -days, 0.0])
    clean = _voight_displacement(t, truth)
    rng = np.random.default_rng(7)
    estimates = []
    for _ in range(200):
        y = clean + rng.normal(0.0, sigma, t.size)
        fit = least_squares(
            lambda th, y=y: _voight_displacement(t, th) - y,
            truth,
            bounds=([-np.inf, 0.01, -19.0, -lead_d + 1e-3], [np.inf, np.inf, -lead_d - 0.05, 30.0]),
            x_scale=[1.0, 1.0, 1.0, 0.1],
        )
        estimates.append(fit.x[3])
    spread_s = float(np.std(estimates)) * DAY_S
    print(f"bound {bound.sd_s / HOUR_S:.2f} h, least-squares spread {spread_s / HOUR_S:.2f} h")
    assert 0.8 * bound.sd_s < spread_s < 1.3 * bound.sd_s


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        failure_time_bound(v0_mm_per_day=0.0, tertiary_days=7.0, interval_s=HOUR_S, noise_mm=1.0)
