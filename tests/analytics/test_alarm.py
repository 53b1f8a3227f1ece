"""Alarm dynamics: escalate at once, come down only after the dwell time."""

from __future__ import annotations

from analytics import Action, RuleResult, decide
from core.model import Level

DWELL = 6 * 3600.0


def res(level: Level, at_s: float) -> RuleResult:
    return RuleResult("displacement.acceleration.horizontal", level, at_s, {}, "x", "x")


def test_open_only_above_none() -> None:
    assert decide(None, None, None, res(Level.NONE, 0.0), dwell_s=DWELL).action is Action.NONE
    d = decide(None, None, None, res(Level.YELLOW, 10.0), dwell_s=DWELL)
    assert (d.action, d.level, d.since_s, d.pending_since_s) == (Action.OPEN, Level.YELLOW, 10.0, None)
    assert d.changed
    # an alert that was cleared (level NONE) opens again
    assert decide(Level.NONE, None, None, res(Level.BLUE, 20.0), dwell_s=DWELL).action is Action.OPEN


def test_escalate_at_once_even_while_a_lower_level_was_pending() -> None:
    d = decide(Level.YELLOW, 0.0, 100.0, res(Level.RED, 200.0), dwell_s=DWELL)
    assert (d.action, d.level, d.since_s, d.pending_since_s) == (Action.ESCALATE, Level.RED, 200.0, None)


def test_same_level_refreshes_and_forgets_a_pending_drop() -> None:
    d = decide(Level.ORANGE, 0.0, 50.0, res(Level.ORANGE, 60.0), dwell_s=DWELL)
    assert (d.action, d.level, d.since_s, d.pending_since_s) == (Action.REFRESH, Level.ORANGE, 0.0, None)
    assert not d.changed


def test_deescalate_only_after_the_lower_level_held_for_the_dwell() -> None:
    first = decide(Level.RED, 0.0, None, res(Level.YELLOW, 1000.0), dwell_s=DWELL)
    assert (first.action, first.level, first.pending_since_s) == (Action.REFRESH, Level.RED, 1000.0)
    early = decide(Level.RED, 0.0, first.pending_since_s, res(Level.YELLOW, 1000.0 + DWELL - 1), dwell_s=DWELL)
    assert early.action is Action.REFRESH
    assert early.pending_since_s == 1000.0
    late = decide(Level.RED, 0.0, early.pending_since_s, res(Level.ORANGE, 1000.0 + DWELL), dwell_s=DWELL)
    assert (late.action, late.level, late.since_s, late.pending_since_s) == (
        Action.DEESCALATE,
        Level.ORANGE,
        1000.0 + DWELL,
        None,
    )


def test_clear_after_none_held_for_the_dwell() -> None:
    d = decide(Level.BLUE, 0.0, 10.0, res(Level.NONE, 10.0 + DWELL), dwell_s=DWELL)
    assert (d.action, d.level, d.since_s, d.pending_since_s) == (Action.CLEAR, Level.NONE, None, None)
    assert d.changed


def test_comes_down_to_the_worst_level_seen_while_pending() -> None:
    d1 = decide(Level.RED, 0.0, None, res(Level.YELLOW, 100.0), dwell_s=DWELL)
    d2 = decide(
        Level.RED, 0.0, d1.pending_since_s, res(Level.BLUE, 200.0), dwell_s=DWELL, pending_level=d1.pending_level
    )
    assert d2.pending_level is Level.YELLOW
    d3 = decide(
        Level.RED,
        0.0,
        d2.pending_since_s,
        res(Level.NONE, 100.0 + DWELL),
        dwell_s=DWELL,
        pending_level=d2.pending_level,
    )
    assert (d3.action, d3.level) == (Action.DEESCALATE, Level.YELLOW)
