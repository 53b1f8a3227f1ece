"""Plan a simulated fleet from a registry: a scenario and a generated series per sensor.

Pure (numpy, no I/O): :func:`plan_fleet` turns a :class:`core.registry.RegistryDoc`
into :class:`~simulators.publisher.SensorStream` objects with their ground truth,
ready for :class:`~simulators.publisher.Publisher`.

Scenario by kind (seeded per sensor, overridable per sensor):

- GNSS, total station, crack meter, inclinometer: ``stable``, ``creep`` or
  ``step``; ``step`` bursts follow the mine's heavier storms, as rain-driven
  movement does. ``tertiary`` only when asked for (``--fail``).
- piezometer, pond level, dry beach: the pond of the mine responds to the mine's
  rain (``normal``); a piezometer may be set to ``clogging``.
- rain gauge: the mine's rain (one storm history per mine, shared by its sensors).
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final, cast

import numpy as np

from core.model import MineKind, SensorKind
from core.registry import MineDoc, RegistryDoc, SensorDoc, SiteDoc, sensor_channels
from simulators.publisher import SensorStream
from simulators.scenarios import (
    DAY_S,
    DisplacementScenario,
    FloatArray,
    GroundTruth,
    PhreaticScenario,
    Series,
    apply_faults,
    crack_series,
    displacement_series,
    inclinometer_series,
    pond_and_phreatic_series,
    rain_series,
    time_grid,
)

DISPLACEMENT_KINDS: Final = frozenset(
    {SensorKind.GNSS, SensorKind.TOTAL_STATION, SensorKind.CRACK, SensorKind.INCLINOMETER}
)
POND_KINDS: Final = frozenset({SensorKind.PIEZOMETER, SensorKind.POND_LEVEL, SensorKind.BEACH})

#: Scenarios a sensor of each kind may be given.
SCENARIOS_BY_KIND: Final[Mapping[SensorKind, tuple[str, ...]]] = {
    **{k: ("stable", "creep", "tertiary", "step") for k in DISPLACEMENT_KINDS},
    SensorKind.PIEZOMETER: ("normal", "clogging"),
    SensorKind.POND_LEVEL: ("normal",),
    SensorKind.BEACH: ("normal",),
    SensorKind.RAIN: ("rain",),
}

#: Resolution values are sent with: what real instruments report.
_DECIMALS_MM: Final = 2
_DECIMALS_M: Final = 3
#: A storm this heavy (mm) may start a step burst on a slope.
_STEP_STORM_MM: Final = 25.0
_RAIN_INTERVAL_S: Final = 600.0

SensorKey = tuple[str, str]


class FleetError(ValueError):
    """A fleet cannot be planned as asked (unknown sensor, scenario not valid for its kind)."""


@dataclass(frozen=True)
class SensorFaults:
    """Per-sample faults applied to every stream (see :func:`simulators.scenarios.apply_faults`)."""

    gap_prob: float = 0.0
    spike_prob: float = 0.0
    outages: int = 0
    outage_s: float = 6 * 3600.0


@dataclass(frozen=True)
class FleetPlan:
    """Streams for every sensor of a registry over ``[start_s, end_s]``."""

    start_s: float
    end_s: float
    streams: tuple[SensorStream, ...]

    def stream(self, mine: str, sensor: str) -> SensorStream:
        for s in self.streams:
            if s.mine == mine and s.sensor == sensor:
                return s
        raise KeyError(f"{mine}/{sensor}")

    def truth(self) -> dict[SensorKey, GroundTruth]:
        return {(s.mine, s.sensor): s.truth for s in self.streams if s.truth is not None}

    def failing(self) -> list[SensorKey]:
        return [k for k, t in self.truth().items() if t.fails]

    def reading_count(self) -> int:
        return sum(len(s) for s in self.streams)


def sensor_seed(seed: int, *parts: str) -> int:
    """A stable per-sensor seed (``hash()`` is salted per process; crc32 is not)."""
    return int(np.random.SeedSequence([seed, zlib.crc32("/".join(parts).encode())]).generate_state(1)[0])


def resolve_sensor(registry: RegistryDoc, ref: str) -> SensorKey:
    """``MINE/SENSOR``, or a bare sensor code if exactly one mine has it."""
    if "/" in ref:
        mine, _, sensor = ref.partition("/")
        for m in registry.mines:
            if m.code == mine and any(s.code == sensor for site in m.sites for s in site.sensors):
                return (mine, sensor)
        raise FleetError(f"sensor {ref!r} is not in the registry")
    hits = [(m.code, s.code) for m in registry.mines for site in m.sites for s in site.sensors if s.code == ref]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise FleetError(f"sensor {ref!r} is not in the registry")
    raise FleetError(f"sensor code {ref!r} is used in several mines; write MINE/SENSOR")


def plan_fleet(
    registry: RegistryDoc,
    *,
    start_s: float,
    end_s: float,
    seed: int = 0,
    overrides: Mapping[SensorKey, str] | None = None,
    failure_s: float | None = None,
    tertiary_days: float = 10.0,
    tertiary_v0_mm_per_day: float = 1.5,
    sensor_faults: SensorFaults | None = None,
) -> FleetPlan:
    """Generate every sensor's readings over ``[start_s, end_s]``.

    overrides: ``(mine, sensor) -> scenario``; ``tertiary`` fails at ``failure_s``
      (default ``end_s``), which may lie beyond ``end_s``. Its onset is
      ``tertiary_days`` before failure, shortened to fit inside the window; it creeps
      at ``tertiary_v0_mm_per_day`` before (1.5 mm/day: about 110 mm over the last
      ten days, 10 mm/day a day and a half before failure).
    Samples fall on whole multiples of each sensor's ``interval_s``, as loggers
    sample; ``seq`` numbers count samples from ``start_s``, so a sample lost to a
    gap leaves a hole in the sequence.
    """
    if end_s <= start_s:
        raise FleetError("end_s must be after start_s")
    overrides = dict(overrides or {})
    known = {(m.code, s.code): s for m in registry.mines for site in m.sites for s in site.sensors}
    for key, scenario in overrides.items():
        if key not in known:
            raise FleetError(f"override for {key[0]}/{key[1]}: no such sensor in the registry")
        allowed = SCENARIOS_BY_KIND[known[key].kind]
        if scenario not in allowed:
            raise FleetError(
                f"override for {key[0]}/{key[1]}: scenario {scenario!r} is not valid for a"
                f" {known[key].kind}; choose one of {list(allowed)}"
            )
    streams: list[SensorStream] = []
    for mine in registry.mines:
        rain = _mine_rain(mine, start_s, end_s, seed)
        for site in mine.sites:
            for sensor in site.sensors:
                key = (mine.code, sensor.code)
                s_seed = sensor_seed(seed, mine.code, sensor.code)
                scenario = overrides.get(key) or _default_scenario(mine, site, sensor, s_seed)
                series = _generate(
                    mine,
                    site,
                    sensor,
                    scenario,
                    rain,
                    start_s,
                    end_s,
                    s_seed,
                    failure_s,
                    tertiary_days,
                    tertiary_v0_mm_per_day,
                )
                series = _rounded(series)
                clean_t = series.t_s
                if sensor_faults is not None:
                    series = apply_faults(
                        series,
                        seed=s_seed + 1,
                        gap_prob=sensor_faults.gap_prob,
                        spike_prob=sensor_faults.spike_prob,
                        outages=sensor_faults.outages,
                        outage_s=sensor_faults.outage_s,
                    )
                seq = np.searchsorted(clean_t, series.t_s).astype(np.int64)
                streams.append(
                    SensorStream(
                        mine.code,
                        sensor.code,
                        series.t_s,
                        series.values,
                        seq=seq,
                        kind=sensor.kind.value,
                        scenario=scenario,
                        truth=series.truth,
                    )
                )
    return FleetPlan(start_s, end_s, tuple(streams))


def _grid(start_s: float, end_s: float, interval_s: float) -> tuple[float, float]:
    """First sample at a whole multiple of the interval; duration to the last one in the window."""
    first = math.ceil(start_s / interval_s) * interval_s
    return first, max(0.0, end_s - first)


def _mine_rain(mine: MineDoc, start_s: float, end_s: float, seed: int) -> Series:
    gauges = [s for site in mine.sites for s in site.sensors if s.kind is SensorKind.RAIN]
    interval = min((g.interval_s for g in gauges), default=_RAIN_INTERVAL_S)
    first, duration = _grid(start_s, end_s, interval)
    return rain_series(start_s=first, duration_s=duration, interval_s=interval, seed=sensor_seed(seed, mine.code))


def _default_scenario(mine: MineDoc, site: SiteDoc, sensor: SensorDoc, s_seed: int) -> str:
    rng = np.random.default_rng(s_seed)
    if sensor.kind in DISPLACEMENT_KINDS:
        if mine.kind is MineKind.TAILINGS_POND:
            return str(rng.choice(["stable", "creep"], p=[0.5, 0.5]))
        return str(rng.choice(["stable", "creep", "step"], p=[0.3, 0.5, 0.2]))
    return SCENARIOS_BY_KIND[sensor.kind][0]


def _resample_rain(rain: Series, t_s: FloatArray, interval_s: float) -> Series:
    """Rain per interval on another grid, mass-conserving (through the cumulative sum)."""
    cum_t = np.concatenate(([rain.t_s[0] - (rain.t_s[1] - rain.t_s[0] if len(rain) > 1 else 0.0)], rain.t_s))
    cum = np.concatenate(([0.0], np.cumsum(rain.values["rain_mm"])))
    at_end = np.interp(t_s, cum_t, cum)
    at_start = np.interp(t_s - interval_s, cum_t, cum)
    return Series(t_s, {"rain_mm": at_end - at_start}, rain.truth)


def _generate(
    mine: MineDoc,
    site: SiteDoc,
    sensor: SensorDoc,
    scenario: str,
    rain: Series,
    start_s: float,
    end_s: float,
    s_seed: int,
    failure_s: float | None,
    tertiary_days: float,
    tertiary_v0_mm_per_day: float,
) -> Series:
    interval = sensor.interval_s
    first, duration = _grid(start_s, end_s, interval)
    if sensor.kind is SensorKind.RAIN:
        if len(rain) > 1 and interval == rain.t_s[1] - rain.t_s[0]:
            return Series(rain.t_s, {"rain_mm": rain.values["rain_mm"].copy()}, rain.truth)
        grid = time_grid(first, duration, interval)
        return _resample_rain(rain, grid, interval)
    if sensor.kind in POND_KINDS:
        return _pond(site, sensor, cast(PhreaticScenario, scenario), rain, first, duration, s_seed)
    disp = cast(DisplacementScenario, scenario)
    tf: float | None = None
    steps: list[float] | None = None
    v0 = float(np.random.default_rng(s_seed).uniform(0.1, 0.6))
    if disp == "tertiary":
        tf = end_s if failure_s is None else failure_s
        # leave at least a tenth of the window (and a day) of steady creep before the onset
        room_days = (tf - first) / DAY_S - max(1.0, 0.1 * (tf - first) / DAY_S)
        tertiary_days = max(min(tertiary_days, room_days), 0.5)
        v0 = tertiary_v0_mm_per_day
    elif disp == "step":
        storms = [a for (a, _), total in zip(rain.truth.episodes, _storm_totals(rain), strict=True) if total >= 20]
        storms = [a for a in storms if a < end_s - DAY_S]
        if storms:
            rng = np.random.default_rng(s_seed)
            # rain-driven movement starts hours after the storm, as water infiltrates
            steps = [a + rng.uniform(3, 12) * 3600.0 for a in storms]
    if sensor.kind in (SensorKind.GNSS, SensorKind.TOTAL_STATION):
        noise_h, noise_v = (1.5, 6.0) if sensor.kind is SensorKind.GNSS else (1.0, 1.5)
        series = displacement_series(
            disp,
            start_s=first,
            duration_s=duration,
            interval_s=interval,
            seed=s_seed,
            noise_h_mm=noise_h,
            noise_v_mm=noise_v,
            v0_mm_per_day=v0,
            failure_s=tf,
            tertiary_days=tertiary_days,
            step_starts_s=steps,
        )
        return _from_reference(series, sensor, s_seed)
    if sensor.kind is SensorKind.CRACK:
        return crack_series(
            disp,
            start_s=first,
            duration_s=duration,
            interval_s=interval,
            seed=s_seed,
            width0_mm=sensor.baseline.get("width_mm", 5.0),
            v0_mm_per_day=v0 / 3.0,
            failure_s=tf,
            tertiary_days=tertiary_days,
            step_starts_s=steps,
        )
    channels = list(sensor_channels(sensor))
    depths = [_depth_of(ch, i) for i, ch in enumerate(channels)]
    slip = float(np.random.default_rng(s_seed + 2).uniform(0.4, 0.8)) * max(depths)
    return inclinometer_series(
        disp,
        channels=channels,
        depths_m=depths,
        slip_depth_m=slip,
        start_s=first,
        duration_s=duration,
        interval_s=interval,
        seed=s_seed,
        v0_mm_per_day=v0,
        failure_s=tf,
        tertiary_days=tertiary_days,
        step_starts_s=steps,
    )


def _from_reference(series: Series, sensor: SensorDoc, s_seed: int) -> Series:
    """A surface point with a registered reference (its surveyed position, local mm) reads
    near it: the reference, plus what the point moved before the window (seeded, up to a
    tenth of its red cumulative threshold, along the same azimuth and settlement ratio as
    its movement now: a creeping slope keeps its direction), plus the window's movement."""
    ref = sensor.baseline
    if not {"east_mm", "north_mm", "up_mm"} <= set(ref):
        return series
    # displacement_series draws its azimuth and settlement ratio first from its seed
    draw = np.random.default_rng(s_seed)
    az, ratio = math.radians(draw.uniform(0.0, 360.0)), draw.uniform(0.2, 0.7)
    red = sensor.thresholds.get("horizontal_mm")
    red_mm = red.red if red is not None and red.red is not None else 0.0
    moved = float(np.random.default_rng(s_seed + 3).uniform(0.02, 0.1)) * red_mm
    offset = {
        "east_mm": ref["east_mm"] + moved * math.sin(az),
        "north_mm": ref["north_mm"] + moved * math.cos(az),
        "up_mm": ref["up_mm"] - ratio * moved,
    }
    return Series(series.t_s, {ch: v + offset.get(ch, 0.0) for ch, v in series.values.items()}, series.truth)


