"""``slopewatch simulate``: a registry's sensors, simulated and published over MQTT.

In process (the demo runs it as a task in a TaskGroup)::

    sim = build_simulation(registry, MqttTarget.parse(url), days=30, speed=3600, fail=[DEMO_FAILING_SENSOR])
    tg.create_task(sim.run(), name="simulator")
    ... sim.plan.truth(), sim.publisher.stats ...

The simulated window is ``[now − days, now + follow]``: the past part is published
``speed`` times faster than real time, the simulated clock then catches up with
the wall clock and the rest follows in real time. A sensor given in ``fail`` runs
``tertiary`` and fails ``fail_in_s`` after "now".
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from core.registry import RegistryDoc, RegistryError, load_registry, parse_registry
from core.settings import MqttTarget, Settings, SettingsError
from simulators.demo import demo_registry
from simulators.fleet import FleetError, FleetPlan, SensorFaults, SensorKey, parse_overrides, plan_fleet, resolve_sensor
from simulators.publisher import MalformedKind, Publisher, PublishStats, TransportFaults

logger = logging.getLogger(__name__)

#: Where ``simulate`` and ``replay`` publish when MQTT_URL is not set.
DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"


@dataclass
class Simulation:
    """A planned fleet and the publisher that sends it; ``await run()`` until all is sent."""

    plan: FleetPlan
    publisher: Publisher

    async def run(self) -> PublishStats:
        return await self.publisher.run()


def build_simulation(
    registry: RegistryDoc,
    target: MqttTarget,
    *,
    days: float = 30.0,
    speed: float = 3600.0,
    follow_s: float = 24 * 3600.0,
    seed: int = 0,
    fail: Iterable[SensorKey] = (),
    fail_in_s: float = 2 * 3600.0,
    overrides: Mapping[SensorKey, str] | None = None,
    sensor_faults: SensorFaults | None = None,
    transport_faults: TransportFaults | None = None,
    upload_s: float = 600.0,
    max_batch: int = 500,
    max_inflight: int = 100,
    client_id: str | None = None,
    now_s: float | None = None,
    clock: Callable[[], float] = time.time,
) -> Simulation:
    """Plan the fleet over ``[now − days, now + follow_s]`` and wire a :class:`Publisher` to it.

    ``fail`` sensors run ``tertiary`` to failure at ``now + fail_in_s``;
    ``overrides`` set any other sensor's scenario (see ``fleet.SCENARIOS_BY_KIND``).
    """
    now = clock() if now_s is None else now_s
    chosen = dict(overrides or {})
    for key in fail:
        chosen[key] = "tertiary"
    plan = plan_fleet(
        registry,
        start_s=now - days * 86_400.0,
        end_s=now + follow_s,
        seed=seed,
        overrides=chosen,
        failure_s=now + fail_in_s,
        sensor_faults=sensor_faults,
    )
    publisher = Publisher(
        plan.streams,
        target,
        speed=speed,
        start_s=plan.start_s,
        upload_s=upload_s,
        max_batch=max_batch,
        max_inflight=max_inflight,
        faults=transport_faults,
        client_id=client_id,
        clock=clock,
    )
    logger.info(
        "simulation planned sensors=%d readings=%d start_s=%.0f end_s=%.0f speed=%s failing=%s",
        len(plan.streams),
        plan.reading_count(),
        plan.start_s,
        plan.end_s,
        speed,
        ",".join(f"{m}/{s}" for m, s in plan.failing()) or "none",
    )
    return Simulation(plan, publisher)


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--registry", type=Path, help="registry file (YAML/JSON); default: the demo registry")
    parser.add_argument("--days", type=float, default=30.0, help="days of history before now (default 30)")
    parser.add_argument(
        "--speed", type=float, default=3600.0, help="simulated seconds per wall second until caught up (default 3600)"
    )
    parser.add_argument(
        "--follow-hours", type=float, default=24.0, help="hours to go on in real time after catching up (default 24)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fail", action="append", default=[], metavar="[MINE/]SENSOR", help="run this sensor to failure (repeatable)"
    )
    parser.add_argument(
        "--fail-in-hours", type=float, default=2.0, help="failure this many hours after now (default 2)"
    )
    parser.add_argument(
        "--scenario",
        action="append",
        default=[],
        metavar="[MINE/]SENSOR=SCENARIO",
        help="set a sensor's scenario: stable, creep, step, tertiary; clogging for a piezometer",
    )
    parser.add_argument("--upload-s", type=float, default=600.0, help="simulated seconds between a sensor's uploads")
    parser.add_argument("--client-id", default=None)
    faults = parser.add_argument_group("faults")
    faults.add_argument("--gap-prob", type=float, default=0.0, help="share of samples lost")
    faults.add_argument("--outages", type=int, default=0, help="random 6-hour outages per sensor")
    faults.add_argument("--spike-prob", type=float, default=0.0, help="share of samples with an outlier")
    faults.add_argument("--duplicate-prob", type=float, default=0.0, help="share of messages sent twice")
    faults.add_argument("--reorder-prob", type=float, default=0.0, help="share of messages sent after the next one")
    faults.add_argument(
        "--malformed-prob", type=float, default=0.0, help="share of messages followed by a malformed one"
    )
    faults.add_argument(
        "--malformed-kinds",
        default=",".join(k.value for k in MalformedKind),
        help="comma-separated kinds of malformed message (default: all)",
    )


def mqtt_target(settings: Settings) -> MqttTarget:
    if settings.mqtt_url is None:
        logger.info("MQTT_URL is not set; publishing to %s", DEFAULT_MQTT_URL)
    return MqttTarget.parse(settings.mqtt_url or DEFAULT_MQTT_URL)


async def run_simulate(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``slopewatch simulate``; print the final counts as JSON. 0 on success, 2 on bad input."""
    try:
        registry = load_registry(args.registry) if args.registry else parse_registry(demo_registry(), "<demo>")
        kinds = tuple(MalformedKind(k.strip()) for k in args.malformed_kinds.split(",") if k.strip())
        target = mqtt_target(settings)
        sim = build_simulation(
            registry,
            target,
            days=args.days,
            speed=args.speed,
            follow_s=args.follow_hours * 3600.0,
            seed=args.seed,
            fail=[resolve_sensor(registry, ref) for ref in args.fail],
            fail_in_s=args.fail_in_hours * 3600.0,
            overrides=parse_overrides(registry, args.scenario),
            sensor_faults=SensorFaults(gap_prob=args.gap_prob, spike_prob=args.spike_prob, outages=args.outages),
            transport_faults=TransportFaults(
                duplicate_prob=args.duplicate_prob,
                reorder_prob=args.reorder_prob,
                malformed_prob=args.malformed_prob,
                malformed_kinds=kinds,
                seed=args.seed,
            ),
            upload_s=args.upload_s,
            client_id=args.client_id,
        )
    except (RegistryError, FleetError, SettingsError, ValueError) as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    stats = await sim.run()
    print(json.dumps(stats.as_dict(), ensure_ascii=False))
    return 0
