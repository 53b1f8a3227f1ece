"""No secret in any log line: the real commands (``slopewatch token create``, ``ingest``,
``api``, ``db migrate``) run at DEBUG with a database password in DATABASE_URL, MQTT
passwords in MQTT_URL and API tokens in requests, good and bad, and everything they write
to stderr is searched; so is every record logged in-process (caplog) by ingest and the API.

The one place a secret is printed is by design: ``token create`` writes the new token's
secret to stdout, once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import aiomqtt
import httpx
import pytest

from api.app import create_app
from cli.runtime import free_port
from core.settings import MqttTarget, Settings
from db.pool import open_pool
from tests.conftest import Mosquitto, bearer, issue_token, wait_for
from tests.faults.conftest import gnss_messages, keys_of, running_ingest, stored
from tests.security.tls import GATEWAY_USER, INGEST_USER, Pki, make_pki, tls_mosquitto

SLOPEWATCH = Path(sys.executable).with_name("slopewatch")
REPO = Path(__file__).resolve().parents[2]
DB_PASSWORD = "pg-secret-Zr41mXq8"
WRONG_TOKEN = "swt_guessed-secret-Hq71LmZ0aa"
WRONG_MQTT_PASSWORD = "mqtt-wrong-Vb62Nc0s"


def with_password(dsn: str) -> tuple[str, str]:
    """The DSN with a password, and that password. The embedded test server trusts local
    connections and ignores it; a given server's own password is kept."""
    parts = urlsplit(dsn)
    if parts.password:
        return dsn, parts.password
    user = parts.username or "postgres"
    host = parts.netloc.rsplit("@", 1)[-1]
    netloc = f"{quote(user)}:{DB_PASSWORD}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), DB_PASSWORD


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def secure_broker(tmp_path: Path, pki: Pki) -> Iterator[Mosquitto]:
    broker = tls_mosquitto(tmp_path / "mosquitto", pki, passwords=True)
    broker.start()
    yield broker
    broker.stop()


def base_env(dsn: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("SLOPEWATCH_") and k not in ("MQTT_URL",)},
        "PYTHONPATH": str(REPO),
        "DATABASE_URL": dsn,
        "SLOPEWATCH_LOG_LEVEL": "DEBUG",
        "SLOPEWATCH_METRICS_PORT": "0",
    }


def assert_clean(where: str, text: str, secrets: list[str]) -> None:
    leaked = [s for s in secrets if s in text]
    lines = [line for line in text.splitlines() if any(s in line for s in leaked)]
    assert not leaked, f"{where} logged {len(lines)} line(s) with a secret:\n" + "\n".join(lines[:10])


def text_of(path: Path) -> str:
    return path.read_text(errors="replace")


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(SLOPEWATCH), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


