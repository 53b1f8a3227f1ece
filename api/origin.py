"""Cross-site request forgery: writes authenticated by the session cookie must come from the
pages themselves.

A browser attaches the session cookie to any request for this site, whoever's page makes
it. SameSite=Strict already keeps it off cross-site requests in current browsers; this is
the second, independent check, and the one that holds for a sibling origin (another port
or subdomain of the same site, which SameSite treats as the same site). For POST, PUT,
PATCH and DELETE carrying the cookie (and no ``Authorization`` header):

- the ``Origin`` header must be the API's own origin (or one of ``SLOPEWATCH_API_ORIGINS``);
  without ``Origin``, ``Sec-Fetch-Site`` must be ``same-origin``; with neither, refused;
- a body must be ``application/json``, and POST, PUT and PATCH must have one: an HTML form
  cannot send JSON, and a script on another origin cannot without a CORS preflight, which
  this API never grants.

Logging in (``POST /api/v1/session``, no cookie yet) is held to the same origin rule when the
browser says where it comes from, so another site cannot log a visitor in as someone else.
Requests with ``Authorization: Bearer`` are not affected: a browser never adds that header
by itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from http.cookies import CookieError, SimpleCookie
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_origin(text: str) -> str | None:
    """``scheme://host:port`` with the default port made explicit; None if it is not an origin."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return f"{parts.scheme}://{parts.hostname.lower()}:{port or DEFAULT_PORTS[parts.scheme]}"


def parse_origins(text: str) -> frozenset[str]:
    """The comma-separated ``SLOPEWATCH_API_ORIGINS``; raises ValueError on one that is not an origin."""
    out = set()
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        origin = normalise_origin(item)
        if origin is None:
            raise ValueError(f"{item!r} is not an origin like https://monitor.example.cn")
        out.add(origin)
    return frozenset(out)


class SameOriginWrites:
    """Refuse cookie-authenticated writes from other origins, and without a JSON body, with
    403 in the API's error shape; ``on_refusal`` is called with the reason (for a metric)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        cookie: str,
        login_path: str,
        allowed: Iterable[str] = (),
        on_refusal: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.cookie = cookie
        self.login_path = login_path
        self.allowed = frozenset(allowed)
        self.on_refusal = on_refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in UNSAFE:
            problem = self._problem(scope)
            if problem is not None:
                reason, message = problem
                if self.on_refusal is not None:
                    self.on_refusal(reason)
                await _refuse(send, message)
                return
        await self.app(scope, receive, send)

    def _problem(self, scope: Scope) -> tuple[str, str] | None:
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            # Repeated headers: keep them all visible, so that two Origins cannot hide one.
            headers[name] = headers[name] + b"," + value if name in headers else value
        if b"authorization" in headers:
            return None
        has_cookie = self._has_cookie(headers.get(b"cookie", b""))
        is_login = scope["path"] == self.login_path
        if not has_cookie and not is_login:
            return None  # nothing to forge: the request will be 401
        origin = headers.get(b"origin")
        fetch_site = headers.get(b"sec-fetch-site")
        if origin is not None:
            if not self._same_origin(scope, headers, origin.decode("latin-1")):
                return "cross_origin", (
                    "a write with the session cookie must come from this site's own pages "
                    f"(Origin {origin.decode('latin-1')[:100]!r} is not this site); "
                    "other clients send 'Authorization: Bearer <token>'"
                )
        elif fetch_site is not None:
            if fetch_site != b"same-origin":
                return "cross_origin", (
                    f"a write with the session cookie must come from this site's own pages "
                    f"(Sec-Fetch-Site: {fetch_site.decode('latin-1')[:40]})"
                )
        elif has_cookie:
            return "no_origin", (
                "a write with the session cookie must say where it comes from (Origin or Sec-Fetch-Site); "
                "other clients send 'Authorization: Bearer <token>'"
            )
        if has_cookie or origin is not None or fetch_site is not None:
            return self._body_problem(scope, headers)
        return None

    def _has_cookie(self, raw: bytes) -> bool:
        if not raw:
            return False
        jar = SimpleCookie()
        try:
            jar.load(raw.decode("latin-1"))
        except CookieError:
            return self.cookie.encode() in raw  # unreadable: treat a mention as the cookie, to be safe
        morsel = jar.get(self.cookie)
        return morsel is not None and bool(morsel.value)

    def _same_origin(self, scope: Scope, headers: dict[bytes, bytes], origin_text: str) -> bool:
        origin = normalise_origin(origin_text)
        if origin is None:  # "null" (sandboxed frames, data: URLs) and junk
            return False
        if origin in self.allowed:
            return True
        host = headers.get(b"host")
        if host is None or b"," in host:
            return False
        own = normalise_origin(f"{scope.get('scheme', 'http')}://{host.decode('latin-1')}")
        return own is not None and own == origin

    @staticmethod
    def _body_problem(scope: Scope, headers: dict[bytes, bytes]) -> tuple[str, str] | None:
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        declared = headers.get(b"content-length")
        has_body = b"transfer-encoding" in headers or (declared is not None and declared.strip() not in (b"", b"0"))
        if (scope["method"] != "DELETE" or has_body) and content_type != b"application/json":
            return "not_json", (
                f"a {scope['method']} with the session cookie must carry a JSON body "
                "(Content-Type: application/json), even if it is only {}"
            )
        return None


async def _refuse(send: Send, message: str) -> None:
    body = json.dumps({"error": "forbidden", "message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
