"""What every entry point needs: logging, the database and the broker (embedded or real),
and the long-running services as named tasks that stop cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from core.settings import MqttTarget, Settings
from db.pool import embedded_postgres

logger = logging.getLogger(__name__)


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The embedded server and the in-process broker narrate every step at INFO.
    for noisy in ("embedded_postgres", "amqtt", "transitions", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[str]:
    """The DSN of DATABASE_URL, or of an embedded PostgreSQL under the data directory."""
    if settings.database_url:
        yield settings.database_url
        return
    logger.info("DATABASE_URL is not set: starting the embedded PostgreSQL in %s", settings.data_dir)
    with embedded_postgres(Path(settings.data_dir)) as dsn:
        yield dsn


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def broker(settings: Settings, *, port: int = 1883) -> AsyncIterator[MqttTarget]:
    """MQTT_URL's broker, or an in-process broker on 127.0.0.1 (amqtt; development only:
    about 1,000 messages/s, no shared subscriptions)."""
    if settings.mqtt_url:
        yield MqttTarget.parse(settings.mqtt_url)
        return
    try:
        from amqtt.broker import Broker
    except ImportError as exc:
        raise SystemExit(
            "no MQTT_URL is set and the embedded broker is not installed: pip install 'slopewatch[embedded]'"
        ) from exc
    if not _port_free(port):
        port = free_port()
    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    embedded = Broker(config)
    await embedded.start()
    logger.info("MQTT_URL is not set: embedded broker listening on 127.0.0.1:%d", port)
    try:
        yield MqttTarget("127.0.0.1", port)
    finally:
        await embedded.shutdown()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the entry point owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def api_server(
    app: FastAPI, host: str, port: int, *, tls_cert: str | None = None, tls_key: str | None = None
) -> _Server:
    """uvicorn for ``app``; HTTPS when given a certificate chain and key (PEM files)."""
    # Open event streams would hold shutdown forever; they get a few seconds, then are closed.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        access_log=False,
        timeout_graceful_shutdown=3,
        ssl_certfile=tls_cert or None,
        ssl_keyfile=tls_key or None,
    )
    return _Server(config)


def on_stop_signal(stop: Callable[[], None]) -> None:
    """Call ``stop`` on SIGINT or SIGTERM (once; a second Ctrl-C falls back to the default)."""
    loop = asyncio.get_running_loop()

    def handler(sig: signal.Signals) -> None:
        logger.info("received %s: stopping (accepted data is committed first)", sig.name)
        for s in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(s)
        stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, handler, sig)
