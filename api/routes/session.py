"""Who am I, and a cookie session for the web pages.

Logging in with a token creates a server-side session (db/sessions.py); the cookie holds
only the session's random id. Logging out ends the session in the database, so a copied
cookie is worthless afterwards."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from api.auth import SESSION_COOKIE, Principal, PrincipalDep, check_token, client_address
from api.deps import ConnDep, SettingsDep
from db import sessions

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


@router.post(
    "/session",
    response_model=Me,
    summary="Log in with a token: starts a session and sets an HttpOnly cookie holding its id (not the token)",
)
async def login(body: Login, request: Request, response: Response, conn: ConnDep, settings: SettingsDep) -> Me:
    who = await check_token(request, conn, body.token.strip())
    previous = request.cookies.get(SESSION_COOKIE)
    if previous and len(previous) <= 200:
        await sessions.revoke(conn, previous)  # a new login replaces the browser's old session
    _, session_secret = await sessions.create(
        conn, who.token_id, max_s=settings.api_session_max_s, client=client_address(request)
    )
    response.set_cookie(
        SESSION_COOKIE,
        session_secret,
        max_age=int(settings.api_session_max_s),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return me_of(who)


@router.delete("/session", status_code=204, summary="Log out: ends the session and clears its cookie")
async def logout(request: Request, response: Response, conn: ConnDep) -> Response:
    secret = request.cookies.get(SESSION_COOKIE)
    if secret and len(secret) <= 200:
        await sessions.revoke(conn, secret)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    response.status_code = 204
    return response
