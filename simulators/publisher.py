"""Publish sensor streams over MQTT on a simulated clock, like a fleet of gateways.

A :class:`SensorStream` is one sensor's readings, already generated (by
:mod:`simulators.fleet`) or read from a file (by :mod:`simulators.replay`). The
:class:`Publisher` sends them with QoS 1 on ``core.wire.readings_topic(mine,
sensor)``, several readings per message as gateways batch, encoded with
``core.wire.encode_readings``.

The clock: simulated time runs ``speed`` times faster than the wall clock from
``start_s``, but never ahead of the wall clock (ingest rejects measurement times
more than a few minutes in the future). A fast run over a window in the past
therefore catches up with "now" and then continues in real time.

Faults are injected on request and counted in :class:`PublishStats`, so a test
can hold ingest against what was really sent. On a lost connection the publisher
reconnects with backoff and jitter and sends what was not acknowledged
(断电续传): those messages may reach the broker twice and are counted as
``resent_messages``.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import json
import logging
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import aiomqtt
import numpy as np
import numpy.typing as npt
from aiomqtt.exceptions import MqttConnectError

from core.settings import MqttTarget
from core.wire import RejectReason, WireReading, encode_readings, readings_topic
from simulators.scenarios import FloatArray, GroundTruth

logger = logging.getLogger(__name__)

#: CONNACK codes that no retry can cure: bad user or password, not authorised (MQTT 3.1.1: 4, 5;
#: MQTT 5: 0x86, 0x87, 0x85 client identifier not valid)
_REFUSED = frozenset({4, 5, 0x85, 0x86, 0x87})


class BrokerRefused(Exception):
    """The broker refused the publisher's login; the message says what to check."""


def _rc(exc: MqttConnectError) -> int:
    rc = exc.rc
    return rc if isinstance(rc, int) else int(rc.value) if rc is not None else -1


IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class SensorStream:
    """One sensor's readings to publish.

    t_s: (n,) measurement times, epoch s, non-decreasing.
    values: channel -> (n,) values; NaN means "no value for this channel at this time"
      (a reading whose channels are all NaN is not sent).
    seq: (n,) per-reading sequence numbers sent as ``seq``, or ``None`` to send none.
    truth: what the stream's generator says is true about it, when known.
    """

    mine: str
    sensor: str
    t_s: FloatArray
    values: Mapping[str, FloatArray]
    seq: IntArray | None = None
    kind: str = ""
    scenario: str = ""
    truth: GroundTruth | None = None

    def __len__(self) -> int:
        return int(self.t_s.size)


class MalformedKind(enum.StrEnum):
    """Broken messages a misbehaving gateway sends; each goes out as an extra message."""

    BAD_JSON = "bad_json"
    UNKNOWN_SENSOR = "unknown_sensor"
    MISSING_TIMESTAMP = "missing_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"
    NON_FINITE_VALUE = "non_finite_value"
    UNKNOWN_CHANNEL = "unknown_channel"


#: The rejection ingest must record for each malformed message (one per message:
#: the message is rejected whole, or its one reading is).
EXPECTED_REJECTION: Final[Mapping[MalformedKind, RejectReason]] = {
    MalformedKind.BAD_JSON: RejectReason.MALFORMED_JSON,
    MalformedKind.UNKNOWN_SENSOR: RejectReason.UNKNOWN_SENSOR,
    MalformedKind.MISSING_TIMESTAMP: RejectReason.MISSING_TIMESTAMP,
    MalformedKind.FUTURE_TIMESTAMP: RejectReason.FUTURE_TIMESTAMP,
    MalformedKind.NON_FINITE_VALUE: RejectReason.NON_FINITE_VALUE,
    MalformedKind.UNKNOWN_CHANNEL: RejectReason.UNKNOWN_CHANNEL,
}

#: Sensor code used for UNKNOWN_SENSOR messages; registries must not use it.
UNKNOWN_SENSOR_CODE: Final = "sim-unknown-sensor"
UNKNOWN_CHANNEL_NAME: Final = "sim_unknown_channel"
#: How far ahead FUTURE_TIMESTAMP readings are stamped: well beyond ingest's skew allowance.
FUTURE_OFFSET_S: Final = 3600.0


