"""Hostile topics and payloads through the real broker into ingest: each is refused by the
broker or rejected, counted and dead-lettered by ingest; ingest keeps running and every
valid reading sent in between is stored."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from core.settings import MqttTarget, Settings
from tests.conftest import Mosquitto, wait_for
from tests.faults.conftest import T0_MS, gnss_messages, keys_of, running_ingest, stored
from tests.faults.rawmqtt import Outcome, publish_raw

ACL_FILE = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "legacy-acl"

GOOD = {"t": T0_MS, "v": {"east_mm": 1.0}}


def payload(doc: object) -> bytes:
    return json.dumps(doc).encode()


# (name, topic, payload, reason ingest gives, or None where the broker refuses the PUBLISH)
HOSTILE: list[tuple[str, bytes, bytes, str | None]] = [
    ("wildcard +", b"slopewatch/v1/+/GN01/readings", payload(GOOD), None),
    ("wildcard #", b"slopewatch/v1/M1/#/readings", payload(GOOD), None),
    ("NUL", b"slopewatch/v1/M1/GN01\x00/readings", payload(GOOD), None),
    ("newline", b"slopewatch/v1/M1/GN01\n/readings", payload(GOOD), None),
    ("invalid UTF-8", b"slopewatch/v1/M1/\xff/readings", payload(GOOD), None),
    ("surrogate", b"slopewatch/v1/M1/\xed\xa0\x80/readings", payload(GOOD), None),
    ("dot-dot mine", b"slopewatch/v1/../GN01/readings", payload(GOOD), "bad_topic"),
    ("dot-dot sensor", b"slopewatch/v1/M1/../readings", payload(GOOD), "bad_topic"),
    ("unicode", "slopewatch/v1/矿山/GN01/readings".encode(), payload(GOOD), "bad_topic"),
    ("full-width", "slopewatch/v1/M1/ＧＮ01/readings".encode(), payload(GOOD), "bad_topic"),
    ("empty level", b"slopewatch/v1//GN01/readings", payload(GOOD), "bad_topic"),
    ("empty levels", b"slopewatch/v1///readings", payload(GOOD), "bad_topic"),
    ("space", b"slopewatch/v1/M1/GN 01/readings", payload(GOOD), "bad_topic"),
    ("65 characters", b"slopewatch/v1/" + b"M" * 65 + b"/GN01/readings", payload(GOOD), "bad_topic"),
    ("very long", b"slopewatch/v1/" + b"M" * 60_000 + b"/GN01/readings", payload(GOOD), "bad_topic"),
    # The registry, checked by ingest whatever the broker let through:
    ("unknown mine", b"slopewatch/v1/GHOST/GN01/readings", payload(GOOD), "unknown_sensor"),
    ("unknown sensor", b"slopewatch/v1/M1/NOPE/readings", payload(GOOD), "unknown_sensor"),
    ("another mine's sensor", b"slopewatch/v1/M1T/GN01/readings", payload(GOOD), "unknown_sensor"),
    ("case differs", b"slopewatch/v1/m1/gn01/readings", payload(GOOD), "unknown_sensor"),
    # Payloads:
    (
        "integer beyond float",
        b"slopewatch/v1/M1/GN01/readings",
        b'{"t": %d, "v": {"east_mm": 1%s}}' % (T0_MS, b"0" * 400),
        "non_finite_value",
    ),
    (
        "time beyond float",
        b"slopewatch/v1/M1/GN01/readings",
        b'{"t": 1%s, "v": {"east_mm": 1}}' % (b"0" * 400),
        "bad_timestamp",
    ),
    ("oversized", b"slopewatch/v1/M1/GN01/readings", b'{"pad": "' + b"x" * 300_000 + b'"}', "oversized_payload"),
    ("deep nesting", b"slopewatch/v1/M1/GN01/readings", b"[" * 100_000, "malformed_json"),
    ("not UTF-8", b"slopewatch/v1/M1/GN01/readings", b'{"t": 1, "v": {"\xff": 1}}', "malformed_json"),
    (
        "NUL channel",
        b"slopewatch/v1/M1/GN01/readings",
        payload({"t": T0_MS, "v": {"east\u0000": 1}}),
        "unknown_channel",
    ),
    (
        "surrogate channel",
        b"slopewatch/v1/M1/GN01/readings",
        b'{"t": %d, "v": {"\\ud800": 1}}' % T0_MS,
        "unknown_channel",
    ),
    ("NUL mine field", b"slopewatch/v1/M1/GN01/readings", payload({"mine": "\u0000", **GOOD}), "topic_mismatch"),
    (
        "20 000 digits",
        b"slopewatch/v1/M1/GN01/readings",
        b'{"t": %d, "v": {"east_mm": %s}}' % (T0_MS, b"9" * 20_000),
        "malformed_json",
    ),
]


async def test_hostile_topics_and_payloads_are_refused_or_rejected_and_nothing_else_is_lost(
    loaded_dsn: str, fault_settings: Settings, broker: Mosquitto
) -> None:
    valid = gnss_messages(0, len(HOSTILE))
    delivered = [reason for _, _, _, reason in HOSTILE if reason is not None]
    async with running_ingest(loaded_dsn, fault_settings, broker.target) as ingest:
        outcomes = {}
        for (name, topic, body, _), good in zip(HOSTILE, valid, strict=True):
            outcomes[name] = await publish_raw(broker.host, broker.port, topic, body)
            assert (
                await publish_raw(broker.host, broker.port, good.topic.encode(), good.payload) is Outcome.ACKNOWLEDGED
            )
        await wait_for(lambda: ingest.received == len(delivered) + len(valid))
        await wait_for(lambda: ingest.sample("slopewatch_ingest_dead_letters_total") == len(delivered))
        assert not ingest.task.done()
        rejected = {reason: ingest.rejected(reason) for reason in set(delivered)}
        conn = await asyncpg.connect(loaded_dsn)
        try:
            dead = await conn.fetch("SELECT topic, reason, detail FROM dead_letter")
        finally:
            await conn.close()
    assert outcomes == {
        name: Outcome.DISCONNECTED if reason is None else Outcome.ACKNOWLEDGED for name, _, _, reason in HOSTILE
    }
    assert rejected == dict(Counter(delivered))
    assert Counter(d["reason"] for d in dead) == Counter(delivered)
    assert all(d["detail"] for d in dead)
    rows, keys = await stored(loaded_dsn)
    assert keys == keys_of(valid)
    assert rows == len(keys)


# -- the shipped ACL lets a gateway publish for any sensor code under its own mine -------------


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A mosquitto with deploy/mosquitto/acl; usernames unauthenticated (the ACL is what is tested)."""
    workdir = tmp_path / "mosquitto-acl"
    workdir.mkdir()
    broker = Mosquitto(workdir)
    broker.conf.write_text(broker.conf.read_text() + f"acl_file {ACL_FILE}\n")
    broker.start()
    yield broker
    broker.stop()


