"""The watchdog's banner on every page (the login page included): shown while no analysis
beats, gone once one does."""

from __future__ import annotations

import asyncio
import dataclasses
import re

from playwright.async_api import Browser, expect
from prometheus_client import CollectorRegistry

from analytics.worker import AnalysisMetrics, AnalysisWorker
from api.app import create_app
from cli import runtime
from core.settings import Settings
from db.pool import open_pool
from tests.conftest import issue_token, wait_for
from tests.web.conftest import login, shot


async def test_banner_while_the_analysis_is_dead_and_gone_when_it_beats(
    loaded_dsn: str, settings: Settings, browser: Browser
) -> None:
    settings = dataclasses.replace(settings, watchdog_poll_s=0.2, watchdog_max_lag_s=1.0, summary_refresh_s=0)
    port = runtime.free_port()
    async with open_pool(loaded_dsn, settings) as pool:
        server = runtime.api_server(create_app(settings, pool=pool), "127.0.0.1", port)
        serve = asyncio.create_task(server.serve())
        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        context.set_default_timeout(15_000)
        errors: list[str] = []
        try:
            await wait_for(lambda: server.started, within_s=10)
            page = await context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            base = f"http://127.0.0.1:{port}"
            await page.goto(f"{base}/ui/")
            banner = page.locator("#watchdog")
            await expect(banner).to_be_visible(timeout=15_000)
            await expect(banner).to_have_attribute("data-state", "dead")
            await expect(banner).to_contain_text("分析服务已停止")
            await login(page, base, await issue_token(pool))
            await expect(banner).to_be_visible(timeout=15_000)  # on the pages after login too
            # the watchdog's alerts, one per mine, on the board: subject where a sensor would be
            cards = page.locator(".board .alert-card[data-level=orange]")
            await expect(cards).to_have_count(2, timeout=15_000)
            await expect(cards.first).to_contain_text("analysis")
            await shot(page, "watchdog-banner")
            worker = AnalysisWorker(settings, pool, AnalysisMetrics(CollectorRegistry()))
            task = asyncio.create_task(worker.run())
            try:
                await expect(banner).to_be_hidden(timeout=15_000)
                await expect(banner).to_have_attribute("data-state", re.compile("ok"))
            finally:
                worker.stop()
                await asyncio.wait_for(task, 10)
        finally:
            await context.close()
            server.should_exit = True
            await asyncio.wait_for(serve, 15)
        assert errors == []