def _storm_totals(rain: Series) -> list[float]:
    """mm fallen in each storm of ``rain.truth.episodes``."""
    r = rain.values["rain_mm"]
    step = float(rain.t_s[1] - rain.t_s[0]) if len(rain) > 1 else 0.0
    return [float(r[(rain.t_s > a) & (rain.t_s <= b + step)].sum()) for a, b in rain.truth.episodes]


def _depth_of(channel: str, index: int) -> float:
    m = re.search(r"(\d+(?:\.\d+)?)m", channel)
    return float(m.group(1)) if m else 5.0 * (index + 1)


def _pond(
    site: SiteDoc,
    sensor: SensorDoc,
    scenario: PhreaticScenario,
    rain: Series,
    first: float,
    duration: float,
    s_seed: int,
) -> Series:
    interval = sensor.interval_s
    grid = time_grid(first, duration, interval)
    local_rain = _resample_rain(rain, grid, interval)
    crest = site.crest_elevation_m
    normal = sensor.baseline.get("level_m", (crest - 6.0) if crest is not None else 245.0)
    depth0 = sensor.baseline.get("depth_m", 8.0)
    beach0 = sensor.baseline.get("length_m", 150.0)
    series = pond_and_phreatic_series(
        local_rain, seed=s_seed, scenario=scenario, normal_level_m=normal, depth0_m=depth0, beach0_m=beach0
    )
    channel = {SensorKind.PIEZOMETER: "depth_m", SensorKind.POND_LEVEL: "level_m", SensorKind.BEACH: "length_m"}[
        sensor.kind
    ]
    return Series(series.t_s, {channel: series.values[channel]}, series.truth)


def _rounded(series: Series) -> Series:
    values = {ch: np.round(v, _DECIMALS_M if ch.endswith("_m") else _DECIMALS_MM) for ch, v in series.values.items()}
    return replace(series, values=values)


def parse_overrides(registry: RegistryDoc, items: Sequence[str]) -> dict[SensorKey, str]:
    """``MINE/SENSOR=SCENARIO`` (or ``SENSOR=SCENARIO``) strings to an override map."""
    out: dict[SensorKey, str] = {}
    for item in items:
        ref, sep, scenario = item.partition("=")
        if not sep or not scenario:
            raise FleetError(f"scenario override {item!r} must look like MINE/SENSOR=SCENARIO")
        out[resolve_sensor(registry, ref.strip())] = scenario.strip()
    return out
