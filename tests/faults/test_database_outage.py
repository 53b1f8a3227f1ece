"""The database unreachable for a minute while readings keep coming (the suite's one long test)."""

from __future__ import annotations

import asyncio
import time

from core.settings import Settings
from tests.conftest import Mosquitto, wait_for
from tests.faults.conftest import (
    gateway,
    gnss_messages,
    keys_of,
    running_ingest,
    stored,
    stored_count,
)
from tests.support.proxy import database_proxy, proxied_dsn

OUTAGE_S = 60.0
VALUES_PER_MESSAGE = 15


async def test_a_minute_without_the_database_loses_nothing_and_commits_nothing_early(
    loaded_dsn: str, fault_settings: Settings, broker: Mosquitto
) -> None:
    """Ingest holds at most two batches (the one it retries and the next, 2 x 200 messages)
    and reads no further; the broker keeps the other 1,100 or more published during the outage (beyond its 1,000
    in-flight window, in its queue). Afterwards everything is stored exactly once and
    nothing was redelivered: no acknowledgement was lost or sent early."""
    before, during, after = gnss_messages(0, 100), gnss_messages(100, 1500), gnss_messages(1600, 100)
    async with (
        database_proxy(loaded_dsn) as db_link,
        running_ingest(proxied_dsn(loaded_dsn, db_link), fault_settings, broker.target) as ingest,
        gateway(broker.target) as gw,
    ):
        await gw.send(before)
        await wait_for(lambda: ingest.stored == 100 * VALUES_PER_MESSAGE)
        db_link.cut()
        cut_at = time.monotonic()
        await gw.send(during, per_s=len(during) / (OUTAGE_S / 2))  # the first half of the outage
        await wait_for(lambda: ingest.sample("slopewatch_ingest_db_errors_total") >= 1)
        held = ingest.received - 100
        await asyncio.sleep(max(0.0, cut_at + OUTAGE_S - time.monotonic()))
        assert await stored_count(loaded_dsn) == 100 * VALUES_PER_MESSAGE
        assert ingest.received - 100 == held  # backpressure: no reading past the held batch
        # The batch whose write failed, and the next one, filled while the first was retried.
        assert fault_settings.batch_max_messages <= held <= 2 * fault_settings.batch_max_messages
        await db_link.restore()
        recovered_at = time.monotonic()
        await gw.send(after)
        await wait_for(lambda: ingest.stored == 1700 * VALUES_PER_MESSAGE, within_s=60)
        recovery_s = time.monotonic() - recovered_at
    rows, keys = await stored(loaded_dsn)
    assert keys == keys_of(before + during + after)
    assert rows == len(keys) == 1700 * VALUES_PER_MESSAGE
    assert ingest.received == 1700
    assert ingest.duplicates == 0
    # Backoff is capped at 10 s with full jitter: the first retry after the outage comes within it.
    assert recovery_s < 10.0 + 15.0, recovery_s
    print(f"database outage: held_messages={held} recovery_s={recovery_s:.1f}")
