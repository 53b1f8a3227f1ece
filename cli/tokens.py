"""``slopewatch token create|list|revoke``: API tokens bound to a region-tree node and a role."""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime, timedelta

from core.settings import Settings
from db import queries, tokens
from db.pool import Conn, connect

ROLES = ("viewer", "operator", "supervisor", "admin")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = sub.add_parser(
        "create",
        help="make a token; its secret is printed once",
        description="Make a token bound to one node of the region tree and a role. The secret is printed "
        "once and stored only as a hash.",
    )
    create.add_argument("--name", required=True, help="who or what holds it, e.g. 'Qinghe county duty officer'")
    create.add_argument("--role", required=True, choices=ROLES, help="what it may do (each includes the ones before)")
    create.add_argument(
        "--scope",
        required=True,
        help="a GB/T 2260 code (province, city or county), a mine code, or 'all'",
    )
    create.add_argument("--expires-days", type=float, help="expire after this many days (default: never)")
    lst = sub.add_parser("list", help="tokens with their scope and role (never the secrets)")
    lst.add_argument("--all", action="store_true", help="include revoked tokens")
    revoke = sub.add_parser("revoke", help="revoke a token by id; requests with it fail from then on")
    revoke.add_argument("id", type=int)


async def resolve_scope(conn: Conn, scope: str) -> tuple[str, str]:
    """(scope_kind, scope_code) for a scope argument, or ValueError saying what is wrong."""
    text = scope.strip()
    if text.lower() == "all":
        return "all", ""
    if re.fullmatch(r"[0-9]{6}", text):
        if await queries.region(conn, text) is None:
            raise ValueError(f"region {text} is not in the registry; load the registry first or check the code")
        return "region", text
    if await queries.mine(conn, text) is None:
        raise ValueError(f"{text!r} is neither a region code in the registry nor a registered mine code")
    return "mine", text


async def run(args: argparse.Namespace, settings: Settings, dsn: str) -> int:
    conn = await connect(dsn, settings)
    try:
        if args.token_command == "create":
            try:
                kind, code = await resolve_scope(conn, args.scope)
            except ValueError as exc:
                print(f"slopewatch token: {exc}", file=sys.stderr)
                return 2
            expires = datetime.now(UTC) + timedelta(days=args.expires_days) if args.expires_days else None
            row, secret = await tokens.create(
                conn, name=args.name, role=args.role, scope_kind=kind, scope_code=code, expires_at=expires
            )
            print(secret)
            print(
                f"token {row.id} for {row.name!r}: {row.role} at {kind} {code or '*'}"
                + (f", expires {expires:%Y-%m-%d %H:%M} UTC" if expires else "")
                + ". The secret above is shown only now; it is stored as a hash.",
                file=sys.stderr,
            )
            return 0
        if args.token_command == "list":
            rows = await tokens.listing(conn, include_revoked=args.all)
            print(f"{'id':>4}  {'role':<10} {'scope':<22} {'prefix':<12} {'last used':<17} name")
            for t in rows:
                scope = f"{t.scope_kind} {t.scope_code}".strip()
                used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
                state = " (revoked)" if t.revoked_at else ""
                print(f"{t.id:>4}  {t.role:<10} {scope:<22} {t.token_prefix:<12} {used:<17} {t.name}{state}")
            return 0
        if await tokens.revoke(conn, args.id):
            print(f"token {args.id} revoked")
            return 0
        print(f"slopewatch token: no live token with id {args.id}", file=sys.stderr)
        return 1
    finally:
        await conn.close()
