"""Pure detection science: arrays in, frozen dataclasses out.

``evaluate_sensor(spec, window)`` runs every rule that applies to a sensor and
returns one :class:`~analytics.types.RuleResult` per rule; ``decide`` turns a result
and the open alert into an action (open, escalate, hold, de-escalate, clear).
"""

from analytics.alarm import Action, Decision, decide
from analytics.evaluate import evaluate_sensor
from analytics.types import RuleResult, SensorSpec, SensorWindow

__all__ = ["Action", "Decision", "RuleResult", "SensorSpec", "SensorWindow", "decide", "evaluate_sensor"]
