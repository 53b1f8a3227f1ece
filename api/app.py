"""The FastAPI application factory. The lifespan owns the database pool unless the
caller hands one in (the demo and tests share theirs)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg
from cachetools import TTLCache
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from prometheus_client import CollectorRegistry, Counter

from api.auth import SESSION_COOKIE, FailedAuthLimiter, is_recent_admin
from api.caps import Caps
from api.errors import ERROR_RESPONSES, install_error_handlers
from api.limits import BodySizeLimit
from api.origin import SameOriginWrites, parse_origins
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
from api.watchdog import Watchdog
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
            if settings.watchdog_poll_s > 0:
                watchdog = Watchdog(settings, app.state.pool)
                app.state.watchdog = watchdog
                task = asyncio.create_task(watchdog.run(), name="watchdog")

                async def stop_watchdog() -> None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

                stack.push_async_callback(stop_watchdog)
            yield

    # The OpenAPI pages load Swagger UI and ReDoc from files shipped in a package, never a
    # CDN: a monitoring room is often offline, and a CDN could serve anything.
    docs_url, redoc_url = ("/docs", "/redoc") if settings.api_docs else (None, None)
    app = FastAPIOffline(
        docs_url=docs_url,
        redoc_url=redoc_url,
        title="Slopewatch",
        version="0.1.0",
        summary="Slope and tailings-dam monitoring: registry, readings, alerts",
        description=(
            "Four-level networking (mine → county → city → province). Every request carries a token "
            "(`Authorization: Bearer <token>`, made with `slopewatch token create`; the web pages use a "
            "session cookie from `POST /api/v1/session`) bound to one node of the "
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
    install_error_handlers(app, is_admin=is_recent_admin)
    refused = Counter(
        "slopewatch_api_refused",
        "API requests refused before any work, by reason",
        ["reason"],
        registry=app.state.metrics,
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(
        SameOriginWrites,
        cookie=SESSION_COOKIE,
        login_path=f"{API_PREFIX}/session",
        allowed=parse_origins(settings.api_origins),
        on_refusal=lambda reason: refused.labels(reason).inc(),
    )
    app.state.auth_limiter = FailedAuthLimiter(
        max_failures=settings.api_auth_failures,
        window_s=settings.api_auth_window_s,
        max_clients=settings.api_auth_max_clients,
    )
    app.state.recent_admins = TTLCache[bytes, bool](maxsize=1000, ttl=300)
    app.state.expensive_caps = Caps(
        "expensive reads (integrity checks, readings, summary recounts)",
        per_token=settings.api_expensive_per_token,
        total=settings.api_expensive_total,
        retry_after_s=2,
        on_refusal=lambda which: refused.labels(f"expensive_{which}").inc(),
    )
    app.state.stream_caps = Caps(
        "open event streams",
        per_token=settings.api_streams_per_token,
        total=settings.api_streams_total,
        retry_after_s=10,
        on_refusal=lambda which: refused.labels(f"streams_{which}").inc(),
    )
    app.state.summary_cache = SummaryCache()
    app.state.watchdog = None
    for module in (session, registry, readings, alerts, handling, overview, integrity, references, gaps):
        app.include_router(module.router, prefix=API_PREFIX, responses=ERROR_RESPONSES)
    app.include_router(ops.router, responses=ERROR_RESPONSES)
    app.include_router(pages.router)
    return app
