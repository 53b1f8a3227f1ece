"""TLS on both doors: gateways and ingest reach mosquitto over ``mqtts://`` (port 8883 in
deploy/), clients reach the API over HTTPS. A certificate from the configured CA is
accepted; a client that does not trust the CA, or speaks plain text, gets nothing."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import httpx
import pytest

from core.settings import MqttTarget, Settings
from tests.conftest import Mosquitto, bearer, wait_for
from tests.faults.conftest import gnss_messages, keys_of, running_ingest, stored
from tests.security.conftest import Seeded, live_api
from tests.security.tls import Pki, make_pki, tls_mosquitto


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki) -> Iterator[Mosquitto]:
    broker = tls_mosquitto(tmp_path / "mosquitto", pki)
    broker.start()
    yield broker
    broker.stop()


@contextlib.asynccontextmanager
async def tls_client(broker: Mosquitto, ca: Path | None, client_id: str) -> AsyncIterator[aiomqtt.Client]:
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier=client_id, tls_context=context) as client:
        yield client


async def test_ingest_over_mqtts_stores_every_reading(
    loaded_dsn: str, settings: Settings, tls_broker: Mosquitto, pki: Pki
) -> None:
    target = MqttTarget.parse(f"mqtts://127.0.0.1:{tls_broker.port}")
    assert target.tls
    ingest_settings = dataclasses.replace(settings, mqtt_ca_file=str(pki.ca_cert))
    messages = gnss_messages(0, 200)
    async with running_ingest(loaded_dsn, ingest_settings, target) as ingest:
        async with tls_client(tls_broker, pki.ca_cert, "gw-tls") as gateway:
            for message in messages:
                await gateway.publish(message.topic, message.payload, qos=1)
        await wait_for(lambda: ingest.stored >= len(keys_of(messages)), within_s=20)
    n, keys = await stored(loaded_dsn)
    assert keys == keys_of(messages)
    assert n == len(keys_of(messages)) == 200 * 5 * 3


async def test_a_client_without_the_ca_or_without_tls_is_refused(
    loaded_dsn: str, settings: Settings, tls_broker: Mosquitto
) -> None:
    # A client that trusts only the system's CAs: the handshake fails, nothing is delivered.
    with pytest.raises(aiomqtt.MqttError):
        async with tls_client(tls_broker, None, "gw-untrusting"):
            pass
    # Plain MQTT to the TLS port.
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client("127.0.0.1", tls_broker.port, identifier="gw-plain", timeout=3):
            pass
    # Ingest without SLOPEWATCH_MQTT_CA_FILE keeps retrying and never subscribes.
    target = MqttTarget.parse(f"mqtts://127.0.0.1:{tls_broker.port}")
    async with running_ingest(loaded_dsn, settings, target, wait_connected=False) as ingest:
        await asyncio.sleep(3)
        assert not ingest.service.connected.is_set()
        assert ingest.sample("slopewatch_ingest_mqtt_connects_total") == 0


def test_the_api_over_https(seeded: Seeded, pki: Pki) -> None:
    """``slopewatch api`` with SLOPEWATCH_API_TLS_CERT/KEY (cli.runtime.api_server)."""
    settings = dataclasses.replace(seeded.settings, api_tls_cert=str(pki.server_cert), api_tls_key=str(pki.server_key))
    with live_api(settings, seeded.dsn) as api:
        assert api.base_url.startswith("https://")
        trusted = ssl.create_default_context(cafile=str(pki.ca_cert))
        r = httpx.get(f"{api.base_url}/api/v1/mines", headers=bearer(seeded.admin), verify=trusted)
        assert r.status_code == 200
        assert [m["code"] for m in r.json()["items"]] == ["M1", "M1T"]
        # The session cookie is marked Secure over HTTPS.
        login = httpx.post(f"{api.base_url}/api/v1/session", json={"token": seeded.admin}, verify=trusted)
        assert login.status_code == 200
        assert "secure" in login.headers["set-cookie"].lower()
        # A client that does not trust the CA.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{api.base_url}/health", verify=ssl.create_default_context())
        # Plain HTTP to the HTTPS port.
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{api.port}/health")
