"""The broker's access rules, as mosquitto's dynamic-security plugin holds them.

Who may subscribe and who may be whom (docs/security.md):

- a mine's gateway may publish its own mine's readings and nothing else, and may
  subscribe to nothing (no ``#``, no ``$share/…``, no ``$SYS``): the plugin's default
  denies every subscription and every delivery, and a gateway's role grants neither;
- each ingest worker is its own account, bound to one client id, and may subscribe only
  to the readings (shared or plain) and receive only readings;
- **every account is bound to a fixed client id.** Mosquitto 2.0.11's plugin checks the
  bound id of the account that logs in, not the account of the id: an account without
  one may connect as ``slopewatch-ingest-1``, which throws the worker off and resumes
  its persistent session (tested: ``tests/security/test_broker_access.py``). With every
  account bound, nobody but ingest can connect under an ingest id.

Pure builders for the configuration file and the ``$CONTROL`` commands, the password
hash the plugin expects, and one small client that sends commands to a running broker.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
import ssl
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import aiomqtt
from paho.mqtt.reasoncodes import ReasonCode

from core.settings import MqttTarget
from core.wire import CODE_PATTERN, READINGS_FILTER, readings_topic

#: The plugin's own defaults for new files (mosquitto_ctrl dynsec init): PBKDF2-SHA512,
#: 101 iterations, a 12-byte salt, a 64-byte hash.
ITERATIONS: Final = 101
SALT_BYTES: Final = 12
CONTROL_TOPIC: Final = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC: Final = "$CONTROL/dynamic-security/v1/response"

ADMIN_USER: Final = "slopewatch-admin"
ADMIN_ROLE: Final = "slopewatch-admin"
INGEST_ROLE: Final = "slopewatch-ingest"
INGEST_USER_PREFIX: Final = "slopewatch-ingest-"
#: Accounts that are not gateways start with this; a mine code never may (see
#: :func:`check_gateway`), so a gateway can never be named like a service.
SERVICE_PREFIX: Final = "slopewatch-"
#: A second gateway of one mine: ``<MINE>.<name>``. "." is not allowed in a mine code, so
#: these names never collide with one.
_GATEWAY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
#: Client ids: printable ASCII without spaces, at most 128 characters (every MQTT 3.1.1
#: broker takes 23; mosquitto takes 65,535).
_CLIENT_ID = re.compile(r"^[!-~]{1,128}$")

DEFAULT_ACL_ACCESS: Final = {
    # Nothing is allowed unless a role grants it; unsubscribing never hurts.
    "publishClientSend": False,
    "publishClientReceive": False,
    "subscribe": False,
    "unsubscribe": True,
}


class DynsecError(Exception):
    """A command the broker refused, or arguments that cannot make a valid account."""


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> dict[str, Any]:
    """The ``password``, ``salt`` and ``iterations`` fields of a client in the plugin's file."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": iterations,
    }


def new_password() -> str:
    """A random password: 24 URL-safe characters, ~143 bits; nothing to percent-encode in a URL."""
    return secrets.token_urlsafe(18)


def _acl(acltype: str, topic: str) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "allow": True}


def gateway_role_name(mine: str) -> str:
    return f"mine-{mine}"


def gateway_role(mine: str) -> dict[str, Any]:
    """Publish the mine's readings; nothing else (no subscription, no delivery)."""
    return {
        "rolename": gateway_role_name(mine),
        "textname": f"gateways of mine {mine}",
        "acls": [_acl("publishClientSend", readings_topic(mine, "+"))],
    }


def ingest_role(shared_group: str) -> dict[str, Any]:
    """Subscribe to the readings, shared in ``shared_group`` or plain, and receive them.
    The plugin checks a subscription's whole text, ``$share/<group>/`` included, so the
    shared filter is granted by itself (a grant of the plain filter does not cover it)."""
    acls = [
        _acl("subscribeLiteral", READINGS_FILTER),
        _acl("publishClientReceive", READINGS_FILTER),
    ]
    if shared_group:
        acls.insert(0, _acl("subscribeLiteral", f"$share/{shared_group}/{READINGS_FILTER}"))
    return {"rolename": INGEST_ROLE, "textname": "ingest workers", "acls": acls}


def admin_role() -> dict[str, Any]:
    """Administer the plugin over $CONTROL, and nothing else: no readings."""
    return {
        "rolename": ADMIN_ROLE,
        "textname": "administers the dynamic-security plugin",
        "acls": [
            _acl("publishClientSend", f"{CONTROL_TOPIC}"),
            _acl("subscribeLiteral", RESPONSE_TOPIC),
            _acl("publishClientReceive", RESPONSE_TOPIC),
        ],
    }


def client(username: str, password: str, clientid: str, roles: Sequence[str], textname: str) -> dict[str, Any]:
    return {
        "username": username,
        "textname": textname,
        "clientid": clientid,
        "roles": [{"rolename": r} for r in roles],
        **hash_password(password),
    }


def ingest_username(n: int) -> str:
    return f"{INGEST_USER_PREFIX}{n}"


@dataclass(frozen=True, slots=True)
class Gateway:
    """One gateway account: the mine it publishes for, its username and client id."""

    mine: str
    username: str
    clientid: str


