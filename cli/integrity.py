"""``slopewatch verify``, ``seal`` and ``keygen``: prove stored readings against their hash
chains and signed heads, seal what is pending (once, or as a long-running task), and make the
sealer's signing key pair."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core import headsign
from core.headsign import HeadFormatError, HeadSigner, HeadVerifier, KeyFileError, SignedHead
from core.settings import Settings
from db import integrity
from db.heads import HeadsFile, open_heads_file, publish
from db.integrity import BLOCK, SealPolicy, Verification
from db.pool import Conn, connect, open_pool

logger = logging.getLogger(__name__)

MAX_FINDINGS_SHOWN = 20


def iso_time(text: str) -> datetime:
    t = datetime.fromisoformat(text)
    if t.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset; add Z or +08:00")
    return t


def add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mine", help="only this mine's sensors")
    parser.add_argument("--sensor", help="only sensors with this code")
    parser.add_argument("--since", type=iso_time, help="ISO 8601 with offset (default: the sensor's first data)")
    parser.add_argument("--until", type=iso_time, help="ISO 8601 with offset, exclusive (default: now)")
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
    parser.add_argument(
        "--public-key",
        type=Path,
        action="append",
        help="the sealer's Ed25519 public key (PEM); repeat for rotated keys (default SLOPEWATCH_SEAL_PUBLIC_KEY_FILE): "
        "signed heads kept in the database must verify and still be in their chains",
    )
    parser.add_argument(
        "--archived-heads",
        type=Path,
        metavar="FILE",
        help="JSON lines of signed heads archived outside the database (the sealer's SLOPEWATCH_HEADS_FILE, or "
        "pages of GET /api/v1/integrity/signed-heads, one per line): each must verify with the public key and still "
        "be in its chain",
    )


def add_keygen_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("private", type=Path, help="where to write the private key (PEM, mode 0600)")
    parser.add_argument("--public", type=Path, help="where to write the public key (default: PRIVATE.pub)")


def run_keygen(args: argparse.Namespace) -> int:
    public: Path = args.public or args.private.with_name(args.private.name + ".pub")
    try:
        kid = headsign.generate_key_pair(args.private, public)
    except KeyFileError as exc:
        print(f"slopewatch keygen: {exc}", file=sys.stderr)
        return 2
    print(f"key {kid}: private {args.private} (give it to the analysis service only), public {public}")
    return 0


def sealer_outputs(settings: Settings) -> tuple[HeadSigner | None, HeadsFile | None]:
    """The signer and the heads file from the settings, checked before anything starts;
    raises KeyFileError or HeadsFileError with a one-line reason."""
    signer = headsign.load_private_key(settings.seal_key_file) if settings.seal_key_file else None
    if signer is None:
        logger.warning("chain heads are not signed: set SLOPEWATCH_SEAL_KEY_FILE (docs/integrity.md)")
    heads_file = open_heads_file(settings.heads_file) if settings.heads_file else None
    return signer, heads_file


def add_seal_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--follow", action="store_true", help="keep sealing until SIGINT/SIGTERM")


class ArchiveError(Exception):
    """An archive of heads that cannot be read; the message names the file and line."""


def load_archived_heads(path: Path, *, mine: str | None, sensor: str | None) -> dict[tuple[str, str], list[SignedHead]]:
    """Signed heads from a JSON-lines archive, by (mine, sensor); blank lines are skipped."""
    out: dict[tuple[str, str], list[SignedHead]] = {}
    try:
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    found = _heads_of_line(line)
                except HeadFormatError as exc:
                    raise ArchiveError(f"{path} line {n}: {exc}") from None
                for h in found:
                    if (mine is None or h.mine_code == mine) and (sensor is None or h.sensor_code == sensor):
                        out.setdefault((h.mine_code, h.sensor_code), []).append(h)
    except OSError as exc:
        raise ArchiveError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ArchiveError(f"{path} is not UTF-8 text") from None
    return out


def _heads_of_line(line: str) -> list[SignedHead]:
    """One signed head (a line of the heads file), or a saved page of
    GET /api/v1/integrity/signed-heads (``{"items": [...]}`` on one line)."""
    try:
        doc = json.loads(line)
    except json.JSONDecodeError as exc:
        raise HeadFormatError(f"not JSON ({exc.msg})") from None
    if isinstance(doc, dict) and isinstance(doc.get("items"), list):
        return [SignedHead.from_json(item) for item in doc["items"]]
    return [SignedHead.from_json(doc)]


def _verifier(paths: Sequence[Path]) -> HeadVerifier:
    return HeadVerifier([headsign.load_public_key(p) for p in paths])


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
    """Exit 0 when every chosen sensor is OK, 1 on any finding, 2 when nothing matches or an
    argument (key, archive) cannot be used."""
    try:
        anchors = load_anchors(args.anchors) if args.anchors else {}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"slopewatch verify: {args.anchors} is not a heads JSON of /integrity/heads: {exc!r}", file=sys.stderr)
        return 2
    key_files: list[Path] = args.public_key or (
        [Path(settings.seal_public_key_file)] if settings.seal_public_key_file else []
    )
    try:
        if args.archived_heads and not key_files:
            raise KeyFileError("--archived-heads needs the sealer's public key: --public-key FILE")
        verifier = _verifier(key_files) if key_files else None
        archived = (
            load_archived_heads(args.archived_heads, mine=args.mine, sensor=args.sensor) if args.archived_heads else {}
        )
    except (KeyFileError, ArchiveError) as exc:
        print(f"slopewatch verify: {exc}", file=sys.stderr)
        return 2
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
                signed=archived.get((mine, code), ()),
                verifier=verifier,
            )
            bad += not v.ok
            print("\n".join(describe(f"{mine}/{code}", v)), flush=True)
        missing = sorted((set(anchors) | set(archived)) - {(m, c) for _, m, c in sensors})
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
    signer, heads_file = sealer_outputs(settings)
    async with open_pool(dsn, settings, min_size=1) as pool:
        if args.follow:
            stop = asyncio.Event()
            runtime.on_stop_signal(stop.set)
            await integrity.run_sealer(pool, stop, policy, signer=signer, heads_file=heads_file)
            return 0
        report = await integrity.seal_pass(pool, policy, signer=signer)
        published = await publish(pool, heads_file) if heads_file is not None else 0
    print(
        f"sealed: sensors={report.sensors} seals={report.seals} supplements={report.supplements} rows={report.rows}"
        + (f" signed={report.signed}" if signer else "")
        + (f" published={published}" if heads_file else "")
        + (f" busy={len(report.busy)}" if report.busy else "")
    )
    return 0
