"""Roll-up of warning levels, points → monitored item → site (GB 39496-2020).

Within one monitored item (e.g. the surface displacement of one dam), enough
points at one level raise the item one level above it: by default 4 points at
blue make the item yellow, 3 at yellow make it orange, 2 at orange make it red.
Items roll up to the site the same way. A point counts at a level when it is at
that level *or above* (2 blue and 2 yellow points are 4 points at blue), and the
item is never below its worst point: one red point makes a red item.

Pure: levels in, frozen dataclasses out; the counts are configurable per stage.

>>> site = roll_up({"surface displacement": {"GNSS-01": Level.YELLOW, "GNSS-02": Level.YELLOW,
...                                          "GNSS-03": Level.YELLOW}})
>>> site.items[0].level.label, site.items[0].reason_en
('orange', '3 points at yellow or above → orange')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

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


@dataclass(frozen=True, slots=True)
class GroupLevel:
    """The level of one group (an item from its points, or the site from its items).

    level: the group's level; reason_en / reason_zh: one phrase saying why, e.g.
    "3 points at yellow or above → orange"; at_or_above: members at or above each
    warning level, blue first (4 numbers); decisive: the members that set the level,
    sorted by name.
    """

    name: str
    level: Level
    reason_en: str
    reason_zh: str
    at_or_above: tuple[int, int, int, int]
    decisive: tuple[str, ...]


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
) -> SiteRollup:
    """Levels of every item and of the site.

    points_by_item: item name -> (point name -> that point's level, the highest open
    alert of the point within the item; ``Level.NONE`` for a quiet point).
    point_counts: the points → item rule; item_counts: the items → site rule.
    """
    items = tuple(
        roll_group(name, points, counts=point_counts, member=("point", "points", "测点"))
        for name, points in points_by_item.items()
    )
    top = roll_group(site, {i.name: i.level for i in items}, counts=item_counts, member=("item", "items", "监测项目"))
    return SiteRollup(top, items)


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
        return GroupLevel(name, raised, en, zh, at_or_above, decisive)
    decisive = tuple(sorted(k for k, lv in levels.items() if lv == worst))
    n = len(decisive)
    if n == 1:
        en = f"{one} {decisive[0]} at {worst.label}"
        zh = f"{zh} {decisive[0]} 为{worst.label_zh}"
    else:
        en = f"{n} {many} at {worst.label}, highest"
        zh = f"{n} 个{zh}为{worst.label_zh}(最高级别)"
    return GroupLevel(name, worst, en, zh, at_or_above, decisive)
