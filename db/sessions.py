"""Web-page sessions: an opaque random id in the cookie, its SHA-256 here, bound to a token.

A session is live while all of these hold: not revoked (logout), before its absolute end,
used within the idle timeout, and its token live (not revoked, not expired). Each lookup
checks all of them in one statement, so revoking a token ends its sessions at the next
request without touching them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from db.pool import Conn
from db.tokens import TOKEN_COLUMNS, TokenRow, token_hash

#: Every session id starts with this; it is not a token and cannot be used as one.
SESSION_MARK = "sws_"

#: last_seen_at is written at most this often per session (and at most every tenth of the
#: idle timeout, so that an active session never looks idle).
TOUCH_EVERY = timedelta(seconds=60)

#: Ended sessions are deleted this long after their end (kept a while for the operators).
KEEP_ENDED = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class SessionRow:
    id: int
    token: TokenRow
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime


def new_session_id() -> str:
    return SESSION_MARK + secrets.token_urlsafe(32)


async def create(conn: Conn, token_id: int, *, max_s: float, client: str | None) -> tuple[int, str]:
    """A new session for a live token; returns its row id and the id for the cookie (seen once).
    Also deletes sessions that ended more than :data:`KEEP_ENDED` ago, so the table stays small."""
    secret = new_session_id()
    async with conn.transaction():
        await conn.execute(
            "DELETE FROM api_session WHERE least(expires_at, coalesce(revoked_at, 'infinity')) < now() - $1::interval",
            KEEP_ENDED,
        )
        session_id: int = await conn.fetchval(
            """INSERT INTO api_session (session_hash, token_id, expires_at, client)
               VALUES ($1, $2, now() + $3::interval, $4) RETURNING id""",
            token_hash(secret),
            token_id,
            timedelta(seconds=max_s),
            client,
        )
    return session_id, secret


_LIVE = """s.revoked_at IS NULL AND s.expires_at > now() AND s.last_seen_at > now() - $2::interval
           AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())"""


async def by_secret(conn: Conn, secret: str, *, idle_s: float) -> SessionRow | None:
    """The live session with this id, with its token; marks it used (at most once a minute)."""
    token_cols = ", ".join(f"t.{c}" for c in TOKEN_COLUMNS)
    row = await conn.fetchrow(
        f"""SELECT s.id AS session_id, s.created_at AS session_created_at, s.last_seen_at, s.expires_at AS session_expires_at,
                   {token_cols}
            FROM api_session s JOIN api_token t ON t.id = s.token_id
            WHERE s.session_hash = $1 AND {_LIVE}""",
        token_hash(secret),
        timedelta(seconds=idle_s),
    )
    if row is None:
        return None
    d = dict(row)
    session = SessionRow(
        id=d.pop("session_id"),
        created_at=d.pop("session_created_at"),
        last_seen_at=d.pop("last_seen_at"),
        expires_at=d.pop("session_expires_at"),
        token=TokenRow(**d),
    )
    await touch(conn, session.id, idle_s=idle_s, last_seen_at=session.last_seen_at)
    return session


async def touch(conn: Conn, session_id: int, *, idle_s: float, last_seen_at: datetime | None = None) -> None:
    """Mark the session used now (skipped when that was recorded moments ago)."""
    every = min(TOUCH_EVERY, timedelta(seconds=idle_s / 10))
    if last_seen_at is not None and datetime.now(UTC) - last_seen_at < every:
        return
    await conn.execute("UPDATE api_session SET last_seen_at = now() WHERE id = $1", session_id)


async def still_live(conn: Conn, session_id: int, *, idle_s: float) -> bool:
    """Whether the session (and its token) is still live, marking it used; for long-lived
    requests (an open event stream is a page in use, so it keeps its session from going idle)."""
    last_seen: datetime | None = await conn.fetchval(
        f"""SELECT s.last_seen_at FROM api_session s JOIN api_token t ON t.id = s.token_id
            WHERE s.id = $1 AND {_LIVE}""",
        session_id,
        timedelta(seconds=idle_s),
    )
    if last_seen is None:
        return False
    await touch(conn, session_id, idle_s=idle_s, last_seen_at=last_seen)
    return True


async def revoke(conn: Conn, secret: str) -> bool:
    """End the session with this id (logout); True if a live one was ended."""
    status = await conn.execute(
        "UPDATE api_session SET revoked_at = now() WHERE session_hash = $1 AND revoked_at IS NULL", token_hash(secret)
    )
    return status.endswith(" 1")
