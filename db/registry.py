"""Registry rows: loading the registry file into the database and reading it back."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from core.model import SensorKind, region_level_of, region_parent
from core.registry import RegistryDoc, sensor_channels
from core.thresholds import THRESHOLD_QUANTITIES, ThresholdSet
from db.pool import Conn


@dataclass(frozen=True, slots=True)
class LoadReport:
    regions: int
    mines: int
    sites: int
    sensors: int
    not_in_file: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SensorRow:
    """A sensor as the workers need it."""

    id: int
    code: str
    mine_code: str
    mine_id: int
    site_id: int
    region_code: str
    kind: SensorKind
    channels: tuple[str, ...]
    interval_s: float
    baseline: Mapping[str, float]
    thresholds: Mapping[str, ThresholdSet]
    site_height_m: float | None
    crest_elevation_m: float | None


#: A move locks the mine, then its alerts; the analysis may hold an alert of that mine and
#: then want the mine's share lock for a new alert. PostgreSQL aborts one of the two; the
#: analysis retries its batch by itself, a move is retried here.
_DEADLOCK_RETRIES = 3


async def load_registry(conn: Conn, reg: RegistryDoc, *, actor: str | None = None) -> LoadReport:
    """Upsert every region, mine, site and sensor of ``reg`` by code, in one transaction.

    Nothing is deleted: rows that are no longer in the file are reported, since their
    readings and alerts are evidence that must stay. A mine whose region changed moves,
    with its alerts, and the move is recorded with ``actor`` (migration 013).
    """
    for attempt in range(_DEADLOCK_RETRIES):
        try:
            return await _load(conn, reg, actor)
        except asyncpg.DeadlockDetectedError:
            if attempt == _DEADLOCK_RETRIES - 1:
                raise
    raise AssertionError("unreachable")


async def _load(conn: Conn, reg: RegistryDoc, actor: str | None) -> LoadReport:
    async with conn.transaction():
        await _set_actor(conn, actor)
        # Parents first: sort by level so a city never precedes its province.
        for region in sorted(reg.regions, key=lambda r: (r.code[2:] != "0000", r.code[4:] != "00", r.code)):
            await conn.execute(
                """INSERT INTO region (code, name, level, parent_code) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name""",
                region.code,
                region.name,
                region_level_of(region.code).value,
                region_parent(region.code),
            )
        sensors = 0
        seen: list[str] = []
        for mine in reg.mines:
            mine_id = await conn.fetchval(
                """INSERT INTO mine (code, name, kind, region_code, evacuation) VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,
                       region_code = EXCLUDED.region_code, evacuation = EXCLUDED.evacuation, updated_at = now()
                   RETURNING id""",
                mine.code,
                mine.name,
                mine.kind.value,
                mine.region,
                mine.evacuation,
            )
            for site in mine.sites:
                site_id = await conn.fetchval(
                    """INSERT INTO site (code, mine_id, name, kind, height_m, crest_elevation_m, facility)
                       VALUES ($1, $2, $3, $4, $5, $6, $7)
                       ON CONFLICT (code) DO UPDATE SET mine_id = EXCLUDED.mine_id, name = EXCLUDED.name,
                           kind = EXCLUDED.kind, height_m = EXCLUDED.height_m,
                           crest_elevation_m = EXCLUDED.crest_elevation_m, facility = EXCLUDED.facility,
                           updated_at = now()
                       RETURNING id""",
                    site.code,
                    mine_id,
                    site.name,
                    site.kind.value,
                    site.height_m,
                    site.crest_elevation_m,
                    site.facility,
                )
                rows = [
                    (
                        mine_id,
                        site_id,
                        s.code,
                        s.kind.value,
                        s.name,
                        list(sensor_channels(s)),
                        s.interval_s,
                        json.dumps(s.baseline),
                        json.dumps({k: v.model_dump() for k, v in s.thresholds.items()}),
                    )
                    for s in site.sensors
                ]
                await conn.executemany(
                    """INSERT INTO sensor (mine_id, site_id, code, kind, name, channels, interval_s, baseline, thresholds)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb)
                       ON CONFLICT (mine_id, code) DO UPDATE SET site_id = EXCLUDED.site_id, kind = EXCLUDED.kind,
                           name = EXCLUDED.name, channels = EXCLUDED.channels, interval_s = EXCLUDED.interval_s,
                           baseline = EXCLUDED.baseline, thresholds = EXCLUDED.thresholds, updated_at = now()""",
                    rows,
                )
                sensors += len(rows)
                seen.extend(f"{mine.code}/{s.code}" for s in site.sensors)
        existing = await conn.fetch(
            "SELECT m.code || '/' || s.code AS key FROM sensor s JOIN mine m ON m.id = s.mine_id"
        )
        missing = sorted({r["key"] for r in existing} - set(seen))
    return LoadReport(
        regions=len(reg.regions),
        mines=len(reg.mines),
        sites=sum(len(m.sites) for m in reg.mines),
        sensors=sensors,
        not_in_file=tuple(missing),
    )


_SENSOR_ROWS = """
SELECT s.id, s.code, m.code AS mine_code, s.mine_id, s.site_id, m.region_code, s.kind, s.channels,
       s.interval_s, s.baseline::text AS baseline, s.thresholds::text AS thresholds,
       si.height_m, si.crest_elevation_m
