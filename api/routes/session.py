"""Who am I, and a cookie session for the web pages."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from api.auth import SESSION_COOKIE, Principal, PrincipalDep, check_token
from api.deps import ConnDep

router = APIRouter(tags=["access"])


class Me(BaseModel):
    token_id: int
    name: str
    role: str = Field(description="viewer, operator, supervisor or admin")
    scope_kind: str = Field(description="all, region or mine")
    scope_code: str = Field(description="the GB/T 2260 code or the mine code the token is bound to")
    level: str = Field(description="mine, county, city, province or all")


class Login(BaseModel):
    token: str = Field(min_length=1, max_length=200)


def me_of(who: Principal) -> Me:
    return Me(
        token_id=who.token_id,
        name=who.name,
        role=who.role.label,
        scope_kind=who.scope_kind,
        scope_code=who.scope_code,
        level=who.level,
    )


@router.get("/me", response_model=Me, summary="The caller's token: name, role and scope")
async def me(who: PrincipalDep) -> Me:
    return me_of(who)


@router.post("/session", response_model=Me, summary="Log in with a token: sets an HttpOnly session cookie")
async def login(body: Login, request: Request, response: Response, conn: ConnDep) -> Me:
    who = await check_token(request, conn, body.token.strip())
    response.set_cookie(
        SESSION_COOKIE,
        body.token.strip(),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return me_of(who)


@router.delete("/session", status_code=204, summary="Log out: clears the session cookie")
async def logout(response: Response) -> Response:
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.status_code = 204
    return response
