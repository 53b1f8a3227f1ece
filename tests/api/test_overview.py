"""Regulators' views: the summary with ETag/304, the change feed with cursors, and the
server-sent-events stream over a real HTTP server."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest

from api.app import create_app
from cli import runtime
from core.model import Level
from core.settings import Settings
from db import handling
from db.overview import refresh_mine_status
from db.pool import open_pool
from db.readings import ReadingBatch, write_batch
from tests.api.test_api import seed_alert
from tests.conftest import bearer, issue_token, wait_for


@dataclass
class Ctx:
    http: httpx.AsyncClient
    pool: asyncpg.Pool
    province: dict[str, str]
    county: dict[str, str]


@pytest.fixture
async def ctx(loaded_dsn: str, settings: Settings) -> AsyncIterator[Ctx]:
    async with open_pool(loaded_dsn, settings) as pool:
        app = create_app(settings, pool=pool)
        province = bearer(await issue_token(pool, role="viewer", scope_kind="region", scope_code="220000"))
        county = bearer(await issue_token(pool, role="operator", scope_kind="region", scope_code="220102"))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            yield Ctx(http, pool, province, county)


async def fresh_readings(pool: asyncpg.Pool, sensor_code: str) -> None:
    async with pool.acquire() as conn:
        sid = await conn.fetchval("SELECT id FROM sensor WHERE code = $1", sensor_code)
        batch = ReadingBatch()
        batch.add(
            sid, "depth_m" if sensor_code == "PZ01" else "east_mm", int(datetime.now(UTC).timestamp() * 1e6), 1.0, None
        )
        await write_batch(conn, batch, [])


async def test_summary_counts_and_304_when_unchanged(ctx: Ctx) -> None:
    await fresh_readings(ctx.pool, "GN01")  # one of four sensors online
    red = await seed_alert(ctx.pool, "PZ01", Level.RED, mine="M1T")
    await seed_alert(ctx.pool, "GN01", Level.YELLOW)
    async with ctx.pool.acquire() as conn:
        assert await refresh_mine_status(conn)
    r = await ctx.http.get("/api/v1/summary", headers=ctx.province)
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["scope"] == "220000"
    assert s["alerts"]["open"] == 2
    assert s["alerts"]["unacknowledged"] == 2
    assert s["alerts"]["by_level"] == {"blue": 0, "yellow": 1, "orange": 0, "red": 1}
    assert s["mines"] == 2
    assert s["mines_by_worst_level"] == {"none": 0, "blue": 0, "yellow": 1, "orange": 0, "red": 1}
    assert [m["code"] for m in s["worst_mines"]] == ["M1T", "M1"]
    assert s["sensors"]["as_of"] is not None
    del s["sensors"]["as_of"]
    assert s["sensors"] == {"total": 4, "online": 1, "silent": 3, "online_rate": 0.25}
    assert [(c["code"], c["level"], c["worst_level"]) for c in s["children"]] == [
        ("220100", "city", "yellow"),
        ("220200", "city", "red"),
    ]
    etag = r.headers["etag"]
    again = await ctx.http.get("/api/v1/summary", headers={**ctx.province, "If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""

    # The county sees only its own mine; its children are its mines.
    c = (await ctx.http.get("/api/v1/summary", headers=ctx.county)).json()
    assert c["mines"] == 1
    assert [(x["code"], x["level"]) for x in c["children"]] == [("M1", "mine")]
    assert "M1T" not in json.dumps(c)

    # A change anywhere in the province changes the ETag.
    async with ctx.pool.acquire() as conn:
        await handling.apply_step(conn, red, "acknowledge", handling.Actor("t", None), note=None)
    changed = await ctx.http.get("/api/v1/summary", headers={**ctx.province, "If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert changed.json()["alerts"]["unacknowledged"] == 1
    assert changed.json()["alerts"]["by_stage"]["acknowledged"] == 1


async def test_change_feed_follows_a_cursor_in_scope(ctx: Ctx) -> None:
    head = (await ctx.http.get("/api/v1/alert-events", headers=ctx.province, params={"after": "latest"})).json()
    assert head["items"] == []
    own = await seed_alert(ctx.pool, "GN01", Level.ORANGE)
    await seed_alert(ctx.pool, "PZ01", Level.RED, mine="M1T")
    page = (
        await ctx.http.get("/api/v1/alert-events", headers=ctx.county, params={"after": head["next_cursor"]})
    ).json()
    assert [(e["alert_id"], e["kind"], e["mine_code"]) for e in page["items"]] == [(own, "opened", "M1")]
    both = (
        await ctx.http.get("/api/v1/alert-events", headers=ctx.province, params={"after": head["next_cursor"]})
    ).json()
    assert [e["kind"] for e in both["items"]] == ["opened", "opened"]
    red = both["items"][1]
    assert red["evacuation"] is None  # M1T has no evacuation text in the test registry
    # Nothing new: the cursor stays where it is.
    idle = (
        await ctx.http.get("/api/v1/alert-events", headers=ctx.province, params={"after": both["next_cursor"]})
    ).json()
    assert idle == {"items": [], "next_cursor": both["next_cursor"]}
    r = await ctx.http.get("/api/v1/alert-events", headers=ctx.province, params={"after": "12;DROP"})
    assert r.status_code == 400


async def test_feed_never_skips_an_event_that_commits_late(ctx: Ctx) -> None:
    """An event whose transaction took its id first but commits last must still be delivered."""
    alert = await seed_alert(ctx.pool, "GN01", Level.ORANGE)
    start = (await ctx.http.get("/api/v1/alert-events", headers=ctx.province, params={"after": "latest"})).json()
    slow = await ctx.pool.acquire()
    try:
        tx = slow.transaction()
        await tx.start()
        await handling.apply_step(slow, alert, "acknowledge", handling.Actor("slow", None), note="first id")
        # A second alert's event commits while the first is still open: it gets a higher id.
        await seed_alert(ctx.pool, "PZ01", Level.RED, mine="M1T")
        mid = (
            await ctx.http.get("/api/v1/alert-events", headers=ctx.province, params={"after": start["next_cursor"]})
        ).json()
        assert mid["items"] == []  # held back until the older transaction ends
        await tx.commit()
    finally:
        await ctx.pool.release(slow)
    done = (
        await ctx.http.get("/api/v1/alert-events", headers=ctx.province, params={"after": start["next_cursor"]})
    ).json()
    assert sorted(e["kind"] for e in done["items"]) == ["acknowledged", "opened"]


async def test_event_stream_delivers_live_and_resumes(loaded_dsn: str, settings: Settings) -> None:
    settings = dataclasses.replace(settings, stream_poll_s=0.1)
    port = runtime.free_port()
    async with open_pool(loaded_dsn, settings) as pool:
        token = await issue_token(pool, role="viewer", scope_kind="region", scope_code="220102")
        server = runtime.api_server(create_app(settings, pool=pool), "127.0.0.1", port)
        serve = asyncio.create_task(server.serve())
        try:
            await wait_for(lambda: server.started, within_s=10)
            got: list[dict[str, object]] = []
            ids: list[str] = []
            async with (
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http,
                http.stream("GET", "/api/v1/alert-events/stream", headers=bearer(token)) as resp,
            ):
                assert resp.status_code == 200
                assert resp.headers["content-type"].startswith("text/event-stream")
                lines = resp.aiter_lines()
                # Published after the stream opened: the stream starts at 'latest'.
                await seed_alert(pool, "PZ01", Level.RED, mine="M1T")  # another county: never shown
                own = await seed_alert(pool, "GN01", Level.RED)
                async with asyncio.timeout(10):
                    async for line in lines:
                        if line.startswith("id: "):
                            ids.append(line[4:])
                        if line.startswith("data: "):
                            got.append(json.loads(line[6:]))
                            break
            assert [(e["alert_id"], e["kind"], e["level"]) for e in got] == [(own, "opened", "red")]
            assert got[0]["evacuation"] == "停产撤人: evacuate the east bench"
            # Reconnect with Last-Event-ID: only what came after.
            async with pool.acquire() as conn:
                await handling.apply_step(conn, own, "acknowledge", handling.Actor("op", None), note="on it")
            async with (
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http,
                http.stream(
                    "GET", "/api/v1/alert-events/stream", headers={**bearer(token), "Last-Event-ID": ids[0]}
                ) as resp,
            ):
                async with asyncio.timeout(10):
                    async for line in resp.aiter_lines():
                        if line.startswith("data: "):
                            event = json.loads(line[6:])
                            break
            assert (event["alert_id"], event["kind"], event["note"]) == (own, "acknowledged", "on it")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                assert (await http.get("/api/v1/alert-events/stream")).status_code == 401
        finally:
            server.should_exit = True
            await asyncio.wait_for(serve, 15)


async def test_sites_and_summary_carry_the_gb39496_rollup(ctx: Ctx) -> None:
    # Two items of one site at orange (surface displacement and rainfall) make the site red.
    await seed_alert(ctx.pool, "GN01", Level.ORANGE)
    await seed_alert(ctx.pool, "RG01", Level.ORANGE)
    sites = (await ctx.http.get("/api/v1/mines/M1/sites", headers=ctx.county)).json()
    east = next(s for s in sites if s["code"] == "M1-E")
    assert east["worst_open_level"] == "orange"
    assert east["rollup"]["level"] == "red"
    assert east["rollup"]["reason_en"] == "2 items at orange → red"  # the cross-item conversion
    assert sorted((i["item"], i["level"]) for i in east["rollup"]["items"]) == [
        ("rainfall", "orange"),
        ("surface_displacement", "orange"),
    ]
    s = (await ctx.http.get("/api/v1/summary", headers=ctx.province)).json()
    m1 = next(m for m in s["worst_mines"] if m["code"] == "M1")
    assert (m1["worst_level"], m1["rollup_level"]) == ("orange", "red")
