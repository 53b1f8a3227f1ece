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
