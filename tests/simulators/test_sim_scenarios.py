"""Scenarios return the truth they claim: kinematics, reproducibility, fault logs."""

from __future__ import annotations

import numpy as np
import pytest

from simulators.scenarios import (
    DAY_S,
    apply_faults,
    crack_series,
    displacement_series,
    inclinometer_series,
    pond_and_phreatic_series,
    rain_series,
    rolling_sum,
)

T0 = 1_760_000_000.0


def _horizontal(s_east: np.ndarray, s_north: np.ndarray) -> np.ndarray:
    return np.hypot(s_east - s_east[0], s_north - s_north[0])


def test_tertiary_inverse_velocity_is_linear_and_points_at_failure() -> None:
    s = displacement_series(
        "tertiary", start_s=T0, duration_s=30 * DAY_S, interval_s=3600, seed=3, noise_h_mm=0.0, noise_v_mm=0.0
    )
    truth = s.truth
    assert truth.fails
    assert truth.failure_s == pytest.approx(T0 + 30 * DAY_S)
    assert truth.onset_s == pytest.approx(truth.failure_s - 10 * DAY_S)
    assert s.t_s[-1] < truth.failure_s <= s.t_s[-1] + 3600

    h = _horizontal(s.values["east_mm"], s.values["north_mm"])
    t_mid = (s.t_s[1:] + s.t_s[:-1]) / 2
    v = np.diff(h) / np.diff(s.t_s) * DAY_S  # mm/day
    before = t_mid < truth.onset_s
    assert np.allclose(v[before], 0.5, rtol=1e-6)

    after = t_mid > truth.onset_s + 3600
    inv = 1.0 / v[after]
    b, a = np.polyfit(t_mid[after], inv, 1)
    fit = a + b * t_mid[after]
    r2 = 1 - np.sum((inv - fit) ** 2) / np.sum((inv - inv.mean()) ** 2)
    assert b < 0
    assert r2 > 0.999
    assert -a / b == pytest.approx(truth.failure_s, abs=3600)
    # the slope keeps settling as it slides
    assert s.values["up_mm"][-1] < -0.1 * h[-1]


def test_tertiary_with_noise_is_visible_above_noise_and_failure_can_lie_beyond_window() -> None:
    fail = T0 + 30.5 * DAY_S
    s = displacement_series("tertiary", start_s=T0, duration_s=30 * DAY_S, interval_s=3600, seed=5, failure_s=fail)
    assert s.truth.failure_s == fail
    assert s.t_s[-1] == pytest.approx(T0 + 30 * DAY_S)
    h = _horizontal(s.values["east_mm"], s.values["north_mm"])
    last_day = np.mean(h[-24:]) - np.mean(h[-48:-24])
    # day means sit ~1 and ~2 days before failure: 0.5 mm/day · 10 days · ln 2 ≈ 3.5 mm apart,
    # seven times the steady creep
    assert last_day > 2.0
    assert s.truth.onset_s is not None
    quiet = h[s.t_s < s.truth.onset_s]
    assert np.polyfit(np.arange(quiet.size) / 24, quiet, 1)[0] < 1.0


def test_tertiary_onset_before_window_is_refused() -> None:
    with pytest.raises(ValueError, match="onset"):
        displacement_series("tertiary", start_s=T0, duration_s=5 * DAY_S, interval_s=3600, seed=1)


def test_creep_velocity_and_stable_noise_levels() -> None:
    creep = displacement_series(
        "creep", start_s=T0, duration_s=20 * DAY_S, interval_s=3600, seed=2, v0_mm_per_day=2.0, azimuth_deg=90.0
    )
    slope = np.polyfit(creep.t_s / DAY_S, creep.values["east_mm"], 1)[0]
    assert slope == pytest.approx(2.0, rel=0.1)
    assert not creep.truth.fails

    stable = displacement_series("stable", start_s=T0, duration_s=200 * DAY_S, interval_s=3600, seed=2)
    assert np.std(stable.values["east_mm"]) == pytest.approx(1.5, rel=0.2)
    assert np.std(stable.values["up_mm"]) == pytest.approx(6.0, rel=0.2)
    # hours-long correlation: neighbouring samples are far from independent
    e = stable.values["east_mm"]
    assert np.corrcoef(e[:-1], e[1:])[0, 1] > 0.3


