"""Sealing and verification throughput on an embedded PostgreSQL (or $SLOPEWATCH_TEST_DATABASE_URL).

    .venv/bin/python -m tests.integrity.throughput [--days 30] [--interval-s 60]

Writes every sensor of the small test registry at one reading per interval (GNSS: three
channels), seals it all in one pass (catch-up, chunked by 7 days), verifies it, and
prints readings per second for each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from core.registry import parse_registry
from core.settings import Settings
from db.integrity import seal_pass, verify_sensor
from db.migrate import migrate
from db.pool import embedded_postgres, open_pool
from db.readings import ReadingBatch, write_batch
from db.registry import load_registry
from tests.conftest import small_registry_doc, with_database
from tests.integrity.support import SEAL_ALL, us


async def measure(root: str, days: float, interval_s: int) -> None:
    # In the past, so that every block is sealable now.
    t0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=days + 1)
    name = "bench_" + uuid.uuid4().hex[:8]
    admin = await asyncpg.connect(root)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = with_database(root, name)
    try:
        conn = await asyncpg.connect(dsn)
        await migrate(conn, timescaledb="off")
        await load_registry(conn, parse_registry(small_registry_doc()))
        sensors = [(r["id"], list(r["channels"])) for r in await conn.fetch("SELECT id, channels FROM sensor")]
        n = int(days * 86400 / interval_s)
        total = 0
        batch = ReadingBatch()
        for sid, channels in sensors:
            for i in range(n):
                for ch in channels:
                    batch.add(sid, ch, us(t0 + timedelta(seconds=i * interval_s)), i * 0.001, i)
                if len(batch) >= 50_000:
                    total += await write_batch(conn, batch, [])
                    batch = ReadingBatch()
        total += await write_batch(conn, batch, [])
        await conn.execute("VACUUM ANALYZE reading")
        await conn.close()
        async with open_pool(dsn, Settings()) as pool:
            began = time.perf_counter()
            report = await seal_pass(pool, SEAL_ALL)
            seal_s = time.perf_counter() - began
            assert report.rows == total, (report, total)
            began = time.perf_counter()
            async with pool.acquire() as c:
                for sid, _ in sensors:
                    v = await verify_sensor(c, sid, t0, t0 + timedelta(days=days + 1))
                    assert v.ok, v.findings[:3]
            verify_s = time.perf_counter() - began
            began = time.perf_counter()
            again = await seal_pass(pool, SEAL_ALL)
            idle_s = time.perf_counter() - began
        print(
            f"{total} readings in {report.seals} blocks of {len(sensors)} sensors over {days:g} days\n"
            f"  seal (catch-up): {seal_s:.2f} s = {total / seal_s:,.0f} readings/s\n"
            f"  verify:          {verify_s:.2f} s = {total / verify_s:,.0f} readings/s\n"
            f"  second pass:     {idle_s * 1000:.1f} ms, {again.seals} new seals"
        )
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--interval-s", type=int, default=60)
    args = parser.parse_args()
    given = os.environ.get("SLOPEWATCH_TEST_DATABASE_URL")
    if given:
        asyncio.run(measure(given, args.days, args.interval_s))
        return
    with tempfile.TemporaryDirectory(prefix="slopewatch-bench-") as tmp, embedded_postgres(Path(tmp)) as root:
        asyncio.run(measure(root, args.days, args.interval_s))


if __name__ == "__main__":
    main()
