"""The FastAPI application factory. The lifespan owns the database pool unless the
caller hands one in (the demo and tests share theirs)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from api.auth import FailedAuthLimiter
from api.errors import ERROR_RESPONSES, install_error_handlers
from api.limits import BodySizeLimit
from api.routes import (
    alerts,
    gaps,
    handling,
    integrity,
    ops,
    overview,
    pages,
    readings,
    references,
    registry,
    session,
)
from api.routes.overview import SummaryCache
from core.settings import Settings
from db.overview import refresh_mine_status
from db.pool import open_pool

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"


async def refresh_status_forever(pool: asyncpg.Pool, every_s: float) -> None:
    """Keep the per-mine online counts behind the summary fresh (see db/overview.py)."""
    while True:
        try:
            async with pool.acquire(timeout=10) as conn:
                await refresh_mine_status(conn)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            logger.warning("could not refresh the online counts of the summary: %r", exc)
        await asyncio.sleep(every_s)


def create_app(
    settings: Settings,
    *,
    dsn: str | None = None,
    pool: asyncpg.Pool | None = None,
    metrics: CollectorRegistry | None = None,
) -> FastAPI:
    """Build the app. Give either ``pool`` (owned by the caller) or ``dsn`` (the app opens its own)."""
    if pool is None and dsn is None:
        raise ValueError("create_app needs a pool or a dsn")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if pool is not None:
                app.state.pool = pool
            else:
                assert dsn is not None
                app.state.pool = await stack.enter_async_context(open_pool(dsn, settings))
            if settings.summary_refresh_s > 0:
                refresher = asyncio.create_task(
                    refresh_status_forever(app.state.pool, settings.summary_refresh_s), name="mine-status"
                )
                stack.callback(refresher.cancel)
            yield

    app = FastAPI(
        title="Slopewatch",
        version="0.1.0",
        summary="Slope and tailings-dam monitoring: registry, readings, alerts",
        description=(
            "Four-level networking (mine → county → city → province). Every request carries a token "
            "(`Authorization: Bearer <token>`, made with `slopewatch token create`) bound to one node of the "
            "region tree and a role; it sees that node's subtree only, and anything outside answers 404. "
            "Listings take a GB/T 2260 `region` code to narrow further. Times are ISO 8601 with offsets; "
            "stored in UTC."
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    if pool is not None:
        app.state.pool = pool
    app.state.metrics = metrics if metrics is not None else CollectorRegistry()
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.api_max_body_bytes)
    app.state.auth_limiter = FailedAuthLimiter()
    app.state.summary_cache = SummaryCache()
    for module in (session, registry, readings, alerts, handling, overview, integrity, references, gaps):
        app.include_router(module.router, prefix=API_PREFIX, responses=ERROR_RESPONSES)
    app.include_router(ops.router, responses=ERROR_RESPONSES)
    app.include_router(pages.router)
    return app
