"""The reference position of a displacement sensor: which one the detectors use and since
when, its provenance, and re-baselining (an audited event in the sensor's chain)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.auth import PrincipalDep, Role
from api.deps import ConnDep
from api.errors import BadRequest
from api.routes.integrity import SensorDep
from api.schemas import Aware
from db import references
from db.references import Reference

router = APIRouter(tags=["integrity"])

_DISPLACEMENT = ("gnss", "total_station", "crack", "inclinometer")


class ReferenceOut(BaseModel):
    channel: str
    value: float = Field(description="in the channel's unit (mm)")
    source: str = Field(description="registry, first_reading or rebaseline")
    since: datetime | None = Field(
        description="re-baseline: readings before it are of the earlier installation and not judged; "
        "first_reading: the first reading's time; registry: when the analysis first saw this value "
        "(null: not yet)"
    )
    actor: str
    recorded_at: datetime | None
    reason: str | None = None
    seq: int | None = Field(default=None, description="a re-baseline's entry in the sensor's chain")
    basis_n: int | None = Field(default=None, description="first_reading: how many first readings (their median)")


class ReferencesOut(BaseModel):
    mine_code: str
    sensor_code: str
    current: list[ReferenceOut] = Field(description="the reference each displacement channel is judged against")
    history: list[ReferenceOut] = Field(description="every recorded reference, oldest first: the provenance")


class RebaselineIn(BaseModel):
    since: Aware = Field(description="measurement time of the new installation; readings before it are not judged")
    values: dict[str, Annotated[float, Field(allow_inf_nan=False)]] | None = Field(
        default=None,
        description="the new reference of every displacement channel (e.g. a survey); "
        "omitted: the median of each channel's first 6 valid readings at or after since",
    )
    reason: str = Field(min_length=1, max_length=2000, description="e.g. prism reinstalled after blasting")


def _out(r: Reference) -> ReferenceOut:
    return ReferenceOut(
        channel=r.channel,
        value=r.value,
        source=r.source,
        since=r.since,
        actor=r.actor,
        recorded_at=r.recorded_at,
        reason=r.reason,
        seq=r.seq,
        basis_n=r.basis_n,
    )


async def _current(conn: ConnDep, row: SensorDep) -> list[ReferenceOut]:
    baseline = references.registry_baseline(row["baseline"])
    found = references.effective(await references.newest_rows(conn, [row["id"]]), baseline)
    out: list[ReferenceOut] = []
    for ch in row["channels"]:
        if ch in found:
            out.append(_out(found[ch]))
        elif ch in baseline:
            out.append(
                ReferenceOut(
                    channel=ch, value=baseline[ch], source="registry", since=None, actor="registry", recorded_at=None
                )
            )
    return out


@router.get(
    "/mines/{mine}/sensors/{sensor}/reference",
    response_model=ReferencesOut,
    summary="The reference position each displacement channel is judged against, and its provenance",
)
async def get_reference(conn: ConnDep, row: SensorDep) -> ReferencesOut:
    return ReferencesOut(
        mine_code=row["mine_code"],
        sensor_code=row["code"],
        current=await _current(conn, row),
        history=[_out(r) for r in await references.history(conn, row["id"])],
    )


@router.post(
    "/mines/{mine}/sensors/{sensor}/reference",
    response_model=ReferencesOut,
    status_code=201,
    summary="Re-baseline (reinstalled prism, new antenna): a new reference from a time on, chained and audited",
)
async def rebaseline(conn: ConnDep, who: PrincipalDep, row: SensorDep, body: RebaselineIn) -> ReferencesOut:
    who.require(Role.OPERATOR, "re-baseline a sensor")
    if row["kind"] not in _DISPLACEMENT:
        raise BadRequest(f"a {row['kind']} has no reference position; only {', '.join(_DISPLACEMENT)} do")
    try:
        await references.rebaseline(
            conn,
            row["id"],
            list(row["channels"]),
            since=body.since,
            values=body.values,
            reason=body.reason,
            actor=who.actor,
        )
    except references.RebaselineError as exc:
        raise BadRequest(str(exc)) from None
    return await get_reference(conn, row)
