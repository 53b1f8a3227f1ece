"""Data gaps of one sensor: where readings are missing, made visible."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.caps import ExpensiveRead
from api.deps import ConnDep
from api.routes.integrity import MAX_SENSOR_WINDOW, End, SensorDep, Start, window
from db.gaps import GAP_FACTOR, sensor_gaps

router = APIRouter(tags=["gaps"])


class GapOut(BaseModel):
    start: datetime = Field(description="last reading before the gap (the window start if open_start)")
    end: datetime = Field(description="first reading after the gap (now if ongoing)")
    duration_s: float
    expected_interval_s: float = Field(description="the sensor's registered reporting interval")
    open_start: bool = Field(description="no reading before it: it begins at the window start or earlier")
    ongoing: bool = Field(description="no reading since: the sensor is silent now")


class Gaps(BaseModel):
    mine_code: str
    sensor_code: str
    start: datetime
    end: datetime
    factor: float = Field(description="a gap is a stretch longer than factor x expected_interval_s without readings")
    gaps: list[GapOut]
    truncated: bool = Field(description="more gaps than limit; ask for a later window")


@router.get(
    "/mines/{mine}/sensors/{sensor}/gaps",
    response_model=Gaps,
    summary="Stretches without readings longer than factor x the registered interval",
)
async def list_gaps(
    conn: ConnDep,
    row: SensorDep,
    _slot: ExpensiveRead,
    start: Start = None,
    end: End = None,
    factor: Annotated[float, Query(ge=1.5, le=1000, description="k; default 3")] = GAP_FACTOR,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> Gaps:
    start_t, end_t = window(start, end, MAX_SENSOR_WINDOW)
    found = await sensor_gaps(conn, row["id"], start_t, end_t, factor=factor, limit=limit + 1)
    return Gaps(
        mine_code=row["mine_code"],
        sensor_code=row["code"],
        start=start_t,
        end=end_t,
        factor=factor,
        gaps=[
            GapOut(
                start=g.start,
                end=g.end,
                duration_s=g.duration_s,
                expected_interval_s=g.expected_interval_s,
                open_start=g.open_start,
                ongoing=g.ongoing,
            )
            for g in found[:limit]
        ],
        truncated=len(found) > limit,
    )
