"""The publisher against a real mosquitto: a real subscriber gets exactly what the publisher says it sent."""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import yaml

from core.registry import parse_registry
from core.settings import Settings
from core.wire import PayloadRejected, RejectReason, decode_message
from simulators.demo import demo_registry
from simulators.fleet import SensorFaults
from simulators.publisher import (
    EXPECTED_REJECTION,
    UNKNOWN_CHANNEL_NAME,
    UNKNOWN_SENSOR_CODE,
    MalformedKind,
    Publisher,
    SensorStream,
    TransportFaults,
)
from simulators.simulate import add_simulate_arguments, build_simulation, run_simulate

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractAsyncContextManager

    from tests.conftest import Mosquitto
    from tests.simulators.conftest import Collected, Received
    from tests.support.proxy import FaultProxy

    Collect = Callable[[Iterable[str]], AbstractAsyncContextManager[Collected]]


def small_registry(prefix: str) -> dict[str, Any]:
    """The demo registry cut to one open pit and one tailings pond, with codes unique to the test."""
    doc = demo_registry(3)
    pit = next(m for m in doc["mines"] if m["code"] == "HONGLING-PIT")
    tsf = next(m for m in doc["mines"] if m["code"] == "QINGSHANGOU-TSF")
    for m, suffix in ((pit, "P"), (tsf, "T")):
        m["code"] = f"{prefix}-{suffix}"
        for site in m["sites"]:
            site["code"] = f"{prefix}-{suffix}-{site['code']}"
    doc["mines"] = [pit, tsf]
    return doc


def mine_filters(prefix: str) -> list[str]:
    return [f"slopewatch/v1/{prefix}-{s}/+/readings" for s in ("P", "T")]


def expected_readings(
    streams: Iterable[SensorStream],
) -> set[tuple[str, str, int, int | None, tuple[tuple[str, float], ...]]]:
    out = set()
    for s in streams:
        for i in range(len(s)):
            values = tuple(sorted((ch, float(v[i])) for ch, v in s.values.items() if not math.isnan(v[i])))
            seq = int(s.seq[i]) if s.seq is not None else None
            out.add((s.mine, s.sensor, round(float(s.t_s[i]) * 1e6), seq, values))
    return out


def decoded(got: list[Received]) -> Iterator[tuple[Received, Any]]:
    now_us = round(time.time() * 1e6)
    for r in got:
        try:
            yield r, decode_message(r.topic, r.payload, now_us=now_us)
        except PayloadRejected as exc:
            yield r, exc


async def test_subscriber_gets_exactly_what_the_publisher_counts(
    mqtt_broker: Mosquitto, mqtt_collect: Collect, unique_mine: str
) -> None:
    registry = parse_registry(small_registry(unique_mine))
    sim = build_simulation(
        registry,
        mqtt_broker.target,
        days=2,
        speed=math.inf,
        follow_s=0,
        seed=5,
        sensor_faults=SensorFaults(gap_prob=0.02, spike_prob=0.01, outages=1),
        upload_s=3600,
    )
    async with mqtt_collect(mine_filters(unique_mine)) as got:
        stats = await asyncio.wait_for(sim.run(), 60)
        await got.wait_for(stats.messages)

    total = sim.plan.reading_count()
    assert total > 1000
    assert stats.readings == total == sim.publisher.total_readings()
    assert len(got) == stats.messages
    assert sum(stats.per_sensor.values()) == total
    assert stats.duplicate_messages == stats.resent_messages == stats.reconnects == 0

    seen = []
    per_message = []
    for r, msg in decoded(got):
        assert not isinstance(msg, PayloadRejected)
        assert msg.rejections == ()
        per_message.append(len(msg.readings))
        for w in msg.readings:
            seen.append(
                (
                    msg.topic.mine,
                    msg.topic.sensor,
                    w.t_us,
                    w.seq,
                    tuple(sorted((k, float(v)) for k, v in w.values.items())),
                )
            )
            assert w.t_us <= r.wall_s * 1e6  # never from the future
    assert len(seen) == total
    assert set(seen) == expected_readings(sim.plan.streams)
    assert max(per_message) > 1  # gateways batch
    # lost samples leave holes in the sequence numbers
    gaps = [s for s in sim.plan.streams if s.seq is not None and s.seq[-1] + 1 > len(s)]
    assert gaps


