"""The MQTT wire contract, version 1: topics and JSON payloads (see docs/wire-contract.md).

Pure functions: nothing here knows the registry, the broker or the database. The
decoder either returns a :class:`DecodedMessage` (whose readings may each carry
their own rejection) or raises :class:`PayloadRejected` for a message that cannot
be read at all. No other exception escapes it.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

TOPIC_ROOT: Final = "slopewatch"
WIRE_VERSION: Final = "v1"
#: Mine and sensor codes: what may stand in a topic level and in a URL path. Match with
#: ``fullmatch``: Python's ``$`` also matches before a trailing newline.
CODE_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
#: Subscription filter for every mine's readings.
READINGS_FILTER: Final = f"{TOPIC_ROOT}/{WIRE_VERSION}/+/+/readings"

#: Epoch milliseconds below this (2000-01-01) are taken for a unit mistake.
_MIN_EPOCH_MS: Final = 946_684_800_000
#: and above this (2100-01-01) too.
_MAX_EPOCH_MS: Final = 4_102_444_800_000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class RejectReason(enum.StrEnum):
    """Why a message or a reading was not accepted. The values are stable: they label
    metrics and dead letters, and integrators match on them."""

    OVERSIZED_PAYLOAD = "oversized_payload"
    BAD_TOPIC = "bad_topic"
    MALFORMED_JSON = "malformed_json"
    BAD_SCHEMA = "bad_schema"
    TOPIC_MISMATCH = "topic_mismatch"
    UNKNOWN_SENSOR = "unknown_sensor"
    MISSING_TIMESTAMP = "missing_timestamp"
    BAD_TIMESTAMP = "bad_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"
    UNKNOWN_CHANNEL = "unknown_channel"
    BAD_VALUE = "bad_value"
    NON_FINITE_VALUE = "non_finite_value"
    BAD_SEQUENCE = "bad_sequence"


class PayloadRejected(Exception):
    """A whole message is rejected; ``reason`` is machine-readable, ``detail`` is for a person."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Topic:
    mine: str
    sensor: str

    def __str__(self) -> str:
        return readings_topic(self.mine, self.sensor)


@dataclass(frozen=True, slots=True)
class WireReading:
    """One reading: measurement time in epoch microseconds (UTC), values by channel."""

    t_us: int
    values: Mapping[str, float]
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why reading number ``index`` (0-based, in payload order) of a message was rejected."""

    index: int
    reason: RejectReason
    detail: str


@dataclass(frozen=True, slots=True)
class DecodedMessage:
    topic: Topic
    readings: tuple[WireReading, ...]
    rejections: tuple[Rejection, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    max_payload_bytes: int = 256 * 1024
    max_readings: int = 10_000
    max_future_s: float = 300.0


def readings_topic(mine: str, sensor: str) -> str:
    return f"{TOPIC_ROOT}/{WIRE_VERSION}/{mine}/{sensor}/readings"


def parse_topic(topic: str) -> Topic:
    """Split ``slopewatch/v1/<mine>/<sensor>/readings``; raise PayloadRejected(BAD_TOPIC) otherwise."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != TOPIC_ROOT or parts[1] != WIRE_VERSION or parts[4] != "readings":
        raise PayloadRejected(
            RejectReason.BAD_TOPIC,
            f"topic {_clip(topic)!r} is not of the form {TOPIC_ROOT}/{WIRE_VERSION}/<mine>/<sensor>/readings",
        )
    mine, sensor = parts[2], parts[3]
    for name, code in (("mine", mine), ("sensor", sensor)):
        if not CODE_PATTERN.fullmatch(code):
            raise PayloadRejected(
                RejectReason.BAD_TOPIC,
                f"{name} code {_clip(code)!r} in the topic must be 1-64 characters of A-Z a-z 0-9 _ -,"
                " starting with a letter or digit",
            )
    return Topic(mine, sensor)


def parse_time_us(raw: object) -> int:
    """Measurement time to epoch microseconds; ValueError with a reason otherwise.

    Accepts ISO 8601 with a UTC offset (``2026-11-23T08:00:00+08:00``, ``…Z``) or epoch
    milliseconds as a number.
    """
    if isinstance(raw, bool):
        raise ValueError("time must be an ISO 8601 string with offset or epoch milliseconds, not a boolean")
    if isinstance(raw, int | float):
        # math.isfinite would raise OverflowError for an integer beyond the float range.
        if isinstance(raw, float) and not math.isfinite(raw):
            raise ValueError("epoch milliseconds must be finite")
        if raw < _MIN_EPOCH_MS or raw > _MAX_EPOCH_MS:
            hint = " (it looks like epoch seconds: send milliseconds)" if 946_684_800 <= raw < 4_102_444_800 else ""
            raise ValueError(f"epoch milliseconds {_clip(repr(raw))} is outside 2000-2100{hint}")
        return round(raw * 1000)
    if isinstance(raw, str):
        try:
            dt = datetime.fromisoformat(raw)
        except ValueError:
            raise ValueError(f"time {_clip(raw)!r} is not ISO 8601") from None
        if dt.tzinfo is None or dt.utcoffset() is None:
            raise ValueError(f"time {_clip(raw)!r} has no UTC offset; add Z or +08:00")
        seconds = dt.timestamp()
        if seconds * 1000 < _MIN_EPOCH_MS or seconds * 1000 > _MAX_EPOCH_MS:
            raise ValueError(f"time {_clip(raw)!r} is outside 2000-2100")
        # Integer arithmetic: timestamp() would round sub-second parts through a float.
        delta = dt - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    raise ValueError(f"time must be an ISO 8601 string or epoch milliseconds, got {type(raw).__name__}")


