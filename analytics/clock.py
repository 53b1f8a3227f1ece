"""Sensor health: a clock running ahead (``health.clock``).

Ingest refuses readings stamped more than ``max_future_s`` ahead of its own clock
(reason ``future_timestamp``, kept as dead letters): a logger whose clock jumped
ahead would otherwise write the future and hide the present. Refused readings are
not stored, so the detectors never see them; this rule turns the refusals of the
last ``window_s`` into an alert of their own, with the reason, so that a sensor
that goes quiet for this cause says so instead of only looking silent (hidden or
broken monitoring is itself a major hazard, item (七)3).
"""

from __future__ import annotations

from analytics.types import RuleResult
from core.model import Level

RULE = "health.clock"


def clock_ahead(
    rejected: int,
    last_rejected_s: float | None,
    *,
    now_s: float,
    window_s: float,
    max_future_s: float,
    example: str = "",
) -> RuleResult:
    """BLUE when ingest refused ``rejected`` > 0 readings of the sensor as stamped in the
    future within ``window_s`` before ``now_s`` (the newest refusal at ``last_rejected_s``,
    epoch s); NONE otherwise. ``example``: one refusal's detail, for the evidence."""
    ev: dict[str, float | int | str | bool | list[float] | list[str] | None] = {
        "method": "readings refused by ingest as stamped in the future (reason future_timestamp)",
        "window_s": window_s,
        "max_future_s": max_future_s,
        "readings_refused": rejected,
        "last_refused_at_s": last_rejected_s,
    }
    if rejected <= 0:
        return RuleResult(
            RULE,
            Level.NONE,
            now_s,
            ev,
            "No reading was refused for a clock ahead of time.",
            "无因时钟超前而被拒收的读数。",
        )
    if example:
        ev["example"] = example
    hours = window_s / 3600.0
    en = (
        f"{rejected} reading(s) in the last {hours:g} h were refused because their time lies more than "
        f"{max_future_s:g} s in the future: the sensor's or logger's clock runs ahead. Its readings are "
        "not stored until the clock is corrected (check the logger's time synchronisation)."
    )
    zh = (
        f"最近 {hours:g} 小时内有 {rejected} 个读数因时间超前 {max_future_s:g} 秒以上被拒收：传感器或采集器时钟超前，"
        "在校正时钟之前其数据不会入库(请检查采集器的时间同步)。"
    )
    return RuleResult(RULE, Level.BLUE, now_s, ev, en, zh)
