"""Tamper evidence: a hash chain per sensor over sealed blocks of its readings.

Every sensor's readings are cut into blocks of ``BLOCK_S`` seconds of measurement time
(aligned to the Unix epoch). Once reception has moved past a block, the sealer appends a
chain entry that commits to the block's rows: their count, a SHA-256 over a canonical
encoding of every column (``digest``) and one over their keys only (``keys_digest``, which
tells a changed row from an inserted or deleted one). Each entry hashes the previous
entry's hash, so rewriting or removing an entry breaks every later link; the newest entry
per sensor (the head) is listed by the API for a higher level to archive.

A data entry covers the block's rows received up to ``received_to``. Late readings into a
sealed block are not lost: they get a ``supplement`` entry that re-covers the whole block,
and the earlier entry still holds for the rows it covered, so a supplement cannot launder
a change to rows sealed before. Corrections are chained events too, never rewrites.

The canonical encodings (docs/integrity.md) are computed by PostgreSQL for the rows
(``_ROW_BYTES``) and mirrored in Python (:func:`row_bytes`) so that anyone can recompute
them; entry hashes are computed in Python.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from core.headsign import HeadSigner, HeadVerifier, SignedHead
from db import heads as signed_heads
from db.pool import Conn

logger = logging.getLogger(__name__)

#: Width of a sealed block of measurement time, seconds.
BLOCK_S = 3600
BLOCK = timedelta(seconds=BLOCK_S)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Advisory lock classes (two-key form, second key the sensor id).
_CLAIM_LOCK = 7_263_542
_CHAIN_LOCK = 7_263_543
_FORMAT = b"slopewatch/seal/v1"
_KINDS = {"seal": 1, "supplement": 2, "correction": 3}
_ZERO = bytes(32)

# --- canonical encodings -----------------------------------------------------------------

_US = "(extract(epoch FROM {col}) * 1000000)::int8"
#: One row: len(channel) int32 BE, channel UTF-8, ts µs int64 BE, value IEEE 754 float64 BE,
#: seq (0x00 if NULL, else 0x01 + int64 BE), received_at µs int64 BE.
_ROW_BYTES = (
    "int4send(octet_length(r.channel)) || convert_to(r.channel, 'UTF8') || int8send("
    + _US.format(col="r.ts")
    + ") || float8send(r.value) || CASE WHEN r.seq IS NULL THEN '\\x00'::bytea "
    "ELSE '\\x01'::bytea || int8send(r.seq) END || int8send(" + _US.format(col="r.received_at") + ")"
)
_KEY_BYTES = (
    "int4send(octet_length(r.channel)) || convert_to(r.channel, 'UTF8') || int8send(" + _US.format(col="r.ts") + ")"
)
# Byte order of the channel, whatever the database's collation (a restore elsewhere must agree).
_ORDER = 'ORDER BY r.channel COLLATE "C", r.ts'


def to_us(t: datetime) -> int:
    """Exact integer microseconds since the Unix epoch."""
    return (t - EPOCH) // timedelta(microseconds=1)


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def block_floor(t: datetime) -> datetime:
    return from_us(to_us(t) // (BLOCK_S * 1_000_000) * BLOCK_S * 1_000_000)


def row_bytes(channel: str, ts: datetime, value: float, seq: int | None, received_at: datetime) -> bytes:
    """The canonical encoding of one reading (the Python twin of ``_ROW_BYTES``)."""
    ch = channel.encode()
    tail = b"\x00" if seq is None else b"\x01" + struct.pack(">q", seq)
    return (
        struct.pack(">i", len(ch))
        + ch
        + struct.pack(">qd", to_us(ts), value)
        + tail
        + struct.pack(">q", to_us(received_at))
    )


def block_digests(rows: Iterable[tuple[str, datetime, float, int | None, datetime]]) -> tuple[int, bytes, bytes]:
    """(n_rows, digest, keys_digest) of a block's rows (channel, ts, value, seq, received_at)."""
    ordered = sorted(rows, key=lambda r: (r[0].encode(), r[1]))
    full, keys = hashlib.sha256(), hashlib.sha256()
    for ch, ts, value, seq, received in ordered:
        full.update(row_bytes(ch, ts, value, seq, received))
        b = ch.encode()
        keys.update(struct.pack(">i", len(b)) + b + struct.pack(">q", to_us(ts)))
    return len(ordered), full.digest(), keys.digest()


def genesis(sensor_id: int) -> bytes:
    """The ``prev_hash`` of a sensor's first entry."""
    return hashlib.sha256(_FORMAT + b"/genesis" + struct.pack(">i", sensor_id)).digest()


@dataclass(frozen=True, slots=True)
class ChainEntry:
    sensor_id: int
    seq: int
    kind: str
    #: None for corrections
    block_start: datetime | None
    block_s: int | None
    received_to: datetime | None
    n_rows: int
    digest: bytes
    keys_digest: bytes | None
    prev_hash: bytes
    entry_hash: bytes
    sealed_at: datetime

    def fields_bytes(self) -> bytes:
        """The canonical encoding of everything but the hashes of the chain."""
        return (
            _FORMAT
            + struct.pack(">Biqqiqi", _KINDS[self.kind], self.sensor_id, self.seq, *_opt_block(self), self.n_rows)
            + self.digest
            + (self.keys_digest or _ZERO)
            + struct.pack(">q", to_us(self.sealed_at))
        )

    def computed_hash(self) -> bytes:
        return hashlib.sha256(self.prev_hash + self.fields_bytes()).digest()


