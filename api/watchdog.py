"""The watchdog over the watcher, run by the API process or by ``slopewatch watchdog``.

``slopewatch analyze`` publishes a heartbeat after every cycle (analysis_heartbeat) and
the newest measurement time it has evaluated. Every SLOPEWATCH_WATCHDOG_POLL_S the
watchdog judges the analysis

- *dead* when no heartbeat came for more than SLOPEWATCH_WATCHDOG_MAX_LAG_S (or none
  since this process started watching that long ago);
- *behind* when data has waited longer than that to be evaluated (the oldest entry of
  the analysis queue, in wall-clock time);

and keeps one ``watchdog.analysis`` alert (orange) per mine while it is: each mine's
monitoring room and regulators learn through their own escalation ladder that their
alarms are not being computed. It also raises ``monitoring.offline`` for a mine whose
sensors have all fallen silent (orange; GB 39496 criterion (七), monitoring closed) or
that has a whole site silent (yellow). Both go through the same alert tables, state
machine and notifications as any alert.

Why the API process: the notifier runs inside ``slopewatch analyze``, so it dies with the
analysis; the API is the process every user looks at. While the analysis is dead, the
watchdog also runs a standby notifier here, so this alert (and anything else queued)
still goes out; several notifiers are safe (db/notify.py). With several API processes,
an advisory lock lets one write per poll.

Under least privilege the API's login (slopewatch_api) may not write alerts: the first
refusal turns this process' watchdog into a judge only (``/health``, the banner), and
``slopewatch watchdog``, a process of its own with the analysis' login, raises the alerts
and runs the standby notifier (deploy/ runs it so).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg

from analytics.types import RuleResult
from analytics.worker import apply_results
from core.model import Level
from core.settings import Settings
from db import alerts as store
from db import watchdog as db
from notify import Notifier

logger = logging.getLogger(__name__)

ANALYSIS_RULE: Final = "watchdog.analysis"
OFFLINE_RULE: Final = "monitoring.offline"
ANALYSIS_SUBJECT: Final = "analysis"
MINE_SUBJECT: Final = "mine"
#: Silence is judged against 3 × a sensor's interval (minutes at least): recounting every
#: mine's sensors once a minute is enough, and costs most of a check at province scale.
OFFLINE_EVERY_S: Final = 60.0
_DB_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


@dataclass(frozen=True, slots=True)
class Judgement:
    """state: ok, behind, dead, or starting (no heartbeat yet, within the grace time);
    heartbeat_age_s: since the newest heartbeat; lag_s: newest stored minus newest
    evaluated measurement time; backlog_s: how long the oldest unevaluated data has waited."""

    state: str
    heartbeat_age_s: float | None
    lag_s: float | None
    backlog_s: float | None


def judge(f: db.Freshness, *, max_lag_s: float, watching_since: datetime) -> Judgement:
    """Pure: the analysis' state from what the database holds."""
    age = (f.now - f.beat_at).total_seconds() if f.beat_at is not None else None
    lag = (
        max(0.0, (f.newest_stored - f.evaluated_to).total_seconds())
        if f.newest_stored is not None and f.evaluated_to is not None
        else None
    )
    backlog = max(0.0, (f.now - f.oldest_unevaluated).total_seconds()) if f.oldest_unevaluated is not None else 0.0
    silent_for = age if age is not None else (f.now - watching_since).total_seconds()
    if silent_for > max_lag_s:
        state = "dead"
    elif age is None:
        state = "starting"
    elif backlog > max_lag_s:
        state = "behind"
    else:
        state = "ok"
    return Judgement(state, None if age is None else round(age, 1), lag, round(backlog, 1))


