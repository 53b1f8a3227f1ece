"""Who may subscribe and who may be whom, on a real mosquitto 2.0.11 started with the
shipped deploy/mosquitto/mosquitto.conf and accounts made by ``slopewatch broker``.

The attacks of issue 13, tried by a gateway that holds a valid password of its own: it
subscribes to ingest's shared group (to take turns with the workers and have the broker
drop what is dealt to it), to ``#`` and ``$SYS``, and connects with an ingest worker's
client id (to take over its persistent session). Each is refused, and while it keeps
trying, every reading the broker acknowledged to the real gateways of four mines is
stored, exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import asyncpg
import pytest

from cli.main import main as slopewatch
from core.registry import parse_registry
from core.settings import MqttTarget, Settings
from core.wire import readings_topic
from db.registry import load_registry
from ingest import dynsec
from tests.conftest import small_registry_doc, wait_for
from tests.faults.conftest import T0_MS, Gateway, Ingest, Key, Message, retrieve_disconnect, running_ingest
from tests.faults.rawmqtt import _packet, _read_packet, _string
from tests.security.shipped_broker import (
    Accounts,
    ShippedMosquitto,
    init_accounts,
    listening_addresses,
    non_loopback_ipv4,
)
from tests.security.tls import Pki, make_pki

SHARED = "$share/slopewatch-ingest/slopewatch/v1/+/+/readings"
#: CONNACK "not authorised": return code 5 in MQTT 3.1.1, which paho 2 reports as reason code 135.
NOT_AUTHORISED = 135
#: What a gateway tries to subscribe to; every one must be refused (SUBACK 0x80).
HOSTILE_FILTERS = (
    SHARED,
    "$share/rogue/slopewatch/v1/+/+/readings",
    "#",
    "$SYS/#",
    "slopewatch/v1/+/+/readings",
    "slopewatch/v1/M1/GN01/readings",
    "$CONTROL/dynamic-security/v1/response",
)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def shipped(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> Iterator[tuple[ShippedMosquitto, Accounts]]:
    workdir = tmp_path / "broker"
    workdir.mkdir()
    (workdir / "dynsec").mkdir()
    dynsec_file = workdir / "dynsec" / "dynamic-security.json"
    accounts = init_accounts(dynsec_file, capsys, gateways=("M1",))
    broker = ShippedMosquitto(workdir, pki, dynsec_file)
    broker.start()
    yield broker, accounts
    broker.stop()


def ingest_settings(settings: Settings, n: int) -> Settings:
    return settings.with_(
        mqtt_client_id=dynsec.ingest_username(n),
        mqtt_shared_group="slopewatch-ingest",
        batch_max_age_ms=50,
        batch_max_messages=200,
    )


async def subscribe_codes(target: MqttTarget, client_id: str, filters: tuple[str, ...]) -> list[int]:
    async with aiomqtt.Client(
        target.host, target.port, identifier=client_id, username=target.username, password=target.password
    ) as client:
        codes = []
        for f in filters:
            granted = await client.subscribe(f, qos=1)
            codes.extend(int(getattr(g, "value", g)) for g in granted)
        return codes


async def connect_refused_code(target: MqttTarget, client_id: str, *, clean_session: bool = False) -> int | None:
    """Try to connect with ``client_id``; the CONNACK's refusal code, or None if accepted."""
    client = aiomqtt.Client(
        target.host,
        target.port,
        identifier=client_id,
        username=target.username,
        password=target.password,
        clean_session=clean_session,
        timeout=5,
    )
    try:
        async with client:
            return None
    except aiomqtt.MqttCodeError as exc:
        return int(getattr(exc.rc, "value", exc.rc))
    finally:
        retrieve_disconnect(client)


async def add_gateway(
    broker: ShippedMosquitto, accounts: Accounts, capsys: pytest.CaptureFixture[str], mine: str, *more: str
) -> str:
    """``slopewatch broker add-gateway MINE …`` on the running broker; the password it printed."""
    admin = broker.account(dynsec.ADMIN_USER, accounts.admin)
    env = {"SLOPEWATCH_BROKER_ADMIN_URL": f"mqtt://{admin.username}:{admin.password}@127.0.0.1:{broker.port}"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        # In a thread: the command runs its own event loop, as from a shell.
        code = await asyncio.to_thread(slopewatch, ["broker", "add-gateway", mine, *more])
    out = capsys.readouterr().out
    assert code == 0, out
    return next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("password"))


