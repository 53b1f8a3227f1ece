"""Region follows the mine: a mine moved from county A to county B takes its alerts with it
(visibility, lists, summary, handling, escalation), and the move is an audited event."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from api.app import create_app
from core.model import Level
from core.settings import Settings
from db import alerts as store
from db.pool import open_pool
from db.registry import MoveError, move_mine
from notify import Notifier
from tests.api.test_api import T0, seed_alert
from tests.conftest import bearer, issue_token

COUNTY_A, CITY_A = "220102", "220100"
COUNTY_B, CITY_B = "220203", "220200"


@dataclass
class Ctx:
    http: httpx.AsyncClient
    pool: asyncpg.Pool
    alert: int
    tokens: dict[str, dict[str, str]]


@pytest.fixture
async def ctx(loaded_dsn: str, settings: Settings) -> AsyncIterator[Ctx]:
    async with open_pool(loaded_dsn, settings) as pool:
        alert = await seed_alert(pool, "GN01", Level.ORANGE)
        tokens = {
            name: bearer(await issue_token(pool, role=role, scope_kind="region", scope_code=code))
            for name, role, code in (
                ("a_operator", "operator", COUNTY_A),
                ("a_supervisor", "supervisor", COUNTY_A),
                ("a_city", "viewer", CITY_A),
                ("b_operator", "operator", COUNTY_B),
                ("b_city", "viewer", CITY_B),
            )
        }
        app = create_app(settings, pool=pool)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            yield Ctx(http, pool, alert, tokens)


async def get(c: Ctx, who: str, path: str) -> httpx.Response:
    return await c.http.get(f"/api/v1{path}", headers=c.tokens[who])


async def open_count(c: Ctx, who: str) -> int:
    r = await get(c, who, "/summary")
    assert r.status_code == 200, r.text
    n: int = r.json()["alerts"]["open"]
    return n


async def listed(c: Ctx, who: str) -> list[int]:
    r = await get(c, who, "/alerts")
    assert r.status_code == 200, r.text
    return [a["id"] for a in r.json()["items"]]


async def test_a_moved_mine_takes_its_alerts_to_the_new_county(ctx: Ctx) -> None:
    assert (await get(ctx, "a_operator", f"/alerts/{ctx.alert}")).status_code == 200
    assert (await get(ctx, "b_operator", f"/alerts/{ctx.alert}")).status_code == 404
    assert (await open_count(ctx, "a_operator"), await open_count(ctx, "b_operator")) == (1, 0)

    async with ctx.pool.acquire() as conn:
        moved = await move_mine(conn, "M1", COUNTY_B, actor="registry clerk Li")
    assert moved is not None
    assert (moved.mine_code, moved.from_region, moved.to_region, moved.actor, moved.open_alerts) == (
        "M1",
        COUNTY_A,
        COUNTY_B,
        "registry clerk Li",
        1,
    )

    # The old county and its city: the alert, its history and the mine are gone for them.
    for who in ("a_operator", "a_supervisor", "a_city"):
        assert (await get(ctx, who, f"/alerts/{ctx.alert}")).status_code == 404
        assert (await get(ctx, who, f"/alerts/{ctx.alert}/events")).status_code == 404
        assert ctx.alert not in await listed(ctx, who)
        assert await open_count(ctx, who) == 0
        assert (await get(ctx, who, "/mines/M1/moves")).status_code == 404
    feed = (await get(ctx, "a_operator", "/alert-events")).json()
    assert [e for e in feed["items"] if e["alert_id"] == ctx.alert] == []
    r = await ctx.http.post(f"/api/v1/alerts/{ctx.alert}/acknowledge", headers=ctx.tokens["a_operator"], json={})
    assert r.status_code == 404, r.text

    # The new county and its city see it, in lists and summary, and can handle it.
    for who in ("b_operator", "b_city"):
        assert (await get(ctx, who, f"/alerts/{ctx.alert}")).json()["region_code"] == COUNTY_B
        assert ctx.alert in await listed(ctx, who)
        assert await open_count(ctx, who) == 1
    summary = (await get(ctx, "b_city", "/summary")).json()
    assert [(m["code"], m["region_code"]) for m in summary["worst_mines"]] == [("M1", COUNTY_B)]
    r = await ctx.http.post(
        f"/api/v1/alerts/{ctx.alert}/acknowledge", headers=ctx.tokens["b_operator"], json={"note": "ours now"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["stage"] == "acknowledged"

    # The move is audited: in the mine's move history and in the alert's own history.
    history = (await get(ctx, "b_operator", "/mines/M1/moves")).json()
    assert [(m["from_region"], m["to_region"], m["actor"], m["open_alerts"]) for m in history] == [
        (COUNTY_A, COUNTY_B, "registry clerk Li", 1)
    ]
    events = (await get(ctx, "b_operator", f"/alerts/{ctx.alert}/events")).json()
    assert [e["kind"] for e in events] == ["opened", "moved", "acknowledged"]
    assert events[1]["actor"] == "registry clerk Li"
    assert f"region {COUNTY_B}" in events[2]["actor"]
    assert events[1]["details"] == {"from_region": COUNTY_A, "to_region": COUNTY_B}


async def test_escalation_follows_the_mine_to_the_new_counties_targets(ctx: Ctx, settings: Settings) -> None:
    async with ctx.pool.acquire() as conn:
        target = {}
        for code in (COUNTY_A, CITY_A, COUNTY_B, CITY_B):
            target[code] = await conn.fetchval(
                """INSERT INTO notify_target (scope_kind, scope_code, channel, address, name)
                   VALUES ('region', $1, 'log', $2, $1) RETURNING id""",
                code,
                f"duty desk {code}",
            )
    notifier = Notifier(settings.with_(escalation="orange:county=0s,city=0s"), ctx.pool)

    async def told() -> list[tuple[int, str]]:
        async with ctx.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT target_id, tier FROM notify_outbox WHERE alert_id = $1 ORDER BY id", ctx.alert
            )
        return [(r["target_id"], r["tier"]) for r in rows]

    assert await notifier.plan() == 3  # mine, county A, city A
    assert await told() == [(target[COUNTY_A], "county"), (target[CITY_A], "city")]
    async with ctx.pool.acquire() as conn:
        await move_mine(conn, "M1", COUNTY_B, actor="test")
    # Still unacknowledged, and now county B's and city B's: they are told at once.
    assert await notifier.plan() == 2
    assert (await told())[2:] == [(target[COUNTY_B], "county"), (target[CITY_B], "city")]
    assert await notifier.plan() == 0
    async with ctx.pool.acquire() as conn:
        steps = await conn.fetch(
            "SELECT tier, region_code FROM notify_step WHERE alert_id = $1 AND tier <> 'mine' ORDER BY taken_at, tier",
            ctx.alert,
        )
    assert sorted((s["tier"], s["region_code"]) for s in steps) == [
        ("city", CITY_A),
        ("city", CITY_B),
        ("county", COUNTY_A),
        ("county", COUNTY_B),
    ]


async def test_an_alert_opened_during_a_move_lands_in_the_new_region(ctx: Ctx) -> None:
    """Both orders of a concurrent move and alert write end with the mine's new region."""
    async with ctx.pool.acquire() as conn:
        row = await conn.fetchrow(
            """SELECT s.id, s.site_id, s.mine_id FROM sensor s JOIN mine m ON m.id = s.mine_id
               WHERE s.code = 'RG01' AND m.code = 'M1'"""
        )

    def write(rule: str) -> store.AlertWrite:
        return store.AlertWrite(
            sensor_id=row["id"], site_id=row["site_id"], mine_id=row["mine_id"], region_code=COUNTY_A, rule=rule,
            rule_version=1, level=Level.YELLOW, at=T0, evidence={}, explanation_en="x", explanation_zh="x",
            forecast_failure_at=None, retroactive=False,
        )  # fmt: skip

    async def region_of(alert_id: int) -> str:
        async with ctx.pool.acquire() as conn:
            code: str = await conn.fetchval("SELECT region_code FROM alert WHERE id = $1", alert_id)
        return code

    async with ctx.pool.acquire() as worker, ctx.pool.acquire() as mover:
        # The alert is written first, the move waits for its transaction, then rewrites it.
        tx = worker.transaction()
        await tx.start()
        first = await store.open_alert(worker, write("rain.first"))
        moving = asyncio.create_task(move_mine(mover, "M1", COUNTY_B, actor="test"))
        await asyncio.sleep(0.3)
        assert not moving.done()  # held by the alert's share lock on the mine
        await tx.commit()
        await moving
        assert await region_of(first) == COUNTY_B

        # The move is first (uncommitted): the alert waits for it and takes the new region.
        tx = mover.transaction()
        await tx.start()
        await mover.execute("UPDATE mine SET region_code = $1 WHERE code = 'M1'", COUNTY_A)
        opening = asyncio.create_task(store.open_alert(worker, write("rain.second")))
        await asyncio.sleep(0.3)
        assert not opening.done()
        await tx.commit()
        second = await opening
        assert await region_of(second) == COUNTY_A
        assert await region_of(first) == COUNTY_A


