"""health.ingest_workers as a pure rule: the count of live workers against the expected one."""

from __future__ import annotations

from analytics.ingest_group import group_membership
from core.model import Level


def test_the_expected_number_alive_is_ok_whatever_the_silent_ones() -> None:
    check = group_membership(["w1", "w2"], ["old"], expected=2, shared_group="g", now_s=0.0)
    assert check.ok
    assert check.level is Level.NONE
    assert check.evidence["alive"] == 2
    assert check.evidence["silent_client_ids"] == ["old"]


def test_fewer_alive_names_the_silent_workers() -> None:
    check = group_membership(["w1"], ["w3", "w2"], expected=2, shared_group="g", now_s=0.0)
    assert not check.ok
    assert check.level is Level.ORANGE, "a missing worker's share of readings and alarms comes late"
    assert "Only 1 of 2" in check.explanation_en
    assert "w2, w3" in check.explanation_en
    assert "1/2" in check.explanation_zh


def test_more_alive_than_expected_is_not_ok() -> None:
    check = group_membership(["w1", "w2", "w3"], [], expected=2, shared_group="g", now_s=0.0)
    assert not check.ok
    assert check.level is Level.BLUE, "nothing is lost, the deployment is not the planned one"
    assert check.evidence["alive_client_ids"] == ["w1", "w2", "w3"]
    assert "3 ingest workers are alive where 2 are expected" in check.explanation_en


def test_none_alive_and_none_ever_seen() -> None:
    check = group_membership([], [], expected=1, shared_group="g", now_s=0.0)
    assert not check.ok
    assert check.level is Level.ORANGE
    assert "(never seen)" in check.explanation_en
