"""Closed-loop handling (闭环) of an alert by people: acknowledge → handle with the five
fixed (五落实) → resolve → verify (验收) → close (销号), and supervision (督办) from above.

Every step locks the alert row, checks the stage, updates it and appends an event with
who, when, what and a note, in one transaction. The analysis worker takes the same row
lock when it updates an alert, so a person and the machine never overwrite each other.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime

import asyncpg

from db.pool import Conn

STAGES = ("open", "acknowledged", "handling", "resolved", "verified", "closed")


class HandlingError(Exception):
    """A step that the alert's current stage does not allow."""

    def __init__(self, message: str, *, stage: str) -> None:
        super().__init__(message)
        self.stage = stage


class AlertMissing(Exception):
    """The alert id does not exist."""


@dataclass(frozen=True, slots=True)
class FiveFixed:
    """五落实: who is responsible, what is done, with what money, by when, and the fallback."""

    responsible_person: str
    measures: str
    funds: str
    deadline: datetime
    contingency_plan: str


@dataclass(frozen=True, slots=True)
class Actor:
    name: str
    token_id: int | None


@dataclass(frozen=True, slots=True)
class Step:
    """One handling action: the stages it may start from and the stage it leads to."""

    action: str
    event: str
    from_stages: frozenset[str]
    to_stage: str


STEPS: dict[str, Step] = {
    s.action: s
    for s in (
        Step("acknowledge", "acknowledged", frozenset({"open"}), "acknowledged"),
        Step("handle", "handling", frozenset({"open", "acknowledged", "handling"}), "handling"),
        Step("resolve", "resolved", frozenset({"handling"}), "resolved"),
        Step("verify", "verified", frozenset({"resolved"}), "verified"),
        Step("reject", "verification_rejected", frozenset({"resolved"}), "handling"),
        Step("close", "closed_by_hand", frozenset({"verified"}), "closed"),
    )
}


@dataclass(frozen=True, slots=True)
class Within:
    """The caller's subtree: region codes starting with ``prefix`` and, if set, one mine."""

    prefix: str
    mine_code: str | None = None


async def _locked(conn: Conn, alert_id: int, within: Within | None) -> asyncpg.Record:
    """Lock the alert row. ``within`` is checked under the lock: a move of the mine rewrites
    the alert's region under the same row lock (migration 013), so the check and the step
    see the same region, and an alert that has just moved away is missing, not handled."""
    row = await conn.fetchrow(
        """SELECT a.id, a.stage, a.level, a.active, a.region_code, m.code AS mine_code
           FROM alert a JOIN mine m ON m.id = a.mine_id WHERE a.id = $1 FOR UPDATE OF a""",
        alert_id,
    )
    if row is None:
        raise AlertMissing(alert_id)
    if within is not None and not (
        row["region_code"].startswith(within.prefix) and within.mine_code in (None, row["mine_code"])
    ):
        raise AlertMissing(alert_id)
    return row


async def _event(
    conn: Conn,
    alert_id: int,
    kind: str,
    level: int,
    actor: Actor,
    note: str | None,
    details: dict[str, object] | None,
) -> int:
    event_id: int = await conn.fetchval(
        """INSERT INTO alert_event (alert_id, kind, level, at, actor, actor_token_id, note, details)
           VALUES ($1, $2, $3, now(), $4, $5, $6, $7::jsonb) RETURNING id""",
        alert_id,
        kind,
        level,
        actor.name,
        actor.token_id,
        note,
        json.dumps(details, default=str) if details is not None else None,
    )
    return event_id


