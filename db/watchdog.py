"""The analysis heartbeat (migration 020) and the reads behind the watchdog over it
(api/watchdog.py): how fresh the analysis is, and which mines' monitoring is offline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from db.pool import Conn

#: Any number will do as long as nothing else in the schema takes this advisory lock.
WATCHDOG_LOCK = 0x5357_5744  # "SWWD"


async def beat(conn: Conn, *, worker: str, started_at: datetime, evaluated_to: datetime | None) -> None:
    """One finished analysis cycle: the heartbeat, and the newest measurement time evaluated."""
    await conn.execute(
        """INSERT INTO analysis_heartbeat (worker, started_at, beat_at, evaluated_to, cycles)
           VALUES ($1, $2, now(), $3, 1)
           ON CONFLICT (worker) DO UPDATE
               SET beat_at = now(), evaluated_to = greatest(analysis_heartbeat.evaluated_to, EXCLUDED.evaluated_to),
                   cycles = analysis_heartbeat.cycles + 1""",
        worker,
        started_at,
        evaluated_to,
    )
    # Every start of an analysis process adds a row; those of processes gone a day go.
    await conn.execute(
        "DELETE FROM analysis_heartbeat WHERE worker <> $1 AND beat_at < now() - interval '1 day'", worker
    )


@dataclass(frozen=True, slots=True)
class Freshness:
    """now: the database clock; beat_at: the newest heartbeat of any analysis process (None:
    none ever); evaluated_to: the newest measurement time any of them has evaluated;
    newest_stored: the newest measurement time stored; oldest_unevaluated: when the oldest
    data not yet evaluated arrived (None: nothing waits); workers: processes that beat."""

    now: datetime
    beat_at: datetime | None
    evaluated_to: datetime | None
    newest_stored: datetime | None
    oldest_unevaluated: datetime | None
    workers: int


async def freshness(conn: Conn, *, alive_s: float) -> Freshness:
    """``workers`` counts the processes that beat within ``alive_s``."""
    row = await conn.fetchrow(
        """SELECT now() AS now, max(beat_at) AS beat_at, max(evaluated_to) AS evaluated_to,
                  count(*) FILTER (WHERE beat_at > now() - make_interval(secs => $1)) AS workers,
                  (SELECT max(ts) FROM sensor_latest) AS newest_stored,
                  (SELECT min(since) FROM sensor_dirty) AS oldest_unevaluated
           FROM analysis_heartbeat""",
        alive_s,
    )
    assert row is not None
    return Freshness(
        row["now"], row["beat_at"], row["evaluated_to"], row["newest_stored"], row["oldest_unevaluated"],
        int(row["workers"]),
    )  # fmt: skip


async def open_subject_alerts(conn: Conn, rule: str) -> dict[tuple[int, str], tuple[int, bool]]:
    """(mine_id, subject) -> (level, active) of the open sensorless alerts of ``rule``."""
    rows = await conn.fetch(
        "SELECT mine_id, subject, level, active FROM alert WHERE rule = $1 AND sensor_id IS NULL AND state <> 'closed'",
        rule,
    )
    return {(r["mine_id"], r["subject"]): (r["level"], r["active"]) for r in rows}


async def mine_monitoring(conn: Conn) -> list[asyncpg.Record]:
    """Per mine and site: sensors that have ever reported, and how many of them reported
    within 3 × their expected interval (the summary's 'online'), with the mine's first site."""
    return await conn.fetch(
        """WITH seen AS (SELECT sensor_id, max(received_at) AS received_at FROM sensor_latest GROUP BY sensor_id)
           SELECT m.id AS mine_id, m.code AS mine_code, m.region_code, si.id AS site_id, si.code AS site_code,
                  count(seen.sensor_id) AS reporting,
                  count(seen.sensor_id) FILTER (
                      WHERE seen.received_at > now() - make_interval(secs => 3 * s.interval_s)) AS online,
                  max(seen.received_at) AS last_received
           FROM mine m JOIN site si ON si.mine_id = m.id JOIN sensor s ON s.site_id = si.id
           LEFT JOIN seen ON seen.sensor_id = s.id
           GROUP BY m.id, m.code, m.region_code, si.id, si.code
           ORDER BY m.id, si.code"""
    )


async def try_lock(conn: Conn) -> bool:
    """Take the watchdog's transaction-level advisory lock (call in a transaction): one API
    process writes the watchdog's alerts at a time."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", WATCHDOG_LOCK))


async def may_raise_alerts(conn: Conn) -> bool:
    """Whether this login may open alerts and queue their notifications (the analysis' and the
    watchdog's login may; the API's least-privilege login may not)."""
    return bool(
        await conn.fetchval(
            "SELECT has_table_privilege('alert', 'INSERT') AND has_table_privilege('notify_outbox', 'INSERT')"
        )
    )
