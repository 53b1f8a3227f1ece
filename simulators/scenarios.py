"""Seeded sensor scenarios that return their ground truth.

Pure numpy: no I/O, no clock, no global random state. Every generator takes a
``seed`` and returns a :class:`Series` whose :class:`GroundTruth` says what is
true about it (does it fail, when did acceleration start, when is failure), so
backtests can score detectors by lead time and false alarms.

Times are epoch seconds (UTC); arrays are ``(n,)``; units are in the channel
names (``east_mm``, ``depth_m``), matching :data:`core.model.KIND_SPECS`.

Kinematics of the displacement scenarios (horizontal displacement ``S(t)`` along
a seeded azimuth, vertical ``-vertical_ratio · S`` because a sliding slope also
settles):

- ``stable``: no movement, noise only.
- ``creep``: constant velocity ``v0``.
- ``tertiary``: ``v0`` until the onset, then Voight's law ``dv/dt = A·v^α``; with the
  default α = 2 (Fukuzono 1985) ``v(t) = v0 · (t_f − t_on) / (t_f − t)``, so ``1/v``
  falls linearly from ``1/v0`` at the onset to 0 at failure ``t_f``; in general
  ``v = v0 · ((t_f − t_on) / (t_f − t))^(1/(α−1))`` (``alpha``, about 1.5–2.5 in
  the field). Samples stop before ``t_f``.
- ``step``: slow creep plus bursts (rain or reservoir drawdown) whose velocity is
  a raised-cosine pulse: the slope speeds up, then stops again. The classic false
  alarm source; ``truth.episodes`` lists the bursts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

DisplacementScenario = Literal["stable", "creep", "tertiary", "step"]
PhreaticScenario = Literal["normal", "clogging"]
DISPLACEMENT_SCENARIOS: Final[tuple[DisplacementScenario, ...]] = ("stable", "creep", "tertiary", "step")

DAY_S: Final = 86_400.0
_EMPTY: Final[FloatArray] = np.zeros(0, dtype=np.float64)


@dataclass(frozen=True)
class GroundTruth:
    """What is true about a generated series.

    onset_s: start of tertiary (accelerating) creep, epoch s; ``None`` when there is none.
    failure_s: time of failure, epoch s; may lie after the last sample (the series
      then ends before failure) but never before it.
    episodes: ``(start_s, end_s)`` windows of transient events a detector must *not*
      call a failure (step bursts, storms, clogging).
    """

    scenario: str
    fails: bool
    onset_s: float | None
    failure_s: float | None
    notes: str = ""
    episodes: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class FaultLog:
    """What :func:`apply_faults` did, so tests can check a pipeline against it.

    removed_t_s: (g,) times of the samples removed (gaps).
    spike_t_s: (k,) times of the samples given an outlier; spike_channel[i] is the
      channel, spike_delta[i] the value added (channel unit).
    """

    removed_t_s: FloatArray = field(default_factory=lambda: _EMPTY.copy())
    spike_t_s: FloatArray = field(default_factory=lambda: _EMPTY.copy())
    spike_channel: tuple[str, ...] = ()
    spike_delta: FloatArray = field(default_factory=lambda: _EMPTY.copy())

    @property
    def gaps(self) -> int:
        return int(self.removed_t_s.size)

    @property
    def spikes(self) -> int:
        return int(self.spike_t_s.size)


@dataclass(frozen=True)
class Series:
    """A generated sensor series.

    t_s: (n,) measurement times, epoch s, strictly increasing.
    values: channel -> (n,) values in the channel's unit.
    truth: what is true about the physics.
    faults: what :func:`apply_faults` injected (empty for a clean series).
    """

    t_s: FloatArray
    values: dict[str, FloatArray]
    truth: GroundTruth
    faults: FaultLog = field(default_factory=FaultLog)

    def __len__(self) -> int:
        return int(self.t_s.size)


# --------------------------------------------------------------------------- helpers


def time_grid(start_s: float, duration_s: float, interval_s: float) -> FloatArray:
    """(n,) sample times ``start_s + k·interval_s`` for ``0 <= k·interval_s <= duration_s``."""
    if interval_s <= 0 or duration_s < 0:
        raise ValueError(f"need interval_s > 0 and duration_s >= 0, got {interval_s} and {duration_s}")
    n = math.floor(duration_s / interval_s + 1e-9) + 1
    return start_s + np.arange(n, dtype=np.float64) * interval_s


def colored_noise(
    rng: np.random.Generator,
    n: int,
    sigma: float,
    interval_s: float,
    *,
    tau_s: float = 6 * 3600.0,
    ar_share: float = 0.6,
) -> FloatArray:
    """(n,) zero-mean noise of standard deviation ``sigma``: white plus AR(1).

    GNSS errors are correlated over hours (multipath, troposphere), so a share
    ``ar_share`` of the variance is AR(1) with correlation time ``tau_s``; the rest
    is white.
    """
    if n == 0 or sigma == 0:
        return np.zeros(n)
    phi = math.exp(-interval_s / tau_s) if tau_s > 0 else 0.0
    innov = rng.standard_normal(n) * math.sqrt(1.0 - phi * phi)
    ar = np.empty(n)
    ar[0] = rng.standard_normal()
    for i in range(1, n):
        ar[i] = phi * ar[i - 1] + innov[i]
    white = rng.standard_normal(n)
    return sigma * (math.sqrt(ar_share) * ar + math.sqrt(1.0 - ar_share) * white)


def _raised_cosine_step(t_s: FloatArray, start_s: float, duration_s: float, amount: float) -> FloatArray:
    """Cumulative displacement of a raised-cosine velocity pulse: 0 before, ``amount`` after."""
    x = np.clip((t_s - start_s) / duration_s, 0.0, 1.0)
    out: FloatArray = amount * (x - np.sin(2.0 * np.pi * x) / (2.0 * np.pi))
    return out


# --------------------------------------------------------------------------- displacement


def displacement_kinematics(
    scenario: DisplacementScenario,
    t_s: FloatArray,
    *,
    rng: np.random.Generator,
    v0_mm_per_day: float,
    tertiary_days: float,
    failure_s: float | None,
    n_steps: int,
    step_starts_s: Sequence[float] | None,
    step_days: tuple[float, float],
    step_peak_mm_per_day: tuple[float, float],
    alpha: float = 2.0,
    step_clusters: int = 0,
) -> tuple[FloatArray, GroundTruth]:
    """Noise-free cumulative movement ``S(t)`` in mm, (n,), and its ground truth.

    alpha: Voight's exponent of the tertiary stage. step_clusters: when > 0 the bursts
    come in that many clusters (rain seasons, drawdowns), each within ±5 days of its centre.

    Shared by GNSS, crack meters and inclinometers. For ``tertiary`` the caller has
    already cut ``t_s`` before ``failure_s``.
    """
    v0 = v0_mm_per_day / DAY_S  # mm/s
    t0 = float(t_s[0]) if t_s.size else 0.0
    if scenario == "stable":
        return np.zeros_like(t_s), GroundTruth("stable", False, None, None, "no movement, noise only")
    if scenario == "creep":
        return v0 * (t_s - t0), GroundTruth("creep", False, None, None, f"steady creep {v0_mm_per_day} mm/day")
    if scenario == "tertiary":
        if failure_s is None:
            raise ValueError("tertiary needs failure_s")
        onset_s = failure_s - tertiary_days * DAY_S
        span = failure_s - onset_s
        before = np.minimum(t_s, onset_s) - t0
        after = np.clip(t_s, onset_s, None)
        q = 1.0 / (alpha - 1.0)
        if abs(q - 1.0) < 1e-9:
            # ∫ v0·span/(tf − τ) dτ from onset to t = v0·span·ln(span / (tf − t))
            accel = v0 * span * np.log(span / (failure_s - after))
        else:
            # ∫ v0·(span/(tf − τ))^q dτ = v0·span^q·(span^(1−q) − (tf − t)^(1−q)) / (1 − q)
            accel = v0 * span**q * (span ** (1.0 - q) - (failure_s - after) ** (1.0 - q)) / (1.0 - q)
        disp: FloatArray = v0 * before + accel
        law = "1/v linear" if abs(alpha - 2.0) < 1e-9 else f"α={alpha:.2f}"
        truth = GroundTruth(
            "tertiary",
            True,
            onset_s,
            failure_s,
            f"steady {v0_mm_per_day} mm/day, then Voight {law} for {tertiary_days} days to failure",
        )
        return disp, truth
    if scenario == "step":
        t_end = float(t_s[-1]) if t_s.size else t0
        last = max(t0, t_end - step_days[1] * DAY_S)
        if step_starts_s is None and step_clusters > 0:
            centres = rng.uniform(t0, last, size=step_clusters)
            starts = np.sort(np.clip(rng.choice(centres, size=n_steps) + rng.uniform(-5, 5, n_steps) * DAY_S, t0, last))
        elif step_starts_s is None:
            starts = np.sort(rng.uniform(t0, last, size=n_steps))
        else:
            starts = np.asarray(step_starts_s, dtype=np.float64)
        disp = v0 * (t_s - t0)
        episodes: list[tuple[float, float]] = []
        for s in starts:
            dur_s = rng.uniform(*step_days) * DAY_S
            peak = rng.uniform(*step_peak_mm_per_day)
            # a raised-cosine pulse of length d peaks at 2·A/d
            amount = peak * (dur_s / DAY_S) / 2.0
            disp = disp + _raised_cosine_step(t_s, float(s), dur_s, amount)
            episodes.append((float(s), float(s) + dur_s))
        truth = GroundTruth(
            "step",
            False,
            None,
            None,
            f"creep {v0_mm_per_day} mm/day with {len(episodes)} bursts that stop again",
            tuple(episodes),
        )
        return disp, truth
    raise ValueError(f"unknown displacement scenario {scenario!r}; expected one of {DISPLACEMENT_SCENARIOS}")


def _displacement_grid(
    scenario: DisplacementScenario, start_s: float, duration_s: float, interval_s: float, failure_s: float | None
) -> tuple[FloatArray, float | None]:
    t = time_grid(start_s, duration_s, interval_s)
    if scenario != "tertiary":
        return t, None
    tf = start_s + duration_s if failure_s is None else failure_s
    # a slope that has failed reports nothing more: keep only samples before failure
    return t[t < tf], tf


def displacement_series(
    scenario: DisplacementScenario,
    *,
    start_s: float,
    duration_s: float,
    interval_s: float,
    seed: int,
    noise_h_mm: float = 1.5,
    noise_v_mm: float = 6.0,
    noise_tau_s: float = 6 * 3600.0,
    v0_mm_per_day: float = 0.5,
    tertiary_days: float = 10.0,
    failure_s: float | None = None,
    azimuth_deg: float | None = None,
    vertical_ratio: float | None = None,
    n_steps: int = 3,
    step_starts_s: Sequence[float] | None = None,
    step_days: tuple[float, float] = (1.0, 4.0),
    step_peak_mm_per_day: tuple[float, float] = (2.0, 6.0),
    alpha: float = 2.0,
    step_clusters: int = 0,
    random_walk_mm_per_sqrt_day: float = 0.0,
    seasonal_mm: float = 0.0,
    thermal_mm: float = 0.0,
    n_jumps: int = 0,
    jump_mm: tuple[float, float] = (2.0, 8.0),
) -> Series:
    """GNSS or total-station surface displacement, channels ``east_mm``, ``north_mm``, ``up_mm``.

    Samples every ``interval_s`` from ``start_s`` over ``duration_s``. ``noise_h_mm``
    is the standard deviation of each horizontal component, ``noise_v_mm`` of the
    vertical (DOMAIN.md: 1–2 mm and 6 mm for GNSS); both partly autocorrelated over
    ``noise_tau_s``. Movement is along ``azimuth_deg`` (clockwise from north; seeded
    when ``None``), settling by ``vertical_ratio`` mm per mm of horizontal movement
    (seeded in 0.2–0.7 when ``None``).

    ``tertiary``: failure at ``failure_s`` (default: the end of the window), onset
    ``tertiary_days`` before; the series ends at the last sample before failure.
    ``failure_s`` may lie after the window (the series ends while accelerating).
    ``step``: ``n_steps`` bursts at seeded times or at ``step_starts_s``, each lasting
    ``step_days`` and peaking at ``step_peak_mm_per_day`` (ranges, seeded uniform),
    in ``step_clusters`` clusters when > 0. ``alpha``: Voight's exponent (2: 1/v linear).

    Noise beyond white + AR(1), drawn from a second stream so the defaults stay as they
    were: a random walk of ``random_walk_mm_per_sqrt_day`` per component (monument and
    reference drift), an annual cycle of amplitude ``seasonal_mm`` and a daily thermal one
    of ``thermal_mm`` (random phases; vertical ×2), and ``n_jumps`` steps of
    ``jump_mm`` (antenna or reference-station changes, random direction, vertical ×2).
    """
    rng = np.random.default_rng(seed)
    az = math.radians(rng.uniform(0.0, 360.0) if azimuth_deg is None else azimuth_deg)
    ratio = rng.uniform(0.2, 0.7) if vertical_ratio is None else vertical_ratio
    t, tf = _displacement_grid(scenario, start_s, duration_s, interval_s, failure_s)
    if tf is not None and tf - tertiary_days * DAY_S < start_s:
        raise ValueError(
            f"tertiary onset ({tertiary_days} days before failure) falls before start_s; lengthen the window"
        )
    disp, truth = displacement_kinematics(
        scenario,
        t,
        rng=rng,
        v0_mm_per_day=v0_mm_per_day,
        tertiary_days=tertiary_days,
        failure_s=tf,
        n_steps=n_steps,
        step_starts_s=step_starts_s,
        step_days=step_days,
        step_peak_mm_per_day=step_peak_mm_per_day,
        alpha=alpha,
        step_clusters=step_clusters,
    )
    n = t.size
    east = disp * math.sin(az) + colored_noise(rng, n, noise_h_mm, interval_s, tau_s=noise_tau_s)
    north = disp * math.cos(az) + colored_noise(rng, n, noise_h_mm, interval_s, tau_s=noise_tau_s)
    up = -ratio * disp + colored_noise(rng, n, noise_v_mm, interval_s, tau_s=noise_tau_s)
    notes = f"{truth.notes}; azimuth {math.degrees(az):.1f}°, vertical ratio {ratio:.2f}"
    if random_walk_mm_per_sqrt_day or seasonal_mm or thermal_mm or n_jumps:
        extra = np.random.default_rng([seed, 1])
        days = (t - start_s) / DAY_S
        step = math.sqrt(interval_s / DAY_S) * random_walk_mm_per_sqrt_day
        for ch, scale in ((0, 1.0), (1, 1.0), (2, 2.0)):
            part = np.cumsum(extra.standard_normal(n)) * step * scale
            part += scale * seasonal_mm * np.sin(2 * np.pi * days / 365.25 + extra.uniform(0, 2 * np.pi))
            part += scale * thermal_mm * np.sin(2 * np.pi * days + extra.uniform(0, 2 * np.pi))
            (east, north, up)[ch][:] += part
        for at in extra.uniform(start_s, float(t[-1]) if n else start_s, size=n_jumps):
            size = extra.uniform(*jump_mm)
            d = extra.uniform(0, 2 * np.pi)
            after = t >= at
            east[after] += size * math.cos(d)
            north[after] += size * math.sin(d)
            up[after] += 2 * size * extra.choice((-1.0, 1.0))
        notes += (
            f"; random walk {random_walk_mm_per_sqrt_day} mm/√day, seasonal {seasonal_mm} mm, "
            f"thermal {thermal_mm} mm, {n_jumps} jumps"
        )
    return Series(t, {"east_mm": east, "north_mm": north, "up_mm": up}, replace(truth, notes=notes))


def crack_series(
    scenario: DisplacementScenario,
    *,
    start_s: float,
    duration_s: float,
    interval_s: float,
    seed: int,
    width0_mm: float = 5.0,
    noise_mm: float = 0.05,
    v0_mm_per_day: float = 0.1,
    tertiary_days: float = 10.0,
    failure_s: float | None = None,
    n_steps: int = 3,
    step_starts_s: Sequence[float] | None = None,
    step_days: tuple[float, float] = (1.0, 4.0),
    step_peak_mm_per_day: tuple[float, float] = (0.5, 2.0),
    alpha: float = 2.0,
    step_clusters: int = 0,
) -> Series:
    """Crack width, channel ``width_mm``: ``width0_mm`` plus the scenario's movement.

    Same kinematics and truth as :func:`displacement_series`; a crack meter (a
    wire or vibrating-wire gauge) has far less noise than GNSS (default 0.05 mm).
    """
    rng = np.random.default_rng(seed)
    t, tf = _displacement_grid(scenario, start_s, duration_s, interval_s, failure_s)
    disp, truth = displacement_kinematics(
        scenario,
        t,
        rng=rng,
        v0_mm_per_day=v0_mm_per_day,
        tertiary_days=tertiary_days,
        failure_s=tf,
        n_steps=n_steps,
        step_starts_s=step_starts_s,
        step_days=step_days,
        step_peak_mm_per_day=step_peak_mm_per_day,
        alpha=alpha,
        step_clusters=step_clusters,
    )
    width = width0_mm + disp + colored_noise(rng, t.size, noise_mm, interval_s, tau_s=3600.0, ar_share=0.3)
    return Series(t, {"width_mm": width}, truth)


def inclinometer_series(
    scenario: DisplacementScenario,
    *,
    channels: Sequence[str],
    depths_m: Sequence[float],
    slip_depth_m: float,
    start_s: float,
    duration_s: float,
    interval_s: float,
    seed: int,
    noise_mm: float = 0.3,
    v0_mm_per_day: float = 0.3,
    tertiary_days: float = 10.0,
    failure_s: float | None = None,
    n_steps: int = 3,
    step_starts_s: Sequence[float] | None = None,
    step_days: tuple[float, float] = (1.0, 4.0),
    step_peak_mm_per_day: tuple[float, float] = (1.0, 4.0),
) -> Series:
    """In-place inclinometer, one channel per depth: cumulative displacement in mm.

    Cumulative displacement is measured from the fixed bottom of the casing, so
    every depth above the slip surface ``slip_depth_m`` moves with the slide mass
    and depths below it stay put (with a short smooth transition across the shear
    zone).
    """
    if len(channels) != len(depths_m):
        raise ValueError("channels and depths_m must have the same length")
    rng = np.random.default_rng(seed)
    t, tf = _displacement_grid(scenario, start_s, duration_s, interval_s, failure_s)
    disp, truth = displacement_kinematics(
        scenario,
        t,
        rng=rng,
        v0_mm_per_day=v0_mm_per_day,
        tertiary_days=tertiary_days,
        failure_s=tf,
        n_steps=n_steps,
        step_starts_s=step_starts_s,
        step_days=step_days,
        step_peak_mm_per_day=step_peak_mm_per_day,
    )
    values: dict[str, FloatArray] = {}
    for name, depth in zip(channels, depths_m, strict=True):
        share = 1.0 / (1.0 + math.exp((depth - slip_depth_m) / 0.5))
        values[name] = share * disp + colored_noise(rng, t.size, noise_mm, interval_s, tau_s=3600.0, ar_share=0.3)
    return Series(t, values, replace(truth, notes=f"{truth.notes}; slip surface at {slip_depth_m} m"))


# --------------------------------------------------------------------------- rain and tailings


def rain_series(
    *,
    start_s: float,
    duration_s: float,
    interval_s: float,
    seed: int,
    storms_per_30d: float = 4.0,
    mean_storm_mm: float = 30.0,
    mean_storm_h: float = 8.0,
    storms: Sequence[tuple[float, float, float]] | None = None,
    bucket_mm: float = 0.2,
) -> Series:
    """Tipping-bucket rainfall, channel ``rain_mm``: mm fallen in each interval.

    Storms arrive as a Poisson process (``storms_per_30d``), each with an
    exponentially distributed total (``mean_storm_mm``, so an occasional 暴雨 of
    50 mm or more) and duration (``mean_storm_h``); intensity inside a storm is
    bursty. ``storms`` as ``(start_s, duration_s, total_mm)`` replaces the random
    ones. Output is quantised to whole bucket tips (``bucket_mm``), the remainder
    carried to the next interval. ``truth.episodes`` are the storm windows.
    """
    rng = np.random.default_rng(seed)
    t = time_grid(start_s, duration_s, interval_s)
    if storms is None:
        count = int(rng.poisson(storms_per_30d * duration_s / (30 * DAY_S)))
        storm_list = [
            (
                float(rng.uniform(start_s, start_s + duration_s)),
                float(max(interval_s, rng.exponential(mean_storm_h * 3600.0))),
                float(rng.exponential(mean_storm_mm)),
            )
            for _ in range(count)
        ]
    else:
        storm_list = [(float(a), float(b), float(c)) for a, b, c in storms]
    storm_list.sort()
    intensity = np.zeros(t.size)  # mm per interval, continuous
    for s0, dur, total in storm_list:
        # the interval ending at t[i] collects rain that fell in (t[i] - interval, t[i]]
        inside = (t > s0) & (t - interval_s < s0 + dur)
        idx = np.flatnonzero(inside)
        if idx.size == 0:
            continue
        weights = rng.gamma(0.7, 1.0, size=idx.size)
        intensity[idx] += total * weights / weights.sum()
    rain = np.zeros(t.size)
    carry = 0.0
    for i, mm in enumerate(intensity):
        carry += mm
        tips = math.floor(carry / bucket_mm + 1e-9)
        rain[i] = tips * bucket_mm
        carry -= rain[i]
    truth = GroundTruth(
        "rain",
        False,
        None,
        None,
        f"{len(storm_list)} storms, {float(rain.sum()):.1f} mm in total",
        tuple((s0, s0 + dur) for s0, dur, _ in storm_list),
    )
    return Series(t, {"rain_mm": np.round(rain, 6)}, truth)


def rolling_sum(t_s: FloatArray, x: FloatArray, window_s: float) -> FloatArray:
    """(n,) sum of ``x`` over the trailing window ``(t - window_s, t]``; e.g. 24-hour rainfall."""
    csum = np.concatenate(([0.0], np.cumsum(x)))
    lo = np.searchsorted(t_s, t_s - window_s, side="right")
    out: FloatArray = csum[1:] - csum[lo]
    return out


def pond_and_phreatic_series(
    rain: Series,
    *,
    seed: int,
    scenario: PhreaticScenario = "normal",
    normal_level_m: float = 245.0,
    runoff_m_per_mm: float = 0.008,
    runoff_lag_s: float = 3 * 3600.0,
    decant_tau_s: float = 4 * DAY_S,
    depth0_m: float = 8.0,
    phreatic_gain: float = 0.8,
    phreatic_tau_s: float = 5 * DAY_S,
    beach0_m: float = 150.0,
    beach_slope: float = 0.01,
    level_noise_m: float = 0.01,
    depth_noise_m: float = 0.02,
    beach_noise_m: float = 2.0,
    clog_onset_s: float | None = None,
    clog_m_per_day: float = 0.15,
) -> Series:
    """Pond level, phreatic line and dry beach responding to ``rain`` (same time grid).

    Channels: ``level_m`` pond elevation (m), ``depth_m`` phreatic-line burial depth
    below the dam surface (m, shallower is worse), ``length_m`` dry beach length (m).

    Runoff raises the pond by ``runoff_m_per_mm`` per mm of rain (catchment over
    pond area), lagged by ``runoff_lag_s``; the decant tower lowers it back towards
    ``normal_level_m`` with time constant ``decant_tau_s``. The phreatic line follows
    the pond rise through a slower filter (``phreatic_tau_s``), rising by
    ``phreatic_gain`` m per m. The dry beach shortens by ``1/beach_slope`` m per m of
    rise. ``clogging``: from ``clog_onset_s`` (default: the middle of the window) a
    blocked drain raises the phreatic line by ``clog_m_per_day``, a slow hazard that
    does not stop by itself; its onset is ``truth.onset_s``.

    The deterministic part does not depend on ``seed``: several piezometers of one
    pond share the same pond history, only their noise and ``depth0_m`` differ.
    """
    rng = np.random.default_rng(seed)
    t = rain.t_s
    r = rain.values["rain_mm"]
    n = t.size
    dt = float(np.median(np.diff(t))) if n > 1 else 3600.0
    a_runoff = math.exp(-dt / runoff_lag_s) if runoff_lag_s > 0 else 0.0
    a_decant = math.exp(-dt / decant_tau_s)
    a_phreatic = math.exp(-dt / phreatic_tau_s)
    runoff = 0.0
    excess = np.zeros(n)  # pond level above normal, m
    slow = np.zeros(n)  # phreatic response, m
    h = 0.0
    p = 0.0
    for i in range(n):
        runoff = a_runoff * runoff + (1.0 - a_runoff) * r[i] * runoff_m_per_mm
        h = a_decant * h + runoff
        p = a_phreatic * p + (1.0 - a_phreatic) * h
        excess[i] = h
        slow[i] = p
    depth = depth0_m - phreatic_gain * slow
    onset: float | None = None
    episodes: tuple[tuple[float, float], ...] = ()
    if scenario == "clogging":
        onset = float(t[0] + (t[-1] - t[0]) / 2.0) if clog_onset_s is None else clog_onset_s
        depth = depth - np.clip(t - onset, 0.0, None) / DAY_S * clog_m_per_day
        episodes = ((onset, float(t[-1])),)
    elif scenario != "normal":
        raise ValueError(f"unknown phreatic scenario {scenario!r}; expected 'normal' or 'clogging'")
    depth = np.maximum(depth, 0.0)
    level = normal_level_m + excess + rng.normal(0.0, level_noise_m, n)
    depth_obs = depth + colored_noise(rng, n, depth_noise_m, dt, tau_s=6 * 3600.0)
    beach = beach0_m - excess / beach_slope + rng.normal(0.0, beach_noise_m, n)
    notes = f"{scenario}: peak pond rise {float(excess.max(initial=0.0)):.2f} m"
    if onset is not None:
        notes += f", drain clogging from {onset:.0f} at {clog_m_per_day} m/day"
    truth = GroundTruth(scenario, False, onset, None, notes, episodes)
    return Series(
        t.copy(),
        {"level_m": level, "depth_m": np.maximum(depth_obs, 0.0), "length_m": np.maximum(beach, 0.0)},
        truth,
    )


# --------------------------------------------------------------------------- faults


def apply_faults(
    series: Series,
    *,
    seed: int,
    gap_prob: float = 0.0,
    gaps: Sequence[tuple[float, float]] = (),
    outages: int = 0,
    outage_s: float = 6 * 3600.0,
    spike_prob: float = 0.0,
    spike_sigma: float = 15.0,
    spike_size: Mapping[str, float] | None = None,
) -> Series:
    """A new series with sensor faults, and their log in ``faults``.

    Gaps: each sample is lost with ``gap_prob``; every sample inside a ``gaps``
    window ``(start_s, end_s)`` is lost; ``outages`` random windows of ``outage_s``
    each are lost too (a power cut). Spikes: each remaining sample gets, with
    ``spike_prob``, an outlier on one random channel of ± ``spike_size[channel]``
    (default: ``spike_sigma`` times that channel's noise, estimated from its first
    differences). ``truth`` is unchanged: faults are not physics.
    """
    rng = np.random.default_rng(seed)
    t = series.t_s
    keep = rng.random(t.size) >= gap_prob
    windows = list(gaps)
    if outages > 0 and t.size:
        for s0 in rng.uniform(float(t[0]), float(t[-1]), size=outages):
            windows.append((float(s0), float(s0) + outage_s))
    for s0, s1 in windows:
        keep &= ~((t >= s0) & (t < s1))
    removed = t[~keep].copy()
    t_new = t[keep].copy()
    values = {ch: v[keep].copy() for ch, v in series.values.items()}
    channels = sorted(values)
    sizes = {ch: _spike_size(values[ch], spike_sigma) for ch in channels}
    if spike_size:
        sizes.update(spike_size)
    hit = np.flatnonzero(rng.random(t_new.size) < spike_prob) if channels else np.zeros(0, dtype=np.int64)
    spike_channel: list[str] = []
    deltas = np.zeros(hit.size)
    for j, i in enumerate(hit):
        ch = channels[int(rng.integers(len(channels)))]
        delta = sizes[ch] * (1.0 if rng.random() < 0.5 else -1.0)
        values[ch][i] += delta
        spike_channel.append(ch)
        deltas[j] = delta
    log = FaultLog(
        removed_t_s=np.concatenate((series.faults.removed_t_s, removed)),
        spike_t_s=np.concatenate((series.faults.spike_t_s, t_new[hit])),
        spike_channel=series.faults.spike_channel + tuple(spike_channel),
        spike_delta=np.concatenate((series.faults.spike_delta, deltas)),
    )
    return Series(t_new, values, series.truth, log)


def _spike_size(x: FloatArray, sigma: float) -> float:
    if x.size < 3:
        return sigma
    d = np.diff(x)
    noise = float(np.median(np.abs(d - np.median(d)))) * 1.4826 / math.sqrt(2.0)
    if noise <= 0.0:
        # a mostly-constant channel (rain): fall back to its spread, then to 1 unit
        noise = float(np.std(x)) or 1.0
    return sigma * noise
