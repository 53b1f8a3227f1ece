"""Escalation and delivery against a real PostgreSQL and a real HTTP receiver on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from core.model import Level
from core.settings import Settings
from db import alerts as store
from db import notify as notify_store
from db.handling import Actor, apply_step
from db.pool import Conn, open_pool
from notify import Notifier
from notify.receiver import Received, WebhookReceiver
from tests.conftest import wait_for

T0 = datetime.fromisoformat("2024-06-01T00:00:00+00:00")
EVACUATION = "停产撤人: evacuate the east bench"
SECRET_COUNTY = "whsec_county_secret"
SECRET_CITY = "whsec_city_secret"
SECRET_MINE = "whsec_mine_secret"


def fast(settings: Settings, **changes: Any) -> Settings:
    base: dict[str, Any] = {
        "notify_poll_s": 0.05,
        "notify_retry_base_s": 0.2,
        "notify_retry_max_s": 0.4,
        "notify_timeout_s": 2.0,
        "notify_rate_per_minute": 100,
    }
    return settings.with_(**(base | changes))


@pytest.fixture
async def pool(loaded_dsn: str, settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    async with open_pool(loaded_dsn, settings) as p:
        yield p


def _write(row: asyncpg.Record, rule: str, level: Level) -> store.AlertWrite:
    return store.AlertWrite(
        sensor_id=row["id"],
        site_id=row["site_id"],
        mine_id=row["mine_id"],
        region_code=row["region_code"],
        rule=rule,
        rule_version=1,
        level=level,
        at=T0,
        evidence={"value": 1.0},
        explanation_en=f"test {rule}",
        explanation_zh="测试",
        forecast_failure_at=None,
        retroactive=False,
    )


async def _sensor(conn: Conn, code: str = "GN01", mine: str = "M1") -> asyncpg.Record:
    row = await conn.fetchrow(
        """SELECT s.id, s.site_id, s.mine_id, m.region_code FROM sensor s JOIN mine m ON m.id = s.mine_id
           WHERE s.code = $1 AND m.code = $2""",
        code,
        mine,
    )
    assert row is not None
    return row


async def open_alert(pool: asyncpg.Pool, level: Level, *, rule: str = "threshold.test") -> int:
    async with pool.acquire() as conn:
        return await store.open_alert(conn, _write(await _sensor(conn), rule, level))


async def raise_alert(pool: asyncpg.Pool, alert_id: int, level: Level, *, rule: str = "threshold.test") -> None:
    async with pool.acquire() as conn:
        current = (await store.open_alerts(conn, (await _sensor(conn))["id"]))[rule]
        assert current.id == alert_id
        await store.update_alert(conn, current, _write(await _sensor(conn), rule, level), kind="escalated")


async def add_target(
    pool: asyncpg.Pool, scope: str, channel: str, address: str = "", *, secret: str | None = None
) -> int:
    async with pool.acquire() as conn:
        t = await notify_store.add_target(
            conn,
            scope_kind="region" if scope.isdigit() else "mine",
            scope_code=scope,
            channel=channel,
            address=address,
            secret=secret,
            min_level=Level.BLUE,
            name=f"{scope} {channel}",
        )
    return t.id


async def level_since(pool: asyncpg.Pool, alert_id: int, kind: str = "opened") -> datetime:
    async with pool.acquire() as conn:
        at: datetime = await conn.fetchval(
            "SELECT recorded_at FROM alert_event WHERE alert_id = $1 AND kind = $2", alert_id, kind
        )
    return at


async def events(pool: asyncpg.Pool, alert_id: int) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await conn.fetch(
            "SELECT kind, level, actor, recorded_at, details::text AS details FROM alert_event WHERE alert_id = $1 "
            "ORDER BY id",
            alert_id,
        )


async def outbox_states(pool: asyncpg.Pool) -> list[str]:
    async with pool.acquire() as conn:
        return [r["state"] for r in await conn.fetch("SELECT state FROM notify_outbox ORDER BY id")]


def signature_ok(item: Received, secret: str) -> bool:
    """Checked here independently of notify.signing: t=<unix>,v1=hex(HMAC-SHA256(secret, t + '.' + body))."""
    fields = dict(part.split("=", 1) for part in item.headers["x-slopewatch-signature"].split(","))
    mac = hmac.new(secret.encode(), fields["t"].encode() + b"." + item.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, fields["v1"]) and abs(time.time() - int(fields["t"])) < 60


def notification_ids(items: list[Received]) -> list[int]:
    return [n["notification_id"] for item in items for n in item.json()["notifications"]]


@contextlib.asynccontextmanager
async def running(*notifiers: Notifier) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(n.run(), name=f"notifier-{n.name}") for n in notifiers]
    try:
        yield
    finally:
        for n in notifiers:
            n.stop()
        await asyncio.gather(*tasks)


async def test_unacknowledged_red_climbs_county_then_city_with_signed_webhooks(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    s = fast(settings, escalation="red:county=1s,city=2s,province=1h")
    async with WebhookReceiver(secret=SECRET_COUNTY) as county, WebhookReceiver(secret=SECRET_CITY) as city:
        await add_target(pool, "220102", "webhook", county.url, secret=SECRET_COUNTY)
        await add_target(pool, "220100", "webhook", city.url, secret=SECRET_CITY)
        await add_target(pool, "220000", "webhook", county.url, secret=SECRET_COUNTY)
        async with running(Notifier(s, pool)):
            alert = await open_alert(pool, Level.RED)
            await wait_for(lambda: len(city.received) == 1, within_s=10)
            await asyncio.sleep(0.3)  # nothing more may come
        since = await level_since(pool, alert)
        history = await events(pool, alert)
        assert [(e["kind"], e["actor"]) for e in history] == [
            ("opened", None),
            ("escalated_to_county", "escalation"),
            ("escalated_to_city", "escalation"),
        ]
        county_after = (history[1]["recorded_at"] - since).total_seconds()
        city_after = (history[2]["recorded_at"] - since).total_seconds()
        assert 1.0 <= county_after < 2.0  # policy 1 s, polled every 0.05 s
        assert 2.0 <= city_after < 3.0
        county_details = json.loads(history[1]["details"])
        assert county_details["region_code"] == "220102"
        assert county_details["targets"] == [{"id": 1, "channel": "webhook", "name": "220102 webhook"}]
        assert json.loads(history[2]["details"])["targets"] == [
            {"id": 2, "channel": "webhook", "name": "220100 webhook"}
        ]
        # each receiver got exactly its one step, signed with its own secret
        assert [len(county.received), len(city.received)] == [1, 1]
        for receiver, secret, tier, region in (
            (county, SECRET_COUNTY, "county", "220102"),
            (city, SECRET_CITY, "city", "220100"),
        ):
            item = receiver.received[0]
            assert item.verified is True
            assert signature_ok(item, secret)
            assert not signature_ok(item, "whsec_wrong")
            doc = item.json()
            assert (doc["version"], doc["digest"], len(doc["notifications"])) == (1, False, 1)
            n = doc["notifications"][0]
            assert (n["kind"], n["tier"], n["region_code"], n["level"]) == ("escalation", tier, region, "red")
            assert n["alert"]["id"] == alert
            assert n["evacuation"] == EVACUATION
        assert await outbox_states(pool) == ["sent", "sent"]


async def test_escalation_times_follow_the_policy_and_acknowledging_stops_it(
    pool: asyncpg.Pool, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(fast(settings), pool)  # default policy: red county 5m, city 15m
    alert = await open_alert(pool, Level.RED)
    since = await level_since(pool, alert)
    with caplog.at_level(logging.INFO, logger="notify"):
        assert await notifier.plan(now=since + timedelta(seconds=1)) == 1  # the mine step, at once
    logged = [r.getMessage() for r in caplog.records if "no notification target configured" in r.getMessage()]
    assert len(logged) == 1
    assert logged[0].startswith(
        "notification (log channel) to=mine M1 (no notification target configured) [红色(警报) red]"
    )
    assert "停产撤人 EVACUATE: 停产撤人: evacuate the east bench" in logged[0]
    assert await notifier.plan(now=since + timedelta(minutes=4, seconds=59)) == 0
    assert await notifier.plan(now=since + timedelta(minutes=5)) == 1
    assert await notifier.plan(now=since + timedelta(minutes=5, seconds=1)) == 0  # taken once
    async with pool.acquire() as conn:
        await apply_step(conn, alert, "acknowledge", Actor("duty officer", None), note="seen")
    assert await notifier.plan(now=since + timedelta(hours=2)) == 0
    assert [e["kind"] for e in await events(pool, alert)] == ["opened", "escalated_to_county", "acknowledged"]
    async with pool.acquire() as conn:
        steps = await conn.fetch("SELECT level, tier, region_code, targets FROM notify_step ORDER BY taken_at")
    assert [tuple(r) for r in steps] == [(4, "mine", None, 0), (4, "county", "220102", 0)]


async def test_acknowledged_alert_that_rises_to_red_still_reaches_the_mine(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    notifier = Notifier(fast(settings), pool)
    async with WebhookReceiver(secret=SECRET_MINE) as mine:
        await add_target(pool, "M1", "webhook", mine.url, secret=SECRET_MINE)
        alert = await open_alert(pool, Level.ORANGE)
        assert await notifier.plan() == 1
        async with pool.acquire() as conn:
            await apply_step(conn, alert, "acknowledge", Actor("duty officer", None), note=None)
        await raise_alert(pool, alert, Level.RED)
        since = await level_since(pool, alert, "escalated")
        assert await notifier.plan(now=since + timedelta(hours=1)) == 1  # mine only: no escalation once acknowledged
        outcomes = await notifier.deliver()
        assert sorted(o.state for o in outcomes) == ["sent", "sent"]
        levels = [item.json()["notifications"][0]["level"] for item in mine.received]
        assert sorted(levels) == ["orange", "red"]


class SlowRecorder:
    """An e-mail relay and SMS gateway that take ``delay_s`` and remember when each send began."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.calls: list[tuple[float, str, str]] = []

    async def send_email(self, to: str, subject: str, text: str) -> None:
        self.calls.append((time.monotonic(), to, text))
        await asyncio.sleep(self.delay_s)

    async def send_sms(self, to: str, text: str) -> None:
        self.calls.append((time.monotonic(), to, text))
        await asyncio.sleep(self.delay_s)


