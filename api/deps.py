"""Dependencies: the pool and settings the lifespan owns, as ``Annotated`` aliases."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from prometheus_client import CollectorRegistry

from core.settings import Settings
from db.pool import Conn, DatabaseUnavailable


def _pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.pool
    return pool


@contextlib.asynccontextmanager
async def borrow(pool: asyncpg.Pool) -> AsyncIterator[Conn]:
    """A pooled connection; an unreachable database is DatabaseUnavailable (503)."""
    try:
        async with pool.acquire(timeout=10) as conn:
            yield conn
    except (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError) as exc:
        raise DatabaseUnavailable(f"the database is not reachable: {exc!r}") from exc


async def _conn(request: Request) -> AsyncIterator[Conn]:
    async with borrow(request.app.state.pool) as conn:
        yield conn


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _metrics(request: Request) -> CollectorRegistry:
    registry: CollectorRegistry = request.app.state.metrics
    return registry


PoolDep = Annotated[asyncpg.Pool, Depends(_pool)]
ConnDep = Annotated[Conn, Depends(_conn)]
SettingsDep = Annotated[Settings, Depends(_settings)]
MetricsDep = Annotated[CollectorRegistry, Depends(_metrics)]