def _opt_block(e: ChainEntry) -> tuple[int, int, int]:
    if e.block_start is None or e.block_s is None or e.received_to is None:
        return (0, 0, 0)
    return (to_us(e.block_start), e.block_s, to_us(e.received_to))


def make_entry(
    prev: ChainEntry | None,
    sensor_id: int,
    kind: str,
    *,
    n_rows: int,
    digest: bytes,
    sealed_at: datetime,
    block_start: datetime | None = None,
    received_to: datetime | None = None,
    keys_digest: bytes | None = None,
) -> ChainEntry:
    prev_hash = prev.entry_hash if prev is not None else genesis(sensor_id)
    draft = ChainEntry(
        sensor_id=sensor_id,
        seq=prev.seq + 1 if prev is not None else 1,
        kind=kind,
        block_start=block_start,
        block_s=BLOCK_S if block_start is not None else None,
        received_to=received_to,
        n_rows=n_rows,
        digest=digest,
        keys_digest=keys_digest,
        prev_hash=prev_hash,
        entry_hash=_ZERO,
        sealed_at=sealed_at,
    )
    return dataclasses.replace(draft, entry_hash=draft.computed_hash())


# --- SQL ---------------------------------------------------------------------------------

_ENTRY_COLS = "sensor_id, seq, kind, block_start, block_s, received_to, n_rows, digest, keys_digest, prev_hash, entry_hash, sealed_at"

INSERT_ENTRIES = f"""
INSERT INTO seal_entry ({_ENTRY_COLS})
SELECT * FROM unnest($1::int4[], $2::int8[], $3::text[], $4::timestamptz[], $5::int4[], $6::timestamptz[],
                     $7::int4[], $8::bytea[], $9::bytea[], $10::bytea[], $11::bytea[], $12::timestamptz[])
"""

HEAD = f"SELECT {_ENTRY_COLS} FROM seal_entry WHERE sensor_id = $1 ORDER BY seq DESC LIMIT 1"

CLAIM = """
UPDATE seal_pending SET claimed_min = least(claimed_min, min_ts), claimed_max = greatest(claimed_max, max_ts),
                        min_ts = NULL, max_ts = NULL
WHERE sensor_id = $1
RETURNING claimed_min, claimed_max
"""

# Per block of [$2, $3): what is settled (received by the cutoff $4) and its digests, whether
# the block has an entry, and how many settled rows arrived after its newest entry.
BLOCKS = f"""
WITH latest AS MATERIALIZED (
    SELECT DISTINCT ON (block_start) block_start, received_to FROM seal_entry
    WHERE sensor_id = $1 AND block_start >= $2 AND block_start < $3
    ORDER BY block_start, seq DESC
), r AS MATERIALIZED (
    SELECT date_bin(make_interval(secs => {BLOCK_S}), r.ts, timestamptz '1970-01-01 00:00:00+00') AS b,
           r.channel, r.ts, r.received_at, {_ROW_BYTES} AS row_b, {_KEY_BYTES} AS key_b
    FROM reading r WHERE r.sensor_id = $1 AND r.ts >= $2 AND r.ts < $3
)
SELECT r.b AS block_start, l.block_start IS NOT NULL AS sealed,
       count(*) FILTER (WHERE r.received_at <= $4) AS n,
       sha256(coalesce(string_agg(r.row_b, ''::bytea {_ORDER}) FILTER (WHERE r.received_at <= $4), '')) AS digest,
       sha256(coalesce(string_agg(r.key_b, ''::bytea {_ORDER}) FILTER (WHERE r.received_at <= $4), '')) AS keys_digest,
       count(*) FILTER (WHERE r.received_at > $4) AS unsettled,
       count(*) FILTER (WHERE r.received_at <= $4 AND r.received_at > l.received_to) AS fresh
FROM r LEFT JOIN latest l ON l.block_start = r.b
GROUP BY r.b, l.block_start
ORDER BY r.b
"""

# Per data entry whose block starts in [$2, $3): the rows it covers as they are now.
ENTRY_CHECKS = f"""
WITH e AS MATERIALIZED (
    SELECT seq, block_start, received_to FROM seal_entry
    WHERE sensor_id = $1 AND block_start >= $2 AND block_start < $3
), r AS MATERIALIZED (
    SELECT date_bin(make_interval(secs => {BLOCK_S}), r.ts, timestamptz '1970-01-01 00:00:00+00') AS b,
           r.channel, r.ts, r.received_at, {_ROW_BYTES} AS row_b, {_KEY_BYTES} AS key_b
    FROM reading r WHERE r.sensor_id = $1 AND r.ts >= $2 AND r.ts < $3
)
SELECT e.seq, count(r.ts) AS n,
       sha256(coalesce(string_agg(r.row_b, ''::bytea {_ORDER}), '')) AS digest,
       sha256(coalesce(string_agg(r.key_b, ''::bytea {_ORDER}), '')) AS keys_digest
FROM e LEFT JOIN r ON r.b = e.block_start AND r.received_at <= e.received_to
GROUP BY e.seq
"""

