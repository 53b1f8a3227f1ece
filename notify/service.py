"""The notifier: a long-lived task that escalates unacknowledged alerts up the ladder
(mine → county → city → province) and delivers the notifications from the outbox.

Every poll (SLOPEWATCH_NOTIFY_POLL_S) it

1. *plans*: for each open alert whose next step is due, takes the step once (db.notify.
   take_step: the step's primary key makes one notifier win, however many run), queuing
   one outbox row per target and appending the ``escalated_to_<tier>`` alert event;
2. *claims* due outbox rows (FOR UPDATE SKIP LOCKED plus a lease), applying each target's
   rate limit, and
3. *sends* each message in its own task, so a red goes out on every channel at once and a
   slow receiver holds up nobody else; the outcome is recorded, a failure retried with
   exponential backoff and jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import httpx

from core.model import Level
from core.settings import Settings
from db import notify as store
from notify import message as msg
from notify.channels import Channel, DeliveryError, EmailSender, Message, SmsSender, default_channels, log_notifications
from notify.policy import REGION_TIERS, EscalationPolicy, Tier, format_duration
from notify.ratelimit import Due, plan_target

logger = logging.getLogger(__name__)

RATE_WINDOW_S = 60.0
DIGEST_MAX = 50
MAX_IN_FLIGHT = 32
_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


@dataclass(frozen=True, slots=True)
class Outcome:
    message_id: int
    target_id: int
    notifications: tuple[int, ...]
    state: str
    error: str | None


class Notifier:
    """``run()`` until ``stop()``; ``plan()`` and ``deliver()`` are one step each (tests)."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        *,
        channels: Mapping[str, Channel] | None = None,
        email: EmailSender | None = None,
        sms: SmsSender | None = None,
        name: str | None = None,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._policy = EscalationPolicy.parse(settings.escalation)
        self._given_channels = channels
        self._email = email
        self._sms = sms
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._stopping = asyncio.Event()
        self._in_flight: set[asyncio.Task[Outcome]] = set()
        self._lease_s = 3 * settings.notify_timeout_s + 10.0
        sizes = [len(self._policy.ladder(level)) for level in (Level.BLUE, Level.YELLOW, Level.ORANGE, Level.RED)]
        self._ladder_sizes = sizes

    @property
    def policy(self) -> EscalationPolicy:
        return self._policy

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        logger.info(
            "notifier started name=%s poll_s=%.1f escalation=%s", self.name, self._settings.notify_poll_s,
            self._policy.describe(),
        )  # fmt: skip
        async with contextlib.AsyncExitStack() as stack:
            channels = self._given_channels
            if channels is None:
                client = await stack.enter_async_context(httpx.AsyncClient(follow_redirects=False))
                channels = self._make_channels(client)
            async with asyncio.TaskGroup() as tg:
                while not self._stopping.is_set():
                    try:
                        await self.plan()
                        for message in await self._claim(limit=MAX_IN_FLIGHT - len(self._in_flight)):
                            task = tg.create_task(self._send(channels, message), name=f"notify-message-{message.id}")
                            self._in_flight.add(task)
                            task.add_done_callback(self._in_flight.discard)
                    except _DB_ERRORS as exc:
                        logger.error("notifier cycle failed error=%r; retrying", exc)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), timeout=self._settings.notify_poll_s)
                # the task group waits for the sends in flight: what was claimed is recorded
        logger.info("notifier stopped name=%s", self.name)

    def _make_channels(self, client: httpx.AsyncClient) -> dict[str, Channel]:
        return default_channels(client, timeout_s=self._settings.notify_timeout_s, email=self._email, sms=self._sms)

    async def plan(self, *, now: datetime | None = None) -> int:
        """Take every step of the ladder that is due; returns how many were taken."""
        async with self._pool.acquire() as conn:
            db_now, found = await store.candidates(conn, self._ladder_sizes)
            chains = await store.region_chains(conn, sorted({c.alert.region_code for c in found})) if found else {}
        at = now or db_now
        taken = 0
        for cand in found:
            waited_s = (at - cand.level_since).total_seconds()
            chain = chains.get(cand.alert.region_code, {})
            for tier, delay_s in self._policy.ladder(cand.alert.level):
                if tier.value in cand.done:
                    continue
                if waited_s < delay_s:
                    break  # delays do not decrease up the ladder
                if cand.acknowledged_at is not None and tier is not Tier.MINE:
                    break
                if await self._take(cand, tier, delay_s, waited_s, chain):
                    taken += 1
        return taken

    async def _take(
        self,
        cand: store.Candidate,
        tier: Tier,
        delay_s: float,
        waited_s: float,
        chain: Mapping[str, tuple[str, str]],
    ) -> bool:
        alert = cand.alert
        region = chain.get(tier.value) if tier is not Tier.MINE else None
        if tier in REGION_TIERS and region is None:
            return False  # the mine's region has no such level above it
        region_code, region_name = region if region is not None else (None, None)
        payload = msg.build_payload(
            alert,
            tier=tier,
            region_code=region_code,
            region_name=region_name,
            unacknowledged_s=None if tier is Tier.MINE else round(waited_s, 1),
        )
        if tier is Tier.MINE:
            event_kind = None
            note = ""
            details: dict[str, object] = {}
        else:
            event_kind = f"escalated_to_{tier.value}"
            note = (
                f"unacknowledged for {format_duration(round(waited_s))} "
                f"(policy {format_duration(delay_s)}): {tier.value} {region_code} {region_name} notified"
            )
            details = {"tier": tier.value, "region_code": region_code, "region_name": region_name,
                       "policy_s": delay_s, "unacknowledged_s": round(waited_s, 1)}  # fmt: skip
        async with self._pool.acquire() as conn:
            step = await store.take_step(
                conn,
                alert_id=alert.id,
                level=alert.level,
                tier=tier.value,
                level_since=cand.level_since,
                region_code=region_code,
                scope_kind="mine" if tier is Tier.MINE else "region",
                scope_code=alert.mine_code if tier is Tier.MINE else str(region_code),
                payload=payload,
                event_kind=event_kind,
                event_note=note,
                event_details=details,
            )
        if step is None:
            return False
        logger.info(
            "notify step alert=%d level=%s tier=%s region=%s targets=%d",
            alert.id, alert.level.label, tier.value, region_code or alert.mine_code, len(step.targets),
        )  # fmt: skip
        if not step.targets:
            # Nobody configured: the log is the channel of last resort, never silence.
            where = f"{tier.value} {region_code or alert.mine_code}"
            log_notifications([payload], to=f"{where} (no notification target configured)")
        return True

    async def _claim(self, *, limit: int, only_id: int | None = None) -> list[Message]:
        if limit <= 0:
            return []
        out: list[Message] = []
        async with self._pool.acquire() as conn, conn.transaction():
            due = await store.lock_due(conn, limit=limit, only_id=only_id)
            if not due:
                return []
            targets = await store.lock_targets(conn, [d.target_id for d in due], window_s=RATE_WINDOW_S)
            by_target: dict[int, list[store.DueRow]] = defaultdict(list)
            for d in due:
                by_target[d.target_id].append(d)
            for target_id, rows in by_target.items():
                target, recent = targets[target_id]
                plan = plan_target(
                    [Due(r.id, r.urgent) for r in rows],
                    sent_in_window=recent.count,
                    per_minute=self._settings.notify_rate_per_minute,
                    digest_max=DIGEST_MAX,
                )
                payloads = {r.id: r.payload for r in rows}
                for ids in plan.messages:
                    message_id, _ = await store.claim(
                        conn, row_ids=ids, target_id=target_id, worker=self.name, lease_s=self._lease_s
                    )
                    notifications = tuple({**payloads[i], "notification_id": i} for i in ids)
                    chosen = [r for r in rows if r.id in ids]
                    attempt = 1 + max(r.attempts for r in chosen)
                    out.append(Message(message_id, target, notifications, any(r.urgent for r in chosen), attempt))
                if plan.held:
                    now: datetime = await conn.fetchval("SELECT now()")
                    until = (recent.oldest or now) + timedelta(seconds=RATE_WINDOW_S)
                    await store.defer(conn, plan.held, max(until, now + timedelta(seconds=0.5)))
                    logger.info(
                        "notify rate limit target=%d held=%d until=%s", target_id, len(plan.held), until.isoformat()
                    )
        return out

    async def _send(self, channels: Mapping[str, Channel], message: Message) -> Outcome:
        ids = tuple(int(n["notification_id"]) for n in message.notifications)
        error: str | None = None
        channel = channels.get(message.target.channel)
        try:
            if channel is None:
                raise DeliveryError(f"no channel {message.target.channel!r} is configured in this notifier")
            await channel.send(message)
        except DeliveryError as exc:
            error = str(exc) or type(exc).__name__
        exponent = min(message.attempt - 1, 30)
        retry_s = min(self._settings.notify_retry_max_s, self._settings.notify_retry_base_s * 2**exponent)
        retry_s *= random.uniform(0.8, 1.2)  # jitter: notifiers that failed together do not retry together
        state = "unknown"
        for delay in (0.5, 1.0, 2.0, 4.0, None):
            try:
                async with self._pool.acquire() as conn:
                    state = await store.finish(
                        conn,
                        message_id=message.id,
                        worker=self.name,
                        error=error,
                        retry_in_s=retry_s,
                        give_up_s=self._settings.notify_give_up_s,
                    )
                break
            except _DB_ERRORS as exc:
                if delay is None:
                    # the lease runs out and another notifier (or this one) sends it again
                    logger.error("notify could not record outcome message=%d error=%r", message.id, exc)
                    break
                await asyncio.sleep(delay)
        log = logger.info if error is None else (logger.error if state == "failed" else logger.warning)
        log(
            "notify send message=%d target=%d channel=%s notifications=%s urgent=%s state=%s error=%s",
            message.id, message.target.id, message.target.channel, list(ids), message.urgent, state, error,
        )  # fmt: skip
        return Outcome(message.id, message.target.id, ids, state, error)

    async def deliver(self, *, only_id: int | None = None) -> list[Outcome]:
        """Claim what is due and send it all, concurrently; returns when every send is recorded."""
        async with contextlib.AsyncExitStack() as stack:
            channels = self._given_channels
            if channels is None:
                client = await stack.enter_async_context(httpx.AsyncClient(follow_redirects=False))
                channels = self._make_channels(client)
            messages = await self._claim(limit=MAX_IN_FLIGHT, only_id=only_id)
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(self._send(channels, m)) for m in messages]
        return [t.result() for t in tasks]


async def run_notifier(
    pool: asyncpg.Pool,
    settings: Settings,
    stop_event: asyncio.Event,
    *,
    channels: Mapping[str, Channel] | None = None,
) -> None:
    """Run a notifier until ``stop_event`` is set."""
    notifier = Notifier(settings, pool, channels=channels)

    async def watch() -> None:
        await stop_event.wait()
        notifier.stop()

    async with asyncio.TaskGroup() as tg:
        tg.create_task(watch(), name="notify-stop")
        tg.create_task(notifier.run(), name="notify")
