"""Facility levels by the GB 39496 roll-up (points → monitored item → facility), from the
open alerts of each point; the rule comes from settings (analytics.facilities.rollup_rule)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from analytics.rollup import RollupRule, SiteRollup, roll_up
from core.model import MONITORING_ITEM, Level, SensorKind


def site_rollups(rows: Iterable[Mapping[str, object]], rule: RollupRule) -> dict[tuple[str, str], SiteRollup]:
    """(mine code, facility code) -> the facility's roll-up, from rows of db.queries.point_levels
    (a facility is a site, or the sites that share a registry facility code)."""
    points: dict[tuple[str, str], dict[str, dict[str, Level]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        item = MONITORING_ITEM[SensorKind(str(r["kind"]))]
        points[(str(r["mine_code"]), str(r["facility"]))][item][str(r["sensor_code"])] = Level(int(str(r["level"])))
    return {key: roll_up(items, site=key[1], rule=rule) for key, items in points.items()}
