"""Mann–Kendall, Theil–Sen, prewhitening, tangent angle and the inverse-velocity fits."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from analytics.inverse_velocity import fit_inverse_velocity
from analytics.kendall import (
    _s_merge,
    _s_pairwise,
    kendall_s,
    mann_kendall,
    prewhitened,
    theil_sen,
)
from analytics.tangent import level_of_angle, tangent_angle_deg
from analytics.voight import fit_voight
from core.model import Level
from tests.analytics.series import DAY, HOUR, T0, grid, voight, white


def test_kendall_s_by_hand() -> None:
    assert kendall_s(np.array([1.0, 2.0, 3.0])) == 3
    assert kendall_s(np.array([3.0, 2.0, 1.0])) == -3
    assert kendall_s(np.array([1.0, 3.0, 2.0])) == 1  # +1 +1 -1
    assert kendall_s(np.array([1.0, 1.0, 2.0])) == 2  # tie counts 0


@pytest.mark.parametrize("n", [2, 3, 7, 64, 300, 1025])
def test_merge_and_pairwise_counts_agree_with_scipy(n: int) -> None:
    rng = np.random.default_rng(n)
    for x in (rng.normal(size=n), rng.integers(0, 4, size=n).astype(np.float64)):
        s_merge = _s_merge(x)
        assert s_merge == _s_pairwise(x)
        # tau-a = S / (n(n-1)/2); scipy's tau-b differs only by tie terms, so compare S via counts
        expected = sum(int(np.sign(x[j] - x[i])) for i in range(min(n, 60)) for j in range(i + 1, min(n, 60)))
        assert _s_pairwise(x[:60]) == expected
    tau_b, _ = stats.kendalltau(np.arange(n), rng.normal(size=n))
    assert -1.0 <= tau_b <= 1.0


def test_mann_kendall_variance_with_ties_and_p_value() -> None:
    # n = 5, one pair of ties: var = [5·4·15 − 2·1·9] / 18 = 282 / 18
    x = np.array([1.0, 2.0, 2.0, 4.0, 5.0])
    mk = mann_kendall(x)
    assert mk.s == 9
    assert mk.var_s == pytest.approx(282.0 / 18.0)
    z = (9 - 1) / math.sqrt(282.0 / 18.0)
    assert mk.z == pytest.approx(z)
    assert mk.p_increasing == pytest.approx(stats.norm.sf(z))


def test_theil_sen_ignores_one_outlier() -> None:
    t = np.arange(11.0)
    x = 2.0 * t
    x[5] = 100.0
    assert theil_sen(t, x) == pytest.approx(2.0)


def test_prewhitening_removes_ar1_but_keeps_the_trend() -> None:
    rng = np.random.default_rng(4)
    n = 200
    e = np.zeros(n)
    for i in range(1, n):
        e[i] = 0.8 * e[i - 1] + rng.normal()
    t = np.arange(float(n))
    y, r1 = prewhitened(t, e + 0.05 * t)
    assert r1 > 0.6
    assert y.size == n - 1
    resid = y - 0.05 * t[1:]
    lag1 = np.corrcoef(resid[1:], resid[:-1])[0, 1]
    assert abs(lag1) < 0.2
    assert theil_sen(t[1:], y) == pytest.approx(0.05, abs=0.02)


def test_tangent_angle_breakpoints() -> None:
    v0 = 2.0
    assert tangent_angle_deg(v0, v0) == pytest.approx(45.0)
    assert level_of_angle(tangent_angle_deg(v0, v0)) is Level.NONE
    assert level_of_angle(tangent_angle_deg(3.0 * v0, v0)) is Level.YELLOW  # 71.6°
    assert level_of_angle(tangent_angle_deg(math.tan(math.radians(82)) * v0, v0)) is Level.ORANGE
    assert level_of_angle(tangent_angle_deg(math.tan(math.radians(86)) * v0, v0)) is Level.RED
    assert math.isnan(tangent_angle_deg(1.0, 0.0))


def test_inverse_velocity_line_points_at_failure() -> None:
    # 1/v = (tf − t)/B exactly, B = 20 mm: failure at t_ref + 2 days
    t_ref = T0
    t = t_ref + np.arange(-6.0, 0.01, 0.5) * DAY
    v = 20.0 / ((t_ref + 2 * DAY - t) / DAY)
    fit = fit_inverse_velocity(t, v, np.full(t.size, 0.1), t_ref_s=t_ref)
    assert fit.forecast_s == pytest.approx(t_ref + 2 * DAY, abs=60.0)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.lower_s is not None
    assert fit.upper_s is not None
    assert fit.lower_s <= fit.forecast_s <= fit.upper_s


def test_inverse_velocity_says_why_there_is_no_forecast() -> None:
    t = T0 + np.arange(10.0) * DAY
    steady = fit_inverse_velocity(t, np.full(10, 5.0) + white(1, 10, 0.2), np.full(10, 0.2), t_ref_s=t[-1])
    assert steady.forecast_s is None
    assert steady.reason
    slowing = fit_inverse_velocity(t, np.linspace(10, 2, 10), np.full(10, 0.1), t_ref_s=t[-1])
    assert slowing.forecast_s is None
    assert "not falling" in slowing.reason
    noise = fit_inverse_velocity(t, white(2, 10, 1.0), np.full(10, 1.0), t_ref_s=t[-1])
    assert noise.forecast_s is None


def test_voight_fit_recovers_onset_and_failure_without_noise() -> None:
    t = grid(30, 3 * HOUR)
    failure = float(t[-1]) + 2 * DAY
    onset = failure - 9 * DAY
    x = voight(t, v0_mm_per_day=2.0, onset_s=onset, failure_s=failure)
    fit = fit_voight(t, x, np.ones(t.size), t_ref_s=float(t[-1]))
    assert fit is not None
    assert fit.ttf_s == pytest.approx(2 * DAY, rel=0.05)
    assert fit.onset_age_s == pytest.approx(7 * DAY, rel=0.2)
    assert fit.v0_mm_per_day == pytest.approx(2.0, rel=0.1)
    assert fit.p_accel < 1e-6
    assert fit.lower_ttf_s <= fit.ttf_s
    assert fit.upper_ttf_s is not None
    assert fit.upper_ttf_s >= fit.ttf_s


def test_voight_fit_finds_no_acceleration_in_steady_creep() -> None:
    t = grid(30, 3 * HOUR)
    x = 2.0 * (t - T0) / DAY + white(5, t.size, 1.0)
    fit = fit_voight(t, x, np.ones(t.size), t_ref_s=float(t[-1]))
    assert fit is None or fit.p_accel > 0.01
