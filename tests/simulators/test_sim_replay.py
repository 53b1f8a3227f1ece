"""Replay: the CSV format round-trips, bad rows are reported by line, and a replay reaches a real broker."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from core.registry import parse_registry
from core.settings import Settings
from core.wire import decode_message
from simulators.demo import demo_registry
from simulators.fleet import SensorFaults, plan_fleet
from simulators.publisher import SensorStream
from simulators.replay import (
    ReplayError,
    add_replay_arguments,
    example_csv,
    example_streams,
    parse_replay_csv,
    read_replay_csv,
    run_replay,
    shift_to_end_at,
    write_example_csv,
    write_replay_csv,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from contextlib import AbstractAsyncContextManager

    from tests.conftest import Mosquitto
    from tests.simulators.conftest import Collected

    Collect = Callable[[Iterable[str]], AbstractAsyncContextManager[Collected]]


def _by_key(streams: list[SensorStream]) -> dict[tuple[str, str], SensorStream]:
    return {(s.mine, s.sensor): s for s in streams}


def assert_same_streams(a: list[SensorStream], b: list[SensorStream]) -> None:
    ka, kb = _by_key(a), _by_key(b)
    assert ka.keys() == kb.keys()
    for key, s in ka.items():
        t = kb[key]
        np.testing.assert_array_equal(s.t_s, t.t_s)
        assert set(s.values) == set(t.values)
        for ch in s.values:
            np.testing.assert_array_equal(s.values[ch], t.values[ch])
        if s.seq is None:
            assert t.seq is None
        else:
            assert t.seq is not None
            np.testing.assert_array_equal(s.seq, t.seq)


def test_shipped_example_is_current_and_carries_its_truth(tmp_path: Path) -> None:
    fresh = tmp_path / "example.csv"
    write_example_csv(fresh)
    assert example_csv().read_bytes() == fresh.read_bytes()
    streams = read_replay_csv(example_csv())
    expected, truth = example_streams()
    assert_same_streams(streams, expected)
    assert truth.fails
    assert truth.failure_s is not None
    gnss = _by_key(streams)[("EXAMPLE-PIT", "GNSS-03")]
    assert gnss.t_s[-1] == truth.failure_s - 3600
    assert f"failure_s={truth.failure_s:.0f}" in example_csv().read_text(encoding="utf-8")


@pytest.mark.parametrize("layout", ["long", "wide"])
def test_fleet_streams_round_trip_through_both_layouts(tmp_path: Path, layout: str) -> None:
    registry = parse_registry(demo_registry())
    registry = registry.model_copy(update={"mines": registry.mines[:1] + registry.mines[-1:]})
    plan = plan_fleet(registry, start_s=1_760_000_000, end_s=1_760_000_000 + 86_400, sensor_faults=SensorFaults(0.05))
    streams = list(plan.streams)
    # a sensor that sends some channels only sometimes
    s0 = streams[0]
    east = s0.values["east_mm"].copy()
    east[::3] = math.nan
    streams[0] = SensorStream(s0.mine, s0.sensor, s0.t_s, {**s0.values, "east_mm": east}, seq=s0.seq)
    path = tmp_path / f"{layout}.csv"
    write_replay_csv(streams, path, layout=layout)  # type: ignore[arg-type]
    assert_same_streams(read_replay_csv(path), streams)


def test_epoch_milliseconds_offsets_unsorted_rows_and_comments() -> None:
    text = [
        "# recorded at the pit",
        "Mine,Sensor,Time,Channel,Value",
        "M1,S1,2025-06-01T08:00:00+08:00,depth_m,7.5",
        "",
        "M1,S1,1748735940000,depth_m,7.6",
    ]
    (s,) = parse_replay_csv(text)
    assert s.t_s.tolist() == [1_748_735_940.0, 1_748_736_000.0]
    assert s.values["depth_m"].tolist() == [7.6, 7.5]
    assert s.seq is None


def test_bad_rows_are_all_reported_with_line_and_reason() -> None:
    text = [
        "mine,sensor,time,channel,value,seq",
        "M1,S1,2025-06-01T00:00:00Z,east_mm,1.0,0",  # line 2: fine
        "M1,S1,2025-06-01T01:00:00,east_mm,1.0,1",  # 3: no offset
        "M1,S1,2025-06-01T02:00:00Z,east_mm,abc,2",  # 4: not a number
        "M1,S1,2025-06-01T03:00:00Z,east_mm,nan,3",  # 5: not finite
        "M1,S1,2025-06-01T00:00:00Z,east_mm,2.0,0",  # 6: twice
        "M 1,S1,2025-06-01T04:00:00Z,east_mm,1.0,4",  # 7: bad code
        "M1,S1,2025-06-01T05:00:00Z,east_mm",  # 8: short row
        "M1,S1,2025-06-01T06:00:00Z,East,1.0,6",  # 9: bad channel
        "M1,S1,2025-06-01T07:00:00Z,east_mm,1.0,-7",  # 10: bad seq
        "M1,S1,1700000000,east_mm,1.0,8",  # 11: epoch seconds
    ]
    with pytest.raises(ReplayError) as info:
        parse_replay_csv(text, "rec.csv")
    problems = info.value.problems
    assert [p.split(":")[0] for p in problems] == [f"line {n}" for n in range(3, 12)]
    assert "no UTC offset" in problems[0]
    assert "not a number" in problems[1]
    assert "not finite" in problems[2]
    assert "already on line 2" in problems[3]
    assert "not a valid code" in problems[4]
    assert "4 fields, the header has 6" in problems[5]
    assert "must match" in problems[6]
    assert "seq" in problems[7]
    assert "epoch seconds" in problems[8]
    assert str(info.value).startswith("rec.csv: 9 problem(s)")


def test_header_problems() -> None:
    with pytest.raises(ReplayError, match="lacks time"):
        parse_replay_csv(["mine,sensor,east_mm", "M,S,1"])
    with pytest.raises(ReplayError, match="unknown column"):
        parse_replay_csv(["mine,sensor,time,channel,value,extra"])
    with pytest.raises(ReplayError, match="no header"):
        parse_replay_csv(["# only a comment"])


def test_shift_to_end_at_keeps_spacing() -> None:
    streams = read_replay_csv(example_csv())
    end = 1_800_000_000.5
    shifted, shift = shift_to_end_at(streams, end)
    assert shift == math.floor(shift)
    last = max(float(s.t_s[-1]) for s in shifted)
    assert end - 1 < last <= end
    for a, b in zip(streams, shifted, strict=True):
        np.testing.assert_array_equal(np.diff(a.t_s), np.diff(b.t_s))


async def test_run_replay_publishes_the_example_ending_now(
    mqtt_broker: Mosquitto,
    mqtt_collect: Collect,
    unique_mine: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    streams = [SensorStream(unique_mine, s.sensor, s.t_s, s.values, seq=s.seq) for s in read_replay_csv(example_csv())]
    path = tmp_path / "rec.csv"
    write_replay_csv(streams, path, layout="wide")
    parser = argparse.ArgumentParser()
    add_replay_arguments(parser)
    # 20 days at 10 days per second: about 2 s
    args = parser.parse_args([str(path), "--speed", "864000", "--shift-to-now"])
    async with mqtt_collect([f"slopewatch/v1/{unique_mine}/+/readings"]) as got:
        started = time.time()
        rc = await asyncio.wait_for(run_replay(args, Settings(mqtt_url=mqtt_broker.url)), 30)
        took = time.time() - started
        report = json.loads(capsys.readouterr().out)
        await got.wait_for(report["messages"])
    assert rc == 0
    assert took == pytest.approx(2.0, abs=0.6)
    total = sum(len(s) for s in streams)
    assert report["readings"] == total
    assert len(got) == report["messages"]
    seen: dict[str, list[float]] = {}
    for r in got:
        msg = decode_message(r.topic, r.payload, now_us=round(time.time() * 1e6))
        assert msg.rejections == ()
        seen.setdefault(msg.topic.sensor, []).extend(w.t_us / 1e6 for w in msg.readings)
    assert sum(len(v) for v in seen.values()) == total
    gnss = sorted(seen["GNSS-03"])
    assert set(np.diff(gnss)) == {3600.0}
    assert max(max(v) for v in seen.values()) == pytest.approx(started, abs=2.0)
    assert report["shift_s"] == pytest.approx(started - streams[1].t_s[-1], abs=2.0)


async def test_run_replay_reports_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("mine,sensor,time,channel,value\nM,S,yesterday,east_mm,1\n", encoding="utf-8")
    parser = argparse.ArgumentParser()
    add_replay_arguments(parser)
    rc = await run_replay(parser.parse_args([str(path)]), Settings(mqtt_url="mqtt://127.0.0.1:1"))
    assert rc == 2
    assert "line 2: time 'yesterday' is not ISO 8601" in capsys.readouterr().err
