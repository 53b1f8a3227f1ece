"""API tokens: created once and shown once, stored as SHA-256, revoked by id."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from db.pool import Conn

#: Every token starts with this, so a leaked one is easy to find in logs and repositories.
TOKEN_MARK = "swt_"


@dataclass(frozen=True, slots=True)
class TokenRow:
    id: int
    name: str
    role: str
    scope_kind: str
    scope_code: str
    token_prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def new_token() -> str:
    return TOKEN_MARK + secrets.token_urlsafe(32)


TOKEN_COLUMNS = (
    "id",
    "name",
    "role",
    "scope_kind",
    "scope_code",
    "token_prefix",
    "created_at",
    "expires_at",
    "revoked_at",
    "last_used_at",
)
_COLUMNS = ", ".join(TOKEN_COLUMNS)


async def create(
    conn: Conn,
    *,
    name: str,
    role: str,
    scope_kind: str,
    scope_code: str,
    expires_at: datetime | None = None,
    token: str | None = None,
) -> tuple[TokenRow, str]:
    """Store a new token; returns its row and the secret (the only time it is seen)."""
    secret = token if token is not None else new_token()
    row = await conn.fetchrow(
        f"""INSERT INTO api_token (name, role, scope_kind, scope_code, token_hash, token_prefix, expires_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_COLUMNS}""",
        name,
        role,
        scope_kind,
        scope_code,
        token_hash(secret),
        secret[: len(TOKEN_MARK) + 6],
        expires_at,
    )
    assert row is not None
    return TokenRow(**dict(row)), secret


async def by_secret(conn: Conn, secret: str) -> TokenRow | None:
    """The live token with this secret (not revoked, not expired); marks it used at most once a minute."""
    row = await conn.fetchrow(
        f"""SELECT {_COLUMNS} FROM api_token
            WHERE token_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())""",
        token_hash(secret),
    )
    if row is None:
        return None
    token = TokenRow(**dict(row))
    if token.last_used_at is None or datetime.now(UTC) - token.last_used_at > timedelta(minutes=1):
        await conn.execute("UPDATE api_token SET last_used_at = now() WHERE id = $1", token.id)
    return token


async def is_live(conn: Conn, token_id: int) -> bool:
    """Whether the token is still live (not revoked, not expired); for long-lived requests."""
    live: bool = await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM api_token WHERE id = $1 AND revoked_at IS NULL
                                                  AND (expires_at IS NULL OR expires_at > now()))""",
        token_id,
    )
    return live


async def listing(conn: Conn, *, include_revoked: bool) -> list[TokenRow]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM api_token WHERE $1 OR revoked_at IS NULL ORDER BY id", include_revoked
    )
    return [TokenRow(**dict(r)) for r in rows]


async def revoke(conn: Conn, token_id: int) -> bool:
    """True if a live token was revoked. Its web sessions end with it (recorded on them too)."""
    async with conn.transaction():
        status = await conn.execute(
            "UPDATE api_token SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", token_id
        )
        await conn.execute(
            "UPDATE api_session SET revoked_at = now() WHERE token_id = $1 AND revoked_at IS NULL", token_id
        )
    return status.endswith(" 1")
