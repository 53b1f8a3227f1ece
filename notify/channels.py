"""Pluggable channels. A channel sends one message (one notification, or a digest of
several) to one target and raises DeliveryError when it could not; the notifier retries.

Webhooks are real (signed HTTP POST). E-mail and SMS are interfaces (EmailSender,
SmsSender) with logging implementations; a deployment plugs in its SMTP relay or SMS
gateway by implementing the one method.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from core.model import Level
from db.notify import Target
from notify import message as msg
from notify.signing import SIGNATURE_HEADER, sign

logger = logging.getLogger(__name__)

CHANNELS = ("webhook", "email", "sms", "log")


class DeliveryError(Exception):
    """A send that did not succeed; ``status`` is the HTTP status where there was one."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Message:
    """What one send carries: ``id`` is stable for the attempt, each notification has its own
    ``notification_id`` (stable across retries: receivers de-duplicate on it)."""

    id: int
    target: Target
    notifications: tuple[Mapping[str, Any], ...]
    urgent: bool
    #: 1 for the first try of its oldest notification, then 2, 3 …
    attempt: int = 1


class Channel(Protocol):
    async def send(self, message: Message) -> None: ...


class EmailSender(Protocol):
    async def send_email(self, to: str, subject: str, text: str) -> None: ...


class SmsSender(Protocol):
    async def send_sms(self, to: str, text: str) -> None: ...


class LoggingEmailSender:
    """Logs each e-mail instead of sending it (development, demo, or until a relay is set up)."""

    async def send_email(self, to: str, subject: str, text: str) -> None:
        logger.warning("e-mail (logged, not sent) to=%s subject=%r text=%r", to, subject, text)


class LoggingSmsSender:
    async def send_sms(self, to: str, text: str) -> None:
        logger.warning("SMS (logged, not sent) to=%s text=%r", to, text)


class WebhookChannel:
    """POST the JSON body, signed with the target's secret; any 2xx is success."""

    def __init__(self, client: httpx.AsyncClient, *, timeout_s: float) -> None:
        self._client = client
        self._timeout_s = timeout_s

    async def send(self, message: Message) -> None:
        secret = message.target.secret
        if secret is None:
            raise DeliveryError(f"webhook target {message.target.id} has no secret")
        now = datetime.now(UTC)
        body = msg.body(message.notifications, message_id=message.id, sent_at=now)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "slopewatch-notify/1",
            SIGNATURE_HEADER: sign(secret, int(time.time()), body),
            "X-Slopewatch-Message": str(message.id),
            "X-Slopewatch-Attempt": str(message.attempt),
        }
        try:
            response = await self._client.post(
                message.target.address, content=body, headers=headers, timeout=self._timeout_s
            )
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
        if not 200 <= response.status_code < 300:
            raise DeliveryError(f"HTTP {response.status_code}", status=response.status_code)


class EmailChannel:
    def __init__(self, sender: EmailSender) -> None:
        self._sender = sender

    async def send(self, message: Message) -> None:
        subject, text = msg.text_of(message.notifications)
        await self._sender.send_email(message.target.address, subject, text)


class SmsChannel:
    def __init__(self, sender: SmsSender) -> None:
        self._sender = sender

    async def send(self, message: Message) -> None:
        _, text = msg.text_of(message.notifications)
        await self._sender.send_sms(message.target.address, text)


class LogChannel:
    """Writes the notification to the log: the channel of last resort, and the demo's."""

    async def send(self, message: Message) -> None:
        log_notifications(message.notifications, to=f"target {message.target.id}")


def log_notifications(notifications: Sequence[Mapping[str, Any]], *, to: str) -> None:
    for n in notifications:
        level = logging.WARNING if n.get("level") == Level.RED.label else logging.INFO
        logger.log(level, "notification (log channel) to=%s %s", to, str(n.get("text", "")).replace("\n", " | "))


def default_channels(
    client: httpx.AsyncClient,
    *,
    timeout_s: float,
    email: EmailSender | None = None,
    sms: SmsSender | None = None,
) -> dict[str, Channel]:
    return {
        "webhook": WebhookChannel(client, timeout_s=timeout_s),
        "email": EmailChannel(email or LoggingEmailSender()),
        "sms": SmsChannel(sms or LoggingSmsSender()),
        "log": LogChannel(),
    }
