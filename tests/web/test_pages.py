"""The pages in headless Chromium: log in with scoped tokens, watch an alert arrive live,
take it through the closed loop, read its charts, and watch a province's tree change."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
from playwright.async_api import Browser, Page, expect

from core.model import Level
from db import alerts as store
from tests.api.test_api import seed_alert
from tests.conftest import issue_token
from tests.web.conftest import Site, accelerating_slope, login, shot


async def submit(page: Page, action: str, fields: dict[str, str] | None = None) -> None:
    form = page.locator(f"form.action-{action}")
    for name, value in (fields or {}).items():
        await form.locator(f"[name={name}]").fill(value)
    await form.locator("button[type=submit]").click()


async def expect_stage(page: Page, stage: str) -> None:
    await expect(page.locator(".alert-head")).to_have_attribute("data-stage", stage)


async def test_county_watches_an_alert_arrive_and_closes_it(site: Site, browser: Browser) -> None:
    token = await issue_token(site.pool, role="supervisor", scope_kind="region", scope_code="220102")
    page = await site.page(browser)
    await login(page, site.base, token)
    # A county token lands on its county's overview; its only child is its mine.
    await expect(page).to_have_url(re.compile(r"#/region/220102$"))
    await expect(page.locator("tr[data-node=M1]")).to_have_attribute("data-level", "none")
    await expect(page.locator(".board .empty")).to_be_visible()
    await expect(page.locator("#live-state")).to_have_class(re.compile("ok"))
    # The session is an HttpOnly cookie; the page keeps no token anywhere it could read.
    cookies = await page.context.cookies()
    assert [(c["name"], c["httpOnly"]) for c in cookies] == [("slopewatch_session", True)]
    assert token not in page.url
    assert token not in await page.evaluate("JSON.stringify(localStorage)")

    # Readings of an accelerating slope go through the real detectors; the alert appears live.
    assert await accelerating_slope(site.pool, site.settings) >= 1
    red = page.locator(".board .alert-card[data-level=red]")
    await expect(red).to_have_count(1)
    await expect(page.locator("#flash")).to_have_attribute("data-level", re.compile("red|yellow"))
    await expect(page.locator("#flash.flashing")).to_be_visible()
    assert await page.evaluate("window.__beeps") >= 1
    await expect(red.locator(".lvl")).to_contain_text("红色")
    await expect(page.locator("tr[data-node=M1]")).to_have_attribute("data-level", "red")
    await expect(page.locator("[data-stat=unacknowledged] .value")).to_have_text("2")
    await shot(page, "county-overview-live-alert")

    # The closed loop through the alert's page.
    await red.locator("h3 a").click()
    await expect(page).to_have_url(re.compile(r"#/alert/\d+$"))
    alert_id = int(page.url.rsplit("/", 1)[1])
    await expect_stage(page, "open")
    await expect(page.locator(".alert-head .forecast")).to_contain_text("预测失稳时间")
    await expect(page.locator("table.evidence tr[data-key=voight_ttf_h]")).to_be_visible()
    await submit(page, "acknowledge", {"note": "值班员已在大屏确认"})
    await expect_stage(page, "acknowledged")
    deadline = (datetime.now(UTC) + timedelta(days=3)).astimezone(UTC) + timedelta(hours=8)
    await submit(
        page,
        "handle",
        {
            "responsible_person": "王芳 安全科长",
            "measures": "东帮3台阶削坡减载，坡脚排水",
            "funds": "安全费用 12 万元",
            "deadline": deadline.strftime("%Y-%m-%dT%H:%M"),
            "contingency_plan": "红色报警时撤离2-4台阶人员，封闭7号道路",
        },
    )
    await expect_stage(page, "handling")
    await expect(page.locator("dd[data-five=funds]")).to_have_text("安全费用 12 万元")
    await submit(page, "resolve", {"note": "削坡完成"})
    await expect_stage(page, "resolved")
    await submit(page, "verify", {"note": "现场验收合格"})
    await expect_stage(page, "verified")
    # The condition is still present: the API refuses to close, and the page says why.
    await submit(page, "close", {"note": "销号"})
    error = page.locator("#errors .error[data-status='409']")
    await expect(error).to_contain_text("still present")
    await shot(page, "alert-close-refused-409")

    # The detectors see the condition clear; the page follows the stream and then closes.
    async with site.pool.acquire() as conn:
        sensor_id = await conn.fetchval("SELECT sensor_id FROM alert WHERE id = $1", alert_id)
        current = next(a for a in (await store.open_alerts(conn, sensor_id)).values() if a.id == alert_id)
        write = store.AlertWrite(
            sensor_id=0, site_id=0, mine_id=0, region_code="", rule=current.rule, rule_version=1,
            level=Level.RED, at=datetime.now(UTC), evidence={}, explanation_en="", explanation_zh="",
            forecast_failure_at=None, retroactive=False,
        )  # fmt: skip
        await store.clear_alert(conn, current, write, close=False)
    await expect(page.locator("tr[data-event=cleared]")).to_have_count(1)
    await expect(page.locator(".alert-head .tag").first).to_have_text("条件已消除")
    await submit(page, "close", {"note": "销号"})
    await expect_stage(page, "closed")
    kinds = await page.locator("table.history tbody tr").evaluate_all("rows => rows.map(r => r.dataset.event)")
    assert kinds == ["opened", "acknowledged", "handling", "resolved", "verified", "cleared", "closed_by_hand"]
    await shot(page, "alert-closed-history")

    # The sensor's charts: displacement, velocity, and 1/v with the forecast line and interval.
    await page.goto(f"{site.base}/ui/#/mine/M1/sensor/GN01")
    for chart in ("horizontal-disp", "horizontal-vel", "horizontal-inv", "vertical-disp"):
        await expect(page.locator(f"figure[data-chart={chart}] svg")).to_be_visible()
    # The red alert is closed: no forecast line any more (the other test covers it).
    await expect(page.locator("figure[data-chart=horizontal-inv] path.line")).to_have_count(1)
    await expect(page.locator("figure[data-chart=horizontal-inv] line.extra.forecast")).to_have_count(0)
    await shot(page, "sensor-charts")
    assert site.page_errors == []


async def test_forecast_line_language_and_times(site: Site, browser: Browser) -> None:
    token = await issue_token(site.pool, role="operator", scope_kind="mine", scope_code="M1")
    await accelerating_slope(site.pool, site.settings)
    page = await site.page(browser, width=1366, height=768)
    await login(page, site.base, token)
    # A mine token lands on its mine: the monitoring room.
    await expect(page).to_have_url(re.compile(r"#/mine/M1$"))
    await expect(page.locator(".site[data-site=M1-E]")).to_have_attribute("data-level", "red")
    await expect(page.locator("tr[data-sensor=GN01]")).to_have_attribute("data-level", "red")
    await expect(page.locator(".board .alert-card")).to_have_count(2)
    await shot(page, "mine-monitoring-room-laptop")
    await page.locator("tr[data-sensor=GN01] a").click()
    inv = page.locator("figure[data-chart=horizontal-inv]")
    await expect(inv.locator("line.extra.forecast")).to_have_count(1)
    await expect(inv.locator("polygon.band")).to_have_count(1)
    await expect(inv.locator("line.marker")).to_have_count(1)
    await expect(page.locator("p.forecast[data-forecast=horizontal]")).to_contain_text("区间")
    await expect(page.locator("figure[data-chart=horizontal-vel] line.threshold")).to_have_count(4)
    await shot(page, "sensor-forecast-zh")
    # English on request, remembered across a reload; times in Asia/Shanghai whatever the
    # browser's own zone (this one runs in Europe/Berlin).
    await page.click("#lang")
    await expect(page.locator("p.forecast[data-forecast=horizontal]")).to_contain_text("interval")
    await page.reload()
    await expect(page.locator("#lang")).to_have_text("中文")
    await expect(page.locator("p.forecast[data-forecast=horizontal]")).to_contain_text("Forecast failure")
    shown = await page.evaluate("import('/ui/js/i18n.js').then(m => m.fmtTime('2026-11-01T00:00:00Z'))")
    assert shown == "2026-11-01 08:00"
    await shot(page, "sensor-forecast-en")
    # An operator may not verify: the API's 403 is shown.
    await page.locator(".alert-card[data-level=red] h3 a").click()
    await submit(page, "acknowledge")
    await expect_stage(page, "acknowledged")
    await submit(page, "handle", {"responsible_person": "Li", "measures": "m", "funds": "f", "contingency_plan": "c"})
    await submit(page, "resolve", {"note": "done"})
    await expect_stage(page, "resolved")
    await submit(page, "verify", {"note": "mine"})
    await expect(page.locator("#errors .error[data-status='403']")).to_contain_text("supervisor")
    # Logging out clears the cookie: the API no longer answers this browser.
    await page.click("#logout")
    await expect(page.locator("#token")).to_be_visible()
    assert await page.context.cookies() == []
    assert site.page_errors == []


async def test_province_sees_the_tree_change_and_supervises(site: Site, browser: Browser) -> None:
    token = await issue_token(site.pool, role="supervisor", scope_kind="region", scope_code="220000")
    page = await site.page(browser)
    await login(page, site.base, token)
    await expect(page).to_have_url(re.compile(r"#/region/220000$"))
    other = page.locator("tr[data-node='220200']")
    await expect(other).to_have_attribute("data-level", "none")
    await expect(page.locator("tr[data-node='220100']")).to_have_attribute("data-level", "none")
    await expect(page.locator("[data-stat=online-rate] .value")).to_have_text("0.0%")

    alert_id = await seed_alert(site.pool, "PZ01", Level.ORANGE, mine="M1T")
    await expect(other).to_have_attribute("data-level", "orange")
    await expect(other.locator(".lvl")).to_contain_text("橙色")
    await expect(page.locator("#flash.flashing")).to_contain_text("Tailings pond")
    assert "null" not in await page.inner_text("body")
    await expect(page.locator("tr[data-mine=M1T]")).to_be_visible()
    await shot(page, "province-tree-updated")

    # Drill down: city → county → mine → the alert, and supervise (督办) it from there.
    await other.locator("a").click()
    await page.locator("tr[data-node='220203'] a").click()
    await page.locator("tr[data-node=M1T] a").click()
    await expect(page).to_have_url(re.compile(r"#/mine/M1T$"))
    await page.locator(f".alert-card[data-alert-id='{alert_id}'] h3 a").click()
    await submit(page, "supervise", {"note": "汛前完成整改"})
    await expect(page.locator("tr[data-event=supervised]")).to_have_count(1)

    # Past its deadline: the province's overview counts it as overdue on the next poll.
    async with site.pool.acquire() as conn:
        await conn.execute("UPDATE alert_supervision SET deadline = now() - interval '1 hour'")
    await page.goto(f"{site.base}/ui/#/region/220000")
    await expect(page.locator("[data-stat=overdue-supervision] .value")).to_have_text("1")
    await expect(page.locator("tr.overdue[data-supervision]")).to_have_count(1)
    await shot(page, "province-overdue-supervision")
    # The summary is polled with If-None-Match: unchanged pictures are 304s.
    async with httpx.AsyncClient(base_url=site.base) as http:
        r = await http.get("/api/v1/summary", headers={"Authorization": f"Bearer {token}"})
        again = await http.get(
            "/api/v1/summary", headers={"Authorization": f"Bearer {token}", "If-None-Match": r.headers["etag"]}
        )
    assert again.status_code == 304
    assert site.page_errors == []


async def test_pages_are_served_safely(site: Site) -> None:
    async with httpx.AsyncClient(base_url=site.base) as http:
        root = await http.get("/")
        assert (root.status_code, root.headers["location"]) == (307, "/ui/")
        index = await http.get("/ui/")
        assert index.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in index.headers["content-security-policy"]
        js = await http.get("/ui/js/app.js")
        assert js.headers["content-type"].startswith("text/javascript")
        for path in ("/ui/../pages.py", "/ui/%2e%2e/routes/pages.py", "/ui/js/nope.js"):
            r = await http.get(path)
            assert r.status_code == 404, path
            assert r.json()["error"] == "not_found"
