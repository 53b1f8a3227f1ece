"""Throughput of the detection stages on 2,000-sample windows: ``python -m bench.bench_analytics``.

Every figure is sensors (windows) per second on one core, best of several repeats
(the least disturbed by other processes). Baselines measured in the same run:
``scipy.stats.kendalltau`` against our Mann–Kendall, on the short block-velocity
series the detector tests and on a full 2,000-sample series.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable

import numpy as np
from scipy import stats

from analytics import SensorSpec, SensorWindow, evaluate_sensor
from analytics.acceleration import assess_acceleration
from analytics.despike import hampel
from analytics.inverse_velocity import fit_inverse_velocity
from analytics.kendall import kendall_s, mann_kendall
from analytics.noise import interpolation_residuals, long_run_density, white_noise_sigma
from analytics.rate import rate_bound
from analytics.segments import segment_ids
from analytics.smoothing import bin_means, block_fits, trailing_line, trailing_quadratic
from analytics.voight import fit_voight
from core.model import SensorKind
from core.thresholds import Direction, ThresholdSet
from simulators.scenarios import displacement_series

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
