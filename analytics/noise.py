"""Measurement noise of a sensor, estimated from its own data.

Two views of the same noise:

- :func:`interpolation_residuals` / :func:`white_noise_sigma`: the scatter of each
  reading about the straight line through its two neighbours. A steady (or slowly
  changing) movement cancels, so this sees the sample-to-sample (white) part of the
  noise, robustly (MAD) so that spikes and a minority of fast-moving readings do
  not inflate it.
- :func:`velocity_noise` scales up block-velocity uncertainties when the noise is
  correlated over hours (GNSS multipath, troposphere), judged from how much the
  velocities of neighbouring blocks differ in the quiet part of the window.
"""

from __future__ import annotations

import math

import numpy as np

from analytics._arrays import BoolArray, FloatArray, IntArray
from analytics.segments import segment_bounds

_MAD_TO_SIGMA = 1.4826


def interpolation_residuals(t_s: FloatArray, x: FloatArray, seg: IntArray) -> FloatArray:
    """(n,) residual of each reading from the line through its neighbours, scaled to unit noise.

    t_s: (n,) increasing times; x: (n,) finite values; seg: (n,) segment ids. For
    white noise of standard deviation σ each residual has standard deviation σ.
    NaN at the first and last reading of every segment (no neighbour on one side).
    """
    n = x.size
    out = np.full(n, np.nan)
    if n < 3:
        return out
    dt_prev = t_s[1:-1] - t_s[:-2]
    dt_next = t_s[2:] - t_s[1:-1]
    span = dt_prev + dt_next
    w_prev = dt_next / span
    w_next = dt_prev / span
    r = x[1:-1] - (w_prev * x[:-2] + w_next * x[2:])
    # Var(r) = σ²(1 + w_prev² + w_next²) for independent readings.
    r /= np.sqrt(1.0 + w_prev * w_prev + w_next * w_next)
    inside = (seg[:-2] == seg[1:-1]) & (seg[2:] == seg[1:-1])
    out[1:-1] = np.where(inside, r, np.nan)
    return out


def white_noise_sigma(residuals: FloatArray, *, mask: BoolArray | None = None) -> float:
    """Robust standard deviation of unit-scaled residuals (MAD × 1.4826); NaN if fewer than 5."""
    r = residuals[np.isfinite(residuals)] if mask is None else residuals[mask & np.isfinite(residuals)]
    if r.size < 5:
        return math.nan
    # The residuals are centred on zero by construction (a steady movement cancels), so
    # the median absolute value is the MAD without a second median.
    return float(_MAD_TO_SIGMA * np.median(np.abs(r)))


def velocity_noise(v: FloatArray, se: FloatArray) -> float:
    """Factor (≥ 1) by which the white-noise block-velocity errors ``se`` understate the real scatter.

    v, se: (m,) velocities of consecutive blocks and their white-noise standard errors.
    The difference of neighbouring block velocities is mostly noise in a quiet
    period; the median (robust to the accelerating minority) of its normalised size
    measures the real noise. Returns 1.0 when fewer than 4 pairs are available.
    """
    ok = np.isfinite(v) & np.isfinite(se) & (se > 0)
    vv = v[ok]
    ss = se[ok]
    if vv.size < 5:
        return 1.0
    z = np.diff(vv) / np.sqrt(ss[1:] ** 2 + ss[:-1] ** 2)
    ratio = _MAD_TO_SIGMA * float(np.median(np.abs(z)))
    return max(1.0, ratio)


def long_run_density(
    t_s: FloatArray, x: FloatArray, seg: IntArray, *, block_s: float, min_blocks: float = 5.0
) -> tuple[float, float]:
    """Long-run noise density S (unit of x squared × day) from the scatter of block means.

    t_s, x, seg: (n,) increasing times (s), finite values, segment ids. For noise that
    decorrelates within ``block_s``, the mean of a block of B days varies by ``S / B``
    whatever the correlation inside the block, and the least-squares slope over T days
    by ``12·S / T³``: S is what a velocity's standard error needs, white noise or not.

    Overlapping Allan-type estimate: for block triples ``[t − 1.5B, t − 0.5B)``,
    ``[t − 0.5B, t + 0.5B)``, ``[t + 0.5B, t + 1.5B)`` inside one segment, the second
    difference of the three means cancels a steady movement and has variance ``6·S/B``.
    Centres step by a quarter of a block (four phases: one set of day-aligned blocks
    can be a fluke, several times too quiet); second differences beyond 4 robust σ
    (a burst) are dropped before the mean square.

    Returns ``(S, blocks)``: ``blocks`` is how many block lengths the triples' centres
    cover; the estimate scatters like a χ² with about 2/3 of that many degrees of
    freedom (simulated for white + AR(1) noise). S is NaN when ``blocks`` is fewer
    than ``min_blocks``.
    """
    return long_run_densities(t_s, x, seg, blocks_s=(block_s,), min_blocks=min_blocks)[0]


