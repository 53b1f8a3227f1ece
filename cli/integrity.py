"""``slopewatch verify`` and ``slopewatch seal``: prove stored readings against their hash
chains, and seal what is pending (once, or as a long-running task)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.settings import Settings
from db import integrity
from db.integrity import BLOCK, SealPolicy, Verification
from db.pool import Conn, connect, open_pool

MAX_FINDINGS_SHOWN = 20


def _time(text: str) -> datetime:
    t = datetime.fromisoformat(text)
    if t.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset; add Z or +08:00")
    return t


def add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mine", help="only this mine's sensors")
    parser.add_argument("--sensor", help="only sensors with this code")
    parser.add_argument("--since", type=_time, help="ISO 8601 with offset (default: the sensor's first data)")
    parser.add_argument("--until", type=_time, help="ISO 8601 with offset, exclusive (default: now)")
    parser.add_argument(
        "--unsealed-after-h",
        type=float,
        default=3.0,
        help="rows unsealed for longer than this many hours are a finding (default 3)",
    )
    parser.add_argument(
        "--anchors",
        type=Path,
        help="JSON of heads archived upstream (the body of GET /api/v1/integrity/heads, or its items): "
        "each must still be in its chain, unchanged",
    )


def add_seal_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--follow", action="store_true", help="keep sealing until SIGINT/SIGTERM")


def load_anchors(path: Path) -> dict[tuple[str, str], list[tuple[int, bytes]]]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    items = doc["items"] if isinstance(doc, dict) else doc
    out: dict[tuple[str, str], list[tuple[int, bytes]]] = {}
    for h in items:
        out.setdefault((h["mine_code"], h["sensor_code"]), []).append((int(h["seq"]), bytes.fromhex(h["entry_hash"])))
    return out


async def _sensors(conn: Conn, mine: str | None, sensor: str | None) -> list[tuple[int, str, str]]:
    rows = await conn.fetch(
        """SELECT s.id, m.code AS mine_code, s.code FROM sensor s JOIN mine m ON m.id = s.mine_id
           WHERE ($1::text IS NULL OR m.code = $1) AND ($2::text IS NULL OR s.code = $2)
           ORDER BY m.code, s.code""",
        mine,
        sensor,
    )
    return [(r["id"], r["mine_code"], r["code"]) for r in rows]


def describe(name: str, v: Verification) -> list[str]:
    head = f"head={v.head.seq}:{v.head.entry_hash.hex()[:16]}" if v.head else "head=none"
    counts = f"entries={v.entries} blocks={v.blocks_checked} rows={v.rows_checked}"
    pending = f" pending={v.pending_rows}" if v.pending_rows else ""
    lines = [f"{name:<24} {v.status:<9} {counts}{pending} {head}"]
    for f in v.findings[:MAX_FINDINGS_SHOWN]:
        lines.append(f"    {f.reason}: {f.detail}")
    if len(v.findings) > MAX_FINDINGS_SHOWN:
        lines.append(f"    ... and {len(v.findings) - MAX_FINDINGS_SHOWN} more finding(s)")
    return lines


async def run_verify(args: argparse.Namespace, settings: Settings, dsn: str) -> int:
    """Exit 0 when every chosen sensor is OK, 1 on any finding, 2 when nothing matches."""
    anchors = load_anchors(args.anchors) if args.anchors else {}
    conn = await connect(dsn, settings)
    try:
        sensors = await _sensors(conn, args.mine, args.sensor)
        if not sensors:
            print("slopewatch verify: no sensor matches --mine/--sensor", file=sys.stderr)
            return 2
        now = datetime.now(UTC)
        until: datetime = args.until or now + BLOCK
        bad = 0
        for sid, mine, code in sensors:
            since = args.since or await integrity.history_start(conn, sid) or until - BLOCK
            if since >= until:
                since = until - BLOCK
            v = await integrity.verify_sensor(
                conn,
                sid,
                since,
                until,
                unsealed_after=timedelta(hours=args.unsealed_after_h),
                anchors=anchors.get((mine, code), ()),
            )
            bad += not v.ok
            print("\n".join(describe(f"{mine}/{code}", v)), flush=True)
        missing = sorted(set(anchors) - {(m, c) for _, m, c in sensors})
        if missing and not (args.mine or args.sensor):
            for mine, code in missing:
                print(f"{mine}/{code:<20} MISSING   an archived head names a sensor that is not in the registry")
            bad += len(missing)
    finally:
        await conn.close()
    print(f"{len(sensors)} sensor(s) verified, {bad} with findings", file=sys.stderr)
    return 1 if bad else 0


async def run_seal(args: argparse.Namespace, settings: Settings, dsn: str) -> int:
    from cli import runtime

    policy = SealPolicy()
    async with open_pool(dsn, settings, min_size=1) as pool:
        if args.follow:
            stop = asyncio.Event()
            runtime.on_stop_signal(stop.set)
            await integrity.run_sealer(pool, stop, policy)
            return 0
        report = await integrity.seal_pass(pool, policy)
    print(
        f"sealed: sensors={report.sensors} seals={report.seals} supplements={report.supplements} rows={report.rows}"
        + (f" busy={len(report.busy)}" if report.busy else "")
    )
    return 0
