"""Response and query schemas."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field

from api.errors import BadRequest

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last page")


#: The times a request may carry. Readings, deadlines and windows lie well inside; outside,
#: Python and PostgreSQL part ways (asyncpg reads 0001-01-01 UTC back without its offset, and
#: converting a time near year 1 or 9999 to UTC leaves Python's calendar).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def instant(value: datetime) -> datetime:
    """``value`` in UTC, for a pydantic ``AfterValidator``: ValueError unless it has an offset
    and lies between :data:`EARLIEST` and :data:`LATEST`."""
    if value.tzinfo is None:
        raise ValueError("needs a UTC offset, e.g. 2026-11-30T18:00:00+08:00")
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc <= LATEST:
        raise ValueError(f"must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
    return utc


_NUMBER = re.compile(r"\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*")


def iso_text(value: object) -> object:
    """For a pydantic ``BeforeValidator``: a time must be ISO 8601 text. Pydantic would read a
    number, or a numeric string such as ``?end=100.0``, as seconds since 1970; the schema
    promises a date-time, so a number is refused rather than quietly taken for 1970."""
    if isinstance(value, (int, float)) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        raise ValueError("must be an ISO 8601 date-time such as 2026-11-30T18:00:00+08:00, not a number")
    return value


#: A time in a query or body: ISO 8601 text only (no epoch numbers). Offsets are checked
#: where it is used, with a message naming the parameter.
IsoTime = Annotated[datetime, BeforeValidator(iso_text)]

#: A time in a body: ISO 8601 text with an offset, within :data:`EARLIEST`..:data:`LATEST`, in UTC.
Aware = Annotated[IsoTime, AfterValidator(instant)]


def encode_cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts, default=str).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, n: int) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        parts = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("cursor is not one this API issued; start again without ?cursor=") from None
    if not isinstance(parts, list) or len(parts) != n or not all(_cursor_part(p) for p in parts):
        raise BadRequest("cursor is not one this API issued; start again without ?cursor=")
    return parts


def _cursor_part(part: object) -> bool:
    """What :func:`encode_cursor` writes: codes and times as text, ids as 64-bit integers."""
    if isinstance(part, str):
        return "\x00" not in part
    return type(part) is int and -(2**63) <= part < 2**63


class Region(BaseModel):
    code: str
    name: str
    level: str
    parent_code: str | None
    mines: int


class Mine(BaseModel):
    code: str
    name: str
    kind: str
    region_code: str
    evacuation: str | None
    sites: int
    sensors: int
    worst_open_level: str | None = Field(description="highest level among open alerts; null when none")


class Site(BaseModel):
    code: str
    name: str
    kind: str
    mine_code: str
    height_m: float | None
    crest_elevation_m: float | None
    sensors: int
    worst_open_level: str | None
    facility: str = Field(description="the facility the site belongs to (registry; default the site itself)")
    rollup: Rollup = Field(
        description="the level of the site's facility (all its sites) by the GB 39496 roll-up of its points' "
        "active alerts"
    )


class RollupItem(BaseModel):
    item: str = Field(description="monitored item: surface_displacement, phreatic_line, pond_level, ...")
    level: str
    reason_en: str
    reason_zh: str


class Rollup(BaseModel):
    level: str
    reason_en: str
    reason_zh: str
    items: list[RollupItem]


class Sensor(BaseModel):
    mine_code: str
    site_code: str
    code: str
    kind: str
    name: str | None
    channels: list[str]
    interval_s: float
    baseline: dict[str, float]
    thresholds: dict[str, dict[str, float | None]]
    last_reading_at: datetime | None
    silent: bool = Field(description="no reading for more than three reporting intervals")


class LatestValue(BaseModel):
    channel: str
    ts: datetime
    value: float
    received_at: datetime


class RawReading(BaseModel):
    ts: datetime
    channel: str
    value: float
    seq: int | None
    received_at: datetime
    invalid: bool = Field(
        default=False, description="marked invalid by an operator's correction (listed only with include_invalid)"
    )


class Bucket(BaseModel):
    bucket: datetime
    channel: str
    min: float
    max: float
    avg: float
    n: int
    n_invalid: int = Field(default=0, description="readings marked invalid among n (counted only with include_invalid)")


class Readings(BaseModel):
    mine_code: str
    sensor_code: str
    start: datetime
    end: datetime
    bucket: str
    raw: list[RawReading] | None = None
    buckets: list[Bucket] | None = None
    next_cursor: str | None = None


class Alert(BaseModel):
    id: int
    mine_code: str
    mine_name: str
    site_code: str = Field(description="the sensor's site; for a facility alert, its first site")
    sensor_code: str | None = Field(description="none for an alert of no single sensor (see subject)")
    sensor_kind: str | None
    subject: str | None = Field(
        description="what an alert of no single sensor is about: facility:<code> (the GB 39496 roll-up), "
        "mine (all its monitoring offline), analysis (the watchdog: alarms are not being computed) or "
        "ingest (health.ingest_workers: more or fewer ingest workers alive than expected)"
    )
    region_code: str
    rule: str
    rule_version: int
    level: str
    peak_level: str
    state: str
    active: bool = Field(description="false once the condition has cleared")
    opened_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    retroactive: bool
    forecast_failure_at: datetime | None
    evidence: dict[str, Any]
    explanation_en: str
    explanation_zh: str
    evacuation: str | None = Field(description="停产撤人 instruction, on red alerts")
    stage: str = Field(description="handling stage: open, acknowledged, handling, resolved, verified, closed")
    acknowledged_at: datetime | None
    five_fixed: FiveFixedOut | None = Field(description="五落实, once the alert is in handling")
    handling_overdue: bool = Field(description="in handling past the five-fixed deadline")
    supervision_deadline: datetime | None = Field(description="earliest 督办 deadline set by a higher level")
    supervision_overdue: bool = Field(description="supervised, past the deadline and not closed")
    created_at: datetime
    modified_at: datetime


class FiveFixedOut(BaseModel):
    responsible_person: str
    measures: str
    funds: str
    deadline: datetime
    contingency_plan: str


class AlertEvent(BaseModel):
    id: int
    kind: str
    level: str
    from_level: str | None
    at: datetime
    recorded_at: datetime
    retroactive: bool
    evidence: dict[str, Any] | None
    actor: str | None = Field(description="who did it; null for the detectors")
    note: str | None
    details: dict[str, Any] | None = Field(description="e.g. the five fixed, or a supervision's deadline")


class DeadLetter(BaseModel):
    id: int
    received_at: datetime
    topic: str
    payload: str = Field(description="payload as text (invalid UTF-8 replaced), possibly truncated")
    payload_bytes: int
    truncated: bool
    reason: str
    detail: str
    readings_rejected: int
    readings_accepted: int


class Health(BaseModel):
    status: str
    detail: dict[str, Any] = Field(default_factory=dict)
