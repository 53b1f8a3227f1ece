"""Read queries behind the API. Region scoping uses GB/T 2260 code prefixes: a
province's subtree is every code starting with its first two digits, a city's with
its first four."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from core.wire import TOPIC_ROOT, WIRE_VERSION
from db.pool import Conn
from db.readings import INVALID, invalid_cte

REGIONS = """
SELECT r.code, r.name, r.level, r.parent_code,
       (SELECT count(*) FROM mine m WHERE m.region_code LIKE r_prefix.p || '%') AS mines
FROM region r
CROSS JOIN LATERAL (SELECT CASE r.level WHEN 'province' THEN left(r.code, 2)
                                        WHEN 'city' THEN left(r.code, 4) ELSE r.code END AS p) r_prefix
WHERE r.code LIKE $1 || '%'
ORDER BY r.code
"""


async def regions(conn: Conn, prefix: str) -> list[asyncpg.Record]:
    return await conn.fetch(REGIONS, prefix)


async def region(conn: Conn, code: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT code, name, level, parent_code FROM region WHERE code = $1", code)


_MINE = """
SELECT m.code, m.name, m.kind, m.region_code, m.evacuation,
       (SELECT count(*) FROM site s WHERE s.mine_id = m.id) AS sites,
       (SELECT count(*) FROM sensor s WHERE s.mine_id = m.id) AS sensors,
       (SELECT max(a.level) FROM alert a WHERE a.mine_id = m.id AND a.state <> 'closed') AS worst_open_level
FROM mine m
"""


async def mines(
    conn: Conn, *, prefix: str, mine_code: str | None = None, kind: str | None, after: str | None, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(
        _MINE
        + """ WHERE m.region_code LIKE $1 || '%' AND ($2::text IS NULL OR m.kind = $2)
              AND ($3::text IS NULL OR m.code > $3) AND ($5::text IS NULL OR m.code = $5)
              ORDER BY m.code LIMIT $4""",
        prefix,
        kind,
        after,
        limit,
        mine_code,
    )


async def mine(conn: Conn, code: str) -> asyncpg.Record | None:
    return await conn.fetchrow(_MINE + " WHERE m.code = $1", code)


async def sites(conn: Conn, mine_code: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT s.code, s.name, s.kind, s.height_m, s.crest_elevation_m, m.code AS mine_code,
                  coalesce(s.facility, s.code) AS facility,
                  (SELECT count(*) FROM sensor x WHERE x.site_id = s.id) AS sensors,
                  (SELECT max(a.level) FROM alert a WHERE a.site_id = s.id AND a.state <> 'closed') AS worst_open_level
           FROM site s JOIN mine m ON m.id = s.mine_id WHERE m.code = $1 ORDER BY s.code""",
        mine_code,
    )


_SENSOR = """
SELECT s.id, s.code, s.kind, s.name, s.channels, s.interval_s, s.baseline::text AS baseline,
       s.thresholds::text AS thresholds, m.code AS mine_code, si.code AS site_code, m.region_code,
       (SELECT max(l.ts) FROM sensor_latest l WHERE l.sensor_id = s.id) AS last_ts
FROM sensor s JOIN mine m ON m.id = s.mine_id JOIN site si ON si.id = s.site_id
"""


async def sensors(
    conn: Conn,
    *,
    prefix: str,
    mine_code: str | None,
    site_code: str | None,
    kind: str | None,
    after: tuple[str, str] | None,
    limit: int,
) -> list[asyncpg.Record]:
    return await conn.fetch(
        _SENSOR
        + """ WHERE m.region_code LIKE $1 || '%' AND ($2::text IS NULL OR m.code = $2)
              AND ($3::text IS NULL OR si.code = $3) AND ($4::text IS NULL OR s.kind = $4)
              AND ($5::text IS NULL OR (m.code, s.code) > ($5, $6))
              ORDER BY m.code, s.code LIMIT $7""",
        prefix,
        mine_code,
        site_code,
        kind,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )


async def sensor(conn: Conn, mine_code: str, sensor_code: str) -> asyncpg.Record | None:
    return await conn.fetchrow(_SENSOR + " WHERE m.code = $1 AND s.code = $2", mine_code, sensor_code)


async def latest(conn: Conn, sensor_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT channel, ts, value, received_at FROM sensor_latest WHERE sensor_id = $1 ORDER BY channel", sensor_id
    )


