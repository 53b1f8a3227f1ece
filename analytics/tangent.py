"""Improved tangent angle (Xu Qiang et al. 2009).

The displacement S(t) is rescaled to a time-like ordinate ``T(t) = S(t) / v0``,
v0 being the mean velocity of the constant-velocity (secondary creep) stage in the
same time unit as t. The tangent angle of the T–t curve is then
``α = arctan(ΔT/Δt) = arctan(v / v0)``: 45° while the slope creeps steadily,
rising towards 90° as it accelerates.

Levels: α < 45° none; 45–80° early acceleration, yellow; 80–85° mid acceleration,
orange; ≥ 85° imminent failure, red.
"""

from __future__ import annotations

import math
from typing import Final

from core.model import Level

YELLOW_DEG: Final = 45.0
ORANGE_DEG: Final = 80.0
RED_DEG: Final = 85.0


def tangent_angle_deg(v_mm_per_day: float, v0_mm_per_day: float) -> float:
    """α in degrees for a current velocity ``v`` and secondary-creep velocity ``v0`` (> 0)."""
    if not (v0_mm_per_day > 0 and math.isfinite(v_mm_per_day)):
        return math.nan
    return math.degrees(math.atan2(v_mm_per_day, v0_mm_per_day))


def level_of_angle(alpha_deg: float) -> Level:
    """The warning level of a tangent angle; ``Level.NONE`` up to steady creep (45°) and for NaN."""
    if not alpha_deg > YELLOW_DEG:
        return Level.NONE
    if alpha_deg >= RED_DEG:
        return Level.RED
    if alpha_deg >= ORANGE_DEG:
        return Level.ORANGE
    return Level.YELLOW
