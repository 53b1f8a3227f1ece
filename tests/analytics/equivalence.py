"""A fixed corpus of sensor windows and the recorded output of ``evaluate_sensor`` on it.

The detectors are optimised for throughput (``bench/bench_analytics.py``); every such
change must leave the decisions alone. ``equivalence_fixture.json`` holds what the
reference implementation concluded on this corpus; ``test_equivalence.py`` checks that
the current code reproduces it: levels, rule names, explanations and forecast times
exactly, evidence numbers to 1e-9 relative.

Regenerate (only when the science changes on purpose, never to make an optimisation pass):
``python -m tests.analytics.equivalence``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analytics.types import RuleResult, SensorSpec, SensorWindow
from core.model import SensorKind
from core.thresholds import Direction, ThresholdSet
from simulators.scenarios import (
    Series,
    apply_faults,
    crack_series,
    displacement_series,
    inclinometer_series,
    pond_and_phreatic_series,
    rain_series,
)
from tests.analytics import series as ts

FIXTURE = Path(__file__).with_name("equivalence_fixture.json")
T0 = 1_767_225_600.0
HOUR = 3_600.0
DAY = 86_400.0
GNSS_CH = ("east_mm", "north_mm", "up_mm")


@dataclass(frozen=True)
class Case:
    name: str
    spec: SensorSpec
    window: SensorWindow


def _rates(blue: float = 2.0) -> ThresholdSet:
    return ThresholdSet(Direction.ABOVE, blue=blue, yellow=5.0, orange=8.0, red=10.0)


def _cum() -> ThresholdSet:
    return ThresholdSet(Direction.ABOVE, blue=20.0, yellow=50.0, orange=80.0, red=150.0)


def _gnss_spec(variant: int, kind: SensorKind = SensorKind.GNSS, interval_s: float = HOUR) -> SensorSpec:
    th: dict[str, ThresholdSet] = {}
    baseline: dict[str, float] = {}
    if variant % 3 == 1:
        th = {"horizontal_mm_per_day": _rates(), "vertical_mm_per_day": _rates(), "horizontal_mm": _cum()}
    elif variant % 3 == 2:
        th = {"vertical_mm": _cum()}
        baseline = {"east_mm": 0.5, "north_mm": -0.5, "up_mm": 1.0}
    return SensorSpec(10 + variant, f"G{variant}", kind, GNSS_CH, interval_s, baseline=baseline, thresholds=th)


def _window(s: Series, end_s: float, span_s: float, *, lag_s: float = 60.0) -> SensorWindow:
    keep = (s.t_s <= end_s) & (s.t_s > end_s - span_s)
    return SensorWindow(s.t_s[keep].copy(), {ch: v[keep].copy() for ch, v in s.values.items()}, end_s + lag_s)


def _gnss_cases() -> Iterator[Case]:
    i = 0
    for scenario in ("stable", "creep", "step"):
        for seed in range(6):
            faults = seed % 2 == 1
            s = displacement_series(
                scenario, start_s=T0, duration_s=90 * DAY, interval_s=HOUR, seed=seed, v0_mm_per_day=2.0, n_steps=4
            )
            if faults:
                s = apply_faults(s, seed=seed + 99, gap_prob=0.1, outages=2, spike_prob=0.005)
            for end_day, span_day in ((40.0, 30.0), (70.0, 30.0), (89.9, 2000 * HOUR / DAY)):
                i += 1
                yield Case(
                    f"gnss {scenario} seed {seed} faults {faults} end {end_day}",
                    _gnss_spec(i),
                    _window(s, T0 + end_day * DAY, span_day * DAY),
                )
    for seed in range(6):
        for v0, tdays in ((2.0, 7.0), (5.0, 7.0), (0.5, 10.0)):
            s = displacement_series(
                "tertiary",
                start_s=T0,
                duration_s=40 * DAY,
                interval_s=HOUR,
                seed=seed,
                v0_mm_per_day=v0,
                tertiary_days=tdays,
                failure_s=T0 + 40 * DAY,
            )
            if seed % 3 == 2:
                s = apply_faults(s, seed=seed + 7, gap_prob=0.1, outages=2, spike_prob=0.005)
            for before_h in (96.0, 48.0, 20.0, 6.0):
                i += 1
                yield Case(
                    f"gnss tertiary v0 {v0} {tdays} d seed {seed} {before_h} h before",
                    _gnss_spec(i),
                    _window(s, T0 + 40 * DAY - before_h * HOUR, 30 * DAY),
                )
    # 30-minute sessions, a young series, a tiny one, a channel missing, total station
    s = displacement_series(
        "tertiary",
        start_s=T0,
        duration_s=40 * DAY,
        interval_s=1800.0,
        seed=3,
        v0_mm_per_day=2.0,
        tertiary_days=7.0,
        failure_s=T0 + 40 * DAY,
    )
    for before_h in (60.0, 30.0):
        i += 1
        yield Case(
            f"gnss 30 min {before_h} h",
            _gnss_spec(i, interval_s=1800.0),
            _window(s, T0 + 40 * DAY - before_h * HOUR, 30 * DAY),
        )
    young = displacement_series("creep", start_s=T0, duration_s=5 * DAY, interval_s=HOUR, seed=4, v0_mm_per_day=8.0)
    for span_d in (5.0, 3.0, 1.0, 0.1):
        i += 1
        yield Case(f"gnss young {span_d} d", _gnss_spec(1), _window(young, T0 + 5 * DAY, span_d * DAY))
    w = _window(young, T0 + 5 * DAY, 5 * DAY)
    up = w.values["up_mm"].copy()
    up[::3] = np.nan
    yield Case("gnss young up partly missing", _gnss_spec(4), SensorWindow(w.t_s, {**w.values, "up_mm": up}, w.now_s))
    yield Case(
        "gnss no up channel",
        _gnss_spec(5),
        SensorWindow(w.t_s, {"east_mm": w.values["east_mm"], "north_mm": w.values["north_mm"]}, w.now_s + 3 * DAY),
    )
    ts_series = displacement_series(
        "step", start_s=T0, duration_s=60 * DAY, interval_s=2 * HOUR, seed=8, noise_h_mm=0.5, noise_v_mm=0.8
    )
    for end_day in (20.0, 40.0, 59.0):
        i += 1
        yield Case(
            f"total station {end_day}",
            _gnss_spec(i, SensorKind.TOTAL_STATION, 2 * HOUR),
            _window(ts_series, T0 + end_day * DAY, 30 * DAY),
        )
    # the analytics test series (white noise, independent of the simulators)
    for seed in range(4):
        c = ts.tertiary(seed, end_before_failure_s=(seed + 1) * 10 * HOUR)
        st = ts.stable(seed)
        for label, cr in (("tertiary", c), ("stable", st)):
            vals = {
                "east_mm": cr.disp_mm * 0.6 + ts.white(seed + 1, cr.t_s.size, 1.0),
                "north_mm": cr.disp_mm * 0.8 + ts.white(seed + 2, cr.t_s.size, 1.0),
                "up_mm": -0.3 * cr.disp_mm + ts.correlated(seed + 3, cr.t_s.size, 4.0, HOUR),
            }
            i += 1
            yield Case(
                f"tests series {label} {seed}", _gnss_spec(i), SensorWindow(cr.t_s, vals, float(cr.t_s[-1]) + 60)
            )


def _other_cases() -> Iterator[Case]:
    for k, scenario in enumerate(("stable", "creep", "tertiary", "step")):
        fail = T0 + 40 * DAY if scenario == "tertiary" else None
        c = crack_series(
            scenario, start_s=T0, duration_s=40 * DAY, interval_s=HOUR, seed=k, v0_mm_per_day=0.3, failure_s=fail
        )
        th = {"width_mm_per_day": _rates(0.2), "width_mm": _cum()} if k % 2 else {}
        spec = SensorSpec(100 + k, f"C{k}", SensorKind.CRACK, ("width_mm",), HOUR, thresholds=th)
        for before_h in (72.0, 12.0):
            yield Case(f"crack {scenario} {before_h}", spec, _window(c, T0 + 40 * DAY - before_h * HOUR, 30 * DAY))
        chans = ("d05_mm", "d10_mm", "d20_mm")
        inc = inclinometer_series(
            scenario,
            channels=chans,
            depths_m=(5.0, 10.0, 20.0),
            slip_depth_m=12.0,
            start_s=T0,
            duration_s=40 * DAY,
            interval_s=HOUR,
            seed=k,
            v0_mm_per_day=1.0,
            failure_s=fail,
        )
        th_i = {"rate_mm_per_day": _rates(), "cumulative_mm": _cum()} if k % 2 == 0 else {}
        spec_i = SensorSpec(200 + k, f"I{k}", SensorKind.INCLINOMETER, chans, HOUR, thresholds=th_i)
        for before_h in (72.0, 12.0):
            yield Case(
                f"inclinometer {scenario} {before_h}", spec_i, _window(inc, T0 + 40 * DAY - before_h * HOUR, 30 * DAY)
            )
    for seed in range(4):
        rain = rain_series(start_s=T0, duration_s=40 * DAY, interval_s=HOUR, seed=seed)
        pp = pond_and_phreatic_series(rain, seed=seed, scenario="clogging" if seed % 2 else "normal")
        th_r = {"rain_1h_mm": ThresholdSet(Direction.ABOVE, blue=5.0, yellow=10.0)} if seed % 2 else {}
        if seed == 2:
            th_r["rain_24h_mm"] = ThresholdSet(Direction.ABOVE, yellow=20.0, orange=40.0)
        r_spec = SensorSpec(300 + seed, f"R{seed}", SensorKind.RAIN, ("rain_mm",), HOUR, thresholds=th_r)
        for end_day in (20.0, 39.0):
            yield Case(f"rain {seed} {end_day}", r_spec, _window(rain, T0 + end_day * DAY, 30 * DAY))
        depth = ThresholdSet(Direction.BELOW, blue=7.5, yellow=6.5, orange=5.5, red=4.5)
        p_spec = SensorSpec(
            400 + seed, f"P{seed}", SensorKind.PIEZOMETER, ("depth_m",), HOUR, thresholds={"depth_m": depth}
        )
        l_spec = SensorSpec(
            500 + seed,
            f"L{seed}",
            SensorKind.POND_LEVEL,
            ("level_m",),
            HOUR,
            thresholds={
                "level_m": ThresholdSet(Direction.ABOVE, yellow=245.5, red=246.5),
                "freeboard_m": ThresholdSet(Direction.BELOW, yellow=2.0, red=1.0),
            },
            crest_elevation_m=248.0,
        )
        b_spec = SensorSpec(
            600 + seed,
            f"B{seed}",
            SensorKind.BEACH,
            ("length_m",),
            HOUR,
            thresholds={"length_m": ThresholdSet(Direction.BELOW, yellow=120.0, red=80.0)},
        )
        faulty = apply_faults(pp, seed=seed, gap_prob=0.05, spike_prob=0.01) if seed % 2 else pp
        for end_day in (20.0, 39.0):
            for spec, ch in ((p_spec, "depth_m"), (l_spec, "level_m"), (b_spec, "length_m")):
                w = _window(faulty, T0 + end_day * DAY, 30 * DAY, lag_s=60.0 if end_day < 30 else 2 * DAY)
                yield Case(f"{spec.kind} {seed} {end_day}", spec, SensorWindow(w.t_s, {ch: w.values[ch]}, w.now_s))
    # stuck and empty windows
    t = ts.grid(3.0)
    stuck = SensorSpec(700, "P-stuck", SensorKind.PIEZOMETER, ("depth_m",), HOUR)
    yield Case("piezometer stuck", stuck, SensorWindow(t, {"depth_m": np.full(t.size, 8.0)}, float(t[-1])))
    yield Case("piezometer empty", stuck, SensorWindow(np.zeros(0), {"depth_m": np.zeros(0)}, T0))


def corpus() -> list[Case]:
    return [*_gnss_cases(), *_other_cases()]


def input_digest(case: Case) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(case.window.t_s, dtype=np.float64).tobytes())
    for ch in sorted(case.window.values):
        h.update(ch.encode())
        h.update(np.ascontiguousarray(case.window.values[ch], dtype=np.float64).tobytes())
    h.update(repr(case.window.now_s).encode())
    return h.hexdigest()[:16]


def result_record(r: RuleResult) -> dict[str, Any]:
    return {
        "rule": r.rule,
        "level": r.level.name,
        "at_s": r.at_s,
        "evidence": dict(r.evidence),
        "explanation_en": r.explanation_en,
        "explanation_zh": r.explanation_zh,
        "rule_version": r.rule_version,
        "forecast_failure_s": r.forecast_failure_s,
    }


def diff_values(want: object, got: object, path: str, *, rel: float = 1e-9) -> list[str]:
    """Differences between a recorded value and the current one: floats to ``rel``, all else exactly."""
    if isinstance(want, dict) and isinstance(got, dict):
        out: list[str] = []
        if set(want) != set(got):
            out.append(f"{path}: keys {sorted(set(want) ^ set(got))} differ")
        for k in sorted(set(want) & set(got)):
            out.extend(diff_values(want[k], got[k], f"{path}.{k}", rel=rel))
        return out
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return [f"{path}: length {len(want)} != {len(got)}"]
        return [d for i, (a, b) in enumerate(zip(want, got, strict=True)) for d in diff_values(a, b, f"{path}[{i}]")]
    if isinstance(want, float) or isinstance(got, float):
        if isinstance(want, bool) or isinstance(got, bool) or want is None or got is None:
            return [] if want == got else [f"{path}: {want!r} != {got!r}"]
        a, b = float(want), float(got)  # type: ignore[arg-type]
        if a == b or (math.isnan(a) and math.isnan(b)):
            return []
        if abs(a - b) <= rel * max(abs(a), abs(b)):
            return []
        # a p-value far in the tail (1e-120) carries only a few significant digits: the
        # special functions behind it differ by ~1e-8 relative between numpy/scipy builds
        if path.endswith("_p") and abs(a - b) <= 1e-6 * max(abs(a), abs(b)):
            return []
        # evidence rounded to 4 decimals may flip the last digit on a rounding tie
        if abs(a - b) <= 1.0000001e-4 and (abs(round(a, 4) - a) < 1e-12 and abs(round(b, 4) - b) < 1e-12):
            return [f"{path}: {a!r} != {b!r} (a 4-decimal rounding tie)"]
        return [f"{path}: {a!r} != {b!r}"]
    return [] if want == got else [f"{path}: {want!r} != {got!r}"]


def record() -> dict[str, Any]:
    from analytics import evaluate_sensor

    cases = corpus()
    out = []
    for case in cases:
        res = evaluate_sensor(case.spec, case.window)
        out.append({"name": case.name, "input": input_digest(case), "results": [result_record(r) for r in res]})
    return {"cases": out}


def main() -> None:
    data = record()
    FIXTURE.write_text(json.dumps(data, ensure_ascii=False, indent=0, allow_nan=False) + "\n")
    n = sum(len(c["results"]) for c in data["cases"])
    print(f"{len(data['cases'])} windows, {n} results -> {FIXTURE}")


if __name__ == "__main__":
    main()
