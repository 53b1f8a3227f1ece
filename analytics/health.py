"""Sensor health rules: silence, a stuck reading, implausible jumps.

Monitoring that silently stops is itself a hazard (item (七)3), so every sensor kind
gets these three rules, each its own alert.

:func:`rules_many` judges all three for many sensors read on one schedule (the same
times) at once: the Hampel tests of every channel with the same missing readings run
as one stack, and the trailing runs of identical readings as one array operation. The
single-sensor functions are the same code on one sensor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Final, NamedTuple

import numpy as np

from analytics._arrays import DAY_S, HOUR_S, BoolArray, FloatArray, IntArray
from analytics._stacked import hampel_rows, interpolation_residuals_rows, white_noise_sigma_rows
from analytics.segments import segment_ids
from analytics.types import RuleResult
from core.model import Level

SILENT_INTERVALS: Final = 3.0
SILENT_YELLOW_S: Final = DAY_S
STUCK_MIN_READINGS: Final = 24
STUCK_MIN_S: Final = DAY_S
SPIKE_WINDOW_S: Final = DAY_S
SPIKE_MIN_COUNT: Final = 3
SPIKE_SCALE_S: Final = 7 * DAY_S
#: A tipping bucket cannot report more than this rate, mm/h (far above any record hourly rainfall).
RAIN_MAX_MM_PER_H: Final = 300.0


class _Channel(NamedTuple):
    """One channel of one sensor: its values, which are finite, and where the newest finite one is."""

    name: str
    v: FloatArray
    ok: BoolArray
    all_ok: bool
    n_ok: int
    last: int


def _channels(n: int, values: Mapping[str, FloatArray], everywhere: BoolArray | None = None) -> list[_Channel]:
    """everywhere: ``np.ones(n, bool)``, to share between the sensors of one schedule."""
    out = []
    every = np.ones(n, dtype=np.bool_) if everywhere is None else everywhere
    for ch, v in values.items():
        # a finite sum (the usual case) means every reading is finite; else (or on overflow) look
        if math.isfinite(np.add.reduce(v)):
            out.append(_Channel(ch, v, every, True, n, n - 1))
            continue
        ok = np.isfinite(v)
        if ok.all():
            out.append(_Channel(ch, v, ok, True, n, n - 1))
            continue
        idx = np.flatnonzero(ok)
        out.append(_Channel(ch, v, ok, False, int(idx.size), int(idx[-1]) if idx.size else -1))
    return out


def rules_many(
    t_s: FloatArray,
    values: Sequence[Mapping[str, FloatArray]],
    *,
    interval_s: float,
    now_s: Sequence[float],
    rain: Sequence[bool],
) -> list[list[RuleResult]]:
    """For each sensor ``i`` read at the times ``t_s`` (n,) every ``interval_s``: ``health.silent``
    and, when there are readings, ``health.stuck`` and ``health.spike`` — what :func:`silent`,
    :func:`stuck` (``zero_is_normal`` for a rain gauge) and :func:`spikes` return for
    ``values[i]`` (channel -> (n,)), ``now_s[i]`` and ``rain[i]``."""
    n = int(t_s.size)
    every = np.ones(n, dtype=np.bool_)
    chans = [_channels(n, v, every) for v in values]
    out = [[r] for r in _silent_many(t_s, chans, interval_s=interval_s, now_s=now_s)]
    if n:
        for res, r in zip(out, _stuck_many(t_s, chans, zero_is_normal=rain), strict=True):
            res.append(r)
        for res, r in zip(out, _spikes_many(t_s, chans, interval_s=interval_s, rain=rain), strict=True):
            res.append(r)
    return out


def silent(t_s: FloatArray, values: Mapping[str, FloatArray], *, interval_s: float, now_s: float) -> RuleResult:
    """``health.silent``: no reading for more than 3 intervals (blue), and for a day or more (yellow).

    Judged on the evaluation clock ``now_s``, which is also ``at_s``: silence has no
    measurement time of its own.
    """
    return _silent_many(t_s, [_channels(int(t_s.size), values)], interval_s=interval_s, now_s=[now_s])[0]


def _silent_many(
    t_s: FloatArray, chans: Sequence[Sequence[_Channel]], *, interval_s: float, now_s: Sequence[float]
) -> list[RuleResult]:
    limit = SILENT_INTERVALS * interval_s
    yellow_after = max(SILENT_YELLOW_S, limit)
    out = []
    for cs, now in zip(chans, now_s, strict=True):
        newest = max((c.last for c in cs), default=-1)
        out.append(_silent_result(float(t_s[newest]) if newest >= 0 else None, interval_s, limit, yellow_after, now))
    return out


def _silent_result(
    last: float | None, interval_s: float, limit: float, yellow_after: float, now_s: float
) -> RuleResult:
    if last is None:
        return RuleResult(
            "health.silent",
            Level.YELLOW,
            now_s,
            {"method": "time since newest reading", "last_reading_s": None, "limit_s": limit},
            "No reading at all in the evaluation window: the sensor is silent.",
            "评估窗口内没有任何读数：传感器无数据。",
        )
    quiet_s = max(0.0, now_s - last)
    level = Level.NONE
    if quiet_s > limit:
        level = Level.YELLOW if quiet_s >= yellow_after else Level.BLUE
    ev: dict[str, float | int | str | bool | list[float] | None] = {
        "method": "time since newest reading",
        "last_reading_s": last,
        "silent_s": quiet_s,
        "interval_s": interval_s,
        "limit_s": limit,
        "yellow_after_s": yellow_after,
    }
    if level is Level.NONE:
        en = f"Newest reading {quiet_s / 60:.0f} min ago, within {SILENT_INTERVALS:.0f} sampling intervals."
        zh = f"最新读数在 {quiet_s / 60:.0f} 分钟前，未超过 {SILENT_INTERVALS:.0f} 个采样间隔。"
    else:
        en = (
            f"No reading for {quiet_s / HOUR_S:.1f} h, more than {SILENT_INTERVALS:.0f} sampling intervals "
            f"({limit / 60:.0f} min): {level.label} for a silent sensor."
        )
        zh = f"已 {quiet_s / HOUR_S:.1f} 小时无读数，超过 {SILENT_INTERVALS:.0f} 个采样间隔，传感器中断，{level.label_zh}。"
    return RuleResult("health.silent", level, now_s, ev, en, zh)


def stuck(t_s: FloatArray, values: Mapping[str, FloatArray], *, zero_is_normal: bool = False) -> RuleResult:
    """``health.stuck`` (blue): the newest readings of a channel are all exactly equal,
    for at least 24 readings and a day. ``zero_is_normal``: a rain gauge reads 0 in dry weather."""
    return _stuck_many(t_s, [_channels(int(t_s.size), values)], zero_is_normal=[zero_is_normal])[0]


#: Trailing readings compared at once for a run of identical readings; longer runs are followed per channel.
_RUN_TAIL = 32


def _trailing_runs(t_s: FloatArray, rows: Sequence[FloatArray]) -> list[tuple[int, float, float]]:
    """``(run, span, value)`` of the trailing run of readings equal to the newest, for rows of
    finite values (n ≥ 2) at the times ``t_s`` (n,)."""
    n = int(t_s.size)
    tail = min(n, _RUN_TAIL)
    block = np.stack([v[n - tail :] for v in rows])
    differs = block != block[:, -1:]
    starts: IntArray = n - np.argmax(differs[:, ::-1], axis=1)
    for j in np.flatnonzero(~differs.any(axis=1)):
        row = rows[int(j)]
        d = np.flatnonzero(row != row[-1])
        starts[j] = int(d[-1]) + 1 if d.size else 0
    spans = t_s[-1] - t_s[starts]
    return list(zip((n - starts).tolist(), spans.tolist(), block[:, -1].tolist(), strict=True))


def _stuck_many(
    t_s: FloatArray, chans: Sequence[Sequence[_Channel]], *, zero_is_normal: Sequence[bool]
) -> list[RuleResult]:
    n = int(t_s.size)
    # (run, span, value) of every channel with 2 readings or more
    runs: dict[tuple[int, int], tuple[int, float, float]] = {}
    full = [(i, j) for i, cs in enumerate(chans) for j, c in enumerate(cs) if c.all_ok and n >= 2]
    if full:
        runs.update(zip(full, _trailing_runs(t_s, [chans[i][j].v for i, j in full]), strict=True))
    for i, cs in enumerate(chans):
        for j, c in enumerate(cs):
            if c.all_ok or c.n_ok < 2:
                continue
            x = c.v[c.ok]
            t = t_s[c.ok]
            differs = np.flatnonzero(x != x[-1])
            start = int(differs[-1]) + 1 if differs.size else 0
            runs[i, j] = (x.size - start, float(t[-1] - t[start]), float(x[-1]))
    out = []
    for i, cs in enumerate(chans):
        worst: tuple[str, int, float, float] | None = None
        at_s = float(t_s[-1]) if n else math.nan
        for j, c in enumerate(cs):
            found = runs.get((i, j))
            if found is None:
                continue
            t_last = float(t_s[c.last])
            at_s = t_last if math.isnan(at_s) else max(at_s, t_last)
            run, span, value = found
            if zero_is_normal[i] and value == 0:
                continue
            if worst is None or run > worst[1]:
                worst = (c.name, run, span, value)
        out.append(_stuck_result(worst, at_s))
    return out


def _stuck_result(worst: tuple[str, int, float, float] | None, at_s: float) -> RuleResult:
    ev: dict[str, float | int | str | bool | list[float] | None] = {
        "method": "length of the trailing run of identical readings",
        "min_readings": STUCK_MIN_READINGS,
        "min_s": STUCK_MIN_S,
    }
    if worst is None:
        return RuleResult(
            "health.stuck", Level.NONE, at_s, ev, "No channel repeats one value.", "各通道读数无长期恒定。"
        )
    ch, run, span, value = worst
    ev.update(channel=ch, run_readings=run, run_s=span, value=value)
    if run >= STUCK_MIN_READINGS and span >= STUCK_MIN_S:
        en = f"Channel {ch} has read exactly {value:g} for the last {run} readings ({span / HOUR_S:.0f} h): likely stuck."
        zh = f"通道 {ch} 最近 {run} 个读数({span / HOUR_S:.0f} 小时)恒为 {value:g}，疑似传感器卡滞。"
        return RuleResult("health.stuck", Level.BLUE, at_s, ev, en, zh)
    en = (
        f"Not stuck: the newest readings repeat one value at most {run} time(s) in a row (on {ch}); "
        f"a sensor is stuck after {STUCK_MIN_READINGS} identical readings spanning a day."
    )
    zh = f"读数未卡滞：最新读数连续相同最多 {run} 次(通道 {ch})；连续 {STUCK_MIN_READINGS} 个且跨 1 天的相同读数才判为卡滞。"
    return RuleResult("health.stuck", Level.NONE, at_s, ev, en, zh)


def spikes(t_s: FloatArray, values: Mapping[str, FloatArray], *, interval_s: float, rain: bool = False) -> RuleResult:
    """``health.spike`` (blue): 3 or more implausible jumps in the trailing day on any channel.

    A jump is a Hampel outlier (4 robust standard deviations from its detrended
    neighbours); for rain gauges, a negative reading or a rate above 300 mm/h. A single
    spike is reported in the evidence but raises nothing: the detectors drop it.
    """
    return _spikes_many(t_s, [_channels(int(t_s.size), values)], interval_s=interval_s, rain=[rain])[0]


def _spikes_many(
    t_s: FloatArray, chans: Sequence[Sequence[_Channel]], *, interval_s: float, rain: Sequence[bool]
) -> list[RuleResult]:
    # (sensor, channel) -> jumps in the trailing day, and the times of the newest five
    found: dict[tuple[int, int], tuple[int, list[float]]] = {}
    # Channels with the same missing readings share their times: their Hampel tests run as one stack.
    stacks: dict[bytes, list[tuple[int, int]]] = {}
    for i, cs in enumerate(chans):
        for j, c in enumerate(cs):
            if c.n_ok == 0:
                continue
            if rain[i]:
                t = t_s[c.ok]
                x = c.v[c.ok]
                keep = max(0, min(int(np.searchsorted(t, t[-1] - SPIKE_SCALE_S)), t.size - 50))
                t = t[keep:]
                x = x[keep:]
                dt_h = np.diff(t, prepend=t[0] - interval_s) / HOUR_S
                flag = (x < 0) | (x > RAIN_MAX_MM_PER_H * np.maximum(dt_h, interval_s / HOUR_S))
                found[i, j] = _recent_jumps(t, flag[None, :])[0]
            else:
                stacks.setdefault(b"" if c.all_ok else np.packbits(c.ok).tobytes(), []).append((i, j))
    for members in stacks.values():
        first = chans[members[0][0]][members[0][1]]
        ok = first.ok
        t = t_s if first.all_ok else t_s[ok]
        # Only the last day counts; a week (at least 50 readings) is plenty for the noise scale.
        keep = max(0, min(int(np.searchsorted(t, t[-1] - SPIKE_SCALE_S)), t.size - 50))
        t = t[keep:]
        if t.size < 5:
            continue
        if first.all_ok:
            x = np.stack([chans[i][j].v[keep:] for i, j in members])
        else:
            x = np.stack([chans[i][j].v[ok][keep:] for i, j in members])
        seg = segment_ids(t, max_gap_s=4.0 * interval_s)
        resid = interpolation_residuals_rows(t, x, seg)
        sigma = white_noise_sigma_rows(resid)
        steps = np.abs(np.diff(x, axis=1))
        resolution = np.where(steps > 0, steps, np.inf).min(axis=1)
        # Quantised, mostly constant channels have σ ≈ 0; one resolution step is not a spike.
        res = np.where(np.isfinite(resolution), resolution, 0.0)
        sigma = np.maximum(np.maximum(np.where(np.isfinite(sigma), sigma, 0.0), res), 1e-9)
        flags = hampel_rows(t, x, seg, resid, sigma=sigma)
        found.update(zip(members, _recent_jumps(t, flags), strict=True))
    out = []
    for i, cs in enumerate(chans):
        at_s = math.nan
        counts: dict[str, int] = {}
        newest: list[float] = []
        for j, c in enumerate(cs):
            if c.n_ok == 0:
                continue
            t_last = float(t_s[c.last])
            at_s = t_last if math.isnan(at_s) else max(at_s, t_last)
            jumps = found.get((i, j))
            if jumps is not None:
                counts[c.name] = jumps[0]
                newest.extend(jumps[1])
        out.append(_spikes_result(counts, newest, at_s, rain[i]))
    return out


def _recent_jumps(t: FloatArray, flags: BoolArray) -> list[tuple[int, list[float]]]:
    """For each row of ``flags`` (k, n) at the times ``t`` (n,): how many in the trailing
    day, and the times of the newest five of those."""
    hit = flags & (t > t[-1] - SPIKE_WINDOW_S)
    counts = np.count_nonzero(hit, axis=1).tolist()
    return [(c, t[hit[m]][-5:].tolist() if c else []) for m, c in enumerate(counts)]


def _spikes_result(counts: dict[str, int], newest: list[float], at_s: float, rain: bool) -> RuleResult:
    total = sum(counts.values())
    worst_ch = max(counts, key=lambda c: counts[c]) if counts else None
    worst = counts.get(worst_ch, 0) if worst_ch else 0
    ev: dict[str, float | int | str | bool | list[float] | None] = {
        "method": "rain: negative or > 300 mm/h" if rain else "Hampel identifier, 4 robust sigma, detrended",
        "window_s": SPIKE_WINDOW_S,
        "spikes_in_window": total,
        "worst_channel": worst_ch,
        "worst_channel_spikes": worst,
        "min_count": SPIKE_MIN_COUNT,
        "spike_t_s": sorted(newest)[-5:],
    }
    if worst >= SPIKE_MIN_COUNT:
        en = f"{worst} implausible jumps on {worst_ch} in the last 24 h: the readings are unreliable."
        zh = f"通道 {worst_ch} 最近 24 小时出现 {worst} 次异常跳变，读数可靠性存疑。"
        return RuleResult("health.spike", Level.BLUE, at_s, ev, en, zh)
    if total == 0:
        en = f"No implausible jump in the last 24 h ({SPIKE_MIN_COUNT} on one channel raise an alarm)."
        zh = f"最近 24 小时无异常跳变(单通道达到 {SPIKE_MIN_COUNT} 次才告警)。"
    else:
        en = (
            f"{total} implausible jump(s) in the last 24 h, left out of the analysis; "
            f"{SPIKE_MIN_COUNT} on one channel raise an alarm."
        )
        zh = f"最近 24 小时有 {total} 次异常跳变，已从分析中剔除；单通道达到 {SPIKE_MIN_COUNT} 次才告警。"
    return RuleResult("health.spike", Level.NONE, at_s, ev, en, zh)
