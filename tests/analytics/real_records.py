"""The real records in ``../shared/data/real`` (read in place, never copied into the tree).

``SLOPEWATCH_REAL_DATA`` points elsewhere. A missing record is an error, not a skip: the
tests on real data must run wherever the suite runs (CI has the folder too).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from analytics._arrays import FloatArray

ROOT = Path(__file__).resolve().parents[2]


def real_data_dir() -> Path:
    d = Path(os.environ.get("SLOPEWATCH_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))
    if not d.is_dir():
        raise FileNotFoundError(f"the real records are not at {d} (set SLOPEWATCH_REAL_DATA)")
    return d


@dataclass(frozen=True)
class Record:
    """t_s: (n,) epoch s; disp_mm: name -> (n,) cumulative displacement, mm; failure_s: known
    failure time (epoch s) or None."""

    t_s: FloatArray
    disp_mm: dict[str, FloatArray]
    failure_s: float | None


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def lanzada_f1() -> Record:
    """Crack meter F1 at the Lanzada rock-slope failure, 9–11 Nov 2025: a ~4-minute record
    digitised from a published plot, displacement integrated from its velocity. Failure
    2025-11-11T08:15+01:00 (−15/+45 min); the digitised record runs on to 09:10."""
    rows = _rows(real_data_dir() / "lanzada_2025_crack_F1" / "lanzada_F1_inverse_velocity_digitized.csv")
    t = np.array([datetime.fromisoformat(r["time"]).timestamp() for r in rows])
    x = np.array([float(r["cum_displacement_mm_reconstructed"]) for r in rows])
    return Record(t, {"F1": x}, datetime.fromisoformat("2025-11-11T08:15:00+01:00").timestamp())


def outang_daily() -> Record:
    """Outang landslide (Three Gorges), eight points, one row a day 2016-07-01 … 2020-06-30;
    no failure, a temporary acceleration in Sept–Oct 2017 (up to ~9 mm/day)."""
    rows = _rows(real_data_dir() / "outang_gnss_daily" / "outang_daily.csv")
    t = np.array([datetime.fromisoformat(r["time"]).timestamp() for r in rows])
    cols = [c for c in rows[0] if c.endswith("_cum_disp_mm")]
    disp = {c.removesuffix("_cum_disp_mm"): np.array([float(r[c]) for r in rows]) for c in cols}
    return Record(t, disp, None)
