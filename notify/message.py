"""What a notification says: the JSON payload every channel carries and the short text for
e-mail and SMS. Pure: no I/O."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from core.model import Level
from db.notify import AlertInfo
from notify.policy import Tier, format_duration

#: Version of the webhook body; a receiver can refuse versions it does not know.
BODY_VERSION = 1


def build_payload(
    alert: AlertInfo,
    *,
    tier: Tier,
    region_code: str | None,
    region_name: str | None,
    unacknowledged_s: float | None,
) -> dict[str, Any]:
    """The notification for one step of the ladder. A red one carries the evacuation order."""
    red = alert.level is Level.RED
    evacuation = alert.evacuation if red else None
    if alert.sensor_code is not None:
        where = f"{alert.mine_name} ({alert.mine_code}) / {alert.site_name} / {alert.sensor_code}"
    else:
        where = f"{alert.mine_name} ({alert.mine_code}) / {alert.subject}"
    head = f"[{alert.level.label_zh} {alert.level.label}]"
    if tier is Tier.MINE:
        kind, reason = "alert", "reached"
        subject = f"{head} {where}"
    else:
        kind, reason = "escalation", "unacknowledged"
        waited = format_duration(unacknowledged_s or 0.0)
        subject = f"{head} unacknowledged for {waited}, escalated to {tier} {region_code or ''}: {where}".replace(
            "  ", " "
        )
    lines = [subject, alert.explanation_zh, alert.explanation_en]
    if evacuation:
        lines.insert(1, f"停产撤人 EVACUATE: {evacuation}")
    return {
        "kind": kind,
        "reason": reason,
        "tier": tier.value,
        "region_code": region_code,
        "region_name": region_name,
        "level": alert.level.label,
        "level_zh": alert.level.label_zh,
        "unacknowledged_s": unacknowledged_s,
        "evacuation": evacuation,
        "alert": {
            "id": alert.id,
            "level": alert.level.label,
            "rule": alert.rule,
            "stage": alert.stage,
            "mine_code": alert.mine_code,
            "mine_name": alert.mine_name,
            "region_code": alert.region_code,
            "site_code": alert.site_code,
            "sensor_code": alert.sensor_code,
            "subject": alert.subject,
            "opened_at": alert.opened_at.isoformat(),
            "explanation_en": alert.explanation_en,
            "explanation_zh": alert.explanation_zh,
        },
        "subject": subject,
        "text": "\n".join(line for line in lines if line),
    }


def probe_payload(target_id: int, note: str) -> dict[str, Any]:
    subject = f"Slopewatch test notification for target {target_id}"
    return {
        "kind": "test",
        "reason": "test",
        "tier": "test",
        "level": "blue",
        "evacuation": None,
        "subject": subject,
        "text": f"{subject}. {note}".strip(),
    }


def body(notifications: Sequence[Mapping[str, Any]], *, message_id: int, sent_at: datetime) -> bytes:
    """The webhook body: every message carries a list; a digest carries several."""
    doc = {
        "version": BODY_VERSION,
        "message_id": message_id,
        "sent_at": sent_at.isoformat(),
        "digest": len(notifications) > 1,
        "notifications": list(notifications),
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def text_of(notifications: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """(subject, text) for e-mail and SMS; a digest lists each notification's subject."""
    if len(notifications) == 1:
        only = notifications[0]
        return str(only["subject"]), str(only["text"])
    subject = f"Slopewatch digest: {len(notifications)} notifications"
    return subject, "\n\n".join(str(n["text"]) for n in notifications)
