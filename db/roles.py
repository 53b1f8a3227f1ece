"""Login users for the services' group roles (migration 015): each service connects as its
own user, in exactly one of slopewatch_ingest, slopewatch_analyze, slopewatch_api."""

from __future__ import annotations

import re

import asyncpg

from db.pool import Conn

SERVICE_ROLES = {"ingest": "slopewatch_ingest", "analyze": "slopewatch_analyze", "api": "slopewatch_api"}
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class LoginError(Exception):
    """A login that cannot be made as asked; the message says why."""


def check_login(name: str, service: str, password: str) -> str:
    """The group role of ``service``; LoginError if the name, service or password cannot be used."""
    group = SERVICE_ROLES.get(service)
    if group is None:
        raise LoginError(f"unknown service {service!r}; use one of {', '.join(SERVICE_ROLES)}")
    if not _NAME.fullmatch(name) or name in SERVICE_ROLES.values():
        raise LoginError(f"{name!r} is not a usable user name (lower-case letters, digits, _; not a group role)")
    if len(password) < 12:
        raise LoginError("the password must have at least 12 characters")
    return group


async def ensure_login(conn: Conn, name: str, service: str, password: str) -> bool:
    """Create (or update the password of) LOGIN user ``name`` in the service's group role,
    and nothing else; returns True if it was created. Run as the owner (CREATEROLE)."""
    group = check_login(name, service, password)
    try:
        return await _ensure(conn, name, group, password)
    except asyncpg.InsufficientPrivilegeError as exc:
        raise LoginError(
            f"this database user may not make logins in {group} ({exc.message}); as a superuser run "
            f"GRANT {group} TO <this user> WITH ADMIN OPTION, or run this command as a superuser"
        ) from None


async def _ensure(conn: Conn, name: str, group: str, password: str) -> bool:
    async with conn.transaction():
        if not await conn.fetchval("SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)", group):
            raise LoginError(f"role {group} does not exist: run `slopewatch db migrate` first")
        existing = await conn.fetchrow("SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = $1", name)
        if existing is not None and (existing["rolsuper"] or existing["rolcreaterole"]):
            raise LoginError(f"{name} is a superuser or may create roles; a service must not log in as it")
        verb = "ALTER" if existing is not None else "CREATE"
        # DDL takes no parameters: the server quotes the name and the password itself.
        statement: str = await conn.fetchval(
            f"SELECT format('{verb} ROLE %I WITH LOGIN PASSWORD %L', $1::text, $2::text)", name, password
        )
        await conn.execute(statement)
        others = [g for g in SERVICE_ROLES.values() if g != group]
        for other in others:
            if await conn.fetchval("SELECT pg_has_role($1, $2, 'MEMBER')", name, other):
                await conn.execute(f"REVOKE {other} FROM {name}")
        await conn.execute(f"GRANT {group} TO {name}")
    return existing is None
