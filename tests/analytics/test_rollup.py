"""Roll-up points → item → site (GB 39496): counts, worst member, reasons, configurable counts."""

from __future__ import annotations

from analytics.rollup import GB39496, RollupCounts, roll_group, roll_up
from core.model import Level

B, Y, OR, R, N = Level.BLUE, Level.YELLOW, Level.ORANGE, Level.RED, Level.NONE


def pts(*levels: Level) -> dict[str, Level]:
    return {f"P{i + 1}": lv for i, lv in enumerate(levels)}


def test_the_three_gb39496_steps() -> None:
    assert roll_group("i", pts(B, B, B, B)).level is Y
    assert roll_group("i", pts(Y, Y, Y)).level is OR
    assert roll_group("i", pts(OR, OR)).level is R


def test_one_below_each_count_keeps_the_worst_point() -> None:
    assert roll_group("i", pts(B, B, B, N)).level is B
    assert roll_group("i", pts(Y, Y, B)).level is Y
    assert roll_group("i", pts(OR, Y, Y)).level is OR  # 3 at yellow or above: orange either way
    assert roll_group("i", pts(OR, B)).level is OR


def test_points_count_at_their_level_or_above() -> None:
    g = roll_group("i", pts(B, B, Y, OR))
    assert g.level is OR  # 4 at blue+ → yellow, but one point is already orange
    assert g.at_or_above == (4, 2, 1, 0)
    g = roll_group("i", pts(Y, Y, OR))
    assert g.level is OR
    assert g.reason_en == "point P3 at orange"  # the count gives no more than the worst point


def test_a_single_red_point_makes_a_red_item_and_says_which() -> None:
    g = roll_group("surface displacement", {"GNSS-03": R, "GNSS-01": N})
    assert g.level is R
    assert g.decisive == ("GNSS-03",)
    assert g.reason_en == "point GNSS-03 at red"
    assert "GNSS-03" in g.reason_zh
    assert "红色" in g.reason_zh


def test_reason_names_the_count_and_the_decisive_points() -> None:
    g = roll_group("i", {"A": Y, "B": Y, "C": Y, "D": N})
    assert g.level is OR
    assert g.reason_en == "3 points at yellow or above → orange"
    assert g.reason_zh == "3 个测点达到黄色(警示)及以上 → 橙色(警戒)"
    assert g.decisive == ("A", "B", "C")


def test_empty_and_quiet_groups_are_none() -> None:
    assert roll_group("i", {}).level is N
    g = roll_group("i", pts(N, N))
    assert g.level is N
    assert g.reason_en == "no point above none"


def test_items_roll_up_to_the_site_the_same_way() -> None:
    site = roll_up(
        {
            "surface displacement": pts(Y, Y, Y),  # orange
            "phreatic line": pts(OR, OR),  # red
            "pond level": pts(B),  # blue
        },
        site="QINGSHANGOU-TSF-DAM",
    )
    assert [i.level for i in site.items] == [OR, R, B]
    assert site.level is R
    assert site.site.name == "QINGSHANGOU-TSF-DAM"
    two_orange = roll_up({"a": pts(Y, Y, Y), "b": pts(Y, Y, Y), "c": pts(N)})
    assert two_orange.level is R
    assert two_orange.site.reason_en == "2 items at orange → red"
    assert two_orange.site.decisive == ("a", "b")


def test_counts_are_configurable_per_stage() -> None:
    strict = RollupCounts(blue_to_yellow=2, yellow_to_orange=2, orange_to_red=0)
    assert roll_group("i", pts(B, B), counts=strict).level is Y
    assert roll_group("i", pts(OR, OR, OR), counts=strict).level is OR  # orange → red disabled
    site = roll_up({"a": pts(B, B), "b": pts(B, B)}, point_counts=strict, item_counts=GB39496)
    assert [i.level for i in site.items] == [Y, Y]
    assert site.level is Y  # two yellow items are not three
