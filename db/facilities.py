"""Reads behind the roll-up alerts (analytics/facilities.py): the active point alerts per
facility, the facility alerts still active, the sites of each facility."""

from __future__ import annotations

import asyncpg

from db.pool import Conn

# The ground's own alerts (sensor-health rules say nothing about the slope), per point.
_POINTS = """
SELECT a.mine_id, coalesce(si.facility, si.code) AS facility, si.code AS site_code, s.code AS sensor_code,
       s.kind, max(a.level) AS level, max(a.updated_at) AS at
FROM alert a JOIN sensor s ON s.id = a.sensor_id JOIN site si ON si.id = s.site_id
WHERE a.state <> 'closed' AND a.active AND a.sensor_id IS NOT NULL AND a.rule NOT LIKE 'health.%'
GROUP BY a.mine_id, si.facility, si.code, s.code, s.kind
"""

_OPEN = """
SELECT mine_id, substr(subject, length('facility:') + 1) AS facility FROM alert
WHERE rule = $1 AND sensor_id IS NULL AND subject LIKE 'facility:%' AND state <> 'closed' AND active
"""

_SITES = """
SELECT si.mine_id, coalesce(si.facility, si.code) AS facility, si.id, si.code, m.region_code
FROM site si JOIN mine m ON m.id = si.mine_id
WHERE si.mine_id = ANY($1::int[])
ORDER BY si.code
"""


#: Any number will do as long as nothing else in the schema takes this advisory lock.
ROLLUP_LOCK = 0x5357_524F  # "SWRO"


async def try_lock(conn: Conn) -> bool:
    """The roll-up's transaction-level advisory lock (call in a transaction): with several
    analysis processes, one rolls up at a time and none races another to open an alert."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", ROLLUP_LOCK))


async def point_levels(conn: Conn) -> list[asyncpg.Record]:
    """(mine_id, facility, site_code, sensor_code, kind, level, at): each point's highest
    active alert on the ground, with the newest measurement time it refers to."""
    return await conn.fetch(_POINTS)


async def active_facility_alerts(conn: Conn, rule: str) -> list[asyncpg.Record]:
    """(mine_id, facility) of every active facility alert of ``rule``."""
    return await conn.fetch(_OPEN, rule)


async def sites_of(conn: Conn, mine_ids: list[int]) -> list[asyncpg.Record]:
    """(mine_id, facility, id, code, region_code) of every site of these mines, by code."""
    return await conn.fetch(_SITES, mine_ids)
