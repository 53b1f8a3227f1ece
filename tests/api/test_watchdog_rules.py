"""The watchdog's judgements, pure: dead, behind, starting, ok; a mine offline or a site."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.watchdog import MineMonitoring, analysis_result, judge, offline_result
from core.model import Level
from core.settings import Settings, SettingsError
from db.watchdog import Freshness

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def fresh(
    *, beat_s: float | None, evaluated_s: float | None = 0, stored_s: float | None = 0, waiting_s: float | None = None
) -> Freshness:
    def ago(s: float | None) -> datetime | None:
        return None if s is None else NOW - timedelta(seconds=s)

    return Freshness(NOW, ago(beat_s), ago(evaluated_s), ago(stored_s), ago(waiting_s), 1 if beat_s is not None else 0)


def test_the_analysis_is_dead_behind_starting_or_ok() -> None:
    since = NOW - timedelta(seconds=30)
    assert judge(fresh(beat_s=1), max_lag_s=60, watching_since=since).state == "ok"
    assert judge(fresh(beat_s=61), max_lag_s=60, watching_since=since).state == "dead"
    assert judge(fresh(beat_s=None), max_lag_s=60, watching_since=since).state == "starting"
    assert judge(fresh(beat_s=None), max_lag_s=60, watching_since=NOW - timedelta(seconds=61)).state == "dead"
    behind = judge(fresh(beat_s=1, waiting_s=90), max_lag_s=60, watching_since=since)
    assert behind.state == "behind"
    assert behind.backlog_s == 90
    # measurement-time lag is reported, but a backfill of old readings is not 'behind'
    lagging = judge(fresh(beat_s=1, evaluated_s=7200, stored_s=0), max_lag_s=60, watching_since=since)
    assert (lagging.state, lagging.lag_s) == ("ok", 7200)


def test_the_watchdog_alert_is_orange_while_dead_or_behind() -> None:
    since = NOW - timedelta(seconds=30)
    for f, level in ((fresh(beat_s=120), Level.ORANGE), (fresh(beat_s=1, waiting_s=90), Level.ORANGE),
                     (fresh(beat_s=1), Level.NONE)):  # fmt: skip
        res = analysis_result(judge(f, max_lag_s=60, watching_since=since), max_lag_s=60, at_s=0.0)
        assert res.level is level
        assert res.rule == "watchdog.analysis"


def test_a_mine_is_offline_when_every_sensor_that_reported_is_silent() -> None:
    def mine(*sites: tuple[str, int, int]) -> MineMonitoring:
        return MineMonitoring("M", "220102", 1, list(sites))

    assert offline_result(mine(("A", 2, 0), ("B", 1, 0)), at_s=0).level is Level.ORANGE
    partly = offline_result(mine(("A", 2, 0), ("B", 1, 1)), at_s=0)
    assert partly.level is Level.YELLOW
    assert partly.evidence["sites_silent"] == ["A"]
    assert offline_result(mine(("A", 2, 1)), at_s=0).level is Level.NONE
    assert offline_result(mine(("A", 0, 0)), at_s=0).level is Level.NONE  # never connected: not offline
    assert offline_result(mine(("A", 0, 0), ("B", 1, 0)), at_s=0).level is Level.ORANGE


def test_rollup_and_watchdog_settings_are_checked() -> None:
    with pytest.raises(SettingsError, match="ROLLUP_CROSS_ITEM"):
        Settings.from_env({"SLOPEWATCH_ROLLUP_CROSS_ITEM": "sum"})
    with pytest.raises(SettingsError, match="WATCHDOG_MAX_LAG_S"):
        Settings.from_env({"SLOPEWATCH_WATCHDOG_MAX_LAG_S": "0"})
    assert Settings.from_env({"SLOPEWATCH_ROLLUP_CROSS_ITEM": "at_or_above"}).rollup_cross_item == "at_or_above"
