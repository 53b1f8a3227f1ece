"""Web sessions: the cookie holds a random session id (stored hashed), never the token; it
ends on logout, at its absolute end, when idle, and with its token. The failed-login limiter
remembers a bounded number of addresses and never keeps a right token out."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from api.auth import SESSION_COOKIE, FailedAuthLimiter
from core.settings import Settings
from db import tokens
from db.pool import open_pool
from tests.conftest import bearer, issue_token

BASE = "http://t"
SAME_ORIGIN = {"Origin": BASE}


@dataclass
class Env:
    app: FastAPI
    pool: asyncpg.Pool
    settings: Settings

    def client(self, *, address: str = "127.0.0.1") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url=BASE)


@pytest.fixture
async def env(loaded_dsn: str, settings: Settings) -> AsyncIterator[Env]:
    async with open_pool(loaded_dsn, settings) as pool:
        yield Env(create_app(settings, pool=pool), pool, settings)


async def login(http: httpx.AsyncClient, token: str) -> str:
    r = await http.post("/api/v1/session", json={"token": token}, headers=SAME_ORIGIN)
    assert r.status_code == 200, r.text
    return r.cookies[SESSION_COOKIE]


async def test_the_cookie_holds_a_hashed_session_id_not_the_token(env: Env) -> None:
    token = await issue_token(env.pool, role="operator", scope_kind="region", scope_code="220102")
    async with env.client() as http:
        r = await http.post("/api/v1/session", json={"token": token}, headers=SAME_ORIGIN)
        assert r.status_code == 200
        assert (r.json()["level"], r.json()["role"]) == ("county", "operator")
        set_cookie = r.headers["set-cookie"]
        assert "HttpOnly" in set_cookie
        assert "SameSite=strict" in set_cookie
        assert "Max-Age=43200" in set_cookie  # the 12 h absolute lifetime
        sid = r.cookies[SESSION_COOKIE]
        assert sid.startswith("sws_")
        assert len(sid) > 40
        assert token not in set_cookie
        assert (await http.get("/api/v1/me")).json()["scope_code"] == "220102"
    async with env.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT session_hash, client FROM api_session")
        dump = str(await conn.fetch("SELECT * FROM api_session"))
    assert bytes(row["session_hash"]) == hashlib.sha256(sid.encode()).digest()
    assert sid not in dump
    assert token not in dump
    assert row["client"] == "127.0.0.1"
    # Logging in again from the same browser replaces its session: the old id is dead.
    async with env.client() as http:
        http.cookies.set(SESSION_COOKIE, sid)
        second = await login(http, token)
        assert second != sid
        assert (await http.get("/api/v1/me")).status_code == 200
    async with env.client() as other:
        other.cookies.set(SESSION_COOKIE, sid)
        assert (await other.get("/api/v1/me")).status_code == 401
    # A session id is not a token, and a token is not a session id.
    async with env.client() as other:
        assert (await other.get("/api/v1/me", headers=bearer(sid))).status_code == 401
        other.cookies.set(SESSION_COOKIE, token)
        assert (await other.get("/api/v1/me")).status_code == 401


async def test_logout_ends_the_session_on_the_server(env: Env) -> None:
    token = await issue_token(env.pool, role="viewer", scope_kind="region", scope_code="220102")
    async with env.client() as http:
        sid = await login(http, token)
        r = await http.delete("/api/v1/session", headers=SAME_ORIGIN)
        assert r.status_code == 204
        assert SESSION_COOKIE in r.headers["set-cookie"]  # cleared in the browser
        assert (await http.get("/api/v1/me")).status_code == 401
    # A copy of the cookie taken before logout is worthless after it.
    async with env.client() as thief:
        thief.cookies.set(SESSION_COOKIE, sid)
        r = await thief.get("/api/v1/me")
        assert r.status_code == 401
        assert "session has ended" in r.json()["message"]
    async with env.pool.acquire() as conn:
        assert await conn.fetchval("SELECT revoked_at IS NOT NULL FROM api_session") is True
    # The token itself is untouched by a logout.
    async with env.client() as http:
        assert (await http.get("/api/v1/me", headers=bearer(token))).status_code == 200


async def test_a_session_dies_with_its_token_revoked_or_expired(env: Env) -> None:
    revoked = await issue_token(env.pool, role="viewer", scope_kind="region", scope_code="220102")
    expiring = await issue_token(env.pool, role="viewer", scope_kind="region", scope_code="220102")
    async with env.client() as a, env.client() as b:
        await login(a, revoked)
        await login(b, expiring)
        assert (await a.get("/api/v1/me")).status_code == 200
        assert (await b.get("/api/v1/me")).status_code == 200
        async with env.pool.acquire() as conn:
            row = await tokens.by_secret(conn, revoked)
            assert row is not None
            assert await tokens.revoke(conn, row.id)
            await conn.execute(
                "UPDATE api_token SET expires_at = now() - interval '1 s' WHERE token_hash = $1",
                tokens.token_hash(expiring),
            )
        assert (await a.get("/api/v1/me")).status_code == 401
        assert (await b.get("/api/v1/me")).status_code == 401


async def test_absolute_lifetime_and_idle_timeout(env: Env, loaded_dsn: str) -> None:
    token = await issue_token(env.pool, role="viewer", scope_kind="region", scope_code="220102")
    # Absolute: 2 s after login the session is over, however busy.
    short = dataclasses.replace(env.settings, api_session_max_s=2.0, api_session_idle_s=60.0)
    async with open_pool(loaded_dsn, short) as pool:
        app = create_app(short, pool=pool)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
            await login(http, token)
            for _ in range(3):
                assert (await http.get("/api/v1/me")).status_code == 200
                await asyncio.sleep(0.4)
            await asyncio.sleep(1.0)
            assert (await http.get("/api/v1/me")).status_code == 401
    # Idle: a session used every 0.5 s outlives its 2 s idle timeout; left alone it ends.
    idle = dataclasses.replace(env.settings, api_session_max_s=3600.0, api_session_idle_s=2.0)
    async with open_pool(loaded_dsn, idle) as pool:
        app = create_app(idle, pool=pool)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
            await login(http, token)
            for _ in range(8):
                assert (await http.get("/api/v1/me")).status_code == 200
                await asyncio.sleep(0.5)
            await asyncio.sleep(2.5)
            assert (await http.get("/api/v1/me")).status_code == 401


async def test_failed_logins_are_limited_per_address_and_a_right_token_still_gets_in(env: Env) -> None:
    token = await issue_token(env.pool, role="viewer", scope_kind="region", scope_code="220102")
    limit = env.settings.api_auth_failures
    async with env.client(address="10.0.0.7") as limited, env.client(address="10.0.0.8") as neighbour:
        for _ in range(limit):
            r = await limited.post("/api/v1/session", json={"token": "swt_guess"})
            assert r.status_code == 401
        r = await limited.post("/api/v1/session", json={"token": "swt_guess"})
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1
        # The limited address logs in with a right token, and uses it.
        sid = await login(limited, token)
        assert (await limited.get("/api/v1/me")).status_code == 200
        assert sid
        # Another address is not affected.
        assert (await neighbour.post("/api/v1/session", json={"token": "swt_guess"})).status_code == 401
    # IPv6: one /64 is one client (a host holds a whole /64).
    async with env.client(address="2001:db8:1:2::10") as v6a, env.client(address="2001:db8:1:2::99") as v6b:
        for _ in range(limit):
            assert (await v6a.get("/api/v1/me", headers=bearer("swt_guess"))).status_code == 401
        assert (await v6b.get("/api/v1/me", headers=bearer("swt_guess"))).status_code == 429
        assert (await v6b.get("/api/v1/me", headers=bearer(token))).status_code == 200


def test_the_limiter_forgets_the_oldest_addresses_beyond_its_bound() -> None:
    limiter = FailedAuthLimiter(max_failures=3, window_s=300.0, max_clients=1000)
    for i in range(100_000):
        limiter.failed(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
        assert len(limiter) <= 1000
    assert len(limiter) == 1000
    # The most recent addresses are still counted: 3 failures then limited.
    recent = "10.1.134.159"  # i = 99_999
    assert limiter.failed(recent) is None  # its second failure
    assert limiter.failed(recent) is None
    assert limiter.failed(recent) is not None
    # Failures within the window count; after it, an address starts again.
    short = FailedAuthLimiter(max_failures=1, window_s=0.2, max_clients=10)
    assert short.failed("192.0.2.1") is None
    assert short.failed("192.0.2.1") is not None
    time.sleep(0.25)
    assert short.failed("192.0.2.1") is None
