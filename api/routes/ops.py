"""Health, readiness, metrics and dead letters."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.auth import PrincipalDep, Role
from api.deps import ConnDep, MetricsDep, PoolDep
from api.errors import BadRequest
from api.routes.registry import Cursor
from api.schemas import DeadLetter, Health, Page, decode_cursor, encode_cursor
from api.watchdog import Watchdog
from core.wire import RejectReason
from db import queries

router = APIRouter(tags=["operations"])


def _watchdog(request: Request) -> dict[str, Any]:
    """The watchdog's last judgement of the analysis (api/watchdog.py), without a query."""
    dog: Watchdog | None = request.app.state.watchdog
    if dog is None:
        return {"analysis": "not watched by this process (SLOPEWATCH_WATCHDOG_POLL_S=0)"}
    if dog.status is None:
        return {"analysis": "starting"}
    return dog.status.as_dict()


@router.get(
    "/health",
    response_model=Health,
    summary="Liveness: the process answers; detail.watchdog: is the analysis alive and keeping up",
)
async def health(request: Request) -> Health:
    # Always 200 while this process answers: a dead analysis is an alarm, not a reason to
    # restart (or take out of service) the API that shows it.
    return Health(status="ok", detail={"watchdog": _watchdog(request)})


@router.get("/ready", response_model=Health, summary="Readiness: the database answers and is migrated")
async def ready(pool: PoolDep, request: Request) -> Response:
    try:
        async with pool.acquire(timeout=5) as conn:
            version = await conn.fetchval("SELECT max(version) FROM schema_migrations")
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        body = Health(status="unavailable", detail={"database": f"not reachable: {exc!r}"})
        return JSONResponse(body.model_dump(), status_code=503)
    return JSONResponse(
        Health(status="ok", detail={"schema_version": version, "watchdog": _watchdog(request)}).model_dump()
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(registry: MetricsDep) -> Response:
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/dead-letters", response_model=Page[DeadLetter], summary="Rejected messages, newest first")
async def dead_letters(
    conn: ConnDep,
    who: PrincipalDep,
    reason: RejectReason | None = None,
    since: datetime | None = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Page[DeadLetter]:
    # Rejected payloads may name mines of any region, or none: the operators of the service only.
    who.require(Role.ADMIN, "read dead letters")
    before = decode_cursor(cursor, 1)[0] if cursor else None
    if not isinstance(before, int | None):
        raise BadRequest("cursor is not one this API issued; start again without ?cursor=")
    rows = await queries.dead_letters(
        conn, reason=reason.value if reason else None, since=since, before_id=before, limit=limit
    )
    items = [DeadLetter(**{**dict(r), "payload": bytes(r["payload"]).decode("utf-8", errors="replace")}) for r in rows]
    return Page(items=items, next_cursor=encode_cursor(items[-1].id) if len(items) == limit else None)
