"""The web pages: static HTML, CSS and JavaScript modules from ``api/web``, served by the
API process itself so that a monitoring room needs no second server and no network.

Only the files that ship in ``api/web`` are served (the list is read once at start-up),
so no request path can reach anything else. The pages hold no secret: they log in with
``POST /api/v1/session``, which sets the HttpOnly cookie every later request carries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse, Response

from api.errors import NotFound

router = APIRouter(include_in_schema=False)

WEB_DIR: Final = Path(__file__).resolve().parent.parent / "web"
PAGES_PREFIX: Final = "/ui"

_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}

#: Same-origin everything: no CDN, no inline script, no framing by another site.
_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The pages change with each release; revalidating is cheap (ETag from the file).
    "Cache-Control": "no-cache",
}


def _files(root: Path) -> dict[str, Path]:
    """Relative POSIX path -> file, for every servable file under ``root``."""
    if not root.is_dir():
        return {}
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file() and p.suffix in _TYPES}


_FILES: Final = _files(WEB_DIR)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse(f"{PAGES_PREFIX}/", status_code=307)


@router.get(f"{PAGES_PREFIX}/")
async def index() -> Response:
    return _serve("index.html")


@router.get(PAGES_PREFIX + "/{path:path}")
async def asset(path: str) -> Response:
    return _serve(path)


def _serve(path: str) -> Response:
    file = _FILES.get(path)
    if file is None:
        raise NotFound(f"no page or asset {path[:100]!r}")
    return FileResponse(file, media_type=_TYPES[file.suffix], headers=_HEADERS)
