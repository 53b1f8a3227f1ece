"""Fuzzing the payload decoder: whatever arrives, only :class:`PayloadRejected` escapes.

Three kinds of input: arbitrary bytes, arbitrary JSON (with the contract's field names
mixed in so the decoder gets past its first checks), and near-valid payloads (valid
ones with bytes or fields mutated). Whatever the decoder returns must be storable:
finite values, times in range, sequence numbers that fit int8, and details that
PostgreSQL's ``text`` accepts (UTF-8, no NUL).
"""

from __future__ import annotations

import json
import math
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.wire import (
    CODE_PATTERN,
    DecodedMessage,
    DecodeLimits,
    PayloadRejected,
    RejectReason,
    WireReading,
    decode_message,
    encode_readings,
    parse_topic,
    readings_topic,
)

pytestmark = pytest.mark.slow

NOW_US = 1_790_000_000_000_000
NOW_MS = NOW_US // 1000
TOPIC = readings_topic("M1", "GN01")
LIMITS = DecodeLimits(max_payload_bytes=16 * 1024, max_readings=50, max_future_s=300.0)
MIN_US = 946_684_800_000_000
MAX_US = 4_102_444_800_000_000

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FIELD_NAMES = ["readings", "t", "v", "seq", "mine", "sensor", "east_mm", "north_mm", "up_mm"]

# Numbers where decoders break: float and int8 edges, integers beyond the float range,
# epoch seconds where milliseconds belong.
EDGE_NUMBERS = st.sampled_from(
    [
        0,
        -1,
        2**53 + 1,
        2**63 - 1,
        2**63,
        -(2**63),
        10**308,
        10**309,
        -(10**400),
        1e308,
        -1e308,
        5e-324,
        math.inf,
        -math.inf,
        math.nan,
        NOW_MS,
        NOW_MS // 1000,
        946_684_799_999,
        4_102_444_800_001,
    ]
)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**500), max_value=10**500)
    | st.floats(allow_nan=True, allow_infinity=True)
    | EDGE_NUMBERS
    | st.text(max_size=40)
    | st.sampled_from(["2026-09-21T08:00:00+08:00", "2026-09-21T08:00:00", "\x00", "\ud800", "9999-12-31T23:59:59Z"])
)
KEYS = st.sampled_from(FIELD_NAMES) | st.text(max_size=12)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(KEYS, inner, max_size=6),
    max_leaves=40,
)


def dumps(doc: object) -> bytes:
    return json.dumps(doc, allow_nan=True).encode("utf-8", "surrogatepass")


