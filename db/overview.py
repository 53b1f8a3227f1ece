"""Reads behind the regulators' views: the per-region summary and the change feed of
alert events.

The feed orders events by (writing transaction id, event id) and shows only events whose
transaction is older than every transaction still running (``pg_snapshot_xmin``). A
sequence hands out ids before commit, so ordering by id alone would let a poller skip an
event that commits late with a lower id; this order never does.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from db.pool import Conn
from db.queries import point_levels


@dataclass(frozen=True, slots=True, order=True)
class FeedCursor:
    xid: int
    id: int

    def text(self) -> str:
        return f"{self.xid}.{self.id}"

    @classmethod
    def parse(cls, text: str) -> FeedCursor:
        xid, _, event_id = text.partition(".")
        if not (xid.isdigit() and event_id.isdigit()) or len(text) > 40:
            raise ValueError(text)
        return cls(int(xid), int(event_id))


START = FeedCursor(0, 0)

_FEED = """
SELECT e.xid::text::bigint AS xid, e.id, e.alert_id, e.kind, e.level, e.from_level, e.at, e.recorded_at,
       e.retroactive, e.actor, e.note, a.rule, a.stage, a.level AS alert_level, a.active, a.region_code,
       m.code AS mine_code, m.name AS mine_name, si.code AS site_code, s.code AS sensor_code, a.subject,
       CASE WHEN a.level = 4 THEN m.evacuation END AS evacuation
FROM alert_event e
JOIN alert a ON a.id = e.alert_id
JOIN mine m ON m.id = a.mine_id
JOIN site si ON si.id = a.site_id
LEFT JOIN sensor s ON s.id = a.sensor_id
WHERE e.xid < pg_snapshot_xmin(pg_current_snapshot())
  AND (e.xid, e.id) > ($1::text::xid8, $2::bigint)
  AND a.region_code LIKE $3 || '%' AND ($4::text IS NULL OR m.code = $4)
ORDER BY e.xid, e.id
LIMIT $5
"""


async def feed(
    conn: Conn, after: FeedCursor, *, prefix: str, mine_code: str | None, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(_FEED, str(after.xid), after.id, prefix, mine_code, limit)


async def feed_head(conn: Conn) -> FeedCursor:
    """The cursor just past every event visible now (for 'only what happens from now on')."""
    row = await conn.fetchrow(
        """SELECT xid::text::bigint AS xid, id FROM alert_event
           WHERE xid < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY xid DESC, id DESC LIMIT 1"""
    )
    return FeedCursor(row["xid"], row["id"]) if row is not None else START


_MINES = """
SELECT m.id, m.code, m.name, m.kind, m.region_code,
       coalesce(st.sensors, 0) AS sensors, coalesce(st.online, 0) AS online, st.refreshed_at
FROM mine m LEFT JOIN mine_status st ON st.mine_id = m.id
WHERE m.region_code LIKE $1 || '%' AND ($2::text IS NULL OR m.code = $2)
"""

_REFRESH = """
WITH seen AS (
    SELECT sensor_id, max(received_at) AS received_at FROM sensor_latest GROUP BY sensor_id
), counts AS (
    SELECT m.id AS mine_id, count(s.id) AS sensors,
           count(s.id) FILTER (WHERE seen.received_at > now() - make_interval(secs => 3 * s.interval_s)) AS online
    FROM mine m LEFT JOIN sensor s ON s.mine_id = m.id LEFT JOIN seen ON seen.sensor_id = s.id
    GROUP BY m.id
)
INSERT INTO mine_status (mine_id, sensors, online, refreshed_at)
SELECT mine_id, sensors, online, now() FROM counts
ON CONFLICT (mine_id) DO UPDATE
    SET sensors = EXCLUDED.sensors, online = EXCLUDED.online, refreshed_at = EXCLUDED.refreshed_at
"""

#: Any number will do as long as nothing else in the schema takes this advisory lock.
_REFRESH_LOCK = 0x5350_4D53  # "SWMS"


async def refresh_mine_status(conn: Conn) -> bool:
    """Recount online sensors per mine; False if another process is doing it right now."""
    async with conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _REFRESH_LOCK):
            return False
        await conn.execute(_REFRESH)
    return True


_OPEN_ALERTS = """
SELECT a.mine_id, a.level, a.stage, count(*) AS n,
       count(*) FILTER (WHERE a.stage = 'handling' AND a.handling_deadline < now()) AS handling_overdue,
       count(*) FILTER (WHERE a.acknowledged_at IS NULL) AS unacknowledged
FROM alert a
WHERE a.state <> 'closed' AND a.region_code LIKE $1 || '%'
  AND ($2::text IS NULL OR a.mine_id = (SELECT id FROM mine WHERE code = $2))
GROUP BY a.mine_id, a.level, a.stage
"""

_SUPERVISION_OVERDUE = """
SELECT count(DISTINCT v.alert_id) FROM alert_supervision v JOIN alert a ON a.id = v.alert_id
WHERE a.stage <> 'closed' AND v.deadline < now() AND a.region_code LIKE $1 || '%'
  AND ($2::text IS NULL OR a.mine_id = (SELECT id FROM mine WHERE code = $2))
"""


@dataclass(frozen=True, slots=True)
class SummaryRows:
    mines: list[asyncpg.Record]
    open_alerts: list[asyncpg.Record]
    supervision_overdue: int
    regions: list[asyncpg.Record]
    points: list[asyncpg.Record]
    cursor: FeedCursor


async def summary_rows(conn: Conn, *, prefix: str, mine_code: str | None) -> SummaryRows:
    """Everything the summary needs, read in one repeatable-read snapshot so the parts agree."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        mines = await conn.fetch(_MINES, prefix, mine_code)
        open_alerts = await conn.fetch(_OPEN_ALERTS, prefix, mine_code)
        overdue = int(await conn.fetchval(_SUPERVISION_OVERDUE, prefix, mine_code) or 0)
        regions = await conn.fetch(
            "SELECT code, name, level FROM region WHERE code LIKE $1 || '%' ORDER BY code", prefix
        )
        points = await point_levels(conn, prefix=prefix, mine_code=mine_code)
        cursor = await feed_head(conn)
    return SummaryRows(mines, open_alerts, overdue, regions, points, cursor)


#: Deadlines pass without any row changing: a summary is recomputed at least this often.
VERSION_TICK_S = 10

_VERSION = """
SELECT (SELECT xid::text || '.' || id FROM alert_event
         WHERE xid < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY xid DESC, id DESC LIMIT 1),
       (SELECT max(refreshed_at) FROM mine_status),
       (SELECT max(id) FROM alert_supervision),
       (SELECT max(updated_at) FROM mine),
       (SELECT count(*) FROM region),
       floor(extract(epoch FROM now()) / $1)::bigint
"""


async def summary_version(conn: Conn) -> tuple[object, ...]:
    """Changes whenever anything a summary shows may have changed: every change of an
    alert's level, activity or handling writes an alert event, so the feed position
    covers alerts (evidence refreshes, which the summary does not show, write none); then
    the online counts, supervision, the registry, and the clock every VERSION_TICK_S for
    deadlines that pass. An event whose transaction is still running moves the position
    once it commits, like the feed."""
    row = await conn.fetchrow(_VERSION, VERSION_TICK_S)
    assert row is not None
    return tuple(row)
