"""The ingest worker: MQTT in, batched database writes out, acknowledged after commit.

Guarantee: at-least-once from the broker to the database. Messages are received with
QoS 1 on a persistent session and acknowledged (PUBACK) only after the batch holding
them has been committed. If the process dies between receiving and committing, the
broker still holds the unacknowledged messages and delivers them again on reconnect;
the readings table's primary key turns the redelivery into harmless duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiomqtt
import asyncpg

from core.settings import MqttTarget, Settings
from core.wire import READINGS_FILTER, DecodeLimits
from db.ingest_workers import heartbeat
from db.readings import DeadLetter, ReadingBatch, write_batch
from ingest.accept import accept_message
from ingest.directory import SensorDirectory
from ingest.metrics import IngestMetrics

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Pending:
    batch: ReadingBatch = field(default_factory=ReadingBatch)
    dead: list[DeadLetter] = field(default_factory=list)
    mids: list[int] = field(default_factory=list)
    messages: int = 0
    first_received: float | None = None


def _observe_disconnect(client: aiomqtt.Client) -> None:
    """Retrieve why the connection dropped, if it did. aiomqtt 2.5 keeps the reason in a
    future that only its message iterator reads; when the session ended some other way
    (a stop or a timed-out subscribe racing the drop) nobody would, and asyncio would
    report "Future exception was never retrieved" when the client is collected."""
    disconnected = client._disconnected
    if disconnected.done() and not disconnected.cancelled():
        disconnected.exception()


def backoff_s(attempt: int, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Exponential backoff with full jitter (so a fleet of workers does not reconnect in step)."""
    return random.uniform(0.0, min(cap, base * 2**attempt))


