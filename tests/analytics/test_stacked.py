"""The stacked (k rows on one time axis) stages against the one-series functions.

The 1-D functions are the stacked ones on a single row, so these tests check what
stacking could break: a row's result must not depend on the other rows (nor on the
memory layout the stack leaves it in), to the last bit. Hand-computed cases pin the
numbers themselves.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from analytics._stacked import (
    block_fits_rows,
    hampel_rows,
    interpolation_residuals_rows,
    trailing_lines,
    velocity_noise_rows,
    white_noise_sigma_rows,
)
from analytics.acceleration import AccelerationParams, assess_acceleration, assess_acceleration_many
from analytics.despike import row_nanmedian
from analytics.health import rules_many, silent, spikes, stuck
from analytics.kendall import (
    mann_kendall,
    mann_kendall_rows,
    mann_kendall_stats,
    prewhitened,
    prewhitened_rows,
    theil_sen,
    theil_sen_rows,
)
from analytics.noise import (
    interpolation_residuals,
    long_run_densities,
    long_run_densities_rows,
    row_median,
    velocity_noise,
    white_noise_sigma,
)
from analytics.rate import rate_bound, rate_bounds
from analytics.segments import segment_ids
from analytics.smoothing import block_fits, trailing_line
from analytics.types import RuleResult
from tests.analytics.series import DAY, HOUR, correlated, grid, white


def _ar1(rng: np.random.Generator, k: int, n: int, phi: float) -> np.ndarray:
    e = rng.normal(size=(k, n))
    for i in range(1, n):
        e[:, i] += phi * e[:, i - 1]
    return e


def _gnss_rows(k: int, days: float = 40.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k displacement rows (creep, steps, correlated noise) on one hourly grid with two gaps."""
    t = grid(days)
    keep = np.ones(t.size, dtype=np.bool_)
    keep[300:309] = False
    keep[700:701] = False
    t = t[keep]
    rows = []
    for i in range(k):
        days_t = (t - t[0]) / DAY
        x = (0.3 * i) * days_t + white(i, t.size, 1.0 + 0.2 * i) + correlated(i + 50, t.size, 2.0, HOUR)
        if i % 3 == 1:
            x[t.size // 2 :] += 8.0  # a step
        rows.append(x)
    return t, np.stack(rows), segment_ids(t, max_gap_s=4 * HOUR)


# ------------------------------------------------------------------ Kendall


def test_mann_kendall_rows_by_hand_and_row_by_row() -> None:
    x = np.array([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 2.0, 4.0]])
    mks = mann_kendall_rows(x)
    assert [m.s for m in mks] == [6, -6, 5]
    assert mks[0].var_s == pytest.approx(4 * 3 * 13 / 18.0)
    # one pair of ties: [4·3·13 − 2·1·9] / 18
    assert mks[2].var_s == pytest.approx((4 * 3 * 13 - 18) / 18.0)
    assert mks[0].z == pytest.approx((6 - 1) / math.sqrt(4 * 3 * 13 / 18.0))
    assert mks[1].tau == -1.0
    rng = np.random.default_rng(1)
    for n in (2, 3, 14, 27):
        v = np.round(rng.normal(size=(30, n)), 1)  # rounding makes ties in some rows
        assert mann_kendall_rows(v) == [mann_kendall(row) for row in v]
    s, _, _, p, _ = mann_kendall_stats(v)
    assert s.tolist() == [m.s for m in mann_kendall_rows(v)]
    assert p.tolist() == [m.p_increasing for m in mann_kendall_rows(v)]


def test_theil_sen_and_prewhitening_rows_match_one_row_at_a_time() -> None:
    t = np.arange(14.0) / 2.0 - 7.0
    assert theil_sen_rows(t, np.stack([2.0 * t, -t + 1.0]))[0] == pytest.approx(2.0)
    rng = np.random.default_rng(2)
    v = _ar1(rng, 40, 14, 0.7) + 0.1 * t
    beta = theil_sen_rows(t, v)
    assert beta.tolist() == [theil_sen(t, row) for row in v]
    # strided and column-major stacks, as column selections of block velocities are
    for stack in (v, np.repeat(v, 2, axis=1)[:, ::2], np.asfortranarray(v)):
        y, r1, whitened = prewhitened_rows(t, stack, beta)
        assert whitened.any()
        assert not whitened.all()
        for i, row in enumerate(v):
            want, want_r1 = prewhitened(t, row, beta=float(beta[i]))
            assert r1[i] == want_r1
            assert (y[i] if whitened[i] else row).tolist() == want.tolist()


# ------------------------------------------------------------------ noise, despiking, blocks