@dataclass(frozen=True)
class TransportFaults:
    """Message-level faults, each drawn per regular message with its probability.

    duplicate_prob: the message is sent twice (same readings, same ``seq``).
    reorder_prob: the message is held back and sent after the stream's next one.
    malformed_prob: an extra malformed message (kind drawn from ``malformed_kinds``)
      follows it.
    """

    duplicate_prob: float = 0.0
    reorder_prob: float = 0.0
    malformed_prob: float = 0.0
    malformed_kinds: tuple[MalformedKind, ...] = tuple(MalformedKind)
    seed: int = 0


@dataclass
class PublishStats:
    """What was acknowledged by the broker (QoS 1 PUBACK), by category.

    messages: every acknowledged message, faults included.
    readings: valid readings acknowledged, each counted once (duplicates excluded).
    duplicate_messages / duplicate_readings: deliberate second copies.
    reordered_messages: messages deliberately sent after a later one of their stream.
    malformed: deliberate malformed messages by kind (one bad reading or one bad
      message each, see :data:`EXPECTED_REJECTION`).
    resent_messages: messages sent again after a connection loss; the broker may
      have had them already.
    per_sensor: valid readings acknowledged per ``(mine, sensor)``.
    """

    messages: int = 0
    readings: int = 0
    bytes: int = 0
    duplicate_messages: int = 0
    duplicate_readings: int = 0
    reordered_messages: int = 0
    resent_messages: int = 0
    reconnects: int = 0
    malformed: collections.Counter[MalformedKind] = field(default_factory=collections.Counter)
    per_sensor: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    last_t_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "readings": self.readings,
            "bytes": self.bytes,
            "duplicate_messages": self.duplicate_messages,
            "duplicate_readings": self.duplicate_readings,
            "reordered_messages": self.reordered_messages,
            "resent_messages": self.resent_messages,
            "reconnects": self.reconnects,
            "malformed": {k.value: v for k, v in sorted(self.malformed.items())},
            "sensors": len(self.per_sensor),
            "last_t_s": self.last_t_s,
        }


class _Role(enum.Enum):
    REGULAR = "regular"
    DUPLICATE = "duplicate"
    MALFORMED = "malformed"


@dataclass
class _Outgoing:
    topic: str
    payload: bytes
    role: _Role
    key: tuple[str, str]
    n_readings: int = 0
    last_t_s: float | None = None
    malformed: MalformedKind | None = None
    reordered: bool = False
    duplicated: bool = False
    resent: bool = False


class SimClock:
    """Simulated time: ``speed`` × faster than the wall clock from ``start_s``, never ahead of it.

    ``speed`` may be ``math.inf``: everything up to the wall clock at once, then real time.
    """

    def __init__(self, start_s: float, speed: float, wall0_s: float) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.start_s = start_s
        self.speed = speed
        self.wall0_s = wall0_s

    def sim_at(self, wall_s: float) -> float:
        if math.isinf(self.speed):
            return wall_s
        return min(self.start_s + (wall_s - self.wall0_s) * self.speed, wall_s)

    def wall_for(self, sim_s: float) -> float:
        """The earliest wall time at which the simulated clock reaches ``sim_s``."""
        if math.isinf(self.speed):
            return sim_s
        return max(self.wall0_s + (sim_s - self.start_s) / self.speed, sim_s)


