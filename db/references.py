"""The reference position of displacement-like channels (migration 018, docs/detection.md).

Cumulative displacement is measured from a reference, never from the window start. Per
sensor and channel the effective reference is, in order:

1. the newest re-baseline (an audited, chained event: :func:`db.integrity.record_reference_event`),
   unless the registry gave a baseline later;
2. the registry's baseline, recorded here the first time each value is seen;
3. the first accepted readings: the median of the channel's first :data:`FIRST_N` valid
   readings by measurement time, stored with the time of the first and of the last one
   used. Late data older than that, or a correction of those readings, gives a new row.

Rows are append-only; the history is the provenance.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from db.integrity import ReferenceEvent, record_reference_event
from db.pool import Conn
from db.readings import INVALID, invalid_cte

#: How many of the first readings make a first-reading reference (their median: one
#: noisy or spiking first reading does not shift every later cumulative value).
FIRST_N = 6
#: Who records references the analysis derives.
ANALYSIS_ACTOR = "analysis"
REGISTRY_ACTOR = "registry"


@dataclass(frozen=True, slots=True)
class Reference:
    sensor_id: int
    channel: str
    value: float
    #: registry, first_reading or rebaseline
    source: str
    since: datetime
    actor: str
    recorded_at: datetime
    reason: str | None = None
    seq: int | None = None
    basis_to: datetime | None = None
    basis_n: int | None = None
    id: int = 0


_COLS = "id, sensor_id, channel, value, source, since, actor, recorded_at, reason, seq, basis_to, basis_n"


def _ref(r: asyncpg.Record) -> Reference:
    return Reference(
        r["sensor_id"],
        r["channel"],
        r["value"],
        r["source"],
        r["since"],
        r["actor"],
        r["recorded_at"],
        r["reason"],
        r["seq"],
        r["basis_to"],
        r["basis_n"],
        r["id"],
    )


# The newest row per sensor, channel and source.
_NEWEST = f"""
SELECT DISTINCT ON (sensor_id, channel, source) {_COLS} FROM sensor_reference
WHERE sensor_id = ANY($1::int4[])
ORDER BY sensor_id, channel, source, id DESC
"""

# The first FIRST_N valid readings of each (sensor, channel) through the primary key.
_FIRST_READINGS = f"""
WITH {invalid_cte()}
SELECT u.s AS sensor_id, u.c AS channel, f.ts, f.value
FROM unnest($1::int4[], $2::text[]) AS u(s, c)
CROSS JOIN LATERAL (
    SELECT r.ts, r.value FROM reading r
    WHERE r.sensor_id = u.s AND r.channel = u.c
      AND NOT {INVALID}
    ORDER BY r.ts LIMIT $3
) f
ORDER BY u.s, u.c, f.ts
"""

_INSERT = """
INSERT INTO sensor_reference (sensor_id, channel, value, source, since, basis_to, basis_n, actor)
SELECT * FROM unnest($1::int4[], $2::text[], $3::float8[], $4::text[], $5::timestamptz[], $6::timestamptz[],
                     $7::int4[], $8::text[])