async def test_injected_faults_are_counted_as_ingest_will_see_them(
    mqtt_broker: Mosquitto, mqtt_collect: Collect, unique_mine: str
) -> None:
    registry = parse_registry(small_registry(unique_mine))
    faults = TransportFaults(duplicate_prob=0.1, reorder_prob=0.1, malformed_prob=0.15, seed=11)
    sim = build_simulation(
        registry, mqtt_broker.target, days=2, speed=math.inf, follow_s=0, seed=6, transport_faults=faults, upload_s=3600
    )
    async with mqtt_collect(mine_filters(unique_mine)) as got:
        stats = await asyncio.wait_for(sim.run(), 60)
        await got.wait_for(stats.messages)
    assert len(got) == stats.messages
    assert stats.duplicate_messages > 0
    assert stats.reordered_messages > 0
    assert set(stats.malformed) == set(MalformedKind)

    rejected: collections.Counter[RejectReason] = collections.Counter()
    valid: list[tuple[str, str, int]] = []
    first_payload: set[tuple[str, bytes]] = set()
    reordered = 0
    newest: dict[tuple[str, str], int] = {}
    for r, msg in decoded(got):
        if isinstance(msg, PayloadRejected):
            rejected[msg.reason] += 1
            continue
        rejected.update(rej.reason for rej in msg.rejections)
        if msg.topic.sensor == UNKNOWN_SENSOR_CODE:
            rejected[RejectReason.UNKNOWN_SENSOR] += len(msg.readings)
            continue
        good = [w for w in msg.readings if UNKNOWN_CHANNEL_NAME not in w.values]
        rejected[RejectReason.UNKNOWN_CHANNEL] += len(msg.readings) - len(good)
        valid.extend((msg.topic.mine, msg.topic.sensor, w.t_us) for w in good)
        if msg.rejections or len(good) != len(msg.readings) or not good:
            continue
        if (r.topic, r.payload) in first_payload:
            continue  # a deliberate duplicate
        first_payload.add((r.topic, r.payload))
        key = (msg.topic.mine, msg.topic.sensor)
        if key in newest and good[0].t_us < newest[key]:
            reordered += 1
        newest[key] = max(newest.get(key, 0), good[-1].t_us)

    expected = collections.Counter({EXPECTED_REJECTION[k]: n for k, n in stats.malformed.items()})
    assert rejected == expected
    assert len(valid) == stats.readings + stats.duplicate_readings
    assert len(set(valid)) == stats.readings == sim.plan.reading_count()
    assert reordered == stats.reordered_messages


def _stream(mine: str, sensor: str, t_s: np.ndarray) -> SensorStream:
    return SensorStream(mine, sensor, t_s.astype(np.float64), {"rain_mm": np.zeros(t_s.size)}, seq=np.arange(t_s.size))


async def test_fast_past_then_real_time_and_never_ahead_of_the_wall_clock(
    mqtt_broker: Mosquitto, mqtt_collect: Collect, unique_mine: str
) -> None:
    now = time.time()
    # 100 s of past at speed 50 catches up after ~2 s; then 2-3 s in real time
    t = np.arange(math.floor(now) - 100, math.floor(now) + 5.0, 0.5)
    stream = _stream(unique_mine, "RG-01", t)
    pub = Publisher([stream], mqtt_broker.target, speed=50.0, start_s=float(t[0]), upload_s=0.0)
    async with mqtt_collect([f"slopewatch/v1/{unique_mine}/+/readings"]) as got:
        started = time.time()
        stats = await asyncio.wait_for(pub.run(), 20)
        took = time.time() - started
        await got.wait_for(stats.messages)
    assert stats.readings == t.size
    # done when the wall clock reaches the last measurement, not before
    assert took == pytest.approx(float(t[-1]) - started, abs=0.3)
    received = [(r.wall_s, w.t_us / 1e6) for r, msg in decoded(got) for w in msg.readings]
    assert len(received) == t.size
    assert all(t_s <= wall + 0.05 for wall, t_s in received)
    # the past went by fast: the reading 50 s before "now" arrived about 1 s after the start
    wall_at = dict((round(t_s, 1), wall) for wall, t_s in received)
    assert wall_at[round(float(t[100]), 1)] - started == pytest.approx(1.0, abs=0.5)