FROM sensor s JOIN mine m ON m.id = s.mine_id JOIN site si ON si.id = s.site_id
"""


async def fetch_sensors(conn: Conn, ids: list[int] | None = None) -> list[SensorRow]:
    if ids is None:
        records = await conn.fetch(_SENSOR_ROWS + " ORDER BY s.id")
    else:
        records = await conn.fetch(_SENSOR_ROWS + " WHERE s.id = ANY($1::int[]) ORDER BY s.id", ids)
    return [_sensor_row(r) for r in records]


def _sensor_row(r: asyncpg.Record) -> SensorRow:
    kind = SensorKind(r["kind"])
    quantities = THRESHOLD_QUANTITIES[kind]
    thresholds = {
        name: ThresholdSet(quantities[name], v.get("blue"), v.get("yellow"), v.get("orange"), v.get("red"))
        for name, v in json.loads(r["thresholds"]).items()
        if name in quantities
    }
    return SensorRow(
        id=r["id"],
        code=r["code"],
        mine_code=r["mine_code"],
        mine_id=r["mine_id"],
        site_id=r["site_id"],
        region_code=r["region_code"],
        kind=kind,
        channels=tuple(r["channels"]),
        interval_s=r["interval_s"],
        baseline={k: float(v) for k, v in json.loads(r["baseline"]).items()},
        thresholds=thresholds,
        site_height_m=r["height_m"],
        crest_elevation_m=r["crest_elevation_m"],
    )


# --- moves -------------------------------------------------------------------------------


class MoveError(Exception):
    """A move that cannot be made (unknown mine or region); the message says which."""


@dataclass(frozen=True, slots=True)
class Move:
    id: int
    mine_code: str
    from_region: str
    to_region: str
    actor: str
    moved_at: datetime
    open_alerts: int


_MOVE_COLS = "id, mine_code, from_region, to_region, actor, moved_at, open_alerts"


def _move(r: asyncpg.Record) -> Move:
    return Move(r["id"], r["mine_code"], r["from_region"], r["to_region"], r["actor"], r["moved_at"], r["open_alerts"])


async def _set_actor(conn: Conn, actor: str | None) -> None:
    """Name who is acting for the rest of the transaction (read by the move trigger)."""
    if actor:
        await conn.execute("SELECT set_config('slopewatch.actor', $1, true)", actor[:200])


async def move_mine(conn: Conn, mine_code: str, region_code: str, *, actor: str) -> Move | None:
    """Move a mine to another node of the region tree; its alerts follow it in the same
    transaction. Returns the recorded move, or None if the mine is already there."""
    for attempt in range(_DEADLOCK_RETRIES):
        try:
            return await _move_once(conn, mine_code, region_code, actor)
        except asyncpg.DeadlockDetectedError:
            if attempt == _DEADLOCK_RETRIES - 1:
                raise
    raise AssertionError("unreachable")


async def _move_once(conn: Conn, mine_code: str, region_code: str, actor: str) -> Move | None:
    async with conn.transaction():
        await _set_actor(conn, actor)
        if await conn.fetchval("SELECT level FROM region WHERE code = $1", region_code) is None:
            raise MoveError(f"region {region_code} is not in the registry")
        before = await conn.fetchval("SELECT region_code FROM mine WHERE code = $1 FOR NO KEY UPDATE", mine_code)
        if before is None:
            raise MoveError(f"mine {mine_code!r} is not in the registry")
        if before == region_code:
            return None
        await conn.execute(
            "UPDATE mine SET region_code = $2, updated_at = now() WHERE code = $1", mine_code, region_code
        )
        row = await conn.fetchrow(
            f"SELECT {_MOVE_COLS} FROM mine_move WHERE mine_code = $1 ORDER BY id DESC LIMIT 1", mine_code
        )
    assert row is not None
    return _move(row)


async def moves(conn: Conn, mine_code: str) -> list[Move]:
    """The audited moves of a mine, oldest first."""
    rows = await conn.fetch(
        f"""SELECT {_MOVE_COLS} FROM mine_move
            WHERE mine_id = (SELECT id FROM mine WHERE code = $1) ORDER BY id""",
        mine_code,
    )
    return [_move(r) for r in rows]
