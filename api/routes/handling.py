"""Closed-loop handling (闭环) and supervision (督办) of alerts.

acknowledge → handle (the five fixed, 五落实) → resolve → verify (验收) → close (销号).
Operators acknowledge, handle and resolve; supervisors verify (or reject back to
handling) and close; a supervisor at a level above the mine supervises.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.auth import Principal, PrincipalDep, Role, narrow
from api.deps import ConnDep
from api.errors import BadRequest, Conflict, Forbidden, NotFound
from api.routes.alerts import AlertId, alert_schema, visible_alert
from api.schemas import Alert, Aware
from api.scope import MineQuery, RegionQuery
from core.model import Level, region_prefix
from db import handling, queries
from db.pool import Conn

router = APIRouter(tags=["handling"])


Text = Annotated[str, Field(min_length=1, max_length=4000)]


class AckBody(BaseModel):
    note: str | None = Field(default=None, max_length=4000)


class NoteBody(BaseModel):
    note: Text = Field(description="what was done or found; kept in the alert's history")


class HandleBody(BaseModel):
    """The five fixed (五落实); all five are required."""

    responsible_person: Annotated[str, Field(min_length=1, max_length=200)]
    measures: Text
    funds: Annotated[str, Field(min_length=1, max_length=500)]
    deadline: Aware
    contingency_plan: Text
    note: str | None = Field(default=None, max_length=4000)


class SuperviseBody(BaseModel):
    deadline: Aware = Field(description="by when the alert must be handled and closed")
    note: Text


class Supervision(BaseModel):
    id: int
    alert_id: int
    region_code: str = Field(description="the supervising level's region")
    region_name: str
    actor: str
    deadline: datetime
    note: str
    created_at: datetime
    mine_code: str
    mine_name: str
    alert_level: str
    alert_stage: str
    overdue: bool


def _actor(who: Principal) -> handling.Actor:
    return handling.Actor(who.actor, who.token_id)


def _within(who: Principal) -> handling.Within:
    return handling.Within(who.scope.prefix, who.scope.mine_code)


async def _step(
    conn: Conn, who: Principal, alert_id: int, action: str, note: str | None, five: handling.FiveFixed | None = None
) -> Alert:
    await visible_alert(conn, who, alert_id)
    needs = Role.SUPERVISOR if action in ACCEPTANCE else Role.OPERATOR
    who.require(needs, f"{action} alerts")
    if action in ACCEPTANCE:
        await _require_supervising_level(conn, who, alert_id, action)
    try:
        await handling.apply_step(conn, alert_id, action, _actor(who), note=note, five_fixed=five, within=_within(who))
    except handling.HandlingError as exc:
        raise Conflict(str(exc)) from None
    except handling.AlertMissing:
        raise NotFound(f"alert {alert_id} does not exist") from None
    row = await queries.alert(conn, alert_id)
    assert row is not None
    return alert_schema(row)


#: Acceptance (验收) and closure (销号): under supervision, for the supervising level or above.
ACCEPTANCE = frozenset({"verify", "reject", "close"})


def covers(who: Principal, region_code: str) -> bool:
    """Whether ``who`` stands at the level of ``region_code`` or above it, over it."""
    if who.scope_kind == "all":
        return True
    if who.scope_kind != "region":
        return False
    return region_prefix(region_code).startswith(region_prefix(who.scope_code))


async def _require_supervising_level(conn: Conn, who: Principal, alert_id: int, action: str) -> None:
    """督办 from above: an alert a higher level supervises is accepted and closed by that level
    (or one above it), not by the level being supervised."""
    for sup in await handling.supervisions_of(conn, alert_id):
        if not covers(who, sup["region_code"]):
            raise Forbidden(
                f"alert {alert_id} is under supervision (督办) by {sup['region_name']} ({sup['region_code']}): "
                f"only a supervisor of that region or above may {action} it"
            )


@router.post("/alerts/{alert_id}/acknowledge", response_model=Alert, summary="Acknowledge (operator)")
async def acknowledge(conn: ConnDep, who: PrincipalDep, alert_id: AlertId, body: AckBody | None = None) -> Alert:
    return await _step(conn, who, alert_id, "acknowledge", body.note if body else None)


@router.post(
    "/alerts/{alert_id}/handle",
    response_model=Alert,
    summary="Put in handling with the five fixed (operator); again to revise them",
)
async def handle(conn: ConnDep, who: PrincipalDep, alert_id: AlertId, body: HandleBody) -> Alert:
    five = handling.FiveFixed(
        body.responsible_person.strip(),
        body.measures.strip(),
        body.funds.strip(),
        body.deadline,
        body.contingency_plan.strip(),
    )
    return await _step(conn, who, alert_id, "handle", body.note, five)


@router.post("/alerts/{alert_id}/resolve", response_model=Alert, summary="Measures done (operator)")
async def resolve(conn: ConnDep, who: PrincipalDep, alert_id: AlertId, body: NoteBody) -> Alert:
    return await _step(conn, who, alert_id, "resolve", body.note)


@router.post("/alerts/{alert_id}/verify", response_model=Alert, summary="Accept the handling, 验收 (supervisor)")
async def verify(conn: ConnDep, who: PrincipalDep, alert_id: AlertId, body: NoteBody) -> Alert:
    return await _step(conn, who, alert_id, "verify", body.note)


@router.post(
    "/alerts/{alert_id}/reject", response_model=Alert, summary="Refuse acceptance: back to handling (supervisor)"
)
async def reject(conn: ConnDep, who: PrincipalDep, alert_id: AlertId, body: NoteBody) -> Alert:
    return await _step(conn, who, alert_id, "reject", body.note)


@router.post(
    "/alerts/{alert_id}/close",
    response_model=Alert,
    summary="Close, 销号 (supervisor): only verified alerts whose condition has cleared",
)
async def close(conn: ConnDep, who: PrincipalDep, alert_id: AlertId, body: NoteBody) -> Alert:
    return await _step(conn, who, alert_id, "close", body.note)


def _supervising_region(who: Principal, alert_region: str) -> str:
    if who.scope_kind == "region":
        return who.scope_code
    return alert_region[:2] + "0000"  # an all-seeing token supervises on behalf of the province


@router.post(
    "/alerts/{alert_id}/supervise",
    response_model=Supervision,
    summary="Supervise (督办) an alert of the subtree with a deadline (supervisor above the mine)",
)
async def supervise(conn: ConnDep, who: PrincipalDep, alert_id: AlertId, body: SuperviseBody) -> Supervision:
    row = await visible_alert(conn, who, alert_id)
    who.require(Role.SUPERVISOR, "supervise alerts")
    if who.scope_kind == "mine":
        raise Forbidden("supervision (督办) comes from a level above the mine: a county, city or province token")
    if body.deadline <= datetime.now(UTC):
        raise BadRequest("deadline is in the past; give a future time with its offset")
    region = _supervising_region(who, row["region_code"])
    try:
        sup_id = await handling.supervise(
            conn, alert_id, _actor(who), region_code=region, deadline=body.deadline, note=body.note, within=_within(who)
        )
    except handling.HandlingError as exc:
        raise Conflict(str(exc)) from None
    except handling.AlertMissing:
        raise NotFound(f"alert {alert_id} does not exist") from None
    rows = await handling.supervisions_of(conn, alert_id)
    return next(_supervision(r) for r in rows if r["id"] == sup_id)


def _supervision(r: object) -> Supervision:
    d = dict(r)  # type: ignore[call-overload]
    return Supervision(
        id=d["id"],
        alert_id=d["alert_id"],
        region_code=d["region_code"],
        region_name=d["region_name"],
        actor=d["actor"],
        deadline=d["deadline"],
        note=d["note"],
        created_at=d["created_at"],
        mine_code=d["mine_code"],
        mine_name=d["mine_name"],
        alert_level=Level(d["level"]).label,
        alert_stage=d["stage"],
        overdue=d["overdue"],
    )


@router.get("/alerts/{alert_id}/supervisions", response_model=list[Supervision])
async def alert_supervisions(conn: ConnDep, who: PrincipalDep, alert_id: AlertId) -> list[Supervision]:
    await visible_alert(conn, who, alert_id)
    return [_supervision(r) for r in await handling.supervisions_of(conn, alert_id)]


@router.get(
    "/supervisions",
    response_model=list[Supervision],
    summary="Supervised alerts of the subtree, earliest deadline first; both the supervising level and the mine see them",
)
async def list_supervisions(
    conn: ConnDep,
    who: PrincipalDep,
    region: RegionQuery = None,
    mine: MineQuery = None,
    overdue: Annotated[bool, Query(description="only those past the deadline and not closed")] = False,
    include_closed: Annotated[bool, Query(description="also supervisions of closed alerts")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[Supervision]:
    scope = await narrow(conn, who, region=region, mine=mine)
    rows = await handling.supervisions(
        conn,
        prefix=scope.prefix,
        mine_code=scope.mine_code,
        overdue_only=overdue,
        open_only=not include_closed,
        limit=limit,
    )
    return [_supervision(r) for r in rows]