async def test_reconnects_and_resends_after_the_link_is_cut(
    mqtt_broker: Mosquitto, mqtt_collect: Collect, tcp_proxy: FaultProxy, unique_mine: str
) -> None:
    now = time.time()
    t = np.arange(math.floor(now) - 4000.0, math.floor(now) - 1.0, 1.0)
    streams = [_stream(unique_mine, f"RG-{i:02d}", t) for i in range(3)]
    pub = Publisher(
        streams,
        tcp_proxy.mqtt_target,
        speed=1000.0,
        start_s=float(t[0]),
        upload_s=0.0,
        max_batch=5,
        backoff_s=(0.2, 1.0),
        publish_timeout_s=1.0,
    )
    async with mqtt_collect([f"slopewatch/v1/{unique_mine}/+/readings"]) as got:
        task = asyncio.create_task(pub.run())
        await asyncio.sleep(1.5)
        assert 0 < pub.stats.readings < 3 * t.size
        tcp_proxy.cut()
        await asyncio.sleep(1.0)
        await tcp_proxy.restore()
        stats = await asyncio.wait_for(task, 30)
        await got.wait_for(stats.messages)
    assert stats.reconnects >= 1
    assert stats.readings == 3 * t.size
    keys = [(msg.topic.sensor, w.t_us) for _, msg in decoded(got) for w in msg.readings]
    # at least once: every reading arrived; a message cut in flight may arrive twice
    assert len(set(keys)) == 3 * t.size
    # a message whose PUBACK was lost in the cut reached the broker and was sent again
    assert stats.messages <= len(got) <= stats.messages + stats.resent_messages


async def test_cancellation_stops_promptly_and_keeps_the_counts(mqtt_broker: Mosquitto, unique_mine: str) -> None:
    now = time.time()
    t = np.arange(math.floor(now) - 60.0, math.floor(now) + 3600.0, 1.0)
    pub = Publisher([_stream(unique_mine, "RG-01", t)], mqtt_broker.target, speed=1000.0, upload_s=0.0)
    with pytest.raises(ExceptionGroup) as info:  # noqa: PT012
        async with asyncio.TaskGroup() as tg:
            tg.create_task(pub.run(), name="simulator")
            await asyncio.sleep(0.5)
            raise RuntimeError("stop the demo")
    assert info.group_contains(RuntimeError)
    assert 0 < pub.stats.readings < t.size
    assert pub.stats.last_t_s is not None
    assert pub.stats.last_t_s <= time.time()


async def test_run_simulate_cli_hook(
    mqtt_broker: Mosquitto,
    mqtt_collect: Collect,
    unique_mine: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(small_registry(unique_mine), allow_unicode=True), encoding="utf-8")
    parser = argparse.ArgumentParser()
    add_simulate_arguments(parser)
    args = parser.parse_args(
        [
            *("--registry", str(path), "--days", "1", "--speed", "inf", "--follow-hours", "0"),
            *("--fail", f"{unique_mine}-P/GNSS-03", "--scenario", f"{unique_mine}-T/PZ-01=clogging"),
            *("--malformed-prob", "0.05", "--seed", "2"),
        ]
    )
    async with mqtt_collect(mine_filters(unique_mine)) as got:
        rc = await asyncio.wait_for(run_simulate(args, Settings(mqtt_url=mqtt_broker.url)), 60)
        report = json.loads(capsys.readouterr().out)
        await got.wait_for(report["messages"])
    assert rc == 0
    assert len(got) == report["messages"]
    assert report["readings"] > 0
    assert sum(report["malformed"].values()) > 0


async def test_run_simulate_rejects_an_unknown_sensor(tmp_path: Path, unique_mine: str) -> None:
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(small_registry(unique_mine), allow_unicode=True), encoding="utf-8")
    parser = argparse.ArgumentParser()
    add_simulate_arguments(parser)
    args = parser.parse_args(["--registry", str(path), "--fail", "NO-SUCH-SENSOR"])
    assert await run_simulate(args, Settings(mqtt_url="mqtt://127.0.0.1:1")) == 2
