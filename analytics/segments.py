"""Gap handling: a gap is missing data, so series are split at gaps, never bridged."""

from __future__ import annotations

import numpy as np

from analytics._arrays import FloatArray, IntArray


def segment_ids(t_s: FloatArray, *, max_gap_s: float) -> IntArray:
    """(n,) segment number of each sample, 0-based; a new segment starts after each gap.

    t_s: (n,) strictly increasing times, s. A gap is a spacing greater than ``max_gap_s``.
    """
    ids = np.zeros(t_s.size, dtype=np.int64)
    if t_s.size > 1:
        np.cumsum(np.diff(t_s) > max_gap_s, out=ids[1:])
    return ids


def segment_bounds(seg: IntArray) -> tuple[IntArray, IntArray]:
    """``(starts, stops)``, each (k,): the half-open index range of every segment.

    seg: (n,) non-decreasing segment ids as from :func:`segment_ids`.
    """
    if seg.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    change = np.flatnonzero(np.diff(seg)) + 1
    starts = np.concatenate((np.zeros(1, dtype=np.int64), change))
    stops = np.concatenate((change, np.array([seg.size], dtype=np.int64)))
    return starts, stops


def local_segment_ids(t_s: FloatArray, *, interval_s: float, gap_intervals: float, neighbours: int = 3) -> IntArray:
    """:func:`segment_ids` with a gap measured against the local sampling, not only the nominal.

    A spacing is a gap when it exceeds ``gap_intervals`` times the larger of ``interval_s``
    and the median of the ``neighbours`` spacings on each side of it. A sensor registered
    at 10 minutes whose history is hourly (or that fell back from fast sampling in an alarm
    state) is then not cut at every reading, while an outage among regular readings still is.
    t_s: (n,) strictly increasing times, s.
    """
    ids = np.zeros(t_s.size, dtype=np.int64)
    if t_s.size < 2:
        return ids
    dt = np.diff(t_s)
    k = neighbours
    padded = np.concatenate((np.full(k, np.nan), dt, np.full(k, np.nan)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * k + 1)
    around = np.delete(windows, k, axis=1)  # the spacing itself does not count
    with np.errstate(all="ignore"):
        local = np.nanmedian(np.where(np.isnan(around).all(axis=1, keepdims=True), interval_s, around), axis=1)
    np.cumsum(dt > gap_intervals * np.maximum(local, interval_s), out=ids[1:])
    return ids
