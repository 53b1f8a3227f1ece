"""The watchdog over the watcher: a real ``slopewatch analyze`` process killed with SIGKILL
raises the watchdog alert (in the API process, behind real uvicorn) within the configured
time, notified by the API's standby notifier, and it clears when the analysis restarts; a
mine whose sensors all fall silent gets one monitoring-offline alert."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import asyncpg
import httpx
from prometheus_client import CollectorRegistry

from api.app import create_app
from api.watchdog import ANALYSIS_RULE, OFFLINE_RULE, Watchdog
from cli import runtime
from core.model import Level
from core.registry import parse_registry
from core.settings import Settings
from core.wire import readings_topic
from db import notify as notify_store
from db.pool import open_pool
from db.registry import load_registry
from ingest.metrics import IngestMetrics
from ingest.service import IngestService
from notify.receiver import WebhookReceiver
from tests.conftest import Mosquitto, small_registry_doc, wait_for

SLOPEWATCH = Path(sys.executable).with_name("slopewatch")
MAX_LAG_S = 3.0
SECRET = "whsec_watchdog_test"


@contextlib.asynccontextmanager
async def analyze_process(dsn: str, tmp: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "SLOPEWATCH_ANALYSIS_INTERVAL_S": "0.2",
        "SLOPEWATCH_METRICS_PORT": "0",
        "SLOPEWATCH_DATA_DIR": str(tmp),
        "SLOPEWATCH_NOTIFY_POLL_S": "0.2",
    }
    proc = await asyncio.create_subprocess_exec(
        str(SLOPEWATCH), "analyze", env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def watchdog_alerts(pool: asyncpg.Pool, rule: str) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await conn.fetch(
            """SELECT a.id, m.code AS mine, a.level, a.active, a.state, a.subject, a.explanation_en, a.explanation_zh
               FROM alert a JOIN mine m ON m.id = a.mine_id WHERE a.rule = $1 ORDER BY m.code, a.id""",
            rule,
        )


async def test_killing_the_analysis_raises_the_watchdog_alert_which_clears_when_it_is_back(
    loaded_dsn: str, settings: Settings, tmp_path: Path
) -> None:
    fast = settings.with_(
        watchdog_poll_s=0.2, watchdog_max_lag_s=MAX_LAG_S, summary_refresh_s=0, notify_poll_s=0.2,
        notify_timeout_s=2.0,
    )  # fmt: skip
    port = runtime.free_port()
    async with open_pool(loaded_dsn, fast) as pool, WebhookReceiver(secret=SECRET) as hook:
        async with pool.acquire() as conn:
            await notify_store.add_target(
                conn, scope_kind="mine", scope_code="M1", channel="webhook", address=hook.url, secret=SECRET,
                min_level=Level.BLUE, name="monitoring room",
            )  # fmt: skip
        # The analysis starts first (its imports take seconds); the API watches once it beats.
        first = contextlib.AsyncExitStack()
        proc = await first.enter_async_context(analyze_process(loaded_dsn, tmp_path))

        async def beating() -> bool:
            async with pool.acquire() as conn:
                return bool(await conn.fetchval("SELECT count(*) FROM analysis_heartbeat"))

        await wait_for(beating, within_s=60, interval=0.1)
        server = runtime.api_server(create_app(fast, pool=pool, metrics=CollectorRegistry()), "127.0.0.1", port)
        serving = asyncio.create_task(server.serve())
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:

                async def analysis_state() -> str:
                    try:
                        doc = (await http.get("/health")).json()
                    except httpx.TransportError:
                        return "down"
                    return str(doc["detail"]["watchdog"]["analysis"])

                await wait_for(lambda: _is(analysis_state(), "ok"), within_s=60, interval=0.1)
                assert await watchdog_alerts(pool, ANALYSIS_RULE) == []
                ready = (await http.get("/ready")).json()
                assert ready["detail"]["watchdog"]["analysis"] == "ok"
                assert ready["detail"]["watchdog"]["analysis_workers"] == 1
                proc.kill()  # SIGKILL
                killed = time.monotonic()
                await proc.wait()
                await first.aclose()

                async def raised() -> bool:
                    return len(await watchdog_alerts(pool, ANALYSIS_RULE)) == 2

                await wait_for(raised, within_s=MAX_LAG_S + 10, interval=0.05)
                took_s = time.monotonic() - killed
                # the last heartbeat came before the kill: within the limit, one 0.2 s poll and
                # the check itself (slack for a loaded machine)
                assert took_s <= MAX_LAG_S + 2.0, took_s
                print(f"watchdog alert {took_s:.2f} s after SIGKILL (limit {MAX_LAG_S} s, poll 0.2 s)")
                assert await analysis_state() == "dead"
                alerts = await watchdog_alerts(pool, ANALYSIS_RULE)
                assert [a["mine"] for a in alerts] == ["M1", "M1T"], "one watchdog alert per mine"
                assert all(Level(a["level"]) is Level.ORANGE and a["active"] for a in alerts)
                assert all(a["subject"] == "analysis" for a in alerts)
                assert "not running" in alerts[0]["explanation_en"]
                assert "分析服务已停止" in alerts[0]["explanation_zh"]
                health = (await http.get("/health")).json()["detail"]["watchdog"]
                assert health["standby_notifier"] is True

                # The notifier died with the analysis: the API's standby notifier tells the mine.
                def told() -> list[dict[str, Any]]:
                    return [
                        n for item in hook.received for n in item.json()["notifications"]
                        if n["alert"]["rule"] == ANALYSIS_RULE
                    ]  # fmt: skip

                await wait_for(lambda: len(told()) == 1, within_s=15)
                assert told()[0]["alert"]["mine_code"] == "M1"
                assert told()[0]["level"] == "orange"

                async with analyze_process(loaded_dsn, tmp_path):
                    await wait_for(lambda: _is(analysis_state(), "ok"), within_s=60, interval=0.1)

                    async def cleared() -> bool:
                        return not any(a["active"] for a in await watchdog_alerts(pool, ANALYSIS_RULE))

                    await wait_for(cleared, within_s=10)
                alerts = await watchdog_alerts(pool, ANALYSIS_RULE)
                assert len(alerts) == 2, "cleared, not duplicated"
                async with pool.acquire() as conn:
                    kinds = [
                        r["kind"]
                        for r in await conn.fetch(
                            "SELECT kind FROM alert_event WHERE alert_id = $1 AND actor IS NULL ORDER BY id",
                            alerts[0]["id"],
                        )
                    ]
                assert kinds == ["opened", "cleared"]
                assert (await http.get("/health")).json()["detail"]["watchdog"]["standby_notifier"] is False
        finally:
            await first.aclose()
            server.should_exit = True
            await asyncio.wait_for(serving, 15)


async def _is(state: Any, expected: str) -> bool:
    return bool(await state == expected)


def silent_registry() -> dict[str, Any]:
    doc = small_registry_doc()
    doc["mines"].append(  # type: ignore[attr-defined]
        {
            "code": "QUIET",
            "name": "A pit whose link goes down",
            "kind": "open_pit",
            "region": "220102",
            "sites": [
                {
                    "code": f"QUIET-{side}",
                    "name": f"{side} slope",
                    "kind": "slope",
                    "sensors": [{"code": f"GN{side}", "kind": "gnss", "interval_s": 1}],
                }
                for side in ("N", "S")
            ],
        }
    )
    return doc


async def test_a_mine_whose_sensors_all_fall_silent_gets_one_monitoring_offline_alert(
    migrated_dsn: str, settings: Settings, mosquitto: Mosquitto
) -> None:
    metrics = CollectorRegistry()
    async with open_pool(migrated_dsn, settings) as pool:
        async with pool.acquire() as conn:
            await load_registry(conn, parse_registry(silent_registry()))
        ingest = IngestService(settings, pool, mosquitto.target, IngestMetrics(metrics))
        task = asyncio.create_task(ingest.run())
        sent = 0

        async def report(*sensors: str) -> None:
            nonlocal sent
            async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=f"pub-{uuid.uuid4().hex[:8]}") as c:
                for code in sensors:
                    body = {"t": int(time.time() * 1000), "v": {"east_mm": 1.0, "north_mm": 0.0, "up_mm": 0.0}}
                    await c.publish(readings_topic("QUIET", code), json.dumps(body).encode(), qos=1)
            sent += len(sensors)
            await wait_for(
                lambda: (metrics.get_sample_value("slopewatch_ingest_readings_stored_total") or 0) >= sent * 3
            )

        try:
            await asyncio.wait_for(ingest.connected.wait(), 10)
            dog = Watchdog(settings, pool)
            await report("GNN", "GNS")
            status = await dog.check()
            assert status is not None
            assert status.mines_offline == []
            assert await watchdog_alerts(pool, OFFLINE_RULE) == []
            await asyncio.sleep(3.2)  # 3 × the 1 s interval: both sensors are silent
            for _ in range(3):  # checked again and again: still one alert
                status = await dog.check()
            assert status is not None
            assert status.mines_offline == ["QUIET"]
            alerts = await watchdog_alerts(pool, OFFLINE_RULE)
            assert len(alerts) == 1, "one alert for the mine, not one per sensor"
            assert alerts[0]["mine"] == "QUIET"
            assert alerts[0]["subject"] == "mine"
            assert Level(alerts[0]["level"]) is Level.ORANGE
            assert "none of its 2 sensors" in alerts[0]["explanation_en"]
            assert "(七)" in alerts[0]["explanation_zh"]
            # M1 and M1T never reported: not 'offline' (never connected shows in the online rate).
            await report("GNN")  # the north slope is back, the south one still silent
            await dog.check()
            alerts = await watchdog_alerts(pool, OFFLINE_RULE)
            assert len(alerts) == 1
            assert Level(alerts[0]["level"]) is Level.YELLOW, "one whole site is still silent"
            assert alerts[0]["active"]
            assert "QUIET-S" in alerts[0]["explanation_en"]
            await report("GNN", "GNS")
            await dog.check()
            alerts = await watchdog_alerts(pool, OFFLINE_RULE)
            assert len(alerts) == 1
            assert not alerts[0]["active"]
            assert alerts[0]["state"] == "open", "an orange alert waits for a person to close it"
        finally:
            ingest.stop()
            await asyncio.wait_for(task, 15)