def analysis_result(j: Judgement, *, max_lag_s: float, at_s: float) -> RuleResult:
    """Pure: the watchdog alert's level and words for one mine."""
    evidence: dict[str, float | int | str | bool | list[float] | list[str] | None] = {
        "state": j.state,
        "heartbeat_age_s": j.heartbeat_age_s,
        "lag_s": j.lag_s,
        "backlog_s": j.backlog_s,
        "max_lag_s": max_lag_s,
    }
    if j.state == "dead":
        age = "never since the watchdog started" if j.heartbeat_age_s is None else f"{j.heartbeat_age_s:.0f} s ago"
        age_zh = "自看门狗启动以来从未收到" if j.heartbeat_age_s is None else f"在 {j.heartbeat_age_s:.0f} 秒前"
        en = (
            f"The analysis is not running: its last heartbeat was {age} (limit {max_lag_s:.0f} s). "
            "No alarm is being computed; watch the readings and patrol by hand until it is back."
        )
        zh = (
            f"分析服务已停止:最近一次心跳{age_zh}(限值 {max_lag_s:.0f} 秒)。当前不计算任何预警,"
            "恢复前请人工查看数据并加强巡查。"
        )
        return RuleResult(ANALYSIS_RULE, Level.ORANGE, at_s, evidence, en, zh)
    if j.state == "behind":
        en = (
            f"The analysis is behind: data has waited {j.backlog_s:.0f} s to be evaluated (limit {max_lag_s:.0f} s). "
            "Alarms come late."
        )
        zh = f"分析服务滞后:数据已等待 {j.backlog_s:.0f} 秒未被分析(限值 {max_lag_s:.0f} 秒),预警将延迟。"
        return RuleResult(ANALYSIS_RULE, Level.ORANGE, at_s, evidence, en, zh)
    return RuleResult(ANALYSIS_RULE, Level.NONE, at_s, evidence, "The analysis is running.", "分析服务运行正常。")


@dataclass(slots=True)
class MineMonitoring:
    code: str
    region_code: str
    first_site_id: int
    sites: list[tuple[str, int, int]] = field(default_factory=list)  # (code, reporting, online)
    last_received: datetime | None = None


def offline_result(mine: MineMonitoring, *, at_s: float) -> RuleResult:
    """Pure: criterion (七) for one mine. Only sensors that have reported count: a mine
    never connected is not 'offline' (its absence shows in the online rate)."""
    watched = [(code, rep, on) for code, rep, on in mine.sites if rep > 0]
    silent = [code for code, _rep, on in watched if on == 0]
    reporting = sum(rep for _c, rep, _o in watched)
    evidence: dict[str, float | int | str | bool | list[float] | list[str] | None] = {
        "sites_silent": silent,
        "sites_watched": [c for c, _r, _o in watched],
        "sensors_reporting_ever": reporting,
        "sensors_online": sum(on for _c, _r, on in watched),
        "last_received": mine.last_received.isoformat() if mine.last_received else None,
    }
    since = mine.last_received.isoformat(timespec="seconds") if mine.last_received else "?"
    if watched and len(silent) == len(watched):
        en = (
            f"Monitoring of mine {mine.code} is offline: none of its {reporting} sensors has reported within "
            f"3 × its interval (last reading received {since}). Criterion (七): monitoring closed is a major hazard."
        )
        zh = (
            f"矿山 {mine.code} 在线监测中断:{reporting} 个测点均未在 3 倍采集周期内上报(最后接收 {since})。"
            "依据重大事故隐患判定标准第(七)项,监测系统关闭属重大隐患。"
        )
        return RuleResult(OFFLINE_RULE, Level.ORANGE, at_s, evidence, en, zh)
    if silent:
        en = f"Monitoring of mine {mine.code} is offline at site(s) {', '.join(silent)}: none of their sensors reports."
        zh = f"矿山 {mine.code} 的监测区域 {'、'.join(silent)} 在线监测中断:其测点均未上报。"
        return RuleResult(OFFLINE_RULE, Level.YELLOW, at_s, evidence, en, zh)
    return RuleResult(OFFLINE_RULE, Level.NONE, at_s, evidence, "Monitoring is online.", "在线监测正常。")