# Rows of [$2, $3) not covered by any entry: in a block without one, or received after the newest.
UNCOVERED = f"""
WITH latest AS MATERIALIZED (
    SELECT DISTINCT ON (block_start) block_start, received_to FROM seal_entry
    WHERE sensor_id = $1 AND block_start >= $2 AND block_start < $3
    ORDER BY block_start, seq DESC
)
SELECT date_bin(make_interval(secs => {BLOCK_S}), r.ts, timestamptz '1970-01-01 00:00:00+00') AS block_start,
       bool_or(l.block_start IS NOT NULL) AS sealed, count(*) AS n, min(r.received_at) AS first_received
FROM reading r
LEFT JOIN latest l ON l.block_start = date_bin(make_interval(secs => {BLOCK_S}), r.ts, timestamptz '1970-01-01 00:00:00+00')
WHERE r.sensor_id = $1 AND r.ts >= $2 AND r.ts < $3 AND (l.block_start IS NULL OR r.received_at > l.received_to)
GROUP BY 1 ORDER BY 1
"""


def _entry(r: asyncpg.Record) -> ChainEntry:
    return ChainEntry(
        sensor_id=r["sensor_id"],
        seq=r["seq"],
        kind=r["kind"],
        block_start=r["block_start"],
        block_s=r["block_s"],
        received_to=r["received_to"],
        n_rows=r["n_rows"],
        digest=bytes(r["digest"]),
        keys_digest=bytes(r["keys_digest"]) if r["keys_digest"] is not None else None,
        prev_hash=bytes(r["prev_hash"]),
        entry_hash=bytes(r["entry_hash"]),
        sealed_at=r["sealed_at"],
    )


async def head(conn: Conn, sensor_id: int) -> ChainEntry | None:
    row = await conn.fetchrow(HEAD, sensor_id)
    return _entry(row) if row is not None else None


async def append_entries(conn: Conn, entries: Sequence[ChainEntry]) -> None:
    if not entries:
        return
    await conn.execute(
        INSERT_ENTRIES,
        [e.sensor_id for e in entries],
        [e.seq for e in entries],
        [e.kind for e in entries],
        [e.block_start for e in entries],
        [e.block_s for e in entries],
        [e.received_to for e in entries],
        [e.n_rows for e in entries],
        [e.digest for e in entries],
        [e.keys_digest for e in entries],
        [e.prev_hash for e in entries],
        [e.entry_hash for e in entries],
        [e.sealed_at for e in entries],
    )


async def chain(conn: Conn, sensor_id: int, *, after_seq: int = 0, limit: int | None = None) -> list[ChainEntry]:
    rows = await conn.fetch(
        f"SELECT {_ENTRY_COLS} FROM seal_entry WHERE sensor_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        sensor_id,
        after_seq,
        limit,
    )
    return [_entry(r) for r in rows]


# --- sealing -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SealPolicy:
    #: A block is sealed once the sensor's newest measurement is this far past its end ...
    grace_s: float = 600.0
    #: ... or once nothing has been received from the sensor for this long (a silent sensor).
    idle_s: float = 3600.0
    #: Rows received in the last settle_s are left for the next pass: a transaction still in
    #: flight when the sealer reads may hold rows stamped before its cutoff.
    settle_s: float = 60.0
    #: Pause between passes of the long-running sealer.
    interval_s: float = 30.0
    #: Measurement time hashed per statement when catching up.
    chunk: timedelta = timedelta(days=7)


@dataclass(slots=True)
class SealReport:
    sensors: int = 0
    seals: int = 0
    supplements: int = 0
    rows: int = 0
    busy: list[int] = field(default_factory=list)
    #: heads signed (with a signer: each new head, docs/integrity.md)
    signed: int = 0

    def add(self, other: SealReport) -> None:
        self.sensors += other.sensors
        self.seals += other.seals
        self.supplements += other.supplements
        self.rows += other.rows
        self.busy.extend(other.busy)
        self.signed += other.signed


async def _sealable_until(conn: Conn, sensor_id: int, policy: SealPolicy, now: datetime | None) -> datetime:
    """Start of the first block that may not be sealed yet."""
    row = await conn.fetchrow(
        "SELECT max(ts) AS data_to, max(received_at) AS received_last, now() AS now FROM sensor_latest "
        "WHERE sensor_id = $1",
        sensor_id,
    )
    assert row is not None
    wall: datetime = row["now"]
    clock = now if now is not None else wall
    grace = timedelta(seconds=policy.grace_s)
    received_last: datetime | None = row["received_last"]
    idle = received_last is None or wall - received_last > timedelta(seconds=policy.idle_s)
    base = clock if idle or row["data_to"] is None else min(row["data_to"], clock)
    # A block [s, s + BLOCK) is sealable when s + BLOCK + grace <= base.
    return block_floor(base - grace - BLOCK) + BLOCK


