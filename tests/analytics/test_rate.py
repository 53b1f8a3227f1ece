"""Rate thresholds judged with an honest, autocorrelation-aware uncertainty.

Regression for the demo's false alarms: on non-failing GNSS points (10-min sessions
on pits, 30-min on dams, 1.5 mm horizontal / 6 mm vertical noise correlated over
6 h) the vertical rate judged on a white-noise 95 % bound over 24 h crossed the
blue-to-red rate thresholds again and again.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from analytics import SensorSpec, SensorWindow, evaluate_sensor
from analytics.noise import interpolation_residuals, long_run_density, white_noise_sigma
from analytics.rate import rate_bound, student_k
from analytics.segments import segment_ids
from analytics.smoothing import trailing_line
from core.model import Level, SensorKind
from core.thresholds import Direction, ThresholdSet
from tests.analytics.series import DAY, HOUR, correlated, grid, white

CHANNELS = ("east_mm", "north_mm", "up_mm")
#: The demo's reference thresholds (simulators/demo.py): a 240 m pit wall and a tailings dam.
PIT = {
    "horizontal_mm_per_day": ThresholdSet(Direction.ABOVE, blue=2.0, yellow=5.0, orange=8.0, red=10.0),
    "vertical_mm_per_day": ThresholdSet(Direction.ABOVE, blue=3.0, yellow=7.5, orange=12.0, red=15.0),
}
DAM = {
    "horizontal_mm_per_day": ThresholdSet(Direction.ABOVE, blue=1.0, yellow=2.0, orange=4.0, red=5.0),
    "vertical_mm_per_day": ThresholdSet(Direction.ABOVE, blue=2.0, yellow=4.0, orange=6.0, red=8.0),
}
RATE_RULES = ("threshold.horizontal_mm_per_day", "threshold.vertical_mm_per_day")


def demo_like(seed: int, interval_s: float, *, v_mm_per_day: float, days: float = 30.0) -> SensorWindow:
    """A GNSS point creeping at ``v_mm_per_day`` horizontally (settling at half that)."""
    t = grid(days, interval_s)
    s = v_mm_per_day * (t - t[0]) / DAY
    n = t.size
    east = 0.6 * s + correlated(seed, n, 1.5, interval_s)
    north = 0.8 * s + correlated(seed + 100, n, 1.5, interval_s)
    up = -0.5 * s + correlated(seed + 200, n, 6.0, interval_s)
    return SensorWindow(t, {"east_mm": east, "north_mm": north, "up_mm": up}, float(t[-1]))


def spec(interval_s: float, thresholds: dict[str, ThresholdSet]) -> SensorSpec:
    base = {ch: 0.0 for ch in CHANNELS}
    return SensorSpec(1, "GNSS-01", SensorKind.GNSS, CHANNELS, interval_s, baseline=base, thresholds=thresholds)


def rate_levels(sp: SensorSpec, w: SensorWindow, ends_s: np.ndarray) -> dict[str, list[Level]]:
    out: dict[str, list[Level]] = {r: [] for r in RATE_RULES}
    for end in ends_s:
        hi = int(np.searchsorted(w.t_s, end, side="right"))
        sub = SensorWindow(w.t_s[:hi], {c: v[:hi] for c, v in w.values.items()}, float(end))
        for r in evaluate_sensor(sp, sub):
            if r.rule in out:
                out[r.rule].append(r.level)
    return out


@pytest.mark.parametrize(("interval_s", "thresholds"), [(600.0, PIT), (1800.0, DAM)], ids=["pit", "dam"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_rate_alarm_on_slow_creep_with_correlated_gnss_noise(
    interval_s: float, thresholds: dict[str, ThresholdSet], seed: int
) -> None:
    w = demo_like(seed, interval_s, v_mm_per_day=0.4)
    ends = w.t_s[0] + np.arange(1.0, 30.0, 0.25) * DAY  # every 6 h, from day 1 (young window) to 30
    levels = rate_levels(spec(interval_s, thresholds), w, ends)
    for rule, lv in levels.items():
        assert max(lv) is Level.NONE, f"{rule}: {[x.label for x in lv if x > Level.NONE]}"


def test_the_white_noise_bound_crosses_thresholds_on_the_same_data() -> None:
    """The regression is real: a 24 h rate judged on its white-noise 95 % bound crosses the
    pit's vertical blue threshold (3 mm/day) on this quiet point; the honest bound does not."""
    w = demo_like(0, 600.0, v_mm_per_day=0.4)
    t, up = w.t_s, w.values["up_mm"]
    seg = segment_ids(t, max_gap_s=2400.0)
    sigma = white_noise_sigma(interpolation_residuals(t, up, seg))
    naive = []
    honest = []
    for end in t[0] + np.arange(8.0, 30.0, 0.25) * DAY:
        hi = int(np.searchsorted(t, end, side="right"))
        line = trailing_line(t[:hi], up[:hi], seg[:hi], window_s=DAY, sigma=sigma)
        naive.append(abs(line.velocity_per_day) - 1.96 * line.velocity_se_per_day)
        honest.append(rate_bound(t[:hi], up[:hi], seg[:hi], sigma=sigma).judged_per_day)
    assert max(naive) > 3.0
    assert max(honest) < 3.0