def storable(text: str) -> bool:
    """What PostgreSQL's text type accepts: valid UTF-8 without NUL."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check(topic: str, payload: bytes, limits: DecodeLimits = LIMITS) -> DecodedMessage | PayloadRejected:
    """Decode; anything but a result or PayloadRejected fails the test. Checks what comes back."""
    try:
        msg = decode_message(topic, payload, now_us=NOW_US, limits=limits)
    except PayloadRejected as exc:
        rejected = exc
    else:
        check_decoded(msg, limits)
        return msg
    assert isinstance(rejected.reason, RejectReason)
    assert rejected.detail
    assert storable(rejected.detail), rejected.detail
    assert storable(str(rejected))
    return rejected


def check_decoded(msg: DecodedMessage, limits: DecodeLimits) -> None:
    assert CODE_PATTERN.fullmatch(msg.topic.mine)
    assert CODE_PATTERN.fullmatch(msg.topic.sensor)
    for r in msg.readings:
        assert isinstance(r.t_us, int)
        assert MIN_US <= r.t_us <= NOW_US + int(limits.max_future_s * 1_000_000)
        assert r.values
        for channel, value in r.values.items():
            assert isinstance(channel, str)
            assert type(value) is float
            assert math.isfinite(value)
        assert r.seq is None or (type(r.seq) is int and 0 <= r.seq < 2**63)
    indexes = [j.index for j in msg.rejections]
    assert indexes == sorted(set(indexes))
    total = len(msg.readings) + len(msg.rejections)
    assert 1 <= total <= limits.max_readings
    assert all(0 <= i < total for i in indexes)
    for j in msg.rejections:
        assert isinstance(j.reason, RejectReason)
        assert j.detail
        assert storable(j.detail), j.detail


# -- arbitrary input ----------------------------------------------------------------------


@FUZZ
@given(payload=st.binary(max_size=2048))
@example(payload=b"\xff\xfe")
@example(payload=b"\x00")
@example(payload=b"[" * 100_000)
@example(payload=b'{"t": 1' + b"0" * 5000 + b', "v": {"a": 1}}')
def test_arbitrary_bytes_are_decoded_or_rejected(payload: bytes) -> None:
    check(TOPIC, payload)


@FUZZ
@given(doc=JSON_VALUES)
def test_arbitrary_json_is_decoded_or_rejected(doc: Any) -> None:
    check(TOPIC, dumps(doc))


READING_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "t": JSON_SCALARS | JSON_VALUES,
        "v": st.dictionaries(KEYS, JSON_SCALARS, max_size=4) | JSON_VALUES,
        "seq": JSON_SCALARS,
    },
)


@FUZZ
@given(
    readings=st.lists(READING_FIELDS | JSON_VALUES, max_size=8),
    batched=st.booleans(),
    mine=st.none() | st.just("M1") | JSON_SCALARS,
)
@example(readings=[{"t": NOW_MS, "v": {"east_mm": 10**400}}], batched=True, mine=None)
@example(readings=[{"t": 10**400, "v": {"east_mm": 1}}], batched=True, mine=None)
@example(readings=[{"t": -(10**400), "v": {"east_mm": 1}}], batched=False, mine=None)
@example(readings=[{"t": NOW_MS, "v": {"east_mm": 1}, "seq": 10**400}], batched=True, mine=None)
def test_contract_shaped_json_is_decoded_or_rejected(readings: list[Any], batched: bool, mine: Any) -> None:
    doc: dict[str, Any] = {"readings": readings} if batched else (readings[0] if readings else {})
    if not isinstance(doc, dict):
        doc = {"readings": doc}
    if mine is not None:
        doc = {**doc, "mine": mine}
    check(TOPIC, dumps(doc))


# -- near-valid: mutations of valid payloads -------------------------------------------------

VALID_READINGS = st.lists(
    st.builds(
        WireReading,
        t_us=st.integers(MIN_US, NOW_US),
        values=st.dictionaries(
            st.sampled_from(["east_mm", "north_mm", "up_mm"]),
            st.floats(allow_nan=False, allow_infinity=False),
            min_size=1,
        ),
        seq=st.none() | st.integers(0, 2**63 - 1),
    ),
    min_size=1,
    max_size=8,
)


@FUZZ
@given(readings=VALID_READINGS)
def test_valid_payloads_round_trip(readings: list[WireReading]) -> None:
    msg = check(TOPIC, encode_readings(readings, mine="M1", sensor="GN01"))
    assert isinstance(msg, DecodedMessage)
    assert msg.rejections == ()
    assert list(msg.readings) == readings


@st.composite
def byte_mutations(draw: st.DrawFn) -> bytes:
    payload = bytearray(encode_readings(draw(VALID_READINGS), mine="M1", sensor="GN01"))
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.integers(0, len(payload)))
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "duplicate"]))
        if op == "flip" and where < len(payload):
            payload[where] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            payload[where:where] = draw(st.binary(min_size=1, max_size=8) | st.sampled_from([b'"', b",", b"{", b"]"]))
        elif op == "delete":
            del payload[where : where + draw(st.integers(1, 8))]
        elif op == "truncate":
            del payload[where:]
        else:
            payload[where:where] = payload[max(0, where - 16) : where]
    return bytes(payload)


@FUZZ
@given(payload=byte_mutations())
def test_byte_mutations_of_valid_payloads_are_decoded_or_rejected(payload: bytes) -> None:
    check(TOPIC, payload)


@st.composite
def field_mutations(draw: st.DrawFn) -> dict[str, Any]:
    """A valid document with one reading's field replaced, removed or added."""
    doc: dict[str, Any] = json.loads(encode_readings(draw(VALID_READINGS), mine="M1", sensor="GN01"))
    reading: dict[str, Any] = draw(st.sampled_from(doc["readings"]))
    target = draw(st.sampled_from(["t", "v", "seq", "channel", "envelope"]))
    replacement = draw(JSON_VALUES)
    if target == "channel":
        channel = draw(st.sampled_from(sorted(reading["v"])))
        reading["v"][channel] = replacement
    elif target == "envelope":
        doc[draw(st.sampled_from(["mine", "sensor", "readings"]))] = replacement
    elif draw(st.booleans()):
        reading.pop(target, None)
    else:
        reading[target] = replacement
    return doc


@FUZZ
@given(doc=field_mutations())
def test_field_mutations_of_valid_payloads_are_decoded_or_rejected(doc: dict[str, Any]) -> None:
    result = check(TOPIC, dumps(doc))
    if isinstance(result, DecodedMessage):
        # Every reading is either accepted or rejected with its index: none is dropped silently.
        readings = doc["readings"] if isinstance(doc.get("readings"), list) else [doc]
        assert len(result.readings) + len(result.rejections) == len(readings)


