"""The analysis worker: the one I/O shell around the pure detectors.

It picks up sensors with new data (``sensor_dirty``, written by ingest in the same
transaction as the readings), loads each one's window, runs the detectors, and turns
their conclusions into alerts. It also sweeps all sensors periodically so that a
sensor that falls silent is noticed although it sends nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram

from analytics import evaluate_many, evaluate_sensor
from analytics.alarm import decide
from analytics.clock import RULE as CLOCK_RULE
from analytics.clock import clock_ahead
from analytics.evaluate import DISPLACEMENT_KINDS
from analytics.facilities import facility_results, rollup_rule
from analytics.ingest_group import RULE as GROUP_RULE
from analytics.ingest_group import SUBJECT as GROUP_SUBJECT
from analytics.ingest_group import group_membership
from analytics.seq_gaps import RULE as SEQ_RULE
from analytics.seq_gaps import seq_gaps
from analytics.types import ChannelReference, RuleResult, SensorSpec, SensorWindow
from core.model import Level
from core.settings import Settings
from core.wire import readings_topic
from db import alerts as store
from db import ingest_workers, references
from db import watchdog as watchdog_store
from db.facilities import try_lock as rollup_lock
from db.pool import Conn
from db.readings import DirtySensor, clear_dirty, dirty_sensors, fetch_windows
from db.references import Reference
from db.registry import SensorRow, fetch_sensors
from db.seq_gaps import refused_by_topic
from db.seq_gaps import seq_gaps as stored_seq_gaps

logger = logging.getLogger(__name__)

#: Alerts that reached this level need a person to close them, even after the condition clears.
CLOSE_BY_HAND_FROM = Level.ORANGE
#: health.clock looks at the refusals of this long back; it clears (after the dwell) once
#: none came for this long.
CLOCK_WINDOW_S = 3600.0
#: health.seq looks for holes in seq among readings measured this long back, counting a hole
#: once the readings around it have been stored for SEQ_GRACE_S (a late one may fill it).
SEQ_WINDOW_S = 6 * 3600.0
SEQ_GRACE_S = 300.0
#: The seq sweep reads every reading of the window (bench/bench_seq_gaps.py): at most this often.
SEQ_SWEEP_S = 300.0


class AnalysisMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.evaluations = Counter("slopewatch_analysis_evaluations", "sensor evaluations", registry=registry)
        self.alert_changes = Counter(
            "slopewatch_analysis_alert_changes", "alert changes by kind", ["kind"], registry=registry
        )
        self.cycle_seconds = Histogram("slopewatch_analysis_cycle_seconds", "one analysis cycle", registry=registry)
        self.errors = Counter("slopewatch_analysis_errors", "failed cycles (retried)", registry=registry)


@dataclass(frozen=True, slots=True)
class Cause:
    """Corrections or re-baselines behind an evaluation (``sensor_dirty.causes``), and the
    rules whose level the corrected readings changed."""

    causes: tuple[dict[str, Any], ...]
    rules: frozenset[str]

    @property
    def note(self) -> str:
        return "; ".join(str(c.get("note", c)) for c in self.causes)


@dataclass(frozen=True, slots=True)
class CycleReport:
    sensors: int
    changes: int


def spec_of(row: SensorRow, refs: Mapping[str, Reference] | None = None) -> SensorSpec:
    return SensorSpec(
        sensor_id=row.id,
        code=row.code,
        kind=row.kind,
        channels=row.channels,
        interval_s=row.interval_s,
        baseline=row.baseline,
        references={ch: ChannelReference(r.value, r.source, r.since.timestamp()) for ch, r in (refs or {}).items()},
        thresholds=row.thresholds,
        site_height_m=row.site_height_m,
        crest_elevation_m=row.crest_elevation_m,
    )


def build_window(
    records: list[asyncpg.Record], channels: tuple[str, ...], now_s: float, judged_until_s: float | None = None
) -> SensorWindow:
    """Rows (channel, t_s, value) of one sensor, ordered by time, to aligned arrays."""
    times = np.fromiter((r["t_s"] for r in records), dtype=np.float64, count=len(records))
    t_s = np.unique(times)
    index = np.searchsorted(t_s, times)
    values = {ch: np.full(t_s.shape, np.nan) for ch in channels}
    by_channel: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        by_channel[r["channel"]].append(i)
    for ch, rows in by_channel.items():
        if ch in values:
            sel = np.asarray(rows, dtype=np.intp)
            values[ch][index[sel]] = np.fromiter((records[i]["value"] for i in rows), dtype=np.float64, count=len(rows))
    return SensorWindow(t_s=t_s, values=values, now_s=now_s, judged_until_s=judged_until_s)


class AnalysisWorker:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, metrics: AnalysisMetrics) -> None:
        self._settings = settings
        self._pool = pool
        self._metrics = metrics
        self._sensors: dict[int, SensorRow] = {}
        self._sensors_loaded = float("-inf")
        self._last_sweep = float("-inf")
        self._last_seq_sweep = float("-inf")
        #: per sensor, the newest reading time its last evaluation saw (SensorWindow.judged_until_s)
        self._judged_until: dict[int, float] = {}
        self._stopping = asyncio.Event()
        self._rollup_rule = rollup_rule(settings)
        self.name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._started_at = datetime.now(UTC)
        #: the newest measurement time evaluated (published with the heartbeat)
        self._evaluated_to: datetime | None = None

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        logger.info("analysis worker started interval_s=%.1f", self._settings.analysis_interval_s)
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                await self.cycle()
                await self.beat()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self._metrics.errors.inc()
                logger.error("analysis cycle failed error=%r; retrying", exc)
            self._metrics.cycle_seconds.observe(time.monotonic() - started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._settings.analysis_interval_s)
        logger.info("analysis worker stopped")

    async def beat(self) -> None:
        """The heartbeat the watchdog (api/watchdog.py) watches: a cycle has finished."""
        async with self._pool.acquire() as conn:
            await watchdog_store.beat(
                conn, worker=self.name, started_at=self._started_at, evaluated_to=self._evaluated_to
            )

    async def cycle(self, *, now_s: float | None = None) -> CycleReport:
        """Evaluate every sensor with new data, and every sensor once a minute for silence."""
        now = time.time() if now_s is None else now_s
        await self._refresh_sensors()
        evaluated = 0
        changes = 0
        while True:
            async with self._pool.acquire() as conn:
                dirty = await dirty_sensors(conn, limit=200)
            if not dirty:
                break
            changes += await self._evaluate(dirty, now)
            evaluated += len(dirty)
            newest = max(d.max_ts for d in dirty)
            self._evaluated_to = newest if self._evaluated_to is None else max(self._evaluated_to, newest)
            async with self._pool.acquire() as conn:
                await clear_dirty(conn, dirty)
            # A long backlog is progress, not death: the watchdog hears of every batch.
            await self.beat()
            if len(dirty) < 200:
                break
        swept = time.monotonic() - self._last_sweep >= 60.0
        if swept:
            self._last_sweep = time.monotonic()
            changes += await self._sweep(now)
        if changes or swept:
            changes += await self._roll_up(now)
        return CycleReport(evaluated, changes)

    async def _roll_up(self, now_s: float) -> int:
        """GB 39496: facility alerts from the point alerts (analytics/facilities.py). The
        points have dwelt before coming down, so the facility follows them without a
        dwell of its own."""
        changes = 0
        async with self._pool.acquire() as conn, conn.transaction():
            if not await rollup_lock(conn):
                return 0  # another analysis process is rolling up right now
            for subject, result in await facility_results(conn, self._rollup_rule, now_s=now_s):
                changes += await apply_results(
                    conn, subject, (result,), dwell_s=0.0, retroactive=False, label=str(subject.subject),
                    metrics=self._metrics,
                )  # fmt: skip
        return changes

    async def _refresh_sensors(self) -> None:
        if time.monotonic() - self._sensors_loaded < 30.0:
            return
        async with self._pool.acquire() as conn:
            self._sensors = {row.id: row for row in await fetch_sensors(conn)}
        self._sensors_loaded = time.monotonic()

    async def _evaluate(self, dirty: list[DirtySensor], now_s: float) -> int:
        window = timedelta(days=self._settings.analysis_window_days)
        known = [d for d in dirty if d.sensor_id in self._sensors]
        if not known:
            return 0
        since = min(d.max_ts for d in known) - window
        corrected = [d.sensor_id for d in known if d.causes]
        async with self._pool.acquire() as conn:
            # Readings marked invalid are left out; sensors just corrected are read with them
            # too, to tell which rules the correction changed.
            rows = await fetch_windows(conn, [d.sensor_id for d in known], since)
            rows_all = await fetch_windows(conn, corrected, since, with_invalid=True) if corrected else []
            refs = await references.ensure(
                conn,
                [
                    references.Wanted(
                        d.sensor_id,
                        self._sensors[d.sensor_id].channels,
                        self._sensors[d.sensor_id].baseline,
                        d.min_ts,
                        bool(d.causes),
                    )
                    for d in known
                    if self._sensors[d.sensor_id].kind in DISPLACEMENT_KINDS
                ],
            )
        by_sensor: dict[int, list[asyncpg.Record]] = defaultdict(list)
        for r in rows:
            by_sensor[r["sensor_id"]].append(r)
        all_by_sensor: dict[int, list[asyncpg.Record]] = defaultdict(list)
        for r in rows_all:
            all_by_sensor[r["sensor_id"]].append(r)
        batch: list[tuple[DirtySensor, SensorRow]] = []
        inputs: list[tuple[SensorSpec, SensorWindow]] = []
        uncorrected: list[tuple[SensorSpec, SensorWindow]] = []
        for d in known:
            row = self._sensors[d.sensor_id]
            sensor_refs = refs.get(d.sensor_id, {})
            # The window, but nothing from before a re-baseline: that is the earlier installation.
            start_s = max(
                [(d.max_ts - window).timestamp()]
                + [r.since.timestamp() for r in sensor_refs.values() if r.source == "rebaseline"]
            )
            records = [r for r in by_sensor.get(d.sensor_id, []) if r["t_s"] >= start_s]
            if not records:
                continue
            # Data has just arrived: the sensor is not silent, whatever its measurement times
            # (a backlog after an outage is old but fresh). The clock is its newest reading.
            batch.append((d, row))
            spec = spec_of(row, sensor_refs)
            # The detector re-judges the hours a previous evaluation has not seen (a judgement
            # from scratch equals the one held hour by hour); late data and corrections
            # re-judge them all.
            judged = None if d.late or d.causes else self._judged_until.get(d.sensor_id)
            inputs.append((spec, build_window(records, row.channels, records[-1]["t_s"], judged)))
            if d.causes:
                raw = [r for r in all_by_sensor.get(d.sensor_id, []) if r["t_s"] >= start_s]
                uncorrected.append((spec, build_window(raw, row.channels, raw[-1]["t_s"])))
        # One call for the batch: sensors read on one schedule share the detectors' array stages.
        changes = 0
        before = iter(evaluate_many(uncorrected))
        for (d, row), (_, window_now), results in zip(batch, inputs, evaluate_many(inputs), strict=True):
            self._metrics.evaluations.inc()
            self._judged_until[d.sensor_id] = float(window_now.t_s[-1])
            cause: Cause | None = None
            if d.causes:
                # Rules whose level the corrected readings changed take the new level at once:
                # the readings were wrong, there is nothing to wait out.
                was = {r.rule: r.level for r in next(before)}
                cause = Cause(d.causes, frozenset(r.rule for r in results if was.get(r.rule) != r.level))
            async with self._pool.acquire() as conn, conn.transaction():
                # Late data (older than what was already stored) re-judges the past: mark it.
                changes += await self._apply(conn, row, results, retroactive=d.late, cause=cause)
        return changes

    async def _sweep(self, now_s: float) -> int:
        """Silence: evaluate the health rules of sensors whose newest reading is old."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT s.id, max(l.ts) AS last, max(l.received_at) AS received
                   FROM sensor s LEFT JOIN sensor_latest l ON l.sensor_id = s.id GROUP BY s.id"""
            )
        changes = 0
        for r in rows:
            row = self._sensors.get(r["id"])
            if row is None or r["last"] is None:
                continue
            # Silence is about reception: a link that delivers a backlog is not silent. The
            # sensor's clock is its newest measurement plus the time since anything arrived.
            quiet_s = max(0.0, now_s - r["received"].timestamp())
            if quiet_s < 2 * row.interval_s:
                continue  # heard from recently: the evaluation on arrival covered it
            clock_s = r["last"].timestamp() + quiet_s
            async with self._pool.acquire() as conn:
                since = r["last"] - timedelta(seconds=10 * row.interval_s)
                records = await fetch_windows(conn, [row.id], since)
                results = evaluate_sensor(spec_of(row), build_window(records, row.channels, clock_s))
                health = tuple(res for res in results if res.rule.startswith("health.silent"))
                async with conn.transaction():
                    changes += await self._apply(conn, row, health, retroactive=False)
        changes += await self._sweep_clocks(now_s) + await self._sweep_seq(now_s)
        return changes + await self._sweep_ingest_workers(now_s)

    async def _sweep_clocks(self, now_s: float) -> int:
        """health.clock: sensors whose readings ingest refused as stamped in the future
        within the last hour (dead letters), and sensors whose clock alert is still open."""
        async with self._pool.acquire() as conn:
            refused = await conn.fetch(
                """SELECT topic, sum(readings_rejected)::bigint AS n, max(received_at) AS last,
                          (array_agg(detail ORDER BY received_at DESC))[1] AS detail
                   FROM dead_letter
                   WHERE reason = 'future_timestamp' AND received_at > $1 AND received_at <= $2
                   GROUP BY topic""",
                store.ts(now_s - CLOCK_WINDOW_S),
                store.ts(now_s),
            )
            still_open = await conn.fetch(
                "SELECT sensor_id FROM alert WHERE rule = $1 AND state <> 'closed' AND active", CLOCK_RULE
            )
        # A sensor has exactly one readings topic: the dead letters' topics name their sensors.
        by_topic = {readings_topic(r.mine_code, r.code): r.id for r in self._sensors.values()}
        found = {
            by_topic[r["topic"]]: (int(r["n"]), r["last"].timestamp(), str(r["detail"]))
            for r in refused
            if r["topic"] in by_topic
        }
        changes = 0
        for sensor_id in sorted(set(found) | {int(r["sensor_id"]) for r in still_open}):
            row = self._sensors.get(sensor_id)
            if row is None:
                continue
            n, last, detail = found.get(sensor_id, (0, 0.0, ""))
            result = clock_ahead(
                n,
                last if n else None,
                now_s=now_s,
                window_s=CLOCK_WINDOW_S,
                max_future_s=self._settings.max_future_s,
                example=detail,
            )
            async with self._pool.acquire() as conn, conn.transaction():
                changes += await self._apply(conn, row, (result,), retroactive=False)
        return changes

    async def _sweep_seq(self, now_s: float) -> int:
        """health.seq: sensors with holes in their devices' seq numbers (db/seq_gaps.py), and
        sensors whose seq alert is still open."""
        if time.monotonic() - self._last_seq_sweep < SEQ_SWEEP_S:
            return 0
        self._last_seq_sweep = time.monotonic()
        since, until = store.ts(now_s - SEQ_WINDOW_S), store.ts(now_s)
        async with self._pool.acquire() as conn:
            found = {
                g.sensor_id: g
                for g in await stored_seq_gaps(
                    conn, since=since, until=until, settled_before=store.ts(now_s - SEQ_GRACE_S)
                )
            }
            refused = await refused_by_topic(conn, since=since, until=until)
            still_open = await conn.fetch(
                "SELECT sensor_id FROM alert WHERE rule = $1 AND state <> 'closed' AND active", SEQ_RULE
            )
        changes = 0
        for sensor_id in sorted(set(found) | {int(r["sensor_id"]) for r in still_open}):
            row = self._sensors.get(sensor_id)
            if row is None:
                continue
            g = found.get(sensor_id)
            result = seq_gaps(
                g.gaps if g else 0,
                g.missing if g else 0,
                g.last_gap_at.timestamp() if g else None,
                now_s=now_s,
                window_s=SEQ_WINDOW_S,
                examples=g.examples if g else (),
                refused=refused.get(readings_topic(row.mine_code, row.code), 0),
            )
            async with self._pool.acquire() as conn, conn.transaction():
                changes += await self._apply(conn, row, (result,), retroactive=False)
        return changes

    async def _sweep_ingest_workers(self, now_s: float) -> int:
        """health.ingest_workers: as many ingest workers alive as SLOPEWATCH_INGEST_WORKERS_EXPECTED
        (analytics/ingest_group.py). Every mine's readings are dealt across the group, so every
        mine gets one alert (subject ``ingest``) through the alert pipeline, like
        watchdog.analysis. Writes only what changes: a level different from the open alert's."""
        expected = self._settings.ingest_workers_expected
        if expected <= 0:
            return 0
        changes = 0
        async with self._pool.acquire() as conn, conn.transaction():
            if not await ingest_workers.try_lock(conn):
                return 0  # another analysis process sweeps right now
            seen = await ingest_workers.workers(conn, store.ts(now_s))
            check = group_membership(
                seen.alive, seen.silent, expected=expected, shared_group=",".join(seen.groups), now_s=now_s
            )
            current = await watchdog_store.open_subject_alerts(conn, GROUP_RULE)
            if check.ok and not any(
                active for (_m, subject), (_l, active) in current.items() if subject == GROUP_SUBJECT
            ):
                return 0  # the usual case: nothing open, nothing to open, no write
            result = RuleResult(
                GROUP_RULE, check.level, now_s, check.evidence, check.explanation_en, check.explanation_zh
            )
            for mine in await ingest_workers.mines(conn):
                level, active = current.get((mine.mine_id, GROUP_SUBJECT), (0, False))
                if (active and level == int(check.level)) or (not active and check.ok):
                    continue  # nothing changes: no write
                target = store.Subject(mine.first_site_id, mine.mine_id, mine.region_code, subject=GROUP_SUBJECT)
                changes += await apply_results(
                    conn,
                    target,
                    (result,),
                    dwell_s=0.0,
                    retroactive=False,
                    label=f"mine={mine.code} {GROUP_SUBJECT}",
                    metrics=self._metrics,
                )
        if changes and not check.ok:
            logger.warning("%s: %d mine alert(s) raised: %s", GROUP_RULE, changes, check.explanation_en)
        elif changes:
            logger.info("%s: %d mine alert(s) cleared, alive=%d", GROUP_RULE, changes, len(seen.alive))
        return changes

    async def _apply(
        self,
        conn: Conn,
        row: SensorRow,
        results: tuple[RuleResult, ...],
        *,
        retroactive: bool,
        cause: Cause | None = None,
    ) -> int:
        subject = store.Subject(row.site_id, row.mine_id, row.region_code, sensor_id=row.id)
        return await apply_results(
            conn,
            subject,
            results,
            dwell_s=self._settings.deescalate_dwell_s,
            retroactive=retroactive,
            label=f"sensor={row.mine_code}/{row.code}",
            metrics=self._metrics,
            cause=cause,
        )


