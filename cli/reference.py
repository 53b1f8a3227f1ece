"""``slopewatch reference``: the reference position of a displacement sensor, and
re-baselining it (an audited event in the sensor's chain, as through the API)."""

from __future__ import annotations

import argparse
import math
import sys

from cli.integrity import iso_time
from core.settings import Settings
from db import references
from db.pool import Conn, connect

_DISPLACEMENT = ("gnss", "total_station", "crack", "inclinometer")


def _value(text: str) -> tuple[str, float]:
    channel, sep, number = text.partition("=")
    try:
        value = float(number)
    except ValueError:
        value = math.nan
    if not sep or not channel or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not CHANNEL=MM, e.g. east_mm=12.5")
    return channel, value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="reference_command", required=True, metavar="ACTION")
    show = sub.add_parser("show", help="the reference of each channel, where it comes from and since when; history")
    show.add_argument("mine")
    show.add_argument("sensor")
    put = sub.add_parser(
        "set",
        help="re-baseline (reinstalled prism, new antenna): readings before --since are not judged any more",
    )
    put.add_argument("mine")
    put.add_argument("sensor")
    put.add_argument(
        "--since", type=iso_time, required=True, help="measurement time of the new installation (ISO 8601)"
    )
    put.add_argument(
        "--value",
        type=_value,
        action="append",
        metavar="CHANNEL=MM",
        help="the new reference of a channel (repeat for every channel); omitted: the median of each "
        "channel's first 6 valid readings at or after --since",
    )
    put.add_argument("--reason", required=True, help="why, for the audit trail")
    put.add_argument("--actor", required=True, help="who does it, for the audit trail")


async def _sensor(conn: Conn, mine: str, code: str) -> tuple[int, str, list[str], str] | None:
    row = await conn.fetchrow(
        """SELECT s.id, s.kind, s.channels, s.baseline::text AS baseline FROM sensor s
           JOIN mine m ON m.id = s.mine_id WHERE m.code = $1 AND s.code = $2""",
        mine,
        code,
    )
    return (row["id"], row["kind"], list(row["channels"]), row["baseline"]) if row is not None else None


def _line(r: references.Reference) -> str:
    extra = f" chain entry {r.seq}: {r.reason}" if r.seq is not None else ""
    basis = f" (median of the first {r.basis_n})" if r.basis_n is not None else ""
    return (
        f"  {r.channel:<12} {r.value:>12.3f} mm  {r.source:<13} since {r.since.isoformat()}{basis}"
        f"  by {r.actor} at {r.recorded_at.isoformat()}{extra}"
    )


async def run(args: argparse.Namespace, settings: Settings, dsn: str) -> int:
    """Exit 0 on success, 2 on bad input (unknown sensor, no reference, values missing)."""
    conn = await connect(dsn, settings)
    try:
        found = await _sensor(conn, args.mine, args.sensor)
        if found is None:
            print(f"slopewatch reference: sensor {args.mine}/{args.sensor} is not in the registry", file=sys.stderr)
            return 2
        sid, kind, channels, baseline = found
        if kind not in _DISPLACEMENT:
            print(f"slopewatch reference: a {kind} has no reference position", file=sys.stderr)
            return 2
        if args.reference_command == "set":
            values = dict(args.value) if args.value else None
            try:
                ev = await references.rebaseline(
                    conn, sid, channels, since=args.since, values=values, reason=args.reason, actor=args.actor
                )
            except references.RebaselineError as exc:
                print(f"slopewatch reference: {exc}", file=sys.stderr)
                return 2
            print(f"{args.mine}/{args.sensor}: re-baselined from {args.since.isoformat()} (chain entry {ev.seq})")
        current = references.effective(
            await references.newest_rows(conn, [sid]), references.registry_baseline(baseline)
        )
        print(f"{args.mine}/{args.sensor} reference:")
        for ch in channels:
            if ch in current:
                print(_line(current[ch]))
            else:
                print(f"  {ch:<12} none yet (the analysis records the first readings when it sees them)")
        history = await references.history(conn, sid)
        if args.reference_command == "show" and history:
            print("history:")
            for r in history:
                print(_line(r))
    finally:
        await conn.close()
    return 0
