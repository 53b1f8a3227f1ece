"""Signed chain heads (migration 014): signing a sensor's new head in the sealer's
transaction, reading them back, and publishing them to an append-only JSON-lines file.

The key stays outside the database (core/headsign.py). The file is written after the
rows are committed, from the rows (never from memory), and resumes after the last complete
line it holds, so a crash between commit and write loses nothing and a rolled-back head is
never published.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import asyncpg

from core.headsign import HeadFormatError, HeadSigner, SignedHead, parse_line
from db.pool import Conn

logger = logging.getLogger(__name__)

_COLS = "h.xid::text::bigint AS xid, h.id, h.sensor_id, h.mine_code, h.sensor_code, h.seq, h.entry_hash, h.signed_at, h.key_id, h.signature"


def _head(r: asyncpg.Record) -> SignedHead:
    return SignedHead(
        mine_code=r["mine_code"],
        sensor_code=r["sensor_code"],
        sensor_id=r["sensor_id"],
        seq=r["seq"],
        entry_hash=bytes(r["entry_hash"]),
        signed_at=r["signed_at"],
        key_id=r["key_id"],
        signature=bytes(r["signature"]),
        xid=r["xid"],
        id=r["id"],
    )


async def sign_head(
    conn: Conn, signer: HeadSigner, sensor_id: int, seq: int, entry_hash: bytes, signed_at: datetime
) -> SignedHead:
    """Sign the head (seq, entry_hash) of a sensor's chain and store the signature, in the
    caller's transaction (the one that appended the entry)."""
    codes = await conn.fetchrow(
        "SELECT m.code AS mine_code, s.code AS sensor_code FROM sensor s JOIN mine m ON m.id = s.mine_id "
        "WHERE s.id = $1",
        sensor_id,
    )
    assert codes is not None, sensor_id
    head = signer.sign(codes["mine_code"], codes["sensor_code"], sensor_id, seq, entry_hash, signed_at)
    row = await conn.fetchrow(
        """INSERT INTO chain_head_signature (sensor_id, mine_code, sensor_code, seq, entry_hash, signed_at, key_id,
                                             signature)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id, xid::text::bigint AS xid""",
        sensor_id,
        head.mine_code,
        head.sensor_code,
        seq,
        entry_hash,
        signed_at,
        head.key_id,
        head.signature,
    )
    assert row is not None
    return dataclasses.replace(head, xid=row["xid"], id=row["id"])


async def stored(conn: Conn, sensor_id: int) -> list[SignedHead]:
    """The signed heads of a sensor kept in the database, oldest first."""
    rows = await conn.fetch(
        f"SELECT {_COLS} FROM chain_head_signature h WHERE h.sensor_id = $1 ORDER BY h.id", sensor_id
    )
    return [_head(r) for r in rows]


async def published(
    conn: Conn, *, after: tuple[int, int], limit: int, prefix: str = "", mine_code: str | None = None
) -> list[SignedHead]:
    """Signed heads after the position ``after`` (xid, id) in publication order, of mines now in
    the subtree; only heads whose transaction is older than every running one."""
    rows = await conn.fetch(
        f"""SELECT {_COLS} FROM chain_head_signature h
            JOIN sensor s ON s.id = h.sensor_id JOIN mine m ON m.id = s.mine_id
            WHERE h.xid < pg_snapshot_xmin(pg_current_snapshot())
              AND (h.xid, h.id) > ($1::text::xid8, $2::bigint)
              AND m.region_code LIKE $3 || '%' AND ($4::text IS NULL OR m.code = $4)
            ORDER BY h.xid, h.id LIMIT $5""",
        str(after[0]),
        after[1],
        prefix,
        mine_code,
        limit,
    )
    return [_head(r) for r in rows]


class HeadsFile:
    """The append-only JSON-lines file of signed heads, one head per line, for an auditor
    to archive (``SLOPEWATCH_HEADS_FILE``). Only ever appended to, except that a torn last
    line (a crash mid-write) is cut off before writing resumes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        #: (xid, id) of the last head in the file
        self.position = (0, 0)

    def open(self) -> None:
        """Check that the file can be appended to and find where publishing resumes. Raises
        OSError (unwritable) or HeadFormatError (the last complete line is not a head)."""
        with self.path.open("ab+") as f:
            size = f.seek(0, os.SEEK_END)
            tail_start = max(0, size - 65536)
            f.seek(tail_start)
            tail = f.read()
            if tail and not tail.endswith(b"\n"):
                cut = tail_start + tail.rfind(b"\n") + 1 if b"\n" in tail else tail_start
                logger.warning("heads file %s ends in a torn line; cutting %d byte(s)", self.path, size - cut)
                f.truncate(cut)
                tail = tail[: cut - tail_start]
        lines = tail.splitlines()
        if lines:
            last = parse_line(lines[-1].decode("utf-8", "replace"))
            self.position = (last.xid, last.id)

    def append(self, heads: Sequence[SignedHead]) -> None:
        if not heads:
            return
        data = "".join(json.dumps(h.to_json(), separators=(",", ":")) + "\n" for h in heads).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.position = (heads[-1].xid, heads[-1].id)


async def publish(pool: asyncpg.Pool, out: HeadsFile, *, batch: int = 5000) -> int:
    """Append every signed head committed since the file's last line; returns how many."""
    n = 0
    while True:
        async with pool.acquire() as conn:
            heads = await published(conn, after=out.position, limit=batch)
        if not heads:
            return n
        await asyncio.to_thread(out.append, heads)
        n += len(heads)


def open_heads_file(path: str | Path) -> HeadsFile:
    """The heads file, checked; raises HeadsFileError with a one-line reason."""
    out = HeadsFile(Path(path))
    try:
        out.open()
    except OSError as exc:
        raise HeadsFileError(f"cannot append to the heads file {path}: {exc.strerror}") from None
    except HeadFormatError as exc:
        raise HeadsFileError(f"the heads file {path} does not end in a signed head ({exc})") from None
    return out


class HeadsFileError(Exception):
    """The heads file cannot be used; the message says why."""
