"""API errors: one JSON shape, ``{"error": code, "message": text}``, mapped in one place."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from db.pool import DatabaseUnavailable

logger = logging.getLogger(__name__)


class ApiError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(ApiError):
    status = 404
    code = "not_found"


class BadRequest(ApiError):
    status = 400
    code = "bad_request"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    """The caller can see the thing but its role may not do this to it."""

    status = 403
    code = "forbidden"


class Conflict(ApiError):
    """The request is valid but the thing is not in a state that allows it."""

    status = 409
    code = "conflict"


class TooManyRequests(ApiError):
    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ErrorDetail(BaseModel):
    where: str = Field(description="the invalid part of the request, e.g. query.limit or body.deadline")
    problem: str


class ErrorBody(BaseModel):
    """Every error answer of the API."""

    error: str = Field(description="a stable code: not_found, invalid_request, unauthorized, payload_too_large, ...")
    message: str = Field(description="what is wrong, for a person")
    details: list[ErrorDetail] | None = Field(default=None, description="each problem (invalid_request only)")


#: Documents the error shape on every operation (FastAPI's own 422 schema is not what is sent).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorBody, "description": "the request was refused; `error` says why"},
}


def _body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": code, "message": message, **extra}


def install_error_handlers(app: FastAPI, *, is_admin: Callable[[Request], bool] | None = None) -> None:
    """Map every error to the JSON shape. ``is_admin`` says whether a caller may see internals
    (database host, driver errors) in a 503; without it nobody does."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers: dict[str, str] = {}
        if isinstance(exc, Unauthorized):
            headers["WWW-Authenticate"] = 'Bearer realm="slopewatch"'
        if isinstance(exc, TooManyRequests):
            headers["Retry-After"] = str(exc.retry_after_s)
        return JSONResponse(_body(exc.code, exc.message), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"where": ".".join(str(p) for p in err.get("loc", ())), "problem": err.get("msg", "")}
            for err in exc.errors()
        ]
        first = details[0] if details else {"where": "request", "problem": "invalid"}
        message = f"{first['where']}: {first['problem']}"
        return JSONResponse(jsonable_encoder(_body("invalid_request", message, details=details)), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = str(exc.detail) if exc.status_code != 404 else f"no such path: {request.url.path}"
        return JSONResponse(_body(code, message), status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(asyncpg.DataError)
    async def _data(request: Request, exc: asyncpg.DataError) -> JSONResponse:
        # SQLSTATE class 22 (and asyncpg's own argument checks): a value from the request that
        # PostgreSQL cannot take, such as a NUL in text or a time past year 9999 in UTC.
        # Everything else about the request was valid, so it is the client's value.
        reason = "it contains a NUL character" if "0x00" in str(exc) else "it is out of range or of the wrong type"
        return JSONResponse(_body("bad_request", f"a value in the request cannot be used: {reason}"), status_code=400)

    @app.exception_handler(DatabaseUnavailable)
    async def _db_down(request: Request, exc: DatabaseUnavailable) -> JSONResponse:
        # The exception names the database host and port and the driver's error: the log
        # gets them, an admin gets them, anyone else an incident number to quote.
        incident = secrets.token_hex(4)
        logger.warning("database unavailable incident=%s path=%s: %s", incident, request.url.path, exc)
        message = f"the database is not reachable; try again shortly (incident {incident} in the server's log)"
        if is_admin is not None and is_admin(request):
            message += f": {exc}"
        return JSONResponse(_body("database_unavailable", message), status_code=503)
