"""Throughput of the detection stages on 2,000-sample windows: ``python -m bench.bench_analytics``.

Every figure is sensors (windows) per second on one core (BLAS limited to one
thread), best of several repeats (the least disturbed by other processes).

The headline is a fleet: hourly GNSS windows, 70 % stable, 20 % steady creep, 8 %
step-like, 2 % accelerating, all read on one schedule, plus piezometers, pond level,
beach and rain gauges. Measured in the same run: ``evaluate_sensor`` one sensor at a
time against ``evaluate_many`` over the whole fleet (the ratio is the gain of
batching), and ``scipy.stats.kendalltau`` against our Mann–Kendall.
"""

from __future__ import annotations

import os

# One core: the bench measures what one worker process does (set before numpy loads BLAS).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from analytics import SensorSpec, SensorWindow, evaluate_many, evaluate_sensor, health  # noqa: E402
from analytics._arrays import FloatArray  # noqa: E402
from analytics._stacked import (  # noqa: E402
    block_fits_rows,
    hampel_rows,
    interpolation_residuals_rows,
    white_noise_sigma_rows,
)
from analytics.acceleration import assess_acceleration  # noqa: E402
from analytics.despike import hampel  # noqa: E402
from analytics.evaluate import _components  # noqa: E402
from analytics.inverse_velocity import fit_inverse_velocity  # noqa: E402
from analytics.kendall import (  # noqa: E402
    kendall_s,
    mann_kendall,
    mann_kendall_stats,
    prewhitened,
    prewhitened_rows,
    theil_sen,
    theil_sen_rows,
)
from analytics.noise import interpolation_residuals, long_run_density, white_noise_sigma  # noqa: E402
from analytics.rate import rate_bound, rate_bounds  # noqa: E402
from analytics.segments import segment_ids  # noqa: E402
from analytics.smoothing import bin_means, block_fits, trailing_line, trailing_quadratic  # noqa: E402
from analytics.voight import fit_voight  # noqa: E402
from core.model import SensorKind  # noqa: E402
from core.thresholds import Direction, ThresholdSet  # noqa: E402
from simulators.scenarios import displacement_series, pond_and_phreatic_series, rain_series  # noqa: E402

N = 2000
HOUR = 3600.0
DAY = 86_400.0


def rate(fn: Callable[[], object], *, min_time_s: float = 0.2, repeats: int = 5) -> float:
    """Calls per second, best of ``repeats`` runs of at least ``min_time_s`` each."""
    fn()
    loops = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        dt = time.perf_counter() - t0
        if dt >= min_time_s / 4:
            break
        loops *= 4
    loops = max(1, int(loops * (min_time_s / 4) / max(dt, 1e-9)) * 4)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        best = min(best, (time.perf_counter() - t0) / loops)
    return 1.0 / best


#: GNSS share of each scenario in the fleet (of 100 GNSS windows).
FLEET_GNSS: tuple[tuple[str, int], ...] = (("stable", 70), ("creep", 20), ("step", 8), ("tertiary", 2))
#: Non-GNSS sensors per 100 GNSS windows: channel, kind, count.
FLEET_OTHER: tuple[tuple[str, SensorKind, int], ...] = (
    ("depth_m", SensorKind.PIEZOMETER, 60),
    ("level_m", SensorKind.POND_LEVEL, 10),
    ("length_m", SensorKind.BEACH, 10),
    ("rain_mm", SensorKind.RAIN, 20),
)


