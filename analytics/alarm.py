"""Alarm dynamics, pure: what to do with one rule result given the open alert.

The worker keeps, per sensor and rule, at most one open alert with its level, the
measurement time that level took effect, and the time a lower level was first seen
(``pending_since_s``). :func:`decide` says what changes:

- no open alert and a level above NONE: ``open``;
- a higher level: ``escalate`` at once;
- a lower level (NONE included): start or keep a pending period; only when the
  lower level has held for ``dwell_s`` of measurement time does the alert come down
  (``deescalate``), to the highest level seen during the pending period, or, when
  that is NONE, ``clear``. If the level rises again meanwhile, the
  pending period is forgotten. While pending, the alert keeps its level (``refresh``):
  no flapping.

All times are measurement times (epoch s), so late data replayed in order gives the
same decisions as live data.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from analytics.types import RuleResult
from core.model import Level


class Action(enum.StrEnum):
    NONE = "none"  # nothing to store: no alert and nothing to raise
    OPEN = "open"  # open a new alert at ``level``
    ESCALATE = "escalate"  # raise the open alert to ``level``
    REFRESH = "refresh"  # keep the alert's level, update its evidence; ``pending_since_s`` may have changed
    DEESCALATE = "deescalate"  # lower the open alert to ``level``
    CLEAR = "clear"  # close the open alert


@dataclass(frozen=True, slots=True)
class Decision:
    """The action and the alert state after it.

    level: the alert's level after the action (``Level.NONE`` after clear or when none is open);
    since_s: measurement time that level took effect (None when no alert is open);
    pending_since_s: when a lower level than ``level`` was first seen and has held
      since (None when not pending); store it with the alert and pass it back as
      ``pending_lower_since_s`` next time;
    pending_level: the highest level seen since ``pending_since_s`` (pass it back as
      ``pending_level``): the alert comes down to that level, not below anything seen
      during the dwell.
    """

    action: Action
    level: Level
    since_s: float | None
    pending_since_s: float | None
    pending_level: Level | None = None

    @property
    def changed(self) -> bool:
        """True when the alert's level or existence changes (an event to record and notify)."""
        return self.action in (Action.OPEN, Action.ESCALATE, Action.DEESCALATE, Action.CLEAR)


def decide(
    current_level: Level | None,
    current_since_s: float | None,
    pending_lower_since_s: float | None,
    result: RuleResult,
    *,
    dwell_s: float,
    pending_level: Level | None = None,
) -> Decision:
    """What to do with ``result`` given the open alert (``current_level`` None or NONE: none open).

    current_since_s: when the open alert's level took effect; pending_lower_since_s:
    as returned by the previous decision for this alert; dwell_s: how long a lower
    level must hold, in measurement time, before the alert comes down; pending_level:
    ``pending_level`` of the previous decision (None: only the current result counts).

    Invariant: after each decision the alert's level is at least every result level
    seen within the last ``dwell_s`` (when ``pending_level`` is passed back).
    """
    new = result.level
    at = result.at_s
    if current_level is None or current_level is Level.NONE:
        if new > Level.NONE:
            return Decision(Action.OPEN, new, at, None)
        return Decision(Action.NONE, Level.NONE, None, None)
    if new > current_level:
        return Decision(Action.ESCALATE, new, at, None)
    if new == current_level:
        return Decision(Action.REFRESH, current_level, current_since_s, None)
    # Lower: wait until it has held for the dwell time, remembering the worst level seen.
    if pending_lower_since_s is None:
        pending, worst = at, new
    else:
        pending = min(pending_lower_since_s, at)
        worst = max(new, pending_level) if pending_level is not None else new
    if at - pending < dwell_s:
        return Decision(Action.REFRESH, current_level, current_since_s, pending, worst)
    if worst is Level.NONE:
        return Decision(Action.CLEAR, Level.NONE, None, None)
    return Decision(Action.DEESCALATE, worst, at, None)
