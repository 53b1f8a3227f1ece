"""Least privilege (migration 015) against a real PostgreSQL: each service runs as a login in
its own group role, does all its work, and is refused what it must never do."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import asyncpg
import httpx
import pytest
from prometheus_client import CollectorRegistry

from analytics.worker import AnalysisMetrics, AnalysisWorker
from api.app import create_app
from api.watchdog import Watchdog
from core import headsign
from core.registry import parse_registry
from core.settings import Settings
from core.wire import readings_topic
from db.integrity import seal_pass
from db.migrate import Flavour, load_migrations, migrate
from db.overview import refresh_mine_status
from db.pool import open_pool
from db.registry import load_registry
from ingest.metrics import IngestMetrics
from ingest.service import IngestService
from notify import Notifier
from tests.conftest import Mosquitto, bearer, issue_token, small_registry_doc, wait_for, with_database
from tests.integrity.support import SEAL_ALL
from tests.support.roles import as_user, login_user, owned_database

SERVICES = ("slopewatch_ingest", "slopewatch_analyze", "slopewatch_api")
#: Tables no service may rewrite: the readings and every history.
HISTORY = (
    "reading",
    "alert_event",
    "seal_entry",
    "reading_correction",
    "chain_head_signature",
    "mine_move",
    "sensor_reference",
)


@dataclass
class Deployment:
    owner: str
    dsn: dict[str, str]


@pytest.fixture
async def deployment(pg_root_dsn: str) -> AsyncIterator[Deployment]:
    """A database owned and migrated by an ordinary login, the registry loaded by it, and one
    login user per service role."""
    async with (
        owned_database(pg_root_dsn) as owner,
        login_user(pg_root_dsn, member_of="slopewatch_ingest") as ingest,
        login_user(pg_root_dsn, member_of="slopewatch_analyze") as analyze,
        login_user(pg_root_dsn, member_of="slopewatch_api") as api,
    ):
        conn = await asyncpg.connect(owner)
        try:
            await load_registry(conn, parse_registry(small_registry_doc()))
        finally:
            await conn.close()
        yield Deployment(
            owner,
            {name: as_user(owner, *user) for name, user in (("ingest", ingest), ("analyze", analyze), ("api", api))},
        )


async def refused(dsn: str, *statements: str) -> list[str]:
    """Run each statement in its own transaction; return the SQLSTATE class of each refusal."""
    conn = await asyncpg.connect(dsn)
    out = []
    try:
        for sql in statements:
            try:
                await conn.execute(sql)
            except asyncpg.InsufficientPrivilegeError:
                out.append("refused")
            else:
                out.append(f"ALLOWED: {sql}")
    finally:
        await conn.close()
    return out


async def test_each_service_does_its_work_as_its_own_role(
    deployment: Deployment, settings: Settings, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    dsn = deployment.dsn
    now_ms = int(time.time() * 1000)
    metrics = CollectorRegistry()
    # Ingest, as slopewatch_ingest, over mosquitto: five hours of a piezometer whose phreatic
    # line rose above the red depth, and one reading ingest must refuse (kept as a dead letter).
    async with open_pool(dsn["ingest"], settings) as pool:
        ingest = IngestService(settings, pool, mosquitto.target, IngestMetrics(metrics))
        task = asyncio.create_task(ingest.run(), name="ingest-as-role")
        await asyncio.wait_for(ingest.connected.wait(), 10)
        readings = [{"t": now_ms - h * 3_600_000, "v": {"depth_m": 4.5}} for h in range(5)]
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=f"gw-{uuid.uuid4().hex[:8]}") as gw:
            await gw.publish(readings_topic("M1T", "PZ01"), json.dumps({"readings": readings}), qos=1)
            await gw.publish(readings_topic("M1T", "PZ01"), json.dumps({"readings": [{"t": now_ms}]}), qos=1)

        def stored() -> float:
            return metrics.get_sample_value("slopewatch_ingest_readings_stored_total") or 0.0

        await wait_for(lambda: stored() == 5)
        await wait_for(lambda: (metrics.get_sample_value("slopewatch_ingest_dead_letters_total") or 0.0) == 1)
        ingest.stop()
        await asyncio.wait_for(task, 15)

    # Analyze, as slopewatch_analyze: the detectors raise the alert, the notifier escalates,
    # the sealer seals and signs.
    key = tmp_path / "seal.pem"
    headsign.generate_key_pair(key, tmp_path / "seal.pub")
    async with open_pool(dsn["analyze"], settings) as pool:
        worker = AnalysisWorker(settings, pool, AnalysisMetrics(CollectorRegistry()))
        task = asyncio.create_task(worker.run(), name="analyze-as-role")

        async def red_alert() -> int | None:
            async with pool.acquire() as conn:
                found: int | None = await conn.fetchval("SELECT id FROM alert WHERE level = 4 AND state = 'open'")
            return found

        await wait_for(red_alert, within_s=30)
        worker.stop()
        await asyncio.wait_for(task, 15)
        alert_id = await red_alert()
        assert alert_id is not None
        notifier = Notifier(settings.with_(escalation="red:county=0s"), pool)
        assert await notifier.plan() == 2  # the mine and the county
        report = await seal_pass(pool, SEAL_ALL, signer=headsign.load_private_key(key))
        assert (report.seals, report.rows, report.signed) >= (1, 5, 1)

    # The API, as slopewatch_api: tokens, handling, a correction, the summary, signed heads.
    async with open_pool(dsn["api"], settings) as pool:
        owner_pool_token = await _token(deployment.owner, settings)
        async with pool.acquire() as conn:
            assert await refresh_mine_status(conn)
        app = create_app(settings.with_(summary_refresh_s=0), pool=pool)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t", headers=bearer(owner_pool_token)
        ) as http:
            r = await http.post(f"/api/v1/alerts/{alert_id}/acknowledge", json={"note": "as the api role"})
            assert r.status_code == 200, r.text
            five = {
                "responsible_person": "Li", "measures": "drain", "funds": "budget",
                "deadline": (datetime.now(UTC) + timedelta(days=1)).isoformat(), "contingency_plan": "evacuate",
            }  # fmt: skip
            assert (await http.post(f"/api/v1/alerts/{alert_id}/handle", json=five)).status_code == 200
            r = await http.post(
                "/api/v1/mines/M1T/sensors/PZ01/corrections",
                json={
                    "start": datetime.fromtimestamp(now_ms / 1000 - 3600, UTC).isoformat(),
                    "end": datetime.fromtimestamp(now_ms / 1000, UTC).isoformat(),
                    "action": "invalidate",
                    "reason": "diver cable pulled",
                },
            )
            assert r.status_code == 201, r.text
            summary = (await http.get("/api/v1/summary")).json()
            assert (summary["alerts"]["open"], summary["sensors"]["online"]) == (1, 1)
            assert (await http.get("/ready")).status_code == 200
            signed = (await http.get("/api/v1/integrity/signed-heads")).json()["items"]
            assert [(h["sensor_code"], h["seq"]) for h in signed] == [("PZ01", report.seals)]
            dead = await http.get("/dead-letters")
            assert dead.status_code == 200, dead.text
            assert len(dead.json()["items"]) == 1
        # The pages' login: a server-side session, made, used and ended by the API's login.
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as browser:
            same_origin = {"Origin": "http://t"}
            r = await browser.post("/api/v1/session", json={"token": owner_pool_token}, headers=same_origin)
            assert r.status_code == 200, r.text
            assert (await browser.get("/api/v1/me")).status_code == 200
            assert (await browser.delete("/api/v1/session", headers=same_origin)).status_code in (200, 204)
            assert (await browser.get("/api/v1/me")).status_code == 401
    conn = await asyncpg.connect(deployment.owner)
    try:
        assert await conn.fetchval("SELECT count(*) FROM reading") == 5
        stages = await conn.fetch("SELECT kind FROM alert_event WHERE alert_id = $1 ORDER BY id", alert_id)
        assert [s["kind"] for s in stages][-2:] == ["acknowledged", "handling"]
    finally:
        await conn.close()


async def _token(owner_dsn: str, settings: Settings) -> str:
    """Tokens are made by the admin command, which runs as the owner."""
    async with open_pool(owner_dsn, settings) as pool:
        return await issue_token(pool, role="admin")


async def test_what_no_service_may_do_is_refused(deployment: Deployment) -> None:
    dsn = deployment.dsn
    assert (
        await refused(
            dsn["ingest"],
            "UPDATE reading SET value = 0",
            "DELETE FROM reading",
            "TRUNCATE reading",
            "ALTER TABLE seal_entry DISABLE TRIGGER USER",
            "SELECT count(*) FROM alert",
            "INSERT INTO seal_entry (sensor_id, seq, kind, n_rows, digest, prev_hash, entry_hash, sealed_at) "
            "SELECT 1, 1, 'correction', 0, digest, digest, digest, now() FROM (SELECT sha256('') AS digest) d",
        )
        == ["refused"] * 6
    )
    assert (
        await refused(
            dsn["api"],
            "UPDATE reading SET value = 0",
            "INSERT INTO reading (sensor_id, channel, ts, value) VALUES (1, 'x', now(), 1)",
            "DELETE FROM reading",
            "UPDATE alert SET level = 1",
            "DELETE FROM alert_event",
            "UPDATE seal_entry SET n_rows = 0",
            "SELECT secret FROM notify_target",
            "ALTER TABLE reading_correction DISABLE TRIGGER USER",
            "UPDATE mine SET region_code = '220203'",
        )
        == ["refused"] * 9
    )
    assert (
        await refused(
            dsn["analyze"],
            "UPDATE reading SET value = 0",
            "DELETE FROM reading",
            "INSERT INTO reading (sensor_id, channel, ts, value) VALUES (1, 'x', now(), 1)",
            "DELETE FROM chain_head_signature",
            "DELETE FROM alert",
            "SELECT token_hash FROM api_token",
            "UPDATE notify_target SET removed_at = now()",
        )
        == ["refused"] * 7
    )


async def test_no_service_role_may_rewrite_readings_or_history(deployment: Deployment) -> None:
    """Checked over every table, so tables added later are held to the same rule."""
    conn = await asyncpg.connect(deployment.owner)
    try:
        roles = await conn.fetch(
            "SELECT rolname, rolcanlogin, rolsuper, rolcreaterole FROM pg_roles WHERE rolname = ANY($1) ORDER BY 1",
            list(SERVICES),
        )
        assert [(r["rolname"], r["rolcanlogin"], r["rolsuper"], r["rolcreaterole"]) for r in roles] == [
            (name, False, False, False) for name in sorted(SERVICES)
        ]
        rows = await conn.fetch(
            """SELECT c.relname, r.rolname,
                      has_table_privilege(r.rolname, c.oid, 'INSERT') AS ins,
                      has_table_privilege(r.rolname, c.oid, 'UPDATE') AS upd,
                      has_table_privilege(r.rolname, c.oid, 'DELETE') AS del,
                      has_table_privilege(r.rolname, c.oid, 'TRUNCATE') AS trunc,
                      pg_get_userbyid(c.relowner) AS owner
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               CROSS JOIN (SELECT unnest($1::text[]) AS rolname) r
               WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')""",
            list(SERVICES),
        )
    finally:
        await conn.close()
    assert {r["relname"] for r in rows} >= set(HISTORY)
    for r in rows:
        where = f"{r['rolname']} on {r['relname']}"
        assert r["owner"] not in SERVICES, where
        assert not r["trunc"], where
        if r["relname"] in HISTORY:
            assert not r["upd"], where
            assert not r["del"], where
        if r["relname"] == "reading":
            assert r["ins"] == (r["rolname"] == "slopewatch_ingest"), where


