"""Health, readiness, metrics and dead letters."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.auth import PrincipalDep, Role, is_recent_admin
from api.deps import ConnDep, MetricsDep, PoolDep
from api.errors import BadRequest
from api.routes.registry import Cursor
from api.schemas import DeadLetter, Health, Page, decode_cursor, encode_cursor
from api.watchdog import Watchdog
from core.wire import RejectReason
from db import queries

logger = logging.getLogger(__name__)

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


@router.get(
    "/ready",
    response_model=Health,
    summary="Readiness: the database answers and is migrated (why not: only for an admin's token)",
)
async def ready(request: Request, pool: PoolDep) -> Response:
    try:
        async with pool.acquire(timeout=5) as conn:
            version = await conn.fetchval("SELECT max(version) FROM schema_migrations")
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # The error names the database's host and port: the log and an admin get it, not anyone.
        incident = secrets.token_hex(4)
        logger.warning("not ready incident=%s: database: %r", incident, exc)
        detail = {"database": "not reachable", "incident": incident}
        if is_recent_admin(request):
            detail["error"] = repr(exc)
        return JSONResponse(Health(status="unavailable", detail=detail).model_dump(), status_code=503)
    return JSONResponse(
        Health(status="ok", detail={"schema_version": version, "watchdog": _watchdog(request)}).model_dump()
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(registry: MetricsDep) -> Response:
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/dead-letters",
    response_model=Page[DeadLetter],
    summary="Rejected messages of the subtree's mines, newest first (admin)",
)
async def dead_letters(
    conn: ConnDep,
    who: PrincipalDep,
    reason: RejectReason | None = None,
    since: datetime | None = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Page[DeadLetter]:
    # Rejected payloads are raw device output: admins only, each its own subtree's (by the
    # topic's mine); those naming no registered mine only an admin of everything.
    who.require(Role.ADMIN, "read dead letters")
    before = decode_cursor(cursor, 1)[0] if cursor else None
    if not isinstance(before, int | None):
        raise BadRequest("cursor is not one this API issued; start again without ?cursor=")
    rows = await queries.dead_letters(
        conn,
        reason=reason.value if reason else None,
        since=since,
        before_id=before,
        limit=limit,
        prefix=who.scope.prefix,
        mine_code=who.scope.mine_code,
        include_unknown=who.scope_kind == "all",
    )
    items = [DeadLetter(**{**dict(r), "payload": bytes(r["payload"]).decode("utf-8", errors="replace")}) for r in rows]
    return Page(items=items, next_cursor=encode_cursor(items[-1].id) if len(items) == limit else None)