# -- listeners ----------------------------------------------------------------------------------


async def test_shipped_config_listens_in_clear_only_on_loopback_and_with_tls_everywhere(
    shipped: tuple[ShippedMosquitto, Accounts], pki: Pki
) -> None:
    broker, accounts = shipped
    assert listening_addresses(broker.port) == {"127.0.0.1"}
    assert listening_addresses(broker.tls_port) == {"0.0.0.0"}
    other = non_loopback_ipv4()
    if other is not None:  # a machine with a network interface: try the plain port from it
        with socket.socket() as s:
            assert s.connect_ex((other, broker.port)) != 0
        with socket.socket() as s:
            assert s.connect_ex((other, broker.tls_port)) == 0
    # The TLS listener serves a gateway that trusts the CA, with its password and bound id.
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    async with aiomqtt.Client(
        "127.0.0.1",
        broker.tls_port,
        identifier="M1",
        username="M1",
        password=accounts.gateways["M1"],
        tls_context=context,
    ) as gw:
        await gw.publish(readings_topic("M1", "GN01"), b"{}", qos=1)
    # Anonymous clients are refused.
    anonymous = MqttTarget("127.0.0.1", broker.port)
    assert await connect_refused_code(anonymous, "anon", clean_session=True) == NOT_AUTHORISED


# -- who may subscribe -----------------------------------------------------------------------------


async def test_a_gateway_may_subscribe_to_nothing(shipped: tuple[ShippedMosquitto, Accounts]) -> None:
    broker, accounts = shipped
    gateway = broker.account("M1", accounts.gateways["M1"])
    codes = await subscribe_codes(gateway, "M1", HOSTILE_FILTERS)
    assert codes == [0x80] * len(HOSTILE_FILTERS)
    # The ingest account may join its group, and nothing else.
    ingest = broker.account(dynsec.ingest_username(1), accounts.ingest)
    codes = await subscribe_codes(
        ingest, dynsec.ingest_username(1), (SHARED, "slopewatch/v1/+/+/readings", "#", "$SYS/#")
    )
    assert codes == [1, 1, 0x80, 0x80]


# -- who may be whom -------------------------------------------------------------------------------


async def test_nobody_but_the_worker_connects_with_an_ingest_client_id(
    loaded_dsn: str, settings: Settings, shipped: tuple[ShippedMosquitto, Accounts]
) -> None:
    broker, accounts = shipped
    worker = broker.account(dynsec.ingest_username(1), accounts.ingest)
    attempts = {
        "gateway M1": broker.account("M1", accounts.gateways["M1"]),
        "ingest worker 2": broker.account(dynsec.ingest_username(2), accounts.ingest),
        "admin": broker.account(dynsec.ADMIN_USER, accounts.admin),
        "unknown user": broker.account("slopewatch-ingest", accounts.ingest),
    }
    async with running_ingest(loaded_dsn, ingest_settings(settings, 1), worker) as ingest:
        codes = {who: await connect_refused_code(target, dynsec.ingest_username(1)) for who, target in attempts.items()}
        # Still the one connection it opened, and it still stores what is published.
        gw = Gateway(broker.account("M1", accounts.gateways["M1"]), client_id="M1")
        messages = numbered("M1", "GN01", "east_mm", 0, 3)
        await gw.send(messages)
        await gw.close()
        await wait_for(lambda: ingest.stored == 3 * 5)
        assert ingest.sample("slopewatch_ingest_mqtt_connects_total") == 1
        assert ingest.sample("slopewatch_ingest_mqtt_connected") == 1
    assert codes == dict.fromkeys(attempts, NOT_AUTHORISED)
    assert "already connected, closing old connection" not in broker.log


