"""Alert rows written by the analysis worker: one open alert per sensor and rule, every
change an append-only event."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from core.model import Level
from db.pool import Conn


@dataclass(frozen=True, slots=True)
class OpenAlert:
    id: int
    rule: str
    level: Level
    peak_level: Level
    active: bool
    opened_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Pending:
    level: Level | None
    since: datetime | None


@dataclass(frozen=True, slots=True)
class Subject:
    """What alerts belong to: a sensor, or (``sensor_id`` None) a subject of a mine that no
    single sensor carries: ``facility:<code>`` (the GB 39496 roll-up), ``mine`` (its
    monitoring is offline), ``analysis`` (the watchdog), ``ingest`` (health.ingest_workers)."""

    site_id: int
    mine_id: int
    region_code: str
    sensor_id: int | None = None
    subject: str | None = None

    def __post_init__(self) -> None:
        if (self.sensor_id is None) == (self.subject is None):
            raise ValueError("an alert subject is a sensor or a named subject, not both or neither")


@dataclass(frozen=True, slots=True)
class AlertWrite:
    """The content of an alert at one evaluation."""

    sensor_id: int | None
    site_id: int
    mine_id: int
    region_code: str
    rule: str
    rule_version: int
    level: Level
    at: datetime
    evidence: Mapping[str, object]
    explanation_en: str
    explanation_zh: str
    forecast_failure_at: datetime | None
    retroactive: bool
    subject: str | None = None
    #: why this evaluation happened when it is not new data (an operator's correction or
    #: re-baseline), recorded on the events it causes
    note: str | None = None
    details: Mapping[str, object] | None = None


def ts(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=UTC)


async def open_alerts(conn: Conn, sensor_id: int) -> dict[str, OpenAlert]:
    rows = await conn.fetch(
        """SELECT id, rule, level, peak_level, active, opened_at, updated_at FROM alert
           WHERE sensor_id = $1 AND state <> 'closed'""",
        sensor_id,
    )
    return _open(rows)


async def open_alerts_of(conn: Conn, s: Subject) -> dict[str, OpenAlert]:
    """The open alerts of a sensor or of a named subject, by rule."""
    if s.sensor_id is not None:
        return await open_alerts(conn, s.sensor_id)
    rows = await conn.fetch(
        """SELECT id, rule, level, peak_level, active, opened_at, updated_at FROM alert
           WHERE mine_id = $1 AND subject = $2 AND sensor_id IS NULL AND state <> 'closed'""",
        s.mine_id,
        s.subject,
    )
    return _open(rows)


def _open(rows: list[asyncpg.Record]) -> dict[str, OpenAlert]:
    return {
        r["rule"]: OpenAlert(
            r["id"], r["rule"], Level(r["level"]), Level(r["peak_level"]), r["active"], r["opened_at"], r["updated_at"]
        )
        for r in rows
    }


async def pending_states(conn: Conn, sensor_id: int) -> dict[str, Pending]:
    rows = await conn.fetch("SELECT rule, pending_level, pending_since FROM rule_state WHERE sensor_id = $1", sensor_id)
    return {
        r["rule"]: Pending(Level(r["pending_level"]) if r["pending_level"] is not None else None, r["pending_since"])
        for r in rows
    }


async def pending_states_of(conn: Conn, s: Subject) -> dict[str, Pending]:
    if s.sensor_id is not None:
        return await pending_states(conn, s.sensor_id)
    rows = await conn.fetch(
        "SELECT rule, pending_level, pending_since FROM subject_rule_state WHERE mine_id = $1 AND subject = $2",
        s.mine_id,
        s.subject,
    )
    return {
        r["rule"]: Pending(Level(r["pending_level"]) if r["pending_level"] is not None else None, r["pending_since"])
        for r in rows
    }


async def set_pending_of(conn: Conn, s: Subject, rule: str, pending: Pending) -> None:
    if s.sensor_id is not None:
        await set_pending(conn, s.sensor_id, rule, pending)
        return
    await conn.execute(
        """INSERT INTO subject_rule_state (mine_id, subject, rule, pending_level, pending_since)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (mine_id, subject, rule) DO UPDATE
               SET pending_level = EXCLUDED.pending_level, pending_since = EXCLUDED.pending_since""",
        s.mine_id,
        s.subject,
        rule,
        int(pending.level) if pending.level is not None else None,
        pending.since,
    )


async def set_pending(conn: Conn, sensor_id: int, rule: str, pending: Pending) -> None:
    await conn.execute(
        """INSERT INTO rule_state (sensor_id, rule, pending_level, pending_since) VALUES ($1, $2, $3, $4)
           ON CONFLICT (sensor_id, rule) DO UPDATE
               SET pending_level = EXCLUDED.pending_level, pending_since = EXCLUDED.pending_since""",
        sensor_id,
        rule,
        int(pending.level) if pending.level is not None else None,
        pending.since,
    )


async def open_alert(conn: Conn, w: AlertWrite) -> int:
    alert_id: int = await conn.fetchval(
        """INSERT INTO alert (sensor_id, site_id, mine_id, region_code, rule, rule_version, level, peak_level,
                              opened_at, updated_at, evidence, explanation_en, explanation_zh,
                              forecast_failure_at, retroactive, subject)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $8, $9::jsonb, $10, $11, $12, $13, $14) RETURNING id""",
        w.sensor_id,
        w.site_id,
        w.mine_id,
        w.region_code,
        w.rule,
        w.rule_version,
        int(w.level),
        w.at,
        json.dumps(w.evidence),
        w.explanation_en,
        w.explanation_zh,
        w.forecast_failure_at,
        w.retroactive,
        w.subject,
    )
    await add_event(conn, alert_id, "opened", w.level, None, w)
    return alert_id


async def update_alert(conn: Conn, alert: OpenAlert, w: AlertWrite, *, kind: str | None) -> None:
    """Refresh the alert's evidence; ``kind`` (escalated, deescalated, reactivated) records a change."""
    await conn.execute(
        """UPDATE alert SET level = $2, peak_level = greatest(peak_level, $2), active = true,
                            updated_at = greatest(updated_at, $3), evidence = $4::jsonb, explanation_en = $5,
                            explanation_zh = $6, forecast_failure_at = $7, rule_version = $8,
                            retroactive = retroactive OR $9, modified_at = now()
           WHERE id = $1""",
        alert.id,
        int(w.level),
        w.at,
        json.dumps(w.evidence),
        w.explanation_en,
        w.explanation_zh,
        w.forecast_failure_at,
        w.rule_version,
        w.retroactive,
    )
    if kind is not None:
        await add_event(conn, alert.id, kind, w.level, alert.level, w)


