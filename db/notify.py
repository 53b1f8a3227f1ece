"""Notification targets, escalation steps and the outbox (migration 009).

The notifier takes a step of the ladder in one transaction (lock the alert, check it still
needs the step, record the step, queue one outbox row per target, append the alert event);
it claims due outbox rows with FOR UPDATE SKIP LOCKED and a lease, sends outside any
transaction, and records the outcome.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from core.model import Level
from db.pool import Conn

_TARGET_COLUMNS = "id, scope_kind, scope_code, channel, address, secret, min_level, name, created_at, removed_at"


@dataclass(frozen=True, slots=True)
class Target:
    """A recipient: a webhook URL, an e-mail address, a phone number, or the log."""

    id: int
    scope_kind: str
    scope_code: str
    channel: str
    address: str
    secret: str | None = field(repr=False)
    min_level: Level
    name: str


@dataclass(frozen=True, slots=True)
class AlertInfo:
    """An alert as a notification describes it."""

    id: int
    level: Level
    rule: str
    stage: str
    mine_code: str
    mine_name: str
    region_code: str
    site_code: str
    site_name: str
    #: None for an alert of no single sensor; then ``subject`` says what it is about
    sensor_code: str | None
    opened_at: datetime
    explanation_en: str
    explanation_zh: str
    #: the site's evacuation instruction (停产撤人) from the registry
    evacuation: str | None
    #: 'facility:<code>', 'mine', 'analysis' or 'ingest' for an alert of no single sensor
    subject: str | None = None


class TargetExists(Exception):
    """A live target with the same scope, channel and address exists already."""

    def __init__(self, existing_id: int) -> None:
        super().__init__(f"target {existing_id} has the same scope, channel and address")
        self.existing_id = existing_id


@dataclass(frozen=True, slots=True)
class TargetRow:
    target: Target
    created_at: datetime
    removed_at: datetime | None


def _target(r: asyncpg.Record) -> Target:
    return Target(
        id=r["id"],
        scope_kind=r["scope_kind"],
        scope_code=r["scope_code"],
        channel=r["channel"],
        address=r["address"],
        secret=r["secret"],
        min_level=Level(r["min_level"]),
        name=r["name"],
    )


async def add_target(
    conn: Conn,
    *,
    scope_kind: str,
    scope_code: str,
    channel: str,
    address: str,
    secret: str | None,
    min_level: Level,
    name: str,
) -> Target:
    try:
        row = await conn.fetchrow(
            f"""INSERT INTO notify_target (scope_kind, scope_code, channel, address, secret, min_level, name)
                VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_TARGET_COLUMNS}""",
            scope_kind,
            scope_code,
            channel,
            address,
            secret,
            int(min_level),
            name,
        )
    except asyncpg.UniqueViolationError as exc:
        existing: int = await conn.fetchval(
            """SELECT id FROM notify_target WHERE scope_kind = $1 AND scope_code = $2 AND channel = $3
                      AND address = $4 AND removed_at IS NULL""",
            scope_kind,
            scope_code,
            channel,
            address,
        )
        raise TargetExists(existing) from exc
    assert row is not None
    return _target(row)


async def targets(conn: Conn, *, include_removed: bool = False) -> list[TargetRow]:
    rows = await conn.fetch(
        f"SELECT {_TARGET_COLUMNS} FROM notify_target WHERE $1 OR removed_at IS NULL ORDER BY id", include_removed
    )
    return [TargetRow(_target(r), r["created_at"], r["removed_at"]) for r in rows]


async def target(conn: Conn, target_id: int) -> Target | None:
    row = await conn.fetchrow(
        f"SELECT {_TARGET_COLUMNS} FROM notify_target WHERE id = $1 AND removed_at IS NULL", target_id
    )
    return _target(row) if row is not None else None


async def remove_target(conn: Conn, target_id: int) -> int | None:
    """Mark the target removed and cancel what it still had pending; returns how many were
    cancelled, or None when there is no live target with that id."""
    async with conn.transaction():
        done = await conn.fetchval(
            "UPDATE notify_target SET removed_at = now() WHERE id = $1 AND removed_at IS NULL RETURNING id", target_id
        )
        if done is None:
            return None
        status: str = await conn.execute(
            """UPDATE notify_outbox SET state = 'cancelled', last_error = 'target removed', claimed_until = NULL
               WHERE target_id = $1 AND state = 'pending'""",
            target_id,
        )
    return int(status.split()[-1])


@dataclass(frozen=True, slots=True)
class Candidate:
    """An open alert with a step of its ladder still to take."""

    alert: AlertInfo
    #: wall-clock time the alert first reached its current level
    level_since: datetime
    acknowledged_at: datetime | None
    #: tiers already told about this alert at this level or higher
    done: frozenset[str]


async def candidates(conn: Conn, ladder_sizes: Sequence[int]) -> tuple[datetime, list[Candidate]]:
    """(database now, open alerts whose ladder is not complete). ``ladder_sizes[level - 1]``
    is the number of steps (mine included) for an alert at that level.

    A region step counts as done only if it went to a region that is still above the mine
    (the alert's region follows its mine, migration 013): after a move, the new county,
    city or province is told even if the old one was.

    An unacknowledged alert is a candidate for every step; an acknowledged one only for
    the mine step of a level it reached after the acknowledgement."""
    rows = await conn.fetch(
        """WITH a AS (
               SELECT a.*, coalesce((SELECT min(e.recorded_at) FROM alert_event e
                                     WHERE e.alert_id = a.id AND e.level >= a.level), a.created_at) AS level_since,
                      ARRAY(SELECT DISTINCT st.tier FROM notify_step st
                            WHERE st.alert_id = a.id AND st.level >= a.level
                              AND (st.region_code IS NULL OR st.region_code IN (
                                  WITH RECURSIVE up AS (
                                      SELECT r.code, r.parent_code, 0 AS depth FROM region r
                                      WHERE r.code = a.region_code
                                      UNION ALL
                                      SELECT r.code, r.parent_code, up.depth + 1 FROM region r
                                      JOIN up ON r.code = up.parent_code WHERE up.depth < 5)
                                  SELECT code FROM up))) AS done
               FROM alert a
               WHERE a.state <> 'closed' AND a.level >= 1)
           SELECT now() AS db_now, a.id, a.level, a.rule, a.stage, a.region_code, a.opened_at, a.explanation_en,
                  a.explanation_zh, a.level_since, a.acknowledged_at, a.done, m.code AS mine_code,
                  m.name AS mine_name, m.evacuation, si.code AS site_code, si.name AS site_name,
                  se.code AS sensor_code, a.subject
           FROM a
           JOIN mine m ON m.id = a.mine_id
           JOIN site si ON si.id = a.site_id
           LEFT JOIN sensor se ON se.id = a.sensor_id
           WHERE (a.acknowledged_at IS NULL AND cardinality(a.done) < ($1::int[])[a.level])
              OR (a.acknowledged_at < a.level_since AND NOT 'mine' = ANY(a.done))
           ORDER BY a.level DESC, a.id""",
        list(ladder_sizes),
    )
    now: datetime = rows[0]["db_now"] if rows else await conn.fetchval("SELECT now()")
    return now, [
        Candidate(
            alert=AlertInfo(
                id=r["id"],
                level=Level(r["level"]),
                rule=r["rule"],
                stage=r["stage"],
                mine_code=r["mine_code"],
                mine_name=r["mine_name"],
                region_code=r["region_code"],
                site_code=r["site_code"],
                site_name=r["site_name"],
                sensor_code=r["sensor_code"],
                subject=r["subject"],
                opened_at=r["opened_at"],
                explanation_en=r["explanation_en"],
                explanation_zh=r["explanation_zh"],
                evacuation=r["evacuation"],
            ),
            level_since=r["level_since"],
            acknowledged_at=r["acknowledged_at"],
            done=frozenset(r["done"]),
        )
        for r in rows
    ]


async def region_chains(conn: Conn, codes: Sequence[str]) -> dict[str, dict[str, tuple[str, str]]]:
    """For each region code: {level: (code, name)} of itself and every ancestor, following
    ``region.parent_code`` (so a county-level city under a province is handled as it is
    registered, not by code arithmetic)."""
    rows = await conn.fetch(
        """WITH RECURSIVE up AS (
               SELECT r.code AS start, r.code, r.name, r.level, r.parent_code, 0 AS depth
               FROM region r WHERE r.code = ANY($1::text[])
               UNION ALL
               SELECT up.start, r.code, r.name, r.level, r.parent_code, up.depth + 1
               FROM region r JOIN up ON r.code = up.parent_code WHERE up.depth < 5)
           SELECT start, code, name, level FROM up""",
        list(codes),
    )
    out: dict[str, dict[str, tuple[str, str]]] = {}
    for r in rows:
        out.setdefault(r["start"], {})[r["level"]] = (r["code"], r["name"])
    return out


@dataclass(frozen=True, slots=True)
class StepTaken:
    targets: tuple[Target, ...]
    outbox_ids: tuple[int, ...]


async def take_step(
    conn: Conn,
    *,
    alert_id: int,
    level: Level,
    tier: str,
    level_since: datetime,
    region_code: str | None,
    scope_kind: str,
    scope_code: str,
    payload: Mapping[str, Any],
    event_kind: str | None,
    event_note: str,
    event_details: Mapping[str, Any],
) -> StepTaken | None:
    """Take one step of the ladder, once: None if another notifier took it, or the alert no
    longer needs it (acknowledged, closed, or at another level)."""
    async with conn.transaction():
        row = await conn.fetchrow("SELECT level, state, acknowledged_at FROM alert WHERE id = $1 FOR UPDATE", alert_id)
        if row is None or row["state"] == "closed" or row["level"] != int(level):
            return None
        acked: datetime | None = row["acknowledged_at"]
        if acked is not None and (tier != "mine" or acked >= level_since):
            return None
        found = await conn.fetch(
            f"""SELECT {_TARGET_COLUMNS} FROM notify_target
                WHERE removed_at IS NULL AND scope_kind = $1 AND scope_code = $2 AND min_level <= $3 ORDER BY id""",
            scope_kind,
            scope_code,
            int(level),
        )
        taken = await conn.fetchval(
            """INSERT INTO notify_step (alert_id, level, tier, region_code, targets) VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT DO NOTHING RETURNING true""",
            alert_id,
            int(level),
            tier,
            region_code,
            len(found),
        )
        if not taken:
            return None
        chosen = tuple(_target(r) for r in found)
        ids: list[int] = []
        if chosen:
            reason = "reached" if tier == "mine" else "unacknowledged"
            inserted = await conn.fetch(
                """INSERT INTO notify_outbox (alert_id, level, tier, target_id, reason, urgent, payload)
                   SELECT $1, $2, $3, t, $4, $5, $6::jsonb FROM unnest($7::int[]) AS t
                   ON CONFLICT DO NOTHING RETURNING id""",
                alert_id,
                int(level),
                tier,
                reason,
                level is Level.RED,
                json.dumps(payload, ensure_ascii=False),
                [t.id for t in chosen],
            )
            ids = sorted(r["id"] for r in inserted)
        if event_kind is not None:
            details = {
                **event_details,
                "targets": [{"id": t.id, "channel": t.channel, "name": t.name} for t in chosen],
                "notifications": ids,
            }
            await conn.execute(
                """INSERT INTO alert_event (alert_id, kind, level, at, actor, note, details)
                   VALUES ($1, $2, $3, now(), 'escalation', $4, $5::jsonb)""",
                alert_id,
                event_kind,
                int(level),
                event_note,
                json.dumps(details, ensure_ascii=False),
            )
            await conn.execute("UPDATE alert SET modified_at = now() WHERE id = $1", alert_id)
    return StepTaken(chosen, tuple(ids))


@dataclass(frozen=True, slots=True)
class DueRow:
    id: int
    target_id: int
    urgent: bool
    attempts: int
    payload: dict[str, Any]


async def lock_due(conn: Conn, *, limit: int, only_id: int | None = None) -> list[DueRow]:
    """Due outbox rows, locked; rows another notifier holds (locked or leased) are skipped.
    Call inside a transaction."""
    rows = await conn.fetch(
        """SELECT id, target_id, urgent, attempts, payload::text AS payload FROM notify_outbox
           WHERE state = 'pending' AND next_attempt_at <= now()
             AND (claimed_until IS NULL OR claimed_until < now())
             AND ($2::bigint IS NULL OR id = $2)
           ORDER BY urgent DESC, id
           LIMIT $1
           FOR UPDATE SKIP LOCKED""",
        limit,
        only_id,
    )
    return [DueRow(r["id"], r["target_id"], r["urgent"], r["attempts"], json.loads(r["payload"])) for r in rows]


@dataclass(frozen=True, slots=True)
class RecentSends:
    count: int
    oldest: datetime | None


async def lock_targets(conn: Conn, ids: Sequence[int], *, window_s: float) -> dict[int, tuple[Target, RecentSends]]:
    """Lock the targets (in id order, so claimers never deadlock) and count their send
    attempts in the rate window; other claimers wait here, so the counts stay true."""
    rows = await conn.fetch(
        f"""SELECT {_TARGET_COLUMNS} FROM notify_target WHERE id = ANY($1::int[]) ORDER BY id FOR NO KEY UPDATE""",
        sorted(set(ids)),
    )
    sent = await conn.fetch(
        """SELECT target_id, count(*) AS n, min(started_at) AS oldest FROM notify_attempt
           WHERE target_id = ANY($1::int[]) AND started_at > now() - make_interval(secs => $2)
           GROUP BY target_id""",
        sorted(set(ids)),
        window_s,
    )
    recent = {r["target_id"]: RecentSends(r["n"], r["oldest"]) for r in sent}
    return {r["id"]: (_target(r), recent.get(r["id"], RecentSends(0, None))) for r in rows}


async def claim(
    conn: Conn, *, row_ids: Sequence[int], target_id: int, worker: str, lease_s: float
) -> tuple[int, datetime]:
    """Lease the rows to ``worker`` as one message and log the attempt; returns (message id, now)."""
    message_id: int = await conn.fetchval("SELECT nextval('notify_message_seq')")
    await conn.execute(
        """UPDATE notify_outbox SET claimed_by = $2, claimed_until = now() + make_interval(secs => $3),
                                    message_id = $4, digest = $5, attempts = attempts + 1, rate_limited = false
           WHERE id = ANY($1::bigint[])""",
        list(row_ids),
        worker,
        lease_s,
        message_id,
        len(row_ids) > 1,
    )
    started: datetime = await conn.fetchval(
        """INSERT INTO notify_attempt (message_id, target_id, notifications) VALUES ($1, $2, $3)
           RETURNING started_at""",
        message_id,
        target_id,
        len(row_ids),
    )
    return message_id, started


async def defer(conn: Conn, row_ids: Sequence[int], until: datetime) -> None:
    """Hold rows back for the rate limit (never dropped: they go out when the window frees)."""
    await conn.execute(
        "UPDATE notify_outbox SET next_attempt_at = $2, rate_limited = true WHERE id = ANY($1::bigint[])",
        list(row_ids),
        until,
    )


async def finish(
    conn: Conn,
    *,
    message_id: int,
    worker: str,
    error: str | None,
    retry_in_s: float,
    give_up_s: float,
) -> str:
    """Record the outcome of a send; returns the rows' new state (sent, pending or failed).
    A failed send is retried after ``retry_in_s`` unless the rows are older than ``give_up_s``."""
    async with conn.transaction():
        await conn.execute(
            """UPDATE notify_attempt SET finished_at = now(), ok = $2, error = $3
               WHERE id = (SELECT max(id) FROM notify_attempt WHERE message_id = $1)""",
            message_id,
            error is None,
            error,
        )
        if error is None:
            state: str | None = await conn.fetchval(
                """UPDATE notify_outbox SET state = 'sent', sent_at = now(), claimed_until = NULL, last_error = NULL
                   WHERE message_id = $1 AND claimed_by = $2 AND state = 'pending' RETURNING state""",
                message_id,
                worker,
            )
        else:
            state = await conn.fetchval(
                """UPDATE notify_outbox
                   SET state = CASE WHEN created_at < now() - make_interval(secs => $4) THEN 'failed'
                                    ELSE 'pending' END,
                       next_attempt_at = now() + make_interval(secs => $3), claimed_until = NULL, last_error = $5
                   WHERE message_id = $1 AND claimed_by = $2 AND state = 'pending' RETURNING state""",
                message_id,
                worker,
                retry_in_s,
                give_up_s,
                error,
            )
    return state or "lost-lease"


async def add_probe(conn: Conn, target_id: int, payload: Mapping[str, Any]) -> int:
    """A test notification for one target (``slopewatch notify test``)."""
    row_id: int = await conn.fetchval(
        """INSERT INTO notify_outbox (alert_id, level, tier, target_id, reason, urgent, payload)
           VALUES (NULL, 1, 'test', $1, 'test', true, $2::jsonb) RETURNING id""",
        target_id,
        json.dumps(payload, ensure_ascii=False),
    )
    return row_id


async def outbox(
    conn: Conn, *, state: str | None, alert_id: int | None, target_id: int | None, limit: int
) -> list[asyncpg.Record]:
    """The delivery log, newest first."""
    return await conn.fetch(
        """SELECT o.id, o.alert_id, o.level, o.tier, o.reason, o.urgent, o.state, o.attempts, o.created_at,
                  o.next_attempt_at, o.rate_limited, o.digest, o.message_id, o.last_error, o.sent_at,
                  t.id AS target_id, t.channel, t.address, t.scope_kind, t.scope_code
           FROM notify_outbox o JOIN notify_target t ON t.id = o.target_id
           WHERE ($1::text IS NULL OR o.state = $1) AND ($2::bigint IS NULL OR o.alert_id = $2)
             AND ($3::int IS NULL OR o.target_id = $3)
           ORDER BY o.id DESC LIMIT $4""",
        state,
        alert_id,
        target_id,
        limit,
    )