def test_row_median_is_numpys_median() -> None:
    rng = np.random.default_rng(3)
    for m in (1, 2, 5, 6, 1998, 1999):
        a = rng.normal(size=(7, m))
        a[0, :] = 1.0  # all equal
        assert row_median(a.copy()).tolist() == np.median(a, axis=1).tolist()
    a = rng.normal(size=(50, 6))
    assert row_nanmedian(a).tolist() == np.median(a, axis=1).tolist()
    a[::3, 2] = np.nan
    assert row_nanmedian(a).tolist() == np.nanmedian(a, axis=1).tolist()


def test_noise_and_hampel_rows_match_one_row_at_a_time() -> None:
    t, x, seg = _gnss_rows(9)
    x[2, 400] += 60.0  # spikes
    x[5, [100, 900]] -= 45.0
    resid = interpolation_residuals_rows(t, x, seg)
    sigma = white_noise_sigma_rows(resid)
    flags = hampel_rows(t, x, seg, resid, sigma=sigma)
    for i in range(x.shape[0]):
        r = interpolation_residuals(t, x[i], seg)
        assert np.array_equal(resid[i], r, equal_nan=True)
        assert sigma[i] == white_noise_sigma(r)
        one = hampel_rows(t, x[i : i + 1], seg, r[None, :], sigma=sigma[i : i + 1])[0]
        assert flags[i].tolist() == one.tolist()
    hits = {(int(i), int(j)) for i, j in np.argwhere(flags)}
    assert {(2, 400), (5, 100), (5, 900)} <= hits
    # anything else sits at the end of a segment, where the window is one-sided
    ends = set(np.flatnonzero(np.diff(seg)).tolist()) | set((np.flatnonzero(np.diff(seg)) + 1).tolist())
    assert all(j in ends | {0, t.size - 1} for _, j in hits - {(2, 400), (5, 100), (5, 900)})
    # rows that do not share the NaN pattern of their residuals still get their own σ
    resid[3, 10] = np.nan
    assert white_noise_sigma_rows(resid)[3] == white_noise_sigma(resid[3])


def test_block_fits_rows_match_one_row_at_a_time() -> None:
    t, x, seg = _gnss_rows(70)  # more rows than one chunk of the stacked sums
    sigma = np.linspace(0.5, 2.0, 70)
    for block_s, end_s in ((12 * HOUR, None), (DAY, None), (12 * HOUR, float(t[-1]) - 6 * HOUR)):
        stacked = block_fits_rows(t, x, seg, block_s=block_s, sigma=sigma, end_s=end_s)
        for i in range(x.shape[0]):
            one = block_fits(t, x[i], seg, block_s=block_s, sigma=float(sigma[i]), end_s=end_s)
            row = stacked.row(i)
            for field in ("t_mid_s", "n", "value", "velocity_per_day", "velocity_se_per_day"):
                assert getattr(row, field).tolist() == getattr(one, field).tolist()
    # hand-checkable: an exact line of 0.3 mm/day (row 0) has that velocity in every block
    assert block_fits(t, 0.3 * (t - t[0]) / DAY, seg, block_s=DAY, sigma=1.0).velocity_per_day == pytest.approx(0.3)
    v = block_fits_rows(t, x, seg, block_s=12 * HOUR, sigma=sigma)
    factors = velocity_noise_rows(v.velocity_per_day, v.velocity_se_per_day)
    assert factors.tolist() == [velocity_noise(v.velocity_per_day[i], v.velocity_se_per_day[i]) for i in range(70)]


def test_trailing_lines_match_one_row_at_a_time() -> None:
    t, x, seg = _gnss_rows(5)
    sigma = np.arange(1.0, 6.0)
    for window_s in (DAY, 3 * DAY, 7 * DAY):
        lines = trailing_lines(t, x, seg, window_s=window_s, sigma=sigma)
        assert lines == [trailing_line(t, x[i], seg, window_s=window_s, sigma=float(sigma[i])) for i in range(5)]


