"""Closed-loop handling (闭环) and supervision (督办) through the API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from api.app import create_app
from core.model import Level
from core.settings import Settings
from db import alerts as store
from db.pool import open_pool
from tests.api.test_api import T0, seed_alert
from tests.conftest import bearer, issue_token

FIVE = {
    "responsible_person": "Wang Fang, safety chief",
    "measures": "unload the crest of bench 3; drain the toe",
    "funds": "120,000 CNY from the safety budget",
    "deadline": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
    "contingency_plan": "evacuate benches 2-4 on red; route 7 closed",
}


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
            "viewer": bearer(await issue_token(pool, role="viewer", scope_kind="mine", scope_code="M1")),
            "operator": bearer(await issue_token(pool, role="operator", scope_kind="mine", scope_code="M1")),
            "mine_supervisor": bearer(await issue_token(pool, role="supervisor", scope_kind="mine", scope_code="M1")),
            "county_supervisor": bearer(
                await issue_token(pool, role="supervisor", scope_kind="region", scope_code="220102")
            ),
            "city_viewer": bearer(await issue_token(pool, role="viewer", scope_kind="region", scope_code="220100")),
        }
        app = create_app(settings, pool=pool)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            yield Ctx(http, pool, alert, tokens)


async def post(c: Ctx, who: str, action: str, body: dict[str, object] | None = None) -> httpx.Response:
    return await c.http.post(f"/api/v1/alerts/{c.alert}/{action}", headers=c.tokens[who], json=body)


async def clear_condition(c: Ctx) -> None:
    """What the analysis worker does when the detectors see the condition gone."""
    async with c.pool.acquire() as conn:
        current = await store.open_alerts(
            conn, (await conn.fetchval("SELECT sensor_id FROM alert WHERE id = $1", c.alert))
        )
        write = store.AlertWrite(
            sensor_id=0, site_id=0, mine_id=0, region_code="", rule="threshold.test", rule_version=1,
            level=Level.ORANGE, at=T0 + timedelta(hours=8), evidence={}, explanation_en="", explanation_zh="",
            forecast_failure_at=None, retroactive=False,
        )  # fmt: skip
        await store.clear_alert(conn, current["threshold.test"], write, close=False)


async def test_the_whole_loop_with_history(ctx: Ctx) -> None:
    r = await post(ctx, "operator", "acknowledge", {"note": "seen on the wall screen"})
    assert r.status_code == 200, r.text
    assert r.json()["stage"] == "acknowledged"
    assert r.json()["acknowledged_at"] is not None
    r = await post(ctx, "operator", "handle", FIVE)
    assert r.status_code == 200, r.text
    alert = r.json()
    assert alert["stage"] == "handling"
    assert alert["five_fixed"]["responsible_person"] == "Wang Fang, safety chief"
    assert alert["handling_overdue"] is False
    r = await post(ctx, "operator", "resolve", {"note": "crest unloaded 2,000 m³; drains open"})
    assert r.json()["stage"] == "resolved"
    r = await post(ctx, "mine_supervisor", "reject", {"note": "drain 2 still blocked"})
    assert r.json()["stage"] == "handling"
    await post(ctx, "operator", "resolve", {"note": "drain 2 cleared"})
    r = await post(ctx, "mine_supervisor", "verify", {"note": "inspected on site, accepted"})
    assert r.json()["stage"] == "verified"
    # Still active: the detectors have not seen the condition clear, so it cannot be closed.
    r = await post(ctx, "mine_supervisor", "close", {"note": "close"})
    assert r.status_code == 409
    assert "still present" in r.json()["message"]
    await clear_condition(ctx)
    r = await post(ctx, "mine_supervisor", "close", {"note": "销号"})
    assert r.status_code == 200, r.text
    assert (r.json()["stage"], r.json()["state"]) == ("closed", "closed")
    assert r.json()["closed_at"] is not None

    history = (await ctx.http.get(f"/api/v1/alerts/{ctx.alert}/events", headers=ctx.tokens["viewer"])).json()
    kinds = [e["kind"] for e in history]
    assert kinds == [
        "opened",
        "acknowledged",
        "handling",
        "resolved",
        "verification_rejected",
        "resolved",
        "verified",
        "cleared",
        "closed_by_hand",
    ]
    by_kind = {e["kind"]: e for e in history}
    assert by_kind["opened"]["actor"] is None  # the detectors
    assert "token" in by_kind["acknowledged"]["actor"]
    assert by_kind["acknowledged"]["note"] == "seen on the wall screen"
    assert by_kind["handling"]["details"]["funds"] == "120,000 CNY from the safety budget"
    assert by_kind["closed_by_hand"]["note"] == "销号"


async def test_roles_and_stage_order(ctx: Ctx) -> None:
    r = await post(ctx, "viewer", "acknowledge")
    assert r.status_code == 403
    assert "operator" in r.json()["message"]
    r = await post(ctx, "operator", "resolve", {"note": "x"})
    assert r.status_code == 409
    assert "open" in r.json()["message"]
    await post(ctx, "operator", "handle", FIVE)  # handling straight from open acknowledges too
    await post(ctx, "operator", "resolve", {"note": "done"})
    r = await post(ctx, "operator", "verify", {"note": "mine"})
    assert r.status_code == 403  # an operator may not accept its own work
    r = await post(ctx, "operator", "acknowledge")
    assert r.status_code == 409
    bad = dict(FIVE, deadline="2026-12-01T00:00:00")  # no offset
    r = await ctx.http.post(f"/api/v1/alerts/{ctx.alert}/handle", headers=ctx.tokens["operator"], json=bad)
    assert r.status_code == 422
    assert "offset" in r.text
    missing = {k: v for k, v in FIVE.items() if k != "funds"}
    r = await ctx.http.post(f"/api/v1/alerts/{ctx.alert}/handle", headers=ctx.tokens["operator"], json=missing)
    assert r.status_code == 422
    assert "funds" in r.text
    r = await post(ctx, "operator", "resolve", {"note": ""})
    assert r.status_code == 422


async def test_supervision_from_above_visible_to_both_levels(ctx: Ctx) -> None:
    deadline = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    r = await post(ctx, "mine_supervisor", "supervise", {"deadline": deadline, "note": "x"})
    assert r.status_code == 403  # 督办 comes from above the mine
    r = await post(ctx, "city_viewer", "supervise", {"deadline": deadline, "note": "x"})
    assert r.status_code == 403
    r = await post(ctx, "county_supervisor", "supervise", {"deadline": "2020-01-01T00:00:00Z", "note": "x"})
    assert r.status_code == 400
    r = await post(ctx, "county_supervisor", "supervise", {"deadline": deadline, "note": "handle before the rain"})
    assert r.status_code == 200, r.text
    sup = r.json()
    assert (sup["region_code"], sup["mine_code"], sup["overdue"]) == ("220102", "M1", False)
    for who in ("viewer", "county_supervisor", "city_viewer"):
        listed = (await ctx.http.get("/api/v1/supervisions", headers=ctx.tokens[who])).json()
        assert [s["id"] for s in listed] == [sup["id"]], who
    alert = (await ctx.http.get(f"/api/v1/alerts/{ctx.alert}", headers=ctx.tokens["viewer"])).json()
    assert alert["supervision_deadline"] is not None
    assert alert["supervision_overdue"] is False
    # Past the deadline and not closed: overdue, for both levels.
    async with ctx.pool.acquire() as conn:
        await conn.execute("UPDATE alert_supervision SET deadline = now() - interval '1 hour'")
    for who in ("viewer", "county_supervisor"):
        overdue = (await ctx.http.get("/api/v1/supervisions?overdue=true", headers=ctx.tokens[who])).json()
        assert [s["overdue"] for s in overdue] == [True], who
    alert = (await ctx.http.get(f"/api/v1/alerts/{ctx.alert}", headers=ctx.tokens["viewer"])).json()
    assert alert["supervision_overdue"] is True
    events = (await ctx.http.get(f"/api/v1/alerts/{ctx.alert}/events", headers=ctx.tokens["viewer"])).json()
    assert events[-1]["kind"] == "supervised"
    assert events[-1]["note"] == "handle before the rain"


async def test_an_alert_supervised_by_the_province_is_accepted_and_closed_by_the_province(ctx: Ctx) -> None:
    province = bearer(await issue_token(ctx.pool, role="supervisor", scope_kind="region", scope_code="220000"))
    city = bearer(await issue_token(ctx.pool, role="supervisor", scope_kind="region", scope_code="220100"))
    deadline = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    r = await ctx.http.post(
        f"/api/v1/alerts/{ctx.alert}/supervise", headers=province, json={"deadline": deadline, "note": "province 督办"}
    )
    assert r.status_code == 200, r.text
    # The mine still handles its alert: operators are not affected.
    assert (await post(ctx, "operator", "handle", FIVE)).status_code == 200
    assert (await post(ctx, "operator", "resolve", {"note": "unloaded and drained"})).status_code == 200
    # Levels below the supervising one may neither accept nor refuse acceptance.
    for who in (ctx.tokens["mine_supervisor"], ctx.tokens["county_supervisor"], city):
        for action in ("verify", "reject"):
            r = await ctx.http.post(f"/api/v1/alerts/{ctx.alert}/{action}", headers=who, json={"note": "ok"})
            assert r.status_code == 403, (who, action, r.text)
            assert "督办" in r.json()["message"]
            assert "220000" in r.json()["message"]
    alert = (await ctx.http.get(f"/api/v1/alerts/{ctx.alert}", headers=ctx.tokens["viewer"])).json()
    assert alert["stage"] == "resolved"
    r = await ctx.http.post(f"/api/v1/alerts/{ctx.alert}/verify", headers=province, json={"note": "accepted on site"})
    assert r.status_code == 200, r.text
    assert r.json()["stage"] == "verified"
    await clear_condition(ctx)
    for who in (ctx.tokens["mine_supervisor"], ctx.tokens["county_supervisor"], city):
        r = await ctx.http.post(f"/api/v1/alerts/{ctx.alert}/close", headers=who, json={"note": "close"})
        assert r.status_code == 403, r.text
    r = await ctx.http.post(f"/api/v1/alerts/{ctx.alert}/close", headers=province, json={"note": "销号"})
    assert r.status_code == 200, r.text
    assert r.json()["stage"] == "closed"
    events = (await ctx.http.get(f"/api/v1/alerts/{ctx.alert}/events", headers=ctx.tokens["viewer"])).json()
    by_hand = [(e["kind"], "220000" in (e["actor"] or "")) for e in events if e["actor"]]
    assert by_hand == [
        ("supervised", True),
        ("handling", False),
        ("resolved", False),
        ("verified", True),
        ("closed_by_hand", True),
    ]


async def test_a_county_supervision_leaves_acceptance_to_the_county_and_above(ctx: Ctx) -> None:
    deadline = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    r = await post(ctx, "county_supervisor", "supervise", {"deadline": deadline, "note": "county 督办"})
    assert r.status_code == 200
    assert (await post(ctx, "operator", "handle", FIVE)).status_code == 200
    assert (await post(ctx, "operator", "resolve", {"note": "done"})).status_code == 200
    assert (await post(ctx, "mine_supervisor", "verify", {"note": "ok"})).status_code == 403
    # The province stands above the county: it may accept.
    province = bearer(await issue_token(ctx.pool, role="supervisor", scope_kind="region", scope_code="220000"))
    r = await ctx.http.post(f"/api/v1/alerts/{ctx.alert}/reject", headers=province, json={"note": "not enough"})
    assert r.status_code == 200, r.text
    assert r.json()["stage"] == "handling"
