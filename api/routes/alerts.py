"""Alerts: listing with filters, one alert, its history."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from asyncpg import Record
from fastapi import APIRouter, Path, Query

from api.auth import Principal, PrincipalDep, narrow
from api.deps import ConnDep
from api.errors import BadRequest, NotFound
from api.routes.registry import Cursor
from api.schemas import Alert, AlertEvent, FiveFixedOut, IsoTime, Page, decode_cursor, encode_cursor
from api.scope import MineQuery, RegionQuery
from core.model import Level
from db import queries
from db.pool import Conn

router = APIRouter(tags=["alerts"])


_FIVE = ("responsible_person", "measures", "funds", "contingency_plan")


def alert_schema(r: Any) -> Alert:
    d = dict(r)
    d["level"] = Level(d["level"]).label
    d["peak_level"] = Level(d["peak_level"]).label
    d["evidence"] = json.loads(d["evidence"])
    five = {k: d.pop(k) for k in _FIVE}
    deadline = d.pop("handling_deadline")
    now = datetime.now(UTC)
    d["five_fixed"] = FiveFixedOut(**five, deadline=deadline) if deadline is not None else None
    d["handling_overdue"] = d["stage"] == "handling" and deadline is not None and deadline < now
    sup = d["supervision_deadline"]
    d["supervision_overdue"] = d["stage"] != "closed" and sup is not None and sup < now
    return Alert(**d)


@router.get("/alerts", response_model=Page[Alert], summary="Alerts, newest change first")
async def list_alerts(
    conn: ConnDep,
    who: PrincipalDep,
    region: RegionQuery = None,
    level: Annotated[str | None, Query(description="minimum level: blue, yellow, orange or red")] = None,
    state: Annotated[str | None, Query(pattern="^(open|closed)$")] = None,
    stage: Annotated[
        str | None,
        Query(
            pattern="^(open|acknowledged|handling|resolved|verified|closed)$",
            description="handling stage; open means not yet acknowledged",
        ),
    ] = None,
    mine: MineQuery = None,
    rule: Annotated[str | None, Query(max_length=100)] = None,
    since: Annotated[IsoTime | None, Query(description="changed at or after (ISO 8601 with offset)")] = None,
    until: Annotated[IsoTime | None, Query(description="changed before (ISO 8601 with offset)")] = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Page[Alert]:
    scope = await narrow(conn, who, region=region, mine=mine)
    min_level = None
    if level is not None:
        try:
            min_level = int(Level.parse(level))
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise BadRequest(f"{name} has no UTC offset; add Z or +08:00")
    after = None
    if cursor:
        ts_text, last_id = decode_cursor(cursor, 2)
        try:
            after = (datetime.fromisoformat(str(ts_text)), int(last_id))
        except (ValueError, TypeError):
            raise BadRequest("cursor is not one this API issued") from None
    rows = await queries.alerts(
        conn,
        prefix=scope.prefix,
        min_level=min_level,
        state=state,
        stage=stage,
        mine_code=scope.mine_code,
        rule=rule,
        since=since,
        until=until,
        after=after,
        limit=limit,
    )
    items = [alert_schema(r) for r in rows]
    next_cursor = None
    if len(items) == limit:
        next_cursor = encode_cursor(items[-1].modified_at.isoformat(), items[-1].id)
    return Page(items=items, next_cursor=next_cursor)


AlertId = Annotated[int, Path(ge=1, le=2**62)]


async def visible_alert(conn: Conn, who: Principal, alert_id: int) -> Record:
    """The alert's row, or 404 if it does not exist or lies outside the caller's subtree."""
    row = await queries.alert(conn, alert_id)
    if row is None or not who.scope.sees(row["region_code"], row["mine_code"]):
        raise NotFound(f"alert {alert_id} does not exist")
    return row


@router.get("/alerts/{alert_id}", response_model=Alert)
async def get_alert(conn: ConnDep, who: PrincipalDep, alert_id: AlertId) -> Alert:
    return alert_schema(await visible_alert(conn, who, alert_id))


@router.get("/alerts/{alert_id}/events", response_model=list[AlertEvent], summary="The alert's history")
async def alert_events(conn: ConnDep, who: PrincipalDep, alert_id: AlertId) -> list[AlertEvent]:
    await visible_alert(conn, who, alert_id)
    out = []
    for r in await queries.alert_events(conn, alert_id):
        d = dict(r)
        d["level"] = Level(d["level"]).label
        d["from_level"] = Level(d["from_level"]).label if d["from_level"] is not None else None
        d["evidence"] = json.loads(d["evidence"]) if d["evidence"] else None
        d["details"] = json.loads(d["details"]) if d["details"] else None
        out.append(AlertEvent(**d))
    return out
