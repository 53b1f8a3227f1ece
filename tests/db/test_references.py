"""The reference position on a real PostgreSQL, through the real analysis worker: a point far
from its first reading alarms on a cumulative threshold whatever the window saw; late older
readings move the first-reading reference; an audited re-baseline through the API is chained,
verifiable, tamper-evident and changes what is judged."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from analytics import evaluate_sensor
from analytics.worker import AnalysisMetrics, AnalysisWorker, build_window, spec_of
from api.app import create_app
from cli import reference as cli_reference
from cli.main import build_parser
from core.model import Level
from core.registry import parse_registry
from core.settings import Settings
from db import integrity, references
from db.pool import open_pool
from db.readings import ReadingBatch, fetch_windows, write_batch
from db.registry import fetch_sensors, load_registry
from tests.conftest import bearer, issue_token, small_registry_doc

DAY_S = 86400.0
#: GB 51214-style cumulative thresholds of the test point (mm from its reference).
CUMULATIVE = {"blue": 300.0, "yellow": 500.0, "orange": 700.0, "red": 900.0}


def registry_doc() -> dict[str, Any]:
    doc = small_registry_doc()
    gnss = doc["mines"][0]["sites"][0]["sensors"][0]  # type: ignore[index]
    gnss["thresholds"] = {"horizontal_mm": CUMULATIVE}
    return doc


@dataclass
class Env:
    pool: asyncpg.Pool
    settings: Settings
    sid: int
    now: float

    async def cycle(self, now_s: float | None = None) -> int:
        worker = AnalysisWorker(self.settings, self.pool, AnalysisMetrics(CollectorRegistry()))
        return (await worker.cycle(now_s=now_s or self.now)).changes

    async def alert(self, rule: str) -> asyncpg.Record:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT id, level, active, state, evidence::text AS evidence FROM alert "
                "WHERE sensor_id = $1 AND rule = $2",
                self.sid,
                rule,
            )
        assert row is not None, f"no {rule} alert"
        return row


@pytest.fixture
async def env(migrated_dsn: str, settings: Settings) -> AsyncIterator[Env]:
    conn = await asyncpg.connect(migrated_dsn)
    try:
        await load_registry(conn, parse_registry(registry_doc()))
    finally:
        await conn.close()
    async with open_pool(migrated_dsn, settings) as pool:
        async with pool.acquire() as conn:
            sid = await conn.fetchval("SELECT id FROM sensor WHERE code = 'GN01'")
        yield Env(pool, settings, sid, float(int(time.time())))  # whole seconds: exact times


def creep(t_s: np.ndarray, first_s: float, *, total_mm: float, now_s: float, seed: int = 5) -> dict[str, np.ndarray]:
    """Steady creep eastward, ``total_mm`` from the first reading to now, 1 mm noise."""
    rng = np.random.default_rng(seed)
    east = total_mm * (t_s - first_s) / (now_s - first_s) + rng.normal(0.0, 1.0, t_s.size)
    return {
        "east_mm": np.round(east, 2),
        "north_mm": np.round(rng.normal(0.0, 1.0, t_s.size), 2),
        "up_mm": np.round(rng.normal(0.0, 3.0, t_s.size), 2),
    }


async def write(pool: asyncpg.Pool, sid: int, t_s: np.ndarray, values: dict[str, np.ndarray]) -> None:
    batch = ReadingBatch()
    for i, t in enumerate(t_s):
        for ch, v in values.items():
            batch.add(sid, ch, round(t * 1e6), float(v[i]), None)
    async with pool.acquire() as conn:
        await write_batch(conn, batch, [])


async def installed_400_days_ago(env: Env) -> tuple[float, np.ndarray]:
    """A point installed 400 days ago (twice daily readings), hourly for the last 30 days,
    930 mm east of its first reading now. Returns the first reading's time and the times."""
    first = env.now - 400 * DAY_S
    old = np.arange(first, env.now - 30 * DAY_S, DAY_S / 2)
    recent = np.arange(env.now - 30 * DAY_S, env.now - 60.0, 3600.0)
    t = np.concatenate([old, recent])
    await write(env.pool, env.sid, t, creep(t, first, total_mm=930.0, now_s=env.now))
    return first, t


