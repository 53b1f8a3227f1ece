"""Regulators' summary latency at province scale: 1,000 mines, 100,000 sensors.

``python -m bench.bench_summary [--mines 1000] [--sensors-per-mine 100] [--requests 200]``

Builds a province (10 cities × 10 counties × 10 mines) in a throwaway embedded
PostgreSQL, with three channels of latest values per sensor (5 % of sensors silent),
about 2,000 open alerts in every handling stage and some supervision; then times
``GET /api/v1/summary`` through the whole app (auth, SQL, JSON, ETag) for a province,
a city and a county token: "recount" empties the summary cache before every request
(what a request pays right after a change), "unchanged" is what polling dashboards pay
while nothing changes; and the 304 path. Baseline in the same run: ``GET /api/v1/me``
(auth and one query), so the ratio shows what the summary itself costs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import httpx

from api.app import create_app
from core.settings import Settings
from db import tokens
from db.migrate import migrate
from db.overview import refresh_mine_status
from db.pool import embedded_postgres, open_pool


async def build(conn: asyncpg.Connection, mines: int, per_mine: int) -> None:
    regions = [("220000", "Province", "province", None)]
    for c in range(1, 11):
        city = f"22{c:02d}00"
        regions.append((city, f"City {c}", "city", "220000"))
        for k in range(1, 11):
            regions.append((f"22{c:02d}{k:02d}", f"County {c}-{k}", "county", city))
    await conn.executemany("INSERT INTO region (code, name, level, parent_code) VALUES ($1, $2, $3, $4)", regions)
    counties = [r[0] for r in regions if r[2] == "county"]
    await conn.execute(
        """INSERT INTO mine (code, name, kind, region_code, evacuation)
           SELECT 'M' || lpad(i::text, 5, '0'), 'Mine ' || i, 'open_pit', ($2::text[])[1 + (i - 1) % $3], '停产撤人'
           FROM generate_series(1, $1) i""",
        mines,
        counties,
        len(counties),
    )
    await conn.execute(
        "INSERT INTO site (code, mine_id, name, kind) SELECT m.code || '-S', m.id, 'slope', 'slope' FROM mine m"
    )
    await conn.execute(
        """INSERT INTO sensor (mine_id, site_id, code, kind, channels, interval_s)
           SELECT m.id, s.id, 'GN' || lpad(j::text, 3, '0'), 'gnss', ARRAY['east_mm', 'north_mm', 'up_mm'], 3600
           FROM mine m JOIN site s ON s.mine_id = m.id CROSS JOIN generate_series(1, $1) j""",
        per_mine,
    )
    # 95 % online (received in the last hour), 5 % silent for a day.
    await conn.execute(
        """INSERT INTO sensor_latest (sensor_id, channel, ts, value, received_at)
           SELECT s.id, c, now(), 1.0,
                  CASE WHEN s.id % 20 = 0 THEN now() - interval '1 day' ELSE now() - interval '10 min' END
           FROM sensor s CROSS JOIN unnest(s.channels) c"""
    )
    # About 2 % of sensors with an open alert, across levels and stages.
    await conn.execute(
        """INSERT INTO alert (sensor_id, site_id, mine_id, region_code, rule, rule_version, level, peak_level,
                              opened_at, updated_at, evidence, explanation_en, explanation_zh, stage,
                              acknowledged_at, handling_deadline)
           SELECT s.id, s.site_id, s.mine_id, m.region_code, 'displacement.acceleration.horizontal', 1,
                  1 + s.id % 4, 1 + s.id % 4, now(), now(), '{}', 'x', 'x',
                  (ARRAY['open', 'acknowledged', 'handling', 'resolved', 'verified'])[1 + s.id % 5],
                  CASE WHEN s.id % 5 = 0 THEN NULL ELSE now() END,
                  CASE WHEN s.id % 5 = 2 THEN now() - interval '1 day' END
           FROM sensor s JOIN mine m ON m.id = s.mine_id WHERE s.id % 50 = 0"""
    )
    await conn.execute(
        """INSERT INTO alert_event (alert_id, kind, level, at) SELECT id, 'opened', level, now() FROM alert"""
    )
    await conn.execute(
        """INSERT INTO alert_supervision (alert_id, region_code, actor, deadline, note)
           SELECT a.id, left(a.region_code, 4) || '00', 'bench', now() + (a.id % 3 - 1) * interval '1 day', 'x'
           FROM alert a WHERE a.id % 10 = 0"""
    )
    await conn.execute("ANALYZE")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def timed(
    http: httpx.AsyncClient, path: str, headers: dict[str, str], n: int, before: Callable[[], None] | None = None
) -> list[float]:
    """Milliseconds per request; ``before`` runs untimed ahead of each one."""
    out = []
    for _ in range(n):
        if before is not None:
            before()
        t0 = time.perf_counter()
        r = await http.get(path, headers=headers)
        out.append((time.perf_counter() - t0) * 1000)
        assert r.status_code in (200, 304), r.text
    return out


async def main(mines: int, per_mine: int, requests: int) -> None:
    settings = Settings.from_env({})
    with tempfile.TemporaryDirectory() as tmp, embedded_postgres(Path(tmp)) as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn, timescaledb="off")
            t0 = time.perf_counter()
            await build(conn, mines, per_mine)
            t1 = time.perf_counter()
            await refresh_mine_status(conn)
            refresh_ms = (time.perf_counter() - t1) * 1000
            n_sensors = await conn.fetchval("SELECT count(*) FROM sensor")
            n_alerts = await conn.fetchval("SELECT count(*) FROM alert")
            secrets = {}
            for label, code in (("province", "220000"), ("city", "220100"), ("county", "220101")):
                _, secrets[label] = await tokens.create(
                    conn, name=label, role="viewer", scope_kind="region", scope_code=code
                )
        finally:
            await conn.close()
        print(
            f"built {mines} mines, {n_sensors} sensors, {n_alerts} open alerts in {time.perf_counter() - t0:.1f} s; "
            f"online counts refreshed in {refresh_ms:.0f} ms (the API does this every SLOPEWATCH_SUMMARY_REFRESH_S)",
            flush=True,
        )
        async with open_pool(dsn, settings) as pool:
            app = create_app(settings, pool=pool)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b") as http:
                auth = {k: {"Authorization": f"Bearer {v}"} for k, v in secrets.items()}
                await timed(http, "/api/v1/summary", auth["province"], 5)  # warm up
                base = await timed(http, "/api/v1/me", auth["province"], requests)
                print(f"{'request':<34} {'p50 ms':>8} {'p99 ms':>8} {'× /me p50':>10}")
                print(f"{'GET /me (baseline)':<34} {statistics.median(base):8.2f} {pct(base, 99):8.2f} {1.0:10.1f}")
                cache = app.state.summary_cache
                for label in ("province", "city", "county"):
                    t = await timed(http, "/api/v1/summary", auth[label], requests, before=cache.clear)
                    ratio = statistics.median(t) / statistics.median(base)
                    print(
                        f"{'GET /summary ' + label + ' (recount)':<34} {statistics.median(t):8.2f} {pct(t, 99):8.2f} {ratio:10.1f}"
                    )
                for label in ("province", "city", "county"):
                    t = await timed(http, "/api/v1/summary", auth[label], requests)
                    ratio = statistics.median(t) / statistics.median(base)
                    print(
                        f"{'GET /summary ' + label + ' (unchanged)':<34} {statistics.median(t):8.2f} {pct(t, 99):8.2f} {ratio:10.1f}"
                    )
                etag = (await http.get("/api/v1/summary", headers=auth["province"])).headers["etag"]
                t = await timed(http, "/api/v1/summary", {**auth["province"], "If-None-Match": etag}, requests)
                ratio = statistics.median(t) / statistics.median(base)
                print(
                    f"{'GET /summary province → 304':<34} {statistics.median(t):8.2f} {pct(t, 99):8.2f} {ratio:10.1f}"
                )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mines", type=int, default=1000)
    parser.add_argument("--sensors-per-mine", type=int, default=100)
    parser.add_argument("--requests", type=int, default=200)
    a = parser.parse_args()
    asyncio.run(main(a.mines, a.sensors_per_mine, a.requests))