async def seal_sensor(
    conn: Conn, sensor_id: int, policy: SealPolicy, *, now: datetime | None = None, signer: HeadSigner | None = None
) -> SealReport:
    """Seal what is pending for one sensor. Idempotent; concurrent sealers skip a busy sensor.

    ``now`` overrides the measurement-time clock (replays and tests); reception cut-offs
    always use the database clock. With a ``signer``, the new head is signed in the same
    transaction that appends it.
    """
    report = SealReport()
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", _CLAIM_LOCK, sensor_id):
        report.busy.append(sensor_id)
        return report
    try:
        claimed = await conn.fetchrow(CLAIM, sensor_id)
        if claimed is None or claimed["claimed_min"] is None:
            return report
        report.sensors = 1
        lo = block_floor(claimed["claimed_min"])
        hi: datetime = claimed["claimed_max"]
        until = await _sealable_until(conn, sensor_id, policy, now)
        stop = min(until, block_floor(hi) + BLOCK)
        remainder: datetime | None = None
        start = lo
        while start < stop:
            end = min(start + policy.chunk, stop)
            async with conn.transaction():
                first_unsettled = await _seal_chunk(conn, sensor_id, start, end, policy, report)
                if signer is not None and await sign_new_head(conn, signer, sensor_id):
                    report.signed += 1
                if remainder is None:
                    remainder = first_unsettled
                await conn.execute(
                    "UPDATE seal_pending SET claimed_min = $2 WHERE sensor_id = $1",
                    sensor_id,
                    remainder if remainder is not None else end,
                )
            start = end
        if remainder is None and stop > block_floor(hi):
            await conn.execute(
                "UPDATE seal_pending SET claimed_min = NULL, claimed_max = NULL WHERE sensor_id = $1", sensor_id
            )
        else:
            keep = remainder if remainder is not None else max(stop, lo)
            await conn.execute("UPDATE seal_pending SET claimed_min = $2 WHERE sensor_id = $1", sensor_id, keep)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1, $2)", _CLAIM_LOCK, sensor_id)
    return report


async def _seal_chunk(
    conn: Conn, sensor_id: int, start: datetime, end: datetime, policy: SealPolicy, report: SealReport
) -> datetime | None:
    """Append entries for the blocks of [start, end); return the first block with unsettled rows."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", _CHAIN_LOCK, sensor_id)
    clock = await conn.fetchrow("SELECT now() AS now, now() - make_interval(secs => $1) AS cutoff", policy.settle_s)
    assert clock is not None
    cutoff: datetime = clock["cutoff"]
    blocks = await conn.fetch(BLOCKS, sensor_id, start, end, cutoff)
    prev = await head(conn, sensor_id)
    entries: list[ChainEntry] = []
    first_unsettled: datetime | None = None
    for b in blocks:
        if b["unsettled"] and first_unsettled is None:
            first_unsettled = b["block_start"]
        if b["n"] == 0 or (b["sealed"] and not b["fresh"]):
            continue
        kind = "supplement" if b["sealed"] else "seal"
        prev = make_entry(
            prev,
            sensor_id,
            kind,
            n_rows=b["n"],
            digest=bytes(b["digest"]),
            keys_digest=bytes(b["keys_digest"]),
            block_start=b["block_start"],
            received_to=cutoff,
            sealed_at=clock["now"],
        )
        entries.append(prev)
        report.rows += b["n"] if kind == "seal" else b["fresh"]
        if kind == "seal":
            report.seals += 1
        else:
            report.supplements += 1
    await append_entries(conn, entries)
    return first_unsettled


async def sign_new_head(conn: Conn, signer: HeadSigner, sensor_id: int) -> bool:
    """Sign the sensor's head unless this key signed it already; call in a transaction."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", _CHAIN_LOCK, sensor_id)
    row = await conn.fetchrow(
        """SELECT e.seq, e.entry_hash, now() AS now,
                  (SELECT max(h.seq) FROM chain_head_signature h WHERE h.sensor_id = $1 AND h.key_id = $2) AS signed
           FROM seal_entry e WHERE e.sensor_id = $1 ORDER BY e.seq DESC LIMIT 1""",
        sensor_id,
        signer.key_id,
    )
    if row is None or (row["signed"] is not None and row["signed"] >= row["seq"]):
        return False
    await signed_heads.sign_head(conn, signer, sensor_id, row["seq"], bytes(row["entry_hash"]), row["now"])
    return True


async def _sign_corrected(pool: asyncpg.Pool, signer: HeadSigner) -> int:
    """Sign heads that a correction (recorded through the API, which has no key) made new."""
    signed = 0
    async with pool.acquire() as conn:
        sensor_ids = await conn.fetch(
            "SELECT DISTINCT sensor_id FROM reading_correction WHERE recorded_at > now() - interval '1 day'"
        )
        for r in sensor_ids:
            async with conn.transaction():
                signed += await sign_new_head(conn, signer, r["sensor_id"])
    return signed


