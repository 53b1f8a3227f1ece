"""Per-target rate limit: at most N messages a minute. Pure: no I/O.

Red is never held back. Other notifications go one per message while the target's budget
lasts; when more are due than the budget allows, the last message of the budget is a
digest that folds the rest in; with no budget left they wait for the window to free.
Nothing is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Due:
    id: int
    urgent: bool


@dataclass(frozen=True, slots=True)
class Plan:
    #: each tuple is one message: one notification, or a digest of several
    messages: tuple[tuple[int, ...], ...]
    #: due now but over the budget: hold until the window frees
    held: tuple[int, ...]


def plan_target(due: Sequence[Due], *, sent_in_window: int, per_minute: int, digest_max: int) -> Plan:
    """Split one target's due notifications (oldest first) into messages and held ones."""
    urgent = [d.id for d in due if d.urgent]
    normal = [d.id for d in due if not d.urgent]
    messages: list[tuple[int, ...]] = [(i,) for i in urgent]
    budget = per_minute - sent_in_window - len(urgent)
    if budget <= 0 or not normal:
        return Plan(tuple(messages), tuple(normal))
    if len(normal) <= budget:
        messages.extend((i,) for i in normal)
        return Plan(tuple(messages), ())
    singles = normal[: budget - 1]
    digest = normal[budget - 1 : budget - 1 + digest_max]
    messages.extend((i,) for i in singles)
    messages.append(tuple(digest))
    # beyond the digest's size: left due, not held, so the next cycle takes them
    return Plan(tuple(messages), ())
