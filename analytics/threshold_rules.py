"""Threshold rules: a measured quantity against the design institute's per-level values."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np

from analytics._arrays import FloatArray
from analytics.types import RuleResult
from core.model import Level
from core.thresholds import Direction, ThresholdSet


@dataclass(frozen=True, slots=True)
class Quantity:
    name_en: str
    name_zh: str
    unit: str


QUANTITIES: Final[dict[str, Quantity]] = {
    "horizontal_mm_per_day": Quantity("horizontal displacement rate", "水平位移速率", "mm/d"),
    "vertical_mm_per_day": Quantity("vertical displacement rate", "垂直位移速率", "mm/d"),
    "horizontal_mm": Quantity("cumulative horizontal displacement", "累计水平位移", "mm"),
    "vertical_mm": Quantity("cumulative vertical displacement", "累计垂直位移", "mm"),
    "width_mm_per_day": Quantity("crack widening rate", "裂缝扩展速率", "mm/d"),
    "width_mm": Quantity("crack width", "裂缝宽度", "mm"),
    "rate_mm_per_day": Quantity("internal displacement rate", "深部位移速率", "mm/d"),
    "cumulative_mm": Quantity("cumulative internal displacement", "深部累计位移", "mm"),
    "depth_m": Quantity("phreatic line burial depth", "浸润线埋深", "m"),
    "level_m": Quantity("pond water level", "库水位", "m"),
    "freeboard_m": Quantity("freeboard", "安全超高", "m"),
    "length_m": Quantity("dry beach length", "干滩长度", "m"),
    "rain_1h_mm": Quantity("1-hour rainfall", "1小时降雨量", "mm"),
    "rain_24h_mm": Quantity("24-hour rainfall", "24小时降雨量", "mm"),
}

#: Rainstorm classes for 24-hour rainfall when a site sets none (暴雨, 大暴雨, 特大暴雨).
STANDARD_RAIN_24H: Final = ThresholdSet(Direction.ABOVE, yellow=50.0, orange=100.0, red=250.0)


def threshold_rule(
    quantity: str,
    thresholds: ThresholdSet,
    value: float,
    at_s: float,
    *,
    judged: float | None = None,
    judged_note: str = "",
    judged_note_zh: str = "",
    method: str,
    extra: dict[str, float | int | str | bool | list[float] | None] | None = None,
    source: str = "sensor thresholds",
    unjudged: str = "",
    unjudged_zh: str = "",
    red_judged: float | None = None,
    red_note: str = "",
    red_note_zh: str = "",
) -> RuleResult:
    """``threshold.<quantity>``: the level whose start value ``judged`` (default ``value``) reaches.

    ``judged`` lets a rate be judged on its lower confidence bound while ``value`` is shown.
    ``red_judged``: a second value judged against red alone (a rate: its bound at a lower
    confidence), counted only when ``judged`` has reached the level below red.
    ``unjudged``: why ``judged`` is NaN, when it is not for want of a reading.
    """
    q = QUANTITIES[quantity]
    j = value if judged is None else judged
    level = thresholds.level_of(j) if math.isfinite(j) else Level.NONE
    below_red = max(
        (lv for lv in (Level.BLUE, Level.YELLOW, Level.ORANGE) if thresholds.value(lv) is not None),
        default=None,
    )
    by_red = (
        red_judged is not None
        and math.isfinite(red_judged)
        and thresholds.red is not None
        and below_red is not None
        and level is below_red
        and thresholds.level_of(red_judged) is Level.RED
    )
    if by_red:
        level = Level.RED
    ev: dict[str, float | int | str | bool | list[float] | None] = {
        "method": method,
        "value": _f(value),
        "judged_value": _f(j),
        "unit": q.unit,
        "direction": thresholds.direction.value,
        "threshold_source": source,
        "blue": thresholds.blue,
        "yellow": thresholds.yellow,
        "orange": thresholds.orange,
        "red": thresholds.red,
    }
    if extra:
        ev.update(extra)
    if red_judged is not None:
        ev["red_judged_value"] = _f(red_judged)
    shown = f"{value:.3g} {q.unit}" + (f" ({judged_note} {j:.3g})" if judged is not None and judged_note else "")
    shown_zh = f"{value:.3g} {q.unit}" + (
        f"({judged_note_zh or judged_note} {j:.3g})" if judged is not None and judged_note else ""
    )
    if by_red:
        assert red_judged is not None
        shown = shown[:-1] + f"; {red_note} {red_judged:.3g})" if shown.endswith(")") else shown
        shown_zh = (
            shown_zh[:-1] + f"；{red_note_zh or red_note} {red_judged:.3g})" if shown_zh.endswith(")") else shown_zh
        )
    word = "fell to" if thresholds.direction is Direction.BELOW else "reached"
    word_zh = "降至" if thresholds.direction is Direction.BELOW else "达到"
    if not math.isfinite(j) and unjudged:
        en = f"The {q.name_en} is not judged: {unjudged}."
        zh = f"{q.name_zh}未评估：{unjudged_zh or unjudged}。"
        ev["not_judged_reason"] = unjudged
    elif not math.isfinite(j):
        en = f"No usable reading of the {q.name_en}."
        zh = f"无可用的{q.name_zh}读数。"
    elif level is Level.NONE:
        first = next(
            (lv for lv in (Level.BLUE, Level.YELLOW, Level.ORANGE, Level.RED) if thresholds.value(lv) is not None),
            None,
        )
        limit = f" (the {first.label} threshold is {thresholds.value(first):g} {q.unit})" if first else ""
        limit_zh = f"({first.label_zh}阈值 {thresholds.value(first):g} {q.unit})" if first else ""
        en = f"The {q.name_en} is {shown}, within the thresholds{limit}."
        zh = f"{q.name_zh}为 {shown_zh}，未超过阈值{limit_zh}。"
    else:
        limit_v = thresholds.value(level)
        en = f"The {q.name_en} {word} {shown}, at or past the {level.label} threshold of {limit_v:g} {q.unit}."
        zh = f"{q.name_zh}{word_zh} {shown_zh}，已达到或超过{level.label_zh}阈值 {limit_v:g} {q.unit}。"
    return RuleResult(f"threshold.{quantity}", level, at_s, ev, en, zh)


def latest_robust(t_s: FloatArray, x: FloatArray, *, k: int = 3) -> tuple[float, float, int]:
    """``(value, at_s, n)``: median of the newest ``k`` finite readings, so one spike cannot
    set a level; ``at_s`` is the time of the newest. NaN when there is no reading."""
    idx = np.flatnonzero(np.isfinite(x))
    if idx.size == 0:
        return math.nan, float(t_s[-1]) if t_s.size else math.nan, 0
    last = idx[-k:]
    return float(np.median(x[last])), float(t_s[last[-1]]), int(last.size)


def trailing_sum(t_s: FloatArray, x: FloatArray, *, window_s: float) -> tuple[float, float, int]:
    """``(sum, at_s, n)`` of finite readings in ``(t_newest − window_s, t_newest]``."""
    idx = np.flatnonzero(np.isfinite(x))
    if idx.size == 0:
        return math.nan, float(t_s[-1]) if t_s.size else math.nan, 0
    t_new = float(t_s[idx[-1]])
    inside = idx[t_s[idx] > t_new - window_s]
    return float(np.sum(x[inside])), t_new, int(inside.size)


def _f(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None
