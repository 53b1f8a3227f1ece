"""The headline detector: is a displacement series accelerating (criterion (八)3)?

Pipeline for one displacement component (horizontal magnitude, vertical, crack
width, one inclinometer depth), all numpy:

1. split at gaps (:mod:`analytics.segments`), estimate the white noise from the
   sensor's own readings (:mod:`analytics.noise`), drop Hampel spikes
   (:mod:`analytics.despike`);
2. straight-line fits to consecutive 12-hour blocks (:mod:`analytics.smoothing`):
   independent block velocities, their errors scaled up for noise correlated over
   hours; the current velocity from the trailing day, with its standard error;
3. velocity trend: Mann–Kendall on the prewhitened block velocities of the last
   week, one-sided, with the Theil–Sen rate of change (:mod:`analytics.kendall`),
   averaged over two block phases half a block apart;
4. displacement curvature: steady creep then Voight's law fitted to binned
   displacement (:mod:`analytics.voight`), tested against steady creep; its onset
   is the deliberate start of the accelerating window and its failure time the
   forecast; the classic ``1/v`` line over the same window is reported too
   (:mod:`analytics.inverse_velocity`);
5. improved tangent angle of the current velocity's lower 95 % bound against v0
   (:mod:`analytics.tangent`).

Level: acceleration is significant when the two tests agree, one of them strongly.
Then blue while the speed is below a velocity floor or the movement is slowing down
now (a parabola over the last 48 h), else the tangent angle's level, raised by a
reliable forecast of failure within 7 days (orange) or 3 days (red) that a fit to
the data up to 12 h ago confirms. Red means evacuation, so every line of evidence
must agree: a confirmed forecast, acceleration sustained for ``min_accel_s``, a
velocity trend at p < ``red_mk_p``, and a current speed above
``red_floor_mm_per_day``. Rain- or drawdown-driven bursts speed up for
hours to a couple of days at modest speed, their forecasts run ahead of them, and
then they stop again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.special import ndtr

from analytics._arrays import DAY_S, HOUR_S, FloatArray, IntArray
from analytics._stacked import (
    _CHUNK_ROWS,
    Quadratics,
    block_fits_rows,
    hampel_rows,
    interpolation_residuals_rows,
    quadratic_row,
    trailing_lines,
    trailing_quadratics,
    velocity_noise_rows,
    white_noise_sigma_rows,
)
from analytics.inverse_velocity import InverseVelocityFit, fit_inverse_velocity
from analytics.kendall import MannKendall, mann_kendall_stats, prewhitened_rows, theil_sen_rows
from analytics.rate import RateBound, rate_bounds
from analytics.segments import local_segment_ids
from analytics.smoothing import Blocks, TrailingLine, TrailingQuadratic, bin_means
from analytics.tangent import level_of_angle, tangent_angle_deg
from analytics.voight import VoightFit, fit_voight
from core.model import Level

Evidence = dict[str, float | int | str | bool | list[float] | None]


@dataclass(frozen=True, slots=True)
class AccelerationParams:
    """Tuning of the acceleration detector; defaults suit hourly GNSS (noise 1–6 mm)."""

    block_s: float = 12 * HOUR_S
    test_window_s: float = 7 * DAY_S
    min_blocks: int = 6
    gap_intervals: float = 4.0
    spike_sigma: float = 5.0
    current_window_s: float = 24 * HOUR_S
    bin_s: float = 3 * HOUR_S
    coarse_bin_s: float = 12 * HOUR_S
    fine_span_s: float = 10 * DAY_S
    fit_window_s: float = 30 * DAY_S
    #: Significance: strong (p_mk_strong or p_fit_strong) in one test, weak support in the other.
    p_mk_strong: float = 0.01
    p_mk_weak: float = 0.2
    p_fit_strong: float = 1e-3
    p_fit_weak: float = 0.05
    #: Displacement curvature this significant stands without the velocity trend, once the
    #: slope moves at ``v_floor_mm_per_day`` or more (lower bound): near failure the last
    #: blocks are many times faster than the rest, the trend-free prewhitening of the
    #: week's block velocities takes the convex rise for autocorrelation, and Mann–Kendall's
    #: p wanders between 0.1 and 0.3 from hour to hour while the curve is unmistakable.
    p_fit_overwhelming: float = 1e-9
    #: No yellow or above below this current velocity (lower 95 % bound), mm/day.
    v_floor_mm_per_day: float = 1.0
    #: No forecast-based orange below this current velocity (lower 95 % bound), mm/day.
    orange_floor_mm_per_day: float = 2.0
    #: No red below this current velocity (lower 95 % bound), mm/day.
    red_floor_mm_per_day: float = 4.0
    #: v0 is never taken below this, so a stable slope's v0 ≈ 0 does not make any movement 90°.
    v0_floor_mm_per_day: float = 0.5
    min_accel_s: float = 2 * DAY_S
    red_ttf_s: float = 3 * DAY_S
    orange_ttf_s: float = 7 * DAY_S
    max_forecast_s: float = 30 * DAY_S
    #: A forecast gives red (orange) only if its upper 95 % bound is within this many
    #: times the red (orange) horizon.
    interval_factor: float = 2.0
    #: An orange or red forecast must be confirmed by a fit to the data up to this long ago.
    consistency_lag_s: float = 12 * HOUR_S
    #: ... to within this fraction of the current time to failure.
    consistency_rel: float = 0.7
    #: Red needs the velocity trend (Mann–Kendall) at least this significant.
    red_mk_p: float = 0.1
    #: Block phases the trend test averages its normal scores over (shifted by block_s / phases).
    mk_phases: int = 2
    #: Trailing window of the parabola that tells whether the movement is slowing down now.
    decel_window_s: float = 48 * HOUR_S
    #: The current velocity's error is calibrated on this many day-long blocks at least;
    #: with fewer (a young series) the correlated-noise error of :mod:`analytics.rate` is
    #: used when larger, so a few days of data cannot pass noise off as speed.
    min_day_blocks: int = 10
    #: The level is held for this long of measurement time, as :func:`analytics.alarm.decide`
    #: holds an alert (the worker's dwell): prefixes ending up to this long before the newest
    #: reading are judged too, every ``hold_step_s``. 0 turns the hold off.
    hold_s: float = 6 * HOUR_S
    hold_step_s: float = HOUR_S
    #: Time scale of these settings relative to the defaults' (12-hour blocks); see
    #: :meth:`scaled`. Multiplies the Voight fit's grids of onset ages and failure times.
    time_scale: float = 1.0
    #: The other time scales judged besides this one (:func:`time_scales`): a fast one for
    #: readings every few minutes, a slow one for records too coarse for this one.
    fast_scale: float = 1.0 / 8.0
    slow_scale: float = 8.0
    #: A time scale is used only when its blocks hold at least this many readings.
    min_block_readings: int = 6
    #: Voight exponents the forecast interval is widened over (the field's range; the
    #: point forecast and the levels use α = 2).
    alphas: tuple[float, ...] = (1.5, 2.0, 2.5)

    def scaled(self, f: float) -> AccelerationParams:
        """These settings at ``f`` times their time scale: every duration (blocks, windows,
        bins, horizons, lags) times ``f``; velocities, significance levels and counts stay.
        The alarm hold stays too: it is the worker's dwell, not a property of the movement."""
        return replace(
            self,
            block_s=self.block_s * f,
            test_window_s=self.test_window_s * f,
            current_window_s=self.current_window_s * f,
            bin_s=self.bin_s * f,
            coarse_bin_s=self.coarse_bin_s * f,
            fine_span_s=self.fine_span_s * f,
            fit_window_s=self.fit_window_s * f,
            min_accel_s=self.min_accel_s * f,
            red_ttf_s=self.red_ttf_s * f,
            orange_ttf_s=self.orange_ttf_s * f,
            max_forecast_s=self.max_forecast_s * f,
            consistency_lag_s=self.consistency_lag_s * f,
            decel_window_s=self.decel_window_s * f,
            time_scale=self.time_scale * f,
        )


