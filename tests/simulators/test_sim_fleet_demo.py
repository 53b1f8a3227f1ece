"""Fleet planning over a registry and the demo registry itself (pure: no broker)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.model import MineKind, SensorKind, SiteKind
from core.registry import RegistryDoc, load_registry, parse_registry, threshold_sets
from simulators.demo import DEMO_FAILING_SENSOR, demo_registry, write_demo_registry
from simulators.fleet import FleetError, SensorFaults, parse_overrides, plan_fleet, resolve_sensor
from simulators.scenarios import DAY_S

NOW = 1_780_000_000.0


@pytest.fixture(scope="module")
def registry() -> RegistryDoc:
    return parse_registry(demo_registry())


def test_demo_registry_is_valid_and_about_a_hundred_sensors_of_every_kind() -> None:
    for seed in range(6):
        reg = parse_registry(demo_registry(seed))
        kinds = {s.kind for m in reg.mines for site in m.sites for s in site.sensors}
        assert kinds == set(SensorKind)
        assert 90 <= reg.sensor_count() <= 130
        assert len(reg.mines) == 10
        assert {m.kind for m in reg.mines} == set(MineKind)
        for mine in reg.mines:
            assert mine.evacuation is not None
            assert mine.evacuation.startswith("红色警报")
        mine_code, sensor_code = DEMO_FAILING_SENSOR
        mine = next(m for m in reg.mines if m.code == mine_code)
        assert mine.kind is MineKind.OPEN_PIT
        site, sensor = next((site, s) for site in mine.sites for s in site.sensors if s.code == sensor_code)
        assert site.kind is SiteKind.SLOPE
        assert sensor.kind is SensorKind.GNSS


def test_demo_thresholds_follow_the_domain_rules(registry: RegistryDoc) -> None:
    sensors = [(m, site, s) for m in registry.mines for site in m.sites for s in site.sensors]
    for _, _, s in sensors:
        assert s.thresholds, f"{s.code} has no thresholds"
        if s.kind is SensorKind.RAIN:
            day = s.thresholds["rain_24h_mm"]
            assert (day.yellow, day.orange, day.red) == (50.0, 100.0, 250.0)
        if s.kind is SensorKind.PIEZOMETER:
            depth = s.thresholds["depth_m"]
            assert depth.red is not None
            assert depth.orange == pytest.approx(1.1 * depth.red)
            assert s.baseline["depth_m"] > (depth.blue or 0)
    for m, site, s in sensors:
        if s.kind is SensorKind.GNSS and m.kind is MineKind.OPEN_PIT:
            rate = s.thresholds["horizontal_mm_per_day"]
            assert rate.red is not None
            assert rate.orange == pytest.approx(0.8 * rate.red)
            assert site.height_m is not None
            assert s.thresholds["horizontal_mm"].red == pytest.approx(6e-3 * site.height_m * 1000, abs=1)
        if s.kind is SensorKind.POND_LEVEL:
            assert site.crest_elevation_m is not None
            assert s.baseline["level_m"] < site.crest_elevation_m - 3.0


def test_demo_registry_yaml_round_trip(tmp_path: Path) -> None:
    path = write_demo_registry(tmp_path / "demo.yaml")
    assert load_registry(path) == parse_registry(demo_registry())
    assert "红岭铁矿" in path.read_text(encoding="utf-8")


def test_plan_is_seeded_and_only_the_chosen_sensor_fails(registry: RegistryDoc) -> None:
    kw = {"start_s": NOW - 30 * DAY_S, "end_s": NOW + DAY_S, "failure_s": NOW + 7200.0}
    a = plan_fleet(registry, seed=4, overrides={DEMO_FAILING_SENSOR: "tertiary"}, **kw)
    b = plan_fleet(registry, seed=4, overrides={DEMO_FAILING_SENSOR: "tertiary"}, **kw)
    c = plan_fleet(registry, seed=5, overrides={DEMO_FAILING_SENSOR: "tertiary"}, **kw)
    assert a.failing() == [DEMO_FAILING_SENSOR]
    assert len(a.streams) == registry.sensor_count()
    for sa, sb in zip(a.streams, b.streams, strict=True):
        for ch in sa.values:
            np.testing.assert_array_equal(sa.values[ch], sb.values[ch])
    assert any(
        not np.array_equal(sa.values[ch], sc.values[ch])
        for sa, sc in zip(a.streams, c.streams, strict=True)
        for ch in sa.values
    )
    failing = a.stream(*DEMO_FAILING_SENSOR)
    truth = failing.truth
    assert truth is not None
    assert truth.failure_s == NOW + 7200.0
    assert truth.onset_s == pytest.approx(NOW + 7200.0 - 10 * DAY_S)
    assert failing.t_s[-1] < NOW + 7200.0
    # the failing point has really accelerated: ~16 mm in its last day against 1.5 mm/day before
    east, north = failing.values["east_mm"], failing.values["north_mm"]
    h = np.hypot(east - east[:144].mean(), north - north[:144].mean())
    day = int(DAY_S / 600)
    assert h[-day:].mean() - h[-2 * day : -day].mean() > 10.0
    scenarios = {s.scenario for s in a.streams}
    assert {"stable", "creep", "step", "tertiary", "normal", "rain"} <= scenarios


def test_streams_sit_on_the_sampling_grid_inside_the_window(registry: RegistryDoc) -> None:
    start, end = NOW - 3 * DAY_S + 17.0, NOW
    plan = plan_fleet(registry, start_s=start, end_s=end, seed=1, sensor_faults=SensorFaults(gap_prob=0.1, outages=1))
    sensors = {(m.code, s.code): s for m in registry.mines for site in m.sites for s in site.sensors}
    for st in plan.streams:
        interval = sensors[(st.mine, st.sensor)].interval_s
        assert st.t_s[0] >= start
        assert st.t_s[-1] <= end
        assert np.all(np.mod(st.t_s, interval) == 0)
        assert st.seq is not None
        assert np.all(np.diff(st.seq) >= 1)
        # seq counts grid samples: a hole in seq is exactly a lost sample
        np.testing.assert_array_equal(st.seq, np.round((st.t_s - st.t_s[0]) / interval) + st.seq[0])
    holes = sum(int(st.seq[-1] - st.seq[0] + 1 - len(st)) for st in plan.streams if st.seq is not None)
    assert holes > 0


def test_rain_gauge_and_pond_share_the_mine_storms(registry: RegistryDoc) -> None:
    plan = plan_fleet(registry, start_s=NOW - 60 * DAY_S, end_s=NOW, seed=2)
    tsf = next(m for m in registry.mines if m.kind is MineKind.TAILINGS_POND)
    rain = plan.stream(tsf.code, "RG-01")
    level = plan.stream(tsf.code, "PL-01")
    assert rain.truth is not None
    assert level.truth is not None
    assert rain.values["rain_mm"].sum() > 0
    baseline = next(s for site in tsf.sites for s in site.sensors if s.code == "PL-01").baseline["level_m"]
    lv = level.values["level_m"]
    assert abs(float(np.median(lv)) - baseline) < 0.3
    # the pond is highest after rain, not before the first storm
    first_storm = min(a for a, _ in rain.truth.episodes)
    assert level.t_s[int(np.argmax(lv))] > first_storm


def test_overrides_are_checked(registry: RegistryDoc) -> None:
    span = {"start_s": NOW - DAY_S, "end_s": NOW}
    with pytest.raises(FleetError, match="no such sensor"):
        plan_fleet(registry, overrides={("HONGLING-PIT", "NOPE"): "creep"}, **span)
    with pytest.raises(FleetError, match="not valid for a rain"):
        plan_fleet(registry, overrides={("HONGLING-PIT", "RG-01"): "tertiary"}, **span)
    with pytest.raises(FleetError, match="several mines"):
        resolve_sensor(registry, "GNSS-01")
    assert resolve_sensor(registry, "HONGLING-PIT/GNSS-03") == DEMO_FAILING_SENSOR
    assert parse_overrides(registry, ["QINGSHANGOU-TSF/PZ-01=clogging"]) == {("QINGSHANGOU-TSF", "PZ-01"): "clogging"}
    with pytest.raises(FleetError, match="MINE/SENSOR=SCENARIO"):
        parse_overrides(registry, ["HONGLING-PIT/GNSS-03"])


def test_demo_surface_points_have_realistic_references_and_only_the_failing_one_goes_red(
    registry: RegistryDoc,
) -> None:
    """Every GNSS point of the demo has a surveyed reference, some a hundred mm and more
    from where the simulated month begins (below blue); judged against it (as the worker
    does) at the end of the demo's month, no cumulative threshold warns, and only the
    failing point is red."""
    from analytics import evaluate_sensor
    from analytics.types import SensorSpec, SensorWindow
    from core.model import Level

    plan = plan_fleet(
        registry,
        seed=7,
        start_s=NOW - 30 * DAY_S,
        end_s=NOW,
        failure_s=NOW + 3 * 3600.0,
        overrides={DEMO_FAILING_SENSOR: "tertiary"},
    )
    by_key = {(m.code, s.code): (site, s) for m in registry.mines for site in m.sites for s in site.sensors}
    far = 0
    red: list[tuple[str, str]] = []
    for stream in plan.streams:
        site, sensor = by_key[(stream.mine, stream.sensor)]
        if sensor.kind is not SensorKind.GNSS:
            continue
        assert set(sensor.baseline) == {"east_mm", "north_mm", "up_mm"}
        # surveyed coordinates far from zero; the point has moved since, along its movement
        assert max(abs(v) for v in sensor.baseline.values()) > 1000.0
        moved = float(
            np.hypot(
                np.median(stream.values["east_mm"][:6]) - sensor.baseline["east_mm"],
                np.median(stream.values["north_mm"][:6]) - sensor.baseline["north_mm"],
            )
        )
        blue = threshold_sets(sensor)["horizontal_mm"].blue
        assert blue is not None
        assert 0.0 < moved < blue
        far += moved >= 100.0
        spec = SensorSpec(
            0,
            sensor.code,
            sensor.kind,
            ("east_mm", "north_mm", "up_mm"),
            sensor.interval_s,
            baseline=sensor.baseline,
            thresholds=threshold_sets(sensor),
            site_height_m=site.height_m,
        )
        results = evaluate_sensor(spec, SensorWindow(stream.t_s, stream.values, float(stream.t_s[-1])))
        for r in results:
            if r.rule in ("threshold.horizontal_mm", "threshold.vertical_mm"):
                assert r.level is Level.NONE, (stream.mine, stream.sensor, r.rule, r.evidence.get("value"))
            if r.level is Level.RED:
                red.append((stream.mine, stream.sensor))
    assert far >= 3
    assert set(red) == {DEMO_FAILING_SENSOR}
