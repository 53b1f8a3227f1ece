"""``slopewatch demo``: the whole service on embedded defaults, with a simulated province
in which one open-pit slope accelerates to failure."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from prometheus_client import CollectorRegistry

from analytics.worker import AnalysisMetrics, AnalysisWorker
from api.app import create_app
from cli import runtime
from core.registry import load_registry, parse_registry
from core.settings import Settings
from db.pool import connect, open_pool
from db.registry import load_registry as store_registry
from ingest.metrics import IngestMetrics
from ingest.service import IngestService
from simulators.demo import DEMO_FAILING_SENSOR, demo_registry
from simulators.simulate import build_simulation

logger = logging.getLogger(__name__)

#: A month of history replayed in about three minutes.
DEMO_DAYS = 30.0
DEMO_SPEED = 14_400.0


async def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    from cli.main import prepare_database

    if not settings.mqtt_url:
        # The in-process broker has no shared subscriptions; one ingest worker needs none.
        settings = settings.with_(mqtt_shared_group="")
    reg = load_registry(args.registry) if args.registry else parse_registry(demo_registry())
    days = args.days if args.days is not None else DEMO_DAYS
    speed = args.speed if args.speed is not None else DEMO_SPEED
    metrics = CollectorRegistry()
    with runtime.database(settings) as dsn:
        await prepare_database(dsn, settings)
        conn = await connect(dsn, settings)
        try:
            await store_registry(conn, reg)
        finally:
            await conn.close()
        async with runtime.broker(settings) as mqtt, open_pool(dsn, settings) as pool:
            ingest = IngestService(settings, pool, mqtt, IngestMetrics(metrics))
            worker = AnalysisWorker(settings, pool, AnalysisMetrics(metrics))
            server = runtime.api_server(create_app(settings, pool=pool, metrics=metrics), "127.0.0.1", args.port)
            failing = [DEMO_FAILING_SENSOR] if not args.registry else []
            # Gateways batch: an hour of readings per message keeps the in-process broker (about
            # 1,000 messages/s) from limiting the replay.
            simulation = build_simulation(reg, mqtt, days=days, speed=speed, fail=failing, seed=7, upload_s=3600.0)
            stopped = asyncio.Event()

            def stop() -> None:
                stopped.set()
                ingest.stop()
                worker.stop()
                server.should_exit = True

            runtime.on_stop_signal(stop)
            base = f"http://127.0.0.1:{args.port}"
            mine, sensor = DEMO_FAILING_SENSOR
            print(
                f"\nSlopewatch demo: {reg.sensor_count()} sensors in {len(reg.mines)} mines, "
                f"{days:g} days of history at {speed:g}x.\n"
                f"  API docs       {base}/docs\n"
                f"  alerts         {base}/api/v1/alerts?level=blue\n"
                f"  failing slope  {base}/api/v1/alerts?mine={mine}\n"
                f"  its readings   {base}/api/v1/mines/{mine}/sensors/{sensor}/readings?bucket=1h&start=<ISO time>\n"
                f"  metrics        {base}/metrics\n"
                "Ctrl-C stops.\n",
                file=sys.stderr,
                flush=True,
            )

            async def simulate() -> None:
                stats = await simulation.run()
                logger.info("simulator finished %s", stats.as_dict() if hasattr(stats, "as_dict") else stats)
                await stopped.wait()

            async with asyncio.TaskGroup() as tg:
                tg.create_task(server.serve(), name="api")
                tg.create_task(ingest.run(), name="ingest")
                tg.create_task(worker.run(), name="analyze")
                sim = tg.create_task(simulate(), name="simulate")
                await stopped.wait()
                sim.cancel()
    print("demo stopped", file=sys.stderr)
    return 0
