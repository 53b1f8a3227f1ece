"""Readings of one sensor: raw or downsampled over a window, and the latest values."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from api.auth import PrincipalDep, visible_mine
from api.caps import ExpensiveRead
from api.deps import ConnDep
from api.errors import BadRequest, NotFound
from api.routes.registry import CodePath, Cursor
from api.schemas import Bucket, IsoTime, LatestValue, RawReading, Readings, decode_cursor, encode_cursor
from db import queries

router = APIRouter(tags=["readings"])

_BUCKET = re.compile(r"^(raw|(\d{1,6})([smhd]))$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_WINDOW = timedelta(days=366)


def parse_bucket(text: str) -> int | None:
    """``raw`` -> None; ``15m``, ``1h``, ``1d`` -> seconds."""
    m = _BUCKET.match(text)
    if not m:
        raise BadRequest(f"bucket {text[:40]!r} must be 'raw' or a width like 300s, 15m, 1h, 1d")
    if m.group(1) == "raw":
        return None
    seconds = int(m.group(2)) * _UNIT_S[m.group(3)]
    if not 1 <= seconds <= 366 * 86400:
        raise BadRequest("bucket width must be between 1 s and 366 days")
    return seconds


def _aware(name: str, value: datetime) -> datetime:
    if value.tzinfo is None:
        raise BadRequest(f"{name} {value.isoformat()} has no UTC offset; add Z or +08:00")
    return value


@router.get("/mines/{mine}/sensors/{sensor}/latest", response_model=list[LatestValue])
async def latest(conn: ConnDep, who: PrincipalDep, mine: CodePath, sensor: CodePath) -> list[LatestValue]:
    await visible_mine(conn, who, mine)
    row = await queries.sensor(conn, mine, sensor)
    if row is None:
        raise NotFound(f"sensor {sensor!r} is not registered under mine {mine!r}")
    return [LatestValue(**dict(r)) for r in await queries.latest(conn, row["id"])]


@router.get(
    "/mines/{mine}/sensors/{sensor}/readings",
    response_model=Readings,
    summary="Readings over a time window, ordered by measurement time",
)
async def readings(
    conn: ConnDep,
    who: PrincipalDep,
    mine: CodePath,
    sensor: CodePath,
    _slot: ExpensiveRead,
    start: Annotated[IsoTime | None, Query(description="ISO 8601 with offset; default end - 1 day")] = None,
    end: Annotated[IsoTime | None, Query(description="ISO 8601 with offset, exclusive; default now")] = None,
    channel: Annotated[list[str] | None, Query(max_length=64, description="repeat for several channels")] = None,
    bucket: Annotated[str, Query(max_length=12, description="raw, or a width: 300s, 15m, 1h, 1d")] = "raw",
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=50_000)] = 10_000,
    include_invalid: Annotated[
        bool,
        Query(description="also readings an operator marked invalid, flagged invalid: true (counted in n_invalid)"),
    ] = False,
) -> Readings:
    await visible_mine(conn, who, mine)
    row = await queries.sensor(conn, mine, sensor)
    if row is None:
        raise NotFound(f"sensor {sensor!r} is not registered under mine {mine!r}")
    end_t = _aware("end", end) if end is not None else datetime.now(UTC)
    try:
        start_t = _aware("start", start) if start is not None else end_t - timedelta(days=1)
    except OverflowError:
        raise BadRequest("end is too early: the default window, one day before it, would begin before year 1") from None
    if start_t >= end_t:
        raise BadRequest("start must be before end")
    if end_t - start_t > MAX_WINDOW:
        raise BadRequest("the window may be at most 366 days; use a bucket and several requests for more")
    if channel:
        unknown = sorted(set(channel) - set(row["channels"]))
        if unknown:
            raise BadRequest(f"channel(s) {unknown} unknown for this sensor; it has {list(row['channels'])}")
    width = parse_bucket(bucket)
    out = Readings(mine_code=mine, sensor_code=sensor, start=start_t, end=end_t, bucket=bucket)
    if width is None:
        after = None
        if cursor:
            ts_text, ch = decode_cursor(cursor, 2)
            try:
                after = (datetime.fromisoformat(str(ts_text)), str(ch))
            except ValueError:
                raise BadRequest("cursor is not one this API issued") from None
        rows = await queries.readings_raw(
            conn,
            row["id"],
            start=start_t,
            end=end_t,
            channels=channel,
            after=after,
            limit=limit,
            include_invalid=include_invalid,
        )
        out.raw = [RawReading(**dict(r)) for r in rows]
        if len(rows) == limit:
            out.next_cursor = encode_cursor(rows[-1]["ts"].isoformat(), rows[-1]["channel"])
    else:
        rows = await queries.readings_bucketed(
            conn,
            row["id"],
            start=start_t,
            end=end_t,
            channels=channel,
            bucket_s=width,
            limit=limit,
            include_invalid=include_invalid,
        )
        out.buckets = [Bucket(**dict(r)) for r in rows]
    return out