async def apply_results(
    conn: Conn,
    subject: store.Subject,
    results: tuple[RuleResult, ...],
    *,
    dwell_s: float,
    retroactive: bool,
    label: str,
    metrics: AnalysisMetrics | None = None,
    refresh_evidence: bool = True,
    cause: Cause | None = None,
) -> int:
    """Turn rule results into alert changes for one sensor or named subject (the state
    machine of analytics.alarm); returns how many alerts changed. Call in a transaction.

    refresh_evidence: False keeps an unchanged alert's row as it is (for subjects
    re-evaluated every cycle, so their alerts do not churn).
    cause: an operator's correction or re-baseline that prompted this evaluation; the rules
    whose level it changed move at once (no dwell), and their events name it."""
    open_now = await store.open_alerts_of(conn, subject)
    pending = await store.pending_states_of(conn, subject)
    changes = 0
    for res in results:
        current = open_now.get(res.rule)
        cur_level = current.level if current is not None and current.active else None
        cur_since = current.updated_at.timestamp() if current is not None else None
        pend = pending.get(res.rule)
        pend_since = pend.since.timestamp() if pend is not None and pend.since is not None else None
        at_once = cause is not None and res.rule in cause.rules
        decision = decide(
            cur_level,
            cur_since,
            None if at_once else pend_since,
            res,
            dwell_s=0.0 if at_once else dwell_s,
            pending_level=pend.level if pend is not None and not at_once else None,
        )
        write = store.AlertWrite(
            sensor_id=subject.sensor_id,
            site_id=subject.site_id,
            mine_id=subject.mine_id,
            region_code=subject.region_code,
            rule=res.rule,
            rule_version=res.rule_version,
            level=decision.level,
            at=store.ts(res.at_s),
            evidence=res.evidence,
            explanation_en=res.explanation_en,
            explanation_zh=res.explanation_zh,
            forecast_failure_at=store.ts(res.forecast_failure_s) if res.forecast_failure_s else None,
            retroactive=retroactive,
            subject=subject.subject,
            note=cause.note if cause is not None else None,
            details={"causes": list(cause.causes)} if cause is not None else None,
        )
        new_pending = store.Pending(
            decision.pending_level if decision.pending_since_s is not None else None,
            store.ts(decision.pending_since_s) if decision.pending_since_s is not None else None,
        )
        if pend != new_pending and not (pend is None and new_pending.since is None):
            await store.set_pending_of(conn, subject, res.rule, new_pending)
        action = decision.action
        if action == "open":
            if current is not None:
                # Open but inactive (cleared, waiting for a person): the condition is back.
                await store.update_alert(conn, current, write, kind="reactivated")
            else:
                await store.open_alert(conn, write)
        elif action in ("escalate", "deescalate"):
            assert current is not None
            await store.update_alert(conn, current, write, kind=f"{action}d")
        elif action == "refresh" and current is not None:
            if refresh_evidence:
                await store.update_alert(conn, current, write, kind=None)
            continue
        elif action == "clear" and current is not None and current.active:
            await store.clear_alert(conn, current, write, close=current.peak_level < CLOSE_BY_HAND_FROM)
        else:
            continue
        changes += 1
        if metrics is not None:
            metrics.alert_changes.labels(action).inc()
        logger.info(
            "alert %s %s rule=%s level=%s retroactive=%s",
            action,
            label,
            res.rule,
            decision.level.label,
            retroactive,
        )
    return changes