async def seal_pass(
    pool: asyncpg.Pool, policy: SealPolicy, *, now: datetime | None = None, signer: HeadSigner | None = None
) -> SealReport:
    """Seal every sensor with pending readings, one sensor at a time; with a ``signer``, sign
    every new head (corrections' too)."""
    report = SealReport()
    async with pool.acquire() as conn:
        sensor_ids = [
            r["sensor_id"]
            for r in await conn.fetch(
                "SELECT sensor_id FROM seal_pending WHERE min_ts IS NOT NULL OR claimed_min IS NOT NULL "
                "ORDER BY sensor_id"
            )
        ]
        for sid in sensor_ids:
            report.add(await seal_sensor(conn, sid, policy, now=now, signer=signer))
    if signer is not None:
        report.signed += await _sign_corrected(pool, signer)
    return report


async def run_sealer(
    pool: asyncpg.Pool,
    stop: asyncio.Event,
    policy: SealPolicy | None = None,
    *,
    signer: HeadSigner | None = None,
    heads_file: signed_heads.HeadsFile | None = None,
) -> None:
    """The long-running sealer: a pass every ``policy.interval_s`` until ``stop`` is set.
    With a ``signer`` each new head is signed; with a ``heads_file`` the signed heads are
    appended to it after each pass (a failed write is retried at the next pass)."""
    policy = policy or SealPolicy()
    logger.info(
        "sealer started interval_s=%.0f block_s=%d signing_key=%s heads_file=%s",
        policy.interval_s,
        BLOCK_S,
        signer.key_id if signer else "none",
        heads_file.path if heads_file else "none",
    )
    while not stop.is_set():
        started = time.monotonic()
        try:
            report = await seal_pass(pool, policy, signer=signer)
            if report.seals or report.supplements or report.signed:
                logger.info(
                    "sealed sensors=%d seals=%d supplements=%d rows=%d signed=%d seconds=%.3f",
                    report.sensors,
                    report.seals,
                    report.supplements,
                    report.rows,
                    report.signed,
                    time.monotonic() - started,
                )
            if heads_file is not None:
                await signed_heads.publish(pool, heads_file)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            logger.error("seal pass failed error=%r; retrying", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=policy.interval_s)
    logger.info("sealer stopped")


# --- verification ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    #: row_changed, row_deleted, row_inserted, rows_replaced, chain_broken, entry_altered,
    #: entry_missing, correction_altered, anchor_missing, anchor_mismatch, unsealed
    reason: str
    detail: str
    seq: int | None = None
    block_start: datetime | None = None


@dataclass(slots=True)
class Verification:
    sensor_id: int
    since: datetime
    until: datetime
    entries: int = 0
    blocks_checked: int = 0
    rows_checked: int = 0
    head: ChainEntry | None = None
    findings: list[Finding] = field(default_factory=list)
    #: rows not covered by any entry yet (recent: the sealer has not come round)
    pending_rows: int = 0

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def status(self) -> str:
        if any(f.reason != "unsealed" for f in self.findings):
            return "TAMPERED"
        return "UNSEALED" if self.findings else "OK"


def check_links(entries: Sequence[ChainEntry], sensor_id: int) -> Finding | None:
    """The first broken link of a whole chain (ordered by seq), or None."""
    prev_hash = genesis(sensor_id)
    expected = 1
    for e in entries:
        if e.seq != expected:
            return Finding(
                "entry_missing", f"entries {expected}..{e.seq - 1} are missing from the chain", e.seq, e.block_start
            )
        if e.prev_hash != prev_hash:
            return Finding("chain_broken", f"entry {e.seq} does not link to entry {e.seq - 1}", e.seq, e.block_start)
        if e.computed_hash() != e.entry_hash:
            return Finding("entry_altered", f"entry {e.seq} does not hash to its recorded hash", e.seq, e.block_start)
        prev_hash = e.entry_hash
        expected += 1
    return None


def _classify(e: ChainEntry, n: int, digest: bytes, keys_digest: bytes) -> Finding | None:
    if n == e.n_rows and digest == e.digest:
        return None
    where = f"block {e.block_start.isoformat() if e.block_start else '?'} (entry {e.seq}, {e.kind})"
    if n < e.n_rows:
        reason, what = "row_deleted", f"{e.n_rows - n} of its {e.n_rows} sealed row(s) are gone"
    elif n > e.n_rows:
        reason, what = "row_inserted", f"{n - e.n_rows} row(s) that were not sealed now claim to predate the seal"
    elif keys_digest == e.keys_digest:
        reason, what = "row_changed", f"the same {n} row(s) are there but their content differs"
    else:
        reason, what = "rows_replaced", f"{n} row(s) as sealed, but their channels or times differ"
    return Finding(reason, f"{where}: {what}", e.seq, e.block_start)