def check_gateway(mine: str, *, name: str | None = None, clientid: str | None = None) -> Gateway:
    """The account for a gateway of ``mine``: username ``MINE`` (or ``MINE.name`` for a
    further gateway of the same mine), client id ``clientid`` or the username."""
    if not CODE_PATTERN.fullmatch(mine):
        raise DynsecError(f"{mine!r} is not a mine code (1-64 of A-Z a-z 0-9 _ -, starting with a letter or digit)")
    if mine.lower().startswith(SERVICE_PREFIX):
        raise DynsecError(f"mine code {mine!r} starts with {SERVICE_PREFIX!r}, which is kept for service accounts")
    if name is not None and not _GATEWAY_NAME.fullmatch(name):
        raise DynsecError(f"gateway name {name!r} must be 1-32 of A-Z a-z 0-9 _ -, starting with a letter or digit")
    username = mine if name is None else f"{mine}.{name}"
    cid = username if clientid is None else clientid
    if not _CLIENT_ID.fullmatch(cid):
        raise DynsecError(f"client id {cid!r} must be 1-128 printable ASCII characters without spaces")
    if cid.lower().startswith(SERVICE_PREFIX):
        raise DynsecError(f"client id {cid!r} starts with {SERVICE_PREFIX!r}, which is kept for service accounts")
    return Gateway(mine, username, cid)


def initial_config(
    *,
    admin_password: str,
    ingest_password: str,
    ingest_workers: int,
    shared_group: str,
    first_ingest: int = 1,
    gateways: Sequence[tuple[Gateway, str]] = (),
) -> dict[str, Any]:
    """A complete dynamic-security.json: the admin, ``ingest_workers`` ingest accounts
    (``slopewatch-ingest-N`` from N = ``first_ingest``, client id the same), optional
    gateways with their passwords."""
    if ingest_workers < 1:
        raise DynsecError("at least one ingest worker is needed")
    clients = [client(ADMIN_USER, admin_password, ADMIN_USER, [ADMIN_ROLE], "administers the broker's accounts")]
    for n in range(first_ingest, first_ingest + ingest_workers):
        user = ingest_username(n)
        clients.append(client(user, ingest_password, user, [INGEST_ROLE], f"ingest worker {n}"))
    roles = [admin_role(), ingest_role(shared_group)]
    seen_roles: set[str] = set()
    for gw, password in gateways:
        clients.append(
            client(gw.username, password, gw.clientid, [gateway_role_name(gw.mine)], f"gateway of {gw.mine}")
        )
        if gw.mine not in seen_roles:
            seen_roles.add(gw.mine)
            roles.append(gateway_role(gw.mine))
    return {"clients": clients, "groups": [], "roles": roles, "defaultACLAccess": dict(DEFAULT_ACL_ACCESS)}


def add_gateway_commands(gw: Gateway, password: str, *, role_exists: bool) -> list[dict[str, Any]]:
    """$CONTROL commands that create the gateway's account (and its mine's role, once)."""
    commands: list[dict[str, Any]] = []
    if not role_exists:
        commands.append({"command": "createRole", **gateway_role(gw.mine)})
    commands.append(
        {
            "command": "createClient",
            "username": gw.username,
            "password": password,
            "clientid": gw.clientid,
            "textname": f"gateway of {gw.mine}",
            "roles": [{"rolename": gateway_role_name(gw.mine)}],
        }
    )
    return commands


async def control(
    target: MqttTarget, commands: Sequence[dict[str, Any]], *, ca_file: str | None = None, timeout_s: float = 10.0
) -> list[dict[str, Any]]:
    """Send ``commands`` to the plugin of a running broker as its admin and return the
    responses, one per command, in order. A command the plugin refuses has ``error``."""
    tls = ssl.create_default_context(cafile=ca_file) if target.tls else None
    correlation = uuid.uuid4().hex
    payload = json.dumps({"commands": [{**c, "correlationData": f"{correlation}-{i}"} for i, c in enumerate(commands)]})
    async with aiomqtt.Client(
        target.host,
        target.port,
        username=target.username,
        password=target.password,
        identifier=target.username or ADMIN_USER,
        tls_context=tls,
        timeout=timeout_s,
    ) as mqtt:
        granted = await mqtt.subscribe(RESPONSE_TOPIC, qos=1)
        if any((g.value if isinstance(g, ReasonCode) else g) >= 0x80 for g in granted):
            raise DynsecError(f"the broker refused {target.username!r} the plugin's responses: not its admin account")
        await mqtt.publish(CONTROL_TOPIC, payload, qos=1)
        async with asyncio.timeout(timeout_s):
            async for message in mqtt.messages:
                raw = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
                responses: list[dict[str, Any]] = json.loads(raw).get("responses", [])
                if responses and str(responses[0].get("correlationData", "")).startswith(correlation):
                    return responses
    raise DynsecError("the broker sent no answer")  # pragma: no cover - the iterator ends only on disconnect


async def role_exists(target: MqttTarget, role: str, *, ca_file: str | None = None) -> bool:
    (response,) = await control(target, [{"command": "getRole", "rolename": role}], ca_file=ca_file)
    return "error" not in response


async def add_gateway(target: MqttTarget, gw: Gateway, password: str, *, ca_file: str | None = None) -> None:
    """Create the gateway's account on a running broker (no restart; the plugin saves its file)."""
    exists = await role_exists(target, gateway_role_name(gw.mine), ca_file=ca_file)
    responses = await control(target, add_gateway_commands(gw, password, role_exists=exists), ca_file=ca_file)
    errors = [f"{r.get('command')}: {r['error']}" for r in responses if "error" in r]
    if errors:
        raise DynsecError("; ".join(errors))
