"""Ingest workers' heartbeats, and what the analysis needs to raise ``health.ingest_workers``
in every mine (analytics/worker.py ``_sweep_ingest_workers``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from db.pool import Conn


async def heartbeat(
    conn: Conn, *, client_id: str, shared_group: str, host: str, pid: int, started_at: datetime, heartbeat_s: float
) -> None:
    """This worker is connected and subscribed, now."""
    await conn.execute(
        """INSERT INTO ingest_worker (client_id, shared_group, host, pid, started_at, seen_at, heartbeat_s)
           VALUES ($1, $2, $3, $4, $5, now(), $6)
           ON CONFLICT (client_id) DO UPDATE
               SET shared_group = EXCLUDED.shared_group, host = EXCLUDED.host, pid = EXCLUDED.pid,
                   started_at = EXCLUDED.started_at, seen_at = now(), heartbeat_s = EXCLUDED.heartbeat_s""",
        client_id,
        shared_group,
        host,
        pid,
        started_at,
        heartbeat_s,
    )


@dataclass(frozen=True, slots=True)
class Workers:
    alive: list[str]
    silent: list[str]
    groups: list[str]


async def workers(conn: Conn, now: datetime, *, silent_for_days: float = 14.0) -> Workers:
    """Alive: heard from within three heartbeats before ``now``. Silent: heard from before
    that, within ``silent_for_days`` (mosquitto's persistent_client_expiration in deploy/:
    a session not seen for longer is gone from the group)."""
    rows = await conn.fetch(
        """SELECT client_id, shared_group, seen_at > $1::timestamptz - make_interval(secs => 3 * heartbeat_s) AS alive
           FROM ingest_worker WHERE seen_at > $1::timestamptz - make_interval(days => $2::int) ORDER BY client_id""",
        now,
        int(silent_for_days),
    )
    return Workers(
        [r["client_id"] for r in rows if r["alive"]],
        [r["client_id"] for r in rows if not r["alive"]],
        sorted({r["shared_group"] for r in rows if r["alive"]}),
    )


#: transaction-level advisory lock of the ingest-workers sweep ("SWIW"): with several analysis
#: processes one writes at a time, and none races another to open a mine's alert
INGEST_WORKERS_LOCK = 0x5357_4957


async def try_lock(conn: Conn) -> bool:
    """Call in a transaction; False when another analysis process holds the sweep right now."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", INGEST_WORKERS_LOCK))


@dataclass(frozen=True, slots=True)
class MineRow:
    mine_id: int
    code: str
    region_code: str
    first_site_id: int


async def mines(conn: Conn) -> list[MineRow]:
    """Every mine that has a site (an alert belongs to a site): each gets the alert."""
    rows = await conn.fetch(
        """SELECT m.id, m.code, m.region_code, min(si.id) AS site_id
           FROM mine m JOIN site si ON si.mine_id = m.id GROUP BY m.id ORDER BY m.id"""
    )
    return [MineRow(r["id"], r["code"], r["region_code"], r["site_id"]) for r in rows]