async def verify_sensor(
    conn: Conn,
    sensor_id: int,
    since: datetime,
    until: datetime,
    *,
    unsealed_after: timedelta = timedelta(hours=3),
    anchors: Sequence[tuple[int, bytes]] = (),
    signed: Sequence[SignedHead] = (),
    verifier: HeadVerifier | None = None,
) -> Verification:
    """Check the whole chain's links, and every data entry whose block starts in [since, until)
    against the rows as they are now. Rows left unsealed for longer than ``unsealed_after``
    (block, idle and settle times of the sealer, with slack) are a finding too. ``anchors``
    are (seq, entry_hash) heads archived upstream: each must still be in the chain. With a
    ``verifier`` (the sealer's public keys), the signed heads kept in the database and the
    ``signed`` heads archived outside it must verify and still be in the chain."""
    since_b, until_b = block_floor(since), block_floor(until - timedelta(microseconds=1)) + BLOCK
    out = Verification(sensor_id, since_b, until_b)
    entries = await chain(conn, sensor_id)
    out.entries = len(entries)
    out.head = entries[-1] if entries else None
    broken = check_links(entries, sensor_id)
    if broken is not None:
        out.findings.append(broken)
    for seq, entry_hash in anchors:
        anchor = check_anchor(entries, seq, entry_hash)
        if anchor is not None:
            out.findings.append(anchor)
    if verifier is not None:
        stored_heads = await signed_heads.stored(conn, sensor_id)
        out.findings.extend(check_signed_heads(entries, [*signed, *stored_heads], verifier, sensor_id))
    out.findings.extend(await _check_corrections(conn, sensor_id, entries))
    by_seq = {e.seq: e for e in entries}
    window_start = since_b
    now: datetime = await conn.fetchval("SELECT now()")
    while window_start < until_b:
        window_end = min(window_start + timedelta(days=7), until_b)
        for r in sorted(await conn.fetch(ENTRY_CHECKS, sensor_id, window_start, window_end), key=lambda r: r["seq"]):
            e = by_seq.get(r["seq"])
            if e is None:
                continue
            out.blocks_checked += 1
            out.rows_checked += r["n"]
            finding = _classify(e, r["n"], bytes(r["digest"]), bytes(r["keys_digest"]))
            if finding is not None:
                out.findings.append(finding)
        for r in await conn.fetch(UNCOVERED, sensor_id, window_start, window_end):
            if now - r["first_received"] > unsealed_after:
                what = "late row(s) received after the block was sealed" if r["sealed"] else "row(s)"
                out.findings.append(
                    Finding(
                        "unsealed",
                        f"block {r['block_start'].isoformat()}: {r['n']} {what} never sealed "
                        f"(first received {r['first_received'].isoformat()})",
                        None,
                        r["block_start"],
                    )
                )
            else:
                out.pending_rows += r["n"]
        window_start = window_end
    out.findings.sort(key=lambda f: (f.reason == "unsealed", f.block_start or EPOCH, f.seq or 0))
    return out


def check_anchor(entries: Sequence[ChainEntry], seq: int, entry_hash: bytes) -> Finding | None:
    """An archived head (held by a higher level) must still be in the chain, unchanged."""
    found = next((e for e in entries if e.seq == seq), None)
    if found is None:
        return Finding("anchor_missing", f"the archived head {seq} is gone: the chain ends at {len(entries)}", seq)
    if found.entry_hash != entry_hash:
        return Finding(
            "anchor_mismatch",
            f"entry {seq} is not the archived head {entry_hash.hex()[:16]}: the chain was rewritten",
            seq,
            found.block_start,
        )
    return None


def check_signed_heads(
    entries: Sequence[ChainEntry], signed: Sequence[SignedHead], verifier: HeadVerifier, sensor_id: int
) -> list[Finding]:
    """Signed heads (archived outside the database, or kept in it) against the chain as it is:
    each must carry a good signature of one of the verifier's keys, and its entry must still
    be in the chain with the signed hash. A rewrite is located between the newest signed
    head that still matches and the first that does not."""
    out: list[Finding] = []
    good: list[SignedHead] = []
    seen: set[tuple[int, bytes, bytes]] = set()
    for h in sorted(signed, key=lambda h: (h.seq, h.signed_at)):
        if (h.seq, h.entry_hash, h.signature) in seen:
            continue
        seen.add((h.seq, h.entry_hash, h.signature))
        what = f"signed head {h.seq} (signed {h.signed_at.isoformat()})"
        problem = verifier.problem(h)
        if problem is None and h.sensor_id != sensor_id:
            problem = f"it names sensor id {h.sensor_id}, this sensor is {sensor_id}"
        if problem is not None:
            out.append(Finding("head_signature_invalid", f"{what}: {problem}", h.seq))
        else:
            good.append(h)
    by_seq = {e.seq: e for e in entries}
    matches_to = 0
    differing = [h for h in good if (e := by_seq.get(h.seq)) is None or e.entry_hash != h.entry_hash]
    if not differing:
        return out
    first = differing[0]
    matches_to = max((h.seq for h in good if h.seq < first.seq and h not in differing), default=0)
    more = f"; {len(differing) - 1} later signed head(s) differ too" if len(differing) > 1 else ""
    found = by_seq.get(first.seq)
    if found is None:
        out.append(
            Finding(
                "signed_head_missing",
                f"the head {first.seq} signed {first.signed_at.isoformat()} is gone: the chain ends at "
                f"{len(entries)}; it matches signed heads up to entry {matches_to}{more}",
                first.seq,
            )
        )
        return out
    span = [e for e in entries if matches_to < e.seq <= first.seq and e.block_start is not None]
    where = (
        f"blocks {span[0].block_start.isoformat()} to {span[-1].block_start.isoformat()}"  # type: ignore[union-attr]
        if span
        else "no data block"
    )
    out.append(
        Finding(
            "signed_head_mismatch",
            f"entry {first.seq} is not the head signed {first.signed_at.isoformat()} "
            f"({first.entry_hash.hex()[:16]}): the chain was rewritten after entry {matches_to} (the newest "
            f"signed head that still matches), in {where}{more}",
            first.seq,
            span[0].block_start if span else found.block_start,
        )
    )
    return out


