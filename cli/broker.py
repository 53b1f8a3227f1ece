"""``slopewatch broker init|add-gateway``: the broker's accounts (mosquitto dynamic security).

``init`` writes the plugin's file before the broker first starts: the admin account and
one account per ingest worker, each bound to its client id. ``add-gateway`` creates a
mine gateway's account on the running broker through the plugin's ``$CONTROL`` topic
(no restart, so no gap in the shared subscription). Passwords are generated and printed
once; the file and the broker keep only their PBKDF2 hashes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import NoReturn

import aiomqtt

from core.settings import MqttTarget, Settings, SettingsError
from ingest import dynsec

EXIT_USAGE = 2


class _OneLineParser(argparse.ArgumentParser):
    """A usage error is one line on stderr and exit 2 (``--help`` prints the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="broker_command", required=True, metavar="ACTION", parser_class=_OneLineParser)
    init = sub.add_parser(
        "init",
        help="write a new dynamic-security.json (admin and ingest accounts); passwords printed once",
        description="Write the dynamic-security plugin's file for a broker that has not started with it yet: "
        "the admin account (slopewatch-admin) and one account per ingest worker (slopewatch-ingest-N, bound "
        "to client id slopewatch-ingest-N). Gateways may subscribe to nothing; see docs/security.md.",
    )
    init.add_argument("file", type=Path, help="where to write it (refused if it exists)")
    init.add_argument("--ingest-workers", type=int, default=2, help="ingest accounts to create (default 2)")
    init.add_argument(
        "--first-ingest",
        type=int,
        default=1,
        help="number of the first: slopewatch-ingest-N from N (default 1; systemd instances: e.g. 11)",
    )
    init.add_argument(
        "--shared-group",
        default="slopewatch-ingest",
        help="the ingest workers' shared group (SLOPEWATCH_MQTT_SHARED_GROUP; empty: plain subscription only)",
    )
    init.add_argument("--gateway", action="append", default=[], metavar="MINE", help="also a gateway for MINE (repeat)")
    add = sub.add_parser(
        "add-gateway",
        help="create a mine gateway's account on the running broker; its password is printed once",
        description="Create the account of a gateway that may publish MINE's readings and subscribe to nothing, "
        "bound to one client id. Talks to the running broker as its admin: set SLOPEWATCH_BROKER_ADMIN_URL="
        "mqtt://slopewatch-admin:<password>@127.0.0.1:1883 (or mqtts://… with SLOPEWATCH_MQTT_CA_FILE).",
    )
    add.add_argument("mine", help="the mine's registry code; also the gateway's username")
    add.add_argument("--name", help="a further gateway of the same mine: username MINE.NAME")
    add.add_argument("--client-id", help="the client id the gateway must connect with (default: its username)")


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"slopewatch broker: {message}", file=sys.stderr)
    return code


async def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.broker_command == "init":
        return _init(args)
    return await _add_gateway(args, settings)


def _init(args: argparse.Namespace) -> int:
    path: Path = args.file
    if not 1 <= args.ingest_workers <= 99:
        return _fail(f"--ingest-workers must be 1 to 99, got {args.ingest_workers}")
    if not 0 <= args.first_ingest <= 999:
        return _fail(f"--first-ingest must be 0 to 999, got {args.first_ingest}")
    last = args.first_ingest + args.ingest_workers - 1
    if any(c in args.shared_group for c in "/+#"):
        return _fail(f"--shared-group {args.shared_group!r} must not contain / + or #")
    try:
        gateways = [(dynsec.check_gateway(m), dynsec.new_password()) for m in args.gateway]
    except dynsec.DynsecError as exc:
        return _fail(str(exc))
    if len({gw.username for gw, _ in gateways}) != len(gateways):
        return _fail("a --gateway is given twice")
    if path.exists():
        return _fail(f"{path} exists; remove it first, or add accounts with 'slopewatch broker add-gateway'")
    if not path.parent.is_dir():
        return _fail(f"directory {path.parent} does not exist")
    admin_password = dynsec.new_password()
    ingest_password = dynsec.new_password()
    doc = dynsec.initial_config(
        admin_password=admin_password,
        ingest_password=ingest_password,
        ingest_workers=args.ingest_workers,
        shared_group=args.shared_group,
        first_ingest=args.first_ingest,
        gateways=gateways,
    )
    # Hashes only, but nobody else needs to read them: created 0600, never overwritten.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(doc, out, indent=2)
        out.write("\n")
    print(f"wrote {path}: admin, {args.ingest_workers} ingest account(s), {len(gateways)} gateway(s)")
    print("passwords (shown once; the file keeps only hashes):")
    print(f"  {dynsec.ADMIN_USER}\t{admin_password}")
    print(f"  {dynsec.INGEST_USER_PREFIX}{args.first_ingest}..{last}\t{ingest_password}")
    for gw, password in gateways:
        print(f"  {gw.username}\t{password}\t(client id {gw.clientid})")
    return 0


async def _add_gateway(args: argparse.Namespace, settings: Settings) -> int:
    try:
        gw = dynsec.check_gateway(args.mine, name=args.name, clientid=args.client_id)
    except dynsec.DynsecError as exc:
        return _fail(str(exc))
    if not settings.broker_admin_url:
        return _fail(
            "set SLOPEWATCH_BROKER_ADMIN_URL=mqtt://slopewatch-admin:<password>@127.0.0.1:1883 "
            "(the admin password printed by 'slopewatch broker init')"
        )
    try:
        target = MqttTarget.parse(settings.broker_admin_url)
    except SettingsError as exc:
        return _fail(f"SLOPEWATCH_BROKER_ADMIN_URL: {exc}")
    password = dynsec.new_password()
    try:
        await dynsec.add_gateway(target, gw, password, ca_file=settings.mqtt_ca_file)
    except dynsec.DynsecError as exc:
        return _fail(f"the broker refused: {exc}", 1)
    except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
        return _fail(f"cannot reach the broker at {target.host}:{target.port} as its admin: {exc}", 1)
    print(f"gateway account {gw.username} for mine {gw.mine}: client id {gw.clientid}")
    print(f"password (shown once): {password}")
    return 0
