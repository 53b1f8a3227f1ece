"""The HTTP API over a real PostgreSQL, through httpx's ASGI transport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from api.app import create_app
from core.model import Level
from core.settings import Settings
from db import alerts as store
from db.pool import open_pool
from db.readings import DeadLetter, ReadingBatch, write_batch
from tests.conftest import bearer, issue_token

T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
async def client(loaded_dsn: str, settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, asyncpg.Pool]]:
    async with open_pool(loaded_dsn, settings) as pool:
        app = create_app(settings, pool=pool)
        transport = httpx.ASGITransport(app=app)
        headers = bearer(await issue_token(pool))
        async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as http:
            yield http, pool


async def seed_readings(pool: asyncpg.Pool, hours: int = 48) -> None:
    async with pool.acquire() as conn:
        sid = await conn.fetchval("SELECT s.id FROM sensor s JOIN mine m ON m.id = s.mine_id WHERE s.code = 'GN01'")
        batch = ReadingBatch()
        for h in range(hours):
            t_us = int((T0 + timedelta(hours=h)).timestamp() * 1e6)
            for ch, v in (("east_mm", h * 0.5), ("north_mm", 0.0), ("up_mm", -h * 0.1)):
                batch.add(sid, ch, t_us, v, h)
        dead = [DeadLetter("slopewatch/v1/M1/X/readings", b"{bad", 4, False, "malformed_json", "payload is not JSON")]
        await write_batch(conn, batch, dead)


async def seed_alert(pool: asyncpg.Pool, code: str, level: Level, mine: str = "M1") -> int:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            """SELECT s.id, s.site_id, s.mine_id, m.region_code FROM sensor s JOIN mine m ON m.id = s.mine_id
               WHERE s.code = $1 AND m.code = $2""",
            code,
            mine,
        )
        write = store.AlertWrite(
            sensor_id=row["id"],
            site_id=row["site_id"],
            mine_id=row["mine_id"],
            region_code=row["region_code"],
            rule="threshold.test",
            rule_version=1,
            level=level,
            at=T0,
            evidence={"value": 1.0},
            explanation_en="test",
            explanation_zh="测试",
            forecast_failure_at=None,
            retroactive=False,
        )
        return await store.open_alert(conn, write)


async def test_registry_endpoints_and_region_scoping(client: tuple[httpx.AsyncClient, asyncpg.Pool]) -> None:
    http, _ = client
    regions = (await http.get("/api/v1/regions")).json()
    assert [r["code"] for r in regions] == ["220000", "220100", "220102", "220200", "220203"]
    assert next(r for r in regions if r["code"] == "220000")["mines"] == 2
    city = (await http.get("/api/v1/mines", params={"region": "220100"})).json()
    assert [m["code"] for m in city["items"]] == ["M1"]
    other = (await http.get("/api/v1/mines", params={"region": "220203"})).json()
    assert [m["code"] for m in other["items"]] == ["M1T"]
    page1 = (await http.get("/api/v1/sensors", params={"limit": 3})).json()
    page2 = (await http.get("/api/v1/sensors", params={"limit": 3, "cursor": page1["next_cursor"]})).json()
    codes = [(s["mine_code"], s["code"]) for s in page1["items"] + page2["items"]]
    assert codes == [("M1", "GN01"), ("M1", "RG01"), ("M1T", "PL01"), ("M1T", "PZ01")]
    assert page2["next_cursor"] is None
    sensor = (await http.get("/api/v1/mines/M1/sensors/GN01")).json()
    assert sensor["channels"] == ["east_mm", "north_mm", "up_mm"]
    assert sensor["thresholds"]["horizontal_mm_per_day"]["red"] == 20
    assert sensor["silent"] is True
    sites = (await http.get("/api/v1/mines/M1T/sites")).json()
    assert sites[0]["crest_elevation_m"] == 1500


async def test_readings_raw_bucketed_and_latest(client: tuple[httpx.AsyncClient, asyncpg.Pool]) -> None:
    http, pool = client
    await seed_readings(pool)
    params = {"start": T0.isoformat(), "end": (T0 + timedelta(days=2)).isoformat(), "channel": "east_mm"}
    raw = (await http.get("/api/v1/mines/M1/sensors/GN01/readings", params=params)).json()
    assert len(raw["raw"]) == 48
    assert [r["value"] for r in raw["raw"][:3]] == [0.0, 0.5, 1.0]
    page = (await http.get("/api/v1/mines/M1/sensors/GN01/readings", params={**params, "limit": 40})).json()
    rest = (
        await http.get(
            "/api/v1/mines/M1/sensors/GN01/readings", params={**params, "limit": 40, "cursor": page["next_cursor"]}
        )
    ).json()
    assert len(page["raw"]) + len(rest["raw"]) == 48
    assert rest["next_cursor"] is None
    for bucket, n in (("1d", 2), ("6h", 8), ("1h", 48)):
        got = (await http.get("/api/v1/mines/M1/sensors/GN01/readings", params={**params, "bucket": bucket})).json()
        assert len(got["buckets"]) == n, bucket
        assert sum(b["n"] for b in got["buckets"]) == 48
    day1 = (await http.get("/api/v1/mines/M1/sensors/GN01/readings", params={**params, "bucket": "1d"})).json()
    assert day1["buckets"][0]["max"] == 11.5
    assert day1["buckets"][0]["min"] == 0.0
    latest = (await http.get("/api/v1/mines/M1/sensors/GN01/latest")).json()
    assert {r["channel"]: r["value"] for r in latest} == {
        "east_mm": 23.5,
        "north_mm": 0.0,
        "up_mm": pytest.approx(-4.7),
    }


@pytest.mark.parametrize(
    ("path", "params", "status", "fragment"),
    [
        ("/api/v1/mines/NOPE", {}, 404, "not in the registry"),
        ("/api/v1/mines/M1/sensors/NOPE", {}, 404, "not registered under mine"),
        ("/api/v1/mines", {"region": "999999"}, 404, "region 999999"),
        ("/api/v1/mines", {"region": "22"}, 422, "region"),
        ("/api/v1/mines", {"cursor": "garbage!"}, 400, "cursor"),
        ("/api/v1/mines/M1/sensors/GN01/readings", {"bucket": "7x"}, 400, "bucket"),
        ("/api/v1/mines/M1/sensors/GN01/readings", {"channel": "width_mm"}, 400, "unknown for this sensor"),
        ("/api/v1/mines/M1/sensors/GN01/readings", {"start": "2026-11-01T00:00:00"}, 400, "no UTC offset"),
        ("/api/v1/mines/M1/sensors/GN01/readings", {"start": "2020-01-01T00:00:00Z"}, 400, "at most 366 days"),
        # Found by the fuzzer: pydantic would read a number as seconds since 1970.
        ("/api/v1/mines/M1/sensors/GN01/readings", {"end": "100.0"}, 422, "not a number"),
        ("/api/v1/mines/M1/integrity", {"end": "100.0"}, 422, "not a number"),
        ("/api/v1/mines/M1/sensors/GN01/integrity", {"start": "1e9"}, 422, "not a number"),
        ("/api/v1/alerts", {"since": "1700000000"}, 422, "not a number"),
        ("/api/v1/alerts", {"level": "purple"}, 400, "unknown warning level"),
        ("/api/v1/alerts/0", {}, 422, "alert_id"),
        ("/api/v1/alerts/12345", {}, 404, "does not exist"),
        ("/api/v1/no/such/path", {}, 404, "no such path"),
    ],
)
async def test_errors_are_json_with_a_reason(
    client: tuple[httpx.AsyncClient, asyncpg.Pool], path: str, params: dict[str, str], status: int, fragment: str
) -> None:
    http, _ = client
    response = await http.get(path, params=params)
    assert response.status_code == status
    body = response.json()
    assert fragment in body["message"], body
    assert body["error"]


async def test_alert_listing_filters_and_history(client: tuple[httpx.AsyncClient, asyncpg.Pool]) -> None:
    http, pool = client
    red = await seed_alert(pool, "GN01", Level.RED)
    await seed_alert(pool, "PZ01", Level.YELLOW, mine="M1T")
    everything = (await http.get("/api/v1/alerts")).json()["items"]
    assert {a["sensor_code"] for a in everything} == {"GN01", "PZ01"}
    high = (await http.get("/api/v1/alerts", params={"level": "orange"})).json()["items"]
    assert [a["id"] for a in high] == [red]
    assert high[0]["evacuation"].startswith("停产撤人")
    scoped = (await http.get("/api/v1/alerts", params={"region": "220203"})).json()["items"]
    assert [a["sensor_code"] for a in scoped] == ["PZ01"]
    assert scoped[0]["evacuation"] is None
    events = (await http.get(f"/api/v1/alerts/{red}/events")).json()
    assert [(e["kind"], e["level"]) for e in events] == [("opened", "red")]
    mine = (await http.get("/api/v1/mines/M1")).json()
    assert mine["worst_open_level"] == "red"


async def test_ops_endpoints(client: tuple[httpx.AsyncClient, asyncpg.Pool]) -> None:
    http, pool = client
    await seed_readings(pool, hours=1)
    assert (await http.get("/health")).json()["status"] == "ok"
    ready = (await http.get("/ready")).json()
    assert ready["status"] == "ok"
    assert ready["detail"]["schema_version"] >= 3
    dead = (await http.get("/dead-letters", params={"reason": "malformed_json"})).json()
    assert dead["items"][0]["payload"] == "{bad"
    assert (await http.get("/dead-letters", params={"reason": "bogus"})).status_code == 422
    metrics = await http.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    spec = (await http.get("/openapi.json")).json()
    assert "/api/v1/alerts" in spec["paths"]