async def history_start(conn: Conn, sensor_id: int) -> datetime | None:
    """The earliest block with a chain entry or a reading (through the primary key, per channel)."""
    t: datetime | None = await conn.fetchval(
        """SELECT least((SELECT min(block_start) FROM seal_entry WHERE sensor_id = $1),
                        (SELECT min(f.ts) FROM (SELECT channel FROM sensor_latest WHERE sensor_id = $1
                                                UNION SELECT unnest(channels) FROM sensor WHERE id = $1) c
                         CROSS JOIN LATERAL (SELECT r.ts FROM reading r WHERE r.sensor_id = $1 AND r.channel = c.channel
                                             ORDER BY r.ts LIMIT 1) f))""",
        sensor_id,
    )
    return block_floor(t) if t is not None else None


# --- corrections -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Correction:
    sensor_id: int
    seq: int
    channel: str | None
    ts_from: datetime
    ts_to: datetime
    action: str
    reason: str
    actor: str
    recorded_at: datetime
    id: int = 0

    def digest(self) -> bytes:
        parts = [self.channel or "", self.action, self.reason, self.actor]
        body = b"".join(struct.pack(">i", len(p.encode())) + p.encode() for p in parts)
        flags = struct.pack(">B", self.channel is not None)
        times = struct.pack(">qqq", to_us(self.ts_from), to_us(self.ts_to), to_us(self.recorded_at))
        return hashlib.sha256(_FORMAT + b"/correction" + flags + body + times).digest()


_CORRECTION_COLS = "id, sensor_id, seq, channel, ts_from, ts_to, action, reason, actor, recorded_at"


def _correction(r: asyncpg.Record) -> Correction:
    return Correction(
        r["sensor_id"],
        r["seq"],
        r["channel"],
        r["ts_from"],
        r["ts_to"],
        r["action"],
        r["reason"],
        r["actor"],
        r["recorded_at"],
        r["id"],
    )


