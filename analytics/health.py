"""Sensor health rules: silence, a stuck reading, implausible jumps.

Monitoring that silently stops is itself a hazard (item (七)3), so every sensor kind
gets these three rules, each its own alert.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

import numpy as np

from analytics._arrays import DAY_S, HOUR_S, BoolArray, FloatArray
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


def silent(t_s: FloatArray, values: Mapping[str, FloatArray], *, interval_s: float, now_s: float) -> RuleResult:
    """``health.silent``: no reading for more than 3 intervals (blue), and for a day or more (yellow).

    Judged on the evaluation clock ``now_s``, which is also ``at_s``: silence has no
    measurement time of its own.
    """
    any_reading = np.zeros(t_s.size, dtype=np.bool_)
    for v in values.values():
        any_reading |= np.isfinite(v)
    idx = np.flatnonzero(any_reading)
    limit = SILENT_INTERVALS * interval_s
    if idx.size == 0:
        return RuleResult(
            "health.silent",
            Level.YELLOW,
            now_s,
            {"method": "time since newest reading", "last_reading_s": None, "limit_s": limit},
            "No reading at all in the evaluation window: the sensor is silent.",
            "评估窗口内没有任何读数：传感器无数据。",
        )
    last = float(t_s[idx[-1]])
    quiet_s = max(0.0, now_s - last)
    level = Level.NONE
    if quiet_s > limit:
        level = Level.YELLOW if quiet_s >= max(SILENT_YELLOW_S, limit) else Level.BLUE
    ev: dict[str, float | int | str | bool | list[float] | None] = {
        "method": "time since newest reading",
        "last_reading_s": last,
        "silent_s": quiet_s,
        "interval_s": interval_s,
        "limit_s": limit,
        "yellow_after_s": max(SILENT_YELLOW_S, limit),
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
    worst: tuple[str, int, float, float] | None = None
    at_s = float(t_s[-1]) if t_s.size else math.nan
    for ch, v in values.items():
        ok = np.isfinite(v)
        x = v[ok]
        if x.size < 2:
            continue
        t = t_s[ok]
        at_s = float(t[-1]) if math.isnan(at_s) else max(at_s, float(t[-1]))
        differs = np.flatnonzero(x != x[-1])
        start = int(differs[-1]) + 1 if differs.size else 0
        run = x.size - start
        span = float(t[-1] - t[start])
        if zero_is_normal and x[-1] == 0:
            continue
        if worst is None or run > worst[1]:
            worst = (ch, run, span, float(x[-1]))
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
    at_s = math.nan
    counts: dict[str, int] = {}
    newest: list[float] = []
    flagged: dict[str, tuple[FloatArray, BoolArray]] = {}
    # Channels read together share their times: their Hampel tests run as one stack.
    stacks: dict[bytes, list[str]] = {}
    masks: dict[str, BoolArray] = {}
    for ch, v in values.items():
        ok = np.isfinite(v)
        if not ok.any():
            continue
        masks[ch] = ok
        at_s = float(t_s[ok][-1]) if math.isnan(at_s) else max(at_s, float(t_s[ok][-1]))
        if rain:
            t = t_s[ok]
            x = v[ok]
            keep = max(0, min(int(np.searchsorted(t, t[-1] - SPIKE_SCALE_S)), t.size - 50))
            t = t[keep:]
            x = x[keep:]
            dt_h = np.diff(t, prepend=t[0] - interval_s) / HOUR_S
            flagged[ch] = (t, (x < 0) | (x > RAIN_MAX_MM_PER_H * np.maximum(dt_h, interval_s / HOUR_S)))
        else:
            stacks.setdefault(np.packbits(ok).tobytes(), []).append(ch)
    for chans in stacks.values():
        ok = masks[chans[0]]
        t = t_s[ok]
        # Only the last day counts; a week (at least 50 readings) is plenty for the noise scale.
        keep = max(0, min(int(np.searchsorted(t, t[-1] - SPIKE_SCALE_S)), t.size - 50))
        t = t[keep:]
        if t.size < 5:
            continue
        x = np.stack([values[ch][ok][keep:] for ch in chans])
        seg = segment_ids(t, max_gap_s=4.0 * interval_s)
        resid = interpolation_residuals_rows(t, x, seg)
        sigma = white_noise_sigma_rows(resid)
        steps = np.abs(np.diff(x, axis=1))
        resolution = np.where(steps > 0, steps, np.inf).min(axis=1)
        for i in range(len(chans)):
            # Quantised, mostly constant channels have σ ≈ 0; one resolution step is not a spike.
            res_i = float(resolution[i]) if math.isfinite(resolution[i]) else 0.0
            sigma[i] = max(float(sigma[i]) if math.isfinite(sigma[i]) else 0.0, res_i, 1e-9)
        flags = hampel_rows(t, x, seg, resid, sigma=sigma)
        for i, ch in enumerate(chans):
            flagged[ch] = (t, flags[i])
    for ch in values:
        if ch not in flagged:
            continue
        t, flag = flagged[ch]
        recent = t > t[-1] - SPIKE_WINDOW_S
        counts[ch] = int(np.count_nonzero(flag & recent))
        newest.extend(float(s) for s in t[flag & recent][-5:])
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