@pytest.mark.parametrize("seed", [0, 1])
def test_a_real_fast_rate_still_crosses_its_thresholds(seed: int) -> None:
    pit = demo_like(seed, 600.0, v_mm_per_day=12.0, days=5.0)
    res = {r.rule: r for r in evaluate_sensor(spec(600.0, PIT), pit)}
    h = res["threshold.horizontal_mm_per_day"]
    assert h.level is Level.RED, h.explanation_en
    dam = demo_like(seed, 1800.0, v_mm_per_day=3.0, days=12.0)
    res = {r.rule: r for r in evaluate_sensor(spec(1800.0, DAM), dam)}
    assert res["threshold.horizontal_mm_per_day"].level >= Level.BLUE
    for r in res.values():
        json.dumps(dict(r.evidence), allow_nan=False)


def test_a_young_series_is_judged_on_a_pessimistic_noise_and_says_so() -> None:
    w = demo_like(0, 600.0, v_mm_per_day=30.0, days=1.0)
    res = {x.rule: x for x in evaluate_sensor(spec(600.0, PIT), w)}
    v = res["threshold.vertical_mm_per_day"]
    assert v.evidence["noise_density_source"] == "assumed upper bound (under 6 days of data)"
    # 15 mm/day of settling in 6 mm noise is not provable in a day; 30 mm/day horizontally is
    assert v.level is Level.NONE
    assert res["threshold.horizontal_mm_per_day"].level >= Level.ORANGE


def test_too_few_readings_are_not_judged_and_say_why() -> None:
    w = demo_like(0, HOUR, v_mm_per_day=30.0, days=0.4)
    r = {x.rule: x for x in evaluate_sensor(spec(HOUR, PIT), w)}["threshold.vertical_mm_per_day"]
    assert r.level is Level.NONE
    assert "not judged" in r.explanation_en
    assert "未评估" in r.explanation_zh
    assert r.evidence["not_judged_reason"]


def test_long_run_density_of_white_noise_is_sigma_squared_times_the_interval() -> None:
    t = grid(30.0, HOUR)
    x = 0.3 * (t - t[0]) / DAY + white(3, t.size, 2.0)
    s, covered = long_run_density(t, x, segment_ids(t, max_gap_s=4 * HOUR), block_s=DAY)
    assert s == pytest.approx(4.0 / 24.0, rel=0.35)
    assert covered > 20


def test_long_run_density_grows_with_noise_correlated_over_hours() -> None:
    t = grid(30.0, 600.0)
    x = correlated(4, t.size, 6.0, 600.0)
    seg = segment_ids(t, max_gap_s=2400.0)
    s_day, _ = long_run_density(t, x, seg, block_s=DAY)
    # white alone would give 36 mm² × 600 s ≈ 0.25 mm²·day; the AR part ≈ 2·τ·σ² ≈ 10.8
    assert 4.0 < s_day < 16.0


def test_student_k_tends_to_the_normal_quantile() -> None:
    assert student_k(0.999, 1e9) == pytest.approx(3.09, abs=0.01)
    assert student_k(0.999, 10) == pytest.approx(4.14, rel=0.03)
    assert math.isinf(student_k(0.999, 0))