async def apply_step(
    conn: Conn,
    alert_id: int,
    action: str,
    actor: Actor,
    *,
    note: str | None,
    five_fixed: FiveFixed | None = None,
    within: Within | None = None,
) -> int:
    """Carry out one step; returns the event id. Raises HandlingError when the stage forbids
    it, AlertMissing when the alert does not exist or lies outside ``within``."""
    step = STEPS[action]
    async with conn.transaction():
        row = await _locked(conn, alert_id, within)
        stage: str = row["stage"]
        if stage not in step.from_stages:
            allowed = ", ".join(sorted(step.from_stages))
            raise HandlingError(
                f"alert {alert_id} is {stage}; {action} is possible only when it is {allowed}", stage=stage
            )
        if action == "close" and row["active"]:
            raise HandlingError(
                f"alert {alert_id}'s condition is still present; it can be closed once the detectors see it clear "
                "(the alert turns inactive)",
                stage=stage,
            )
        details: dict[str, object] | None = None
        if action == "handle":
            assert five_fixed is not None
            details = asdict(five_fixed)
            await conn.execute(
                """UPDATE alert SET stage = 'handling', acknowledged_at = coalesce(acknowledged_at, now()),
                                    responsible_person = $2, measures = $3, funds = $4, handling_deadline = $5,
                                    contingency_plan = $6, modified_at = now()
                   WHERE id = $1""",
                alert_id,
                five_fixed.responsible_person,
                five_fixed.measures,
                five_fixed.funds,
                five_fixed.deadline,
                five_fixed.contingency_plan,
            )
        else:
            await conn.execute(
                """UPDATE alert SET stage = $2, modified_at = now(),
                                    acknowledged_at = CASE WHEN $3 THEN coalesce(acknowledged_at, now())
                                                           ELSE acknowledged_at END,
                                    state = CASE WHEN $2 = 'closed' THEN 'closed' ELSE state END,
                                    closed_at = CASE WHEN $2 = 'closed' THEN now() ELSE closed_at END
                   WHERE id = $1""",
                alert_id,
                step.to_stage,
                action == "acknowledge",
            )
        return await _event(conn, alert_id, step.event, row["level"], actor, note, details)


async def supervise(
    conn: Conn,
    alert_id: int,
    actor: Actor,
    *,
    region_code: str,
    deadline: datetime,
    note: str,
    within: Within | None = None,
) -> int:
    """A higher level flags the alert for supervision (督办); returns the supervision id."""
    async with conn.transaction():
        row = await _locked(conn, alert_id, within)
        if row["stage"] == "closed":
            raise HandlingError(f"alert {alert_id} is closed; there is nothing left to supervise", stage="closed")
        sup_id: int = await conn.fetchval(
            """INSERT INTO alert_supervision (alert_id, region_code, actor, actor_token_id, deadline, note)
               VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
            alert_id,
            region_code,
            actor.name,
            actor.token_id,
            deadline,
            note,
        )
        await conn.execute("UPDATE alert SET modified_at = now() WHERE id = $1", alert_id)
        await _event(
            conn,
            alert_id,
            "supervised",
            row["level"],
            actor,
            note,
            {"supervision_id": sup_id, "region_code": region_code, "deadline": deadline.isoformat()},
        )
        return sup_id


_SUPERVISION = """
SELECT v.id, v.alert_id, v.region_code, r.name AS region_name, v.actor, v.deadline, v.note, v.created_at,
       a.stage, a.level, a.mine_id, m.code AS mine_code, m.name AS mine_name, a.region_code AS alert_region_code,
       (a.stage <> 'closed' AND v.deadline < now()) AS overdue
FROM alert_supervision v
JOIN alert a ON a.id = v.alert_id
JOIN mine m ON m.id = a.mine_id
JOIN region r ON r.code = v.region_code
"""


async def supervisions_of(conn: Conn, alert_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(_SUPERVISION + " WHERE v.alert_id = $1 ORDER BY v.id", alert_id)


async def supervisions(
    conn: Conn, *, prefix: str, mine_code: str | None, overdue_only: bool, open_only: bool, limit: int
) -> list[asyncpg.Record]:
    """Supervisions of alerts in the subtree (what this level must handle) — the supervising
    level sees them because the alerts are in its own subtree."""
    return await conn.fetch(
        _SUPERVISION
        + """ WHERE a.region_code LIKE $1 || '%' AND ($2::text IS NULL OR m.code = $2)
              AND (NOT $3 OR (a.stage <> 'closed' AND v.deadline < now()))
              AND (NOT $4 OR a.stage <> 'closed')
              ORDER BY v.deadline, v.id LIMIT $5""",
        prefix,
        mine_code,
        overdue_only,
        open_only,
        limit,
    )
