"""Identity and scope: no token → 401; a token sees its subtree only, and anything outside
answers 404 on every endpoint, for every role; writes need the role."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from core.model import Level
from core.settings import Settings
from db.pool import open_pool
from tests.api.test_api import seed_alert, seed_readings
from tests.conftest import bearer, issue_token

ROLES = ("viewer", "operator", "supervisor", "admin")
PUBLIC = {
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
    ("POST", "/api/v1/session"),
    ("DELETE", "/api/v1/session"),
}

# Request bodies good enough to pass validation, so a 404 can only come from scoping.
FUTURE = (datetime.now(UTC) + timedelta(days=7)).isoformat()
BODIES: dict[str, dict[str, object]] = {
    "acknowledge": {"note": "seen"},
    "handle": {
        "responsible_person": "Li Wei",
        "measures": "unload the crest, drain",
        "funds": "50,000 CNY",
        "deadline": FUTURE,
        "contingency_plan": "evacuate bench 3",
    },
    "resolve": {"note": "done"},
    "verify": {"note": "accepted"},
    "reject": {"note": "not enough"},
    "close": {"note": "closed"},
    "supervise": {"deadline": FUTURE, "note": "handle by Friday"},
}


@dataclass
class World:
    app: FastAPI
    http: httpx.AsyncClient
    pool: asyncpg.Pool
    own_alert: int  # on M1, county 220102
    other_alert: int  # on M1T, county 220203


@pytest.fixture
async def world(loaded_dsn: str, settings: Settings) -> AsyncIterator[World]:
    async with open_pool(loaded_dsn, settings) as pool:
        await seed_readings(pool)
        own = await seed_alert(pool, "GN01", Level.ORANGE)
        other = await seed_alert(pool, "PZ01", Level.RED, mine="M1T")
        app = create_app(settings, pool=pool)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            yield World(app, http, pool, own, other)


def api_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every operation of the OpenAPI document, so a new endpoint is covered without editing this test."""
    paths: dict[str, dict[str, object]] = app.openapi()["paths"]
    return [(method.upper(), path) for path, ops in paths.items() for method in ops]


def fill(path: str, *, mine: str, sensor: str, alert: int) -> str:
    return path.replace("{mine}", mine).replace("{sensor}", sensor).replace("{alert_id}", str(alert))


def body_for(path: str) -> dict[str, object] | None:
    return BODIES.get(path.rsplit("/", 1)[-1])


async def test_every_endpoint_needs_a_valid_token(world: World) -> None:
    routes = [r for r in api_routes(world.app) if r not in PUBLIC]
    assert len(routes) >= 20, routes
    revoked = await issue_token(world.pool)
    async with world.pool.acquire() as conn:
        await conn.execute(
            "UPDATE api_token SET revoked_at = now() WHERE token_hash = sha256($1::text::bytea)", revoked
        )
        expired = await issue_token(world.pool)
        await conn.execute(
            "UPDATE api_token SET expires_at = now() - interval '1 s' WHERE token_hash = sha256($1::text::bytea)",
            expired,
        )
    for method, path in routes:
        url = fill(path, mine="M1", sensor="GN01", alert=world.own_alert)
        for headers in (
            {},
            bearer("swt_not-a-token"),
            bearer(revoked),
            bearer(expired),
            {"Authorization": "Basic eDp5"},
        ):
            world.app.state.auth_limiter.__init__()  # this test is about 401s, not the failure limit
            r = await world.http.request(method, url, headers=headers, json=body_for(path))
            assert r.status_code == 401, (method, url, headers, r.text)
            assert r.json()["error"] == "unauthorized"
            assert r.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("role", ROLES)
async def test_a_county_token_cannot_see_or_touch_another_county(world: World, role: str) -> None:
    """For every endpoint: the other county's mine, sensor and alert answer 404, exactly as a
    code that does not exist; listings never mention them."""
    token = await issue_token(world.pool, role=role, scope_kind="region", scope_code="220102")
    h = bearer(token)
    checked = 0
    for method, path in api_routes(world.app):
        if (method, path) in PUBLIC or path == "/api/v1/me":
            continue
        if "{" in path:
            url = fill(path, mine="M1T", sensor="PZ01", alert=world.other_alert)
            r = await world.http.request(method, url, headers=h, json=body_for(path))
            assert r.status_code == 404, (role, method, url, r.status_code, r.text)
            missing = fill(path, mine="NOPE", sensor="PZ01", alert=10**9)
            r2 = await world.http.request(method, missing, headers=h, json=body_for(path))
            assert r2.status_code == 404, (method, missing, r2.text)
            assert r2.json()["error"] == r.json()["error"]
        else:
            assert method == "GET", (method, path)
            r = await world.http.get(path, headers=h, params={"region": "220203"})
            if "region" in _query_params(world.app, method, path):
                assert r.status_code == 404, (role, path, r.text)
            if path.endswith("/stream"):
                # An endless response: its scoping is checked here, its content in test_overview.
                r = await world.http.get(path, headers=h, params={"mine": "M1T"})
                assert r.status_code == 404, (role, path, r.text)
                checked += 1
                continue
            r = await world.http.get(path, headers=h)
            if path == "/dead-letters":
                assert r.status_code == (200 if role == "admin" else 403), (role, r.text)
                continue
            assert r.status_code == 200, (role, path, r.text)
            assert "M1T" not in r.text, (role, path, r.text[:500])
            assert "220203" not in r.text, (role, path, r.text[:500])
        checked += 1
    assert checked >= 20
    # The own county's things are visible to every role.
    assert (await world.http.get("/api/v1/mines/M1", headers=h)).status_code == 200
    assert (await world.http.get(f"/api/v1/alerts/{world.own_alert}", headers=h)).status_code == 200
    listed = (await world.http.get("/api/v1/alerts", headers=h)).json()["items"]
    assert [a["id"] for a in listed] == [world.own_alert]


