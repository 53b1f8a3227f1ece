"""Databases and logins as a real deployment has them: a table owner that is not a
superuser, and login users in the services' group roles (migration 015)."""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from db.migrate import migrate
from db.roles import SERVICE_ROLES


def as_user(dsn: str, user: str, password: str) -> str:
    """``dsn`` with another user and password (same host, port and database)."""
    parts = urlsplit(dsn)
    # Keep the host part as it is: empty when the socket directory is in ?host=.
    netloc = f"{quote(user)}:{quote(password)}@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@contextlib.asynccontextmanager
async def login_user(
    root_dsn: str, *, member_of: str | None = None, createrole: bool = False
) -> AsyncIterator[tuple[str, str]]:
    """A throwaway LOGIN role (name, password), optionally in a group role; dropped afterwards."""
    name = "t_user_" + uuid.uuid4().hex[:10]
    password = secrets.token_urlsafe(16)
    admin = await asyncpg.connect(root_dsn)
    try:
        extra = " CREATEROLE" if createrole else ""
        await admin.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'{extra}")
        if member_of:
            await admin.execute(f"GRANT {member_of} TO {name}")
    finally:
        await admin.close()
    try:
        yield name, password
    finally:
        admin = await asyncpg.connect(root_dsn)
        try:
            # What the role still owns lives in databases dropped before this.
            await admin.execute(f"DROP ROLE IF EXISTS {name}")
        finally:
            await admin.close()


@contextlib.asynccontextmanager
async def owned_database(root_dsn: str) -> AsyncIterator[str]:
    """A new database owned by an ordinary (non-superuser) login, migrated by it: the DSN of
    the owner, who can do anything a table owner can (drop triggers, rewrite rows)."""
    from tests.conftest import with_database

    async with login_user(root_dsn, createrole=True) as (owner, password):
        db = "t_owned_" + uuid.uuid4().hex[:10]
        admin = await asyncpg.connect(root_dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{db}" OWNER {owner}')
            # The group roles are cluster-wide: an earlier test may have made them as the
            # superuser. Then, as in a deployment where an administrator made them, the owner
            # needs ADMIN on them to make logins (PostgreSQL 16+).
            for role in SERVICE_ROLES.values():
                with contextlib.suppress(asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
                    await admin.execute(f"CREATE ROLE {role} NOLOGIN")
                await admin.execute(f"GRANT {role} TO {owner} WITH ADMIN OPTION")
        finally:
            await admin.close()
        dsn = as_user(with_database(root_dsn, db), owner, password)
        try:
            conn = await asyncpg.connect(dsn)
            try:
                assert not await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
                await migrate(conn, timescaledb="off")
            finally:
                await conn.close()
            yield dsn
        finally:
            admin = await asyncpg.connect(root_dsn)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            finally:
                await admin.close()