@contextlib.asynccontextmanager
async def serving(command: str, env: dict[str, str], log: Path, ready: str) -> AsyncIterator[None]:
    """``slopewatch <command>`` with stdout and stderr in ``log``; yields once ``ready`` is
    logged; stopped with SIGTERM (as systemd does) and must exit 0."""
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(str(SLOPEWATCH), command, env=env, stdout=out, stderr=out)

    def started() -> bool:
        if proc.returncode is not None:
            raise AssertionError(f"{command} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        return ready in log.read_text(errors="replace")

    try:
        await wait_for(started, within_s=30, interval=0.1)
        yield
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 0, text_of(log)[-3000:]


async def test_the_commands_log_no_secret(loaded_dsn: str, secure_broker: Mosquitto, pki: Pki, tmp_path: Path) -> None:
    dsn, db_password = with_password(loaded_dsn)
    secrets = [db_password, INGEST_USER[1], GATEWAY_USER[1], WRONG_TOKEN, WRONG_MQTT_PASSWORD]
    env = base_env(dsn)

    # token create: the secret goes to stdout, once, and nowhere else.
    rc, out, err = await run_cli("token", "create", "--name", "ops", "--role", "admin", "--scope", "all", env=env)
    assert rc == 0, err
    token = out.splitlines()[0]
    assert token.startswith("swt_"), out
    assert_clean("token create (stderr)", err, [token, *secrets])
    assert_clean("token create (stdout)", out.replace(token, "", 1), [token, *secrets])
    rc, out, err = await run_cli("token", "list", env=env)
    assert rc == 0, err
    assert_clean("token list", out + err, [token, *secrets])
    secrets.append(token)

    # ingest over mqtts:// with a password, storing readings.
    user, password = INGEST_USER
    ingest_env = {
        **env,
        "MQTT_URL": f"mqtts://{user}:{quote(password)}@127.0.0.1:{secure_broker.port}",
        "SLOPEWATCH_MQTT_CA_FILE": str(pki.ca_cert),
        "SLOPEWATCH_MQTT_CLIENT_ID": f"ingest-{uuid.uuid4().hex[:8]}",
        "SLOPEWATCH_MQTT_SHARED_GROUP": "",
        "SLOPEWATCH_BATCH_MAX_AGE_MS": "100",
    }
    ingest_log = tmp_path / "ingest.log"
    messages = gnss_messages(0, 50)
    async with serving("ingest", ingest_env, ingest_log, "ingest subscribed"):
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        gw_user, gw_password = GATEWAY_USER
        async with aiomqtt.Client(
            "127.0.0.1",
            secure_broker.port,
            username=gw_user,
            password=gw_password,
            identifier="gw-secrets",
            tls_context=context,
        ) as gateway:
            for message in messages:
                await gateway.publish(message.topic, message.payload, qos=1)

        async def all_stored() -> bool:
            return (await stored(loaded_dsn))[1] == keys_of(messages)

        await wait_for(all_stored, within_s=30)
    assert "batch committed" in text_of(ingest_log)  # DEBUG really was on
    assert_clean("slopewatch ingest", text_of(ingest_log), secrets)

    # ingest with a wrong MQTT password: refused, reported, not repeated in the log.
    bad_log = tmp_path / "ingest-bad.log"
    bad_env = {**ingest_env, "MQTT_URL": f"mqtts://{user}:{WRONG_MQTT_PASSWORD}@127.0.0.1:{secure_broker.port}"}
    async with serving("ingest", bad_env, bad_log, "MQTT connection lost"):
        pass
    assert_clean("slopewatch ingest (refused)", text_of(bad_log), secrets)

    # The API over HTTPS: good and bad tokens, as header and as login body.
    port = free_port()
    api_env = {
        **env,
        "SLOPEWATCH_API_PORT": str(port),
        "SLOPEWATCH_API_TLS_CERT": str(pki.server_cert),
        "SLOPEWATCH_API_TLS_KEY": str(pki.server_key),
    }
    api_log = tmp_path / "api.log"
    async with serving("api", api_env, api_log, f"API on https://127.0.0.1:{port}/docs"):
        trusted = ssl.create_default_context(cafile=str(pki.ca_cert))
        async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{port}", verify=trusted) as http:

            async def up() -> bool:
                try:
                    return (await http.get("/health")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(up, within_s=30, interval=0.1)
            assert (await http.get("/api/v1/mines", headers=bearer(token))).status_code == 200
            assert (await http.get("/api/v1/mines", headers=bearer(WRONG_TOKEN))).status_code == 401
            login = await http.post("/api/v1/session", json={"token": token})
            assert login.status_code == 200
            # The session id is a secret as well (the cookie's value).
            secrets.append(login.cookies["slopewatch_session"])
            # Holding the cookie, this client logs in again as the pages do (their own Origin).
            wrong = await http.post(
                "/api/v1/session", json={"token": WRONG_TOKEN}, headers={"Origin": f"https://127.0.0.1:{port}"}
            )
            assert wrong.status_code == 401
            assert (
                await http.delete("/api/v1/session", headers={"Origin": f"https://127.0.0.1:{port}"})
            ).status_code == 204
            r = await http.get("/api/v1/alerts", headers=bearer(token), params={"rule": "x\x00"})
            assert r.status_code == 400
    assert_clean("slopewatch api", text_of(api_log), secrets)

    # A database that cannot be reached: the error names the host, not the password.
    parts = urlsplit(dsn)
    unreachable = urlunsplit(
        (parts.scheme, f"{parts.username or 'postgres'}:{db_password}@127.0.0.1:{free_port()}", "/x", "", "")
    )
    rc, out, err = await run_cli("db", "migrate", env={**env, "DATABASE_URL": unreachable})
    assert rc == 1, err
    assert "cannot connect" in err, err
    assert_clean("slopewatch db migrate (unreachable)", out + err, secrets)


async def test_in_process_logs_hold_no_secret(
    loaded_dsn: str,
    settings: Settings,
    secure_broker: Mosquitto,
    pki: Pki,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    dsn, db_password = with_password(loaded_dsn)
    user, password = INGEST_USER
    target = MqttTarget.parse(f"mqtts://{user}:{quote(password)}@127.0.0.1:{secure_broker.port}")
    assert target.password == password
    assert password not in repr(target)
    ingest_settings = settings.with_(mqtt_ca_file=str(pki.ca_cert))
    messages = gnss_messages(0, 20)
    async with running_ingest(dsn, ingest_settings, target) as ingest:
        gw_user, gw_password = GATEWAY_USER
        async with aiomqtt.Client(
            "127.0.0.1",
            secure_broker.port,
            username=gw_user,
            password=gw_password,
            identifier="gw-caplog",
            tls_context=ssl.create_default_context(cafile=str(pki.ca_cert)),
        ) as gateway:
            for message in messages:
                await gateway.publish(message.topic, message.payload, qos=1)
        await wait_for(lambda: ingest.stored >= len(keys_of(messages)), within_s=20)
    async with open_pool(dsn, settings) as pool:
        token = await issue_token(pool)
        app = create_app(settings, pool=pool)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            assert (await http.get("/api/v1/me", headers=bearer(token))).status_code == 200
            assert (await http.get("/api/v1/me", headers=bearer(WRONG_TOKEN))).status_code == 401
            assert (await http.post("/api/v1/session", json={"token": WRONG_TOKEN})).status_code == 401
    await asyncio.sleep(0)
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    text = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert_clean("in-process logging", text, [db_password, password, gw_password, token, WRONG_TOKEN])
