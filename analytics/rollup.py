"""Roll-up of warning levels, points → monitored item → facility (GB 39496-2020).

Within one monitored item (e.g. the surface displacement of one dam), enough
points at one level raise the item one level above it: by default 4 points at
blue make the item yellow, 3 at yellow make it orange, 2 at orange make it red.
A point counts at a level when it is at that level *or above* (2 blue and 2
yellow points are 4 points at blue), and the item is never below its worst
point: one red point makes a red item.

Items roll up to the facility (a whole tailings pond, dam, pond and beach
together; a whole slope) by the cross-item rule, which the standard words as a
conversion (:attr:`CrossItem.CONVERT`, the default): 4 blue items count as one
yellow item, 3 yellow items (converted ones included) as one orange item, 2
orange items make the facility red; the text breaks off, so the counts and the
mode are configurable, and :attr:`CrossItem.AT_OR_ABOVE` rolls items exactly
like points.

Pure: levels in, frozen dataclasses out; the counts are configurable per stage.

>>> site = roll_up({"surface displacement": {"GNSS-01": Level.YELLOW, "GNSS-02": Level.YELLOW,
...                                          "GNSS-03": Level.YELLOW}})
>>> site.items[0].level.label, site.items[0].reason_en
('orange', '3 points at yellow or above → orange')
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from analytics.types import RuleResult
from core.model import Level


@dataclass(frozen=True, slots=True)
class RollupCounts:
    """How many members at (or above) a level raise the group one level higher.

    ``0`` disables that step. Defaults: GB 39496 (4 blue → yellow, 3 yellow → orange,
    2 orange → red).
    """

    blue_to_yellow: int = 4
    yellow_to_orange: int = 3
    orange_to_red: int = 2

    def steps(self) -> tuple[tuple[Level, int, Level], ...]:
        """``(level counted, members needed, level given)``, highest first."""
        return (
            (Level.ORANGE, self.orange_to_red, Level.RED),
            (Level.YELLOW, self.yellow_to_orange, Level.ORANGE),
            (Level.BLUE, self.blue_to_yellow, Level.YELLOW),
        )


GB39496: Final = RollupCounts()


class CrossItem(enum.StrEnum):
    """How items roll up to the facility."""

    #: 4 blue items count as one yellow item, 3 yellow as one orange, 2 orange make red;
    #: each item counts once, at its own level, and converted items carry upward.
    CONVERT = "convert"
    #: like points: an item counts at its level and every level below it.
    AT_OR_ABOVE = "at_or_above"


@dataclass(frozen=True, slots=True)
class RollupRule:
    """The whole roll-up rule: points → item counts, items → facility counts and mode."""

    points: RollupCounts = GB39496
    items: RollupCounts = GB39496
    cross_item: CrossItem = CrossItem.CONVERT

    def describe(self) -> str:
        p, i = self.points, self.items
        return (
            f"points→item {p.blue_to_yellow}/{p.yellow_to_orange}/{p.orange_to_red} at or above; "
            f"items→facility {i.blue_to_yellow}/{i.yellow_to_orange}/{i.orange_to_red} {self.cross_item.value}"
        )


@dataclass(frozen=True, slots=True)
class GroupLevel:
    """The level of one group (an item from its points, or the site from its items).

    level: the group's level; reason_en / reason_zh: one phrase saying why, e.g.
    "3 points at yellow or above → orange"; at_or_above: members at or above each
    warning level, blue first (4 numbers); decisive: the members that set the level,
    sorted by name; by_count: the level the counting rule gives by itself
    (``Level.NONE`` when no count is met), which the level is never below.
    """

    name: str
    level: Level
    reason_en: str
    reason_zh: str
    at_or_above: tuple[int, int, int, int]
    decisive: tuple[str, ...]
    by_count: Level = Level.NONE


@dataclass(frozen=True, slots=True)
class SiteRollup:
    """The site's level (from its items) and every item's level (from its points),
    items in the order given."""

    site: GroupLevel
    items: tuple[GroupLevel, ...]

    @property
    def level(self) -> Level:
        return self.site.level


def roll_up(
    points_by_item: Mapping[str, Mapping[str, Level]],
    *,
    site: str = "site",
    point_counts: RollupCounts = GB39496,
    item_counts: RollupCounts = GB39496,
    cross_item: CrossItem = CrossItem.CONVERT,
    rule: RollupRule | None = None,
) -> SiteRollup:
    """Levels of every item and of the site (or facility).

    points_by_item: item name -> (point name -> that point's level, the highest open
    alert of the point within the item; ``Level.NONE`` for a quiet point).
    point_counts: the points → item rule; item_counts and cross_item: the items → site rule;
    rule: all three at once (overrides them).
    """
    if rule is not None:
        point_counts, item_counts, cross_item = rule.points, rule.items, rule.cross_item
    items = tuple(
        roll_group(name, points, counts=point_counts, member=("point", "points", "测点"))
        for name, points in points_by_item.items()
    )
    levels = {i.name: i.level for i in items}
    if cross_item is CrossItem.CONVERT:
        top = convert_items(site, levels, counts=item_counts)
    else:
        top = roll_group(site, levels, counts=item_counts, member=("item", "items", "监测项目"))
    return SiteRollup(top, items)


def convert_items(name: str, levels: Mapping[str, Level], *, counts: RollupCounts = GB39496) -> GroupLevel:
    """The cross-item rule read as a conversion: each item counts once at its own level;
    ``blue_to_yellow`` blue items count as one yellow item, ``yellow_to_orange`` yellow
    items (converted ones included) as one orange item, ``orange_to_red`` orange items
    (converted ones included) make the group red. A count of 0 disables that step.

    >>> g = convert_items("pond", {"a": Level.YELLOW, "b": Level.YELLOW, "c": Level.YELLOW, "d": Level.ORANGE})
    >>> g.level.label, g.reason_en
    ('red', '3 items at yellow count as 1 at orange; 2 at orange → red')
    """
    at = tuple(sum(1 for lv in levels.values() if lv >= w) for w in (Level.BLUE, Level.YELLOW, Level.ORANGE, Level.RED))
    at_or_above = (at[0], at[1], at[2], at[3])
    worst = max(levels.values(), default=Level.NONE)
    exact = {
        w: sum(1 for lv in levels.values() if lv == w) for w in (Level.BLUE, Level.YELLOW, Level.ORANGE, Level.RED)
    }
    # Walk up: what each level holds (its own items plus what converted into it).
    held = exact[Level.BLUE]
    chain: list[tuple[Level, int, Level, int]] = []  # (from, how many held there, to, units carried)
    by_count = Level.NONE
    for lower, needed, higher in ((Level.BLUE, counts.blue_to_yellow, Level.YELLOW),
                                  (Level.YELLOW, counts.yellow_to_orange, Level.ORANGE),
                                  (Level.ORANGE, counts.orange_to_red, Level.RED)):  # fmt: skip
        carried = held // needed if needed > 0 else 0
        if carried:
            if by_count is not lower:
                chain.clear()  # the chain that reaches ``higher`` starts here
            chain.append((lower, held, higher, carried))
            by_count = higher
        held = exact[higher] + carried
    level = max(worst, by_count)
    if level is Level.NONE:
        return GroupLevel(name, Level.NONE, "no item above none", "无监测项目达到预警级别", at_or_above, ())
    if by_count > worst:
        lowest = chain[0][0]
        decisive = tuple(sorted(k for k, lv in levels.items() if lv >= lowest))
        en_parts: list[str] = []
        zh_parts: list[str] = []
        for frm, n, to, carried in chain:
            if to is by_count:
                en_parts.append(
                    f"{n} at {frm.label} → {to.label}" if en_parts else f"{n} items at {frm.label} → {to.label}"
                )
                zh_parts.append(f"{n} 个{frm.label_zh}监测项目 → {to.label_zh}")
            else:
                word = "items" if not en_parts and n != 1 else ("item" if not en_parts else "")
                en_parts.append(f"{n} {word} at {frm.label} count as {carried} at {to.label}".replace("  ", " "))
                zh_parts.append(f"{n} 个{frm.label_zh}监测项目折算为 {carried} 个{to.label_zh}")
        return GroupLevel(name, by_count, "; ".join(en_parts), ";".join(zh_parts), at_or_above, decisive, by_count)
    decisive = tuple(sorted(k for k, lv in levels.items() if lv == worst))
    if len(decisive) == 1:
        en, zh = f"item {decisive[0]} at {worst.label}", f"监测项目 {decisive[0]} 为{worst.label_zh}"
    else:
        en = f"{len(decisive)} items at {worst.label}, highest"
        zh = f"{len(decisive)} 个监测项目为{worst.label_zh}(最高级别)"
    return GroupLevel(name, worst, en, zh, at_or_above, decisive, by_count)


def roll_group(
    name: str,
    levels: Mapping[str, Level],
    *,
    counts: RollupCounts = GB39496,
    member: tuple[str, str, str] = ("point", "points", "测点"),
) -> GroupLevel:
    """One stage of the roll-up: a group's level from its members' levels.

    member: the member's name in English singular and plural, and in Chinese.
    """
    one, many, zh = member
    at = tuple(sum(1 for lv in levels.values() if lv >= w) for w in (Level.BLUE, Level.YELLOW, Level.ORANGE, Level.RED))
    at_or_above = (at[0], at[1], at[2], at[3])
    worst = max(levels.values(), default=Level.NONE)
    # The count rule: the highest step whose count is met.
    raised = Level.NONE
    step: tuple[Level, int] | None = None
    for counted, needed, gives in counts.steps():
        if needed > 0 and at_or_above[int(counted) - 1] >= needed:
            raised, step = gives, (counted, needed)
            break
    if worst is Level.NONE and raised is Level.NONE:
        return GroupLevel(name, Level.NONE, f"no {one} above none", f"无{zh}达到预警级别", at_or_above, ())
    if raised > worst and step is not None:
        counted, _ = step
        n = at_or_above[int(counted) - 1]
        decisive = tuple(sorted(k for k, lv in levels.items() if lv >= counted))
        word = one if n == 1 else many
        en = f"{n} {word} at {counted.label} or above → {raised.label}"
        zh = f"{n} 个{zh}达到{counted.label_zh}及以上 → {raised.label_zh}"
        return GroupLevel(name, raised, en, zh, at_or_above, decisive, raised)
    decisive = tuple(sorted(k for k, lv in levels.items() if lv == worst))
    n = len(decisive)
    if n == 1:
        en = f"{one} {decisive[0]} at {worst.label}"
        zh = f"{zh} {decisive[0]} 为{worst.label_zh}"
    else:
        en = f"{n} {many} at {worst.label}, highest"
        zh = f"{n} 个{zh}为{worst.label_zh}(最高级别)"
    return GroupLevel(name, worst, en, zh, at_or_above, decisive, raised)


#: The rule of the alerts the roll-up raises on a facility.
FACILITY_RULE: Final = "rollup.facility"

#: Monitored items (core.model.MONITORING_ITEM) in Chinese, for the facility alert's words.
ITEM_ZH: Final = {
    "surface_displacement": "表面位移",
    "internal_displacement": "内部位移",
    "crack": "裂缝",
    "phreatic_line": "浸润线",
    "pond_level": "库水位",
    "dry_beach": "干滩长度",
    "rainfall": "降雨量",
}


def facility_result(
    facility: str,
    rollup: SiteRollup,
    *,
    at_s: float,
    sites: tuple[str, ...],
    point_sites: Mapping[str, str],
    rule: RollupRule,
) -> RuleResult:
    """The facility alert's level and evidence from the facility's roll-up.

    The alert carries the rolled-up level when a counting rule (points → item, or
    items → facility) reaches that level by itself; a facility whose level is just its
    worst single point gets ``Level.NONE`` here, since that point's own alert already
    carries the level (no second alarm for the same fact).
    point_sites: point name -> its site code (evidence); sites: the facility's sites.
    """
    level = rollup.level
    by_count = max((rollup.site.by_count, *(i.by_count for i in rollup.items)), default=Level.NONE)
    alarm = level if level > Level.NONE and by_count >= level else Level.NONE
    if rollup.site.by_count >= level:
        applied = f"items→facility ({rule.cross_item.value})"
        mode_zh = "折算" if rule.cross_item is CrossItem.CONVERT else "同级及以上计数"
        applied_zh = f"监测项目→设施({mode_zh})"
        chosen = [i for i in rollup.items if i.name in rollup.site.decisive]
    else:
        applied, applied_zh = "points→item", "测点→监测项目"
        chosen = [i for i in rollup.items if i.by_count >= level]
    if level is Level.NONE:
        applied, applied_zh = "none", "无"
    points = sorted(
        f"{point_sites.get(p, '?')}/{p} ({i.name})" for i in chosen for p in i.decisive if i.level > Level.NONE
    )
    item_lines_en = [f"{i.name}: {i.level.label} ({i.reason_en})" for i in rollup.items if i.level > Level.NONE]
    item_lines_zh = [
        f"{ITEM_ZH.get(i.name, i.name)}:{i.level.label_zh}({i.reason_zh})" for i in rollup.items if i.level > Level.NONE
    ]
    where = f"{facility} ({', '.join(sites)})"
    if alarm is Level.NONE:
        en = f"GB 39496 roll-up of facility {where}: {level.label}, carried by its points' own alerts"
        zh = f"GB 39496 汇总:设施 {where} 为{level.label_zh},由测点自身的预警体现"
    else:
        top_en = rollup.site.reason_en if applied.startswith("items") else "; ".join(i.reason_en for i in chosen)
        top_zh = rollup.site.reason_zh if applied.startswith("items") else ";".join(i.reason_zh for i in chosen)
        en = f"GB 39496 roll-up: facility {where} is {alarm.label} by {applied}: {top_en}. Items: " + "; ".join(
            item_lines_en
        )
        zh = f"GB 39496 汇总预警:设施 {where} 为{alarm.label_zh}({applied_zh}):{top_zh}。监测项目:" + ";".join(
            item_lines_zh
        )
    evidence: dict[str, float | int | str | bool | list[float] | list[str] | None] = {
        "facility": facility,
        "sites": list(sites),
        "rolled_up_level": level.label,
        "applied": applied,
        "applied_zh": applied_zh,
        "rule": rule.describe(),
        "reason_en": rollup.site.reason_en,
        "reason_zh": rollup.site.reason_zh,
        "items": item_lines_en,
        "items_zh": item_lines_zh,
        "points": points,
    }
    return RuleResult(FACILITY_RULE, alarm, at_s, evidence, en, zh)