def decode_message(topic: str, payload: bytes, *, now_us: int, limits: DecodeLimits = DecodeLimits()) -> DecodedMessage:
    """Decode one MQTT message.

    ``payload`` is a JSON object with either ``readings`` (a list of readings) or the
    fields of a single reading at the top level. A reading is ``{"t": time, "v":
    {channel: number}, "seq": int?}``. Optional ``mine`` and ``sensor`` fields must
    match the topic.
    """
    where = parse_topic(topic)
    if len(payload) > limits.max_payload_bytes:
        raise PayloadRejected(
            RejectReason.OVERSIZED_PAYLOAD,
            f"payload is {len(payload)} bytes; the limit is {limits.max_payload_bytes}",
        )
    try:
        doc = json.loads(payload, parse_constant=_non_finite)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadRejected(RejectReason.MALFORMED_JSON, f"payload is not JSON: {_clip(str(exc))}") from None
    except RecursionError:
        raise PayloadRejected(RejectReason.MALFORMED_JSON, "payload is nested too deeply") from None
    if not isinstance(doc, dict):
        raise PayloadRejected(RejectReason.BAD_SCHEMA, f"payload must be a JSON object, got {type(doc).__name__}")
    for key, expect in (("mine", where.mine), ("sensor", where.sensor)):
        if key in doc and doc[key] != expect:
            raise PayloadRejected(
                RejectReason.TOPIC_MISMATCH,
                f"payload {key} {_clip(str(doc[key]))!r} differs from the topic's {expect!r}",
            )
    if "readings" in doc:
        raw_readings = doc["readings"]
        if not isinstance(raw_readings, list):
            raise PayloadRejected(RejectReason.BAD_SCHEMA, "'readings' must be a list")
        if not raw_readings:
            raise PayloadRejected(RejectReason.BAD_SCHEMA, "'readings' is empty")
        if len(raw_readings) > limits.max_readings:
            raise PayloadRejected(
                RejectReason.OVERSIZED_PAYLOAD,
                f"{len(raw_readings)} readings in one message; the limit is {limits.max_readings}",
            )
    elif "t" in doc or "v" in doc:
        raw_readings = [doc]
    else:
        raise PayloadRejected(
            RejectReason.BAD_SCHEMA, "payload has neither 'readings' nor a single reading ('t' and 'v')"
        )

    max_t_us = now_us + int(limits.max_future_s * 1_000_000)
    readings: list[WireReading] = []
    rejections: list[Rejection] = []
    for index, raw in enumerate(raw_readings):
        try:
            readings.append(_reading(raw, max_t_us))
        except _ReadingRejected as exc:
            rejections.append(Rejection(index, exc.reason, exc.detail))
    return DecodedMessage(where, tuple(readings), tuple(rejections))


def encode_readings(readings: Iterable[WireReading], *, mine: str | None = None, sensor: str | None = None) -> bytes:
    """The payload a gateway sends: the inverse of :func:`decode_message`. Times go out as
    epoch milliseconds when whole, else as ISO 8601 UTC with microseconds."""
    out: list[dict[str, Any]] = []
    for r in readings:
        item: dict[str, Any] = {"t": _format_time(r.t_us), "v": dict(r.values)}
        if r.seq is not None:
            item["seq"] = r.seq
        out.append(item)
    doc: dict[str, Any] = {}
    if mine is not None:
        doc["mine"] = mine
    if sensor is not None:
        doc["sensor"] = sensor
    doc["readings"] = out
    return json.dumps(doc, separators=(",", ":"), allow_nan=True).encode()


class _ReadingRejected(Exception):
    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _reading(raw: object, max_t_us: int) -> WireReading:
    if not isinstance(raw, dict):
        raise _ReadingRejected(RejectReason.BAD_SCHEMA, f"a reading must be an object, got {type(raw).__name__}")
    if "t" not in raw or raw["t"] is None:
        raise _ReadingRejected(RejectReason.MISSING_TIMESTAMP, "reading has no measurement time 't'")
    try:
        t_us = parse_time_us(raw["t"])
    except ValueError as exc:
        raise _ReadingRejected(RejectReason.BAD_TIMESTAMP, str(exc)) from None
    if t_us > max_t_us:
        ahead_s = (t_us - max_t_us) / 1e6
        raise _ReadingRejected(
            RejectReason.FUTURE_TIMESTAMP,
            f"measurement time is {ahead_s:.0f} s beyond the allowed clock skew; check the device clock",
        )
    values = raw.get("v")
    if not isinstance(values, dict) or not values:
        raise _ReadingRejected(RejectReason.BAD_SCHEMA, "reading needs 'v', an object of channel: number")
    clean: dict[str, float] = {}
    for channel, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _ReadingRejected(
                RejectReason.BAD_VALUE, f"channel {_clip(channel)!r}: value must be a number, got {_clip(repr(value))}"
            )
        try:
            fvalue = float(value)
        except OverflowError:  # an integer literal beyond the float range
            fvalue = math.inf
        if not math.isfinite(fvalue):
            raise _ReadingRejected(
                RejectReason.NON_FINITE_VALUE, f"channel {_clip(channel)!r}: value is {_clip(repr(value))}"
            )
        clean[channel] = fvalue
    seq = raw.get("seq")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 2**63):
        raise _ReadingRejected(
            RejectReason.BAD_SEQUENCE, f"'seq' must be a non-negative integer, got {_clip(repr(seq))}"
        )
    return WireReading(t_us, clean, seq)


def _non_finite(name: str) -> float:
    return float(name.replace("Infinity", "inf"))


def _format_time(t_us: int) -> int | str:
    if t_us % 1000 == 0:
        return t_us // 1000
    seconds, micros = divmod(t_us, 1_000_000)
    dt = datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=micros)
    return dt.isoformat().replace("+00:00", "Z")


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
