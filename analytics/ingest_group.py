"""Service health: how many ingest workers are in the shared group (``health.ingest_workers``).

Mosquitto deals the readings round-robin to every member of ingest's shared group and
does not say who the members are. Each ingest worker therefore records a heartbeat while
it is connected and subscribed, and this rule compares the workers heard from with the
number the deployment expects:

- fewer: a worker is down or cut off. Mosquitto still deals it its share, which waits in
  its session until it returns: 1/N of the readings arrive late, and the alarms on them.
- more: a worker nobody planned (a second host started with the same settings, a copy
  left running after a move) takes a share. It is ingest, so it stores what it takes,
  but the deployment is not what the operators think it is.

What this cannot see: a subscriber that is not ingest. A rogue member sends no
heartbeat; the broker refuses it (dynamic security, docs/security.md), and if a broker
were misconfigured, the readings dealt to it would show as gaps in ``seq``.

Levels: fewer is orange (alarms come late, as when the analysis is behind, watchdog.analysis);
more is blue (nothing is lost, but the deployment is not the planned one). The analysis keeps
one alert of this rule per mine (subject ``ingest``), since every mine's readings are dealt
across the group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from core.model import Level

RULE: Final = "health.ingest_workers"
#: the subject of this rule's alert in each mine (alert.subject, migration 020)
SUBJECT: Final = "ingest"


@dataclass(frozen=True, slots=True)
class GroupCheck:
    """The verdict: ``ok`` (level NONE) when exactly ``expected`` workers were heard from."""

    ok: bool
    level: Level
    evidence: dict[str, float | int | str | list[str]]
    explanation_en: str
    explanation_zh: str


def group_membership(
    alive: Sequence[str], silent: Sequence[str], *, expected: int, shared_group: str, now_s: float
) -> GroupCheck:
    """``alive``: client ids of the workers whose last heartbeat is recent; ``silent``: the
    ones known from earlier heartbeats that stopped. ``expected`` > 0."""
    n = len(alive)
    evidence: dict[str, float | int | str | list[str]] = {
        "method": "ingest workers' heartbeats (table ingest_worker) against SLOPEWATCH_INGEST_WORKERS_EXPECTED",
        "expected": expected,
        "alive": n,
        "alive_client_ids": sorted(alive),
        "silent_client_ids": sorted(silent),
        "shared_group": shared_group,
        "at_s": now_s,
    }
    if n == expected:
        return GroupCheck(
            True,
            Level.NONE,
            evidence,
            f"All {expected} expected ingest workers are alive.",
            f"预期的 {expected} 个接入进程均在运行。",
        )
    if n < expected:
        missing = ", ".join(sorted(silent)) or "(never seen)"
        en = (
            f"Only {n} of {expected} ingest workers are alive (silent: {missing}). The broker keeps dealing "
            f"a share of the readings to each member of the group '{shared_group}': the share of a stopped "
            "worker waits on the broker until it returns, so those readings and their alarms arrive late. "
            "Restart the worker with the same client id."
        )
        zh = (
            f"只有 {n}/{expected} 个接入进程在运行(无心跳：{missing})。代理仍按轮转把数据分给共享组 "
            f"'{shared_group}' 的每个成员：停止的进程所分得的数据滞留在代理上，直到它恢复，相应读数和报警都会延迟。"
            "请用相同的客户端标识重启该进程。"
        )
    else:
        en = (
            f"{n} ingest workers are alive where {expected} are expected ({', '.join(sorted(alive))}). "
            "Each takes a share of the readings; check that every one of them is meant to run, and set "
            "SLOPEWATCH_INGEST_WORKERS_EXPECTED to the planned number."
        )
        zh = (
            f"有 {n} 个接入进程在运行，预期 {expected} 个({', '.join(sorted(alive))})。每个进程都分得一部分数据："
            "请核实每个进程都应当运行，并把 SLOPEWATCH_INGEST_WORKERS_EXPECTED 设为计划的数量。"
        )
    return GroupCheck(False, Level.ORANGE if n < expected else Level.BLUE, evidence, en, zh)
