"""The roll-up's I/O shell: after each analysis cycle, roll the open point alerts up to
their facilities (GB 39496, analytics.rollup) and keep one ``rollup.facility`` alert per
facility, through the same state machine, tables and notifications as point alerts.

A facility is the sites sharing a registry ``facility`` code (a tailings pond's dam, pond
and beach), or a site of its own. The facility alert's site is the site whose code is the
facility's, else the facility's first site by code.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

from asyncpg import Record

from analytics.rollup import FACILITY_RULE, CrossItem, RollupCounts, RollupRule, facility_result, roll_up
from analytics.types import RuleResult
from core.model import MONITORING_ITEM, Level, SensorKind
from core.settings import Settings
from db import alerts as store
from db import facilities as db
from db.pool import Conn


@dataclass(slots=True)
class _Facility:
    points: dict[str, dict[str, Level]] = field(default_factory=lambda: defaultdict(dict))
    point_sites: dict[str, str] = field(default_factory=dict)
    at_s: float | None = None


def subject_of(facility: str) -> str:
    return f"facility:{facility}"


def rollup_rule(settings: Settings) -> RollupRule:
    """The roll-up rule the settings configure (SLOPEWATCH_ROLLUP_*)."""
    return RollupRule(
        points=RollupCounts(
            settings.rollup_blue_to_yellow, settings.rollup_yellow_to_orange, settings.rollup_orange_to_red
        ),
        items=RollupCounts(
            settings.rollup_items_blue_to_yellow,
            settings.rollup_items_yellow_to_orange,
            settings.rollup_items_orange_to_red,
        ),
        cross_item=CrossItem(settings.rollup_cross_item),
    )


async def facility_results(
    conn: Conn, rule: RollupRule, *, now_s: float | None = None
) -> list[tuple[store.Subject, RuleResult]]:
    """The roll-up result of every facility whose alert has something to do: a level to
    raise, or an active facility alert (so it can come down)."""
    points = await db.point_levels(conn)
    still_open = await db.active_facility_alerts(conn, FACILITY_RULE)
    found: dict[tuple[int, str], _Facility] = defaultdict(_Facility)
    for r in points:
        f = found[(r["mine_id"], r["facility"])]
        f.points[MONITORING_ITEM[SensorKind(r["kind"])]][r["sensor_code"]] = Level(r["level"])
        f.point_sites[r["sensor_code"]] = r["site_code"]
        f.at_s = max(f.at_s or 0.0, r["at"].timestamp())
    active = {(r["mine_id"], r["facility"]) for r in still_open}
    for key in active:
        found.setdefault(key, _Facility())  # evaluated, so it can come down
    if not found:
        return []
    sites: dict[tuple[int, str], list[Record]] = defaultdict(list)
    for r in await db.sites_of(conn, sorted({mine_id for mine_id, _ in found})):
        sites[(r["mine_id"], r["facility"])].append(r)
    now = time.time() if now_s is None else now_s
    out: list[tuple[store.Subject, RuleResult]] = []
    for (mine_id, code), f in sorted(found.items()):
        members = sites.get((mine_id, code))
        if not members:
            continue  # the registry no longer has the facility; its alert waits for a person
        home = next((s for s in members if s["code"] == code), members[0])
        subject = store.Subject(home["id"], mine_id, home["region_code"], subject=subject_of(code))
        rolled = roll_up(f.points, site=code, rule=rule)
        result = facility_result(
            code,
            rolled,
            at_s=f.at_s if f.at_s is not None else now,
            sites=tuple(s["code"] for s in members),
            point_sites=f.point_sites,
            rule=rule,
        )
        if result.level is not Level.NONE or (mine_id, code) in active:
            out.append((subject, result))
    return out
