"""Small seeded series with known truth for the analytics tests.

Independent of ``simulators/`` on purpose: the detector tests must not move when
the simulators are retuned. Times are epoch seconds, displacements mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

T0 = 1_760_000_000.0
DAY = 86_400.0
HOUR = 3_600.0


@dataclass(frozen=True)
class Creep:
    """t_s: (n,) times; disp_mm: (n,) displacement; onset_s / failure_s: truth (None if stable)."""

    t_s: FloatArray
    disp_mm: FloatArray
    onset_s: float | None
    failure_s: float | None


def grid(days: float, interval_s: float = HOUR, start_s: float = T0) -> FloatArray:
    return start_s + np.arange(0.0, days * DAY + 1e-6, interval_s)


def white(seed: int, n: int, sigma: float) -> FloatArray:
    return np.random.default_rng(seed).normal(0.0, sigma, n)


def voight(t_s: FloatArray, *, v0_mm_per_day: float, onset_s: float, failure_s: float) -> FloatArray:
    """Steady creep at v0, then Voight α = 2 (1/v linear) from the onset to failure."""
    v0 = v0_mm_per_day / DAY
    span = failure_s - onset_s
    before = np.minimum(t_s, onset_s) - t_s[0]
    after = np.clip(t_s, onset_s, None)
    out: FloatArray = v0 * before + v0 * span * np.log(span / (failure_s - after))
    return out


def tertiary(
    seed: int,
    *,
    days: float = 30.0,
    tertiary_days: float = 8.0,
    v0_mm_per_day: float = 3.0,
    sigma_mm: float = 1.0,
    interval_s: float = HOUR,
    end_before_failure_s: float = 6 * HOUR,
) -> Creep:
    """A creep series ending ``end_before_failure_s`` before failure, with white noise."""
    t = grid(days, interval_s)
    failure = float(t[-1]) + end_before_failure_s
    onset = failure - tertiary_days * DAY
    disp = voight(t, v0_mm_per_day=v0_mm_per_day, onset_s=onset, failure_s=failure)
    return Creep(t, disp + white(seed, t.size, sigma_mm), onset, failure)


def stable(seed: int, *, days: float = 30.0, sigma_mm: float = 1.5, interval_s: float = HOUR) -> Creep:
    t = grid(days, interval_s)
    return Creep(t, white(seed, t.size, sigma_mm), None, None)


def burst(t_s: FloatArray, *, start_s: float, duration_s: float, amount_mm: float) -> FloatArray:
    """Displacement of a raised-cosine velocity pulse (a rain-driven burst that stops)."""
    x = np.clip((t_s - start_s) / duration_s, 0.0, 1.0)
    out: FloatArray = amount_mm * (x - np.sin(2.0 * np.pi * x) / (2.0 * np.pi))
    return out


def correlated(seed: int, n: int, sigma: float, interval_s: float, *, tau_s: float = 6 * HOUR) -> FloatArray:
    """(n,) GNSS-like noise of standard deviation ``sigma``: 40 % white, 60 % AR(1) over ``tau_s``."""
    rng = np.random.default_rng(seed)
    phi = float(np.exp(-interval_s / tau_s))
    innov = rng.standard_normal(n) * np.sqrt(1.0 - phi * phi)
    ar = np.empty(n)
    ar[0] = rng.standard_normal()
    for i in range(1, n):
        ar[i] = phi * ar[i - 1] + innov[i]
    out: FloatArray = sigma * (np.sqrt(0.6) * ar + np.sqrt(0.4) * rng.standard_normal(n))
    return out
