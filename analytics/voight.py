"""Inverse velocity in integrated form: Voight's law fitted to displacement itself.

With α = 2 in Voight's law the inverse velocity is linear in time,
``1/v = (t_f − t) / B``, which integrates to ``S(t) = c − B·ln(t_f − t)``. Fitting
this to the (binned) displacement uses the whole accelerating curve at once and
never differentiates noisy data, so it forecasts far more steadily than a line
through noisy ``1/v`` points (Carlà et al. 2017 show how much ``1/v`` amplifies
noise). The classic ``1/v`` fit (:mod:`analytics.inverse_velocity`) is reported
alongside as the check a person can redo by hand.

For every candidate failure time on a geometric grid the model is linear in
``(c, B)``, so the fit is an exact profile over ``t_f``: one matrix product for the
whole grid. As ``t_f → ∞`` the model becomes a straight line (steady creep), which
makes the F-test of "accelerating" against "steady" a nested comparison. Residual
autocorrelation (GNSS noise is correlated over hours) shrinks the effective number
of points used in the test and in the interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
from scipy.special import fdtrc, fdtri

from analytics._arrays import DAY_S, FloatArray

#: Candidate times to failure, days: 30 minutes to 90 days.
GRID_DAYS: Final[FloatArray] = np.geomspace(1.0 / 48.0, 90.0, 64)


#: Candidate onset ages (time from the onset of acceleration to the newest reading), days.
ONSET_AGE_DAYS: Final[FloatArray] = np.array(
    [1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.5, 10.0, 12.0, 14.0, 17.0, 20.0, 25.0]
)


@dataclass(frozen=True, slots=True)
class VoightFit:
    """The best two-phase curve over the window, and how much better it is than steady creep.

    The curve: steady creep at ``v0 = B / (t_f − t_on)`` until the onset ``t_on``, then
    Voight's law (α = 2), velocity continuous at the onset.

    ttf_s: time from ``t_ref_s`` to failure at the best fit, s; lower_ttf_s / upper_ttf_s:
    95 % profile interval (upper None when it stays open to the end of the grid);
    onset_age_s: ``t_ref − t_on`` at the best fit (the window length when the whole
    window is tertiary); b_mm: B, mm·(1/v falls by 1/B day/mm per day);
    v0_mm_per_day: steady-creep velocity before the onset; p_accel: F-test p-value of the
    curve against a straight line, corrected for autocorrelation; improvement: share of the
    straight line's residual sum of squares the curve removes; n / n_eff: points and
    effective independent points; rho: lag-1 residual autocorrelation.
    """

    ttf_s: float
    lower_ttf_s: float
    upper_ttf_s: float | None
    onset_age_s: float
    b_mm: float
    v0_mm_per_day: float
    p_accel: float
    improvement: float
    n: int
    n_eff: float
    rho: float

    @property
    def a_day_per_mm(self) -> float:
        """Intercept of the equivalent line ``1/v = a + b·(t − t_ref)`` (t in days, v in mm/day)."""
        return self.ttf_s / DAY_S / self.b_mm

    @property
    def b_per_mm(self) -> float:
        return -1.0 / self.b_mm


def fit_voight(
    t_s: FloatArray,
    disp_mm: FloatArray,
    weight: FloatArray,
    *,
    t_ref_s: float,
    time_scale: float = 1.0,
    alpha: float = 2.0,
) -> VoightFit | None:
    """Fit steady creep then ``S = c − B·ln(t_f − t)`` by weighted least squares.

    t_s: (m,) times, epoch s, ≤ t_ref_s (the newest reading); disp_mm: (m,) displacement
    oriented so that the movement is positive; weight: (m,) e.g. readings per bin.
    The profile runs over a grid of onset ages × failure times; for each pair the model
    is linear in ``(c, B)``. None when fewer than 8 points or no accelerating curve fits.
    time_scale: both grids (failure times and onset ages) are multiplied by it: 1/8 looks
    for failures developing over hours, 8 for failures developing over months.
    alpha: Voight's exponent; with q = 1/(α − 1) the tertiary displacement is
    ``c − B·(t_f − t)^(1−q)/(1−q)`` (``c − B·ln(t_f − t)`` at α = 2). The ``1/v`` line
    properties of the result hold for α = 2 only.
    """
    m = t_s.size
    if m < 8:
        return None
    t = (t_s - t_ref_s) / DAY_S  # (m,) ≤ 0
    span = float(-t[0])
    grid = GRID_DAYS * time_scale
    onset_ages = ONSET_AGE_DAYS * time_scale
    ages = np.append(onset_ages[span > onset_ages], span)  # the last: whole window tertiary
    w = weight / weight.sum()
    y = disp_mm - float(np.dot(w, disp_mm))
    syy = float(np.dot(w, y * y))
    if syy <= 0:
        return None
    # Sums over the tertiary part (t ≥ −age) of the Voight term come from one
    # indicator-matrix product; the steady part before the onset is linear in t, so
    # its sums need only Σ w, w·t, w·t², w·y, w·t·y. O(A·G·m) flops in BLAS instead
    # of building (A, G, m) arrays.
    q = 1.0 / (alpha - 1.0)
    log_law = abs(q - 1.0) < 1e-9

    def basis(tau: FloatArray) -> FloatArray:
        """Tertiary displacement per unit B at time to failure ``tau`` (days), up to a constant."""
        out: FloatArray = -np.log(tau) if log_law else -(tau ** (1.0 - q)) / (1.0 - q)
        return out

    voight = basis(grid[None, :] - t[:, None])  # (m, G): rows are contiguous for cumsum
    wl = voight * w[:, None]
    g_cols = wl.shape[1]
    cols = np.concatenate((wl, wl * voight, wl * y[:, None], np.stack((w, w * t, w * t * t, w * y, w * t * y), 1)), 1)
    total = cols.sum(axis=0)
    tc = t - float(np.dot(w, t))
    sse_lin = syy - float(np.dot(w, tc * y)) ** 2 / float(np.dot(w, tc * tc))

    def profile(ages: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """``(B, SSE, c0, 1/lead)``, each (A, G); SSE is inf where the curve is not accelerating."""
        # The tertiary part of onset age a is the suffix t ≥ −a: suffix sums at the A
        # split points from one reduceat pass (a BLAS call's thread start-up costs more).
        split = np.minimum(np.searchsorted(t, -ages, side="left"), m - 1)
        order = np.argsort(split)
        starts = split[order]
        seg_sums = np.add.reduceat(cols, starts, axis=0)
        seg_sums[np.append(np.diff(starts) == 0, False)] = 0.0  # repeated starts: count once
        tert_sums = np.empty_like(seg_sums)
        tert_sums[order] = np.cumsum(seg_sums[::-1], axis=0)[::-1]
        suf_l = tert_sums[:, :g_cols]
        suf_ll = tert_sums[:, g_cols : 2 * g_cols]
        suf_ly = tert_sums[:, 2 * g_cols : 3 * g_cols]
        pw, pt, ptt, py, pty = (total[None, 3 * g_cols :] - tert_sums[:, 3 * g_cols :]).T
        lead = grid[None, :] + ages[:, None]  # t_f − t_on, (A, G)
        # velocity per unit B at the onset (inv), and the steady line's intercept
        if log_law:
            c0 = -np.log(lead) + ages[:, None] / lead
            inv = 1.0 / lead
        else:
            inv = lead ** (-q)
            c0 = basis(lead) + ages[:, None] * inv
        s1 = c0 * pw[:, None] + pt[:, None] * inv + suf_l
        s2 = c0 * c0 * pw[:, None] + 2.0 * c0 * pt[:, None] * inv + ptt[:, None] * inv * inv + suf_ll
        suy = c0 * py[:, None] + pty[:, None] * inv + suf_ly  # y is centred
        suu = s2 - s1 * s1  # w sums to 1
        with np.errstate(divide="ignore", invalid="ignore"):
            b = suy / suu
            sse = syy - suy * suy / suu
        sse_v: FloatArray = np.where((b > 0) & (suu > 1e-12 * s2), sse, np.inf)
        return b, sse_v, c0, inv

    b, sse_v, c0, inv = profile(ages)
    if not np.isfinite(sse_v).any():
        return None
    # Refine the onset between the neighbours of the best coarse age: the coarse grid's
    # misfit would otherwise bias the failure time and hide in a too-narrow interval.
    ia0 = int(np.argmin(sse_v.min(axis=1)))
    fine = np.linspace(ages[max(ia0 - 1, 0)], ages[min(ia0 + 1, ages.size - 1)], 9)
    b_f, sse_f, c0_f, inv_f = profile(fine)
    ages = np.concatenate((ages, fine))
    b = np.concatenate((b, b_f))
    sse_v = np.concatenate((sse_v, sse_f))
    c0 = np.concatenate((c0, c0_f))
    inv = np.concatenate((inv, inv_f))
    ia, k = np.unravel_index(int(np.argmin(sse_v)), sse_v.shape)
    g = np.where(t >= -ages[ia], voight[:, k], c0[ia, k] + t * inv[ia, k])
    resid = y - b[ia, k] * (g - float(np.dot(w, g)))
    denom = float(np.dot(resid, resid))
    rho = float(np.dot(resid[1:], resid[:-1])) / denom if denom > 0 else 0.0
    rho = min(max(rho, 0.0), 0.95)
    n_eff = max(6.0, m * (1.0 - rho) / (1.0 + rho))
    dof = n_eff - 4.0
    best = float(sse_v[ia, k])
    scale = max(best, 1e-12 * syy)
    f = max(sse_lin - best, 0.0) / 2.0 / (scale / dof)
    p = float(fdtrc(2.0, dof, f))
    # Profile over t_f (the onset free): the 95 % interval of the failure time.
    prof = sse_v.min(axis=0)
    inside = np.flatnonzero(np.isfinite(prof) & (prof <= best * (1.0 + float(fdtri(1.0, dof, 0.95)) / dof)))
    # The boundary lies between grid points: widen by one step each side, never narrower.
    lo = float(grid[max(int(inside[0]) - 1, 0)]) * DAY_S
    hi = None if inside[-1] >= grid.size - 2 else float(grid[int(inside[-1]) + 1]) * DAY_S
    ttf = _refine(grid, int(k), sse_v[ia]) * DAY_S
    bb = float(b[ia, k])
    return VoightFit(
        ttf_s=ttf,
        lower_ttf_s=min(lo, ttf),
        upper_ttf_s=None if hi is None else max(hi, ttf),
        onset_age_s=float(ages[ia]) * DAY_S,
        b_mm=bb,
        v0_mm_per_day=bb / (float(grid[k]) + float(ages[ia])) if log_law else bb * float(inv[ia, k]),
        p_accel=p,
        improvement=1.0 - best / sse_lin if sse_lin > 0 else 0.0,
        n=m,
        n_eff=n_eff,
        rho=rho,
    )


def _refine(grid: FloatArray, k: int, sse: FloatArray) -> float:
    """Parabolic interpolation of the profile minimum in log(t_f) between grid neighbours."""
    g = np.log(grid)
    if 0 < k < sse.size - 1 and np.isfinite(sse[k - 1]) and np.isfinite(sse[k + 1]):
        y0, y1, y2 = float(sse[k - 1]), float(sse[k]), float(sse[k + 1])
        curv = y0 - 2.0 * y1 + y2
        if curv > 0:
            step = 0.5 * (y0 - y2) / curv
            h = float(g[k + 1] - g[k])
            return math.exp(float(g[k]) + max(-1.0, min(1.0, step)) * h)
    return float(grid[k])
