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


def test_cross_item_conversion_carries_lower_items_upward() -> None:
    from analytics.rollup import convert_items

    assert convert_items("f", pts(OR, OR)).level is R
    three_yellow_one_orange = convert_items("f", pts(Y, Y, Y, OR))
    assert three_yellow_one_orange.level is R  # the yellows count as a second orange
    assert three_yellow_one_orange.reason_en == "3 items at yellow count as 1 at orange; 2 at orange → red"
    assert three_yellow_one_orange.decisive == ("P1", "P2", "P3", "P4")
    # item by item, at or above: 4 at yellow+ → orange, one orange is not two
    assert roll_group("f", pts(Y, Y, Y, OR)).level is OR
    assert convert_items("f", pts(B, B, B, B, Y, Y)).level is OR  # 4 blue = 1 yellow; 3 yellow → orange
    assert convert_items("f", pts(B, B, Y)).level is Y  # nothing converts: the worst item
    assert convert_items("f", pts(R, B)).by_count is N
    assert convert_items("f", {}).level is N
    off = RollupCounts(blue_to_yellow=4, yellow_to_orange=3, orange_to_red=0)
    assert convert_items("f", pts(OR, OR, OR), counts=off).level is OR


def test_the_cross_item_mode_is_chosen_by_the_rule() -> None:
    from analytics.rollup import CrossItem, RollupRule

    items = {"a": pts(Y), "b": pts(Y), "c": pts(Y), "d": pts(OR)}
    assert roll_up(items, rule=RollupRule(cross_item=CrossItem.CONVERT)).level is R
    assert roll_up(items, rule=RollupRule(cross_item=CrossItem.AT_OR_ABOVE)).level is OR


def _facility(points_by_item: dict[str, dict[str, Level]]) -> tuple[Level, dict[str, object]]:
    from analytics.rollup import RollupRule, facility_result

    rule = RollupRule()
    sites = {p: ("DAM" if i != "pond_level" else "POND") for i, ps in points_by_item.items() for p in ps}
    res = facility_result(
        "TSF", roll_up(points_by_item, site="TSF", rule=rule), at_s=0.0, sites=("DAM", "POND"),
        point_sites=sites, rule=rule,
    )  # fmt: skip
    assert res.rule == "rollup.facility"
    return res.level, dict(res.evidence)


def test_the_facility_alert_says_what_the_points_alone_do_not() -> None:
    # one red point: its own alert carries the level, no facility alert
    assert _facility({"surface_displacement": {"GNSS-03": R, "GNSS-01": B}})[0] is N
    # two orange points of one item: red by points → item
    level, ev = _facility({"phreatic_line": {"PZ-01": OR, "PZ-02": OR, "PZ-03": N}})
    assert level is R
    assert ev["applied"] == "points→item"
    assert ev["points"] == ["DAM/PZ-01 (phreatic_line)", "DAM/PZ-02 (phreatic_line)"]
    # orange items on two sites: red by the cross-item rule
    level, ev = _facility({"phreatic_line": {"PZ-01": OR}, "pond_level": {"PL-01": OR}})
    assert level is R
    assert ev["applied"] == "items→facility (convert)"
    assert ev["points"] == ["DAM/PZ-01 (phreatic_line)", "POND/PL-01 (pond_level)"]
    # two red points: still the count's level (a person sees the roll-up reason)
    assert _facility({"phreatic_line": {"PZ-01": R, "PZ-02": R}})[0] is R
    # 4 blue points make a yellow item, but another item's orange point is worse: none
    assert _facility({"surface_displacement": pts(B, B, B, B), "phreatic_line": {"PZ-01": OR}})[0] is N