async def test_migrating_many_databases_at_once_with_the_roles_in_place(pg_root_dsn: str) -> None:
    names = [f"t_roles_{uuid.uuid4().hex[:8]}" for _ in range(3)]
    admin = await asyncpg.connect(pg_root_dsn)
    try:
        for name in names:
            await admin.execute(f'CREATE DATABASE "{name}"')

        async def run(name: str) -> int:
            conn = await asyncpg.connect(with_database(pg_root_dsn, name))
            try:
                report = await migrate(conn, timescaledb="off")
                return len(report.applied)
            finally:
                await conn.close()

        applied = await asyncio.gather(*(run(n) for n in names))
        assert applied == [len([m for m in load_migrations() if m.only in (None, Flavour.PLAIN)])] * 3
        granted = await admin.fetchval(
            "SELECT count(*) FROM pg_roles WHERE rolname = ANY($1) AND NOT rolcanlogin", list(SERVICES)
        )
        assert granted == 3
    finally:
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_login_users_are_made_by_the_owner_in_one_service_role(deployment: Deployment, tmp_path: Path) -> None:
    from tests.integrity.test_signed_heads import cli, one_line_error

    name = f"t_login_{uuid.uuid4().hex[:8]}"
    password = "correct horse battery staple"
    try:
        made = await asyncio.to_thread(
            cli, tmp_path, "db", "login-user", name, "--service", "ingest", "--password-env", "PW",
            dsn=deployment.owner, PW=password,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        assert made.stdout.strip() == f"created login {name} in slopewatch_ingest"
        moved = await asyncio.to_thread(
            cli, tmp_path, "db", "login-user", name, "--service", "api", "--password-env", "PW",
            dsn=deployment.owner, PW=password + "!",
        )  # fmt: skip
        assert moved.stdout.strip() == f"updated login {name} in slopewatch_api"
        conn = await asyncpg.connect(as_user(deployment.owner, name, password + "!"))
        try:
            member = await conn.fetch(
                "SELECT rolname FROM pg_roles WHERE rolname = ANY($1) AND pg_has_role(current_user, oid, 'MEMBER')",
                list(SERVICES),
            )
            assert [r["rolname"] for r in member] == ["slopewatch_api"]
        finally:
            await conn.close()
        one_line_error(
            await asyncio.to_thread(
                cli,
                tmp_path,
                "db",
                "login-user",
                name,
                "--service",
                "api",
                "--password-env",
                "NOPE",
                dsn=deployment.owner,
            ),
            "environment variable NOPE is not set",
        )
        one_line_error(
            await asyncio.to_thread(
                cli,
                tmp_path,
                "db",
                "login-user",
                "slopewatch_api",
                "--service",
                "api",
                "--password-env",
                "PW",
                dsn=deployment.owner,
                PW=password,
            ),
            "is not a usable user name",
        )
    finally:
        admin = await asyncpg.connect(deployment.owner)
        try:
            await admin.execute(f"DROP ROLE IF EXISTS {name}")
        finally:
            await admin.close()


async def test_the_watchdog_judges_in_the_api_and_alarms_as_its_own_process(
    deployment: Deployment, settings: Settings, tmp_path: Path
) -> None:
    """Under least privilege the API's login may not write alerts: its watchdog keeps judging
    (for /health and the banner) and says once why it raises nothing; `slopewatch watchdog`,
    a real process with a login in slopewatch_analyze, raises watchdog.analysis for every mine
    when no analysis beats."""
    fast = settings.with_(watchdog_poll_s=0.2, watchdog_max_lag_s=1.0, summary_refresh_s=0)
    async with open_pool(deployment.dsn["api"], fast) as pool:
        dog = Watchdog(fast, pool)
        await asyncio.sleep(1.2)  # watching for longer than the limit, and no heartbeat
        status = await dog.check()
        assert status is not None
        assert status.analysis == "dead"
        assert dog.writes is False, "the API's login was refused the alert writes"
        assert (await dog.check()) is not None, "it goes on judging"
    owner = await asyncpg.connect(deployment.owner)
    try:
        assert await owner.fetchval("SELECT count(*) FROM alert WHERE rule = 'watchdog.analysis'") == 0
    finally:
        await owner.close()

    env = {
        **os.environ,
        "DATABASE_URL": deployment.dsn["analyze"],
        "SLOPEWATCH_WATCHDOG_POLL_S": "0.2",
        "SLOPEWATCH_WATCHDOG_MAX_LAG_S": "1",
        "SLOPEWATCH_DATA_DIR": str(tmp_path),
        "SLOPEWATCH_METRICS_PORT": "0",
    }
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("slopewatch")), "watchdog", env=env, stderr=asyncio.subprocess.PIPE
    )
    try:

        async def alarmed() -> int:
            conn = await asyncpg.connect(deployment.owner)
            try:
                return int(
                    await conn.fetchval(
                        "SELECT count(*) FROM alert WHERE rule = 'watchdog.analysis' AND active AND level = 3"
                    )
                )
            finally:
                await conn.close()

        await wait_for(lambda: _equals(alarmed(), 2), within_s=60, interval=0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"Traceback" not in err, err.decode()[-2000:]


async def _equals(value: Any, expected: int) -> bool:
    return bool(await value == expected)
