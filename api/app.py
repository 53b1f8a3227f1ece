"""The FastAPI application factory. The lifespan owns the database pool unless the
caller hands one in (the demo and tests share theirs)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from api.auth import FailedAuthLimiter
from api.errors import install_error_handlers
from api.routes import alerts, handling, ops, overview, readings, registry, session
from core.settings import Settings
from db.pool import open_pool

API_PREFIX = "/api/v1"


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
        if pool is not None:
            app.state.pool = pool
            yield
            return
        assert dsn is not None
        async with open_pool(dsn, settings) as own:
            app.state.pool = own
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
    app.state.auth_limiter = FailedAuthLimiter()
    for module in (session, registry, readings, alerts, handling, overview):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(ops.router)
    return app
