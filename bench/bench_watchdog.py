"""What the roll-up hook and the watchdog cost per pass at province scale.

``python -m bench.bench_watchdog [--mines 1000] [--sensors-per-mine 100] [--passes 20]``

The province of bench.bench_summary (1,000 mines, 100,000 sensors, 3 channels of latest
values each, 5 % silent, about 2,000 open point alerts), in a throwaway embedded
PostgreSQL. Times the roll-up's reads (analytics.facilities.facility_results: what an
analysis cycle pays after an alert changed, and once a minute) and one watchdog check
(api.watchdog.Watchdog.check: the heartbeat every poll, the online counts per site for
monitoring.offline once a minute) with the analysis alive, then the check that opens one watchdog alert per mine when it
has died, and a check while it stays dead. Baseline in the same run: the summary's
online-count refresh (db.overview.refresh_mine_status), which the API already runs every
SLOPEWATCH_SUMMARY_REFRESH_S over the same rows.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg

from analytics.facilities import facility_results, rollup_rule
from api.watchdog import Watchdog
from bench.bench_summary import build
from core.settings import Settings
from db.migrate import migrate
from db.overview import refresh_mine_status
from db.pool import embedded_postgres, open_pool


async def ms(fn: object, n: int) -> float:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()  # type: ignore[operator]
        out.append((time.perf_counter() - t0) * 1000)
    return statistics.median(out)


async def main(mines: int, per_mine: int, passes: int) -> None:
    settings = Settings.from_env({}).with_(watchdog_max_lag_s=600.0)
    with tempfile.TemporaryDirectory() as tmp, embedded_postgres(Path(tmp)) as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn, timescaledb="off")
            await build(conn, mines, per_mine)
            await conn.execute(
                "INSERT INTO analysis_heartbeat (worker, started_at, beat_at, evaluated_to) VALUES ('w', now(), now(), now())"
            )
        finally:
            await conn.close()
        async with open_pool(dsn, settings) as pool:
            async with pool.acquire() as c:
                n_alerts = await c.fetchval("SELECT count(*) FROM alert")
                refresh = await ms(lambda: refresh_mine_status(c), passes)
                rule = rollup_rule(settings)
                roll = await ms(lambda: facility_results(c, rule), passes)
                found = len(await facility_results(c, rule))
            dog = Watchdog(settings, pool)
            full = await ms(dog.check, passes)
            alive = await ms(lambda: dog.check(offline=False), passes)
            async with pool.acquire() as c:
                await c.execute("UPDATE analysis_heartbeat SET beat_at = now() - interval '1 hour'")
            t0 = time.perf_counter()
            await dog.check()
            opening = (time.perf_counter() - t0) * 1000
            async with pool.acquire() as c:
                opened = await c.fetchval("SELECT count(*) FROM alert WHERE rule = 'watchdog.analysis'")
            dead = await ms(lambda: dog.check(offline=False), passes)
            await dog.stop_standby()
    print(
        f"{mines} mines, {mines * per_mine} sensors, {n_alerts} open point alerts; medians of {passes} passes\n"
        f"  baseline: summary online-count refresh   {refresh:8.1f} ms\n"
        f"  roll-up reads (facilities to apply: {found:4d}) {roll:8.1f} ms  ({roll / refresh:.2f}x baseline)\n"
        f"  watchdog check with the offline recount {full:6.1f} ms  ({full / refresh:.2f}x baseline; once a minute)\n"
        f"  watchdog check, analysis alive        {alive:8.1f} ms  ({alive / refresh:.2f}x baseline; every poll)\n"
        f"  watchdog check that opens {opened} alerts {opening:8.1f} ms (once, when the analysis dies)\n"
        f"  watchdog check, analysis still dead   {dead:8.1f} ms  ({dead / refresh:.2f}x baseline)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mines", type=int, default=1000)
    parser.add_argument("--sensors-per-mine", type=int, default=100)
    parser.add_argument("--passes", type=int, default=20)
    a = parser.parse_args()
    asyncio.run(main(a.mines, a.sensors_per_mine, a.passes))