DEFAULT_PARAMS = AccelerationParams()


def time_scales(t_s: FloatArray, params: AccelerationParams, *, judged: bool) -> list[AccelerationParams]:
    """The other time scales to judge a series at, besides ``params``' own.

    t_s: (n,) reading times. judged: whether ``params``' own scale could judge the series.
    The fast scale (blocks of 1.5 h, a test window of 21 h, a red horizon of 9 h) when the
    readings of the newest fast test window are dense enough for its blocks: crack meters,
    radar, fast sampling in an alarm state, where a failure develops over hours to days. The
    slow scale (blocks of 4 days, a test window of 8 weeks) only when the own scale cannot
    judge (daily GNSS, campaigns, manual readings): a slow scale on dense data would hold a
    burst for weeks.
    """
    out: list[AccelerationParams] = []
    if t_s.size < 3:
        return out
    fast = params.scaled(params.fast_scale)
    recent = t_s[t_s >= t_s[-1] - fast.test_window_s]
    if recent.size > 2 and float(np.median(np.diff(recent))) * params.min_block_readings <= fast.block_s:
        out.append(fast)
    if not judged:
        slow = params.scaled(params.slow_scale)
        if float(np.median(np.diff(t_s))) * params.min_block_readings <= slow.block_s * 1.5:
            out.append(slow)
    return out