@dataclass(frozen=True, slots=True)
class WatchdogStatus:
    """What /health and /ready report, and what the pages' banner shows."""

    analysis: str
    heartbeat_age_s: float | None
    lag_s: float | None
    backlog_s: float | None
    max_lag_s: float
    analysis_workers: int
    mines_offline: list[str]
    checked_at: str
    standby_notifier: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Watchdog:
    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self._settings = settings
        self._pool = pool
        self._since = datetime.now(UTC)
        self.status: WatchdogStatus | None = None
        self._standby: Notifier | None = None
        self._standby_task: asyncio.Task[None] | None = None
        #: mines with sensors, and their online counts as of the last offline pass
        self._mines: dict[int, MineMonitoring] = {}
        self._offline: list[str] = []
        #: whether this process' database login may raise alerts and notify (asked once);
        #: if not, it only judges
        self.writes: bool | None = None

    async def check(self, *, offline: bool = True) -> WatchdogStatus | None:
        """One pass; None when another process holds the watchdog's lock right now.

        offline: also recount every mine's sensors for monitoring.offline (the costly part:
        ``run`` does it once a minute, the heartbeat every poll)."""
        max_lag = self._settings.watchdog_max_lag_s
        async with self._pool.acquire(timeout=10) as conn, conn.transaction():
            if self.writes is None:
                # The API's least-privilege login (slopewatch_api) may not write alerts nor
                # notify: it then judges for /health and the pages' banner, and leaves the
                # alerts to `slopewatch watchdog`, run with the analysis' login (docs/deploy.md).
                self.writes = await db.may_raise_alerts(conn)
                if not self.writes:
                    logger.warning(
                        "watchdog: this process' database login may not write alerts or notifications: it only "
                        "reports here; run `slopewatch watchdog` with the analysis login to raise the alerts"
                    )
            if self.writes and not await db.try_lock(conn):
                return None
            fresh = await db.freshness(conn, alive_s=max_lag)
            j = judge(fresh, max_lag_s=max_lag, watching_since=self._since)
            at_s = fresh.now.timestamp()
            passes = [(ANALYSIS_RULE, ANALYSIS_SUBJECT)]
            if offline or not self._mines:
                self._mines = {}
                for r in await db.mine_monitoring(conn):
                    m = self._mines.setdefault(
                        r["mine_id"], MineMonitoring(r["mine_code"], r["region_code"], r["site_id"])
                    )
                    m.sites.append((r["site_code"], int(r["reporting"]), int(r["online"])))
                    if r["last_received"] is not None:
                        m.last_received = max(m.last_received or r["last_received"], r["last_received"])
                passes.append((OFFLINE_RULE, MINE_SUBJECT))
                self._offline = []
            for rule, subject in passes:
                current = await db.open_subject_alerts(conn, rule)
                for mine_id, m in self._mines.items():
                    if rule == ANALYSIS_RULE:
                        result = analysis_result(j, max_lag_s=max_lag, at_s=at_s)
                    else:
                        result = offline_result(m, at_s=at_s)
                        if result.level is not Level.NONE:
                            self._offline.append(m.code)
                    level, active = current.get((mine_id, subject), (0, False))
                    if (active and level == int(result.level)) or (not active and result.level is Level.NONE):
                        continue  # nothing changes: no write
                    if not self.writes:
                        continue
                    target = store.Subject(m.first_site_id, mine_id, m.region_code, subject=subject)
                    await apply_results(
                        conn, target, (result,), dwell_s=0.0, retroactive=False, label=f"mine={m.code} {subject}"
                    )
        await self._standby_notifier(j.state == "dead" and bool(self.writes))
        self.status = WatchdogStatus(
            analysis=j.state,
            heartbeat_age_s=j.heartbeat_age_s,
            lag_s=j.lag_s,
            backlog_s=j.backlog_s,
            max_lag_s=max_lag,
            analysis_workers=fresh.workers,
            mines_offline=sorted(self._offline),
            checked_at=fresh.now.isoformat(),
            standby_notifier=self._standby is not None,
        )
        return self.status

    async def _standby_notifier(self, needed: bool) -> None:
        """The notifier lives in the analysis process: while that is dead, notify from here."""
        if needed and self._standby is None:
            logger.warning("analysis is dead: starting a standby notifier in the API process")
            self._standby = Notifier(self._settings, self._pool, name=None)
            self._standby_task = asyncio.create_task(self._standby.run(), name="standby-notifier")
        elif not needed and self._standby is not None:
            logger.info("analysis is back: stopping the standby notifier")
            await self.stop_standby()

    async def stop_standby(self) -> None:
        if self._standby is not None and self._standby_task is not None:
            self._standby.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._standby_task, 30)
        self._standby = None
        self._standby_task = None

    async def run(self) -> None:
        """Check every SLOPEWATCH_WATCHDOG_POLL_S until cancelled."""
        last_offline = float("-inf")
        try:
            while True:
                try:
                    due = time.monotonic() - last_offline >= OFFLINE_EVERY_S
                    if await self.check(offline=due) is not None and due:
                        last_offline = time.monotonic()
                except _DB_ERRORS as exc:
                    logger.warning("watchdog check failed error=%r; retrying", exc)
                await asyncio.sleep(self._settings.watchdog_poll_s)
        finally:
            await self.stop_standby()