"""


@dataclass(frozen=True, slots=True)
class Wanted:
    """A sensor whose displacement channels need their references."""

    sensor_id: int
    channels: tuple[str, ...]
    #: the registry's baseline (channel -> value)
    baseline: Mapping[str, float]
    #: the oldest measurement time of the new data (late readings may precede the first ones)
    min_ts: datetime | None = None
    #: readings were corrected since the last evaluation: recompute first-reading references
    corrected: bool = False


def _median(values: list[float]) -> float:
    v = sorted(values)
    h = len(v) // 2
    return v[h] if len(v) % 2 else (v[h - 1] + v[h]) / 2.0


def effective(newest: Iterable[Reference], baseline: Mapping[str, float]) -> dict[str, Reference]:
    """Per channel, the reference that counts among the newest rows of each source."""
    by_channel: dict[str, dict[str, Reference]] = {}
    for r in newest:
        by_channel.setdefault(r.channel, {})[r.source] = r
    out: dict[str, Reference] = {}
    for ch, rows in by_channel.items():
        reg = rows.get("registry") if ch in baseline else None
        reb = rows.get("rebaseline")
        if reb is not None and (reg is None or reb.recorded_at >= reg.recorded_at):
            out[ch] = reb
        elif reg is not None:
            out[ch] = reg
        elif "first_reading" in rows:
            out[ch] = rows["first_reading"]
    return out


async def newest_rows(conn: Conn, sensor_ids: Sequence[int]) -> list[Reference]:
    return [_ref(r) for r in await conn.fetch(_NEWEST, list(sensor_ids))]


async def ensure(conn: Conn, wanted: Sequence[Wanted]) -> dict[int, dict[str, Reference]]:
    """The effective references of the sensors' channels, recording what is missing or stale:
    a registry baseline not seen before (or changed), and first-reading references of
    channels with neither (computed anew when older readings arrived or readings were
    corrected). Channels without any valid reading have none."""
    if not wanted:
        return {}
    newest = await newest_rows(conn, [w.sensor_id for w in wanted])
    by_sensor: dict[int, list[Reference]] = {}
    for r in newest:
        by_sensor.setdefault(r.sensor_id, []).append(r)
    new_rows: list[tuple[int, str, float, str, datetime | None, datetime | None, int | None, str]] = []
    need_first: list[tuple[int, str]] = []
    now: datetime = await conn.fetchval("SELECT now()")
    for w in wanted:
        rows = {(r.channel, r.source): r for r in by_sensor.get(w.sensor_id, [])}
        for ch in w.channels:
            if ch in w.baseline:
                reg = rows.get((ch, "registry"))
                if reg is None or reg.value != float(w.baseline[ch]):
                    new_rows.append(
                        (w.sensor_id, ch, float(w.baseline[ch]), "registry", now, None, None, REGISTRY_ACTOR)
                    )
                continue
            if (ch, "rebaseline") in rows:
                continue
            first = rows.get((ch, "first_reading"))
            stale = (
                first is None
                or w.corrected
                or (first.basis_n or 0) < FIRST_N
                or (w.min_ts is not None and first.basis_to is not None and w.min_ts <= first.basis_to)
            )
            if stale:
                need_first.append((w.sensor_id, ch))
    if need_first:
        got: dict[tuple[int, str], list[tuple[datetime, float]]] = {}
        for rec in await conn.fetch(_FIRST_READINGS, [s for s, _ in need_first], [c for _, c in need_first], FIRST_N):
            got.setdefault((rec["sensor_id"], rec["channel"]), []).append((rec["ts"], rec["value"]))
        for key in need_first:
            readings = got.get(key)
            if not readings:
                continue
            value = _median([v for _, v in readings])
            since, basis_to, n = readings[0][0], readings[-1][0], len(readings)
            first = next(
                (r for r in by_sensor.get(key[0], []) if r.channel == key[1] and r.source == "first_reading"), None
            )
            if first is not None and (first.value, first.since, first.basis_to, first.basis_n) == (
                value,
                since,
                basis_to,
                n,
            ):
                continue
            new_rows.append((key[0], key[1], value, "first_reading", since, basis_to, n, ANALYSIS_ACTOR))
    if new_rows:
        cols = list(zip(*new_rows, strict=True))
        await conn.execute(_INSERT, *[list(c) for c in cols])
        newest = await newest_rows(conn, [w.sensor_id for w in wanted])
        by_sensor = {}
        for r in newest:
            by_sensor.setdefault(r.sensor_id, []).append(r)
    return {w.sensor_id: effective(by_sensor.get(w.sensor_id, []), w.baseline) for w in wanted}


async def history(conn: Conn, sensor_id: int) -> list[Reference]:
    """Every reference row of a sensor, oldest first: the provenance."""
    rows = await conn.fetch(f"SELECT {_COLS} FROM sensor_reference WHERE sensor_id = $1 ORDER BY id", sensor_id)
    return [_ref(r) for r in rows]


async def values_at(conn: Conn, sensor_id: int, channels: Sequence[str], since: datetime) -> dict[str, float]:
    """Per channel, the median of the first :data:`FIRST_N` valid readings at or after
    ``since`` (a re-baseline taken from the new installation's own readings)."""
    rows = await conn.fetch(
        f"""WITH {invalid_cte("ARRAY[$1::int4]")}
           SELECT u.c AS channel, f.value
           FROM unnest($2::text[]) AS u(c)
           CROSS JOIN LATERAL (
               SELECT r.value FROM reading r
               WHERE r.sensor_id = $1 AND r.channel = u.c AND r.ts >= $3
                 AND NOT {INVALID}
               ORDER BY r.ts LIMIT $4
           ) f""",
        sensor_id,
        list(channels),
        since,
        FIRST_N,
    )
    got: dict[str, list[float]] = {}
    for r in rows:
        got.setdefault(r["channel"], []).append(r["value"])
    return {ch: _median(v) for ch, v in got.items()}


async def mark_reevaluate(conn: Conn, sensor_id: int, cause: Mapping[str, object]) -> None:
    """Have the analysis judge the sensor again, now, naming ``cause`` in the alert events
    that follow. The window is the current one (up to the newest reading)."""
    await conn.execute(
        """INSERT INTO sensor_dirty (sensor_id, min_ts, max_ts, late, causes)
           SELECT $1, max(ts), max(ts), true, jsonb_build_array($2::jsonb) FROM sensor_latest
           WHERE sensor_id = $1 HAVING max(ts) IS NOT NULL
           ON CONFLICT (sensor_id) DO UPDATE
               SET late = true, causes = sensor_dirty.causes || EXCLUDED.causes, gen = sensor_dirty.gen + 1""",
        sensor_id,
        json.dumps(cause),
    )


def registry_baseline(text: str | None) -> dict[str, float]:
    """The registry's baseline as stored (``sensor.baseline`` JSON)."""
    return {k: float(v) for k, v in json.loads(text or "{}").items()}


class RebaselineError(ValueError):
    """A re-baseline that cannot be recorded; the message says why and what to do."""


async def rebaseline(
    conn: Conn,
    sensor_id: int,
    channels: Sequence[str],
    *,
    since: datetime,
    values: Mapping[str, float] | None,
    reason: str,
    actor: str,
) -> ReferenceEvent:
    """Re-baseline every channel of a displacement sensor from ``since`` on: with the given
    values, or the median of each channel's first valid readings at or after ``since``.
    Chained, recorded and the sensor marked for evaluation, in one transaction."""
    if values is not None:
        if set(values) != set(channels):
            raise RebaselineError(f"values must give every channel of this sensor: {list(channels)}")
        bad = [ch for ch, v in values.items() if not math.isfinite(v)]
        if bad:
            raise RebaselineError(f"values of {bad} are not finite numbers")
        chosen = {ch: float(v) for ch, v in values.items()}
    else:
        chosen = await values_at(conn, sensor_id, channels, since)
        missing = [ch for ch in channels if ch not in chosen]
        if missing:
            raise RebaselineError(
                f"no valid readings of {missing} at or after {since.isoformat()}: give the values, "
                "or re-baseline once the new installation has reported"
            )
    async with conn.transaction():
        ev = await record_reference_event(conn, sensor_id, values=chosen, since=since, reason=reason, actor=actor)
        values_text = ", ".join(f"{ch}={v:g}" for ch, v in ev.values)
        await mark_reevaluate(
            conn,
            sensor_id,
            {
                "kind": "rebaseline",
                "seq": ev.seq,
                "since": since.isoformat(),
                "values": dict(ev.values),
                "actor": actor,
                "reason": reason,
                "note": f"re-baseline (chain entry {ev.seq}) by {actor} from {since.isoformat()}: {values_text}: {reason}",
            },
        )
    return ev