class Publisher:
    """Publish ``streams`` on a :class:`SimClock`; ``await run()`` returns when all is sent.

    upload_s: simulated seconds between a sensor's uploads (each gateway uploads
      everything measured since its last upload; uploads are spread by a seeded
      phase). 0 uploads on every tick.
    max_batch: readings per message at most.
    max_inflight: QoS 1 messages awaiting PUBACK at once.
    clock: wall clock in epoch seconds (injectable for tests).

    Cancelling ``run()`` stops cleanly; ``stats`` then holds what was acknowledged.
    """

    def __init__(
        self,
        streams: Sequence[SensorStream],
        target: MqttTarget,
        *,
        speed: float,
        start_s: float | None = None,
        upload_s: float = 600.0,
        max_batch: int = 500,
        max_inflight: int = 100,
        faults: TransportFaults | None = None,
        client_id: str | None = None,
        clock: Callable[[], float] = time.time,
        backoff_s: tuple[float, float] = (0.5, 30.0),
        publish_timeout_s: float = 10.0,
        max_sleep_s: float = 1.0,
        progress_s: float = 10.0,
    ) -> None:
        if max_batch < 1 or max_inflight < 1:
            raise ValueError("max_batch and max_inflight must be at least 1")
        self.streams = [s for s in streams if len(s)]
        self.target = target
        self.upload_s = upload_s
        self.max_batch = max_batch
        self.max_inflight = max_inflight
        self.faults = faults or TransportFaults()
        self.client_id = client_id
        self._clock = clock
        self._backoff_s = backoff_s
        self._publish_timeout_s = publish_timeout_s
        self._max_sleep_s = max_sleep_s
        self._progress_s = progress_s
        self._next_progress = clock() + progress_s
        first = min((float(s.t_s[0]) for s in self.streams), default=clock())
        self.sim = SimClock(first if start_s is None else start_s, speed, clock())
        self.stats = PublishStats()
        self._rng = random.Random(self.faults.seed)
        self._cursor = [0] * len(self.streams)
        phase_rng = random.Random(f"upload-phase-{self.faults.seed}")
        self._next_upload = [self.sim.start_s + phase_rng.uniform(0.0, upload_s) for _ in self.streams]
        self._held: dict[int, _Outgoing] = {}
        self._queue: collections.deque[_Outgoing] = collections.deque()

    @property
    def done(self) -> bool:
        return (
            all(c >= len(s) for c, s in zip(self._cursor, self.streams, strict=True))
            and not self._queue
            and not self._held
        )

    def total_readings(self) -> int:
        """Readings the streams hold (the target of ``stats.readings`` once done)."""
        return sum(_count_sendable(s) for s in self.streams)

    async def run(self) -> PublishStats:
        delay = self._backoff_s[0]
        while True:
            client = self._client()
            try:
                async with client:
                    client.pending_calls_threshold = self.max_inflight + 10
                    if self.stats.reconnects or delay != self._backoff_s[0]:
                        logger.info("publisher connected host=%s port=%d", self.target.host, self.target.port)
                    delay = self._backoff_s[0]
                    await self._pump(client)
                    logger.info("publisher finished %s", _kv(self.stats.as_dict()))
                    return self.stats
            except aiomqtt.MqttError as exc:
                if isinstance(exc, MqttConnectError) and _rc(exc) in _REFUSED:
                    # Retrying a refused login cannot help: say so once, and stop.
                    raise BrokerRefused(
                        f"the broker at {self.target.host}:{self.target.port} refused the login ({exc}): check the "
                        f"user, the password and the client id ({self.client_id or self.target.username or 'random'}; "
                        "each account is bound to its own)"
                    ) from exc
                self.stats.reconnects += 1
                wait = delay * random.uniform(0.5, 1.5)
                logger.warning(
                    "publisher lost the broker host=%s port=%d error=%s retry_in_s=%.1f queued=%d",
                    self.target.host,
                    self.target.port,
                    exc,
                    wait,
                    len(self._queue),
                )
                await asyncio.sleep(wait)
                delay = min(delay * 2.0, self._backoff_s[1])
            finally:
                # A publish that timed out after the link dropped leaves aiomqtt's record of
                # the disconnection unread; read it, or asyncio reports it when collected.
                if client._disconnected.done() and not client._disconnected.cancelled():
                    client._disconnected.exception()

    def _client(self) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.target.host,
            self.target.port,
            username=self.target.username,
            password=self.target.password,
            # A gateway's account is bound to one client id, its username (dynamic security):
            # without --client-id, that is the one to present.
            identifier=self.client_id or self.target.username,
            tls_params=aiomqtt.TLSParameters() if self.target.tls else None,
            max_inflight_messages=self.max_inflight,
            timeout=self._publish_timeout_s,
        )

    async def _pump(self, client: aiomqtt.Client) -> None:
        while True:
            wall = self._clock()
            sim_s = self.sim.sim_at(wall)
            self._build(sim_s, wall)
            await self._flush(client)
            if self.done:
                return
            if wall >= self._next_progress:
                self._next_progress = wall + self._progress_s
                logger.info(
                    "publisher progress sim_lag_s=%.0f messages=%d readings=%d",
                    wall - sim_s,
                    self.stats.messages,
                    self.stats.readings,
                )
            next_wall = self.sim.wall_for(self._next_event_s())
            await asyncio.sleep(min(max(next_wall - self._clock(), 0.0), self._max_sleep_s))

    def _next_event_s(self) -> float:
        best = math.inf
        for i, s in enumerate(self.streams):
            c = self._cursor[i]
            if c < len(s):
                best = min(best, max(float(s.t_s[c]), self._next_upload[i]), float(s.t_s[-1]))
        return best

    # ------------------------------------------------------------------ building messages

    def _build(self, sim_s: float, wall_s: float) -> None:
        """Queue what each gateway uploads by ``sim_s``: one upload per elapsed upload slot."""
        for i, s in enumerate(self.streams):
            while self._cursor[i] < len(s) and self._next_upload[i] <= sim_s:
                if self.upload_s > 0:
                    boundary = self._next_upload[i]
                    self._next_upload[i] += self.upload_s
                else:
                    boundary = sim_s
                    self._next_upload[i] = math.nextafter(sim_s, math.inf)
                c = self._cursor[i]
                end = int(np.searchsorted(s.t_s, boundary, side="right"))
                if end <= c:
                    if self.upload_s > 0:
                        # skip the empty slots up to the next reading at once
                        gap = float(s.t_s[c]) - self._next_upload[i]
                        if gap > 0:
                            self._next_upload[i] += math.floor(gap / self.upload_s) * self.upload_s
                    continue
                self._upload(i, s, end, wall_s)
            if self._cursor[i] < len(s) and s.t_s[-1] <= sim_s:
                # the stream has ended: its gateway sends the rest now rather than at the next slot
                self._upload(i, s, len(s), wall_s)

    def _upload(self, i: int, s: SensorStream, end: int, wall_s: float) -> None:
        c = self._cursor[i]
        self._cursor[i] = end
        for lo in range(c, end, self.max_batch):
            self._emit(i, s, lo, min(lo + self.max_batch, end), wall_s)
        if end >= len(s) and i in self._held:
            self._enqueue(self._held.pop(i))

    def _emit(self, i: int, s: SensorStream, lo: int, hi: int, wall_s: float) -> None:
        readings = _readings(s, lo, hi)
        if not readings:
            return
        key = (s.mine, s.sensor)
        msg = _Outgoing(
            readings_topic(s.mine, s.sensor),
            encode_readings(readings),
            _Role.REGULAR,
            key,
            n_readings=len(readings),
            last_t_s=readings[-1].t_us / 1e6,
        )
        f, rng = self.faults, self._rng
        # draw every fault up front so a run's faults depend only on the seed
        hold = f.reorder_prob > 0 and rng.random() < f.reorder_prob
        msg.duplicated = f.duplicate_prob > 0 and rng.random() < f.duplicate_prob
        bad = f.malformed_prob > 0 and bool(f.malformed_kinds) and rng.random() < f.malformed_prob
        held = self._held.pop(i, None)
        if hold and held is None and hi < len(s):
            msg.reordered = True
            self._held[i] = msg
        else:
            self._enqueue(msg)
        if held is not None:
            self._enqueue(held)
        if bad:
            self._queue.append(_malformed(rng.choice(f.malformed_kinds), s, readings[-1], wall_s))

    def _enqueue(self, msg: _Outgoing) -> None:
        """Queue a regular message and, when it is to be duplicated, its copy right after it
        (a copy sent before a held-back original would undo the reordering)."""
        self._queue.append(msg)
        if msg.duplicated:
            self._queue.append(_Outgoing(msg.topic, msg.payload, _Role.DUPLICATE, msg.key, n_readings=msg.n_readings))

    # ------------------------------------------------------------------ sending

    async def _flush(self, client: aiomqtt.Client) -> None:
        inflight: dict[asyncio.Task[None], _Outgoing] = {}
        try:
            while self._queue or inflight:
                while self._queue and len(inflight) < self.max_inflight:
                    msg = self._queue.popleft()
                    inflight[asyncio.ensure_future(self._send(client, msg))] = msg
                done, _ = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                failed: list[BaseException] = []
                for task in done:
                    msg = inflight.pop(task)
                    exc = task.exception()
                    if exc is not None:
                        msg.resent = True
                        self._queue.appendleft(msg)
                        failed.append(exc)
                if failed:
                    raise failed[0]
        finally:
            # a lost connection or a cancellation: whatever was not acknowledged goes
            # back to the queue and is sent again after reconnecting
            for task, msg in inflight.items():
                task.cancel()
                msg.resent = True
                self._queue.appendleft(msg)
            if inflight:
                await asyncio.gather(*inflight, return_exceptions=True)

    async def _send(self, client: aiomqtt.Client, msg: _Outgoing) -> None:
        await client.publish(msg.topic, msg.payload, qos=1)
        st = self.stats
        st.messages += 1
        st.bytes += len(msg.payload)
        if msg.resent:
            st.resent_messages += 1
        if msg.role is _Role.REGULAR:
            st.readings += msg.n_readings
            st.per_sensor[msg.key] += msg.n_readings
            if msg.reordered:
                st.reordered_messages += 1
            if msg.last_t_s is not None and (st.last_t_s is None or msg.last_t_s > st.last_t_s):
                st.last_t_s = msg.last_t_s
        elif msg.role is _Role.DUPLICATE:
            st.duplicate_messages += 1
            st.duplicate_readings += msg.n_readings
        elif msg.malformed is not None:
            st.malformed[msg.malformed] += 1