async def test_a_point_930_mm_from_its_first_reading_alarms_on_the_cumulative_threshold(env: Env) -> None:
    first, _ = await installed_400_days_ago(env)
    await env.cycle()
    alert = await env.alert("threshold.horizontal_mm")
    ev = json.loads(alert["evidence"])
    assert Level(alert["level"]) is Level.RED
    assert 915.0 < ev["value"] < 945.0, ev
    assert ev["reference_source"] == "first_reading"
    assert ev["reference_since"] == datetime.fromtimestamp(first, tz=UTC).isoformat().replace("+00:00", "Z")
    assert abs(ev["reference_mm"][0]) < 3.0  # the median of the first six readings, near 0
    async with env.pool.acquire() as conn:
        stored = await references.history(conn, env.sid)
        assert sorted((r.channel, r.source, r.basis_n) for r in stored) == [
            ("east_mm", "first_reading", 6),
            ("north_mm", "first_reading", 6),
            ("up_mm", "first_reading", 6),
        ]
        assert {r.since for r in stored} == {datetime.fromtimestamp(first, tz=UTC)}
        # The same window judged from its own start (what the worker did before) sees 30 mm: nothing.
        row = next(r for r in await fetch_sensors(conn) if r.id == env.sid)
        since = datetime.fromtimestamp(env.now - 30 * DAY_S, tz=UTC)
        window = build_window(await fetch_windows(conn, [env.sid], since), row.channels, env.now)
    from_window_start = {r.rule: r for r in evaluate_sensor(spec_of(row), window)}["threshold.horizontal_mm"]
    assert from_window_start.level is Level.NONE
    assert from_window_start.evidence["baseline_source"] == "window start"


async def test_late_readings_older_than_the_first_move_the_first_reading_reference(env: Env) -> None:
    first, _ = await installed_400_days_ago(env)
    await env.cycle()
    # The logger's backlog from installation day arrives: six readings 10 days before the
    # first one, 100 mm further west. They are the first readings now.
    older = first - 10 * DAY_S + np.arange(6) * 3600.0
    await write(
        env.pool,
        env.sid,
        older,
        {"east_mm": np.full(6, -100.0), "north_mm": np.zeros(6), "up_mm": np.zeros(6)},
    )
    await env.cycle()
    ev = json.loads((await env.alert("threshold.horizontal_mm"))["evidence"])
    assert 1015.0 < ev["value"] < 1045.0, ev
    assert ev["reference_mm"][0] == -100.0
    assert ev["reference_since"] == datetime.fromtimestamp(older[0], tz=UTC).isoformat().replace("+00:00", "Z")
    async with env.pool.acquire() as conn:
        east = [r for r in await references.history(conn, env.sid) if r.channel == "east_mm"]
    # the earlier reference is kept as evidence; the newer row counts
    assert [(r.source, r.since) for r in east] == [
        ("first_reading", datetime.fromtimestamp(first, tz=UTC)),
        ("first_reading", datetime.fromtimestamp(older[0], tz=UTC)),
    ]


