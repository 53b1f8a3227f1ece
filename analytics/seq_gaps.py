"""Sensor health: readings the device sent that never arrived (``health.seq``).

A device numbers its readings (``seq``, one more for each reading of the sensor; see
docs/wire-contract.md). Holes in those numbers among the stored readings are loss that
nobody else reports: a message the broker acknowledged to the gateway and then dealt to
a rogue member of ingest's shared group, or dropped from a full queue, leaves no dead
letter, no log line and no metric. Silence rules do not see it either while the other
readings keep coming. This rule turns the holes of the last ``window_s`` into an alert;
it clears (after the de-escalation dwell) once a window passes without a new hole, or as
soon as late readings fill the holes. Concealed or lost monitoring data is itself a
major hazard (item (七)3), so loss is said out loud, never inferred away.
"""

from __future__ import annotations

from collections.abc import Sequence

from analytics.types import RuleResult
from core.model import Level

RULE = "health.seq"


def seq_gaps(
    gaps: int,
    missing: int,
    last_gap_s: float | None,
    *,
    now_s: float,
    window_s: float,
    examples: Sequence[tuple[int, int]] = (),
    refused: int = 0,
) -> RuleResult:
    """BLUE when the sensor's stored readings measured within ``window_s`` before ``now_s``
    (epoch s) have ``gaps`` > 0 holes in their ``seq``, ``missing`` readings in all (the
    newest hole measured at ``last_gap_s``); NONE otherwise.

    examples: (seq before, seq after) of the newest holes. refused: readings of the sensor
    that ingest rejected in the window (dead letters), which leave holes of their own.
    """
    ev: dict[str, float | int | str | bool | list[float] | list[str] | None] = {
        "method": "holes in the device's seq numbers among stored readings, ordered by measurement time",
        "window_s": window_s,
        "gaps": gaps,
        "readings_missing": missing,
        "last_gap_at_s": last_gap_s,
        "readings_refused_by_ingest": refused,
    }
    if gaps <= 0:
        return RuleResult(
            RULE,
            Level.NONE,
            now_s,
            ev,
            "No reading is missing from the device's sequence numbers.",
            "设备序号连续，无读数丢失。",
        )
    holes = [f"{a}..{b}" for a, b in examples]
    ev["holes"] = holes
    eg_en = f" (e.g. seq {holes[0]})" if holes else ""
    eg_zh = f"(如序号 {holes[0]})" if holes else ""
    hours = window_s / 3600.0
    # "Lost or held up": a stopped ingest worker's share waits in its broker queue, unstored.
    where_en = (
        "lost or held up between the device and ingest (gateway, link, broker, or a stopped ingest worker's queue)"
    )
    cause_en = (
        f" Ingest refused {refused} reading(s) of this sensor in that time (see the dead letters); any others were "
        f"{where_en}."
        if refused
        else f" None were refused by ingest: they were {where_en}."
    )
    where_zh = "在设备与接入服务之间(网关、链路、消息服务器或已停止的接入进程的队列)丢失或滞留"
    cause_zh = (
        f"其间接入服务拒收了该传感器 {refused} 个读数(见死信)，其余{where_zh}。"
        if refused
        else f"接入服务未拒收任何读数：数据{where_zh}。"
    )
    en = (
        f"{missing} reading(s) are missing in {gaps} hole(s) of the device's sequence numbers over the last "
        f"{hours:g} h{eg_en}." + cause_en + " Late readings that fill the holes clear this alert."
    )
    zh = (
        f"最近 {hours:g} 小时内设备序号有 {gaps} 处中断，共缺 {missing} 个读数{eg_zh}。"
        + cause_zh
        + "补传的读数填满中断后本告警自动解除。"
    )
    return RuleResult(RULE, Level.BLUE, now_s, ev, en, zh)