def _readings(s: SensorStream, lo: int, hi: int) -> list[WireReading]:
    out: list[WireReading] = []
    cols = [(ch, v[lo:hi].tolist()) for ch, v in s.values.items()]
    times = s.t_s[lo:hi].tolist()
    seqs = s.seq[lo:hi].tolist() if s.seq is not None else None
    for j, t in enumerate(times):
        values = {ch: col[j] for ch, col in cols if not math.isnan(col[j])}
        if values:
            out.append(WireReading(round(t * 1e6), values, seqs[j] if seqs is not None else None))
    return out


def _count_sendable(s: SensorStream) -> int:
    if not s.values:
        return 0
    present = np.zeros(len(s), dtype=bool)
    for v in s.values.values():
        present |= ~np.isnan(v)
    return int(present.sum())


def _malformed(kind: MalformedKind, s: SensorStream, last: WireReading, wall_s: float) -> _Outgoing:
    key = (s.mine, s.sensor)
    topic = readings_topic(s.mine, s.sensor)
    t_ms = last.t_us // 1000
    channel = next(iter(last.values))
    doc: dict[str, Any]
    if kind is MalformedKind.BAD_JSON:
        payload = b'{"readings":[{"t":' + str(t_ms).encode() + b',"v":{'
        return _Outgoing(topic, payload, _Role.MALFORMED, key, malformed=kind)
    if kind is MalformedKind.UNKNOWN_SENSOR:
        topic = readings_topic(s.mine, UNKNOWN_SENSOR_CODE)
        doc = {"readings": [{"t": t_ms, "v": {channel: 1.0}}]}
    elif kind is MalformedKind.MISSING_TIMESTAMP:
        doc = {"readings": [{"v": dict(last.values)}]}
    elif kind is MalformedKind.FUTURE_TIMESTAMP:
        doc = {"readings": [{"t": round((wall_s + FUTURE_OFFSET_S) * 1000), "v": dict(last.values)}]}
    elif kind is MalformedKind.NON_FINITE_VALUE:
        doc = {"readings": [{"t": t_ms, "v": {channel: math.nan}}]}
    else:
        doc = {"readings": [{"t": t_ms, "v": {UNKNOWN_CHANNEL_NAME: 1.0}}]}
    payload = json.dumps(doc, separators=(",", ":"), allow_nan=True).encode()
    return _Outgoing(topic, payload, _Role.MALFORMED, key, malformed=kind)


def _kv(d: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in d.items())
