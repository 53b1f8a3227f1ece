"""Links cut by a TCP fault proxy: between ingest and the broker, and between ingest and
the database; redelivered, duplicated and reordered messages after a reconnect."""

from __future__ import annotations

import asyncio
import random

from core.settings import Settings
from tests.conftest import Mosquitto, wait_for
from tests.faults.conftest import (
    assert_redeliveries_not_stored_twice,
    gateway,
    gnss_messages,
    keys_of,
    running_ingest,
    stored,
    stored_count,
)
from tests.support.proxy import database_proxy, proxied_dsn, running_proxy

VALUES_PER_MESSAGE = 5 * 3  # five GNSS readings of three channels


async def test_unacknowledged_messages_redelivered_after_a_broker_link_cut_are_stored_once(
    loaded_dsn: str, fault_settings: Settings, broker: Mosquitto
) -> None:
    """The cut comes while ingest holds 50 received, uncommitted messages: it commits them on
    losing the link, the broker redelivers all 50 (their PUBACKs were never sent) and every
    redelivered value is counted as a duplicate, not stored again."""
    held = fault_settings.with_(batch_max_age_ms=60_000, batch_max_messages=500)
    first = gnss_messages(0, 50)
    later = gnss_messages(50, 10)
    async with (
        running_proxy(port=broker.port) as link,
        running_ingest(loaded_dsn, held, link.mqtt_target) as ingest,
        gateway(broker.target) as gw,
    ):
        await gw.send(first)
        await wait_for(lambda: ingest.received == 50)
        assert await stored_count(loaded_dsn) == 0  # received, not committed, not acknowledged
        link.cut()
        await wait_for(lambda: stored_count(loaded_dsn), within_s=10)
        assert await stored_count(loaded_dsn) == 50 * VALUES_PER_MESSAGE
        await link.restore()
        await wait_for(lambda: ingest.received == 100, within_s=30)  # all 50 again
        # After the reconnect: new messages in reverse order, and one old message again.
        await gw.send([*reversed(later), first[7]])
        await wait_for(lambda: ingest.received == 111)
    rows, keys = await stored(loaded_dsn)
    assert keys == keys_of(first + later)
    assert rows == len(keys) == 60 * VALUES_PER_MESSAGE
    assert ingest.stored == rows
    assert ingest.duplicates == 51 * VALUES_PER_MESSAGE  # 50 redelivered, 1 resent by the gateway


async def test_broker_link_cut_three_times_mid_stream_loses_nothing(
    loaded_dsn: str, fault_settings: Settings, broker: Mosquitto
) -> None:
    messages = gnss_messages(0, 600)
    async with (
        running_proxy(port=broker.port) as link,
        running_ingest(loaded_dsn, fault_settings, link.mqtt_target) as ingest,
        gateway(broker.target) as gw,
    ):
        sending = asyncio.create_task(gw.send(messages, per_s=300))
        for _ in range(3):
            await asyncio.sleep(0.4)
            link.cut()
            await asyncio.sleep(random.uniform(0.2, 0.8))
            await link.restore()
        await sending
        await wait_for(lambda: ingest.stored == 600 * VALUES_PER_MESSAGE, within_s=30)
    rows, keys = await stored(loaded_dsn)
    assert len(gw.acknowledged) == 600
    assert keys == keys_of(messages)
    assert rows == len(keys)
    # What was in flight at a cut came again: counted as duplicates, never stored twice.
    assert_redeliveries_not_stored_twice(ingest, 600, VALUES_PER_MESSAGE)


async def test_database_link_cut_three_times_mid_stream_loses_nothing(
    loaded_dsn: str, fault_settings: Settings, broker: Mosquitto
) -> None:
    messages = gnss_messages(0, 600)
    async with (
        database_proxy(loaded_dsn) as db_link,
        running_ingest(proxied_dsn(loaded_dsn, db_link), fault_settings, broker.target) as ingest,
        gateway(broker.target) as gw,
    ):
        sending = asyncio.create_task(gw.send(messages, per_s=300))
        for _ in range(3):
            await asyncio.sleep(0.4)
            db_link.cut()
            await asyncio.sleep(random.uniform(0.5, 1.5))
            await db_link.restore()
        await sending
        await wait_for(lambda: ingest.stored == 600 * VALUES_PER_MESSAGE, within_s=40)
        db_errors = ingest.sample("slopewatch_ingest_db_errors_total")
    rows, keys = await stored(loaded_dsn)
    assert keys == keys_of(messages)
    assert rows == len(keys) == 600 * VALUES_PER_MESSAGE
    assert ingest.received == 600  # the broker link held: nothing was redelivered
    assert ingest.duplicates == 0
    assert db_errors >= 1


async def test_a_silent_database_partition_does_not_hang_ingest(
    loaded_dsn: str, fault_settings: Settings, broker: Mosquitto
) -> None:
    """Packets dropped without a reset: the open connection and new ones hang. Ingest must
    give up on the write, retry, and store everything once the partition heals."""
    messages = gnss_messages(0, 300)
    quick = fault_settings.with_(db_write_timeout_s=2.0)
    async with (
        database_proxy(loaded_dsn) as db_link,
        running_ingest(proxied_dsn(loaded_dsn, db_link), quick, broker.target) as ingest,
        gateway(broker.target) as gw,
    ):
        await gw.send(messages[:100])
        await wait_for(lambda: ingest.stored == 100 * VALUES_PER_MESSAGE)
        db_link.freeze()
        await gw.send(messages[100:200])
        await asyncio.sleep(3.0)
        await db_link.restore()  # new connections work; the frozen one stays dead
        await gw.send(messages[200:])
        await wait_for(lambda: ingest.stored == 300 * VALUES_PER_MESSAGE, within_s=40)
        abandoned = ingest.sample("slopewatch_ingest_db_errors_total")
    assert abandoned >= 1  # the write on the dead connection timed out and was retried
    rows, keys = await stored(loaded_dsn)
    assert keys == keys_of(messages)
    assert rows == len(keys)
