"""A displacement rate with an honest uncertainty, for rate thresholds.

GNSS noise is correlated over hours (multipath, troposphere): a least-squares
rate over one day of readings scatters far more than the white-noise formula
says (for 6 mm vertical noise correlated over 6 h, about ±11 mm/day against
±1 mm/day). Judging a threshold on the white-noise bound makes noise cross it.

So the rate is judged with:

- a standard error from the sensor's **long-run noise density** S
  (:func:`analytics.noise.long_run_density`, from the scatter of day-long block
  means, extrapolated with half-day blocks to cancel the part of noise correlated
  over hours that a day does not average out): ``SE = sqrt(S / Δt) / sqrt(Σ(t − t̄)²)``,
  never below the white-noise one. Noise correlated over half a day or more is still
  underestimated (by half for 12 h): that is the limit of a 30-day window;
- a multiplier from Student's t at the estimate's degrees of freedom, so a noise
  level estimated from a few days counts as uncertain;
- several trailing windows (1, 3 and 7 days by default): a short window follows a
  fast change, a long one resolves a slow rate under vertical GNSS noise. The
  judged value is the fastest rate that one of them proves, ``max(|v| − k·SE)``.

With too little data to measure S (about six days), it is not guessed from
hours of data — shorter blocks see noise correlated over hours as averaging out
and underestimate S several times, which is what made noise cross thresholds.
Instead S is bounded from above: the scatter σ_t² of the readings about a
day-wide moving line, as if all of it were correlated for half a day
(``S = 2 · 0.5 day · σ_t²``), and the normal quantile is used. Pessimistic, so a
new sensor proves only large rates; the evidence says which S was used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

from analytics._arrays import DAY_S, FloatArray, IntArray
from analytics._stacked import trailing_lines
from analytics.noise import long_run_densities_rows
from analytics.smoothing import local_linear

#: Trailing windows the rate is judged over, s.
RATE_WINDOWS_S: tuple[float, ...] = (DAY_S, 3 * DAY_S, 7 * DAY_S)
#: Fewest block lengths the noise estimate must cover (with the 3 blocks of a triple:
#: 6 days of data for day-long blocks); few blocks give a large Student multiplier.
NOISE_MIN_BLOCKS = 3.0
#: One-sided confidence of the judged lower bound. Rates are judged at every new reading,
#: all year: a 97.5 % bound would be crossed by noise alone several times a year.
RATE_CONFIDENCE = 0.999
#: One-sided confidence of the bound judged against the red value alone. A rate whose
#: 99.9 % bound already reaches the orange value, and whose 97.5 % bound reaches red,
#: clearly exceeds red: judging red at 99.9 % too made a slope at 1.7 × the red value
#: (34 mm/day against 20, SE 4 mm/day over its fast-changing last day) orange. The gate on
#: the orange value keeps the false-red rate of a stable sensor at the false-orange rate.
RED_CONFIDENCE = 0.975


@dataclass(frozen=True, slots=True)
class RateBound:
    """Trailing rates of one displacement component and the lower bound judged.

    windows_s / velocity_per_day / se_per_day: per trailing window (NaN where it has
    fewer than 3 readings); density_mm2_day: long-run noise density S and the block
    length it was estimated on (``noise_block_s``) with ``dof`` degrees of freedom;
    k: the multiplier of SE; judged_per_day: ``max(|v| − k·SE, 0)`` over the windows
    (NaN when not judged); judged_window_s: the window that gave it; reason: why the
    rate was not judged ("" when it was).
    """

    windows_s: tuple[float, ...]
    velocity_per_day: tuple[float, ...]
    se_per_day: tuple[float, ...]
    density_mm2_day: float
    noise_block_s: float
    dof: float
    k: float
    judged_per_day: float
    judged_window_s: float | None
    reason: str = ""
    reason_zh: str = ""
    #: True when S is the pessimistic bound of a young series, not a measurement.
    noise_assumed: bool = False
    #: White-noise-equivalent σ per reading (mm) that gives the honest SEs: ``sqrt(S / Δt)``.
    sigma_eq: float = math.nan
    #: ``max(|v| − k_red·SE, 0)`` over the windows, the bound judged against red
    #: (:data:`RED_CONFIDENCE`), and its multiplier.
    judged_red_per_day: float = math.nan
    k_red: float = math.nan

    @property
    def velocity_now_per_day(self) -> float:
        """The rate over the shortest window (the one shown as "current")."""
        return self.velocity_per_day[0] if self.velocity_per_day else math.nan


def student_k(confidence: float, dof: float) -> float:
    """Approximate one-sided Student t quantile (Cornish–Fisher, good to 1 % for dof ≥ 3)."""
    z = float(ndtri(confidence))
    if not math.isfinite(dof) or dof <= 0:
        return math.inf
    return z + (z**3 + z) / (4.0 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96.0 * dof * dof)


def rate_bound(
    t_s: FloatArray,
    x: FloatArray,
    seg: IntArray,
    *,
    sigma: float,
    windows_s: tuple[float, ...] = RATE_WINDOWS_S,
    noise_block_s: float = DAY_S,
    confidence: float = RATE_CONFIDENCE,
) -> RateBound:
    """Judge the rate of ``x`` over trailing windows with a correlated-noise standard error.

    t_s, x, seg: (n,) increasing times (s), finite displacement (mm, spikes already
    dropped), segment ids. sigma: the white noise σ of a reading (mm).
    """
    return rate_bounds(
        t_s,
        x[None, :],
        seg,
        sigma=np.array([sigma], dtype=np.float64),
        windows_s=windows_s,
        noise_block_s=noise_block_s,
        confidence=confidence,
    )[0]


def rate_bounds(
    t_s: FloatArray,
    x: FloatArray,
    seg: IntArray,
    *,
    sigma: FloatArray,
    windows_s: tuple[float, ...] = RATE_WINDOWS_S,
    noise_block_s: float = DAY_S,
    confidence: float = RATE_CONFIDENCE,
) -> list[RateBound]:
    """:func:`rate_bound` of each row of ``x`` (k, n) on the times ``t_s`` (n,); sigma: (k,).
    The noise densities and the trailing lines of all rows are computed together."""
    (densities, covered), (halves, _) = long_run_densities_rows(
        t_s, x, seg, blocks_s=(noise_block_s, noise_block_s / 2), min_blocks=NOISE_MIN_BLOCKS
    )
    nan = math.nan
    dt_days = float(np.median(np.diff(t_s))) / DAY_S if t_s.size > 1 else nan
    # The extrapolation scatters more than one estimate: about 2/3 of the blocks count.
    dof_measured = (covered - 2.0) * 2.0 / 3.0
    k_measured = student_k(confidence, max(dof_measured, 1.0))
    k_red_measured = student_k(RED_CONFIDENCE, max(dof_measured, 1.0))
    rows = []
    for i in range(x.shape[0]):
        density = float(densities[i])
        half = float(halves[i])
        block = nan
        dof = 0.0
        if math.isfinite(density):
            block = noise_block_s
            if math.isfinite(half):
                # Noise correlated over a fraction τ of a block lowers the estimate by about
                # τ/B; two block lengths let that first-order term cancel (Richardson).
                density = max(density, 2.0 * density - half)
            dof = dof_measured
        assumed = not math.isfinite(density)
        if assumed:
            density = _pessimistic_density(t_s, x[i], seg)
        s = float(sigma[i])
        sigma_eq = max(s, math.sqrt(density / dt_days)) if math.isfinite(density) and dt_days > 0 else nan
        rows.append((density, block, dof, assumed, sigma_eq, sigma_eq if math.isfinite(sigma_eq) else s))
    used = np.array([r[5] for r in rows], dtype=np.float64)
    lines = [trailing_lines(t_s, x, seg, window_s=w, sigma=used) for w in windows_s]
    out = []
    for i, (density, block, dof, assumed, sigma_eq, _) in enumerate(rows):
        v = tuple(line[i].velocity_per_day for line in lines)
        se = tuple(line[i].velocity_se_per_day for line in lines)
        out.append(
            _judged(windows_s, v, se, density, block, dof, assumed, sigma_eq, confidence, (k_measured, k_red_measured))
        )
    return out


def _judged(
    windows_s: tuple[float, ...],
    v: tuple[float, ...],
    se: tuple[float, ...],
    density: float,
    block: float,
    dof: float,
    assumed: bool,
    sigma_eq: float,
    confidence: float,
    k_measured: tuple[float, float],
) -> RateBound:
    """The judged lower bound of one series from its trailing rates and noise."""
    nan = math.nan
    if not math.isfinite(sigma_eq):
        return RateBound(
            windows_s,
            v,
            se,
            nan,
            nan,
            dof,
            nan,
            nan,
            None,
            "too few readings to estimate the noise of the rate",
            "读数过少，无法估计速率的噪声",
        )
    # Student's t: S is itself estimated, from few blocks in a young series.
    k, k_red = (float(ndtri(confidence)), float(ndtri(RED_CONFIDENCE))) if assumed else k_measured
    best = best_red = nan
    best_w: float | None = None
    for w, vi, si in zip(windows_s, v, se, strict=True):
        if not (math.isfinite(vi) and math.isfinite(si)):
            continue
        low = max(abs(vi) - k * si, 0.0)
        if not math.isfinite(best) or low > best:
            best, best_w = low, w
        low_red = max(abs(vi) - k_red * si, 0.0)
        if not math.isfinite(best_red) or low_red > best_red:
            best_red = low_red
    reason = reason_zh = ""
    if best_w is None:
        reason, reason_zh = "no window with 3 readings in the newest segment", "最新数据段不足 3 个读数"
    return RateBound(
        windows_s,
        v,
        se,
        density,
        block,
        dof,
        k,
        best,
        best_w,
        reason,
        reason_zh,
        noise_assumed=assumed,
        sigma_eq=sigma_eq,
        judged_red_per_day=best_red,
        k_red=k_red,
    )


def _pessimistic_density(t_s: FloatArray, x: FloatArray, seg: IntArray) -> float:
    """An upper bound on S (mm²·day) for noise correlated over at most half a day:
    2 · 0.5 day · σ_t², σ_t the robust scatter about a ±12 h moving line. NaN if < 12 readings."""
    if x.size < 12:
        return math.nan
    smooth = local_linear(t_s, x, seg, half_width_s=0.5 * DAY_S, sigma=1.0).value
    r = x - smooth
    r = r[np.isfinite(r)]
    if r.size < 12:
        return math.nan
    sigma_t = 1.4826 * float(np.median(np.abs(r - np.median(r))))
    return 2.0 * 0.5 * sigma_t * sigma_t