def long_run_densities(
    t_s: FloatArray, x: FloatArray, seg: IntArray, *, blocks_s: tuple[float, ...], min_blocks: float = 5.0
) -> list[tuple[float, float]]:
    """:func:`long_run_density` for several block lengths, sharing one pass over the data.

    Every block edge lies on one grid of an eighth of the shortest block, laid from the
    start of each segment: one ``searchsorted`` of that grid and prefix sums give every
    block's sum and count. Each block length must be a multiple of a quarter of the
    shortest (e.g. a day and half a day).
    """
    rows = long_run_densities_rows(t_s, x[None, :], seg, blocks_s=blocks_s, min_blocks=min_blocks)
    return [(float(s[0]), covered) for s, covered in rows]


def long_run_densities_rows(
    t_s: FloatArray, x: FloatArray, seg: IntArray, *, blocks_s: tuple[float, ...], min_blocks: float = 5.0
) -> list[tuple[FloatArray, float]]:
    """:func:`long_run_densities` of each row of ``x`` (k, n) on the times ``t_s`` (n,):
    per block length, ``(S (k,), blocks)`` (which blocks count depends on the times only)."""
    unit = min(blocks_s) / 8.0
    steps = [round(b / unit) for b in blocks_s]
    if any(abs(b / unit - k) > 1e-6 or k % 2 for b, k in zip(blocks_s, steps, strict=True)):
        raise ValueError(f"block lengths {blocks_s} must be multiples of a quarter of the shortest")
    k_rows, n = x.shape
    if n < 12:
        return [(np.full(k_rows, math.nan), 0.0) for _ in blocks_s]
    starts, stops = segment_bounds(seg)
    cx = np.zeros((k_rows, n + 1))
    np.cumsum(x, axis=1, out=cx[:, 1:])
    d_parts: list[list[FloatArray]] = [[] for _ in blocks_s]
    covered = [0.0 for _ in blocks_s]
    for a, b in zip(starts, stops, strict=True):
        k_max = int((t_s[b - 1] - t_s[a]) / unit)
        if k_max < 3 * min(steps):
            continue  # shorter than the shortest triple
        # searchsorted within the segment only: a triple never reaches across a gap
        idx = a + np.searchsorted(t_s[a:b], t_s[a] + unit * np.arange(k_max + 1), side="left")
        csum = cx[:, idx]
        for m, k in enumerate(steps):
            h = 3 * k // 2  # 1.5 blocks in grid units
            if k_max < 2 * h:
                continue
            centres = np.arange(h, k_max - h + 1, k // 4)
            e = [centres - h, centres - k // 2, centres + k // 2, centres + h]
            cnt = np.stack([idx[e[i + 1]] - idx[e[i]] for i in range(3)])
            lo = cnt.min(axis=0)
            ok = (lo >= 3) & (2 * lo >= cnt.max(axis=0))
            covered[m] += np.count_nonzero(ok) / 4.0
            if not ok.any():
                continue
            e_ok = [ei[ok] for ei in e]
            means = [(csum[:, e_ok[i + 1]] - csum[:, e_ok[i]]) / cnt[i, ok] for i in range(3)]
            d_parts[m].append(means[0] - 2.0 * means[1] + means[2])
    out: list[tuple[FloatArray, float]] = []
    for m, block_s in enumerate(blocks_s):
        if covered[m] < min_blocks or not d_parts[m]:
            out.append((np.full(k_rows, math.nan), covered[m]))
            continue
        # C order: each row's sums must run over contiguous memory, as for one series
        d = np.ascontiguousarray(np.concatenate(d_parts[m], axis=1))
        dev = np.abs(d - _median_rows(d)[:, None])
        scale = _MAD_TO_SIGMA * _median_rows(dev)
        # Beyond 4 robust σ (a burst) a second difference is dropped; the sums are each
        # row's own dot product, as for one series.
        kept = dev <= 4.0 * scale[:, None]
        whole = ~(scale > 0) | kept.all(axis=1)
        dots = np.vecdot(d, d)
        sizes = np.full(k_rows, float(d.shape[1]))
        for i in np.flatnonzero(~whole):
            di = d[i][kept[i]]
            dots[i] = np.dot(di, di)
            sizes[i] = di.size
        out.append((dots / sizes / 6.0 * block_s / 86_400.0, covered[m]))
    return out


def _median_rows(a: FloatArray) -> FloatArray:
    """(k,): ``np.median(a, axis=1)`` (a: (k, m), m ≥ 1, left unchanged), by one partition when all is finite."""
    if not np.isfinite(a.sum(axis=1)).all():
        out: FloatArray = np.median(a, axis=1)
        return out
    return row_median(a.copy())


def row_median(a: FloatArray) -> FloatArray:
    """(k,): ``np.median(a, axis=1)`` of finite ``a`` (k, m), m ≥ 1, with one partition
    (``a`` is reordered in place): the same two middle values and the same mean of them."""
    m = a.shape[1]
    h = m // 2
    a.partition(h, axis=1)
    hi = a[:, h]
    if m % 2:
        out: FloatArray = hi.copy()
        return out
    mid: FloatArray = (a[:, :h].max(axis=1) + hi) / 2.0
    return mid