async def test_an_account_without_a_bound_client_id_would_take_over_the_worker(
    loaded_dsn: str, settings: Settings, shipped: tuple[ShippedMosquitto, Accounts]
) -> None:
    """Why every account is bound to a client id: mosquitto 2.0.11's plugin binds the
    account to the id, not the id to the account. An account made without one (here by
    hand through $CONTROL, as `slopewatch broker` never does) throws the worker off."""
    broker, accounts = shipped
    admin = broker.account(dynsec.ADMIN_USER, accounts.admin)
    responses = await dynsec.control(
        admin,
        [{"command": "createClient", "username": "unbound", "password": "pw-unbound-1", "roles": []}],
    )
    assert "error" not in responses[0]
    worker = broker.account(dynsec.ingest_username(1), accounts.ingest)
    async with running_ingest(loaded_dsn, ingest_settings(settings, 1), worker) as ingest:
        code = await connect_refused_code(broker.account("unbound", "pw-unbound-1"), dynsec.ingest_username(1))
        await wait_for(lambda: "already connected, closing old connection" in broker.log)
        await wait_for(lambda: ingest.sample("slopewatch_ingest_mqtt_connects_total") >= 2)
    assert code is None  # accepted: the takeover the bound ids prevent


# -- the stream under attack -------------------------------------------------------------------------

ROGUE = "M2.rogue"
MINES = {"M1": ("GN01", "east_mm"), "M1T": ("PZ01", "depth_m"), "M2": ("GN01", "east_mm"), "M2T": ("PL01", "level_m")}


def numbered(mine: str, sensor: str, channel: str, first: int, count: int, *, per_message: int = 5) -> list[Message]:
    """``count`` messages of ``per_message`` readings with consecutive ``seq``."""
    out = []
    for i in range(first, first + count):
        readings = []
        keys: set[Key] = set()
        for j in range(per_message):
            n = i * per_message + j
            t_ms = T0_MS + n * 1000
            readings.append({"t": t_ms, "v": {channel: 1000.0 + n / 100}, "seq": n})
            keys.add((f"{mine}/{sensor}", channel, t_ms))
        out.append(Message(readings_topic(mine, sensor), json.dumps({"readings": readings}).encode(), frozenset(keys)))
    return out


async def stored_by_mine(dsn: str) -> tuple[int, set[Key]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """SELECT m.code || '/' || s.code AS sensor, r.channel, (extract(epoch FROM r.ts) * 1000)::int8 AS t_ms
               FROM reading r JOIN sensor s ON s.id = r.sensor_id JOIN mine m ON m.id = s.mine_id"""
        )
    finally:
        await conn.close()
    return len(rows), {(r["sensor"], r["channel"], r["t_ms"]) for r in rows}


@contextlib.asynccontextmanager
async def rogue(broker: ShippedMosquitto, target: MqttTarget) -> AsyncIterator[dict[str, Any]]:
    """A gateway of mine M2 with its own valid password (``M2.rogue``), trying the attacks
    in a loop until stopped."""
    tally: dict[str, Any] = {"suback": [], "connack": [], "published": 0}
    stop = asyncio.Event()

    async def attack() -> None:
        while not stop.is_set():
            tally["suback"] += await subscribe_codes(target, ROGUE, (SHARED, "#"))
            for n in (1, 2):
                tally["connack"].append(await connect_refused_code(target, dynsec.ingest_username(n)))
            # and a reading for another mine, which the broker acknowledges and drops
            async with aiomqtt.Client(
                target.host, target.port, identifier=ROGUE, username=target.username, password=target.password
            ) as client:
                forged = {"t": T0_MS - 1000, "v": {"east_mm": -999.0}, "seq": 0}
                await client.publish(readings_topic("M1", "GN01"), json.dumps(forged).encode(), qos=1)
                tally["published"] += 1
            await asyncio.sleep(0.05)

    task = asyncio.create_task(attack(), name="rogue-gateway")
    try:
        yield tally
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_every_acknowledged_reading_of_every_mine_is_stored_while_a_rogue_gateway_attacks(
    loaded_dsn: str,
    settings: Settings,
    shipped: tuple[ShippedMosquitto, Accounts],
    capsys: pytest.CaptureFixture[str],
) -> None:
    broker, accounts = shipped
    conn = await asyncpg.connect(loaded_dsn)
    try:
        await load_registry(conn, parse_registry(small_registry_doc("M2")))
    finally:
        await conn.close()
    passwords = {"M1": accounts.gateways["M1"]}
    for mine in ("M1T", "M2", "M2T"):
        passwords[mine] = await add_gateway(broker, accounts, capsys, mine)
    rogue_password = await add_gateway(broker, accounts, capsys, "M2", "--name", "rogue")
    per_mine = 300
    streams = {mine: numbered(mine, sensor, channel, 0, per_mine) for mine, (sensor, channel) in MINES.items()}
    gateways = {mine: Gateway(broker.account(mine, passwords[mine]), client_id=mine) for mine in MINES}
    workers: list[Ingest] = []
    async with contextlib.AsyncExitStack() as stack:
        for n in (1, 2):
            target = broker.account(dynsec.ingest_username(n), accounts.ingest)
            workers.append(
                await stack.enter_async_context(running_ingest(loaded_dsn, ingest_settings(settings, n), target))
            )
        async with rogue(broker, broker.account(ROGUE, rogue_password)) as tally:
            await asyncio.gather(*(gateways[m].send(streams[m], per_s=100) for m in MINES))
        acknowledged = {k for gw in gateways.values() for m in gw.acknowledged for k in m.keys}
        await wait_for(lambda: sum(w.stored for w in workers) >= len(acknowledged), within_s=30)
        for gw in gateways.values():
            await gw.close()
        connects = [w.sample("slopewatch_ingest_mqtt_connects_total") for w in workers]
        shares = [w.received for w in workers]
    rows, keys = await stored_by_mine(loaded_dsn)
    assert len(acknowledged) == len(MINES) * per_mine * 5
    assert keys == acknowledged
    assert rows == len(acknowledged)
    assert tally["suback"]
    assert set(tally["suback"]) == {0x80}
    assert tally["connack"]
    assert set(tally["connack"]) == {NOT_AUTHORISED}
    assert tally["published"] > 0  # the forged M1 reading (-999) was acknowledged and dropped: not in keys
    assert connects == [1, 1]  # neither worker was ever thrown off
    assert all(s > 0 for s in shares)  # both took their turns in the group


