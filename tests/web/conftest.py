"""A real browser against a real server: Debian's headless Chromium driven by Playwright,
the app on uvicorn over a real PostgreSQL, data through the real analysis worker.

Screenshots go to ``test-artifacts/web/`` (git-ignored); each test prints their paths.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import numpy as np
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright
from prometheus_client import CollectorRegistry

from analytics.worker import AnalysisMetrics, AnalysisWorker
from api.app import create_app
from cli import runtime
from core.settings import Settings
from db.pool import open_pool
from db.readings import ReadingBatch, write_batch
from simulators.scenarios import displacement_series
from tests.conftest import wait_for

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
DAY_S = 86_400.0


def chromium_binary() -> str:
    for path in (os.environ.get("SLOPEWATCH_CHROMIUM"), *CHROMIUM_PATHS, shutil.which("chromium")):
        if path and Path(path).exists():
            return path
    raise RuntimeError("Chromium is not installed: apt-get install chromium (the page tests drive a real browser)")


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        b = await pw.chromium.launch(
            executable_path=chromium_binary(), args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"]
        )
        yield b
        await b.close()


@dataclass
class Site:
    base: str
    pool: asyncpg.Pool
    settings: Settings
    contexts: list[BrowserContext] = dataclasses.field(default_factory=list)
    #: Uncaught exceptions of the pages' scripts; every test ends by asserting none.
    page_errors: list[str] = dataclasses.field(default_factory=list)

    async def page(self, browser: Browser, *, width: int = 1920, height: int = 1080) -> Page:
        context = await browser.new_context(viewport={"width": width, "height": height}, timezone_id="Europe/Berlin")
        context.set_default_timeout(10_000)
        self.contexts.append(context)
        page = await context.new_page()
        # Count alarm beeps (WebAudio makes no sound a test can hear).
        await page.add_init_script("window.__beeps = 0; addEventListener('slopewatch:beep', () => window.__beeps++);")
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        return page


@pytest.fixture
async def site(loaded_dsn: str, settings: Settings) -> AsyncIterator[Site]:
    settings = dataclasses.replace(settings, stream_poll_s=0.1)
    port = runtime.free_port()
    async with open_pool(loaded_dsn, settings) as pool:
        server = runtime.api_server(create_app(settings, pool=pool), "127.0.0.1", port)
        serve = asyncio.create_task(server.serve())
        site = Site(f"http://127.0.0.1:{port}", pool, settings)
        try:
            await wait_for(lambda: server.started, within_s=10)
            yield site
        finally:
            # Close the pages first: their event streams would hold the server's shutdown.
            for context in site.contexts:
                await context.close()
            server.should_exit = True
            await asyncio.wait_for(serve, 15)


async def login(page: Page, base: str, token: str) -> None:
    await page.goto(f"{base}/ui/")
    await page.wait_for_selector("#token")
    await page.fill("#token", token)
    await page.click("form.login button[type=submit]")
    await page.wait_for_selector("#logout:not([hidden])")


async def shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


async def accelerating_slope(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    mine: str = "M1",
    sensor: str = "GN01",
    seed: int = 11,
    v0_mm_per_day: float = 2.0,
    hours_to_failure: float = 12.0,
) -> int:
    """Thirty days of hourly GNSS readings ending now, in tertiary creep with failure
    ``hours_to_failure`` ahead, stored as ingest stores them; then one cycle of the real
    analysis worker (with the defaults: a red acceleration alert with a forecast and a
    yellow rate alert). Returns the number of alert changes it made."""
    now = time.time()
    series = displacement_series(
        "tertiary",
        start_s=now - 30 * DAY_S,
        duration_s=30 * DAY_S,
        interval_s=3600.0,
        seed=seed,
        failure_s=now + hours_to_failure * 3600.0,
        tertiary_days=8.0,
        v0_mm_per_day=v0_mm_per_day,
        azimuth_deg=120.0,
        vertical_ratio=0.4,
    )
    async with pool.acquire() as conn:
        sid = await conn.fetchval(
            "SELECT s.id FROM sensor s JOIN mine m ON m.id = s.mine_id WHERE s.code = $1 AND m.code = $2", sensor, mine
        )
        batch = ReadingBatch()
        for i, t in enumerate(series.t_s):
            for ch, values in series.values.items():
                batch.add(sid, ch, int(t * 1e6), float(np.round(values[i], 2)), i)
        await write_batch(conn, batch, [])
    worker = AnalysisWorker(settings, pool, AnalysisMetrics(CollectorRegistry()))
    report = await worker.cycle(now_s=now)
    return report.changes