async def clear_alert(conn: Conn, alert: OpenAlert, w: AlertWrite, *, close: bool) -> None:
    """The condition has cleared. Low alerts close by themselves; an alert that reached
    orange or red stays open, inactive, until a person closes it."""
    await conn.execute(
        """UPDATE alert SET active = false, updated_at = greatest(updated_at, $2), modified_at = now(),
                            state = CASE WHEN $3 THEN 'closed' ELSE state END,
                            stage = CASE WHEN $3 THEN 'closed' ELSE stage END,
                            closed_at = CASE WHEN $3 THEN $2 ELSE closed_at END
           WHERE id = $1""",
        alert.id,
        w.at,
        close,
    )
    await add_event(conn, alert.id, "closed" if close else "cleared", alert.level, alert.level, w)


async def add_event(
    conn: Conn, alert_id: int, kind: str, level: Level, from_level: Level | None, w: AlertWrite
) -> None:
    await conn.execute(
        """INSERT INTO alert_event (alert_id, kind, level, from_level, at, retroactive, evidence, note, details)
           VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9::jsonb)""",
        alert_id,
        kind,
        int(level),
        int(from_level) if from_level is not None else None,
        w.at,
        w.retroactive,
        json.dumps(w.evidence),
        w.note,
        json.dumps(w.details) if w.details is not None else None,
    )
