"""Measure the publisher's rate against a broker.

    python -m simulators.bench_publish --mqtt-url mqtt://127.0.0.1:1883 --days 30 --upload-s 3600

Publishes the demo fleet's past ``days`` as fast as the broker acknowledges
(``speed = inf``) and prints messages/s and readings/s as JSON. Planning time is
reported apart from publishing time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import time

from core.registry import parse_registry
from core.settings import MqttTarget
from simulators.demo import demo_registry
from simulators.simulate import build_simulation


async def _main(args: argparse.Namespace) -> dict[str, float]:
    registry = parse_registry(demo_registry(), "<demo>")
    t0 = time.perf_counter()
    sim = build_simulation(
        registry,
        MqttTarget.parse(args.mqtt_url),
        days=args.days,
        speed=math.inf,
        follow_s=0.0,
        upload_s=args.upload_s,
        max_inflight=args.max_inflight,
    )
    t1 = time.perf_counter()
    stats = await sim.run()
    t2 = time.perf_counter()
    return {
        "sensors": len(sim.plan.streams),
        "plan_s": round(t1 - t0, 3),
        "publish_s": round(t2 - t1, 3),
        "messages": stats.messages,
        "readings": stats.readings,
        "bytes": stats.bytes,
        "messages_per_s": round(stats.messages / (t2 - t1)),
        "readings_per_s": round(stats.readings / (t2 - t1)),
        "readings_per_message": round(stats.readings / max(stats.messages, 1), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--upload-s", type=float, default=3600.0)
    parser.add_argument("--max-inflight", type=int, default=100)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(asyncio.run(_main(args))))


if __name__ == "__main__":
    main()
