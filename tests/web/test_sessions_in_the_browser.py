"""Sessions and the OpenAPI pages in headless Chromium: a revoked token takes the open page
back to the login (its event stream is ended by the server), and /docs renders with every
request to another host blocked."""

from __future__ import annotations

import re

from playwright.async_api import Browser, Request, Route, expect

from db import tokens
from tests.conftest import issue_token
from tests.web.conftest import Site, login


async def test_revoking_the_token_takes_an_open_page_back_to_the_login(site: Site, browser: Browser) -> None:
    token = await issue_token(site.pool, role="viewer", scope_kind="region", scope_code="220102")
    page = await site.page(browser)
    await login(page, site.base, token)
    await expect(page.locator("#live-state")).to_have_class(re.compile("ok"))
    cookie = next(c for c in await page.context.cookies() if c["name"] == "slopewatch_session")
    assert cookie["value"].startswith("sws_")
    assert cookie["value"] != token
    async with site.pool.acquire() as conn:
        row = await tokens.by_secret(conn, token)
        assert row is not None
        await tokens.revoke(conn, row.id)
    # Nobody clicks anything: the stream's re-check ends it and the page logs out.
    await expect(page.locator("#token")).to_be_visible(timeout=site.settings.stream_recheck_s * 1000 + 5000)
    assert site.page_errors == []


async def test_the_openapi_page_renders_with_other_hosts_blocked(site: Site, browser: Browser) -> None:
    page = await site.page(browser)
    foreign: list[str] = []

    async def only_this_site(route: Route, request: Request) -> None:
        if request.url.startswith(site.base):
            await route.continue_()
        else:
            foreign.append(request.url)
            await route.abort()

    await page.route("**/*", only_this_site)
    await page.goto(f"{site.base}/docs")
    # Swagger UI has read /openapi.json and drawn the operations.
    await expect(
        page.locator(".opblock-summary-path", has_text="/api/v1/alerts/{alert_id}/acknowledge")
    ).to_be_visible()
    assert foreign == []
