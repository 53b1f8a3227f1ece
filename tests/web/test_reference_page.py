"""The sensor page in headless Chromium says which reference the displacement is measured
from and since when, and which readings an operator's correction left out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from playwright.async_api import Browser, expect

from tests.conftest import bearer, issue_token
from tests.web.conftest import Site, accelerating_slope, login, shot


async def test_the_sensor_page_shows_the_reference_and_the_readings_left_out(site: Site, browser: Browser) -> None:
    token = await issue_token(site.pool, role="operator", scope_kind="mine", scope_code="M1")
    await accelerating_slope(site.pool, site.settings)  # also records the first-reading references
    page = await site.page(browser, width=1366, height=768)
    await login(page, site.base, token)
    await page.locator("tr[data-sensor=GN01] a").click()
    reference = page.locator("p.reference")
    await expect(reference).to_have_attribute("data-reference", "first_reading first_reading first_reading")
    await expect(reference).to_contain_text("首次读数")
    await expect(page.locator("p.invalid")).to_have_count(0)
    await expect(page.locator("figure[data-chart=horizontal-disp]")).to_have_count(1)

    start = datetime.now(UTC) - timedelta(days=3)
    async with httpx.AsyncClient(base_url=site.base, headers=bearer(token)) as http:
        r = await http.post(
            "/api/v1/mines/M1/sensors/GN01/corrections",
            json={
                "start": start.isoformat(),
                "end": (start + timedelta(hours=6)).isoformat(),
                "action": "invalidate",
                "reason": "prism knocked by a loader",
            },
        )
        assert r.status_code == 201, r.text
        since = datetime.now(UTC) - timedelta(days=2)
        r = await http.post(
            "/api/v1/mines/M1/sensors/GN01/reference",
            json={"since": since.isoformat(), "reason": "new antenna"},
        )
        assert r.status_code == 201, r.text
    await page.reload()
    await expect(page.locator("p.invalid")).to_have_attribute("data-invalid", "1")
    await expect(page.locator("p.invalid")).to_contain_text("prism knocked by a loader")
    await expect(reference).to_have_attribute("data-reference", "rebaseline rebaseline rebaseline")
    await expect(reference).to_contain_text("重新设定基准")
    await shot(page, "sensor-reference-and-corrections")
    assert site.page_errors == []
