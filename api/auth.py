"""Who is asking, and what they may see and do.

Every token is bound to one node of the region tree (a province, city or county code,
or one mine; ``all`` for a national or test instance) and one role. Reads are limited
to the node's subtree; anything outside it answers 404, exactly as if it did not
exist, so a county cannot learn which mines another county has. Writes also need the
role: viewer < operator < supervisor < admin.

A token comes as ``Authorization: Bearer <token>`` or, for the web pages, as the
HttpOnly session cookie set by ``POST /api/v1/session``.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated

from fastapi import Depends, Request

from api.deps import ConnDep
from api.errors import Forbidden, NotFound, TooManyRequests, Unauthorized
from core.model import region_level_of, region_prefix
from db import queries, tokens
from db.pool import Conn

SESSION_COOKIE = "slopewatch_session"


class Role(IntEnum):
    VIEWER = 1
    OPERATOR = 2
    SUPERVISOR = 3
    ADMIN = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown role {text!r}; use viewer, operator, supervisor or admin") from None


@dataclass(frozen=True, slots=True)
class Scope:
    """What a request may see: region codes starting with ``prefix`` and, if set, only one mine."""

    prefix: str
    mine_code: str | None = None

    def sees(self, region_code: str, mine_code: str) -> bool:
        return region_code.startswith(self.prefix) and (self.mine_code is None or self.mine_code == mine_code)


@dataclass(frozen=True, slots=True)
class Principal:
    token_id: int
    name: str
    role: Role
    scope_kind: str  # all | region | mine
    scope_code: str
    scope: Scope

    @property
    def level(self) -> str:
        """The node's level: mine, county, city, province or all."""
        if self.scope_kind == "region":
            return region_level_of(self.scope_code).value
        return self.scope_kind

    @property
    def actor(self) -> str:
        return f"{self.name} (token {self.token_id}, {self.role.label} at {self.scope_kind} {self.scope_code or '*'})"

    def require(self, role: Role, doing: str) -> None:
        if self.role < role:
            raise Forbidden(f"{_a(self.role.label)} token may not {doing}; that needs {_a(role.label)} token or higher")


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


class FailedAuthLimiter:
    """At most ``max_failures`` failed authentications per client address in a sliding window.

    Per process: behind a load balancer with several API processes the effective limit
    is multiplied by their number (documented in docs/access.md)."""

    def __init__(self, *, max_failures: int = 20, window_s: float = 300.0) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str, now: float) -> deque[float]:
        q = self._failures.setdefault(client, deque())
        while q and q[0] <= now - self.window_s:
            q.popleft()
        return q

    def check(self, client: str) -> None:
        now = time.monotonic()
        q = self._recent(client, now)
        if len(q) >= self.max_failures:
            retry = max(1, int(q[0] + self.window_s - now) + 1)
            raise TooManyRequests(
                f"too many failed authentications from {client}: {len(q)} in {int(self.window_s)} s; "
                f"try again in {retry} s",
                retry_after_s=retry,
            )

    def failed(self, client: str) -> None:
        now = time.monotonic()
        self._recent(client, now).append(now)
        if len(self._failures) > 100_000:  # bound memory under a spray of addresses
            for key in [k for k, v in self._failures.items() if not v][:50_000]:
                del self._failures[key]


def _presented_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        return value.strip()
    return request.cookies.get(SESSION_COOKIE)


async def principal_for(conn: Conn, secret: str) -> Principal | None:
    row = await tokens.by_secret(conn, secret)
    if row is None:
        return None
    if row.scope_kind == "all":
        scope = Scope("")
    elif row.scope_kind == "region":
        scope = Scope(region_prefix(row.scope_code))
    else:
        mine = await queries.mine(conn, row.scope_code)
        # A token for a mine that left the registry sees nothing rather than everything.
        scope = Scope(mine["region_code"] if mine is not None else "-", row.scope_code)
    return Principal(row.id, row.name, Role.parse(row.role), row.scope_kind, row.scope_code, scope)


async def check_token(request: Request, conn: Conn, secret: str | None) -> Principal:
    """The principal of ``secret``, or 401; failures count against the client's limit (429 past it)."""
    limiter: FailedAuthLimiter = request.app.state.auth_limiter
    client = request.client.host if request.client else "unknown"
    limiter.check(client)
    if secret is None:
        raise Unauthorized("this endpoint needs a token: send 'Authorization: Bearer <token>' (see `slopewatch token`)")
    principal = await principal_for(conn, secret) if len(secret) <= 200 else None
    if principal is None:
        limiter.failed(client)
        raise Unauthorized("the token is not valid: unknown, revoked or expired")
    return principal


async def authenticate(request: Request, conn: ConnDep) -> Principal:
    return await check_token(request, conn, _presented_token(request))


PrincipalDep = Annotated[Principal, Depends(authenticate)]


async def narrow(conn: Conn, principal: Principal, *, region: str | None = None, mine: str | None = None) -> Scope:
    """The principal's scope narrowed by the request's ``region`` and ``mine`` filters.
    A filter outside the principal's subtree is 404, like a code that does not exist."""
    scope = principal.scope
    if region is not None:
        row = await queries.region(conn, region)
        if row is None or not _region_within(region, scope):
            raise NotFound(f"region {region} is not in the registry")
        if scope.mine_code is None:
            scope = Scope(region_prefix(region))
    if mine is not None:
        await visible_mine(conn, principal, mine, scope=scope)
        scope = Scope(scope.prefix, mine)
    return scope


def _region_within(region: str, scope: Scope) -> bool:
    if scope.mine_code is not None:
        # A mine's token may name the regions above its mine, nothing beside it.
        return scope.prefix.startswith(region_prefix(region))
    return region_prefix(region).startswith(scope.prefix)


async def visible_mine(conn: Conn, principal: Principal, mine: str, *, scope: Scope | None = None) -> None:
    """404 unless the mine exists inside the principal's subtree."""
    scope = scope or principal.scope
    row = await queries.mine(conn, mine)
    if row is None or not scope.sees(row["region_code"], mine):
        raise NotFound(f"mine {mine!r} is not in the registry")
