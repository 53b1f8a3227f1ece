"""Gaps, noise, despiking and smoothing against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analytics.despike import hampel, row_nanmedian
from analytics.noise import interpolation_residuals, velocity_noise, white_noise_sigma
from analytics.segments import segment_bounds, segment_ids
from analytics.smoothing import bin_means, block_fits, local_linear, trailing_line, trailing_quadratic
from tests.analytics.series import DAY, HOUR, T0, grid, white


def test_segments_split_only_at_gaps_longer_than_the_limit() -> None:
    t = np.array([0.0, 1.0, 2.0, 10.0, 11.0, 30.0])
    seg = segment_ids(t, max_gap_s=5.0)
    assert seg.tolist() == [0, 0, 0, 1, 1, 2]
    starts, stops = segment_bounds(seg)
    assert starts.tolist() == [0, 3, 5]
    assert stops.tolist() == [3, 5, 6]


def test_interpolation_residuals_vanish_on_a_line_and_skip_segment_ends() -> None:
    t = np.array([0.0, 1.0, 3.0, 4.0, 20.0, 21.0, 22.0])
    x = 2.0 * t + 5.0
    r = interpolation_residuals(t, x, segment_ids(t, max_gap_s=5.0))
    assert np.isnan(r[[0, 3, 4, 6]]).all()
    np.testing.assert_allclose(r[[1, 2, 5]], 0.0, atol=1e-12)


def test_interpolation_residual_is_scaled_to_unit_noise() -> None:
    # middle point off by 3 between equally spaced neighbours: r = 3 / sqrt(1.5)
    t = np.array([0.0, 1.0, 2.0])
    r = interpolation_residuals(t, np.array([0.0, 3.0, 0.0]), np.zeros(3, dtype=np.int64))
    assert r[1] == pytest.approx(3.0 / math.sqrt(1.5))


def test_white_noise_sigma_recovers_the_noise_under_a_trend_and_irregular_sampling() -> None:
    rng = np.random.default_rng(1)
    t = np.sort(rng.uniform(0, 30 * DAY, 3000))
    x = 0.5 * t / DAY + rng.normal(0, 2.0, t.size)
    sigma = white_noise_sigma(interpolation_residuals(t, x, segment_ids(t, max_gap_s=DAY)))
    assert sigma == pytest.approx(2.0, rel=0.08)


def test_velocity_noise_factor_is_one_for_independent_blocks_and_grows_with_scatter() -> None:
    se = np.full(40, 1.0)
    assert velocity_noise(white(3, 40, 1.0), se) == pytest.approx(1.0, abs=0.35)
    assert velocity_noise(white(3, 40, 3.0), se) == pytest.approx(3.0, rel=0.3)


def test_row_nanmedian_matches_numpy() -> None:
    a = np.array([[1.0, np.nan, 3.0, 2.0], [np.nan, np.nan, np.nan, np.nan], [4.0, 1.0, np.nan, np.nan]])
    out = row_nanmedian(a)
    assert out[0] == 2.0
    assert math.isnan(out[1])
    assert out[2] == 2.5


def test_hampel_flags_a_single_spike_and_nothing_on_a_fast_smooth_trend() -> None:
    t = grid(5)
    x = 30.0 * (t - T0) / DAY + white(0, t.size, 1.0)  # 30 mm/day: 1.25 mm/h, just noise around it
    x[50] += 20.0
    x[-1] += 25.0  # the newest reading: one-sided window
    seg = segment_ids(t, max_gap_s=4 * HOUR)
    r = interpolation_residuals(t, x, seg)
    flags = hampel(t, x, seg, r, sigma=1.0).is_spike
    assert np.flatnonzero(flags).tolist() == [50, t.size - 1]


def test_hampel_windows_stop_at_gaps() -> None:
    # a level shift across a gap is not a spike on either side
    t = np.concatenate((grid(1), grid(1, start_s=T0 + 2 * DAY)))
    x = np.where(t > T0 + 1.5 * DAY, 40.0, 0.0) + white(2, t.size, 0.5)
    seg = segment_ids(t, max_gap_s=4 * HOUR)
    flags = hampel(t, x, seg, interpolation_residuals(t, x, seg), sigma=0.5).is_spike
    assert not flags.any()


def test_block_fits_recover_velocity_and_never_span_a_gap() -> None:
    t = np.concatenate((grid(2), grid(2, start_s=T0 + 3 * DAY)))
    # 4 mm/day, plus a 100 mm offset that appears during the gap
    x = 4.0 * (t - T0) / DAY + np.where(t > T0 + 2.5 * DAY, 100.0, 0.0)
    seg = segment_ids(t, max_gap_s=4 * HOUR)
    b = block_fits(t, x, seg, block_s=12 * HOUR, sigma=1.0)
    np.testing.assert_allclose(b.velocity_per_day, 4.0, rtol=1e-9)
    assert ((b.t_first_s > T0 + 2.5 * DAY) | (b.t_last_s < T0 + 2.5 * DAY)).all()
    # 12 hourly readings: SE = sigma / sqrt(Σ(τ - τ̄)²), τ in days
    tau = np.arange(12) / 24.0
    assert b.velocity_se_per_day[-1] == pytest.approx(1.0 / math.sqrt(np.sum((tau - tau.mean()) ** 2)))


def test_local_linear_is_exact_on_a_line_and_does_not_cross_gaps() -> None:
    t = np.concatenate((grid(1), grid(1, start_s=T0 + 2 * DAY)))
    x = 2.0 * (t - T0) / DAY + np.where(t > T0 + 1.5 * DAY, 50.0, 0.0)
    seg = segment_ids(t, max_gap_s=4 * HOUR)
    sm = local_linear(t, x, seg, half_width_s=6 * HOUR, sigma=1.0)
    np.testing.assert_allclose(sm.velocity_per_day, 2.0, rtol=1e-6)
    np.testing.assert_allclose(sm.value, x, atol=1e-6)


def test_trailing_line_and_quadratic_on_exact_curves() -> None:
    t = grid(3)
    tau = (t - t[-1]) / DAY
    seg = np.zeros(t.size, dtype=np.int64)
    line = trailing_line(t, 7.0 + 3.0 * tau, seg, window_s=DAY, sigma=1.0)
    assert line.velocity_per_day == pytest.approx(3.0)
    assert line.value == pytest.approx(7.0)
    assert line.n == 24
    quad = trailing_quadratic(t, 1.0 + 2.0 * tau + 0.5 * 4.0 * tau**2, seg, window_s=2 * DAY, sigma=1.0)
    assert quad.velocity_per_day == pytest.approx(2.0)
    assert quad.accel_per_day2 == pytest.approx(4.0)


def test_bin_means_fine_then_coarse() -> None:
    t = grid(4)
    x = np.arange(t.size, dtype=np.float64)
    seg = np.zeros(t.size, dtype=np.int64)
    tb, xb, cb = bin_means(t, x, seg, bin_s=3 * HOUR, coarse_bin_s=12 * HOUR, fine_span_s=DAY)
    assert cb.sum() == t.size
    assert cb[-8:].tolist() == [3.0] * 8  # the newest day in 3-hour bins
    assert xb[-1] == pytest.approx(np.mean(x[-3:]))
    assert (np.diff(tb) > 0).all()
