"""One detector for every time scale: minutes (crack meters, fast sampling in an alarm
state) to days (daily GNSS), from the first days of a record, on real and simulated data.

The real records are read in place from ``../shared/data/real`` (tests/analytics/real_records.py);
a missing record fails the test.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from analytics.acceleration import Acceleration, assess_acceleration, assess_acceleration_many
from core.model import Level
from simulators.scenarios import crack_series, displacement_series
from tests.analytics.real_records import lanzada_f1, outang_daily

HOUR = 3600.0
DAY = 86_400.0
T0 = 1_767_225_600.0


def _replay(t: np.ndarray, x: np.ndarray, *, interval_s: float, start_s: float, step_s: float) -> list[Acceleration]:
    """Judge the record every ``step_s`` from ``start_s``, as the worker does (each
    evaluation knows the previous one), the whole record so far in the window."""
    out = []
    previous: float | None = None
    for end in np.arange(start_s, t[-1] + 1.0, step_s):
        hi = int(np.searchsorted(t, end, side="right"))
        if hi < 3:
            continue
        a = assess_acceleration_many(
            t[:hi], x[None, :hi], interval_s=interval_s, with_rate=[False], judged_until_s=previous
        )[0]
        out.append(a)
        previous = float(t[hi - 1])
    return out


def _first_at(results: list[Acceleration], level: Level) -> float | None:
    return next((a.at_s for a in results if a.level >= level), None)


def test_the_real_lanzada_crack_meter_warns_hours_before_the_rock_slope_failure() -> None:
    """Crack meter F1, 5-minute record (digitised), two days long: the velocity rose about
    forty-fold to the failure of 11 Nov 2025 ~08:15 CET. The 12-hour scale alone said
    "only 3 usable blocks" until 30 minutes before it."""
    rec = lanzada_f1()
    t, x = rec.t_s, rec.disp_mm["F1"]
    assert rec.failure_s is not None
    failure_earliest = rec.failure_s - 15 * 60  # the label's uncertainty: −15/+45 min
    results = _replay(t, x, interval_s=300.0, start_s=float(t[0]) + 6 * HOUR, step_s=HOUR)
    orange = _first_at(results, Level.ORANGE)
    red = _first_at(results, Level.RED)
    assert orange is not None
    assert failure_earliest - orange >= 6 * HOUR
    assert red is not None
    assert failure_earliest - red >= 2 * HOUR
    judged = next(a for a in results if a.at_s == orange)
    assert judged.scale < 1.0  # found at the fast time scale


def test_the_real_outang_daily_gnss_acceleration_is_flagged_and_never_red() -> None:
    """Daily GNSS of the Outang landslide: in Sept–Oct 2017 rainfall and reservoir drawdown
    sped all eight points up (to ~9 mm/day) and they slowed again; no failure. Judged daily
    on a 30-day window (the worker's), every point is flagged in the episode, none is red
    from mid-July to mid-December 2017 (the whole record: docs/detection.md)."""
    rec = outang_daily()
    t = rec.t_s
    names = list(rec.disp_mm)
    x = np.stack([rec.disp_mm[n] for n in names])
    start = datetime.fromisoformat("2017-07-15T00:00:00+08:00").timestamp()
    stop = datetime.fromisoformat("2017-12-15T00:00:00+08:00").timestamp()
    ep0 = datetime.fromisoformat("2017-09-01T00:00:00+08:00").timestamp()
    ep1 = datetime.fromisoformat("2017-10-31T00:00:00+08:00").timestamp()
    flagged = {n: False for n in names}
    worst = Level.NONE
    previous: float | None = None
    for i in np.flatnonzero((t >= start) & (t <= stop)):
        lo = int(np.searchsorted(t, t[i] - 30 * DAY, side="right"))
        found = assess_acceleration_many(
            t[lo : i + 1], x[:, lo : i + 1], interval_s=DAY, with_rate=[False] * len(names), judged_until_s=previous
        )
        previous = float(t[i])
        for n, a in zip(names, found, strict=True):
            worst = max(worst, a.level)
            if ep0 <= t[i] <= ep1 and a.level >= Level.BLUE:
                flagged[n] = True
    assert flagged == {n: True for n in names}
    assert worst < Level.RED


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_five_minute_crack_meter_failing_over_two_days_after_two_days_of_record_warns_hours_ahead(
    seed: int,
) -> None:
    """Installed two days before the acceleration starts (as in an emergency when cracks
    appear), read every 5 minutes, creeping at 1 mm/day, then Voight's law for two days."""
    s = crack_series(
        "tertiary",
        start_s=T0,
        duration_s=4 * DAY,
        interval_s=300.0,
        seed=seed,
        v0_mm_per_day=1.0,
        tertiary_days=2.0,
        failure_s=T0 + 4 * DAY,
    )
    assert s.truth.failure_s is not None
    results = _replay(s.t_s, s.values["width_mm"], interval_s=300.0, start_s=T0 + DAY, step_s=HOUR)
    orange = _first_at(results, Level.ORANGE)
    assert orange is not None
    assert s.truth.failure_s - orange >= 8 * HOUR
    assert _first_at(results, Level.YELLOW) is not None


@pytest.mark.parametrize("seed", [0, 1])
def test_sampling_that_switches_from_hourly_to_ten_minutes_does_not_confuse_the_detector(seed: int) -> None:
    """Hourly GNSS that switches to 10-minute sampling for its last two days (an alarm state),
    judged with either nominal interval: a failing slope stays red a day ahead, a slope with
    bursts stays quiet."""
    for scenario, kw in (("tertiary", {"v0_mm_per_day": 2.0, "tertiary_days": 7.0}), ("step", {"n_steps": 12})):
        fine = displacement_series(
            scenario,  # type: ignore[arg-type]
            start_s=T0,
            duration_s=40 * DAY,
            interval_s=600.0,
            seed=seed,
            failure_s=T0 + 40 * DAY if scenario == "tertiary" else None,
            **kw,  # type: ignore[arg-type]
        )
        t = fine.t_s
        keep = (t >= T0 + 38 * DAY) | (np.round((t - T0) / 600.0) % 6 == 0)
        x = np.hypot(fine.values["east_mm"], fine.values["north_mm"])[keep]
        t = t[keep]
        hi = int(np.searchsorted(t, t[-1] - 23 * HOUR, side="right"))
        levels = {iv: assess_acceleration(t[:hi], x[:hi], interval_s=iv).level for iv in (HOUR, 600.0)}
        assert levels[HOUR] == levels[600.0], scenario
        if scenario == "tertiary":
            assert levels[HOUR] >= Level.ORANGE
        else:
            assert levels[HOUR] <= Level.BLUE