def test_long_run_densities_and_rate_bounds_match_one_row_at_a_time() -> None:
    t, x, seg = _gnss_rows(8)
    x[4, -100:-80] += np.linspace(0.0, 40.0, 20)  # a burst: some second differences are dropped
    rows = long_run_densities_rows(t, x, seg, blocks_s=(DAY, DAY / 2), min_blocks=3.0)
    for i in range(x.shape[0]):
        one = long_run_densities(t, x[i], seg, blocks_s=(DAY, DAY / 2), min_blocks=3.0)
        assert [(float(s[i]), c) for s, c in rows] == one
    sigma = np.linspace(0.8, 3.0, 8)
    assert rate_bounds(t, x, seg, sigma=sigma) == [rate_bound(t, x[i], seg, sigma=float(sigma[i])) for i in range(8)]
    # a young series (noise assumed) and one too short for any rate
    for days in (4.0, 0.05):
        tt = grid(days)
        xx = np.stack([white(i, tt.size, 1.0) + 2.0 * i * (tt - tt[0]) / DAY for i in range(3)])
        ss = segment_ids(tt, max_gap_s=4 * HOUR)
        got = rate_bounds(tt, xx, ss, sigma=np.ones(3))
        # repr: NaN fields compare unequal
        assert repr(got) == repr([rate_bound(tt, xx[i], ss, sigma=1.0) for i in range(3)])
        assert got[0].noise_assumed if days > 1 else got[0].reason


# ------------------------------------------------------------------ the detector and the health rules


@pytest.mark.parametrize("phases", [2, 3])
def test_assess_acceleration_many_matches_one_row_at_a_time(phases: int) -> None:
    t, x, _ = _gnss_rows(7, days=30.0)
    x[1, 500] += 50.0  # a spiked row is judged on its own
    x[[3, 6], -40:] = np.nan  # two rows with other missing readings: a stack of their own
    x[5] = x[5] + 2.0 * np.exp(((t - t[-1]) / DAY) / 1.5)  # accelerating
    p = AccelerationParams(mk_phases=phases)
    many = assess_acceleration_many(t, x, interval_s=HOUR, params=p, with_rate=[i % 2 == 0 for i in range(7)])
    for i in range(7):
        one = assess_acceleration(t, x[i], interval_s=HOUR, params=p, with_rate=i % 2 == 0)
        assert (many[i].level, many[i].reason, many[i].reason_zh) == (one.level, one.reason, one.reason_zh)
        assert repr(many[i].evidence(p)) == repr(one.evidence(p))
        assert many[i].mk == one.mk
        assert many[i].rate == one.rate


def _record(r: RuleResult) -> tuple[object, ...]:
    return (r.rule, r.level, r.at_s, repr(r.evidence), r.explanation_en, r.explanation_zh)


def test_health_rules_many_match_the_single_sensor_rules() -> None:
    t = grid(10.0)
    n = t.size
    rng = np.random.default_rng(5)
    quiet = {"a": rng.normal(size=n), "b": rng.normal(size=n)}
    stuck_ch = {"a": np.concatenate((rng.normal(size=n - 40), np.full(40, 3.25)))}
    jumpy = {"a": rng.normal(size=n) * 0.1, "b": rng.normal(size=n) * 0.1}
    jumpy["b"][[-22, -16, -10, -4]] += 5.0  # four jumps in the trailing day
    gappy = {"a": rng.normal(size=n), "b": rng.normal(size=n)}
    gappy["a"][::7] = np.nan
    gappy["b"][-5:] = np.nan
    dead = {"a": np.full(n, np.nan)}
    constant = {"a": np.full(n, 2.0)}
    rain = {"rain_mm": np.where(rng.random(n) < 0.1, rng.random(n) * 5, 0.0)}
    rain["rain_mm"][-3] = -1.0
    sensors = [quiet, stuck_ch, jumpy, gappy, dead, constant, rain, {}]
    is_rain = [False] * 6 + [True, False]
    now = [float(t[-1]) + 60.0 * (1 + 100 * i) for i in range(len(sensors))]
    got = rules_many(t, sensors, interval_s=HOUR, now_s=now, rain=is_rain)
    for values, res, now_s, r in zip(sensors, got, now, is_rain, strict=True):
        want = [
            silent(t, values, interval_s=HOUR, now_s=now_s),
            stuck(t, values, zero_is_normal=r),
            spikes(t, values, interval_s=HOUR, rain=r),
        ]
        assert [_record(x) for x in res] == [_record(x) for x in want]
    by_name = [{x.rule: x for x in res} for res in got]
    assert by_name[1]["health.stuck"].evidence["run_readings"] == 40
    jumps = by_name[2]["health.spike"]
    assert jumps.evidence["worst_channel"] == "b"
    assert set(t[[-22, -16, -10, -4]].tolist()) <= set(jumps.evidence["spike_t_s"])  # type: ignore[arg-type]
    assert by_name[4]["health.silent"].evidence["last_reading_s"] is None
    assert by_name[6]["health.spike"].evidence["spikes_in_window"] == 1
    # no readings at all: silence only
    assert [
        x.rule for x in rules_many(np.zeros(0), [{"a": np.zeros(0)}], interval_s=HOUR, now_s=[0.0], rain=[False])[0]
    ] == ["health.silent"]
