"""health.seq, the pure rule: holes in a device's seq numbers make a blue health alert that
says how many readings are missing and where they were lost."""

from __future__ import annotations

from analytics.seq_gaps import RULE, seq_gaps
from core.model import Level


def test_no_hole_is_no_alert() -> None:
    result = seq_gaps(0, 0, None, now_s=1000.0, window_s=3600.0)
    assert result.rule == RULE == "health.seq"
    assert result.level is Level.NONE
    assert result.at_s == 1000.0
    assert result.evidence["gaps"] == 0


def test_holes_lost_before_ingest_are_blue_and_say_so() -> None:
    result = seq_gaps(2, 3, 900.0, now_s=1000.0, window_s=6 * 3600.0, examples=((14, 16), (6, 9)))
    assert result.level is Level.BLUE
    assert result.evidence["gaps"] == 2
    assert result.evidence["readings_missing"] == 3
    assert result.evidence["last_gap_at_s"] == 900.0
    assert result.evidence["holes"] == ["14..16", "6..9"]
    assert result.evidence["readings_refused_by_ingest"] == 0
    assert "3 reading(s) are missing in 2 hole(s)" in result.explanation_en
    assert "last 6 h" in result.explanation_en
    assert "seq 14..16" in result.explanation_en
    assert "between the device and ingest" in result.explanation_en
    assert "共缺 3 个读数" in result.explanation_zh


def test_holes_with_refusals_point_at_the_dead_letters() -> None:
    result = seq_gaps(1, 1, 900.0, now_s=1000.0, window_s=3600.0, refused=1)
    assert result.level is Level.BLUE
    assert result.evidence["readings_refused_by_ingest"] == 1
    assert "dead letters" in result.explanation_en
    assert "死信" in result.explanation_zh
    assert "e.g." not in result.explanation_en  # no example was given
