"""Per-sensor warning thresholds, as a design institute sets them.

Each sensor carries, per quantity, the value at which each warning level starts.
``above`` quantities warn when they rise (pond level, rainfall, displacement rate);
``below`` quantities warn when they fall (phreatic-line burial depth, freeboard,
dry beach length).
"""

from __future__ import annotations

import enum
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from core.model import WARNING_LEVELS, Level, SensorKind


class Direction(enum.StrEnum):
    ABOVE = "above"
    BELOW = "below"


@dataclass(frozen=True, slots=True)
class ThresholdSet:
    """Start values of each warning level for one quantity; ``None`` where a level is not set."""

    direction: Direction
    blue: float | None = None
    yellow: float | None = None
    orange: float | None = None
    red: float | None = None

    def value(self, level: Level) -> float | None:
        return {
            Level.BLUE: self.blue,
            Level.YELLOW: self.yellow,
            Level.ORANGE: self.orange,
            Level.RED: self.red,
        }.get(level)

    def level_of(self, x: float) -> Level:
        """The highest level whose start value ``x`` reaches; ``Level.NONE`` for NaN."""
        if math.isnan(x):
            return Level.NONE
        found = Level.NONE
        for level in WARNING_LEVELS:
            v = self.value(level)
            if v is None:
                continue
            if (self.direction is Direction.ABOVE and x >= v) or (self.direction is Direction.BELOW and x <= v):
                found = level
        return found

    def check(self) -> list[str]:
        """Problems with the set, as sentences; empty when it is consistent."""
        problems: list[str] = []
        values = [(lv, self.value(lv)) for lv in WARNING_LEVELS]
        given = [(lv, v) for lv, v in values if v is not None]
        if not given:
            problems.append("no level has a value")
        for lv, v in given:
            if not math.isfinite(v):
                problems.append(f"{lv.label} is not a finite number")
        for (la, a), (lb, b) in itertools.pairwise(given):
            if self.direction is Direction.ABOVE and not a < b:
                problems.append(f"{lb.label} ({b}) must be greater than {la.label} ({a}) for an 'above' quantity")
            if self.direction is Direction.BELOW and not a > b:
                problems.append(f"{lb.label} ({b}) must be less than {la.label} ({a}) for a 'below' quantity")
        return problems


_DISPLACEMENT_3D: Final = {
    "horizontal_mm_per_day": Direction.ABOVE,
    "vertical_mm_per_day": Direction.ABOVE,
    "horizontal_mm": Direction.ABOVE,
    "vertical_mm": Direction.ABOVE,
}

#: The quantities each kind may carry thresholds for, with their direction.
THRESHOLD_QUANTITIES: Final[Mapping[SensorKind, Mapping[str, Direction]]] = {
    SensorKind.GNSS: _DISPLACEMENT_3D,
    SensorKind.TOTAL_STATION: _DISPLACEMENT_3D,
    SensorKind.CRACK: {"width_mm_per_day": Direction.ABOVE, "width_mm": Direction.ABOVE},
    SensorKind.INCLINOMETER: {"rate_mm_per_day": Direction.ABOVE, "cumulative_mm": Direction.ABOVE},
    SensorKind.PIEZOMETER: {"depth_m": Direction.BELOW},
    SensorKind.POND_LEVEL: {"level_m": Direction.ABOVE, "freeboard_m": Direction.BELOW},
    SensorKind.BEACH: {"length_m": Direction.BELOW},
    SensorKind.RAIN: {"rain_1h_mm": Direction.ABOVE, "rain_24h_mm": Direction.ABOVE},
}