async def readings_raw(
    conn: Conn,
    sensor_id: int,
    *,
    start: datetime,
    end: datetime,
    channels: list[str] | None,
    after: tuple[datetime, str] | None,
    limit: int,
    include_invalid: bool = False,
) -> list[asyncpg.Record]:
    """Readings in (ts, channel) order; those marked invalid only with ``include_invalid``
    (flagged ``invalid``)."""
    return await conn.fetch(
        f"""WITH {invalid_cte("ARRAY[$1::int4]")}
           SELECT r.ts, r.channel, r.value, r.seq, r.received_at, {INVALID} AS invalid FROM reading r
           WHERE r.sensor_id = $1 AND r.ts >= $2 AND r.ts < $3 AND ($4::text[] IS NULL OR r.channel = ANY($4))
             AND ($5::timestamptz IS NULL OR (r.ts, r.channel) > ($5, $6)) AND ($8 OR NOT {INVALID})
           ORDER BY r.ts, r.channel LIMIT $7""",
        sensor_id,
        start,
        end,
        channels,
        after[0] if after else None,
        after[1] if after else None,
        limit,
        include_invalid,
    )


async def has_invalid(conn: Conn, sensor_id: int, start: datetime, end: datetime) -> bool:
    """Whether readings of [start, end) may lie in a range marked invalid."""
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM invalid_range WHERE sensor_id = $1 AND ts_from < $3 AND ts_to >= $2)",
        sensor_id,
        start,
        end,
    )
    return found


async def readings_bucketed(
    conn: Conn,
    sensor_id: int,
    *,
    start: datetime,
    end: datetime,
    channels: list[str] | None,
    bucket_s: int,
    limit: int,
    include_invalid: bool = False,
) -> list[asyncpg.Record]:
    """min/max/avg/count per bucket, and how many of the counted readings are marked invalid
    (``n_invalid``; they count only with ``include_invalid``). Hourly and daily come from the
    rollups (continuous aggregates on TimescaleDB) where no correction touches the window;
    otherwise, and for other widths, they are computed with date_bin."""
    rollup = {3600: "reading_hourly", 86400: "reading_daily"}.get(bucket_s)
    if rollup is not None and not await has_invalid(conn, sensor_id, start, end):
        return await conn.fetch(
            f"""SELECT bucket, channel, min, max, avg, n, 0 AS n_invalid FROM {rollup}
                WHERE sensor_id = $1 AND bucket >= $2 AND bucket < $3 AND ($4::text[] IS NULL OR channel = ANY($4))
                ORDER BY bucket, channel LIMIT $5""",
            sensor_id,
            start,
            end,
            channels,
            limit,
        )
    return await conn.fetch(
        f"""WITH {invalid_cte("ARRAY[$1::int4]")}, x AS (
               SELECT r.ts, r.channel, r.value, {INVALID} AS invalid FROM reading r
               WHERE r.sensor_id = $1 AND r.ts >= $2 AND r.ts < $3 AND ($4::text[] IS NULL OR r.channel = ANY($4))
           )
           SELECT date_bin(make_interval(secs => $5), ts, timestamptz '2000-01-01') AS bucket, channel,
                  min(value) AS min, max(value) AS max, avg(value) AS avg, count(*) AS n,
                  count(*) FILTER (WHERE invalid) AS n_invalid
           FROM x WHERE $7 OR NOT invalid
           GROUP BY bucket, channel ORDER BY bucket, channel LIMIT $6""",
        sensor_id,
        start,
        end,
        channels,
        float(bucket_s),
        limit,
        include_invalid,
    )


_ALERT = """
SELECT a.id, a.rule, a.rule_version, a.level, a.peak_level, a.state, a.active, a.opened_at, a.updated_at,
       a.closed_at, a.evidence::text AS evidence, a.explanation_en, a.explanation_zh, a.forecast_failure_at,
       a.retroactive, a.created_at, a.modified_at, a.region_code, a.stage, a.acknowledged_at,
       a.responsible_person, a.measures, a.funds, a.handling_deadline, a.contingency_plan,
       (SELECT min(v.deadline) FROM alert_supervision v WHERE v.alert_id = a.id) AS supervision_deadline,
       s.code AS sensor_code, s.kind AS sensor_kind, si.code AS site_code, m.code AS mine_code, m.name AS mine_name,
       CASE WHEN a.level = 4 THEN m.evacuation END AS evacuation, a.subject
FROM alert a LEFT JOIN sensor s ON s.id = a.sensor_id JOIN site si ON si.id = a.site_id JOIN mine m ON m.id = a.mine_id
"""


