"""The escalation policy: after how long an unacknowledged alert of each level reaches the
county, the city and the province (SLOPEWATCH_ESCALATION).

Grammar: ``level:tier=duration,tier=duration;level:...`` with levels blue, yellow, orange,
red; tiers county, city, province; durations like ``30s``, ``5m``, ``2h``, ``1d`` (a bare
number is seconds). An empty text or ``none`` means no escalation beyond the mine. A level
that is not named does not escalate. Pure: no I/O.
"""

from __future__ import annotations

import enum
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from core.model import Level

DEFAULT_ESCALATION: Final = (
    "red:county=5m,city=15m,province=30m;orange:county=30m,city=2h,province=6h;yellow:county=24h"
)


class Tier(enum.StrEnum):
    """A step of the ladder, in order: the mine is told at once, then each level above."""

    MINE = "mine"
    COUNTY = "county"
    CITY = "city"
    PROVINCE = "province"

    @property
    def order(self) -> int:
        return _TIER_ORDER[self]


_TIER_ORDER: Final = {Tier.MINE: 0, Tier.COUNTY: 1, Tier.CITY: 2, Tier.PROVINCE: 3}
REGION_TIERS: Final = (Tier.COUNTY, Tier.CITY, Tier.PROVINCE)

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd]?)$")
_UNIT_S: Final = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class PolicyError(ValueError):
    """The policy text cannot be read; the message says where."""


def parse_duration_s(text: str) -> float:
    """``90s``, ``5m``, ``1.5h``, ``1d`` or a bare number of seconds → seconds."""
    m = _DURATION.match(text.strip().lower())
    if not m:
        raise PolicyError(f"{text!r} is not a duration; write e.g. 30s, 5m, 2h or 1d")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def format_duration(seconds: float) -> str:
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    """Per warning level: the delay (s, since the alert reached that level) after which each
    region tier is told if nobody has acknowledged. Delays do not decrease up the ladder."""

    delays_s: Mapping[Level, Mapping[Tier, float]]

    @classmethod
    def parse(cls, text: str) -> EscalationPolicy:
        out: dict[Level, Mapping[Tier, float]] = {}
        body = text.strip()
        if body.lower() in ("", "none"):
            return cls(MappingProxyType(out))
        for part in body.split(";"):
            part = part.strip()
            if not part:
                continue
            level_text, sep, steps_text = part.partition(":")
            if not sep:
                raise PolicyError(f"{part!r}: expected level:tier=duration,... e.g. red:county=5m,city=15m")
            try:
                level = Level.parse(level_text)
            except ValueError as exc:
                raise PolicyError(f"{part!r}: {exc}") from None
            if level is Level.NONE:
                raise PolicyError(f"{part!r}: 'none' is not a warning level")
            if level in out:
                raise PolicyError(f"level {level.label} is given twice")
            steps: dict[Tier, float] = {}
            for step in steps_text.split(","):
                tier_text, eq, duration = step.partition("=")
                try:
                    tier = Tier(tier_text.strip().lower())
                except ValueError:
                    tier = Tier.MINE
                if not eq or tier is Tier.MINE:
                    raise PolicyError(f"{part!r}: {step.strip()!r} should be county=, city= or province=<duration>")
                if tier in steps:
                    raise PolicyError(f"{part!r}: {tier} is given twice")
                try:
                    steps[tier] = parse_duration_s(duration)
                except PolicyError as exc:
                    raise PolicyError(f"{part!r}: {exc}") from None
            ordered = sorted(steps.items(), key=lambda kv: kv[0].order)
            for (lower, a), (higher, b) in itertools.pairwise(ordered):
                if b < a:
                    raise PolicyError(
                        f"{part!r}: {higher} ({format_duration(b)}) comes before {lower} ({format_duration(a)}); "
                        "delays must not decrease up the ladder"
                    )
            out[level] = MappingProxyType(dict(ordered))
        return cls(MappingProxyType(out))

    def ladder(self, level: Level) -> list[tuple[Tier, float]]:
        """The steps for an alert at ``level``, mine first (at once), in order."""
        return [(Tier.MINE, 0.0), *self.delays_s.get(level, {}).items()]

    def describe(self) -> str:
        parts = []
        for level in sorted(self.delays_s, reverse=True):
            steps = ",".join(f"{t}={format_duration(s)}" for t, s in self.delays_s[level].items())
            parts.append(f"{level.label}:{steps}")
        return ";".join(parts) or "none"
