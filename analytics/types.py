"""The contract between the pure detectors and the worker that runs them.

The worker (``analytics/worker.py``, the only module here that does I/O) builds a
:class:`SensorSpec` and a :class:`SensorWindow` per sensor, calls
``analytics.evaluate_sensor(spec, window)`` and receives one :class:`RuleResult`
per rule it evaluated, ``Level.NONE`` included (so alerts can come down).
``analytics.alarm.decide`` turns a result and the open alert into an action.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from core.model import Level, SensorKind
from core.thresholds import ThresholdSet

FloatArray = npt.NDArray[np.float64]

#: JSON-safe evidence values.
Evidence = Mapping[str, "float | int | str | bool | list[float] | list[str] | None"]


@dataclass(frozen=True, slots=True)
class ChannelReference:
    """The reference position of one displacement-like channel: what its cumulative
    displacement is measured from (docs/detection.md, "The reference position").

    value: in the channel's unit (mm); source: ``registry``, ``first_reading`` or
    ``rebaseline``; since_s: measurement time (epoch s) from which it holds, when known.
    """

    value: float
    source: str
    since_s: float | None = None


@dataclass(frozen=True, slots=True)
class SensorSpec:
    """What the detectors need to know of a sensor, from the registry."""

    sensor_id: int
    code: str
    kind: SensorKind
    channels: tuple[str, ...]
    interval_s: float
    baseline: Mapping[str, float] = field(default_factory=dict)
    #: The stored reference per displacement channel (the worker's); where a channel has
    #: none, the registry ``baseline``, and only then the window start (pure callers).
    references: Mapping[str, ChannelReference] = field(default_factory=dict)
    thresholds: Mapping[str, ThresholdSet] = field(default_factory=dict)
    #: Site facts some rules need: slope or dam height, dam crest elevation.
    site_height_m: float | None = None
    crest_elevation_m: float | None = None


@dataclass(frozen=True, slots=True)
class SensorWindow:
    """Readings of one sensor over the evaluation window.

    t_s: (n,) measurement times, epoch seconds, strictly increasing.
    values: channel -> (n,) values in the channel's unit, NaN where that channel
    has no reading at that time.
    now_s: the evaluation clock (epoch seconds), for rules about silence.
    judged_until_s: the newest reading time of this sensor's previous evaluation, when the
    caller keeps it; None (a first evaluation, a restart, a backlog, a replay) makes the
    detectors judge the last few hours' prefixes too, as an alarm's dwell would have held them.
    """

    t_s: FloatArray
    values: Mapping[str, FloatArray]
    now_s: float
    judged_until_s: float | None = None


@dataclass(frozen=True, slots=True)
class RuleResult:
    """What one rule concluded for one sensor.

    rule: stable dotted name, e.g. ``displacement.acceleration.horizontal``,
      ``threshold.depth_m``, ``health.silent``; with ``rule_version`` it names the logic.
    at_s: measurement time the conclusion refers to (the newest reading used), epoch s.
    evidence: the numbers that justify the level (JSON-safe).
    forecast_failure_s: inverse-velocity time of failure (epoch s), when one is made.
    """

    rule: str
    level: Level
    at_s: float
    evidence: Evidence
    explanation_en: str
    explanation_zh: str
    rule_version: int = 1
    forecast_failure_s: float | None = None