# -- the command line ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["broker", "add-gateway", "bad/mine"], "is not a mine code"),
        (["broker", "add-gateway", "slopewatch-ingest-1"], "kept for service accounts"),
        (["broker", "add-gateway", "M1", "--client-id", "slopewatch-ingest-1"], "kept for service accounts"),
        (["broker", "add-gateway", "M1", "--name", "a b"], "gateway name"),
        (["broker", "add-gateway", "M1"], "SLOPEWATCH_BROKER_ADMIN_URL"),
        (["broker", "init", "/nonexistent-dir/x.json"], "does not exist"),
        (["broker", "init", "x.json", "--ingest-workers", "0"], "--ingest-workers"),
        (["broker", "init", "x.json", "--gateway", "M1", "--gateway", "M1"], "twice"),
        (["broker", "add-gateway"], "required: mine"),
        (["broker", "init", "x.json", "--ingest-workers", "two"], "invalid int value"),
    ],
)
def test_bad_arguments_get_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SLOPEWATCH_BROKER_ADMIN_URL", raising=False)
    try:
        code = slopewatch(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert message in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize("action", ["init", "add-gateway"])
def test_help_exits_0(action: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        slopewatch(["broker", action, "--help"])
    assert exited.value.code == 0
    assert f"usage: slopewatch broker {action}" in capsys.readouterr().out


def test_init_never_overwrites_and_keeps_only_hashes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "dynamic-security.json"
    accounts = init_accounts(path, capsys, gateways=("M1",))
    text = path.read_text()
    for password in (accounts.admin, accounts.ingest, *accounts.gateways.values()):
        assert password not in text
    assert path.stat().st_mode & 0o077 == 0
    doc = json.loads(text)
    assert all(c["clientid"] for c in doc["clients"])  # every account bound to its client id
    assert doc["defaultACLAccess"] == {
        "publishClientSend": False,
        "publishClientReceive": False,
        "subscribe": False,
        "unsubscribe": True,
    }
    before = path.read_bytes()
    assert slopewatch(["broker", "init", str(path)]) == 2
    assert "exists" in capsys.readouterr().err
    assert path.read_bytes() == before


async def test_add_gateway_with_a_wrong_admin_password_fails_with_one_line(
    shipped: tuple[ShippedMosquitto, Accounts], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    broker, _ = shipped
    monkeypatch.setenv("SLOPEWATCH_BROKER_ADMIN_URL", f"mqtt://slopewatch-admin:wrong@127.0.0.1:{broker.port}")
    code = await asyncio.to_thread(slopewatch, ["broker", "add-gateway", "M9"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1
    assert "cannot reach the broker" in err


def test_init_numbers_ingest_accounts_for_systemd_instances(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "dynamic-security.json"
    assert slopewatch(["broker", "init", str(path), "--ingest-workers", "2", "--first-ingest", "11"]) == 0
    assert "slopewatch-ingest-11..12" in capsys.readouterr().out
    clients = {c["username"]: c["clientid"] for c in json.loads(path.read_text())["clients"]}
    assert clients == {
        "slopewatch-admin": "slopewatch-admin",
        "slopewatch-ingest-11": "slopewatch-ingest-11",
        "slopewatch-ingest-12": "slopewatch-ingest-12",
    }


async def test_add_gateway_twice_is_refused_by_the_broker_with_one_line(
    shipped: tuple[ShippedMosquitto, Accounts], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    broker, accounts = shipped
    admin_url = f"mqtt://{dynsec.ADMIN_USER}:{accounts.admin}@127.0.0.1:{broker.port}"
    monkeypatch.setenv("SLOPEWATCH_BROKER_ADMIN_URL", admin_url)
    code = await asyncio.to_thread(slopewatch, ["broker", "add-gateway", "M1"])  # made by init
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1
    assert "the broker refused: createClient" in err
    # The existing account still works with its own password.
    assert await subscribe_codes(broker.account("M1", accounts.gateways["M1"]), "M1", ("#",)) == [0x80]


async def test_a_gateway_cannot_command_the_plugin(shipped: tuple[ShippedMosquitto, Accounts]) -> None:
    """The plugin takes its commands on $CONTROL/dynamic-security/v1; a gateway that
    publishes there (to give itself ingest's role, or make an account of its own) is
    denied like any other topic it may not publish to."""
    broker, accounts = shipped
    gateway = broker.account("M1", accounts.gateways["M1"])
    commands = {
        "commands": [
            {"command": "addClientRole", "username": "M1", "rolename": dynsec.INGEST_ROLE},
            {"command": "createClient", "username": "evil", "password": "evil-pw-1", "clientid": "evil"},
            {"command": "setDefaultACLAccess", "acls": [{"acltype": "subscribe", "allow": True}]},
        ]
    }
    async with aiomqtt.Client(
        broker.host, broker.port, identifier="M1", username="M1", password=accounts.gateways["M1"]
    ) as client:
        await client.publish(dynsec.CONTROL_TOPIC, json.dumps(commands).encode(), qos=1)
    await asyncio.sleep(0.5)
    assert await subscribe_codes(gateway, "M1", (SHARED, "#")) == [0x80, 0x80]
    assert await connect_refused_code(broker.account("evil", "evil-pw-1"), "evil", clean_session=True) == NOT_AUTHORISED
    admin = broker.account(dynsec.ADMIN_USER, accounts.admin)
    (client_info,) = await dynsec.control(admin, [{"command": "getClient", "username": "M1"}])
    assert [r["rolename"] for r in client_info["data"]["client"]["roles"]] == ["mine-M1"]
    # The plugin logs every command it runs, with who sent it: the admin's, none of M1's.
    assert "dynsec: slopewatch-admin/slopewatch-admin | getClient" in broker.log
    assert "dynsec: M1/" not in broker.log


async def connect_with_will_and_vanish(
    broker: ShippedMosquitto, user: str, password: str, will_topic: str, will: bytes
) -> None:
    """CONNECT (MQTT 3.1.1) with a QoS 1 will, wait for CONNACK, then drop the TCP
    connection without DISCONNECT: the broker publishes the will."""
    reader, writer = await asyncio.open_connection(broker.host, broker.port)
    flags = 0x02 | 0x04 | 0x08 | 0x80 | 0x40  # clean session, will, will QoS 1, username, password
    body = _string(b"MQTT") + bytes([4, flags]) + struct.pack("!H", 30) + _string(user.encode())
    body += _string(will_topic.encode()) + _string(will) + _string(user.encode()) + _string(password.encode())
    writer.write(_packet(0x10, body))
    header, ack = await asyncio.wait_for(_read_packet(reader), 5)
    assert (header, ack[1]) == (0x20, 0)
    writer.transport.abort()


async def test_a_gateways_last_will_for_another_mine_is_not_delivered(
    shipped: tuple[ShippedMosquitto, Accounts], capsys: pytest.CaptureFixture[str]
) -> None:
    """A will is a second way to publish: gateway M1 leaves one on mine M1T's topic and
    drops its connection. The ingest account sees M1's own will and M1T's gateway's
    reading (controls), never the forged will."""
    broker, accounts = shipped
    m1t_password = await add_gateway(broker, accounts, capsys, "M1T")
    ingest = broker.account(dynsec.ingest_username(1), accounts.ingest)
    received: list[tuple[str, bytes]] = []
    async with aiomqtt.Client(
        ingest.host, ingest.port, identifier=ingest.username, username=ingest.username, password=ingest.password
    ) as reader:
        await reader.subscribe("slopewatch/v1/+/+/readings", qos=1)

        async def collect() -> None:
            async for message in reader.messages:
                payload = message.payload if isinstance(message.payload, bytes) else b""
                received.append((message.topic.value, payload))

        task = asyncio.create_task(collect(), name="ingest-reader")
        for topic, body in (
            (readings_topic("M1T", "PZ01"), b"forged will"),
            (readings_topic("M1", "GN01"), b"own will"),
        ):
            await connect_with_will_and_vanish(broker, "M1", accounts.gateways["M1"], topic, body)
        async with aiomqtt.Client(
            broker.host, broker.port, identifier="M1T", username="M1T", password=m1t_password
        ) as m1t:
            await m1t.publish(readings_topic("M1T", "PZ01"), b"real", qos=1)
        await wait_for(lambda: (readings_topic("M1T", "PZ01"), b"real") in received, within_s=10)
        await wait_for(lambda: (readings_topic("M1", "GN01"), b"own will") in received, within_s=10)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert (readings_topic("M1T", "PZ01"), b"forged will") not in received


async def test_switching_a_broker_to_the_shipped_config_leaves_no_rogue_member_behind(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str], loaded_dsn: str, settings: Settings
) -> None:
    """Under the old setup a rogue joined ingest's shared group on a persistent session and
    went away: without a restart it keeps taking turns (issue 13). The switch to dynamic
    security restarts the broker with the same persistence file; mosquitto 2.0.11 does not
    restore shared subscriptions from it, so the rogue's is gone, and everything a gateway
    sends afterwards is stored."""
    workdir = tmp_path / "broker"
    (workdir / "dynsec").mkdir(parents=True)
    dynsec_file = workdir / "dynsec" / "dynamic-security.json"
    accounts = await asyncio.to_thread(init_accounts, dynsec_file, capsys, gateways=("M1",))
    broker = ShippedMosquitto(workdir, pki, dynsec_file)
    shipped_conf = broker.conf.read_text()
    broker.conf.write_text(
        f"listener {broker.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
        f"persistence_location {workdir}/data/\nlog_dest file {workdir}/legacy.log\n"
        f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
    )
    broker.start()
    try:
        async with aiomqtt.Client(broker.host, broker.port, identifier="rogue", clean_session=False) as rogue_client:
            assert await rogue_client.subscribe(SHARED, qos=1) in ([1], (1,))
        # The attack, as the issue found it: the absent rogue takes every other message.
        before = numbered("M1", "GN01", "east_mm", 1000, 20)
        async with running_ingest(
            loaded_dsn, ingest_settings(settings, 1), MqttTarget(broker.host, broker.port)
        ) as ingest:
            legacy_gw = Gateway(MqttTarget(broker.host, broker.port), client_id="M1")
            await legacy_gw.send(before)
            await legacy_gw.close()
            await wait_for(lambda: ingest.stored >= 50, within_s=15)
            await asyncio.sleep(0.5)
            assert ingest.received == 10
        broker.stop()  # a clean stop writes the rogue's session to mosquitto.db
        assert (workdir / "data" / "mosquitto.db").exists()
        broker.conf.write_text(shipped_conf)
        broker.start()
        worker = broker.account(dynsec.ingest_username(1), accounts.ingest)
        async with running_ingest(loaded_dsn, ingest_settings(settings, 1), worker) as ingest:
            gw = Gateway(broker.account("M1", accounts.gateways["M1"]), client_id="M1")
            messages = numbered("M1", "GN01", "east_mm", 0, 100)
            await gw.send(messages)
            await gw.close()
            await wait_for(lambda: ingest.stored >= 500, within_s=15)
            received = ingest.received
    finally:
        broker.stop()
    rows, keys = await stored_by_mine(loaded_dsn)
    assert received == 100
    after = {k for m in messages for k in m.keys}
    assert after <= keys  # every reading sent after the switch
    assert len(keys - after) == 50  # and the 10 of 20 messages ingest got before it
    assert rows == len(keys)