def test_step_bursts_stop_again() -> None:
    s = displacement_series(
        "step",
        start_s=T0,
        duration_s=30 * DAY_S,
        interval_s=3600,
        seed=4,
        noise_h_mm=0.0,
        noise_v_mm=0.0,
        step_starts_s=[T0 + 5 * DAY_S, T0 + 15 * DAY_S],
    )
    assert not s.truth.fails
    assert len(s.truth.episodes) == 2
    assert s.truth.episodes[0][0] == T0 + 5 * DAY_S
    h = _horizontal(s.values["east_mm"], s.values["north_mm"])
    v = np.diff(h) / 3600 * DAY_S
    inside = np.zeros(v.size, dtype=bool)
    for a, b in s.truth.episodes:
        inside |= (s.t_s[1:] > a) & (s.t_s[:-1] < b)
    assert v[inside].max() > 2.0
    assert np.allclose(v[~inside], 0.5, atol=1e-6)
    assert v[-1] == pytest.approx(0.5)


def test_same_seed_same_series_other_seed_other_series() -> None:
    kw = {"start_s": T0, "duration_s": 20 * DAY_S, "interval_s": 1800.0}
    a = displacement_series("tertiary", seed=11, **kw)
    b = displacement_series("tertiary", seed=11, **kw)
    c = displacement_series("tertiary", seed=12, **kw)
    for ch in a.values:
        np.testing.assert_array_equal(a.values[ch], b.values[ch])
        assert not np.array_equal(a.values[ch], c.values[ch])
    assert a.truth == b.truth
    r1 = rain_series(seed=9, **kw)
    r2 = rain_series(seed=9, **kw)
    np.testing.assert_array_equal(r1.values["rain_mm"], r2.values["rain_mm"])


def test_rain_keeps_storm_totals_in_bucket_tips() -> None:
    storms = [(T0 + 2 * DAY_S, 6 * 3600.0, 120.0), (T0 + 6 * DAY_S, 3 * 3600.0, 20.0)]
    r = rain_series(start_s=T0, duration_s=10 * DAY_S, interval_s=600, seed=1, storms=storms)
    mm = r.values["rain_mm"]
    assert mm.sum() == pytest.approx(140.0, abs=0.2)
    assert np.allclose(mm / 0.2, np.round(mm / 0.2))
    assert r.truth.episodes == (
        (T0 + 2 * DAY_S, T0 + 2 * DAY_S + 6 * 3600),
        (T0 + 6 * DAY_S, T0 + 6 * DAY_S + 3 * 3600),
    )
    day = rolling_sum(r.t_s, mm, DAY_S)
    assert day.max() == pytest.approx(120.0, abs=0.4)  # a 大暴雨 day
    outside = np.ones(mm.size, dtype=bool)
    for a, b in r.truth.episodes:
        outside &= ~((r.t_s > a) & (r.t_s - 600 < b + 600))
    assert mm[outside].sum() == 0