def _query_params(app: FastAPI, method: str, path: str) -> set[str]:
    op = app.openapi()["paths"][path][method.lower()]
    return {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}


async def test_a_mine_token_sees_its_mine_only(world: World) -> None:
    h = bearer(await issue_token(world.pool, role="viewer", scope_kind="mine", scope_code="M1"))
    mines = (await world.http.get("/api/v1/mines", headers=h)).json()["items"]
    assert [m["code"] for m in mines] == ["M1"]
    regions = (await world.http.get("/api/v1/regions", headers=h)).json()
    assert [r["code"] for r in regions] == ["220000", "220100", "220102"]
    assert (await world.http.get("/api/v1/mines/M1T/sites", headers=h)).status_code == 404
    assert (await world.http.get("/api/v1/alerts", headers=h, params={"mine": "M1T"})).status_code == 404
    assert (await world.http.get("/api/v1/alerts", headers=h, params={"region": "220203"})).status_code == 404
    # Naming a region above the mine is allowed and still shows only the mine.
    r = await world.http.get("/api/v1/sensors", headers=h, params={"region": "220000"})
    assert {s["mine_code"] for s in r.json()["items"]} == {"M1"}


async def test_a_province_token_sees_both_counties(world: World) -> None:
    h = bearer(await issue_token(world.pool, role="viewer", scope_kind="region", scope_code="220000"))
    alerts = (await world.http.get("/api/v1/alerts", headers=h)).json()["items"]
    assert {a["mine_code"] for a in alerts} == {"M1", "M1T"}
    city = (await world.http.get("/api/v1/alerts", headers=h, params={"region": "220200"})).json()["items"]
    assert [a["mine_code"] for a in city] == ["M1T"]
    # A city token cannot widen itself to the province.
    hc = bearer(await issue_token(world.pool, role="viewer", scope_kind="region", scope_code="220100"))
    assert (await world.http.get("/api/v1/alerts", headers=hc, params={"region": "220000"})).status_code == 404


async def test_failed_authentication_is_rate_limited_but_never_locks_out_a_valid_token(world: World) -> None:
    good = bearer(await issue_token(world.pool))
    limiter = world.app.state.auth_limiter
    for _ in range(limiter.max_failures):
        assert (await world.http.get("/api/v1/mines", headers=bearer("swt_guess"))).status_code == 401
    r = await world.http.get("/api/v1/mines", headers=bearer("swt_guess"))
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1
    # The limit is on failures: a right token from the same address still gets in, so one
    # person mistyping (or an attacker) behind a shared address locks nobody else out.
    assert (await world.http.get("/api/v1/mines", headers=good)).status_code == 200
    assert (await world.http.post("/api/v1/session", json={"token": "swt_guess"})).status_code == 429


def test_token_cli_create_list_revoke(loaded_dsn: str) -> None:
    env = {**os.environ, "DATABASE_URL": loaded_dsn, "SLOPEWATCH_LOG_LEVEL": "WARNING"}
    cmd = [str(Path(sys.executable).parent / "slopewatch"), "token"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=60)

    made = run("create", "--name", "Test County duty", "--role", "operator", "--scope", "220102")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("swt_")
    assert len(secret) > 40
    assert "shown only now" in made.stderr
    bad = run("create", "--name", "x", "--role", "viewer", "--scope", "999999")
    assert bad.returncode == 2
    assert "not in the registry" in bad.stderr
    listed = run("list")
    assert listed.returncode == 0
    assert "Test County duty" in listed.stdout
    assert secret not in listed.stdout
    token_id = listed.stdout.splitlines()[1].split()[0]
    assert run("revoke", token_id).returncode == 0
    assert "Test County duty" not in run("list").stdout
    assert "(revoked)" in run("list", "--all").stdout
    assert run("revoke", token_id).returncode == 1
