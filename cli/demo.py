"""``slopewatch demo``: the whole service on embedded defaults, with a simulated province
in which one open-pit slope accelerates to failure."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry

from analytics.worker import AnalysisMetrics, AnalysisWorker
from api.app import create_app
from cli import runtime
from core.headsign import HeadSigner, generate_key_pair, load_private_key
from core.model import region_parent
from core.registry import RegistryDoc, load_registry, parse_registry
from core.settings import Settings
from db import tokens
from db.heads import HeadsFile, open_heads_file
from db.integrity import run_sealer
from db.pool import Conn, connect, open_pool
from db.registry import load_registry as store_registry
from ingest.metrics import IngestMetrics
from ingest.service import IngestService
from notify import Notifier
from simulators.demo import DEMO_FAILING_SENSOR, demo_registry
from simulators.simulate import build_simulation

logger = logging.getLogger(__name__)

#: A month of history replayed in about three minutes.
DEMO_DAYS = 30.0
DEMO_SPEED = 14_400.0


async def make_demo_tokens(conn: Conn, reg: RegistryDoc, mine_code: str) -> list[tuple[str, str]]:
    """Fresh tokens for the province, city, county and mine of the failing slope (the
    previous demo's are revoked), so each level's view can be tried at once."""
    await conn.execute("UPDATE api_token SET revoked_at = now() WHERE name LIKE 'demo: %' AND revoked_at IS NULL")
    county = next(m.region for m in reg.mines if m.code == mine_code)
    city = region_parent(county) or county
    province = region_parent(city) or city
    names = {r.code: r.name for r in reg.regions}
    wanted = [
        ("province", "supervisor", "region", province),
        ("city", "supervisor", "region", city),
        ("county", "supervisor", "region", county),
        ("mine", "operator", "mine", mine_code),
        ("all", "admin", "all", ""),
    ]
    out = []
    for level, role, kind, code in wanted:
        where = f"{code} {names.get(code, '')}".strip() if code else "everything"
        _, secret = await tokens.create(conn, name=f"demo: {level} {role}", role=role, scope_kind=kind, scope_code=code)
        out.append((f"{level} {role} ({where})", secret))
    return out


def demo_signing(settings: Settings) -> tuple[HeadSigner, HeadsFile, Path]:
    """The demo signs its chain heads like a deployment: a key pair made once in the data
    directory (unless SLOPEWATCH_SEAL_KEY_FILE names one) and a heads file beside it."""
    data = Path(settings.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    key = Path(settings.seal_key_file) if settings.seal_key_file else data / "seal-key.pem"
    public = Path(settings.seal_public_key_file) if settings.seal_public_key_file else Path(f"{key}.pub")
    if not settings.seal_key_file and not key.exists():
        generate_key_pair(key, public)
    heads_path = settings.heads_file or str(data / "heads.jsonl")
    return load_private_key(key), open_heads_file(heads_path), public


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
            failing_mine = DEMO_FAILING_SENSOR[0] if not args.registry else reg.mines[0].code
            demo_tokens = await make_demo_tokens(conn, reg, failing_mine)
        finally:
            await conn.close()
        async with runtime.broker(settings) as mqtt, open_pool(dsn, settings) as pool:
            ingest = IngestService(settings, pool, mqtt, IngestMetrics(metrics))
            worker = AnalysisWorker(settings, pool, AnalysisMetrics(metrics))
            notifier = Notifier(settings, pool)
            seal_stop = asyncio.Event()
            signer, heads_file, public_key = demo_signing(settings)
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
                notifier.stop()
                seal_stop.set()
                server.should_exit = True

            runtime.on_stop_signal(stop)
            base = f"http://127.0.0.1:{args.port}"
            mine, sensor = DEMO_FAILING_SENSOR
            print(
                f"\nSlopewatch demo: {reg.sensor_count()} sensors in {len(reg.mines)} mines, "
                f"{days:g} days of history at {speed:g}x.\n"
                f"  web pages      {base}/ui/  (log in with a token below)\n"
                f"  API docs       {base}/docs\n"
                f"  alerts         {base}/api/v1/alerts?level=blue\n"
                f"  failing slope  {base}/api/v1/alerts?mine={mine}\n"
                f"  its readings   {base}/api/v1/mines/{mine}/sensors/{sensor}/readings?bucket=1h&start=<ISO time>\n"
                f"  metrics        {base}/metrics\n"
                "Tokens for each level (new at every start; send 'Authorization: Bearer <token>'):\n"
                + "".join(f"  {label:<44} {secret}\n" for label, secret in demo_tokens)
                + f"  e.g. curl -H 'Authorization: Bearer {demo_tokens[2][1]}' {base}/api/v1/alerts\n"
                f"Chain heads: signed with key {signer.key_id}, published to {heads_file.path}\n"
                f"  slopewatch verify --public-key {public_key} --archived-heads {heads_file.path}\n"
                f"Notifications: logged until a target is added; escalation {notifier.policy.describe()}\n"
                f"  slopewatch notify add --scope {mine} --channel webhook --url http://127.0.0.1:9000/hook  (prints a secret)\n"
                "  slopewatch notify receive --port 9000 --secret <that secret>   (prints what arrives, verified)\n"
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
                tg.create_task(notifier.run(), name="notify")
                tg.create_task(run_sealer(pool, seal_stop, signer=signer, heads_file=heads_file), name="seal")
                sim = tg.create_task(simulate(), name="simulate")
                await stopped.wait()
                sim.cancel()
    print("demo stopped", file=sys.stderr)
    return 0
