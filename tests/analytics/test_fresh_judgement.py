"""A level judged from scratch equals the level an hour-by-hour run holds.

After a restart, a backlog arriving at once or a replay, the worker judges a sensor once,
at its newest reading, with no alert state. Hour by hour, :func:`analytics.alarm.decide`
holds every level for its dwell. The detector judges the prefixes of the last dwell too
(``AccelerationParams.hold_s``) when the window does not say it was judged before
(``SensorWindow.judged_until_s``), so both must agree at the final hours before failure.
"""

from __future__ import annotations

import numpy as np
import pytest

from analytics.alarm import decide
from analytics.backtest import DWELL_S, FAMILIES, RATE_RULES, RATE_THRESHOLDS, Family, family_series
from analytics.evaluate import evaluate_sensor
from analytics.types import SensorSpec, SensorWindow
from core.model import Level, SensorKind

HOUR = 3600.0
DAY = 86_400.0
#: Hours replayed one by one before failure, and the final hours compared.
REPLAYED_H = 24
FINAL_H = 6
FAILING = [f for f in FAMILIES if f.failing]


def _judged_rules(rule: str) -> bool:
    return rule.startswith("displacement.acceleration.") or rule in RATE_RULES


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fam", FAILING, ids=[f.name for f in FAILING])
def test_level_judged_from_scratch_equals_the_level_held_hour_by_hour(fam: Family, seed: int) -> None:
    s = family_series(fam, seed)
    t, values = s.t_s, s.values
    first = t < t[0] + DAY
    spec = SensorSpec(
        seed,
        "FRESH",
        SensorKind.GNSS,
        tuple(values),
        fam.interval_s,
        baseline={ch: float(np.nanmedian(v[first])) for ch, v in values.items()},
        thresholds=RATE_THRESHOLDS,
    )
    # The window holds the whole record: a trailing 30-day window would give the run an
    # hour ago six hours of old readings that a judgement now cannot see.
    state: dict[str, tuple[Level | None, float | None, float | None, Level | None]] = {}
    previous: float | None = None
    compared = 0
    for end in np.arange(t[-1] - REPLAYED_H * HOUR, t[-1] + 1.0, HOUR):
        hi = int(np.searchsorted(t, end, side="right"))
        window = {ch: v[:hi] for ch, v in values.items()}
        held: dict[str, Level] = {}
        for r in evaluate_sensor(spec, SensorWindow(t[:hi], window, float(end), previous)):
            if _judged_rules(r.rule):
                cur, since, pend, pend_lv = state.get(r.rule, (None, None, None, None))
                d = decide(cur, since, pend, r, dwell_s=DWELL_S, pending_level=pend_lv)
                state[r.rule] = (d.level, d.since_s, d.pending_since_s, d.pending_level)
                held[r.rule] = d.level
        previous = float(t[hi - 1])
        if end > t[-1] - FINAL_H * HOUR:
            fresh = {
                r.rule: r.level
                for r in evaluate_sensor(spec, SensorWindow(t[:hi], window, float(end)))
                if _judged_rules(r.rule)
            }
            left_h = (float(s.truth.failure_s or 0.0) - end) / HOUR
            assert fresh == held, f"{left_h:.0f} h before failure"
            compared += 1
    assert compared == FINAL_H
