"""Judging one MQTT message: decode it, check it against the registry, and split it into
rows to store and a dead letter for what was rejected."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.wire import DecodeLimits, PayloadRejected, RejectReason, decode_message
from db.readings import DeadLetter, ReadingBatch
from ingest.directory import KnownSensor, SensorDirectory


@dataclass(slots=True)
class Verdict:
    """What became of one message."""

    readings_accepted: int = 0
    values_accepted: int = 0
    rejected: dict[RejectReason, int] = field(default_factory=dict)
    dead_letter: DeadLetter | None = None


async def accept_message(
    topic: str,
    payload: bytes,
    *,
    directory: SensorDirectory,
    batch: ReadingBatch,
    now_us: int,
    limits: DecodeLimits,
    dead_letter_max_bytes: int,
) -> Verdict:
    """Append the message's valid readings to ``batch``; never raises for bad input."""
    verdict = Verdict()
    try:
        decoded = decode_message(topic, payload, now_us=now_us, limits=limits)
    except PayloadRejected as exc:
        verdict.rejected[exc.reason] = 1
        verdict.dead_letter = _dead(topic, payload, exc.reason, exc.detail, 1, 0, dead_letter_max_bytes)
        return verdict
    sensor: KnownSensor | None = await directory.lookup(decoded.topic.mine, decoded.topic.sensor)
    if sensor is None:
        n = len(decoded.readings) + len(decoded.rejections)
        detail = (
            f"sensor {decoded.topic.sensor!r} is not registered under mine {decoded.topic.mine!r}; "
            "add it to the registry file and run 'slopewatch registry load'"
        )
        verdict.rejected[RejectReason.UNKNOWN_SENSOR] = 1
        verdict.dead_letter = _dead(topic, payload, RejectReason.UNKNOWN_SENSOR, detail, n, 0, dead_letter_max_bytes)
        return verdict
    problems: list[tuple[int, RejectReason, str]] = [(r.index, r.reason, r.detail) for r in decoded.rejections]
    accepted = 0
    # Indices of decoded readings within the payload, for the dead letter's detail.
    good_index = sorted(
        set(range(len(decoded.readings) + len(decoded.rejections))) - {r.index for r in decoded.rejections}
    )
    for index, reading in zip(good_index, decoded.readings, strict=True):
        unknown = [ch for ch in reading.values if ch not in sensor.channels]
        if unknown:
            problems.append(
                (
                    index,
                    RejectReason.UNKNOWN_CHANNEL,
                    f"channel(s) {sorted(unknown)} unknown for this sensor; it has {sorted(sensor.channels)}",
                )
            )
            continue
        for channel, value in reading.values.items():
            batch.add(sensor.sensor_id, channel, reading.t_us, value, reading.seq)
        accepted += 1
        verdict.values_accepted += len(reading.values)
    verdict.readings_accepted = accepted
    if problems:
        problems.sort()
        for _, reason, _ in problems:
            verdict.rejected[reason] = verdict.rejected.get(reason, 0) + 1
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        detail = f"reading {first[0]}: {first[2]}{more}"
        verdict.dead_letter = _dead(topic, payload, first[1], detail, len(problems), accepted, dead_letter_max_bytes)
    return verdict


def _dead(
    topic: str, payload: bytes, reason: RejectReason, detail: str, rejected: int, accepted: int, max_bytes: int
) -> DeadLetter:
    return DeadLetter(
        topic=_storable(topic[:1024]),
        payload=payload[:max_bytes],
        payload_bytes=len(payload),
        truncated=len(payload) > max_bytes,
        reason=reason.value,
        detail=_storable(detail[:2000]),
        readings_rejected=rejected,
        readings_accepted=accepted,
    )


def _storable(text: str) -> str:
    """Text PostgreSQL accepts (UTF-8, no NUL). A dead letter that cannot be written would
    fail its whole batch on every retry and stop ingest."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
