"""Pure detection science: arrays in, frozen dataclasses out.

``evaluate_sensor(spec, window)`` runs every rule that applies to a sensor and
returns one :class:`~analytics.types.RuleResult` per rule; ``decide`` turns a result
and the open alert into an action (open, escalate, hold, de-escalate, clear);
``roll_up`` gives each monitored item and the site a level from its points'
levels (GB 39496).
"""

from analytics.alarm import Action, Decision, decide
from analytics.evaluate import evaluate_many, evaluate_sensor
from analytics.rollup import GB39496, GroupLevel, RollupCounts, SiteRollup, roll_up
from analytics.types import ChannelReference, RuleResult, SensorSpec, SensorWindow

__all__ = [
    "GB39496",
    "Action",
    "ChannelReference",
    "Decision",
    "GroupLevel",
    "RollupCounts",
    "RuleResult",
    "SensorSpec",
    "SensorWindow",
    "SiteRollup",
    "decide",
    "evaluate_many",
    "evaluate_sensor",
    "roll_up",
]