async def test_moves_are_refused_for_unknown_codes_and_a_copy_cannot_drift(ctx: Ctx) -> None:
    async with ctx.pool.acquire() as conn:
        with pytest.raises(MoveError, match="region 229999 is not in the registry"):
            await move_mine(conn, "M1", "229999", actor="test")
        with pytest.raises(MoveError, match="mine 'NOPE' is not in the registry"):
            await move_mine(conn, "NOPE", COUNTY_B, actor="test")
        assert await move_mine(conn, "M1", COUNTY_A, actor="test") is None
        # Writing another region into an alert's copy by hand is overruled by its mine's.
        await conn.execute("UPDATE alert SET region_code = $2 WHERE id = $1", ctx.alert, COUNTY_B)
        assert await conn.fetchval("SELECT region_code FROM alert WHERE id = $1", ctx.alert) == COUNTY_A
        assert await conn.fetchval("SELECT count(*) FROM mine_move") == 0


async def test_a_move_that_deadlocks_with_the_analysis_is_retried(ctx: Ctx) -> None:
    """The analysis holds an alert of the mine and then opens another (share lock on the
    mine) while a move holds the mine and waits for that alert: PostgreSQL aborts the
    waiter that detects it (the move, waiting longest) and the move is retried."""
    async with ctx.pool.acquire() as conn:
        row = await conn.fetchrow(
            """SELECT s.id, s.site_id, s.mine_id FROM sensor s JOIN mine m ON m.id = s.mine_id
               WHERE s.code = 'GN01' AND m.code = 'M1'"""
        )
    write = store.AlertWrite(
        sensor_id=row["id"], site_id=row["site_id"], mine_id=row["mine_id"], region_code=COUNTY_A, rule="second",
        rule_version=1, level=Level.YELLOW, at=T0, evidence={}, explanation_en="x", explanation_zh="x",
        forecast_failure_at=None, retroactive=False,
    )  # fmt: skip
    async with ctx.pool.acquire() as worker, ctx.pool.acquire() as mover:
        tx = worker.transaction()
        await tx.start()
        current = (await store.open_alerts(worker, row["id"]))["threshold.test"]
        await store.update_alert(worker, current, dataclasses.replace(write, rule="threshold.test"), kind=None)
        moving = asyncio.create_task(move_mine(mover, "M1", COUNTY_B, actor="test"))
        await asyncio.sleep(0.3)
        assert not moving.done()
        second = await store.open_alert(worker, write)  # deadlock: the move is aborted, then waits again
        await tx.commit()
        moved = await asyncio.wait_for(moving, 10)
    assert moved is not None
    assert moved.open_alerts == 2
    async with ctx.pool.acquire() as conn:
        regions = await conn.fetch(
            "SELECT id, region_code FROM alert WHERE id = ANY($1) ORDER BY id", [ctx.alert, second]
        )
    assert [r["region_code"] for r in regions] == [COUNTY_B, COUNTY_B]
