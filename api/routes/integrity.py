"""Tamper evidence: chain heads for a higher level to archive, a sensor's chain entries to
recompute, verification of a window, and corrections as chained events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import asyncpg
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from api.auth import PrincipalDep, Role, narrow, visible_mine
from api.caps import ExpensiveRead
from api.deps import ConnDep
from api.errors import BadRequest, NotFound
from api.routes.registry import CodePath, Cursor
from api.schemas import EARLIEST, LATEST, Aware, IsoTime, Page, decode_cursor, encode_cursor
from api.scope import MineQuery, RegionQuery
from db import heads as signed_heads
from db import integrity, queries, references
from db.integrity import ChainEntry, Verification

router = APIRouter(tags=["integrity"])

MAX_SENSOR_WINDOW = timedelta(days=366)
MAX_MINE_WINDOW = timedelta(days=31)


async def visible_sensor(conn: ConnDep, who: PrincipalDep, mine: CodePath, sensor: CodePath) -> asyncpg.Record:
    """The sensor's registry row; 404 outside the caller's subtree (resolved before any body)."""
    await visible_mine(conn, who, mine)
    row = await queries.sensor(conn, mine, sensor)
    if row is None:
        raise NotFound(f"sensor {sensor!r} is not registered under mine {mine!r}")
    return row


SensorDep = Annotated[asyncpg.Record, Depends(visible_sensor)]


class Entry(BaseModel):
    """One chain entry, with every field that enters its hash (docs/integrity.md)."""

    seq: int
    kind: str = Field(description="seal, supplement or correction")
    block_start: datetime | None
    block_s: int | None
    received_to: datetime | None = Field(description="the entry covers the block's rows received up to this time")
    n_rows: int
    digest: str = Field(description="hex SHA-256 of the covered rows (or of the correction)")
    keys_digest: str | None
    prev_hash: str
    entry_hash: str
    sealed_at: datetime


def entry_schema(e: ChainEntry) -> Entry:
    return Entry(
        seq=e.seq,
        kind=e.kind,
        block_start=e.block_start,
        block_s=e.block_s,
        received_to=e.received_to,
        n_rows=e.n_rows,
        digest=e.digest.hex(),
        keys_digest=e.keys_digest.hex() if e.keys_digest is not None else None,
        prev_hash=e.prev_hash.hex(),
        entry_hash=e.entry_hash.hex(),
        sealed_at=e.sealed_at,
    )


class ChainHead(BaseModel):
    mine_code: str
    sensor_code: str
    sensor_id: int = Field(description="enters the genesis hash and every entry hash")
    seq: int
    entry_hash: str
    kind: str
    block_start: datetime | None
    sealed_at: datetime


class FindingOut(BaseModel):
    reason: str = Field(
        description="row_changed, row_deleted, row_inserted, rows_replaced, chain_broken, entry_altered, "
        "entry_missing, correction_altered, unsealed"
    )
    detail: str
    seq: int | None
    block_start: datetime | None


class IntegrityReport(BaseModel):
    mine_code: str
    sensor_code: str
    status: str = Field(description="OK, TAMPERED or UNSEALED (rows left unsealed longer than the sealer allows)")
    start: datetime = Field(description="the window, widened to whole blocks")
    end: datetime
    entries: int = Field(description="entries in the whole chain (all links are checked)")
    blocks_checked: int
    rows_checked: int
    pending_rows: int = Field(description="recent rows the sealer has not covered yet (not a finding)")
    head: Entry | None
    findings: list[FindingOut]


def report_schema(mine: str, sensor: str, v: Verification) -> IntegrityReport:
    return IntegrityReport(
        mine_code=mine,
        sensor_code=sensor,
        status=v.status,
        start=v.since,
        end=v.until,
        entries=v.entries,
        blocks_checked=v.blocks_checked,
        rows_checked=v.rows_checked,
        pending_rows=v.pending_rows,
        head=entry_schema(v.head) if v.head is not None else None,
        findings=[
            FindingOut(reason=f.reason, detail=f.detail, seq=f.seq, block_start=f.block_start) for f in v.findings
        ],
    )


def window(start: datetime | None, end: datetime | None, max_window: timedelta) -> tuple[datetime, datetime]:
    for name, value in (("start", start), ("end", end)):
        if value is not None and value.tzinfo is None:
            raise BadRequest(f"{name} {value.isoformat()} has no UTC offset; add Z or +08:00")
        # Blocks are aligned on the epoch; far outside it the arithmetic leaves Python's calendar.
        if value is not None and not EARLIEST <= value <= LATEST:
            raise BadRequest(f"{name} must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
    end_t = end if end is not None else datetime.now(UTC)
    start_t = start if start is not None else end_t - timedelta(days=1)
    if start_t >= end_t:
        raise BadRequest("start must be before end")
    if end_t - start_t > max_window:
        raise BadRequest(f"the window may be at most {max_window.days} days; ask for several windows")
    return start_t, end_t


Start = Annotated[IsoTime | None, Query(description="ISO 8601 with offset; default end - 1 day")]
End = Annotated[IsoTime | None, Query(description="ISO 8601 with offset, exclusive; default now")]


@router.get(
    "/integrity/heads",
    response_model=Page[ChainHead],
    summary="Newest chain entry per sensor, for a higher level to poll and archive",
)
async def list_heads(
    conn: ConnDep,
    who: PrincipalDep,
    region: RegionQuery = None,
    mine: MineQuery = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> Page[ChainHead]:
    scope = await narrow(conn, who, region=region, mine=mine)
    after = decode_cursor(cursor, 2) if cursor else None
    rows = await integrity.heads(
        conn,
        prefix=scope.prefix,
        mine_code=scope.mine_code,
        after=(str(after[0]), str(after[1])) if after else None,
        limit=limit,
    )
    items = [
        ChainHead(
            mine_code=h.mine_code,
            sensor_code=h.sensor_code,
            sensor_id=h.entry.sensor_id,
            seq=h.entry.seq,
            entry_hash=h.entry.entry_hash.hex(),
            kind=h.entry.kind,
            block_start=h.entry.block_start,
            sealed_at=h.entry.sealed_at,
        )
        for h in rows
    ]
    last = items[-1] if items else None
    return Page(
        items=items,
        next_cursor=encode_cursor(last.mine_code, last.sensor_code) if last and len(items) == limit else None,
    )


class SignedHeadOut(BaseModel):
    """A chain head signed by the sealer (docs/integrity.md): the same object as a line of the
    heads file, for an auditor to archive and check with the sealer's public key."""

    format: str
    xid: int
    id: int
    mine_code: str
    sensor_code: str
    sensor_id: int
    seq: int
    entry_hash: str
    signed_at: str = Field(description="ISO 8601 with microseconds; enters the signature exactly")
    key_id: str
    signature: str = Field(description="hex Ed25519 signature over the head message")


