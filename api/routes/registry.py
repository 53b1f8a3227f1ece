"""Regions, mines, sites and sensors."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from analytics.facilities import rollup_rule
from api.auth import PrincipalDep, narrow, visible_mine
from api.deps import ConnDep, SettingsDep
from api.errors import NotFound
from api.levels import site_rollups
from api.schemas import Mine, Page, Region, Rollup, RollupItem, Sensor, Site, decode_cursor, encode_cursor
from api.scope import MineQuery, RegionQuery
from core.model import Level, MineKind, SensorKind, region_prefix
from core.wire import CODE_PATTERN
from db import queries, registry

router = APIRouter(tags=["registry"])

CodePath = Annotated[str, Path(pattern=CODE_PATTERN.pattern, max_length=64)]
Limit = Annotated[int, Query(ge=1, le=1000, description="page size")]
Cursor = Annotated[str | None, Query(max_length=512, description="next_cursor of the previous page")]


def _level(value: int | None) -> str | None:
    return Level(value).label if value else None


@router.get("/regions", response_model=list[Region], summary="Regions of the subtree, with mine counts")
async def list_regions(conn: ConnDep, who: PrincipalDep, region: RegionQuery = None) -> list[Region]:
    scope = await narrow(conn, who, region=region)
    if scope.mine_code is not None:
        # A mine's token sees the regions above its mine (its county, city, province).
        rows = [r for r in await queries.regions(conn, "") if scope.prefix.startswith(region_prefix(r["code"]))]
        return [Region(**{**dict(r), "mines": 1}) for r in rows]
    return [Region(**dict(r)) for r in await queries.regions(conn, scope.prefix)]


@router.get("/mines", response_model=Page[Mine], summary="Mines in a region subtree")
async def list_mines(
    conn: ConnDep,
    who: PrincipalDep,
    region: RegionQuery = None,
    kind: MineKind | None = None,
    cursor: Cursor = None,
    limit: Limit = 100,
) -> Page[Mine]:
    scope = await narrow(conn, who, region=region)
    after = decode_cursor(cursor, 1)[0] if cursor else None
    rows = await queries.mines(
        conn,
        prefix=scope.prefix,
        mine_code=scope.mine_code,
        kind=kind.value if kind else None,
        after=after,
        limit=limit,
    )
    items = [_mine(r) for r in rows]
    return Page(items=items, next_cursor=encode_cursor(items[-1].code) if len(items) == limit else None)


@router.get("/mines/{mine}", response_model=Mine)
async def get_mine(conn: ConnDep, who: PrincipalDep, mine: CodePath) -> Mine:
    await visible_mine(conn, who, mine)
    row = await queries.mine(conn, mine)
    if row is None:
        raise NotFound(f"mine {mine!r} is not in the registry")
    return _mine(row)


class MineMove(BaseModel):
    """An audited move of a mine to another node of the region tree (its alerts moved with it)."""

    id: int
    mine_code: str
    from_region: str
    to_region: str
    actor: str
    moved_at: datetime
    open_alerts: int = Field(description="open alerts that moved with the mine")


@router.get(
    "/mines/{mine}/moves",
    response_model=list[MineMove],
    summary="The mine's moves between regions: who, when, from and to (oldest first)",
)
async def list_mine_moves(conn: ConnDep, who: PrincipalDep, mine: CodePath) -> list[MineMove]:
    await visible_mine(conn, who, mine)
    return [MineMove(**dataclasses.asdict(m)) for m in await registry.moves(conn, mine)]


@router.get("/mines/{mine}/sites", response_model=list[Site])
async def list_sites(conn: ConnDep, who: PrincipalDep, settings: SettingsDep, mine: CodePath) -> list[Site]:
    await visible_mine(conn, who, mine)
    points = [dict(r) for r in await queries.point_levels(conn, prefix="", mine_code=mine)]
    rollups = site_rollups(points, rollup_rule(settings))
    out = []
    for r in await queries.sites(conn, mine):
        rolled = rollups.get((mine, r["facility"]))
        level = Rollup(
            level=rolled.level.label if rolled else "none",
            reason_en=rolled.site.reason_en if rolled else "no point has an active alert",
            reason_zh=rolled.site.reason_zh if rolled else "无测点处于预警状态",
            items=[
                RollupItem(item=i.name, level=i.level.label, reason_en=i.reason_en, reason_zh=i.reason_zh)
                for i in (rolled.items if rolled else ())
            ],
        )
        out.append(Site(**{**dict(r), "worst_open_level": _level(r["worst_open_level"]), "rollup": level}))
    return out


@router.get("/sensors", response_model=Page[Sensor], summary="Sensors, filtered by region, mine, site, kind")
async def list_sensors(
    conn: ConnDep,
    who: PrincipalDep,
    region: RegionQuery = None,
    mine: MineQuery = None,
    site: Annotated[str | None, Query(pattern=CODE_PATTERN.pattern)] = None,
    kind: SensorKind | None = None,
    cursor: Cursor = None,
    limit: Limit = 200,
) -> Page[Sensor]:
    scope = await narrow(conn, who, region=region, mine=mine)
    after = tuple(decode_cursor(cursor, 2)) if cursor else None
    rows = await queries.sensors(
        conn,
        prefix=scope.prefix,
        mine_code=scope.mine_code,
        site_code=site,
        kind=kind.value if kind else None,
        after=(str(after[0]), str(after[1])) if after else None,
        limit=limit,
    )
    items = [sensor_schema(r) for r in rows]
    last = items[-1] if items else None
    return Page(
        items=items,
        next_cursor=encode_cursor(last.mine_code, last.code) if last and len(items) == limit else None,
    )


@router.get("/mines/{mine}/sensors/{sensor}", response_model=Sensor)
async def get_sensor(conn: ConnDep, who: PrincipalDep, mine: CodePath, sensor: CodePath) -> Sensor:
    await visible_mine(conn, who, mine)
    row = await queries.sensor(conn, mine, sensor)
    if row is None:
        raise NotFound(f"sensor {sensor!r} is not registered under mine {mine!r}")
    return sensor_schema(row)


def _mine(r: object) -> Mine:
    d = dict(r)  # type: ignore[call-overload]
    d["worst_open_level"] = _level(d["worst_open_level"])
    return Mine(**d)


def sensor_schema(r: object) -> Sensor:
    d = dict(r)  # type: ignore[call-overload]
    last = d["last_ts"]
    silent = last is None or time.time() - last.timestamp() > 3 * d["interval_s"]
    return Sensor(
        mine_code=d["mine_code"],
        site_code=d["site_code"],
        code=d["code"],
        kind=d["kind"],
        name=d["name"],
        channels=list(d["channels"]),
        interval_s=d["interval_s"],
        baseline=json.loads(d["baseline"]),
        thresholds=json.loads(d["thresholds"]),
        last_reading_at=last,
        silent=silent,
    )
