"""``slopewatch ingest`` as a real process, killed with SIGKILL mid-batch and replaced."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from tests.conftest import Mosquitto, wait_for
from tests.faults.conftest import gateway, gnss_messages, keys_of, stored, stored_count

SLOPEWATCH = Path(sys.executable).with_name("slopewatch")
REPO = Path(__file__).resolve().parents[2]
VALUES_PER_MESSAGE = 15


@contextlib.asynccontextmanager
async def ingest_process(env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    """Start ``slopewatch ingest``; yield once it has subscribed; kill it if still running at the end."""
    proc = await asyncio.create_subprocess_exec(
        str(SLOPEWATCH), "ingest", env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(30):
            while not any("ingest subscribed" in line for line in lines):
                line = await proc.stderr.readline()
                if not line:
                    raise AssertionError("ingest exited before subscribing:\n" + "".join(lines))
                lines.append(line.decode(errors="replace"))
        drain = asyncio.create_task(proc.stderr.read())
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    drain.cancel()


async def test_worker_killed_mid_batch_is_replaced_without_loss(loaded_dsn: str, broker: Mosquitto) -> None:
    """The first worker holds up to a second of received, uncommitted readings when it is
    killed; the broker keeps them (never acknowledged) and gives them to the next worker
    with the same client id, with everything published meanwhile."""
    messages = gnss_messages(0, 1000)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SLOPEWATCH_")},
        # The tree under test, whatever the editable install's package list says.
        "PYTHONPATH": str(REPO),
        "DATABASE_URL": loaded_dsn,
        "MQTT_URL": broker.url,
        "SLOPEWATCH_MQTT_CLIENT_ID": f"ingest-{uuid.uuid4().hex[:8]}",
        "SLOPEWATCH_MQTT_SHARED_GROUP": "",
        "SLOPEWATCH_METRICS_PORT": "0",
        "SLOPEWATCH_BATCH_MAX_AGE_MS": "1000",
        "SLOPEWATCH_BATCH_MAX_MESSAGES": "500",
    }
    async with gateway(broker.target) as gw:
        async with ingest_process(env) as first:
            sending = asyncio.create_task(gw.send(messages, per_s=250))
            await wait_for(lambda: stored_count(loaded_dsn), within_s=20)  # committing
            await asyncio.sleep(0.5)
            first.send_signal(signal.SIGKILL)
            acknowledged_at_kill = len(gw.acknowledged)
            await first.wait()
        assert first.returncode == -signal.SIGKILL
        at_kill = await stored_count(loaded_dsn)
        # Mid-batch: the broker had readings the worker had not committed.
        assert at_kill < acknowledged_at_kill * VALUES_PER_MESSAGE
        await asyncio.sleep(1.0)
        assert await stored_count(loaded_dsn) == at_kill  # a dead worker commits nothing
        async with ingest_process(env) as second:
            await sending
            started = time.monotonic()
            await wait_for(lambda: _all_stored(loaded_dsn, 1000), within_s=30)
            second.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(second.wait(), 15) == 0  # a clean stop
        print(
            f"ingest SIGKILL: acknowledged_at_kill={acknowledged_at_kill} stored_values_at_kill={at_kill} "
            f"catch_up_s={time.monotonic() - started:.1f}"
        )
    rows, keys = await stored(loaded_dsn)
    assert len(gw.acknowledged) == 1000
    assert keys == keys_of(messages)
    assert rows == len(keys) == 1000 * VALUES_PER_MESSAGE


async def _all_stored(dsn: str, messages: int) -> bool:
    return await stored_count(dsn) == messages * VALUES_PER_MESSAGE