@dataclass(frozen=True, slots=True)
class Acceleration:
    """What the detector found for one component. Velocities are oriented: positive is
    the direction the component moved over the test window (``direction`` = ±1 of the
    input). ``reason`` is one English phrase."""

    level: Level
    at_s: float
    reason: str
    window_from_s: float
    window_to_s: float
    n_readings: int
    reason_zh: str = ""
    n_spikes: int = 0
    sigma: float = math.nan
    noise_factor: float = math.nan
    direction: int = 1
    value_now: float = math.nan
    v_now_per_day: float = math.nan
    v_now_se_per_day: float = math.nan
    mk: MannKendall | None = None
    r1: float = math.nan
    accel_per_day2: float = math.nan
    v0_per_day: float = math.nan
    v0_used_per_day: float = math.nan
    alpha_deg: float = math.nan
    onset_s: float | None = None
    voight: VoightFit | None = None
    inverse: InverseVelocityFit | None = None
    forecast_reliable: bool = False
    earlier_forecast_s: float | None = None
    recent: TrailingQuadratic | None = None
    blocks: Blocks | None = None
    #: Trailing rates with a correlated-noise standard error, for rate thresholds.
    rate: RateBound | None = None
    #: When the level is held from a judgement of the readings up to a few hours ago: the
    #: newest reading of that judgement and its forecast failure time.
    held_from_s: float | None = None
    held_forecast_s: float | None = None
    #: The time scale the level was judged at (:attr:`AccelerationParams.time_scale`).
    scale: float = 1.0
    #: 95 % interval of the time to failure (s) widened for the unknown α (``(lower,
    #: upper)``, upper None when open), when a forecast is made.
    any_alpha: tuple[float, float | None] | None = None

    @property
    def forecast_failure_s(self) -> float | None:
        """Forecast failure time (epoch s) when the fit is reliable and the level is yellow or
        above; for a held level without a reliable fit now, the forecast it was held from."""
        if self.level < Level.YELLOW:
            return None
        if not self.forecast_reliable or self.voight is None:
            return self.held_forecast_s
        return self.at_s + self.voight.ttf_s

    @property
    def velocity_lower_per_day(self) -> float:
        return self.v_now_per_day - 1.96 * self.v_now_se_per_day

    def evidence(self, params: AccelerationParams = DEFAULT_PARAMS) -> Evidence:
        """JSON-safe numbers behind the level (non-finite floats become None)."""
        if self.scale != params.time_scale:
            params = params.scaled(self.scale / params.time_scale)
        ev: Evidence = {
            "method": "prewhitened Mann-Kendall on 12 h block velocities + two-phase Voight (inverse velocity) "
            "fit to displacement + improved tangent angle",
            "reason": self.reason,
            "window_from_s": _f(self.window_from_s),
            "window_to_s": _f(self.window_to_s),
            "n_readings": self.n_readings,
            "n_spikes_dropped": self.n_spikes,
            "noise_sigma_mm": _f(self.sigma),
            "velocity_noise_factor": _f(self.noise_factor),
            "direction": self.direction,
            "value_mm": _f(self.value_now),
            "velocity_mm_per_day": _f(self.v_now_per_day),
            "velocity_se_mm_per_day": _f(self.v_now_se_per_day),
            "velocity_lower95_mm_per_day": _f(self.velocity_lower_per_day),
            "velocity_window_h": params.current_window_s / HOUR_S,
            "v0_mm_per_day": _f(self.v0_per_day),
            "v0_used_mm_per_day": _f(self.v0_used_per_day),
            "tangent_angle_deg": _f(self.alpha_deg),
            "acceleration_mm_per_day2": _f(self.accel_per_day2),
            "lag1_autocorrelation": _f(self.r1),
            "onset_s": _f(self.onset_s),
            "forecast_reliable": self.forecast_reliable,
            "earlier_forecast_s": _f(self.earlier_forecast_s),
            "held_from_s": _f(self.held_from_s),
            "time_scale_block_h": params.block_s / HOUR_S,
        }
        if self.any_alpha is not None:
            ev["ttf_lower_any_alpha_h"] = _f(self.any_alpha[0] / HOUR_S)
            ev["ttf_upper_any_alpha_h"] = None if self.any_alpha[1] is None else _f(self.any_alpha[1] / HOUR_S)
        if self.recent is not None:
            ev.update(
                recent_accel_mm_per_day2=_f(self.recent.accel_per_day2),
                recent_accel_se_mm_per_day2=_f(self.recent.accel_se_per_day2),
                recent_window_h=params.decel_window_s / HOUR_S,
            )
        if self.mk is not None:
            ev.update(mk_s=self.mk.s, mk_n=self.mk.n, mk_z=_f(self.mk.z), mk_p=_f(self.mk.p_increasing))
        if self.voight is not None:
            v = self.voight
            ev.update(
                voight_p=_f(v.p_accel),
                voight_improvement=_f(v.improvement),
                voight_ttf_h=_f(v.ttf_s / HOUR_S),
                voight_ttf_lower_h=_f(v.lower_ttf_s / HOUR_S),
                voight_ttf_upper_h=None if v.upper_ttf_s is None else _f(v.upper_ttf_s / HOUR_S),
                voight_onset_age_h=_f(v.onset_age_s / HOUR_S),
                voight_b_mm=_f(v.b_mm),
                voight_n_eff=_f(v.n_eff),
                inverse_velocity_a_day_per_mm=_f(v.a_day_per_mm),
                inverse_velocity_b_per_mm=_f(v.b_per_mm),
            )
        if self.inverse is not None:
            f = self.inverse
            ev.update(
                inverse_velocity_line_forecast_s=_f(f.forecast_s),
                inverse_velocity_line_r2=_f(f.r2),
                inverse_velocity_line_n=f.n,
                inverse_velocity_line_reason=f.reason,
            )
        if self.blocks is not None and len(self.blocks):
            b = self.blocks
            recent = b.t_mid_s >= self.window_to_s - params.test_window_s
            ev["block_h"] = params.block_s / HOUR_S
            ev["block_t_s"] = np.round(b.t_mid_s[recent], 1).tolist()
            ev["block_velocity_mm_per_day"] = np.round(b.velocity_per_day[recent] * self.direction, 4).tolist()
        return ev


