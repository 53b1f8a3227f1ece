from __future__ import annotations

import json

import pytest

from core.wire import (
    DecodeLimits,
    PayloadRejected,
    RejectReason,
    WireReading,
    decode_message,
    encode_readings,
    parse_time_us,
    parse_topic,
    readings_topic,
)

NOW_US = 1_790_000_000_000_000
TOPIC = readings_topic("M1", "GN01")


def decode(doc: object, topic: str = TOPIC, **kw: object) -> object:
    payload = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return decode_message(topic, payload, now_us=NOW_US, **kw)  # type: ignore[arg-type]


def test_round_trip_many_readings() -> None:
    readings = [WireReading(NOW_US - i * 3_600_000_000, {"east_mm": 1.5 * i, "up_mm": -i}, seq=i) for i in range(5)]
    msg = decode_message(TOPIC, encode_readings(readings, mine="M1", sensor="GN01"), now_us=NOW_US)
    assert msg.topic.mine == "M1"
    assert msg.topic.sensor == "GN01"
    assert msg.readings == tuple(readings)
    assert msg.rejections == ()


def test_single_reading_form_and_iso_times() -> None:
    msg = decode({"t": "2026-09-21T08:00:00.123456+08:00", "v": {"east_mm": 2}})
    assert msg.readings[0].t_us == parse_time_us("2026-09-21T00:00:00.123456Z")
    assert msg.readings[0].t_us % 1_000_000 == 123456


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("2026-09-21T08:00:00", "no UTC offset"),
        ("yesterday", "not ISO 8601"),
        (1_790_000_000, "looks like epoch seconds"),
        (True, "boolean"),
        ([1], "got list"),
    ],
)
def test_bad_times_say_why(raw: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_time_us(raw)


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("slopewatch/v2/M1/GN01/readings", b"{}", RejectReason.BAD_TOPIC),
        ("slopewatch/v1/M1/../readings", b"{}", RejectReason.BAD_TOPIC),
        ("slopewatch/v1/M1/GN01/readings/extra", b"{}", RejectReason.BAD_TOPIC),
        ("slopewatch/v1/" + "M" * 65 + "/GN01/readings", b"{}", RejectReason.BAD_TOPIC),
        (TOPIC, b"{not json", RejectReason.MALFORMED_JSON),
        (TOPIC, b"\xff\xfe", RejectReason.MALFORMED_JSON),
        (TOPIC, b"[1, 2]", RejectReason.BAD_SCHEMA),
        (TOPIC, b'{"readings": []}', RejectReason.BAD_SCHEMA),
        (TOPIC, b'{"hello": 1}', RejectReason.BAD_SCHEMA),
        (TOPIC, b'{"sensor": "GN02", "t": 1790000000000, "v": {"east_mm": 1}}', RejectReason.TOPIC_MISMATCH),
        (TOPIC, b'{"mine": "M2", "t": 1790000000000, "v": {"east_mm": 1}}', RejectReason.TOPIC_MISMATCH),
        (TOPIC, b"[" * 100_000, RejectReason.MALFORMED_JSON),
    ],
)
def test_whole_message_rejections(topic: str, payload: bytes, reason: RejectReason) -> None:
    with pytest.raises(PayloadRejected) as info:
        decode_message(topic, payload, now_us=NOW_US)
    assert info.value.reason is reason
    assert info.value.detail


def test_oversized_payload() -> None:
    with pytest.raises(PayloadRejected) as info:
        decode(b"x" * 2000, limits=DecodeLimits(max_payload_bytes=1000))
    assert info.value.reason is RejectReason.OVERSIZED_PAYLOAD
    assert "2000 bytes" in info.value.detail


@pytest.mark.parametrize(
    ("reading", "reason"),
    [
        ({"v": {"east_mm": 1}}, RejectReason.MISSING_TIMESTAMP),
        ({"t": "soon", "v": {"east_mm": 1}}, RejectReason.BAD_TIMESTAMP),
        ({"t": NOW_US // 1000 + 3_600_000, "v": {"east_mm": 1}}, RejectReason.FUTURE_TIMESTAMP),
        ({"t": NOW_US // 1000, "v": {"east_mm": "1.0"}}, RejectReason.BAD_VALUE),
        ({"t": NOW_US // 1000, "v": {"east_mm": True}}, RejectReason.BAD_VALUE),
        ({"t": NOW_US // 1000, "v": {}}, RejectReason.BAD_SCHEMA),
        ({"t": NOW_US // 1000, "v": {"east_mm": 1}, "seq": -1}, RejectReason.BAD_SEQUENCE),
        ("not an object", RejectReason.BAD_SCHEMA),
    ],
)
def test_per_reading_rejections_keep_the_good_ones(reading: object, reason: RejectReason) -> None:
    good = {"t": NOW_US // 1000 - 1000, "v": {"east_mm": 1.0}}
    msg = decode({"readings": [good, reading, good | {"t": NOW_US // 1000 - 2000}]})
    assert len(msg.readings) == 2
    assert [(r.index, r.reason) for r in msg.rejections] == [(1, reason)]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_non_finite_values(literal: bytes) -> None:
    payload = b'{"t": 1790000000000, "v": {"east_mm": ' + literal + b"}}"
    msg = decode_message(TOPIC, payload, now_us=NOW_US)
    assert msg.readings == ()
    assert msg.rejections[0].reason is RejectReason.NON_FINITE_VALUE


def test_parse_topic() -> None:
    assert parse_topic("slopewatch/v1/M-1/GN_01/readings").sensor == "GN_01"
