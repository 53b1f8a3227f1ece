"""The accelerating-displacement detector on series with a known truth."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.acceleration import assess_acceleration
from core.model import Level
from tests.analytics.series import DAY, HOUR, T0, burst, grid, stable, tertiary, voight, white


def test_stable_noise_is_not_accelerating() -> None:
    s = stable(11)
    a = assess_acceleration(s.t_s, s.disp_mm, interval_s=HOUR)
    assert a.level is Level.NONE
    assert a.forecast_failure_s is None
    assert a.sigma == pytest.approx(1.5, rel=0.15)


def test_tertiary_creep_is_red_before_failure_with_a_forecast_near_the_truth() -> None:
    s = tertiary(3, end_before_failure_s=30 * HOUR)
    a = assess_acceleration(s.t_s, s.disp_mm, interval_s=HOUR)
    assert a.level is Level.RED
    assert s.failure_s is not None
    assert s.onset_s is not None
    assert a.forecast_failure_s is not None
    remaining = s.failure_s - float(s.t_s[-1])
    assert abs(a.forecast_failure_s - s.failure_s) < 0.25 * remaining
    assert a.voight is not None
    assert a.voight.upper_ttf_s is not None
    assert a.voight.lower_ttf_s <= remaining <= a.voight.upper_ttf_s
    assert a.onset_s == pytest.approx(s.onset_s, abs=2 * DAY)
    assert a.mk is not None
    assert a.mk.p_increasing < 0.2
    assert a.alpha_deg > 45.0
    # red needs the forecast confirmed by the data up to 12 h ago
    assert a.earlier_forecast_s is not None
    assert abs(a.earlier_forecast_s - a.forecast_failure_s) < 0.7 * remaining


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_tertiary_four_days_before_failure_warns_below_red(seed: int) -> None:
    # 12 days of tertiary creep, 4 days left: v = 3·v0, failure too far off for red
    s = tertiary(seed, tertiary_days=12, end_before_failure_s=4 * DAY)
    a = assess_acceleration(s.t_s, s.disp_mm, interval_s=HOUR)
    assert Level.YELLOW <= a.level <= Level.ORANGE


def test_tertiary_with_gaps_and_irregular_sampling_still_warns() -> None:
    s = tertiary(5, end_before_failure_s=30 * HOUR)
    rng = np.random.default_rng(5)
    keep = rng.random(s.t_s.size) > 0.2
    keep &= ~((s.t_s > T0 + 20 * DAY) & (s.t_s < T0 + 21.5 * DAY))  # a 36-hour outage
    jitter = rng.uniform(-600, 600, s.t_s.size)
    t = s.t_s[keep] + jitter[keep]
    a = assess_acceleration(t, s.disp_mm[keep], interval_s=HOUR)
    assert a.level >= Level.ORANGE


def test_a_burst_that_has_stopped_is_not_red() -> None:
    t = grid(30)
    disp = 0.5 * (t - T0) / DAY + burst(t, start_s=T0 + 25 * DAY, duration_s=2 * DAY, amount_mm=8.0)
    x = disp + white(6, t.size, 1.5)
    during = t <= T0 + 26 * DAY
    assert assess_acceleration(t[during], x[during], interval_s=HOUR).level < Level.RED
    a = assess_acceleration(t, x, interval_s=HOUR)  # three days after it stopped
    assert a.level <= Level.BLUE


def test_steady_fast_creep_is_not_acceleration() -> None:
    t = grid(30)
    x = 20.0 * (t - T0) / DAY + white(7, t.size, 1.5)
    a = assess_acceleration(t, x, interval_s=HOUR)
    assert a.level is Level.NONE
    assert abs(a.v_now_per_day - 20.0) < 3.0 * a.v_now_se_per_day


def test_settlement_accelerates_downwards_too() -> None:
    s = tertiary(8, end_before_failure_s=30 * HOUR)
    a = assess_acceleration(s.t_s, -s.disp_mm, interval_s=HOUR)
    assert a.direction == -1
    assert a.level is Level.RED


def test_spikes_are_dropped_and_counted() -> None:
    s = stable(9)
    x = s.disp_mm.copy()
    x[[100, 400, 650]] += 40.0
    a = assess_acceleration(s.t_s, x, interval_s=HOUR)
    assert a.n_spikes == 3
    assert a.level is Level.NONE


def test_too_little_data_says_so() -> None:
    t = grid(1)
    a = assess_acceleration(t, voight(t, v0_mm_per_day=5, onset_s=T0, failure_s=T0 + 2 * DAY), interval_s=HOUR)
    assert a.level is Level.NONE
    assert "blocks" in a.reason
    assert assess_acceleration(t[:2], t[:2] * 0, interval_s=HOUR).reason == "only 2 readings"


def test_evidence_is_json_safe() -> None:
    import json

    s = tertiary(3, end_before_failure_s=30 * HOUR)
    ev = assess_acceleration(s.t_s, s.disp_mm, interval_s=HOUR).evidence()
    json.dumps(ev, allow_nan=False)
    assert ev["forecast_reliable"] is True
    assert isinstance(ev["block_velocity_mm_per_day"], list)
