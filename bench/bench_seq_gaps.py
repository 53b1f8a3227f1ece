"""Cost of the health.seq sweep (db/seq_gaps.py): ``python -m bench.bench_seq_gaps``.

A fleet of GNSS points (3 channels) reporting every 10 minutes with a week of history,
one reading in 500 lost; the analysis worker looks for holes in seq over the last 6 h
once a minute. Prints the query time, best of several repeats, and the rows it reads,
so the figure can be scaled to a province. Embedded PostgreSQL in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from analytics.worker import SEQ_GRACE_S, SEQ_WINDOW_S
from core.registry import parse_registry
from db.migrate import migrate
from db.pool import embedded_postgres
from db.registry import load_registry
from db.seq_gaps import seq_gaps

INTERVAL_S = 600
HISTORY_DAYS = 7
LOSS_EVERY = 500


def registry_doc(sensors: int) -> dict[str, object]:
    return {
        "regions": [{"code": "220000", "name": "P"}, {"code": "220100", "name": "C"}, {"code": "220102", "name": "X"}],
        "mines": [
            {
                "code": "B1",
                "name": "Bench pit",
                "kind": "open_pit",
                "region": "220102",
                "sites": [
                    {
                        "code": "B1-E",
                        "name": "East",
                        "kind": "slope",
                        "height_m": 200,
                        "sensors": [
                            {"code": f"GN{i:05d}", "kind": "gnss", "interval_s": INTERVAL_S} for i in range(sensors)
                        ],
                    }
                ],
            }
        ],
    }


async def run(dsn: str, sensors: int, repeats: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn, timescaledb="off")
        await load_registry(conn, parse_registry(registry_doc(sensors)))
        now = datetime.now(UTC)
        start = now - timedelta(days=HISTORY_DAYS)
        started = time.monotonic()
        await conn.execute(
            """INSERT INTO reading (sensor_id, channel, ts, value, seq, received_at)
               SELECT s.id, ch, $1::timestamptz + n * make_interval(secs => $2), n, n, $1::timestamptz + n * make_interval(secs => $2)
               FROM sensor s, unnest(s.channels) ch, generate_series(0, $3) n
               WHERE (n + s.id) % $4 <> 0""",
            start,
            float(INTERVAL_S),
            HISTORY_DAYS * 86_400 // INTERVAL_S,
            LOSS_EVERY,
        )
        await conn.execute("VACUUM ANALYZE reading")
        rows = await conn.fetchval("SELECT count(*) FROM reading")
        print(
            f"fleet: {sensors} GNSS points, {rows:,} rows over {HISTORY_DAYS} days, loaded in "
            f"{time.monotonic() - started:.1f} s"
        )
        window = await conn.fetchval(
            "SELECT count(*) FROM reading WHERE ts > $1", now - timedelta(seconds=SEQ_WINDOW_S)
        )
        best = float("inf")
        found = []
        for _ in range(repeats):
            t = time.monotonic()
            found = await seq_gaps(
                conn,
                since=now - timedelta(seconds=SEQ_WINDOW_S),
                until=now,
                settled_before=now - timedelta(seconds=SEQ_GRACE_S),
            )
            best = min(best, time.monotonic() - t)
        missing = sum(g.missing for g in found)
        print(
            f"health.seq sweep over {SEQ_WINDOW_S / 3600:g} h: {best * 1000:.0f} ms (best of {repeats}), "
            f"{window:,} rows in the window, {window / best:,.0f} rows/s; {len(found)} sensors with holes, "
            f"{missing} readings missing"
        )
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sensors", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="slopewatch-bench-") as tmp, embedded_postgres(Path(tmp)) as dsn:
        asyncio.run(run(dsn, args.sensors, args.repeats))


if __name__ == "__main__":
    main()