def test_pond_rises_after_a_storm_and_phreatic_line_follows_slower() -> None:
    storm_at = T0 + 3 * DAY_S
    r = rain_series(start_s=T0, duration_s=20 * DAY_S, interval_s=3600, seed=1, storms=[(storm_at, 6 * 3600.0, 150)])
    p = pond_and_phreatic_series(r, seed=2, level_noise_m=0.0, depth_noise_m=0.0, beach_noise_m=0.0)
    level, depth, beach = p.values["level_m"], p.values["depth_m"], p.values["length_m"]
    assert level[0] == pytest.approx(245.0)
    i_level = int(np.argmax(level))
    i_depth = int(np.argmin(depth))
    assert level[i_level] - 245.0 > 1.0
    assert s_time(p.t_s, i_level) > storm_at
    assert i_depth > i_level  # the phreatic line lags the pond
    assert depth[i_depth] < 8.0 - 0.3
    assert beach.min() < 150.0 - 100.0
    assert level[-1] < level[i_level] - 0.5  # the decant lowers it again
    # the deterministic part does not depend on the seed
    q = pond_and_phreatic_series(r, seed=99, level_noise_m=0.0, depth_noise_m=0.0, beach_noise_m=0.0)
    np.testing.assert_allclose(q.values["level_m"], level)


def s_time(t: np.ndarray, i: int) -> float:
    return float(t[i])


def test_clogging_raises_the_phreatic_line_from_its_onset() -> None:
    r = rain_series(start_s=T0, duration_s=20 * DAY_S, interval_s=3600, seed=1, storms=[])
    onset = T0 + 10 * DAY_S
    p = pond_and_phreatic_series(r, seed=2, scenario="clogging", clog_onset_s=onset, depth_noise_m=0.0)
    assert p.truth.onset_s == onset
    depth = p.values["depth_m"]
    assert np.allclose(depth[p.t_s <= onset], 8.0)
    assert depth[-1] == pytest.approx(8.0 - 10 * 0.15)


def test_crack_and_inclinometer_share_the_kinematics() -> None:
    c = crack_series("tertiary", start_s=T0, duration_s=20 * DAY_S, interval_s=3600, seed=1, noise_mm=0.0)
    assert c.truth.fails
    assert c.values["width_mm"][0] == pytest.approx(5.0)
    assert c.values["width_mm"][-1] > 5.0 + 2.0
    inc = inclinometer_series(
        "creep",
        channels=["a_5m_mm", "a_10m_mm", "a_20m_mm"],
        depths_m=[5, 10, 20],
        slip_depth_m=12,
        start_s=T0,
        duration_s=20 * DAY_S,
        interval_s=3600,
        seed=1,
        noise_mm=0.0,
    )
    last = {ch: v[-1] for ch, v in inc.values.items()}
    assert last["a_5m_mm"] == pytest.approx(20 * 0.3, rel=0.01)
    assert last["a_20m_mm"] < 0.01


def test_faults_are_logged_exactly() -> None:
    s = displacement_series("creep", start_s=T0, duration_s=30 * DAY_S, interval_s=3600, seed=8)
    window = (T0 + 10 * DAY_S, T0 + 11 * DAY_S)
    f = apply_faults(s, seed=3, gap_prob=0.05, gaps=[window], spike_prob=0.03)
    assert f.truth == s.truth
    assert len(f) + f.faults.gaps == len(s)
    assert set(f.faults.removed_t_s) | set(f.t_s) == set(s.t_s)
    assert not np.any((f.t_s >= window[0]) & (f.t_s < window[1]))
    assert f.faults.gaps >= 24
    assert f.faults.spikes > 0
    # every difference to the clean series is a logged spike, and nothing else differs
    idx = np.searchsorted(s.t_s, f.t_s)
    spiked = dict(
        zip(f.faults.spike_t_s.tolist(), zip(f.faults.spike_channel, f.faults.spike_delta, strict=True), strict=True)
    )
    for ch in s.values:
        diff = f.values[ch] - s.values[ch][idx]
        for t, d in zip(f.t_s, diff, strict=True):
            if t in spiked and spiked[t][0] == ch:
                assert d == pytest.approx(spiked[t][1])
                assert abs(d) > 5 * 1.5
            else:
                assert d == 0
    # faults compose
    g = apply_faults(f, seed=4, gap_prob=0.1)
    assert g.faults.spikes == f.faults.spikes
    assert len(g) + g.faults.gaps == len(s)
