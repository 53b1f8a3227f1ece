"""``slopewatch notify add|list|remove|test|deliveries|receive``: notification targets on the
region tree or a mine, the delivery log, and a verifying webhook receiver."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from urllib.parse import urlsplit

from cli import runtime
from cli.tokens import resolve_scope
from core.model import Level
from core.settings import Settings
from db import notify as store
from db.pool import Conn, connect, open_pool
from notify import message as msg
from notify.channels import CHANNELS
from notify.receiver import Received, WebhookReceiver
from notify.service import Notifier
from notify.signing import new_secret

LEVELS = ("blue", "yellow", "orange", "red")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="notify_command", required=True, metavar="ACTION")
    add = sub.add_parser(
        "add",
        help="add a target; a webhook's signing secret is printed once",
        description="Add a recipient for one mine (told at once when an alert reaches a level) or one region "
        "(told when an unacknowledged alert below it escalates to that region's level).",
    )
    add.add_argument("--scope", required=True, help="a mine code, or a GB/T 2260 county, city or province code")
    add.add_argument("--channel", required=True, choices=CHANNELS)
    add.add_argument("--url", help="webhook URL (http:// or https://)")
    add.add_argument("--to", help="e-mail address or phone number (email, sms)")
    add.add_argument("--secret", help="webhook signing secret (default: generated and printed once)")
    add.add_argument("--min-level", choices=LEVELS, default="blue", help="lowest level sent (default blue)")
    add.add_argument("--name", default="", help="who this is, e.g. 'county duty room'")
    lst = sub.add_parser("list", help="targets (never the secrets)")
    lst.add_argument("--all", action="store_true", help="include removed targets")
    remove = sub.add_parser("remove", help="remove a target; what it still had pending is cancelled")
    remove.add_argument("id", type=int)
    test = sub.add_parser("test", help="send a test notification to a target now and show the outcome")
    test.add_argument("id", type=int)
    test.add_argument("--note", default="", help="text to include")
    dl = sub.add_parser("deliveries", help="the delivery log: each notification, its state, attempts, last error")
    dl.add_argument("--state", choices=("pending", "sent", "failed", "cancelled"))
    dl.add_argument("--alert", type=int, help="only this alert")
    dl.add_argument("--target", type=int, help="only this target")
    dl.add_argument("--limit", type=int, default=50)
    recv = sub.add_parser("receive", help="run a webhook receiver that verifies signatures and prints what arrives")
    recv.add_argument("--host", default="127.0.0.1")
    recv.add_argument("--port", type=int, default=9000)
    recv.add_argument("--secret", help="the target's secret (without it, signatures are not checked)")


async def dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.notify_command == "receive":
        return await receive(args)
    from cli.main import prepare_database

    with runtime.database(settings) as dsn:
        await prepare_database(dsn, settings)
        return await run(args, settings, dsn)


async def run(args: argparse.Namespace, settings: Settings, dsn: str) -> int:
    command: str = args.notify_command
    if command == "test":
        return await _test(args, settings, dsn)
    conn = await connect(dsn, settings)
    try:
        if command == "add":
            return await _add(args, conn)
        if command == "list":
            print(f"{'id':>4}  {'scope':<16} {'channel':<8} {'min':<7} {'address':<40} name")
            for row in await store.targets(conn, include_removed=args.all):
                t = row.target
                state = " (removed)" if row.removed_at else ""
                scope = f"{t.scope_kind} {t.scope_code}"
                print(f"{t.id:>4}  {scope:<16} {t.channel:<8} {t.min_level.label:<7} {t.address:<40} {t.name}{state}")
            return 0
        if command == "remove":
            cancelled = await store.remove_target(conn, args.id)
            if cancelled is None:
                print(f"slopewatch notify: no live target with id {args.id}", file=sys.stderr)
                return 1
            print(f"target {args.id} removed; {cancelled} pending notification(s) cancelled")
            return 0
        rows = await store.outbox(conn, state=args.state, alert_id=args.alert, target_id=args.target, limit=args.limit)
        print(f"{'id':>6} {'alert':>6} {'level':<6} {'tier':<8} {'target':<18} {'state':<9} {'tries':>5}  detail")
        for r in rows:
            target = f"{r['target_id']} {r['channel']}"
            if r["state"] == "sent":
                detail = f"sent {r['sent_at']:%Y-%m-%d %H:%M:%S}" + (" (digest)" if r["digest"] else "")
            elif r["state"] == "pending":
                why = "rate-limited" if r["rate_limited"] else (r["last_error"] or "due")
                detail = f"next {r['next_attempt_at']:%H:%M:%S} ({why})"
            else:
                detail = r["last_error"] or ""
            alert = str(r["alert_id"]) if r["alert_id"] is not None else "-"
            print(
                f"{r['id']:>6} {alert:>6} {Level(r['level']).label:<6} {r['tier']:<8} {target:<18} "
                f"{r['state']:<9} {r['attempts']:>5}  {detail}"
            )
        return 0
    finally:
        await conn.close()


async def _add(args: argparse.Namespace, conn: Conn) -> int:
    try:
        kind, code = await resolve_scope(conn, args.scope)
    except ValueError as exc:
        print(f"slopewatch notify: {exc}", file=sys.stderr)
        return 2
    if kind == "all":
        print("slopewatch notify: a target needs a mine or a region, not 'all'", file=sys.stderr)
        return 2
    channel: str = args.channel
    secret: str | None = None
    if channel == "webhook":
        url: str = args.url or ""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            print("slopewatch notify: a webhook needs --url http(s)://host/path", file=sys.stderr)
            return 2
        address = url
        secret = args.secret or new_secret()
    elif channel in ("email", "sms"):
        if not args.to:
            print(f"slopewatch notify: {channel} needs --to", file=sys.stderr)
            return 2
        address = args.to
    else:
        address = ""
    try:
        target = await store.add_target(
            conn,
            scope_kind=kind,
            scope_code=code,
            channel=channel,
            address=address,
            secret=secret,
            min_level=Level.parse(args.min_level),
            name=args.name,
        )
    except store.TargetExists as exc:
        print(f"slopewatch notify: {exc}; remove it first to change it", file=sys.stderr)
        return 1
    if secret is not None and not args.secret:
        print(secret)
    print(
        f"target {target.id}: {channel} {address} for {kind} {code}, from {target.min_level.label}"
        + (". The signing secret above is shown only now." if secret is not None and not args.secret else ""),
        file=sys.stderr,
    )
    return 0


async def _test(args: argparse.Namespace, settings: Settings, dsn: str) -> int:
    async with open_pool(dsn, settings) as pool:
        async with pool.acquire() as conn:
            target = await store.target(conn, args.id)
            if target is None:
                print(f"slopewatch notify: no live target with id {args.id}", file=sys.stderr)
                return 1
            row_id = await store.add_probe(conn, target.id, msg.probe_payload(target.id, args.note))
        # A test is tried once: give_up now, so a failure is reported, not retried later.
        notifier = Notifier(settings.with_(notify_give_up_s=0.0), pool, name="cli-test")
        outcomes = await notifier.deliver(only_id=row_id)
    if not outcomes:
        print(f"slopewatch notify: notification {row_id} could not be claimed", file=sys.stderr)
        return 1
    outcome = outcomes[0]
    if outcome.error is None:
        print(f"target {target.id} ({target.channel} {target.address}): delivered (notification {row_id})")
        return 0
    print(f"target {target.id} ({target.channel} {target.address}): FAILED: {outcome.error}", file=sys.stderr)
    return 1


async def receive(args: argparse.Namespace) -> int:
    def show(item: Received) -> None:
        check = {None: "unchecked", True: "signature ok", False: f"REFUSED ({item.error})"}[item.verified]
        print(f"--- {item.path} {check}", flush=True)
        try:
            print(json.dumps(item.json(), ensure_ascii=False, indent=2), flush=True)
        except ValueError:
            print(item.body.decode("utf-8", "replace"), flush=True)

    receiver = WebhookReceiver(secret=args.secret, host=args.host, port=args.port, on_receive=show)
    await receiver.start()
    print(
        f"receiving webhooks at {receiver.url}"
        + ("" if args.secret else " (no --secret: signatures are not checked)")
        + "; Ctrl-C stops.",
        file=sys.stderr,
        flush=True,
    )
    stopped = asyncio.Event()
    runtime.on_stop_signal(stopped.set)
    try:
        await stopped.wait()
    finally:
        await receiver.stop()
    return 0