@router.get(
    "/integrity/signed-heads",
    response_model=Page[SignedHeadOut],
    summary="Signed chain heads in publication order, for an auditor to archive (follow with cursor)",
)
async def list_signed_heads(
    conn: ConnDep,
    who: PrincipalDep,
    region: RegionQuery = None,
    mine: MineQuery = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> Page[SignedHeadOut]:
    scope = await narrow(conn, who, region=region, mine=mine)
    after = (0, 0)
    if cursor:
        xid, last_id = decode_cursor(cursor, 2)
        if not (isinstance(xid, int) and isinstance(last_id, int) and xid >= 0 and last_id >= 0):
            raise BadRequest("cursor is not one this API issued")
        after = (xid, last_id)
    found = await signed_heads.published(conn, after=after, limit=limit, prefix=scope.prefix, mine_code=scope.mine_code)
    items = [SignedHeadOut(**h.to_json()) for h in found]
    # Paging goes on from the last head seen, even past the end: new heads come after it.
    position = (found[-1].xid, found[-1].id) if found else after
    return Page(items=items, next_cursor=encode_cursor(*position))


@router.get(
    "/mines/{mine}/sensors/{sensor}/chain",
    response_model=list[Entry],
    summary="A sensor's chain entries after a sequence number, to extend an archived head",
)
async def sensor_chain(
    conn: ConnDep,
    row: SensorDep,
    after_seq: Annotated[int, Query(ge=0, description="entries with seq greater than this")] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[Entry]:
    return [entry_schema(e) for e in await integrity.chain(conn, row["id"], after_seq=after_seq, limit=limit)]


@router.get(
    "/mines/{mine}/sensors/{sensor}/integrity",
    response_model=IntegrityReport,
    summary="Prove a window of one sensor's readings against its chain",
)
async def verify_sensor(
    conn: ConnDep, row: SensorDep, _slot: ExpensiveRead, start: Start = None, end: End = None
) -> IntegrityReport:
    start_t, end_t = window(start, end, MAX_SENSOR_WINDOW)
    result = await integrity.verify_sensor(conn, row["id"], start_t, end_t)
    return report_schema(row["mine_code"], row["code"], result)


@router.get(
    "/mines/{mine}/integrity",
    response_model=list[IntegrityReport],
    summary="Prove a window (at most 31 days) of every sensor of a mine",
)
async def verify_mine(
    conn: ConnDep, who: PrincipalDep, mine: CodePath, _slot: ExpensiveRead, start: Start = None, end: End = None
) -> list[IntegrityReport]:
    await visible_mine(conn, who, mine)
    start_t, end_t = window(start, end, MAX_MINE_WINDOW)
    scope = await narrow(conn, who, mine=mine)
    rows = await queries.sensors(
        conn, prefix=scope.prefix, mine_code=mine, site_code=None, kind=None, after=None, limit=10_000
    )
    return [report_schema(mine, r["code"], await integrity.verify_sensor(conn, r["id"], start_t, end_t)) for r in rows]


class CorrectionIn(BaseModel):
    channel: str | None = Field(default=None, max_length=64, description="one channel; omit for all channels")
    start: Aware = Field(description="first measurement time corrected (inclusive)")
    end: Aware = Field(description="last measurement time corrected (inclusive)")
    action: str = Field(pattern="^(invalidate|restore)$", description="invalidate, or restore an earlier invalidation")
    reason: str = Field(min_length=1, max_length=2000)


class CorrectionOut(BaseModel):
    id: int
    seq: int = Field(description="its entry in the sensor's chain")
    channel: str | None
    start: datetime
    end: datetime
    action: str
    reason: str
    actor: str
    recorded_at: datetime


def correction_schema(c: integrity.Correction) -> CorrectionOut:
    return CorrectionOut(
        id=c.id,
        seq=c.seq,
        channel=c.channel,
        start=c.ts_from,
        end=c.ts_to,
        action=c.action,
        reason=c.reason,
        actor=c.actor,
        recorded_at=c.recorded_at,
    )


@router.get("/mines/{mine}/sensors/{sensor}/corrections", response_model=list[CorrectionOut])
async def list_corrections(conn: ConnDep, row: SensorDep) -> list[CorrectionOut]:
    return [correction_schema(c) for c in await integrity.corrections(conn, row["id"])]


@router.post(
    "/mines/{mine}/sensors/{sensor}/corrections",
    response_model=CorrectionOut,
    status_code=201,
    summary="Mark readings invalid (or valid again): a new chained event; the readings stay as received",
)
async def add_correction(conn: ConnDep, who: PrincipalDep, row: SensorDep, body: CorrectionIn) -> CorrectionOut:
    who.require(Role.OPERATOR, "record corrections of readings")
    if body.start > body.end:
        raise BadRequest("start must not be after end")
    if body.channel is not None and body.channel not in row["channels"]:
        raise BadRequest(f"channel {body.channel!r} unknown for this sensor; it has {list(row['channels'])}")
    async with conn.transaction():
        c = await integrity.record_correction(
            conn,
            row["id"],
            channel=body.channel,
            ts_from=body.start,
            ts_to=body.end,
            action=body.action,
            reason=body.reason,
            actor=who.actor,
        )
        # The detectors judge the sensor again without (or with) these readings, at once.
        await references.mark_reevaluate(conn, row["id"], correction_cause(c))
    return correction_schema(c)


def correction_cause(c: integrity.Correction) -> dict[str, object]:
    """What the alert events caused by a correction say about it (``sensor_dirty.causes``)."""
    what = "invalidated" if c.action == "invalidate" else "restored"
    return {
        "kind": "correction",
        "id": c.id,
        "seq": c.seq,
        "action": c.action,
        "channel": c.channel,
        "start": c.ts_from.isoformat(),
        "end": c.ts_to.isoformat(),
        "actor": c.actor,
        "reason": c.reason,
        "note": f"correction {c.id} (chain entry {c.seq}) by {c.actor}: {what} "
        f"{c.channel or 'all channels'} {c.ts_from.isoformat()} to {c.ts_to.isoformat()}: {c.reason}",
    }
