"""Notifications and escalation: unacknowledged alerts climb mine → county → city →
province after configurable times; signed webhooks, e-mail and SMS; a durable outbox
de-duplicates, rate-limits and retries. See docs/notifications.md."""

from notify.channels import (
    Channel,
    DeliveryError,
    EmailSender,
    LoggingEmailSender,
    LoggingSmsSender,
    Message,
    SmsSender,
    WebhookChannel,
)
from notify.policy import EscalationPolicy, PolicyError, Tier
from notify.service import Notifier, Outcome, run_notifier
from notify.signing import SIGNATURE_HEADER, SignatureError, new_secret, sign, verify

__all__ = [
    "SIGNATURE_HEADER",
    "Channel",
    "DeliveryError",
    "EmailSender",
    "EscalationPolicy",
    "LoggingEmailSender",
    "LoggingSmsSender",
    "Message",
    "Notifier",
    "Outcome",
    "PolicyError",
    "SignatureError",
    "SmsSender",
    "Tier",
    "WebhookChannel",
    "new_secret",
    "run_notifier",
    "sign",
    "verify",
]