def fleet(start_s: float = 1_767_225_600.0) -> tuple[list[tuple[SensorSpec, SensorWindow]], int]:
    """``(sensors, n_gnss)``: 100 hourly GNSS windows of ``N`` readings (the mix of
    :data:`FLEET_GNSS`, the GNSS ones first) and the non-GNSS sensors of :data:`FLEET_OTHER`."""
    duration = (N - 1) * HOUR
    out: list[tuple[SensorSpec, SensorWindow]] = []
    rates = ThresholdSet(Direction.ABOVE, blue=2.0, yellow=5.0, orange=8.0, red=10.0)
    seed = 0
    for scenario, count in FLEET_GNSS:
        for _ in range(count):
            seed += 1
            s = displacement_series(
                scenario,  # type: ignore[arg-type]
                start_s=start_s,
                duration_s=duration,
                interval_s=HOUR,
                seed=seed,
                v0_mm_per_day=2.0,
                tertiary_days=7.0,
                failure_s=start_s + N * HOUR + DAY if scenario == "tertiary" else None,
                n_steps=6,
            )
            # a third of the points have rate thresholds, as a design institute sets them on key points
            th = {"horizontal_mm_per_day": rates, "vertical_mm_per_day": rates} if seed % 3 == 0 else {}
            spec = SensorSpec(seed, f"G{seed}", SensorKind.GNSS, ("east_mm", "north_mm", "up_mm"), HOUR, thresholds=th)
            out.append((spec, SensorWindow(s.t_s, s.values, float(s.t_s[-1]) + 60)))
    n_gnss = len(out)
    rain = rain_series(start_s=start_s, duration_s=duration, interval_s=HOUR, seed=1)
    pp = pond_and_phreatic_series(rain, seed=1)
    both = {**pp.values, **rain.values}
    for ch, kind, count in FLEET_OTHER:
        for _ in range(count):
            seed += 1
            spec = SensorSpec(seed, f"S{seed}", kind, (ch,), HOUR)
            out.append((spec, SensorWindow(pp.t_s, {ch: both[ch]}, float(pp.t_s[-1]) + 60)))
    return out, n_gnss


def stacked_stages(
    sensors: list[tuple[SensorSpec, SensorWindow]], n_gnss: int
) -> list[tuple[str, int, Callable[[], object], Callable[[], object]]]:
    """``(name, rows, one row at a time, stacked)`` for the array stages ``evaluate_many`` runs
    on all rows of one schedule at once: the fleet's GNSS components (rows) and sensors."""
    t = sensors[0][1].t_s
    rows: list[FloatArray] = []
    for spec, w in sensors[:n_gnss]:
        rows.extend(c.disp_mm for c in _components(spec, t, w.values))
    x = np.stack(rows)
    k = x.shape[0]
    seg = segment_ids(t, max_gap_s=4 * HOUR)
    resid = interpolation_residuals_rows(t, x, seg)
    sigma = white_noise_sigma_rows(resid)
    blocks = block_fits_rows(t, x, seg, block_s=12 * HOUR, sigma=sigma)
    recent = blocks.t_mid_s >= t[-1] - 7 * DAY
    v = np.ascontiguousarray(blocks.velocity_per_day[:, recent])
    t_d = (blocks.t_mid_s[recent] - t[-1]) / DAY
    rates = np.arange(0, k, 3)  # the rows with rate thresholds
    values = [dict(w.values) for _, w in sensors]
    now = [w.now_s for _, w in sensors]
    rain = [spec.kind is SensorKind.RAIN for spec, _ in sensors]

    def noise_one() -> None:
        for i in range(k):
            r = interpolation_residuals(t, x[i], seg)
            hampel(t, x[i], seg, r, sigma=white_noise_sigma(r))

    def noise_stacked() -> None:
        r = interpolation_residuals_rows(t, x, seg)
        hampel_rows(t, x, seg, r, sigma=white_noise_sigma_rows(r))

    def blocks_one() -> None:
        for i in range(k):
            for b in (12 * HOUR, DAY):
                block_fits(t, x[i], seg, block_s=b, sigma=float(sigma[i]))
            block_fits(t, x[i], seg, block_s=12 * HOUR, sigma=float(sigma[i]), end_s=float(t[-1]) - 6 * HOUR)

    def blocks_stacked() -> None:
        for b in (12 * HOUR, DAY):
            block_fits_rows(t, x, seg, block_s=b, sigma=sigma)
        block_fits_rows(t, x, seg, block_s=12 * HOUR, sigma=sigma, end_s=float(t[-1]) - 6 * HOUR)

    def trend_one() -> None:
        for row in v:
            beta = theil_sen(t_d, row)
            mann_kendall(prewhitened(t_d, row, beta=beta)[0])

    def trend_stacked() -> None:
        beta = theil_sen_rows(t_d, v)
        y, _, whitened = prewhitened_rows(t_d, v, beta)
        mann_kendall_stats(v[~whitened])
        mann_kendall_stats(y[whitened])

    def health_one() -> None:
        for vals, now_s, r in zip(values, now, rain, strict=True):
            health.silent(t, vals, interval_s=HOUR, now_s=now_s)
            health.stuck(t, vals, zero_is_normal=r)
            health.spikes(t, vals, interval_s=HOUR, rain=r)

    return [
        ("noise + Hampel despiking", k, noise_one, noise_stacked),
        ("12 h, 24 h, shifted 12 h block fits", k, blocks_one, blocks_stacked),
        (
            "velocity trend (Theil-Sen, prewhiten, MK)",
            k,
            trend_one,
            trend_stacked,
        ),
        (
            "rate bound (1/3/7 d, correlated noise)",
            rates.size,
            lambda: [rate_bound(t, x[i], seg, sigma=float(sigma[i])) for i in rates],
            lambda: rate_bounds(t, x[rates], seg, sigma=sigma[rates]),
        ),
        (
            "health rules (silent, stuck, spikes)",
            len(sensors),
            health_one,
            lambda: health.rules_many(t, values, interval_s=HOUR, now_s=now, rain=rain),
        ),
    ]