async def test_a_rebaseline_through_the_api_is_audited_chained_and_changes_the_judged_cumulative(env: Env) -> None:
    await installed_400_days_ago(env)
    await env.cycle()
    app = create_app(env.settings, pool=env.pool)
    operator = bearer(await issue_token(env.pool, role="operator", scope_kind="mine", scope_code="M1"))
    viewer = bearer(await issue_token(env.pool, role="viewer"))
    base = "/api/v1/mines/M1/sensors/GN01/reference"
    since = datetime.fromtimestamp(env.now - 5 * DAY_S, tz=UTC)
    body = {"since": since.isoformat(), "reason": "prism reinstalled after the 12 Nov blast"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        before = (await http.get(base, headers=viewer)).json()
        assert {c["channel"]: c["source"] for c in before["current"]} == dict.fromkeys(
            ("east_mm", "north_mm", "up_mm"), "first_reading"
        )
        refused = await http.post(base, headers=viewer, json=body)
        assert refused.status_code == 403
        bad = await http.post(base, headers=operator, json={**body, "values": {"east_mm": 1.0}})
        assert bad.status_code == 400
        assert "every channel" in bad.json()["message"]
        elsewhere = bearer(await issue_token(env.pool, role="operator", scope_kind="mine", scope_code="M1T"))
        assert (await http.post(base, headers=elsewhere, json=body)).status_code == 404
        done = await http.post(base, headers=operator, json=body)
        assert done.status_code == 201, done.text
        current = {c["channel"]: c for c in done.json()["current"]}
    east = current["east_mm"]
    assert east["source"] == "rebaseline"
    assert east["reason"] == body["reason"]
    assert datetime.fromisoformat(east["since"]) == since
    assert east["actor"].startswith("test operator mine M1 (token ")
    assert "operator at mine M1" in east["actor"]
    # the new reference: the median of the first readings since the reinstallation (~ 919 mm east)
    assert 910.0 < east["value"] < 925.0
    await env.cycle()
    ev = json.loads((await env.alert("threshold.horizontal_mm"))["evidence"])
    assert ev["reference_source"] == "rebaseline"
    assert ev["reference_since"] == since.isoformat().replace("+00:00", "Z")
    assert ev["value"] < 30.0, ev  # five days of creep since the new installation, not 930 mm
    async with env.pool.acquire() as conn:
        entries = await integrity.chain(conn, env.sid)
        entry = next(e for e in entries if e.seq == east["seq"])
        assert entry.kind == "correction"
        ok = await integrity.verify_sensor(conn, env.sid, since, datetime.now(UTC))
        assert [f for f in ok.findings if f.reason != "unsealed"] == []
        # Rewriting the recorded reference (a superuser dropping the guard) is found.
        await conn.execute("ALTER TABLE sensor_reference DISABLE TRIGGER sensor_reference_append_only")
        await conn.execute(
            "UPDATE sensor_reference SET value = value + 900 WHERE sensor_id = $1 AND source = 'rebaseline' "
            "AND channel = 'east_mm'",
            env.sid,
        )
        tampered = await integrity.verify_sensor(conn, env.sid, since, datetime.now(UTC))
        assert tampered.status == "TAMPERED"
        assert [(f.reason, f.seq) for f in tampered.findings if f.reason != "unsealed"] == [
            ("correction_altered", east["seq"])
        ]


async def test_a_rebaseline_without_values_needs_readings_since(env: Env) -> None:
    await installed_400_days_ago(env)
    async with env.pool.acquire() as conn:
        with pytest.raises(references.RebaselineError, match="no valid readings"):
            await references.rebaseline(
                conn,
                env.sid,
                ["east_mm", "north_mm", "up_mm"],
                since=datetime.now(UTC) + timedelta(hours=1),
                values=None,
                reason="new antenna",
                actor="test",
            )
        assert await references.history(conn, env.sid) == []


async def reference_cli(argv: list[str], env: Env, dsn: str) -> int:
    return await cli_reference.run(build_parser().parse_args(["reference", *argv]), env.settings, dsn)


async def test_the_cli_shows_and_rebaselines_and_refuses_bad_input_with_exit_2(
    env: Env, migrated_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first, _ = await installed_400_days_ago(env)
    await env.cycle()
    assert await reference_cli(["show", "M1", "GN01"], env, migrated_dsn) == 0
    out = capsys.readouterr().out
    assert out.count("first_reading") == 6  # current and history, three channels each
    assert f"since {datetime.fromtimestamp(first, tz=UTC).isoformat()} (median of the first 6)" in out

    since = datetime.fromtimestamp(env.now - DAY_S, tz=UTC).isoformat()
    values = ["--value", "east_mm=900", "--value", "north_mm=0", "--value", "up_mm=0"]
    args = ["set", "M1", "GN01", "--since", since, "--reason", "new antenna", "--actor", "duty engineer Li"]
    assert await reference_cli([*args, *values], env, migrated_dsn) == 0
    out = capsys.readouterr().out
    assert "re-baselined from" in out
    assert out.count("rebaseline") == 3
    assert "by duty engineer Li" in out
    async with env.pool.acquire() as conn:
        rows = [r for r in await references.history(conn, env.sid) if r.source == "rebaseline"]
    assert sorted((r.channel, r.value, r.actor, r.reason) for r in rows) == [
        ("east_mm", 900.0, "duty engineer Li", "new antenna"),
        ("north_mm", 0.0, "duty engineer Li", "new antenna"),
        ("up_mm", 0.0, "duty engineer Li", "new antenna"),
    ]
    # Bad input: a missing channel, an unknown sensor, a sensor without a reference position.
    assert await reference_cli([*args, "--value", "east_mm=1"], env, migrated_dsn) == 2
    assert "every channel" in capsys.readouterr().err
    assert await reference_cli(["show", "M1", "NOPE"], env, migrated_dsn) == 2
    assert await reference_cli(["show", "M1", "RG01"], env, migrated_dsn) == 2
    with pytest.raises(SystemExit) as bad_value:
        build_parser().parse_args(["reference", *args, "--value", "east_mm=lots"])
    assert bad_value.value.code == 2
