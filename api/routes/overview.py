"""Regulators' views, cheap to poll: the per-region summary (with ETag → 304), the change
feed of alert events with a ``since`` cursor, and the same feed as server-sent events."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.types import Receive, Send
from starlette.types import Scope as ASGIScope

from analytics.facilities import rollup_rule
from analytics.rollup import RollupRule
from api.auth import Principal, PrincipalDep, Scope, authenticate, narrow, still_valid
from api.caps import Caps
from api.deps import ConnDep, SettingsDep, borrow
from api.errors import BadRequest
from api.levels import site_rollups
from api.scope import MineQuery, RegionQuery
from core.model import Level, region_level_of
from core.settings import Settings
from db import overview
from db.overview import FeedCursor
from db.pool import Conn

router = APIRouter(tags=["overview"])

LEVELS = ("none", "blue", "yellow", "orange", "red")
STAGES = ("open", "acknowledged", "handling", "resolved", "verified")


class FeedEvent(BaseModel):
    cursor: str = Field(description="pass as ?after= to continue after this event")
    id: int
    alert_id: int
    kind: str
    level: str
    from_level: str | None
    at: datetime
    recorded_at: datetime
    retroactive: bool
    actor: str | None
    note: str | None
    rule: str
    alert_level: str
    alert_stage: str
    active: bool
    region_code: str
    mine_code: str
    mine_name: str
    site_code: str
    sensor_code: str | None = Field(description="none for an alert of no single sensor (see subject)")
    subject: str | None = Field(description="facility:<code>, mine or analysis for an alert of no single sensor")
    evacuation: str | None = Field(description="停产撤人 instruction while the alert is red")


class FeedPage(BaseModel):
    items: list[FeedEvent]
    next_cursor: str = Field(description="always set: poll again with ?after=<next_cursor>")


AfterQuery = Annotated[
    str | None,
    Query(
        max_length=40,
        description="a cursor from a previous page or event; 'latest' for only what happens from now on; "
        "absent for the oldest first",
    ),
]


def _event(r: asyncpg.Record) -> FeedEvent:
    d = dict(r)
    return FeedEvent(
        cursor=FeedCursor(d.pop("xid"), d["id"]).text(),
        level=Level(d.pop("level")).label,
        from_level=Level(fl).label if (fl := d.pop("from_level")) is not None else None,
        alert_level=Level(d.pop("alert_level")).label,
        alert_stage=d.pop("stage"),
        **d,
    )


async def _start(conn: Conn, after: str | None) -> FeedCursor:
    if after is None:
        return overview.START
    if after == "latest":
        return await overview.feed_head(conn)
    try:
        return FeedCursor.parse(after)
    except ValueError:
        raise BadRequest("after is not a cursor this API issued (or 'latest'); start again without it") from None


@router.get(
    "/alert-events",
    response_model=FeedPage,
    summary="Change feed: alert events of the subtree in commit order, after a cursor",
)
async def alert_event_feed(
    conn: ConnDep,
    who: PrincipalDep,
    region: RegionQuery = None,
    mine: MineQuery = None,
    after: AfterQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> FeedPage:
    scope = await narrow(conn, who, region=region, mine=mine)
    start = await _start(conn, after)
    rows = await overview.feed(conn, start, prefix=scope.prefix, mine_code=scope.mine_code, limit=limit)
    items = [_event(r) for r in rows]
    return FeedPage(items=items, next_cursor=items[-1].cursor if items else start.text())


@router.get(
    "/alert-events/stream",
    summary="The change feed as server-sent events (text/event-stream); resumes from Last-Event-ID",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def alert_event_stream(
    request: Request,
    region: RegionQuery = None,
    mine: MineQuery = None,
    after: AfterQuery = None,
    last_event_id: Annotated[str | None, Header(max_length=40)] = None,
) -> StreamingResponse:
    # No connection is held for the life of the stream: each poll borrows one from the pool.
    pool: asyncpg.Pool = request.app.state.pool
    async with borrow(pool) as conn:
        who = await authenticate(request, conn)
        scope = await narrow(conn, who, region=region, mine=mine)
        start = await _start(conn, last_event_id or after or "latest")
    caps: Caps = request.app.state.stream_caps
    release = caps.acquire(who.token_id)
    settings: Settings = request.app.state.settings
    return HeldStream(
        _stream(request, pool, who, scope, start, settings),
        release=release,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


class HeldStream(StreamingResponse):
    """A streaming response that gives its stream slot back however it ends (finished,
    client gone, server shutting down)."""

    def __init__(self, content: AsyncIterator[str], *, release: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._release = release

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


async def _ended(pool: asyncpg.Pool, who: Principal, idle_s: float) -> bool:
    """Whether the stream's token or session has ended. A database that cannot be asked ends
    nothing: the stream has nothing to send then either, and the next check decides."""
    try:
        async with pool.acquire(timeout=10) as conn:
            return not await still_valid(conn, who, idle_s=idle_s)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False


async def _stream(
    request: Request, pool: asyncpg.Pool, who: Principal, scope: Scope, cursor: FeedCursor, settings: Settings
) -> AsyncIterator[str]:
    interval_s = settings.stream_poll_s
    yield f"retry: 3000\n: slopewatch alert events for {who.scope_kind} {who.scope_code or '*'}\n\n"
    idle_s = 0.0
    # A stream authenticates once; it asks again every stream_recheck_s, so a revoked or
    # expired token, or an ended session, stops receiving within seconds.
    next_check = time.monotonic() + settings.stream_recheck_s
    while not await request.is_disconnected():
        if time.monotonic() >= next_check:
            if await _ended(pool, who, settings.api_session_idle_s):
                reason = "session ended" if who.session_id is not None else "token revoked or expired"
                yield f"event: end\ndata: {json.dumps({'reason': reason})}\n\n"
                return
            next_check = time.monotonic() + settings.stream_recheck_s
        try:
            async with pool.acquire(timeout=10) as conn:
                rows = await overview.feed(conn, cursor, prefix=scope.prefix, mine_code=scope.mine_code, limit=500)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            rows = []  # the client keeps its cursor; the next poll catches up
        for r in rows:
            event = _event(r)
            cursor = FeedCursor.parse(event.cursor)
            yield f"id: {event.cursor}\nevent: alert_event\ndata: {event.model_dump_json()}\n\n"
        if rows:
            idle_s = 0.0
            continue
        idle_s += interval_s
        if idle_s >= 15:
            idle_s = 0.0
            yield ": keep-alive\n\n"
        await asyncio.sleep(interval_s)


class LevelCounts(BaseModel):
    blue: int = 0
    yellow: int = 0
    orange: int = 0
    red: int = 0


class AlertCounts(BaseModel):
    open: int
    unacknowledged: int
    by_level: LevelCounts
    by_stage: dict[str, int]


class MineStatus(BaseModel):
    code: str
    name: str
    kind: str
    region_code: str
    worst_level: str = Field(description="highest level of its open alerts; none when it has none")
    rollup_level: str = Field(description="highest GB 39496 roll-up level of its sites (active alerts)")
    open_alerts: int
    sensors: int
    online: int


class SensorCounts(BaseModel):
    total: int
    online: int
    silent: int = Field(description="no reading received within 3 × its expected interval")
    online_rate: float | None
    as_of: datetime | None = Field(description="when these counts were taken (refreshed every few seconds)")


class NodeSummary(BaseModel):
    code: str
    name: str
    level: str
    mines: int
    mines_by_worst_level: dict[str, int]
    worst_level: str
    open_alerts: int
    unacknowledged: int
    sensors: int
    online_rate: float | None


class Summary(BaseModel):
    scope: str = Field(description="the node summarised: a region code, a mine code or * for all")
    generated_at: datetime
    alerts: AlertCounts
    mines: int
    mines_by_worst_level: dict[str, int]
    worst_mines: list[MineStatus] = Field(description="mines with open alerts, worst first (at most 100)")
    sensors: SensorCounts
    overdue: dict[str, int] = Field(description="handling: past the five-fixed deadline; supervision: past 督办")
    children: list[NodeSummary] = Field(description="the next level down: cities, counties, or the county's mines")
    feed_cursor: str = Field(description="follow changes from here with /alert-events?after= or the stream")


def _rate(online: int, total: int) -> float | None:
    return round(online / total, 4) if total else None


def _child_code(region_code: str, scope: Scope) -> str:
    """The node one level below the scope that contains ``region_code``."""
    if len(scope.prefix) < 2:
        return region_code[:2] + "0000"
    if len(scope.prefix) == 2:
        return region_code[:4] + "00"
    return region_code


def build_summary(rows: overview.SummaryRows, scope: Scope, scope_name: str, rule: RollupRule) -> Summary:
    by_mine: dict[int, dict[str, int]] = {}
    by_level = LevelCounts()
    by_stage = dict.fromkeys(STAGES, 0)
    unack = handling_overdue = total_open = 0
    for r in rows.open_alerts:
        m = by_mine.setdefault(r["mine_id"], {"worst": 0, "open": 0, "unack": 0})
        m["worst"] = max(m["worst"], r["level"])
        m["open"] += r["n"]
        m["unack"] += r["unacknowledged"]
        label = Level(r["level"]).label
        setattr(by_level, label, getattr(by_level, label) + r["n"])
        by_stage[r["stage"]] = by_stage.get(r["stage"], 0) + r["n"]
        unack += r["unacknowledged"]
        handling_overdue += r["handling_overdue"]
        total_open += r["n"]
    region_names = {r["code"]: r["name"] for r in rows.regions}
    rolled: dict[str, int] = {}
    for (mine_code, _site), site in site_rollups([dict(p) for p in rows.points], rule).items():
        rolled[mine_code] = max(rolled.get(mine_code, 0), int(site.level))
    statuses: list[tuple[int, int, str, asyncpg.Record]] = []
    nodes: dict[str, dict[str, Any]] = {}
    mines_by_worst = dict.fromkeys(LEVELS, 0)
    sensors_total = sensors_online = 0
    as_of = min((r["refreshed_at"] for r in rows.mines if r["refreshed_at"] is not None), default=None)
    below_county = len(scope.prefix) >= 6
    empty = {"worst": 0, "open": 0, "unack": 0}
    for r in rows.mines:
        a = by_mine.get(r["id"], empty)
        worst = LEVELS[a["worst"]]
        mines_by_worst[worst] += 1
        sensors_total += r["sensors"]
        sensors_online += r["online"]
        if a["open"]:
            statuses.append((a["worst"], a["open"], r["code"], r))
        if scope.mine_code is None:
            node_code = r["code"] if below_county else _child_code(r["region_code"], scope)
            node = nodes.get(node_code)
            if node is None:
                node = nodes[node_code] = {
                    "code": node_code,
                    "name": r["name"] if below_county else region_names.get(node_code, node_code),
                    "level": "mine" if below_county else region_level_of(node_code).value,
                    "mines": 0,
                    "mines_by_worst_level": dict.fromkeys(LEVELS, 0),
                    "worst": 0,
                    "open_alerts": 0,
                    "unacknowledged": 0,
                    "sensors": 0,
                    "online": 0,
                }
            node["mines"] += 1
            node["mines_by_worst_level"][worst] += 1
            node["worst"] = max(node["worst"], a["worst"])
            node["open_alerts"] += a["open"]
            node["unacknowledged"] += a["unack"]
            node["sensors"] += r["sensors"]
            node["online"] += r["online"]
    statuses.sort(key=lambda t: (-t[0], -t[1], t[2]))
    worst_mines = [
        MineStatus(
            code=r["code"],
            name=r["name"],
            kind=r["kind"],
            region_code=r["region_code"],
            worst_level=LEVELS[level],
            rollup_level=LEVELS[rolled.get(r["code"], 0)],
            open_alerts=n_open,
            sensors=r["sensors"],
            online=r["online"],
        )
        for level, n_open, _code, r in statuses[:100]
    ]
    children = [
        NodeSummary(
            code=n["code"],
            name=n["name"],
            level=n["level"],
            mines=n["mines"],
            mines_by_worst_level=n["mines_by_worst_level"],
            worst_level=LEVELS[n["worst"]],
            open_alerts=n["open_alerts"],
            unacknowledged=n["unacknowledged"],
            sensors=n["sensors"],
            online_rate=_rate(n["online"], n["sensors"]),
        )
        for n in sorted(nodes.values(), key=lambda n: str(n["code"]))
    ]
    return Summary(
        scope=scope_name,
        generated_at=datetime.now(UTC),
        alerts=AlertCounts(open=total_open, unacknowledged=unack, by_level=by_level, by_stage=by_stage),
        mines=len(rows.mines),
        mines_by_worst_level=mines_by_worst,
        worst_mines=worst_mines,
        sensors=SensorCounts(
            total=sensors_total,
            online=sensors_online,
            silent=sensors_total - sensors_online,
            online_rate=_rate(sensors_online, sensors_total),
            as_of=as_of,
        ),
        overdue={"handling": handling_overdue, "supervision": rows.supervision_overdue},
        children=children,
        feed_cursor=rows.cursor.text(),
    )


@router.get(
    "/summary",
    response_model=Summary,
    summary="Per-region summary for dashboards; send If-None-Match with the last ETag to get 304 when unchanged",
    responses={304: {"description": "unchanged since the ETag you sent"}},
)
async def summary(
    request: Request,
    conn: ConnDep,
    who: PrincipalDep,
    settings: SettingsDep,
    region: RegionQuery = None,
    mine: MineQuery = None,
    if_none_match: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    scope = await narrow(conn, who, region=region, mine=mine)
    name = mine or region or (who.scope_code if who.scope_kind != "all" else "*")
    cache: SummaryCache = request.app.state.summary_cache
    version = await overview.summary_version(conn)
    key = (scope.prefix, scope.mine_code, name)
    hit = cache.get(key, version)
    if hit is None:
        caps: Caps = request.app.state.expensive_caps
        with caps.hold(who.token_id):
            rows = await overview.summary_rows(conn, prefix=scope.prefix, mine_code=scope.mine_code)
        body = build_summary(rows, scope, name, rollup_rule(settings))
        # The ETag covers the picture, not when it was taken, so an unchanged picture is a 304.
        payload = body.model_dump(mode="json", exclude={"generated_at": True, "sensors": {"as_of"}})
        etag = '"' + hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32] + '"'
        hit = (etag, body.model_dump_json().encode())
        cache.put(key, version, hit)
    etag, content = hit
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if if_none_match is not None and etag in {t.strip() for t in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(content, media_type="application/json", headers=headers)


class SummaryCache:
    """Summaries by scope, reused while nothing they depend on has changed.

    Many dashboards poll the same region every few seconds; the version (see
    db.overview.summary_version) is a handful of index lookups, so an unchanged region
    costs about a millisecond instead of a full recount. Bounded: the oldest entries go.
    """

    def __init__(self, max_entries: int = 2000) -> None:
        self.max_entries = max_entries
        self._entries: dict[tuple[str, str | None, str], tuple[tuple[object, ...], tuple[str, bytes]]] = {}

    def get(self, key: tuple[str, str | None, str], version: tuple[object, ...]) -> tuple[str, bytes] | None:
        entry = self._entries.get(key)
        return entry[1] if entry is not None and entry[0] == version else None

    def put(self, key: tuple[str, str | None, str], version: tuple[object, ...], value: tuple[str, bytes]) -> None:
        self._entries.pop(key, None)
        self._entries[key] = (version, value)
        while len(self._entries) > self.max_entries:
            del self._entries[next(iter(self._entries))]

    def clear(self) -> None:
        self._entries.clear()
