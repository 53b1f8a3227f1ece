"""Who is asking, and what they may see and do.

Every token is bound to one node of the region tree (a province, city or county code,
or one mine; ``all`` for a national or test instance) and one role. Reads are limited
to the node's subtree; anything outside it answers 404, exactly as if it did not
exist, so a county cannot learn which mines another county has. Writes also need the
role: viewer < operator < supervisor < admin.

A token comes as ``Authorization: Bearer <token>``. The web pages log in with a token
(``POST /api/v1/session``) and get an HttpOnly cookie holding a random session id, never
the token; the session lives in the database (db/sessions.py) and dies on logout, after
its lifetime or idle timeout, and with its token.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Literal

from cachetools import TTLCache
from fastapi import Depends, Request

from api.deps import ConnDep
from api.errors import Forbidden, NotFound, TooManyRequests, Unauthorized
from core.model import region_level_of, region_prefix
from db import queries, sessions, tokens
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
    #: The web session that authenticated the request; None for a Bearer token.
    session_id: int | None = None

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
    """Failed authentications per client address, in memory bounded by ``max_clients``.

    A client past ``max_failures`` failures within ``window_s`` gets 429 with Retry-After
    for every further *wrong* credential; a right one is always let in, so many people
    behind one address (a monitoring room's NAT, a reverse proxy) are never locked out by
    one of them mistyping, or by an attacker among them. IPv6 clients count per /64 (one
    host usually holds a whole /64). The least recently failed addresses are forgotten
    first when more than ``max_clients`` have failed within the window.

    Per process: behind a load balancer with several API processes the effective limit
    is multiplied by their number (documented in docs/access.md)."""

    def __init__(self, *, max_failures: int = 20, window_s: float = 300.0, max_clients: int = 10_000) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        # (start of the client's window, failures in it); an entry lives window_s after its last failure.
        self._failures: TTLCache[str, tuple[float, int]] = TTLCache(
            maxsize=max_clients, ttl=window_s, timer=time.monotonic
        )

    def __len__(self) -> int:
        return len(self._failures)

    @staticmethod
    def key(host: str) -> str:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return host
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is not None:
                return str(address.ipv4_mapped)
            return str(ipaddress.IPv6Network((address, 64), strict=False))
        return str(address)

    def failed(self, client: str) -> int | None:
        """Count a failure; the seconds to wait if the client is now past the limit, else None."""
        key = self.key(client)
        now = time.monotonic()
        start, n = self._failures.get(key, (now, 0))
        if now - start >= self.window_s:
            start, n = now, 0
        self._failures[key] = (start, n + 1)
        if n + 1 <= self.max_failures:
            return None
        return max(1, int(start + self.window_s - now) + 1)


@dataclass(frozen=True, slots=True)
class Credential:
    """What a request presented: an API token (Bearer header) or a web session id (cookie)."""

    kind: Literal["bearer", "session"]
    secret: str


def presented(request: Request) -> Credential | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        return Credential("bearer", value.strip())
    cookie = request.cookies.get(SESSION_COOKIE)
    return Credential("session", cookie) if cookie else None


def _principal(row: tokens.TokenRow, scope: Scope, session_id: int | None) -> Principal:
    return Principal(
        row.id, row.name, Role.parse(row.role), row.scope_kind, row.scope_code, scope, session_id=session_id
    )


async def _scope_of(conn: Conn, row: tokens.TokenRow) -> Scope:
    if row.scope_kind == "all":
        return Scope("")
    if row.scope_kind == "region":
        return Scope(region_prefix(row.scope_code))
    mine = await queries.mine(conn, row.scope_code)
    # A token for a mine that left the registry sees nothing rather than everything.
    return Scope(mine["region_code"] if mine is not None else "-", row.scope_code)


async def principal_for(conn: Conn, secret: str) -> Principal | None:
    """The principal of a live API token."""
    row = await tokens.by_secret(conn, secret)
    if row is None:
        return None
    return _principal(row, await _scope_of(conn, row), None)


async def principal_of_session(conn: Conn, secret: str, *, idle_s: float) -> Principal | None:
    """The principal of a live web session (its token live too)."""
    session = await sessions.by_secret(conn, secret, idle_s=idle_s)
    if session is None:
        return None
    return _principal(session.token, await _scope_of(conn, session.token), session.id)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def check_credential(request: Request, conn: Conn, credential: Credential | None) -> Principal:
    """The principal of ``credential``, or 401; past the client's failure limit a wrong
    credential gets 429 instead (a right one is always accepted)."""
    if credential is None:
        raise Unauthorized("this endpoint needs a token: send 'Authorization: Bearer <token>' (see `slopewatch token`)")
    principal: Principal | None = None
    if len(credential.secret) <= 200:
        if credential.kind == "bearer":
            principal = await principal_for(conn, credential.secret)
        else:
            idle_s = request.app.state.settings.api_session_idle_s
            principal = await principal_of_session(conn, credential.secret, idle_s=idle_s)
    if principal is None:
        limiter: FailedAuthLimiter = request.app.state.auth_limiter
        client = client_address(request)
        retry = limiter.failed(client)
        what = "the token is not valid: unknown, revoked or expired"
        if credential.kind == "session":
            what = "the session has ended (logged out, timed out, or its token revoked or expired): log in again"
        if retry is not None:
            raise TooManyRequests(
                f"{what}; too many failed authentications from this address: try again in {retry} s",
                retry_after_s=retry,
            )
        raise Unauthorized(what)
    if principal.role is Role.ADMIN:
        remember_admin(request, credential)
    return principal


async def check_token(request: Request, conn: Conn, secret: str | None) -> Principal:
    """The principal of an API token (a login's body), or 401 / 429 as :func:`check_credential`."""
    return await check_credential(request, conn, Credential("bearer", secret) if secret is not None else None)


async def still_valid(conn: Conn, who: Principal, *, idle_s: float) -> bool:
    """Whether the token (and session) that authenticated ``who`` is still live; for long-lived
    requests such as event streams, which authenticate once at the start."""
    if who.session_id is not None:
        return await sessions.still_live(conn, who.session_id, idle_s=idle_s)
    return await tokens.is_live(conn, who.token_id)


def _credential_key(credential: Credential) -> bytes:
    return tokens.token_hash(f"{credential.kind}:{credential.secret}")


def remember_admin(request: Request, credential: Credential) -> None:
    """Remember for a few minutes (a hash of) this admin credential, so that readiness and
    503 answers can carry internals for an admin while the database cannot be asked."""
    recent: TTLCache[bytes, bool] = request.app.state.recent_admins
    recent[_credential_key(credential)] = True


def is_recent_admin(request: Request) -> bool:
    """Whether the caller presents the credential of an admin authenticated in the last few
    minutes. For answers given while the database cannot be asked (503s); never raises."""
    try:
        credential = presented(request)
    except Unauthorized:
        return False
    if credential is None:
        return False
    recent: TTLCache[bytes, bool] = request.app.state.recent_admins
    return recent.get(_credential_key(credential), False)


async def authenticate(request: Request, conn: ConnDep) -> Principal:
    return await check_credential(request, conn, presented(request))


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