async def test_red_goes_out_on_every_mine_channel_at_once_with_the_evacuation_order(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    email, sms = SlowRecorder(0.6), SlowRecorder(0.6)
    notifier = Notifier(fast(settings, notify_rate_per_minute=1), pool, email=email, sms=sms)
    async with WebhookReceiver(secret=SECRET_MINE, delay_s=0.6) as hook:
        await add_target(pool, "M1", "webhook", hook.url, secret=SECRET_MINE)
        await add_target(pool, "M1", "email", "duty@mine.example")
        await add_target(pool, "M1", "sms", "+8613800000000")
        await add_target(pool, "220102", "sms", "+8613900000000")  # the county waits for its escalation
        alert = await open_alert(pool, Level.RED)
        assert await notifier.plan() == 1
        started = time.monotonic()
        outcomes = await notifier.deliver()
        elapsed = time.monotonic() - started
    # three channels of 0.6 s each: one after another would take 1.8 s
    assert elapsed < 1.2
    assert sorted((o.target_id, o.state) for o in outcomes) == [(1, "sent"), (2, "sent"), (3, "sent")]
    begun = [hook.received[0].at_s, email.calls[0][0], sms.calls[0][0]]
    assert max(begun) - min(begun) < 0.3
    assert [(c[1]) for c in email.calls] == ["duty@mine.example"]
    assert [(c[1]) for c in sms.calls] == ["+8613800000000"]
    for text in (email.calls[0][2], sms.calls[0][2]):
        assert text.splitlines()[1] == f"停产撤人 EVACUATE: {EVACUATION}"
    n = hook.received[0].json()["notifications"][0]
    assert (n["level"], n["tier"], n["evacuation"], n["alert"]["id"]) == ("red", "mine", EVACUATION, alert)


async def test_two_notifiers_deliver_each_notification_once(
    pool: asyncpg.Pool, loaded_dsn: str, settings: Settings
) -> None:
    s = fast(settings, escalation="red:county=0.3s,city=0.6s")
    async with WebhookReceiver(secret=SECRET_MINE) as hook, open_pool(loaded_dsn, settings) as other_pool:
        await add_target(pool, "M1", "webhook", hook.url, secret=SECRET_MINE)
        await add_target(pool, "220102", "webhook", hook.url + "?county", secret=SECRET_MINE)
        first, second = Notifier(s, pool, name="first"), Notifier(s, other_pool, name="second")
        async with running(first, second):
            alerts = [await open_alert(pool, Level.RED, rule=f"threshold.t{i}") for i in range(6)]

            async def all_done() -> bool:
                async with pool.acquire() as conn:
                    steps = await conn.fetchval("SELECT count(*) FROM notify_step")
                return steps == 18 and await outbox_states(pool) == ["sent"] * 12

            await wait_for(all_done, within_s=15)
            await asyncio.sleep(0.3)
    ids = notification_ids(hook.received)
    assert sorted(Counter(ids).values()) == [1] * 12
    assert all(item.verified for item in hook.received)
    for alert in alerts:
        kinds = [e["kind"] for e in await events(pool, alert)]
        assert kinds == ["opened", "escalated_to_county", "escalated_to_city"]
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM notify_attempt") == 12


async def test_rate_limit_folds_into_a_digest_holds_the_rest_and_never_holds_red(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    notifier = Notifier(fast(settings, notify_rate_per_minute=2), pool)
    async with WebhookReceiver(secret=SECRET_MINE) as hook:
        await add_target(pool, "M1", "webhook", hook.url, secret=SECRET_MINE)
        for i in range(5):
            await open_alert(pool, Level.YELLOW, rule=f"threshold.y{i}")
        assert await notifier.plan() == 5
        first = await notifier.deliver()
        assert [o.notifications for o in first] == [(1,), (2, 3, 4, 5)]
        docs = [item.json() for item in hook.received]
        assert [(d["digest"], len(d["notifications"])) for d in docs] == [(False, 1), (True, 4)]
        # the budget of two a minute is spent: two more wait
        for i in range(5, 7):
            await open_alert(pool, Level.YELLOW, rule=f"threshold.y{i}")
        assert await notifier.plan() == 2
        assert await notifier.deliver() == []
        async with pool.acquire() as conn:
            held = await conn.fetch(
                "SELECT id, state, rate_limited, next_attempt_at FROM notify_outbox WHERE id > 5 ORDER BY id"
            )
            oldest = await conn.fetchval("SELECT min(started_at) FROM notify_attempt")
        assert [(r["id"], r["state"], r["rate_limited"]) for r in held] == [(6, "pending", True), (7, "pending", True)]
        assert {r["next_attempt_at"] for r in held} == {oldest + timedelta(seconds=60)}
        # red is never held back
        await open_alert(pool, Level.RED, rule="threshold.red")
        assert await notifier.plan() == 1
        assert [(o.notifications, o.state) for o in await notifier.deliver()] == [((8,), "sent")]
        # a minute later (moved back rather than waited for) the held two go out
        async with pool.acquire() as conn:
            await conn.execute("UPDATE notify_attempt SET started_at = started_at - interval '61 seconds'")
            await conn.execute(
                "UPDATE notify_outbox SET next_attempt_at = next_attempt_at - interval '61 seconds' WHERE rate_limited"
            )
        assert [o.notifications for o in await notifier.deliver()] == [(6,), (7,)]
    assert sorted(notification_ids(hook.received)) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert await outbox_states(pool) == ["sent"] * 8


async def test_receiver_down_then_failing_then_up_gets_it_once(pool: asyncpg.Pool, settings: Settings) -> None:
    hook = WebhookReceiver(secret=SECRET_MINE)
    await hook.start()
    await hook.stop()  # the port is known, nothing listens: connection refused
    await add_target(pool, "M1", "webhook", hook.url, secret=SECRET_MINE)

    async def failed_attempts() -> int:
        async with pool.acquire() as conn:
            n: int = await conn.fetchval("SELECT count(*) FROM notify_attempt WHERE ok = false")
        return n

    async with running(Notifier(fast(settings), pool)):
        await open_alert(pool, Level.RED)
        await wait_for(_at_least(failed_attempts, 2), within_s=10)
        async with pool.acquire() as conn:
            row = await conn.fetchrow("SELECT state, last_error FROM notify_outbox")
        assert row is not None
        assert row["state"] == "pending"
        assert row["last_error"].startswith("ConnectError")
        # up, but answering 503
        hook.status = 503
        await hook.start()
        await wait_for(lambda: len(hook.received) >= 1, within_s=10)
        hook.status = 200
        await wait_for(lambda: _outbox_is(pool, "sent"), within_s=10)
    await hook.stop()
    async with pool.acquire() as conn:
        log = await conn.fetch("SELECT ok, error FROM notify_attempt ORDER BY id")
        row = await conn.fetchrow("SELECT attempts, last_error FROM notify_outbox")
    assert row is not None
    attempts = [r["ok"] for r in log]
    assert "HTTP 503" in [r["error"] for r in log]
    assert attempts[-1] is True
    assert attempts[:-1] == [False] * (len(attempts) - 1)
    assert len(attempts) >= 4  # at least two refused and one 503 before success
    assert (row["attempts"], row["last_error"]) == (len(attempts), None)
    ok = [item for item in hook.received if item.verified]
    # the 503 answers do not count as delivered; the same notification came again each time
    assert set(notification_ids(ok)) == {1}


def _at_least(probe: Any, n: int) -> Any:
    async def check() -> bool:
        return bool(await probe() >= n)

    return check


async def _outbox_is(pool: asyncpg.Pool, state: str) -> bool:
    return await outbox_states(pool) == [state]