async def test_ingest_rechecks_what_the_broker_acl_lets_through(
    loaded_dsn: str, fault_settings: Settings, acl_broker: Mosquitto
) -> None:
    """The ACL's pattern admits gateway "GHOST" for mine GHOST, and gateway "M1" for any
    sensor code under M1; neither is in the registry, so ingest rejects both. The ACL
    itself stops M1's gateway from writing under M1T."""
    ingest_user = MqttTarget(acl_broker.host, acl_broker.port, username="slopewatch-ingest")
    good = gnss_messages(0, 2)
    sends = [
        ("GHOST", b"slopewatch/v1/GHOST/GN01/readings", payload(GOOD)),  # ACL: yes; registry: no
        ("M1", good[0].topic.encode(), good[0].payload),
        ("M1", b"slopewatch/v1/M1/NOPE/readings", payload(GOOD)),  # ACL: yes; registry: no
        ("M1", b"slopewatch/v1/M1T/PZ01/readings", payload(GOOD)),  # ACL: no (acknowledged, dropped)
        ("M1", good[1].topic.encode(), good[1].payload),
    ]
    async with running_ingest(loaded_dsn, fault_settings, ingest_user) as ingest:
        for user, topic, body in sends:
            outcome = await publish_raw(acl_broker.host, acl_broker.port, topic, body, username=user)
            assert outcome is Outcome.ACKNOWLEDGED
        await wait_for(lambda: ingest.received == 4)
        await wait_for(lambda: ingest.sample("slopewatch_ingest_dead_letters_total") == 2)
        assert ingest.rejected("unknown_sensor") == 2
        conn = await asyncpg.connect(loaded_dsn)
        try:
            dead = await conn.fetch("SELECT topic FROM dead_letter ORDER BY topic")
        finally:
            await conn.close()
    assert [d["topic"] for d in dead] == ["slopewatch/v1/GHOST/GN01/readings", "slopewatch/v1/M1/NOPE/readings"]
    rows, keys = await stored(loaded_dsn)
    assert keys == keys_of(good)  # M1T's piezometer got nothing: the ACL dropped it
    assert rows == len(keys)