def _f(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def assess_acceleration(
    t_s: FloatArray,
    disp: FloatArray,
    *,
    interval_s: float,
    params: AccelerationParams = DEFAULT_PARAMS,
    with_rate: bool = True,
) -> Acceleration:
    """Judge whether ``disp`` is accelerating.

    t_s: (n,) strictly increasing measurement times, epoch s. disp: (n,) displacement
    in mm (NaN where missing), any constant offset. interval_s: the sensor's nominal
    sampling interval, s, which sets what counts as a gap (``gap_intervals`` of them).
    with_rate: compute :attr:`Acceleration.rate` (trailing rates with the correlated-noise
    error, for rate thresholds); it is computed anyway for a young series.
    """
    return assess_acceleration_many(t_s, disp[None, :], interval_s=interval_s, params=params, with_rate=[with_rate])[0]


def assess_acceleration_many(
    t_s: FloatArray,
    disp: FloatArray,
    *,
    interval_s: float,
    params: AccelerationParams = DEFAULT_PARAMS,
    with_rate: Sequence[bool] | None = None,
    judged_until_s: float | None = None,
) -> list[Acceleration]:
    """:func:`assess_acceleration` of every row of ``disp`` (k, n), all on the times ``t_s`` (n,).

    The same result for each row as one call per row, at a fraction of the cost: rows
    with the same missing readings (and, after despiking, the same readings left) go
    through the array stages together (:mod:`analytics._stacked`); the judgement
    itself, and the displacement fit where it is needed, run per row.
    with_rate: (k,) per row, default all True.

    The level is held as the alarm's dwell holds it (:attr:`AccelerationParams.hold_s`):
    for a row that moves or is at blue or above, the prefixes of the window ending
    ``hold_step_s``, ``2·hold_step_s`` … before the newest reading are judged too, and the
    highest level counts (:func:`_held`). So a level judged from scratch — after a restart,
    a backlog, a replay — is the level an hour-by-hour run holds at that time.
    judged_until_s: the newest reading of the previous evaluation; only prefixes ending after
    it are judged (their levels went through the alarm's dwell already).
    """
    rates = [True] * disp.shape[0] if with_rate is None else list(with_rate)
    now = _assess_scales(t_s, disp, interval_s=interval_s, params=params, with_rate=rates)
    if params.hold_s <= 0 or t_s.size == 0:
        return now
    # Who can have been higher a few hours ago: a row at blue or above, one that measurably
    # moves (velocity or a rate bound above zero). A quiet row is judged once.
    hold = [
        i
        for i, a in enumerate(now)
        if a.level >= Level.BLUE or a.velocity_lower_per_day > 0 or (a.rate is not None and a.rate.judged_per_day > 0)
    ]
    if not hold or (judged_until_s is not None and judged_until_s >= t_s[-1] - params.hold_step_s):
        return now
    t_end = float(t_s[-1])
    nested = replace(params, hold_s=0.0)
    last_hi = t_s.size
    for j in range(1, int(params.hold_s / params.hold_step_s + 1e-9) + 1):
        t_cut = t_end - j * params.hold_step_s
        if judged_until_s is not None and t_cut <= judged_until_s:
            break
        hi = int(np.searchsorted(t_s, t_cut, side="right"))
        if hi < 3:
            break
        if hi == last_hi:
            continue  # no reading in between (coarse sampling): the same prefix
        last_hi = hi
        earlier = _assess_scales(
            t_s[:hi], disp[hold, :hi], interval_s=interval_s, params=nested, with_rate=[rates[i] for i in hold]
        )
        for i, e in zip(hold, earlier, strict=True):
            now[i] = _held(now[i], e)
    return now


def _assess_scales(
    t_s: FloatArray,
    disp: FloatArray,
    *,
    interval_s: float,
    params: AccelerationParams,
    with_rate: list[bool],
) -> list[Acceleration]:
    """:func:`_assess_once` at ``params``' own time scale and at the others that apply
    (:func:`time_scales`); per row the highest level counts (the own scale on a tie), and
    the rate bound stays the own scale's (rate thresholds are judged on fixed windows)."""
    now = _assess_once(t_s, disp, interval_s=interval_s, params=params, with_rate=with_rate)
    rows_all = list(range(len(now)))
    unjudged = [i for i, a in enumerate(now) if a.mk is None]
    for other in time_scales(t_s, params, judged=False):
        rows = rows_all if other.time_scale < params.time_scale else unjudged
        if not rows:
            continue
        found = _assess_once(t_s, disp[rows], interval_s=interval_s, params=other, with_rate=[False] * len(rows))
        for i, a in zip(rows, found, strict=True):
            now[i] = _at_scale(now[i], a, other)
    return now


def _at_scale(own: Acceleration, other: Acceleration, p: AccelerationParams) -> Acceleration:
    """``other`` (judged at the time scale of ``p``) where it is higher than ``own`` or
    ``own`` could not judge; else ``own``."""
    if other.level > own.level or (own.mk is None and other.mk is not None):
        hours = p.block_s / HOUR_S
        return _replace(
            other,
            reason=f"at the {hours:.3g}-hour time scale: {other.reason}",
            reason_zh=f"按 {hours:.3g} 小时时间尺度：{other.reason_zh}",
            rate=own.rate,
            scale=p.time_scale,
        )
    return own


def _held(now: Acceleration, earlier: Acceleration) -> Acceleration:
    """``now`` with the level (and the rate bound) of ``earlier``, a judgement of the same
    series up to a few hours ago, where that is higher."""
    out = now
    if earlier.level > now.level:
        ago = (now.at_s - earlier.at_s) / HOUR_S
        out = _replace(
            now,
            level=earlier.level,
            reason=f"{now.reason}; held at {earlier.level.label} for the alarm's dwell: "
            f"the readings up to {ago:.0f} h ago gave {earlier.level.label} ({earlier.reason})",
            reason_zh=f"{now.reason_zh}；按报警保持时间维持{earlier.level.label_zh}：截至 {ago:.0f} 小时前的数据判为"
            f"{earlier.level.label_zh}({earlier.reason_zh})",
            held_from_s=earlier.at_s,
            held_forecast_s=earlier.forecast_failure_s,
        )
    rn, re_ = now.rate, earlier.rate
    if rn is not None and re_ is not None and math.isfinite(re_.judged_per_day):
        # The rate shown is the one judged highest; the bound judged against red alone is
        # the highest of the two, so the held rate level is at least each one's level.
        best = re_ if not math.isfinite(rn.judged_per_day) or re_.judged_per_day > rn.judged_per_day else rn
        red = max((r.judged_red_per_day for r in (rn, re_) if math.isfinite(r.judged_red_per_day)), default=math.nan)
        out = _replace(out, rate=replace(best, judged_red_per_day=red))
    return out


def _assess_once(
    t_s: FloatArray,
    disp: FloatArray,
    *,
    interval_s: float,
    params: AccelerationParams,
    with_rate: list[bool],
) -> list[Acceleration]:
    """:func:`assess_acceleration_many` at the newest reading only, without the hold."""
    p = params
    k = disp.shape[0]
    rates = with_rate
    out: list[Acceleration | None] = [None] * k
    ok = np.isfinite(disp)
    groups: dict[bytes, list[int]] = {}
    # a finite row sum (the usual case) means every reading of the row is there
    whole = np.isfinite(disp.sum(axis=1)).tolist()
    for i in range(k):
        groups.setdefault(b"" if whole[i] else np.packbits(ok[i]).tobytes(), []).append(i)
    for rows in groups.values():
        mask = ok[rows[0]]
        t = t_s[mask]
        if rows[-1] - rows[0] + 1 == len(rows) and mask.all() and disp.flags.c_contiguous:
            x = disp[rows[0] : rows[-1] + 1]  # no copy: all rows, all readings (the usual case)
        else:
            x = np.ascontiguousarray(disp[rows][:, mask])  # C order: row sums as for one series
        n0 = int(t.size)
        t_last = float(t[-1]) if n0 else (float(t_s[-1]) if t_s.size else math.nan)
        t_first = float(t[0]) if n0 else math.nan
        if n0 < 3:
            for i in rows:
                out[i] = Acceleration(
                    Level.NONE, t_last, f"only {n0} readings", t_first, t_last, n0, f"仅有 {n0} 个读数"
                )
            continue
        seg = local_segment_ids(t, interval_s=interval_s, gap_intervals=p.gap_intervals)
        # Noise and spikes a few rows at a time: k × n temporaries cost more in page
        # faults than in arithmetic.
        sigma = np.empty(len(rows))
        spikes = np.empty((len(rows), n0), dtype=np.bool_)
        for lo in range(0, len(rows), _CHUNK_ROWS):
            part = x[lo : lo + _CHUNK_ROWS]
            resid = interpolation_residuals_rows(t, part, seg)
            s = white_noise_sigma_rows(resid)
            for j in range(s.size):
                if not math.isfinite(s[j]) or s[j] <= 0:
                    finite = resid[j][np.isfinite(resid[j])]
                    s[j] = max(float(np.max(np.abs(finite))) if finite.size else 0.0, 1e-6)
            sigma[lo : lo + s.size] = s
            spikes[lo : lo + s.size] = hampel_rows(t, part, seg, resid, sigma=s, n_sigma=p.spike_sigma)
        n_spikes = np.count_nonzero(spikes, axis=1).tolist()
        row_rates = [rates[i] for i in rows]
        # The rows without spikes are judged as one stack (the array stages of the others
        # run along, which is cheaper than copying the rest); each row with spikes on its own.
        clean = [j for j in range(len(rows)) if n_spikes[j] == 0]
        stacks: list[tuple[list[int], list[int] | None, FloatArray, FloatArray, IntArray]] = []
        if clean:
            stacks.append((list(range(len(rows))), clean if len(clean) < len(rows) else None, t, x, seg))
        for j in range(len(rows)):
            if n_spikes[j]:
                keep = ~spikes[j]
                stacks.append(([j], None, t[keep], x[j : j + 1, keep], seg[keep]))
        for js, judged, tt, xx, ss in stacks:
            found = _assess_stack(
                tt,
                xx,
                ss,
                sigma[js],
                [n_spikes[j] for j in js],
                t_first,
                t_last,
                [row_rates[j] for j in js],
                p,
                judged,
            )
            for j, a in zip(js if judged is None else judged, found, strict=True):
                out[rows[j]] = a
    return [a for a in out if a is not None]


def _assess_stack(
    t: FloatArray,
    xs: FloatArray,
    seg: IntArray,
    sigmas: FloatArray,
    n_spikes: list[int],
    t_first: float,
    t_last: float,
    with_rate: list[bool],
    p: AccelerationParams,
    judged: list[int] | None = None,
) -> list[Acceleration]:
    """The array stages for rows ``xs`` (k, n) of despiked readings on the times ``t``, then
    the judgement (:func:`_judge`) of each row, or of the rows ``judged`` only (the others'
    readings have spikes: they are judged elsewhere)."""
    blocks_k = block_fits_rows(t, xs, seg, block_s=p.block_s, sigma=sigmas)
    factors = velocity_noise_rows(blocks_k.velocity_per_day, blocks_k.velocity_se_per_day)
    # The current velocity's error is calibrated on blocks of its own length: noise
    # correlated over hours inflates a day's velocity by a different factor than 12 h.
    day_k = block_fits_rows(t, xs, seg, block_s=p.current_window_s, sigma=sigmas)
    factors_now = velocity_noise_rows(day_k.velocity_per_day, day_k.velocity_se_per_day)
    curs = trailing_lines(t, xs, seg, window_s=p.current_window_s, sigma=sigmas)
    k_rows = xs.shape[0]
    judge = range(k_rows) if judged is None else judged
    # The correlated-noise rates cost about as much as the rest of a quiet evaluation:
    # only when a rate threshold needs them, or the velocity error of a young series.
    young = len(day_k.t_mid_s) < p.min_day_blocks
    need = [i for i in judge if with_rate[i] or young]
    rates: list[RateBound | None] = [None] * k_rows
    for lo in range(0, len(need), _CHUNK_ROWS):
        part = need[lo : lo + _CHUNK_ROWS]
        found = rate_bounds(t, xs[part], seg, sigma=sigmas[part], noise_block_s=p.current_window_s)
        for i, rb in zip(part, found, strict=True):
            rates[i] = rb
    recent = blocks_k.t_mid_s >= t_last - p.test_window_s
    n_recent = int(np.count_nonzero(recent))
    trends: list[tuple[int, MannKendall, float, float] | None] = [None] * k_rows
    quads: Quadratics = 0
    if n_recent >= p.min_blocks:
        quads = trailing_quadratics(t, xs, seg, window_s=p.decel_window_s)
        v_recent = np.ascontiguousarray(blocks_k.velocity_per_day[:, recent])
        # Orientation: judge acceleration in the direction the component is moving.
        direction = np.where(np.sum(v_recent, axis=1) >= 0, 1, -1)
        # Which readings share a block changes the block velocities a lot when they are
        # noisy; the trend test averages ``mk_phases`` block phases (default two, half a block
        # apart). The mean of correlated unit normal scores has variance ≤ 1: the p-value
        # stays conservative.
        s1, var1, z1, tau1, n1, r1, accel1 = _trend(
            (blocks_k.t_mid_s[recent] - t_last) / DAY_S, v_recent * direction[:, None]
        )
        zs = [z1]
        accels = [accel1]
        for k in range(1, p.mk_phases):
            shifted = block_fits_rows(
                t, xs, seg, block_s=p.block_s, sigma=sigmas, end_s=t_last - k * p.block_s / p.mk_phases
            )
            recent_k = shifted.t_mid_s >= t_last - p.test_window_s
            _, _, z_k, _, _, _, accel_k = _trend(
                (shifted.t_mid_s[recent_k] - t_last) / DAY_S, shifted.velocity_per_day[:, recent_k] * direction[:, None]
            )
            zs.append(z_k)
            accels.append(accel_k)
        z = np.mean(np.stack(zs, axis=1), axis=1)
        a_k = np.stack(accels, axis=1)
        counted = np.isfinite(a_k)
        counted[:, 0] = True
        accel = np.mean(a_k, axis=1)
        for j in np.flatnonzero(~counted.all(axis=1)):
            accel[j] = np.mean(a_k[j][counted[j]])
        fields = (s1.astype(np.int64), var1, z, ndtr(-z), tau1, n1.astype(np.int64))
        for i, (si, vi, zi, pi, ti, ni) in enumerate(zip(*(f.tolist() for f in fields), strict=True)):
            trends[i] = (int(direction[i]), MannKendall(si, vi, zi, pi, ti, ni), float(r1[i]), float(accel[i]))
    out = []
    n_day_blocks = len(day_k.t_mid_s)
    se_blocks = blocks_k.velocity_se_per_day * factors[:, None]
    sigma_l, factor_l, factor_now_l = sigmas.tolist(), factors.tolist(), factors_now.tolist()
    for i in judge:
        sigma, factor, factor_now = sigma_l[i], factor_l[i], factor_now_l[i]
        out.append(
            _judge(
                t,
                xs[i],
                seg,
                sigma,
                n_spikes[i],
                t_first,
                t_last,
                blocks_k.row(i),
                factor,
                se_blocks[i],
                n_day_blocks,
                factor_now,
                curs[i],
                rates[i],
                n_recent,
                trends[i],
                quads,
                i,
                p,
            )
        )
    return out


def _judge(
    t: FloatArray,
    x: FloatArray,
    seg: IntArray,
    sigma: float,
    n_spikes: int,
    t_first: float,
    t_last: float,
    blocks: Blocks,
    factor: float,
    se_blocks: FloatArray,
    n_day_blocks: int,
    factor_now: float,
    cur: TrailingLine,
    rate: RateBound | None,
    n_recent: int,
    trend: tuple[int, MannKendall, float, float] | None,
    quads: Quadratics,
    row: int,
    p: AccelerationParams,
) -> Acceleration:
    """The level of one despiked series ``t``, ``x``, ``seg`` (n,) from its array stages:
    ``rate`` (None unless needed), the number of blocks in the test window and the trend
    ``(direction, mk, r1, accel)`` (None with too few of them) come from :func:`_assess_stack`."""
    value_now = cur.value
    v_now = cur.velocity_per_day
    se_now = cur.velocity_se_per_day * factor_now
    if not math.isfinite(v_now) and len(blocks):
        # the newest segment is too short for a trailing fit: fall back on the newest block
        v_now, se_now = float(blocks.velocity_per_day[-1]), float(se_blocks[-1])
    young = n_day_blocks < p.min_day_blocks
    if young and rate is not None and math.isfinite(rate.sigma_eq) and math.isfinite(se_now):
        se_now = max(se_now, cur.velocity_se_per_day * rate.sigma_eq / sigma)

    base = Acceleration(
        Level.NONE,
        t_last,
        "",
        t_first,
        t_last,
        int(t.size),
        n_spikes=n_spikes,
        sigma=sigma,
        noise_factor=factor,
        value_now=value_now,
        v_now_per_day=v_now,
        v_now_se_per_day=se_now,
        blocks=blocks,
        rate=rate,
    )
    if n_recent < p.min_blocks or trend is None:
        hours = p.block_s / HOUR_S
        return _replace(
            base,
            reason=f"only {n_recent} usable {hours:.0f}-hour blocks in the last week",
            reason_zh=f"近一周仅有 {n_recent} 个可用的 {hours:.0f} 小时数据段",
        )

    direction, mk, r1, accel = trend
    v_all = blocks.velocity_per_day * direction
    v_now *= direction
    v_low = v_now - 1.96 * se_now
    quad = quadratic_row(quads, row, sigma * factor_now, direction)
    decelerating = quad.accel_per_day2 + 1.96 * quad.accel_se_per_day2 < 0

    # The displacement fit is the costly step; it can only matter when the velocity
    # trend gives at least weak support, so a quiet sensor skips it.
    vfit: VoightFit | None = None
    binned: tuple[FloatArray, FloatArray, FloatArray] | None = None
    moving = v_low >= p.v_floor_mm_per_day
    if (mk.p_increasing < p.p_mk_weak or moving) and accel > 0:
        # Only the last 30 days: the oldest onset considered is 25 days back.
        lo = int(np.searchsorted(t, t_last - p.fit_window_s))
        tb, xb, cb = bin_means(
            t[lo:], x[lo:], seg[lo:], bin_s=p.bin_s, coarse_bin_s=p.coarse_bin_s, fine_span_s=p.fine_span_s
        )
        vfit = fit_voight(tb, xb * direction, cb, t_ref_s=t_last, time_scale=p.time_scale)
        binned = (tb, xb * direction, cb)
    p_fit = vfit.p_accel if vfit is not None else 1.0

    if vfit is not None and p_fit < p.p_fit_weak:
        onset_s = t_last - vfit.onset_age_s
        v0 = vfit.v0_mm_per_day
    else:
        onset_i = _onset_index(v_all)
        onset_s = float(blocks.t_first_s[onset_i])
        before = slice(0, onset_i) if onset_i >= 3 else slice(0, max(3, v_all.size // 3))
        w0 = 1.0 / se_blocks[before] ** 2
        v0 = float(np.dot(w0, v_all[before]) / np.sum(w0))
    v0_used = max(v0, p.v0_floor_mm_per_day)
    alpha = tangent_angle_deg(v_low, v0_used)
    after = blocks.t_last_s >= onset_s
    inverse = fit_inverse_velocity(blocks.t_mid_s[after], v_all[after], se_blocks[after], t_ref_s=t_last)
    duration = t_last - onset_s

    overwhelming = moving and p_fit < p.p_fit_overwhelming
    strong = (
        (mk.p_increasing < p.p_mk_strong and p_fit < p.p_fit_weak)
        or (p_fit < p.p_fit_strong and mk.p_increasing < p.p_mk_weak)
        or overwhelming
    )
    significant = strong and accel > 0
    reliable = (
        significant
        and vfit is not None
        and p_fit < p.p_fit_strong
        and vfit.upper_ttf_s is not None
        and vfit.ttf_s <= p.max_forecast_s
        # a curve fitted to a day or so of speed-up is any burst's rising limb
        and vfit.onset_age_s >= p.min_accel_s
    )
    level = Level.NONE
    earlier: float | None = None
    confirmed = False
    unconfirmed = unconfirmed_zh = ""
    if not significant:
        reason = (
            f"no significant acceleration (velocity trend p = {mk.p_increasing:.3f}, "
            f"displacement curvature p = {p_fit:.2g})"
        )
        reason_zh = f"无显著加速(速度趋势 p = {mk.p_increasing:.3f}，位移曲率 p = {p_fit:.2g})"
        if mk.p_increasing < p.p_mk_strong and accel > 0 and moving:
            # (八)3 calls an accelerating trend itself a hazard: a strong velocity trend on a
            # slope that moves is flagged even when the curve is not Voight's (a velocity
            # rising linearly, as on a reservoir landslide during drawdown). Blue only: the
            # levels above need the displacement curve to agree.
            level = Level.BLUE
            reason = (
                f"the velocity rises (trend p = {mk.p_increasing:.3f}, {accel:.2f} mm/day²) on a slope moving at "
                f"{v_low:.2f} mm/day or more, though the displacement curve is not that of a failure "
                f"(curvature p = {p_fit:.2g}): an accelerating trend"
            )
            reason_zh = (
                f"速度上升(趋势 p = {mk.p_increasing:.3f}，{accel:.2f} mm/d²)，速率不低于 {v_low:.2f} mm/d，"
                f"位移曲线不符合失稳形态(曲率 p = {p_fit:.2g})：有加速趋势"
            )
    elif decelerating:
        level = Level.BLUE
        reason = (
            f"acceleration over the week, but the movement is now slowing down "
            f"({quad.accel_per_day2:.2f} ± {quad.accel_se_per_day2:.2f} mm/day² over the last "
            f"{p.decel_window_s / HOUR_S:.0f} h): a burst that stops"
        )
        reason_zh = f"近一周有加速，但最近 {p.decel_window_s / HOUR_S:.0f} 小时已在减速，属阶跃式变形"
    elif v_low < p.v_floor_mm_per_day:
        level = Level.BLUE
        reason = (
            f"significant acceleration, but the velocity's lower 95% bound ({v_low:.2f} mm/day) "
            f"is below the {p.v_floor_mm_per_day:g} mm/day floor"
        )
        reason_zh = f"加速显著，但速率95%置信下限({v_low:.2f} mm/d)低于 {p.v_floor_mm_per_day:g} mm/d 的速率下限"
    else:
        level = max(level_of_angle(alpha), Level.BLUE)
        reason = (
            f"significant acceleration, improved tangent angle {alpha:.1f}° "
            f"(velocity lower 95% bound {v_low:.2f} mm/day against steady creep {v0_used:.2f} mm/day)"
        )
        reason_zh = (
            f"加速显著，改进切线角 {alpha:.1f}°(速率95%置信下限 {v_low:.2f} mm/d，等速阶段速率 {v0_used:.2f} mm/d)"
        )
        if reliable and vfit is not None and v_low >= p.orange_floor_mm_per_day:
            ttf = vfit.ttf_s
            upper = vfit.upper_ttf_s if vfit.upper_ttf_s is not None else math.inf
            # A forecast raises the level only when its 95 % interval is tight enough to
            # tell the horizons apart: an early fit with a wide interval does not.
            by_ttf = Level.YELLOW
            if ttf <= p.red_ttf_s and upper <= p.interval_factor * p.red_ttf_s:
                by_ttf = Level.RED
            elif ttf <= p.orange_ttf_s and upper <= p.interval_factor * p.orange_ttf_s:
                by_ttf = Level.ORANGE
            if max(by_ttf, level) >= Level.ORANGE:
                # A slope heading for failure keeps pointing at the same time; a burst's
                # rising limb points a few hours ahead of every evaluation. Refit without
                # the newest readings and ask for the same failure time.
                earlier_at = _earlier_forecast(t, x * direction, seg, t_last - p.consistency_lag_s, p)
                # Judged on the longest of the two horizons and the lag: the earlier forecast had
                # that much longer to run, and near failure the current one shrinks to nothing (an
                # hour before failure no earlier fit could agree to within 70 % of an hour). A
                # burst's forecast runs ahead by the lag itself, more than 70 % of it.
                confirmed = earlier_at is not None and abs(earlier_at[0] - (t_last + ttf)) <= p.consistency_rel * max(
                    ttf, earlier_at[0] - earlier_at[1], p.consistency_lag_s
                )
                earlier = None if earlier_at is None else earlier_at[0]
                if not confirmed:
                    by_ttf = Level.YELLOW
                    lag_h = p.consistency_lag_s / HOUR_S
                    unconfirmed = (
                        f"; the forecast of failure in {ttf / HOUR_S:.0f} h is not confirmed by the data "
                        f"up to {lag_h:.0f} h ago"
                    )
                    unconfirmed_zh = f"；{ttf / HOUR_S:.0f} 小时后失稳的预测未被 {lag_h:.0f} 小时前的数据证实"
            if by_ttf > level:
                level = by_ttf
                horizon = p.red_ttf_s if by_ttf is Level.RED else p.orange_ttf_s
                within, within_zh = (
                    (f"{horizon / DAY_S:.0f} days", f"{horizon / DAY_S:.0f} 天")
                    if horizon >= 2 * DAY_S
                    else (f"{horizon / HOUR_S:.0f} h", f"{horizon / HOUR_S:.0f} 小时")
                )
                reason = (
                    f"significant acceleration, and the inverse-velocity forecast puts failure within {within} "
                    f"({ttf / HOUR_S:.0f} h)"
                )
                reason_zh = f"加速显著，反速度法预测 {within_zh}内失稳(约 {ttf / HOUR_S:.0f} 小时)"
            reason += unconfirmed
            reason_zh += unconfirmed_zh
        if level is Level.RED:
            # Red means evacuate: every line of evidence has to agree.
            why: list[tuple[str, str]] = []
            if not (reliable and confirmed):
                why.append(("no reliable, confirmed failure forecast", "无可靠且经证实的失稳预测"))
            if duration < p.min_accel_s:
                why.append(
                    (f"accelerating for only {duration / HOUR_S:.0f} h", f"加速仅持续 {duration / HOUR_S:.0f} 小时")
                )
            if mk.p_increasing >= p.red_mk_p and not overwhelming:
                why.append(
                    (
                        f"velocity trend not significant at {p.red_mk_p:g} (p = {mk.p_increasing:.3f})",
                        f"速度趋势检验未达 {p.red_mk_p:g} 显著水平",
                    )
                )
            if v_low < p.red_floor_mm_per_day:
                why.append(
                    (
                        f"velocity below the {p.red_floor_mm_per_day:g} mm/day red floor",
                        f"速率低于红色速率下限 {p.red_floor_mm_per_day:g} mm/d",
                    )
                )
            if why:
                level = Level.ORANGE
                reason += "; orange, not red: " + ", ".join(w for w, _ in why)
                reason_zh += "；未达红色：" + "，".join(z for _, z in why)
    return _replace(
        base,
        level=level,
        reason=reason,
        reason_zh=reason_zh,
        direction=direction,
        v_now_per_day=v_now,
        mk=mk,
        r1=r1,
        accel_per_day2=accel,
        v0_per_day=v0,
        v0_used_per_day=v0_used,
        alpha_deg=alpha,
        onset_s=onset_s,
        voight=vfit,
        inverse=inverse,
        forecast_reliable=reliable,
        earlier_forecast_s=earlier,
        recent=quad,
        any_alpha=_any_alpha_interval(vfit, binned, t_last, p) if reliable and level >= Level.YELLOW else None,
    )


def _any_alpha_interval(
    vfit: VoightFit | None,
    binned: tuple[FloatArray, FloatArray, FloatArray] | None,
    t_last: float,
    p: AccelerationParams,
) -> tuple[float, float | None] | None:
    """The 95 % interval of the time to failure (s) widened for the unknown α: the union of
    the profile intervals of the fits at each α of ``p.alphas``. None without a fit; upper
    None when open. Not only the α values the data fail to reject: a true α between two of
    them leaves each fit biased with a narrow interval (the backtest then covered the truth
    in a quarter of the forecasts), and a slope's α is not known to one decimal."""
    if vfit is None or binned is None:
        return None
    tb, xb, cb = binned
    kept = [vfit] + [
        f
        for a in p.alphas
        if a != 2.0 and (f := fit_voight(tb, xb, cb, t_ref_s=t_last, time_scale=p.time_scale, alpha=a))
    ]
    lower = min(f.lower_ttf_s for f in kept)
    upper = None if any(f.upper_ttf_s is None for f in kept) else max(f.upper_ttf_s or 0.0 for f in kept)
    return lower, upper


def _replace(a: Acceleration, **changes: object) -> Acceleration:
    return replace(a, **changes)  # type: ignore[arg-type]


def _earlier_forecast(
    t: FloatArray, x: FloatArray, seg: IntArray, t_cut: float, p: AccelerationParams
) -> tuple[float, float] | None:
    """``(failure time, newest reading used)`` (epoch s) forecast from the readings up to
    ``t_cut``; None when that fit is not significant. t, x, seg: (n,) times, oriented
    displacement, segment ids."""
    hi = int(np.searchsorted(t, t_cut, side="right"))
    lo = int(np.searchsorted(t, t_cut - p.fit_window_s))
    if hi - lo < 8:
        return None
    tb, xb, cb = bin_means(
        t[lo:hi], x[lo:hi], seg[lo:hi], bin_s=p.bin_s, coarse_bin_s=p.coarse_bin_s, fine_span_s=p.fine_span_s
    )
    fit = fit_voight(tb, xb, cb, t_ref_s=float(t[hi - 1]), time_scale=p.time_scale)
    if fit is None or fit.p_accel >= p.p_fit_weak:
        return None
    return float(t[hi - 1]) + fit.ttf_s, float(t[hi - 1])


def _trend(t_d: FloatArray, v: FloatArray) -> tuple[FloatArray, ...]:
    """For each row of ``v`` (k, m), velocities at the times ``t_d`` (m,): Mann–Kendall on the
    prewhitened velocities ``(s, var_s, z, tau, n)``, their lag-1 autocorrelation and the
    Theil–Sen slope, each (k,)."""
    beta = theil_sen_rows(t_d, v)
    y, r1, whitened = prewhitened_rows(t_d, v, beta)
    k = v.shape[0]
    s, var_s, z, tau, n = (np.zeros(k) for _ in range(5))
    for rows, series in ((np.flatnonzero(~whitened), v), (np.flatnonzero(whitened), y)):
        if rows.size:
            mk = mann_kendall_stats(series if rows.size == k else series[rows])
            s[rows], var_s[rows], z[rows], tau[rows] = mk[0], mk[1], mk[2], mk[4]
            n[rows] = series.shape[1]
    return s, var_s, z, tau, n, r1, beta


def _onset_index(v: FloatArray) -> int:
    """Index of the first block after the change point of the velocities (CUSUM).

    v: (m,) block velocities, oriented so that faster is positive. The cumulative
    sum of deviations from the mean is lowest just before the velocities rise above
    their mean for good. At least two blocks are left after the onset.
    """
    m = v.size
    if m < 4:
        return 0
    c = np.cumsum(v - v.mean())
    return int(np.argmin(c[: m - 2])) + 1