def _one_at_a_time(group: list[tuple[SensorSpec, SensorWindow]]) -> Callable[[], object]:
    return lambda: [evaluate_sensor(sp, w) for sp, w in group]


def _batched(group: list[tuple[SensorSpec, SensorWindow]]) -> Callable[[], object]:
    return lambda: evaluate_many(group)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing runs")
    args = parser.parse_args(argv)
    min_time = 0.05 if args.quick else 0.3

    # Hourly GNSS, 2,000 readings (83 days): stable, and tertiary creep ending a day before failure.
    start = 1_767_225_600.0
    quiet = displacement_series("stable", start_s=start, duration_s=(N - 1) * HOUR, interval_s=HOUR, seed=1)
    moving = displacement_series(
        "tertiary",
        start_s=start,
        duration_s=(N - 1) * HOUR,
        interval_s=HOUR,
        seed=2,
        v0_mm_per_day=2.0,
        tertiary_days=7.0,
        failure_s=start + N * HOUR + DAY,
    )

    def horizontal(s: object) -> tuple[np.ndarray, np.ndarray]:
        vals = s.values  # type: ignore[attr-defined]
        e, n = vals["east_mm"], vals["north_mm"]
        return s.t_s, np.hypot(e - e[0], n - n[0])  # type: ignore[attr-defined]

    t, xq = horizontal(quiet)
    tm, xm = horizontal(moving)
    assert t.size == N
    assert tm.size == N
    seg = segment_ids(t, max_gap_s=4 * HOUR)
    resid = interpolation_residuals(t, xq, seg)
    sigma = white_noise_sigma(resid)
    blocks = block_fits(tm, xm, seg, block_s=12 * HOUR, sigma=sigma)
    v14 = blocks.velocity_per_day[-14:]
    tb, xb, cb = bin_means(
        tm[-720:], xm[-720:], seg[-720:], bin_s=3 * HOUR, coarse_bin_s=12 * HOUR, fine_span_s=10 * DAY
    )
    gnss = SensorSpec(1, "G1", SensorKind.GNSS, ("east_mm", "north_mm", "up_mm"), HOUR)
    rate_limits = ThresholdSet(Direction.ABOVE, blue=2.0, yellow=5.0, orange=8.0, red=10.0)
    gnss_rates = SensorSpec(
        1,
        "G1",
        SensorKind.GNSS,
        ("east_mm", "north_mm", "up_mm"),
        HOUR,
        thresholds={"horizontal_mm_per_day": rate_limits, "vertical_mm_per_day": rate_limits},
    )
    win_q = SensorWindow(quiet.t_s, quiet.values, float(quiet.t_s[-1]) + 60)
    win_m = SensorWindow(moving.t_s, moving.values, float(moving.t_s[-1]) + 60)
    piezo = SensorSpec(2, "P1", SensorKind.PIEZOMETER, ("depth_m",), HOUR)
    win_p = SensorWindow(t, {"depth_m": 8.0 + xq / 1000.0}, float(t[-1]))
    x_long = np.random.default_rng(0).normal(size=N)
    t_long = np.arange(float(N))
    t14 = np.arange(14.0)

    stages: list[tuple[str, Callable[[], object]]] = [
        (
            "gaps + noise (residuals, MAD)",
            lambda: white_noise_sigma(interpolation_residuals(t, xq, segment_ids(t, max_gap_s=4 * HOUR))),
        ),
        ("Hampel despiking", lambda: hampel(t, xq, seg, resid, sigma=sigma)),
        ("12 h block velocities", lambda: block_fits(t, xq, seg, block_s=12 * HOUR, sigma=sigma)),
        (
            "trailing line + parabola",
            lambda: (
                trailing_line(t, xq, seg, window_s=DAY, sigma=sigma),
                trailing_quadratic(t, xq, seg, window_s=2 * DAY, sigma=sigma),
            ),
        ),
        ("long-run noise density (day blocks)", lambda: long_run_density(t, xq, seg, block_s=DAY)),
        ("rate bound (1/3/7 d, correlated noise)", lambda: rate_bound(t, xq, seg, sigma=sigma)),
        ("Mann-Kendall, 14 block velocities", lambda: mann_kendall(v14)),
        ("Voight fit (30 days, binned)", lambda: fit_voight(tb, xb, cb, t_ref_s=float(tm[-1]))),
        (
            "1/v line fit",
            lambda: fit_inverse_velocity(
                blocks.t_mid_s[-14:], v14, blocks.velocity_se_per_day[-14:], t_ref_s=float(tm[-1])
            ),
        ),
        ("assess_acceleration, stable", lambda: assess_acceleration(t, xq, interval_s=HOUR)),
        ("assess_acceleration, tertiary", lambda: assess_acceleration(tm, xm, interval_s=HOUR)),
        ("evaluate_sensor GNSS, stable", lambda: evaluate_sensor(gnss, win_q)),
        ("evaluate_sensor GNSS, tertiary", lambda: evaluate_sensor(gnss, win_m)),
        ("evaluate_sensor GNSS + rate thresholds, stable", lambda: evaluate_sensor(gnss_rates, win_q)),
        ("evaluate_sensor piezometer", lambda: evaluate_sensor(piezo, win_p)),
    ]
    print(f"analytics throughput, {N}-sample windows, one core (pid {os.getpid()}, load {os.getloadavg()[0]:.1f})")
    print(f"{'stage':40s} {'sensors/s':>12s} {'µs each':>10s}")
    for name, fn in stages:
        r = rate(fn, min_time_s=min_time)
        print(f"{name:40s} {r:12,.0f} {1e6 / r:10.1f}")

    sensors, n_gnss = fleet(start)
    gnss_fleet = sensors[:n_gnss]
    others = sensors[n_gnss:]
    print(
        f"\nfleet: {n_gnss} GNSS windows "
        + ", ".join(f"{n}% {sc}" for sc, n in FLEET_GNSS)
        + f"; {len(others)} other sensors ({', '.join(f'{n} {k.value}' for _, k, n in FLEET_OTHER)})"
    )
    print(f"{'fleet':40s} {'one at a time':>14s} {'evaluate_many':>14s} {'ratio':>7s}  (sensors/s)")
    for name, group in (("GNSS only", gnss_fleet), ("other kinds only", others), ("whole fleet", sensors)):
        one = rate(_one_at_a_time(group), min_time_s=min_time, repeats=3)
        many = rate(_batched(group), min_time_s=min_time, repeats=3)
        n = len(group)
        print(f"{name:40s} {one * n:14,.0f} {many * n:14,.0f} {many / one:6.2f}x")

    print(f"\nstacked stages over the fleet's rows on one schedule ({n_gnss} GNSS windows, {len(sensors)} sensors)")
    print(f"{'stage':40s} {'rows':>5s} {'one row':>9s} {'stacked':>9s} {'ratio':>7s}  (µs per row)")
    for name, n_rows, one_fn, stacked_fn in stacked_stages(sensors, n_gnss):
        one = rate(one_fn, min_time_s=min_time, repeats=3)
        many = rate(stacked_fn, min_time_s=min_time, repeats=3)
        print(f"{name:40s} {n_rows:5d} {1e6 / one / n_rows:9.1f} {1e6 / many / n_rows:9.1f} {many / one:6.1f}x")

    print("\nKendall baselines (same run)")
    pairs = [
        ("n=14: mann_kendall vs scipy.stats.kendalltau", lambda: mann_kendall(v14), lambda: stats.kendalltau(t14, v14)),
        (
            "n=2000: kendall_s (merge) vs scipy.stats.kendalltau",
            lambda: kendall_s(x_long),
            lambda: stats.kendalltau(t_long, x_long),
        ),
    ]
    for name, ours, theirs in pairs:
        r1 = rate(ours, min_time_s=min_time)
        r2 = rate(theirs, min_time_s=min_time)
        print(f"{name:52s} ours {1e6 / r1:8.1f} µs, scipy {1e6 / r2:8.1f} µs, speed-up ×{r1 / r2:.1f}")
    return 0


if __name__ == "__main__":
    main()
