"""Holes in the devices' ``seq`` numbers: readings a device sent that never reached the database.

``seq`` (docs/wire-contract.md) counts a sensor's readings, one more for each. Ordered by
measurement time, two neighbouring stored readings whose ``seq`` differ by more than one
have lost the readings between them: to the broker (a rogue member of ingest's shared
group is dealt its turn and the broker drops it; a full queue; a crash), to the gateway,
or to ingest's own rejection (dead letters). A ``seq`` that goes down is a device restart,
not a loss. A gap is counted only once both readings around it have been in the database
for ``grace``: a late reading (a backlog, another ingest worker's batch) may still fill it,
and when it does the gap is gone, because the gaps are recomputed from what is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from db.pool import Conn

# Per sensor and channel through the primary key (sensor_id, channel, ts): no scan of
# other sensors' rows, and none older than the window. A reading is a (time, seq) of any
# channel; its channels were written in one transaction, so min(received_at) is its arrival.
SEQ_GAPS = """
WITH r AS (
    SELECT s.id AS sensor_id, x.ts, x.seq, min(x.received_at) AS received_at
    FROM sensor s
    CROSS JOIN LATERAL unnest(s.channels) c(ch)
    CROSS JOIN LATERAL (
        SELECT ts, seq, received_at FROM reading
        WHERE sensor_id = s.id AND channel = c.ch AND ts > $1 AND ts <= $2 AND seq IS NOT NULL
    ) x
    GROUP BY s.id, x.ts, x.seq
), d AS (
    SELECT sensor_id, ts, seq, received_at,
           lag(seq) OVER w AS prev_seq, lag(ts) OVER w AS prev_ts, lag(received_at) OVER w AS prev_received
    FROM r WINDOW w AS (PARTITION BY sensor_id ORDER BY ts, seq)
)
SELECT sensor_id,
       count(*)::bigint AS gaps,
       sum(seq - prev_seq - 1)::bigint AS missing,
       max(ts) AS last_gap_at,
       (array_agg(prev_seq ORDER BY ts DESC))[1:$4] AS after_seq,
       (array_agg(seq ORDER BY ts DESC))[1:$4] AS before_seq
FROM d
WHERE seq > prev_seq + 1 AND greatest(received_at, prev_received) <= $3
GROUP BY sensor_id
"""

# Readings of a topic that ingest refused in the window: they leave holes in seq too.
REFUSED = """
SELECT topic, sum(readings_rejected)::bigint AS n
FROM dead_letter WHERE received_at > $1 AND received_at <= $2 GROUP BY topic
"""


@dataclass(frozen=True, slots=True)
class SeqGaps:
    """The holes in one sensor's ``seq`` within the window."""

    sensor_id: int
    gaps: int
    missing: int
    last_gap_at: datetime
    #: the newest holes first: (seq before the hole, seq after it)
    examples: tuple[tuple[int, int], ...]


async def seq_gaps(
    conn: Conn, *, since: datetime, until: datetime, settled_before: datetime, examples: int = 5
) -> list[SeqGaps]:
    """Sensors with holes in ``seq`` among readings measured in ``(since, until]`` whose
    neighbours both arrived at or before ``settled_before``."""
    rows = await conn.fetch(SEQ_GAPS, since, until, settled_before, examples)
    return [
        SeqGaps(
            int(r["sensor_id"]),
            int(r["gaps"]),
            int(r["missing"]),
            r["last_gap_at"],
            tuple(zip((int(a) for a in r["after_seq"]), (int(b) for b in r["before_seq"]), strict=True)),
        )
        for r in rows
    ]


async def refused_by_topic(conn: Conn, *, since: datetime, until: datetime) -> dict[str, int]:
    """Readings ingest rejected per topic, received in ``(since, until]``."""
    return {str(r["topic"]): int(r["n"]) for r in await conn.fetch(REFUSED, since, until)}
