"""evaluate_sensor: rule names per kind, thresholds, health rules, evidence and explanations."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from analytics import RuleResult, SensorSpec, SensorWindow, evaluate_sensor
from core.model import Level, SensorKind
from core.thresholds import Direction, ThresholdSet
from tests.analytics.series import DAY, HOUR, T0, grid, tertiary, white

HEALTH = {"health.silent", "health.stuck", "health.spike"}


def spec(kind: SensorKind, channels: tuple[str, ...], **kw: object) -> SensorSpec:
    return SensorSpec(1, "S1", kind, channels, float(kw.pop("interval_s", HOUR)), **kw)  # type: ignore[arg-type]


def by_rule(results: tuple[RuleResult, ...]) -> dict[str, RuleResult]:
    rules = [r.rule for r in results]
    assert len(rules) == len(set(rules)), "one result per rule"
    return {r.rule: r for r in results}


def check_result(r: RuleResult) -> None:
    json.dumps(dict(r.evidence), allow_nan=False)
    assert r.explanation_en.strip()
    assert r.explanation_zh.strip()
    assert isinstance(r.level, Level)


def gnss_window(seed: int = 1, *, end_before_failure_s: float = 30 * HOUR) -> tuple[SensorWindow, float]:
    s = tertiary(seed, end_before_failure_s=end_before_failure_s)
    rng = np.random.default_rng(seed)
    az = 0.6
    east = 100.0 + s.disp_mm * np.sin(az) + rng.normal(0, 1.0, s.t_s.size)
    north = -50.0 + s.disp_mm * np.cos(az) + rng.normal(0, 1.0, s.t_s.size)
    up = 20.0 - 0.4 * s.disp_mm + rng.normal(0, 3.0, s.t_s.size)
    assert s.failure_s is not None
    return SensorWindow(s.t_s, {"east_mm": east, "north_mm": north, "up_mm": up}, float(s.t_s[-1]) + 600), s.failure_s


def test_gnss_rules_and_a_red_with_forecast_on_tertiary_creep() -> None:
    window, failure = gnss_window()
    sp = spec(
        SensorKind.GNSS,
        ("east_mm", "north_mm", "up_mm"),
        baseline={"east_mm": 100.0, "north_mm": -50.0, "up_mm": 20.0},
        thresholds={
            "horizontal_mm_per_day": ThresholdSet(Direction.ABOVE, yellow=5.0, red=50.0),
            "horizontal_mm": ThresholdSet(Direction.ABOVE, yellow=50.0, orange=80.0, red=500.0),
        },
    )
    res = by_rule(evaluate_sensor(sp, window))
    assert (
        set(res)
        == {
            "displacement.acceleration.horizontal",
            "displacement.acceleration.vertical",
            "threshold.horizontal_mm_per_day",
            "threshold.horizontal_mm",
        }
        | HEALTH
    )
    for r in res.values():
        check_result(r)
    h = res["displacement.acceleration.horizontal"]
    assert h.level is Level.RED
    assert h.forecast_failure_s is not None
    assert abs(h.forecast_failure_s - failure) < 0.25 * (failure - h.at_s)
    assert "加速" in h.explanation_zh
    assert res["threshold.horizontal_mm_per_day"].level is Level.YELLOW  # ~15 mm/day
    cum = res["threshold.horizontal_mm"]
    assert cum.level is Level.ORANGE
    assert cum.evidence["baseline_source"] == "registry"
    assert all(res[r].level is Level.NONE for r in HEALTH)


def test_gnss_without_baseline_uses_the_window_start_and_says_so() -> None:
    window, _ = gnss_window()
    sp = spec(SensorKind.GNSS, ("east_mm", "north_mm", "up_mm"))
    res = by_rule(evaluate_sensor(sp, window))
    assert res["displacement.acceleration.horizontal"].evidence["baseline_source"] == "window start"
    assert "threshold.horizontal_mm" not in res  # no thresholds set: not evaluated


def test_crack_and_inclinometer_pick_their_components() -> None:
    t = grid(20)
    w = 5.0 + 0.2 * (t - T0) / DAY + white(1, t.size, 0.05)
    crack = evaluate_sensor(
        spec(SensorKind.CRACK, ("width_mm",), thresholds={"width_mm": ThresholdSet(Direction.ABOVE, yellow=8.0)}),
        SensorWindow(t, {"width_mm": w}, float(t[-1])),
    )
    res = by_rule(crack)
    assert {"displacement.acceleration.width", "threshold.width_mm"} <= set(res)
    assert res["threshold.width_mm"].level is Level.YELLOW  # 5 + 0.2 mm/day × 20 days = 9 mm
    assert res["threshold.width_mm"].evidence["value"] == pytest.approx(9.0, abs=0.1)

    deep = np.full(t.size, 0.0) + white(2, t.size, 0.3)
    shallow = 2.0 * (t - T0) / DAY + white(3, t.size, 0.3)
    incl = by_rule(
        evaluate_sensor(
            spec(
                SensorKind.INCLINOMETER,
                ("d05m", "d20m"),
                thresholds={"rate_mm_per_day": ThresholdSet(Direction.ABOVE, blue=1.0, yellow=5.0)},
            ),
            SensorWindow(t, {"d05m": shallow, "d20m": deep}, float(t[-1])),
        )
    )
    acc = incl["displacement.acceleration.internal"]
    assert acc.evidence["channel"] == "d05m"
    assert incl["threshold.rate_mm_per_day"].level is Level.BLUE


def test_piezometer_below_is_worse_and_a_single_spike_cannot_set_the_level() -> None:
    t = grid(3)
    depth = np.full(t.size, 6.0) + white(4, t.size, 0.02)
    sp = spec(
        SensorKind.PIEZOMETER,
        ("depth_m",),
        thresholds={"depth_m": ThresholdSet(Direction.BELOW, yellow=5.0, orange=4.4, red=4.0)},
    )
    res = by_rule(evaluate_sensor(sp, SensorWindow(t, {"depth_m": depth}, float(t[-1]))))
    assert res["threshold.depth_m"].level is Level.NONE
    spiked = depth.copy()
    spiked[-1] = 3.0
    res = by_rule(evaluate_sensor(sp, SensorWindow(t, {"depth_m": spiked}, float(t[-1]))))
    assert res["threshold.depth_m"].level is Level.NONE
    shallow = depth.copy()
    shallow[-3:] = 4.2
    res = by_rule(evaluate_sensor(sp, SensorWindow(t, {"depth_m": shallow}, float(t[-1]))))
    assert res["threshold.depth_m"].level is Level.ORANGE
    assert "浸润线埋深" in res["threshold.depth_m"].explanation_zh


def test_pond_freeboard_only_with_a_known_crest() -> None:
    t = grid(2)
    level = np.full(t.size, 245.0)
    th = {
        "level_m": ThresholdSet(Direction.ABOVE, yellow=246.0),
        "freeboard_m": ThresholdSet(Direction.BELOW, yellow=3.0, red=1.0),
    }
    w = SensorWindow(t, {"level_m": level}, float(t[-1]))
    without = by_rule(evaluate_sensor(spec(SensorKind.POND_LEVEL, ("level_m",), thresholds=th), w))
    assert "threshold.freeboard_m" not in without
    assert without["threshold.level_m"].level is Level.NONE
    with_crest = by_rule(
        evaluate_sensor(spec(SensorKind.POND_LEVEL, ("level_m",), thresholds=th, crest_elevation_m=247.5), w)
    )
    fb = with_crest["threshold.freeboard_m"]
    assert fb.evidence["value"] == pytest.approx(2.5)
    assert fb.level is Level.YELLOW


def test_beach_length() -> None:
    t = grid(2, 6 * HOUR)
    sp = spec(
        SensorKind.BEACH,
        ("length_m",),
        interval_s=6 * HOUR,
        thresholds={"length_m": ThresholdSet(Direction.BELOW, red=100.0)},
    )
    res = by_rule(evaluate_sensor(sp, SensorWindow(t, {"length_m": np.full(t.size, 95.0)}, float(t[-1]))))
    assert res["threshold.length_m"].level is Level.RED


def test_rain_sums_by_measurement_time_and_standard_classes_without_thresholds() -> None:
    t = grid(2, 600.0)
    rain = np.zeros(t.size)
    rain[-6:] = 10.0  # 60 mm in the newest hour
    rain[-60:-6] = 1.0  # 54 mm earlier in the day
    sp = spec(SensorKind.RAIN, ("rain_mm",), interval_s=600.0)
    res = by_rule(evaluate_sensor(sp, SensorWindow(t, {"rain_mm": rain}, float(t[-1]))))
    assert "threshold.rain_1h_mm" not in res
    day = res["threshold.rain_24h_mm"]
    assert day.evidence["value"] == pytest.approx(114.0)
    assert day.level is Level.ORANGE  # 大暴雨 ≥ 100 mm
    assert "standard rainstorm classes" in str(day.evidence["threshold_source"])
    sp1 = spec(
        SensorKind.RAIN,
        ("rain_mm",),
        interval_s=600.0,
        thresholds={"rain_1h_mm": ThresholdSet(Direction.ABOVE, yellow=30.0, red=70.0)},
    )
    res = by_rule(evaluate_sensor(sp1, SensorWindow(t, {"rain_mm": rain}, float(t[-1]))))
    assert res["threshold.rain_1h_mm"].evidence["value"] == pytest.approx(60.0)
    assert res["threshold.rain_1h_mm"].level is Level.YELLOW
    assert res["health.stuck"].level is Level.NONE  # a dry gauge reads 0 for days


def test_health_silent_stuck_and_spikes() -> None:
    t = grid(3)
    x = white(5, t.size, 0.02) + 6.0
    sp = spec(SensorKind.PIEZOMETER, ("depth_m",))
    fresh = by_rule(evaluate_sensor(sp, SensorWindow(t, {"depth_m": x}, float(t[-1]) + 1800)))
    assert fresh["health.silent"].level is Level.NONE
    quiet = by_rule(evaluate_sensor(sp, SensorWindow(t, {"depth_m": x}, float(t[-1]) + 4 * HOUR)))
    assert quiet["health.silent"].level is Level.BLUE
    assert quiet["health.silent"].at_s == float(t[-1]) + 4 * HOUR
    gone = by_rule(evaluate_sensor(sp, SensorWindow(t, {"depth_m": x}, float(t[-1]) + 2 * DAY)))
    assert gone["health.silent"].level is Level.YELLOW

    stuck = x.copy()
    stuck[-30:] = 6.01
    res = by_rule(evaluate_sensor(sp, SensorWindow(t, {"depth_m": stuck}, float(t[-1]))))
    assert res["health.stuck"].level is Level.BLUE
    assert res["health.stuck"].evidence["run_readings"] == 30

    one = x.copy()
    one[-10] += 1.0
    assert (
        by_rule(evaluate_sensor(sp, SensorWindow(t, {"depth_m": one}, float(t[-1]))))["health.spike"].level
        is Level.NONE
    )
    many = x.copy()
    many[[-20, -14, -8, -3]] += 1.0
    res = by_rule(evaluate_sensor(sp, SensorWindow(t, {"depth_m": many}, float(t[-1]))))
    assert res["health.spike"].level is Level.BLUE
    assert res["health.spike"].evidence["worst_channel_spikes"] == 4


def test_empty_window_reports_silence_only() -> None:
    empty = np.zeros(0)
    res = by_rule(
        evaluate_sensor(
            spec(SensorKind.GNSS, ("east_mm", "north_mm", "up_mm")),
            SensorWindow(empty, {"east_mm": empty, "north_mm": empty, "up_mm": empty}, T0),
        )
    )
    assert set(res) == {"health.silent"}
    assert res["health.silent"].level is Level.YELLOW


def test_all_nan_displacement_does_not_raise() -> None:
    t = grid(2)
    nan = np.full(t.size, np.nan)
    res = by_rule(
        evaluate_sensor(
            spec(SensorKind.GNSS, ("east_mm", "north_mm", "up_mm")),
            SensorWindow(t, {"east_mm": nan, "north_mm": nan, "up_mm": nan}, float(t[-1])),
        )
    )
    assert res["displacement.acceleration.horizontal"].level is Level.NONE
    assert res["health.silent"].level is Level.YELLOW
    for r in res.values():
        check_result(r)


def test_stored_references_are_what_displacement_is_measured_from_and_the_evidence_says_so() -> None:
    """The worker's references (here first readings for east, a re-baseline for north)
    replace the registry's baseline; the cumulative value is the distance from them and the
    evidence names their source and date."""
    from analytics import ChannelReference

    window, _ = gnss_window()
    th = {"horizontal_mm": ThresholdSet(Direction.ABOVE, yellow=600.0, orange=800.0, red=1000.0)}
    channels = ("east_mm", "north_mm", "up_mm")
    registry = {"east_mm": 100.0, "north_mm": -50.0, "up_mm": 20.0}

    def judged(**refs: ChannelReference) -> dict[str, RuleResult]:
        sp = spec(SensorKind.GNSS, channels, baseline=registry, references=refs, thresholds=th)
        return by_rule(evaluate_sensor(sp, window))

    plain = judged()
    same = judged(
        east_mm=ChannelReference(100.0, "first_reading", T0),
        north_mm=ChannelReference(-50.0, "rebaseline", T0 + DAY),
    )
    far = judged(
        east_mm=ChannelReference(100.0, "first_reading", T0),
        north_mm=ChannelReference(-950.0, "rebaseline", T0 + DAY),
    )
    # the same numbers as the registry's baseline give the same judgement
    for rule, r in plain.items():
        assert same[rule].level is r.level, rule
        assert same[rule].explanation_en == r.explanation_en
    assert plain["threshold.horizontal_mm"].evidence["baseline_source"] == "registry"
    assert "reference_mm" not in plain["threshold.horizontal_mm"].evidence
    ev = same["threshold.horizontal_mm"].evidence
    assert ev["reference_source"] == "first_reading/rebaseline"
    assert ev["reference_mm"] == [100.0, -50.0]
    assert ev["reference_since"] == datetime.fromtimestamp(T0 + DAY, tz=UTC).isoformat().replace("+00:00", "Z")
    # 900 mm further south, the reference puts the point ~900 mm further out
    near_mm, far_mm = (
        same["threshold.horizontal_mm"].evidence["value"],
        far["threshold.horizontal_mm"].evidence["value"],
    )
    assert isinstance(near_mm, float)
    assert isinstance(far_mm, float)
    assert far_mm > near_mm + 800.0
    assert far["threshold.horizontal_mm"].level is Level.ORANGE  # 995 mm: orange from 800, red from 1000
