"""Ingest workers' heartbeats, and the service-level health alerts (``service_alert``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from db.pool import Conn


async def heartbeat(
    conn: Conn, *, client_id: str, shared_group: str, host: str, pid: int, started_at: datetime, heartbeat_s: float
) -> None:
    """This worker is connected and subscribed, now."""
    await conn.execute(
        """INSERT INTO ingest_worker (client_id, shared_group, host, pid, started_at, seen_at, heartbeat_s)
           VALUES ($1, $2, $3, $4, $5, now(), $6)
           ON CONFLICT (client_id) DO UPDATE
               SET shared_group = EXCLUDED.shared_group, host = EXCLUDED.host, pid = EXCLUDED.pid,
                   started_at = EXCLUDED.started_at, seen_at = now(), heartbeat_s = EXCLUDED.heartbeat_s""",
        client_id,
        shared_group,
        host,
        pid,
        started_at,
        heartbeat_s,
    )


@dataclass(frozen=True, slots=True)
class Workers:
    alive: list[str]
    silent: list[str]
    groups: list[str]


async def workers(conn: Conn, now: datetime, *, silent_for_days: float = 14.0) -> Workers:
    """Alive: heard from within three heartbeats before ``now``. Silent: heard from before
    that, within ``silent_for_days`` (mosquitto's persistent_client_expiration in deploy/:
    a session not seen for longer is gone from the group)."""
    rows = await conn.fetch(
        """SELECT client_id, shared_group, seen_at > $1::timestamptz - make_interval(secs => 3 * heartbeat_s) AS alive
           FROM ingest_worker WHERE seen_at > $1::timestamptz - make_interval(days => $2::int) ORDER BY client_id""",
        now,
        int(silent_for_days),
    )
    return Workers(
        [r["client_id"] for r in rows if r["alive"]],
        [r["client_id"] for r in rows if not r["alive"]],
        sorted({r["shared_group"] for r in rows if r["alive"]}),
    )


async def set_service_alert(
    conn: Conn, rule: str, *, ok: bool, at: datetime, evidence: Mapping[str, object], en: str, zh: str
) -> str | None:
    """Open, refresh or clear the one open alert of ``rule``; returns "opened", "cleared" or None."""
    if ok:
        status = await conn.execute(
            """UPDATE service_alert SET cleared_at = $2, updated_at = $2, evidence = $3::jsonb
               WHERE rule = $1 AND cleared_at IS NULL""",
            rule,
            at,
            json.dumps(evidence),
        )
        return "cleared" if status != "UPDATE 0" else None
    status = await conn.execute(
        """UPDATE service_alert SET updated_at = $2, evidence = $3::jsonb, explanation_en = $4, explanation_zh = $5
           WHERE rule = $1 AND cleared_at IS NULL""",
        rule,
        at,
        json.dumps(evidence),
        en,
        zh,
    )
    if status != "UPDATE 0":
        return None
    await conn.execute(
        """INSERT INTO service_alert (rule, opened_at, updated_at, evidence, explanation_en, explanation_zh)
           VALUES ($1, $2, $2, $3::jsonb, $4, $5)""",
        rule,
        at,
        json.dumps(evidence),
        en,
        zh,
    )
    return "opened"
