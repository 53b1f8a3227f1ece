"""The API attacks of issue 13 against a real uvicorn over a real PostgreSQL: streams that
outlive their token, cross-origin writes with the session cookie, dead letters of other
regions, floods of expensive reads and streams, internals in 503s, and a CDN in /docs."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from api.app import create_app
from api.auth import SESSION_COOKIE
from core.model import Level
from core.settings import Settings
from db import tokens
from db.pool import open_pool
from db.readings import DeadLetter, ReadingBatch, write_batch
from tests.api.test_api import seed_alert
from tests.conftest import bearer, issue_token, wait_for
from tests.security.conftest import LiveApi, Seeded, live_api
from tests.support.proxy import database_proxy, proxied_dsn


@pytest.fixture
async def pool(seeded: Seeded) -> AsyncIterator[asyncpg.Pool]:
    async with open_pool(seeded.dsn, seeded.settings) as p:
        yield p


async def _lines_until_closed(response: httpx.Response, out: list[str]) -> None:
    async for line in response.aiter_lines():
        out.append(line)


async def _wait_for_line(response_lines: list[str], needle: str, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not any(needle in line for line in response_lines):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{needle!r} not seen within {within_s} s: {response_lines[-5:]}")
        await asyncio.sleep(0.05)


# --- streams -------------------------------------------------------------------------


async def test_a_revoked_tokens_open_stream_closes_within_seconds(
    api: LiveApi, seeded: Seeded, pool: asyncpg.Pool
) -> None:
    recheck_s = seeded.settings.stream_recheck_s
    token = await issue_token(pool, role="viewer", scope_kind="region", scope_code="220102")
    async with (
        httpx.AsyncClient(base_url=api.base_url, timeout=30) as http,
        http.stream("GET", "/api/v1/alert-events/stream", headers=bearer(token)) as r,
    ):
        assert r.status_code == 200
        lines: list[str] = []
        reader = asyncio.create_task(_lines_until_closed(r, lines))
        # The stream is live: a new alert of the county arrives on it.
        await seed_alert(pool, "RG01", Level.YELLOW)
        await _wait_for_line(lines, "event: alert_event", within_s=10)
        async with pool.acquire() as conn:
            row = await tokens.by_secret(conn, token)
            assert row is not None
            assert await tokens.revoke(conn, row.id)
        revoked_at = time.monotonic()
        await asyncio.wait_for(reader, recheck_s + 5)  # the server closes the stream
        closed_after_s = time.monotonic() - revoked_at
    assert "event: end" in lines
    assert any("token revoked or expired" in line for line in lines)
    print(f"stream closed {closed_after_s:.2f} s after its token was revoked (recheck every {recheck_s} s)")
    assert closed_after_s <= recheck_s + 2.0, closed_after_s
    # Reconnecting (as EventSource would) is refused.
    async with httpx.AsyncClient(base_url=api.base_url, timeout=10) as http:
        assert (await http.get("/api/v1/alert-events/stream", headers=bearer(token))).status_code == 401


async def test_a_cookie_stream_closes_when_its_session_is_logged_out(
    api: LiveApi, seeded: Seeded, pool: asyncpg.Pool
) -> None:
    origin = {"Origin": api.base_url}
    async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as page:
        login = await page.post("/api/v1/session", json={"token": seeded.county}, headers=origin)
        assert login.status_code == 200
        async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as second_tab:
            second_tab.cookies.set(SESSION_COOKIE, login.cookies[SESSION_COOKIE])
            async with second_tab.stream("GET", "/api/v1/alert-events/stream") as r:
                assert r.status_code == 200
                lines: list[str] = []
                reader = asyncio.create_task(_lines_until_closed(r, lines))
                await _wait_for_line(lines, "retry:", within_s=5)
                assert (await page.delete("/api/v1/session", headers=origin)).status_code == 204
                logged_out_at = time.monotonic()
                await asyncio.wait_for(reader, seeded.settings.stream_recheck_s + 5)
    assert any("session ended" in line for line in lines)
    assert time.monotonic() - logged_out_at <= seeded.settings.stream_recheck_s + 2.0


async def test_open_streams_are_capped_per_token(seeded: Seeded, pool: asyncpg.Pool) -> None:
    settings = dataclasses.replace(seeded.settings, api_streams_per_token=2)
    other = await issue_token(pool, role="viewer", scope_kind="region", scope_code="220102")
    with live_api(settings, seeded.dsn) as api:
        async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as http:
            async with (
                http.stream("GET", "/api/v1/alert-events/stream", headers=bearer(seeded.county)) as one,
                http.stream("GET", "/api/v1/alert-events/stream", headers=bearer(seeded.county)) as two,
            ):
                assert (one.status_code, two.status_code) == (200, 200)
                third = await http.get("/api/v1/alert-events/stream", headers=bearer(seeded.county))
                assert third.status_code == 429
                assert third.json()["error"] == "too_many_requests"
                assert int(third.headers["retry-after"]) >= 1
                assert "open event streams" in third.json()["message"]
                # Another token is not affected.
                async with http.stream("GET", "/api/v1/alert-events/stream", headers=bearer(other)) as theirs:
                    assert theirs.status_code == 200
            # Closed streams give their slots back.
            caps = api.app.state.stream_caps
            await wait_for(lambda: caps.in_use == 0, within_s=10)
            async with http.stream("GET", "/api/v1/alert-events/stream", headers=bearer(seeded.county)) as again:
                assert again.status_code == 200


# --- cross-origin writes --------------------------------------------------------------------


async def test_a_cross_origin_cookie_post_is_refused_and_changes_nothing(
    api: LiveApi, seeded: Seeded, pool: asyncpg.Pool
) -> None:
    operator = await issue_token(pool, role="operator", scope_kind="region", scope_code="220102")
    own = {"Origin": api.base_url}
    url = f"/api/v1/alerts/{seeded.own_alert}/acknowledge"
    async with httpx.AsyncClient(base_url=api.base_url, timeout=10) as browser:
        assert (await browser.post("/api/v1/session", json={"token": operator}, headers=own)).status_code == 200
        attempts = [
            # a page on another site posting a form, or fetch() with no body
            {"headers": {"Origin": "https://evil.example"}, "content": b""},
            {"headers": {"Origin": "https://evil.example", "Content-Type": "application/json"}, "content": b"{}"},
            # a sibling origin: same host, another port (SameSite does not tell them apart)
            {"headers": {"Origin": f"http://127.0.0.1:{api.port + 1}"}, "json": {}},
            {"headers": {"Origin": "null"}, "json": {}},
            {"headers": {"Sec-Fetch-Site": "cross-site"}, "json": {}},
            {"headers": {"Sec-Fetch-Site": "same-site"}, "json": {}},
            # no Origin and no Sec-Fetch-Site at all
            {"headers": {}, "json": {}},
            # same origin, but a form body or none: a form cannot send JSON
            {
                "headers": {**own, "Content-Type": "application/x-www-form-urlencoded"},
                "content": b"note=x",
            },
            {"headers": {**own, "Content-Type": "text/plain"}, "content": b"{}"},
            {"headers": own, "content": b""},
        ]
        for attempt in attempts:
            r = await browser.post(url, **attempt)  # type: ignore[arg-type]
            assert r.status_code == 403, (attempt, r.text)
            assert r.json()["error"] == "forbidden"
        # Logging out from another site is refused too (it would end the session).
        assert (await browser.delete("/api/v1/session", headers={"Origin": "https://evil.example"})).status_code == 403
        assert (await browser.get("/api/v1/me")).status_code == 200
        # Nothing changed: still open, no event.
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT stage FROM alert WHERE id = $1", seeded.own_alert) == "open"
            assert await conn.fetchval("SELECT count(*) FROM alert_event WHERE kind = 'acknowledged'") == 0
        # The pages' own request (same Origin, JSON body) goes through.
        r = await browser.post(url, json={"note": "seen"}, headers=own)
        assert r.status_code == 200, r.text
        assert r.json()["stage"] == "acknowledged"
        # Sec-Fetch-Site: same-origin without Origin is the pages as well.
        r = await browser.post(
            f"/api/v1/alerts/{seeded.own_alert}/handle",
            json={
                "responsible_person": "Li",
                "measures": "drain",
                "funds": "1",
                "deadline": "2030-01-01T00:00:00+08:00",
                "contingency_plan": "evacuate",
            },
            headers={"Sec-Fetch-Site": "same-origin"},
        )
        assert r.status_code == 200, r.text
    # A client with a Bearer token is not affected: no Origin, no body.
    async with httpx.AsyncClient(base_url=api.base_url, timeout=10) as script:
        other = await seed_alert(pool, "RG01", Level.BLUE)
        r = await script.post(f"/api/v1/alerts/{other}/acknowledge", headers=bearer(operator))
        assert r.status_code == 200, r.text
    # Each refusal is counted by reason on /metrics.
    metrics = api.app.state.metrics
    counted = {
        reason: metrics.get_sample_value("slopewatch_api_refused_total", {"reason": reason})
        for reason in ("cross_origin", "no_origin", "not_json")
    }
    assert counted == {"cross_origin": 7, "no_origin": 1, "not_json": 3}


async def test_logging_in_from_another_site_is_refused(api: LiveApi, seeded: Seeded) -> None:
    async with httpx.AsyncClient(base_url=api.base_url, timeout=10) as http:
        r = await http.post(
            "/api/v1/session", json={"token": seeded.county}, headers={"Origin": "https://evil.example"}
        )
        assert r.status_code == 403
        assert SESSION_COOKIE not in r.headers.get("set-cookie", "")
        # A script with no Origin (curl, a test) may still log in.
        assert (await http.post("/api/v1/session", json={"token": seeded.county})).status_code == 200


async def test_an_allowed_origin_from_the_settings_may_write(seeded: Seeded) -> None:
    settings = dataclasses.replace(seeded.settings, api_origins="https://monitor.example.cn")
    with live_api(settings, seeded.dsn) as api:
        async with httpx.AsyncClient(base_url=api.base_url, timeout=10) as http:
            proxy_origin = {"Origin": "https://monitor.example.cn"}
            assert (
                await http.post("/api/v1/session", json={"token": seeded.county}, headers=proxy_origin)
            ).status_code == 200
            assert (
                await http.delete("/api/v1/session", headers={"Origin": "https://monitor.example.cn:8443"})
            ).status_code == 403
            assert (await http.delete("/api/v1/session", headers=proxy_origin)).status_code == 204


# --- dead letters ----------------------------------------------------------------------


async def test_a_county_admin_sees_only_its_own_dead_letters(api: LiveApi, pool: asyncpg.Pool) -> None:
    def dead(topic: str) -> DeadLetter:
        return DeadLetter(topic, b"{bad", 4, False, "malformed_json", "payload is not JSON")

    async with pool.acquire() as conn:
        # seeded: one for M1 (county 220102); now one for M1T (220203) and two of no registered mine
        await write_batch(
            conn,
            ReadingBatch(),
            [
                dead("slopewatch/v1/M1T/PZ01/readings"),
                dead("slopewatch/v1/NOPE/X/readings"),
                dead("garbage/topic"),
            ],
        )
    tokens_by_who = {
        "county": await issue_token(pool, role="admin", scope_kind="region", scope_code="220102"),
        "other_county": await issue_token(pool, role="admin", scope_kind="region", scope_code="220203"),
        "province": await issue_token(pool, role="admin", scope_kind="region", scope_code="220000"),
        "mine": await issue_token(pool, role="admin", scope_kind="mine", scope_code="M1"),
        "all": await issue_token(pool),
    }
    expected = {
        "county": ["slopewatch/v1/M1/X/readings"],
        "other_county": ["slopewatch/v1/M1T/PZ01/readings"],
        "province": ["slopewatch/v1/M1T/PZ01/readings", "slopewatch/v1/M1/X/readings"],
        "mine": ["slopewatch/v1/M1/X/readings"],
        "all": [
            "garbage/topic",
            "slopewatch/v1/NOPE/X/readings",
            "slopewatch/v1/M1T/PZ01/readings",
            "slopewatch/v1/M1/X/readings",
        ],
    }
    async with httpx.AsyncClient(base_url=api.base_url, timeout=10) as http:
        for who, token in tokens_by_who.items():
            r = await http.get("/dead-letters", headers=bearer(token))
            assert r.status_code == 200, r.text
            assert [d["topic"] for d in r.json()["items"]] == expected[who], who
        # Paging does not leak either: one at a time, the county still sees only its own.
        page = (await http.get("/dead-letters?limit=1", headers=bearer(tokens_by_who["county"]))).json()
        assert [d["topic"] for d in page["items"]] == ["slopewatch/v1/M1/X/readings"]
        assert page["next_cursor"] is not None
        rest = await http.get(
            f"/dead-letters?limit=1&cursor={page['next_cursor']}", headers=bearer(tokens_by_who["county"])
        )
        assert rest.json()["items"] == []
        # Below admin: refused, whatever the scope.
        supervisor = await issue_token(pool, role="supervisor", scope_kind="region", scope_code="220102")
        assert (await http.get("/dead-letters", headers=bearer(supervisor))).status_code == 403


# --- caps on expensive reads -------------------------------------------------------------


async def test_ten_parallel_integrity_checks_by_one_viewer_cannot_exhaust_the_pool(
    api: LiveApi, seeded: Seeded, pool: asyncpg.Pool
) -> None:
    settings = seeded.settings
    viewer = await issue_token(pool, role="viewer", scope_kind="region", scope_code="220102")
    second = await issue_token(pool, role="viewer", scope_kind="region", scope_code="220102")
    # Hold the readings table so that every integrity check blocks on it, as a slow check
    # of a large mine would: without the cap all ten would hold a connection of the pool.
    async with pool.acquire() as locker, httpx.AsyncClient(base_url=api.base_url, timeout=60) as http:
        lock = locker.transaction()
        await lock.start()
        await locker.execute("LOCK TABLE reading IN ACCESS EXCLUSIVE MODE")

        async def check(token: str) -> httpx.Response:
            return await http.get("/api/v1/mines/M1/integrity", headers=bearer(token))

        flood = [asyncio.create_task(check(viewer)) for _ in range(10)]
        await wait_for(lambda: sum(t.done() for t in flood) == 10 - settings.api_expensive_per_token, within_s=15)
        await asyncio.sleep(0.5)  # and no more finish while the table is held
        assert api.app.state.expensive_caps.in_use == settings.api_expensive_per_token
        refused = [t.result() for t in flood if t.done()]
        assert len(refused) == 10 - settings.api_expensive_per_token
        for r in refused:
            assert r.status_code == 429
            assert r.json()["error"] == "too_many_requests"
            assert int(r.headers["retry-after"]) >= 1
        # Another token still gets answers at once: the pool is not exhausted.
        started = time.monotonic()
        me = await http.get("/api/v1/me", headers=bearer(seeded.admin))
        assert me.status_code == 200
        assert time.monotonic() - started < 2.0
        # The process-wide cap: another viewer gets the remaining slots, then 429.
        more = [asyncio.create_task(check(second)) for _ in range(3)]
        free = settings.api_expensive_total - settings.api_expensive_per_token
        await wait_for(lambda: sum(t.done() for t in more) == 3 - free, within_s=15)
        await asyncio.sleep(0.5)
        done = [t.result() for t in more if t.done()]
        assert [r.status_code for r in done] == [429] * (3 - free)
        assert "the server is running" in done[0].json()["message"]
        assert api.app.state.expensive_caps.in_use == settings.api_expensive_total
        await lock.rollback()  # the table is free: the held checks finish
        results = await asyncio.gather(*flood, *more)
    assert [r.status_code for r in results].count(200) == settings.api_expensive_total
    assert api.app.state.expensive_caps.in_use == 0


# --- internals in 503s -------------------------------------------------------------------


async def test_ready_and_503s_show_internals_only_to_an_admin(seeded: Seeded) -> None:
    settings: Settings = seeded.settings
    async with database_proxy(seeded.dsn) as proxy, open_pool(proxied_dsn(seeded.dsn, proxy), settings) as pool:
        app = create_app(settings, pool=pool)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            assert (await http.get("/ready")).status_code == 200
            # The admin has been seen recently (the database can vouch for it now).
            assert (await http.get("/api/v1/me", headers=bearer(seeded.admin))).status_code == 200
            proxy.cut()
            # host, port, an exception's name or the driver's words
            internals = re.compile(rf"127\.0\.0\.1|{proxy.port}|[A-Z][a-z]+Error|[Ee]rrno|[Rr]efused|[Rr]eset")
            for path in ("/ready", "/api/v1/mines"):
                anonymous = await http.get(path)
                assert anonymous.status_code == 503, anonymous.text
                assert not internals.search(anonymous.text), anonymous.text
                assert "incident" in anonymous.text
                county = await http.get(path, headers=bearer(seeded.county))
                assert not internals.search(county.text), county.text
                admin = await http.get(path, headers=bearer(seeded.admin))
                assert admin.status_code == 503
                assert internals.search(admin.text), admin.text
            await proxy.restore()


# --- OpenAPI pages without a CDN ----------------------------------------------------------


async def test_the_openapi_pages_load_nothing_from_another_host(api: LiveApi) -> None:
    async with httpx.AsyncClient(base_url=api.base_url, timeout=10) as http:
        for page in ("/docs", "/redoc"):
            html = (await http.get(page)).text
            urls = re.findall(r"""(?:src|href)=["']([^"']+)["']|url: ?["']([^"']+)["']""", html)
            found = [u for pair in urls for u in pair if u]
            assert found, html
            for url in found:
                assert url.startswith("/"), (page, url)
                assert not url.startswith("//"), (page, url)
                asset = await http.get(url)
                assert asset.status_code == 200, (page, url)
            assert "cdn" not in html.lower()
        assert (await http.get("/openapi.json")).status_code == 200


async def test_the_openapi_pages_can_be_turned_off(seeded: Seeded) -> None:
    settings = dataclasses.replace(seeded.settings, api_docs=False)
    with live_api(settings, seeded.dsn) as api:
        async with httpx.AsyncClient(base_url=api.base_url, timeout=10) as http:
            assert (await http.get("/docs")).status_code == 404
            assert (await http.get("/redoc")).status_code == 404
            assert (await http.get("/openapi.json")).status_code == 200