class IngestService:
    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        mqtt: MqttTarget,
        metrics: IngestMetrics,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._mqtt = mqtt
        self._metrics = metrics
        self._directory = SensorDirectory(pool)
        self._limits = DecodeLimits(max_payload_bytes=settings.max_payload_bytes, max_future_s=settings.max_future_s)
        self._pending = _Pending()
        self._flush_now = asyncio.Event()
        self._swapped = asyncio.Event()
        self._stopping = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._started_at = datetime.now(UTC)
        self.connected = asyncio.Event()

    def stop(self) -> None:
        """Ask the worker to finish: stop receiving, commit and acknowledge what it holds, disconnect."""
        self._stopping.set()

    async def run(self) -> None:
        """Connect, consume and reconnect with backoff until :meth:`stop`."""
        await self._directory.load()
        attempt = 0
        while not self._stopping.is_set():
            client = self._client()
            try:
                async with client:
                    attempt = 0
                    await self._session(client)
            except* aiomqtt.MqttError as group:
                exc = group.exceptions[0]
                self._metrics.mqtt_connected.set(0)
                self.connected.clear()
                delay = backoff_s(attempt)
                attempt += 1
                logger.warning("MQTT connection lost error=%s retry_in_s=%.1f attempt=%d", exc, delay, attempt)
                await self._drain_unacked()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)
            finally:
                _observe_disconnect(client)
        logger.info("ingest stopped")

    def _client(self) -> aiomqtt.Client:
        ca_file = self._settings.mqtt_ca_file or None
        tls = ssl.create_default_context(cafile=ca_file) if self._mqtt.tls else None
        client = aiomqtt.Client(
            self._mqtt.host,
            self._mqtt.port,
            username=self._mqtt.username,
            password=self._mqtt.password,
            identifier=self._settings.mqtt_client_id,
            clean_session=False,
            keepalive=30,
            tls_context=tls,
        )
        # aiomqtt 2.5 has no public switch for manual acknowledgement; paho's is the mechanism
        # that lets a PUBACK wait for the database commit.
        client._client.manual_ack_set(True)
        return client

    async def _session(self, client: aiomqtt.Client) -> None:
        group = self._settings.mqtt_shared_group
        topic = f"$share/{group}/{READINGS_FILTER}" if group else READINGS_FILTER
        await client.subscribe(topic, qos=1)
        self._metrics.mqtt_connected.set(1)
        self._metrics.mqtt_connects.inc()
        self.connected.set()
        logger.info(
            "ingest subscribed topic=%s broker=%s:%d client_id=%s",
            topic,
            self._mqtt.host,
            self._mqtt.port,
            self._settings.mqtt_client_id,
        )
        async with asyncio.TaskGroup() as tg:
            receiver = tg.create_task(self._receive(client), name="ingest-receive")
            flusher = tg.create_task(self._flush_loop(client), name="ingest-flush")
            stopper = tg.create_task(self._stopping.wait(), name="ingest-stop-wait")
            beating = tg.create_task(self._heartbeat(), name="ingest-heartbeat")
            await asyncio.wait({receiver, flusher, stopper}, return_when=asyncio.FIRST_COMPLETED)
            receiver.cancel()
            flusher.cancel()
            stopper.cancel()
            beating.cancel()
        # Receiving has stopped: commit and acknowledge what is held before disconnecting.
        await self._flush(client)

    async def _heartbeat(self) -> None:
        """Record, while subscribed, that this worker is a live member of the shared group
        (health.ingest_workers). A failed write is logged and retried at the next beat: the
        heartbeat never holds up or stops ingest."""
        every = self._settings.ingest_heartbeat_s
        while True:
            try:
                async with asyncio.timeout(every), self._pool.acquire() as conn:
                    await heartbeat(
                        conn,
                        client_id=self._settings.mqtt_client_id,
                        shared_group=self._settings.mqtt_shared_group,
                        host=socket.gethostname(),
                        pid=os.getpid(),
                        started_at=self._started_at,
                        heartbeat_s=every,
                    )
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                logger.warning("ingest heartbeat not recorded error=%r", exc)
            await asyncio.sleep(every)

    async def _receive(self, client: aiomqtt.Client) -> None:
        settings = self._settings
        async for message in client.messages:
            payload = message.payload
            data = payload if isinstance(payload, bytes) else str(payload).encode()
            pending = self._pending
            if pending.first_received is None:
                pending.first_received = time.monotonic()
            verdict = await accept_message(
                message.topic.value.replace("\x00", "\\x00"),
                data,
                directory=self._directory,
                batch=pending.batch,
                now_us=time.time_ns() // 1000,
                limits=self._limits,
                dead_letter_max_bytes=settings.dead_letter_max_bytes,
            )
            self._metrics.messages_received.inc()
            self._metrics.readings_received.inc(verdict.readings_accepted + sum(verdict.rejected.values()))
            for reason, n in verdict.rejected.items():
                self._metrics.rejected.labels(reason.value).inc(n)
            if verdict.dead_letter is not None:
                pending.dead.append(verdict.dead_letter)
            pending.mids.append(message.mid)
            pending.messages += 1
            self._metrics.pending_messages.set(pending.messages)
            if len(pending.batch) >= settings.batch_max_rows or pending.messages >= settings.batch_max_messages:
                self._flush_now.set()
                # Backpressure: read no further while a full batch waits for the database.
                self._swapped.clear()
                await self._swapped.wait()

    async def _flush_loop(self, client: aiomqtt.Client) -> None:
        max_age = self._settings.batch_max_age_ms / 1000
        while True:
            first = self._pending.first_received
            timeout = max_age if first is None else max(0.0, first + max_age - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_now.wait(), timeout=timeout)
            self._flush_now.clear()
            if self._pending.messages:
                await self._flush(client)

    async def _flush(self, client: aiomqtt.Client | None) -> None:
        """Write the pending batch until it commits, then acknowledge its messages in order."""
        async with self._write_lock:
            pending, self._pending = self._pending, _Pending()
            self._swapped.set()
            self._metrics.pending_messages.set(0)
            if not pending.messages:
                return
            await self._write_until_committed(pending)
            if client is not None:
                for mid in pending.mids:
                    client._client.ack(mid, 1)

    async def _write_until_committed(self, pending: _Pending) -> None:
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                inserted = await self._write(pending)
                break
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self._metrics.db_errors.inc()
                delay = backoff_s(attempt, cap=10.0)
                attempt += 1
                logger.error(
                    "batch write failed rows=%d messages=%d error=%r retry_in_s=%.1f (nothing acknowledged)",
                    len(pending.batch),
                    pending.messages,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
        elapsed = time.monotonic() - started
        rows = len(pending.batch)
        self._metrics.batch_rows.observe(rows)
        self._metrics.batch_write_seconds.observe(elapsed)
        if pending.first_received is not None:
            self._metrics.commit_latency_seconds.observe(time.monotonic() - pending.first_received)
        self._metrics.readings_stored.inc(inserted)
        self._metrics.readings_duplicate.inc(rows - inserted)
        self._metrics.dead_letters.inc(len(pending.dead))
        logger.debug(
            "batch committed rows=%d new=%d messages=%d dead=%d write_s=%.3f",
            rows,
            inserted,
            pending.messages,
            len(pending.dead),
            elapsed,
        )

    async def _write(self, pending: _Pending) -> int:
        """One attempt, bounded in time. A connection whose peer vanished without a reset
        (a partition, a host that rebooted) would block a query forever; closing it makes
        the query fail at once, so the batch is retried on a fresh connection."""
        timeout = self._settings.db_write_timeout_s
        async with self._pool.acquire(timeout=timeout) as conn:
            watchdog = asyncio.get_running_loop().call_later(timeout, conn.terminate)
            try:
                return await write_batch(conn, pending.batch, pending.dead)
            finally:
                watchdog.cancel()

    async def _drain_unacked(self) -> None:
        """After a lost connection, store what was received; the broker redelivers it anyway
        (the acknowledgements died with the connection) and the duplicates are dropped."""
        if self._pending.messages:
            await self._flush(None)