async def record_correction(
    conn: Conn,
    sensor_id: int,
    *,
    channel: str | None,
    ts_from: datetime,
    ts_to: datetime,
    action: str,
    reason: str,
    actor: str,
) -> Correction:
    """Append a correction event (``invalidate`` or ``restore`` readings of a time range) to
    the sensor's chain. The readings are not touched."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", _CHAIN_LOCK, sensor_id)
        now: datetime = await conn.fetchval("SELECT now()")
        prev = await head(conn, sensor_id)
        seq = prev.seq + 1 if prev is not None else 1
        c = Correction(sensor_id, seq, channel, ts_from, ts_to, action, reason, actor, now)
        entry = make_entry(prev, sensor_id, "correction", n_rows=0, digest=c.digest(), sealed_at=now)
        await append_entries(conn, [entry])
        row = await conn.fetchrow(
            f"""INSERT INTO reading_correction (sensor_id, seq, channel, ts_from, ts_to, action, reason, actor, recorded_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {_CORRECTION_COLS}""",
            sensor_id,
            seq,
            channel,
            ts_from,
            ts_to,
            action,
            reason,
            actor,
            now,
        )
    assert row is not None
    return _correction(row)


async def corrections(conn: Conn, sensor_id: int, *, since: datetime | None = None) -> list[Correction]:
    """Correction events of a sensor, oldest first; ``since`` bounds the corrected range's end."""
    rows = await conn.fetch(
        f"""SELECT {_CORRECTION_COLS} FROM reading_correction
            WHERE sensor_id = $1 AND ($2::timestamptz IS NULL OR ts_to >= $2) ORDER BY seq""",
        sensor_id,
        since,
    )
    return [_correction(r) for r in rows]


async def invalid_ranges(conn: Conn, sensor_id: int) -> list[tuple[str | None, datetime, datetime]]:
    """(channel or None for all, from, to) ranges currently marked invalid: invalidations not
    followed by a restore of the same channel and range (the ``invalid_range`` view, which
    the detectors' windows and the readings API read too)."""
    rows = await conn.fetch(
        "SELECT channel, ts_from, ts_to FROM invalid_range WHERE sensor_id = $1 ORDER BY seq", sensor_id
    )
    return [(r["channel"], r["ts_from"], r["ts_to"]) for r in rows]


async def _check_corrections(conn: Conn, sensor_id: int, entries: Sequence[ChainEntry]) -> list[Finding]:
    """Every correction entry commits to its event: a correction of readings, or a re-baseline."""
    found: dict[int, Correction | ReferenceEvent] = {c.seq: c for c in await corrections(conn, sensor_id)}
    found.update((r.seq, r) for r in await reference_events(conn, sensor_id))
    out: list[Finding] = []
    for e in entries:
        if e.kind != "correction":
            continue
        c = found.get(e.seq)
        if c is None:
            out.append(Finding("correction_altered", f"correction of entry {e.seq} is missing", e.seq))
        elif c.digest() != e.digest:
            out.append(Finding("correction_altered", f"correction of entry {e.seq} was changed", e.seq))
    return out


# --- re-baselines --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReferenceEvent:
    """A re-baseline (reinstalled prism, new antenna): new reference values of some channels
    from ``since`` (measurement time) on, chained as a correction entry of its own digest."""

    sensor_id: int
    seq: int
    #: (channel, value) sorted by channel
    values: tuple[tuple[str, float], ...]
    since: datetime
    reason: str
    actor: str
    recorded_at: datetime

    def digest(self) -> bytes:
        body = b"".join(
            struct.pack(">i", len(ch.encode())) + ch.encode() + struct.pack(">d", v) for ch, v in self.values
        )
        words = b"".join(struct.pack(">i", len(p.encode())) + p.encode() for p in (self.reason, self.actor))
        times = struct.pack(">qq", to_us(self.since), to_us(self.recorded_at))
        return hashlib.sha256(
            _FORMAT + b"/reference" + struct.pack(">i", len(self.values)) + body + words + times
        ).digest()


async def record_reference_event(
    conn: Conn, sensor_id: int, *, values: dict[str, float], since: datetime, reason: str, actor: str
) -> ReferenceEvent:
    """Append a re-baseline to the sensor's chain and its rows (one per channel) to
    ``sensor_reference``, in one transaction."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", _CHAIN_LOCK, sensor_id)
        now: datetime = await conn.fetchval("SELECT now()")
        prev = await head(conn, sensor_id)
        seq = prev.seq + 1 if prev is not None else 1
        ev = ReferenceEvent(sensor_id, seq, tuple(sorted(values.items())), since, reason, actor, now)
        await append_entries(
            conn, [make_entry(prev, sensor_id, "correction", n_rows=0, digest=ev.digest(), sealed_at=now)]
        )
        await conn.execute(
            """INSERT INTO sensor_reference (sensor_id, channel, value, source, since, actor, reason, seq, recorded_at)
               SELECT $1, u.c, u.v, 'rebaseline', $4, $5, $6, $7, $8 FROM unnest($2::text[], $3::float8[]) AS u(c, v)""",
            sensor_id,
            [ch for ch, _ in ev.values],
            [v for _, v in ev.values],
            since,
            actor,
            reason,
            seq,
            now,
        )
    return ev


async def reference_events(conn: Conn, sensor_id: int) -> list[ReferenceEvent]:
    """The re-baselines of a sensor, oldest first, as recorded now (for verification)."""
    rows = await conn.fetch(
        """SELECT seq, array_agg(channel ORDER BY channel COLLATE "C") AS channels,
                  array_agg(value ORDER BY channel COLLATE "C") AS values,
                  min(since) AS since, min(reason) AS reason, min(actor) AS actor, min(recorded_at) AS recorded_at,
                  count(DISTINCT (since, reason, actor, recorded_at)) AS variants
           FROM sensor_reference WHERE sensor_id = $1 AND source = 'rebaseline' GROUP BY seq ORDER BY seq""",
        sensor_id,
    )
    # Rows of one event that disagree on the shared fields cannot hash to the recorded digest.
    return [
        ReferenceEvent(
            sensor_id,
            r["seq"],
            tuple(zip(r["channels"], r["values"], strict=True)),
            r["since"],
            r["reason"] if r["variants"] == 1 else "",
            r["actor"],
            r["recorded_at"],
        )
        for r in rows
    ]


# --- heads -------------------------------------------------------------------------------

HEADS = f"""
SELECT m.code AS mine_code, s.code AS sensor_code, m.region_code, h.*
FROM sensor s JOIN mine m ON m.id = s.mine_id
CROSS JOIN LATERAL (SELECT {_ENTRY_COLS} FROM seal_entry e WHERE e.sensor_id = s.id ORDER BY e.seq DESC LIMIT 1) h
WHERE m.region_code LIKE $1 || '%' AND ($2::text IS NULL OR m.code = $2)
  AND ($3::text IS NULL OR (m.code, s.code) > ($3, $4))
ORDER BY m.code, s.code
LIMIT $5
"""


@dataclass(frozen=True, slots=True)
class Head:
    mine_code: str
    sensor_code: str
    region_code: str
    entry: ChainEntry


async def heads(
    conn: Conn, *, prefix: str, mine_code: str | None, after: tuple[str, str] | None, limit: int
) -> list[Head]:
    rows = await conn.fetch(HEADS, prefix, mine_code, after[0] if after else None, after[1] if after else None, limit)
    return [Head(r["mine_code"], r["sensor_code"], r["region_code"], _entry(r)) for r in rows]