# -- size limits -------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(extra=st.integers(0, 64))
def test_oversized_payloads_are_rejected_before_parsing(extra: int) -> None:
    at_limit = b'{"t": %d, "v": {"east_mm": 1.0}, "pad": "' % NOW_MS
    at_limit += b"x" * (LIMITS.max_payload_bytes - len(at_limit) - 2) + b'"}'
    assert len(at_limit) == LIMITS.max_payload_bytes
    ok = check(TOPIC, at_limit)
    assert isinstance(ok, DecodedMessage)
    assert len(ok.readings) == 1
    # One byte more, even if the extra bytes make it unparseable: rejected for its size.
    over = at_limit + b" " * (extra + 1)
    rejected = check(TOPIC, over)
    assert isinstance(rejected, PayloadRejected)
    assert rejected.reason is RejectReason.OVERSIZED_PAYLOAD


def test_too_many_readings_are_rejected_whole() -> None:
    reading = {"t": NOW_MS, "v": {"east_mm": 1.0}}
    ok = check(TOPIC, dumps({"readings": [reading] * LIMITS.max_readings}))
    assert isinstance(ok, DecodedMessage)
    rejected = check(TOPIC, dumps({"readings": [reading] * (LIMITS.max_readings + 1)}))
    assert isinstance(rejected, PayloadRejected)
    assert rejected.reason is RejectReason.OVERSIZED_PAYLOAD


@pytest.mark.parametrize("depth", [10, 500, 990, 995, 1000, 5000, 100_000])
@pytest.mark.parametrize("where", ["value", "seq", "t", "mine", "readings"])
def test_deep_nesting_anywhere_is_decoded_or_rejected(depth: int, where: str) -> None:
    nested = b"[" * depth + b"]" * depth
    templates = {
        "value": b'{"t": %d, "v": {"east_mm": %s}}' % (NOW_MS, nested),
        "seq": b'{"t": %d, "v": {"east_mm": 1}, "seq": %s}' % (NOW_MS, nested),
        "t": b'{"t": %s, "v": {"east_mm": 1}}' % nested,
        "mine": b'{"mine": %s, "t": %d, "v": {"east_mm": 1}}' % (nested, NOW_MS),
        "readings": b'{"readings": [%s]}' % nested,
    }
    check(TOPIC, templates[where], DecodeLimits(max_payload_bytes=1 << 20))


# -- topics -----------------------------------------------------------------------------------

HOSTILE_LEVELS = st.sampled_from(
    [
        "",
        "+",
        "#",
        "..",
        ".",
        "GN01\n",
        "\nGN01",
        "GN 01",
        "GN01\x00",
        "\x00",
        "ＧＮ０１",  # full-width letters and digits
        "GN٠١",  # Arabic-Indic digits: \d would match them
        "M" * 65,
        "M" * 64,
        "-GN01",
        "_GN01",
        "GN01/",
        "$SYS",
        "\ud800",
        "Ǆ",
    ]
)


ALNUM = frozenset(string.ascii_letters + string.digits)


def is_code(text: str) -> bool:
    """The contract's code rule, written out independently of CODE_PATTERN."""
    return 1 <= len(text) <= 64 and text[0] in ALNUM and all(c in ALNUM or c in "_-" for c in text)


@FUZZ
@given(
    mine=HOSTILE_LEVELS | st.text(max_size=70),
    sensor=HOSTILE_LEVELS | st.text(max_size=70),
    suffix=st.sampled_from(["readings", "readings/", "Readings", "readings/x", ""]),
)
def test_hostile_topics_are_rejected_unless_both_codes_are_valid(mine: str, sensor: str, suffix: str) -> None:
    topic = f"slopewatch/v1/{mine}/{sensor}/{suffix}"
    valid = is_code(mine) and is_code(sensor) and suffix == "readings"
    result = check(topic, dumps({"t": NOW_MS, "v": {"east_mm": 1.0}}))
    if valid:
        assert isinstance(result, DecodedMessage)
        assert (result.topic.mine, result.topic.sensor) == (mine, sensor)
    else:
        assert isinstance(result, PayloadRejected)
        assert result.reason is RejectReason.BAD_TOPIC


@FUZZ
@given(topic=st.text(max_size=300) | st.text(alphabet="/+#.\x00a", max_size=40))
def test_arbitrary_topics_never_escape(topic: str) -> None:
    try:
        parsed = parse_topic(topic)
    except PayloadRejected as exc:
        rejected = exc
    else:
        assert topic == readings_topic(parsed.mine, parsed.sensor)
        assert is_code(parsed.mine)
        assert is_code(parsed.sensor)
        return
    assert rejected.reason is RejectReason.BAD_TOPIC
    assert storable(rejected.detail)


def test_very_long_topic_is_rejected_with_a_clipped_detail() -> None:
    topic = "slopewatch/v1/" + "M" * 60_000 + "/GN01/readings"
    result = check(topic, b"{}")
    assert isinstance(result, PayloadRejected)
    assert result.reason is RejectReason.BAD_TOPIC
    assert len(result.detail) < 400