async def alerts(
    conn: Conn,
    *,
    prefix: str,
    min_level: int | None,
    state: str | None,
    mine_code: str | None,
    rule: str | None,
    since: datetime | None,
    until: datetime | None,
    after: tuple[datetime, int] | None,
    limit: int,
    stage: str | None = None,
) -> list[asyncpg.Record]:
    """Newest change first; ``since``/``until`` bound the last change (modified_at)."""
    return await conn.fetch(
        _ALERT
        + """ WHERE a.region_code LIKE $1 || '%' AND ($2::int IS NULL OR a.level >= $2)
              AND ($3::text IS NULL OR a.state = $3) AND ($4::text IS NULL OR m.code = $4)
              AND ($11::text IS NULL OR a.stage = $11)
              AND ($5::text IS NULL OR a.rule = $5)
              AND ($6::timestamptz IS NULL OR a.modified_at >= $6) AND ($7::timestamptz IS NULL OR a.modified_at < $7)
              AND ($8::timestamptz IS NULL OR (a.modified_at, a.id) < ($8, $9))
              ORDER BY a.modified_at DESC, a.id DESC LIMIT $10""",
        prefix,
        min_level,
        state,
        mine_code,
        rule,
        since,
        until,
        after[0] if after else None,
        after[1] if after else None,
        limit,
        stage,
    )


async def alert(conn: Conn, alert_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(_ALERT + " WHERE a.id = $1", alert_id)


async def alert_events(conn: Conn, alert_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT id, kind, level, from_level, at, recorded_at, retroactive, evidence::text AS evidence,
                  actor, note, details::text AS details
           FROM alert_event WHERE alert_id = $1 ORDER BY id""",
        alert_id,
    )


async def dead_letters(
    conn: Conn,
    *,
    reason: str | None,
    since: datetime | None,
    before_id: int | None,
    limit: int,
    prefix: str = "",
    mine_code: str | None = None,
    include_unknown: bool = True,
) -> list[asyncpg.Record]:
    """Rejected messages, newest first, of the mines in a subtree: a dead letter belongs to the
    mine named by its topic (``slopewatch/v1/<mine>/…``) if that mine is registered. Those of
    no registered mine (a bad topic, an unknown code) are listed only with ``include_unknown``."""
    return await conn.fetch(
        """SELECT d.id, d.received_at, d.topic, d.payload, d.payload_bytes, d.truncated, d.reason, d.detail,
                  d.readings_rejected, d.readings_accepted
           FROM dead_letter d
           LEFT JOIN mine m ON left(d.topic, length($8)) = $8 AND m.code = split_part(d.topic, '/', 3)
           WHERE ($1::text IS NULL OR d.reason = $1) AND ($2::timestamptz IS NULL OR d.received_at >= $2)
             AND ($3::bigint IS NULL OR d.id < $3)
             AND CASE WHEN m.id IS NULL THEN $5
                      ELSE m.region_code LIKE $6 || '%' AND ($7::text IS NULL OR m.code = $7) END
           ORDER BY d.id DESC LIMIT $4""",
        reason,
        since,
        before_id,
        limit,
        include_unknown,
        prefix,
        mine_code,
        f"{TOPIC_ROOT}/{WIRE_VERSION}/",
    )


async def point_levels(conn: Conn, *, prefix: str, mine_code: str | None) -> list[asyncpg.Record]:
    """Each sensor's highest active open alert on the ground itself (sensor-health rules
    excluded: a broken sensor says nothing about the slope), for the GB 39496 roll-up."""
    return await conn.fetch(
        # Aggregate the (few) open alerts first, then look their sensors up by key: joining
        # first lets the planner hash the whole sensor table of a province.
        """WITH p AS MATERIALIZED (
               SELECT a.sensor_id, max(a.level) AS level FROM alert a
               WHERE a.state <> 'closed' AND a.active AND a.rule NOT LIKE 'health.%' AND a.sensor_id IS NOT NULL
                 AND a.region_code LIKE $1 || '%'
               GROUP BY a.sensor_id
           )
           SELECT m.code AS mine_code, si.code AS site_code, coalesce(si.facility, si.code) AS facility,
                  s.code AS sensor_code, s.kind, p.level
           FROM sensor s JOIN p ON p.sensor_id = s.id
           JOIN site si ON si.id = s.site_id JOIN mine m ON m.id = s.mine_id
           WHERE s.id = ANY (ARRAY(SELECT sensor_id FROM p)) AND ($2::text IS NULL OR m.code = $2)""",
        prefix,
        mine_code,
    )
