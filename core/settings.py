"""One typed settings object, built at each entry point from an injectable environment.

Nothing else in the code base reads ``os.environ``: entry points call
``Settings.from_env(os.environ)`` and tests build ``Settings(...)`` directly.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Self
from urllib.parse import unquote, urlsplit


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


@dataclass(frozen=True, slots=True)
class MqttTarget:
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> MqttTarget:
        """``mqtt://user:pass@host:1883`` or ``mqtts://host:8883``."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise SettingsError(f"MQTT_URL must start with mqtt:// or mqtts://, got {parts.scheme or 'no'} scheme")
        if not parts.hostname:
            raise SettingsError("MQTT_URL has no host")
        tls = parts.scheme in ("mqtts", "ssl")
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError as exc:
            raise SettingsError(f"MQTT_URL has a bad port: {exc}") from None
        return cls(
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
        )


@dataclass(frozen=True, slots=True)
class Settings:
    # Where things are. None means: start the embedded server (development and demo).
    database_url: str | None = None
    mqtt_url: str | None = None
    data_dir: Path = Path(".slopewatch")

    # GB 39496 roll-up: points at a level that raise their item one level (0: that step off).
    rollup_blue_to_yellow: int = 4
    rollup_yellow_to_orange: int = 3
    rollup_orange_to_red: int = 2
    #: Items → facility: convert (4 blue items count as 1 yellow, 3 yellow as 1 orange, 2 orange
    #: make red; the standard's wording) or at_or_above (items count like points).
    rollup_cross_item: str = "convert"
    rollup_items_blue_to_yellow: int = 4
    rollup_items_yellow_to_orange: int = 3
    rollup_items_orange_to_red: int = 2

    # API
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    #: Serve HTTPS with this certificate chain and private key (PEM files); both or neither.
    api_tls_cert: str | None = None
    api_tls_key: str | None = None
    #: A request body larger than this is refused with 413 before it is read (docs/security.md).
    api_max_body_bytes: int = 1024 * 1024
    #: Web-page sessions (docs/access.md): a session ends this long after login whatever
    #: happens, or after this long without a request, and with its token.
    api_session_max_s: float = 12 * 3600.0
    api_session_idle_s: float = 3600.0
    #: Origins besides the API's own that may send cookie-authenticated writes (comma-separated,
    #: e.g. https://monitor.example.cn when a proxy serves the pages under another name).
    api_origins: str = ""
    #: Concurrent expensive reads (integrity checks, readings, summary recounts) per token and
    #: in all; open event streams per token and in all. Past them: 429 with Retry-After.
    api_expensive_per_token: int = 3
    api_expensive_total: int = 5
    api_streams_per_token: int = 8
    api_streams_total: int = 500
    #: Failed authentications per client address (IPv6: per /64) in a window; past it a wrong
    #: token gets 429, a right one still gets in. At most this many addresses are remembered.
    api_auth_failures: int = 20
    api_auth_window_s: float = 300.0
    api_auth_max_clients: int = 10_000
    #: Serve the OpenAPI pages (/docs, /redoc) from the package; off: only /openapi.json.
    api_docs: bool = True

    #: Port of the Prometheus /metrics endpoint of a standalone ingest or analysis worker (0: none).
    metrics_port: int = 9108
    #: Address it binds; loopback unless a scraper on another host needs it.
    metrics_host: str = "127.0.0.1"

    # Ingest
    mqtt_client_id: str = field(default_factory=lambda: f"slopewatch-ingest-{socket.gethostname()}")
    #: Shared-subscription group; several ingest workers in one group split the load.
    #: Empty: a plain subscription (the embedded broker has no shared subscriptions).
    mqtt_shared_group: str = "slopewatch-ingest"
    #: CA certificates (PEM) that sign the broker's certificate, for mqtts://; unset: the system's.
    mqtt_ca_file: str | None = None
    #: The broker's admin account (mosquitto dynamic security), for ``slopewatch broker add-gateway``:
    #: mqtt://slopewatch-admin:<password>@127.0.0.1:1883. Holds a password: never logged.
    broker_admin_url: str | None = field(default=None, repr=False)
    #: How often each ingest worker records that it is alive and subscribed (ingest_worker table).
    ingest_heartbeat_s: float = 10.0
    #: How many ingest workers should be in the shared group; the analysis worker raises the
    #: health alert ``health.ingest_workers`` when a different number is alive. 0: not checked.
    ingest_workers_expected: int = 0
    batch_max_rows: int = 5000
    batch_max_age_ms: int = 250
    #: Flush before this many messages wait for their acknowledgement. Keep it at or
    #: below the broker's in-flight limit (mosquitto: max_inflight_messages).
    batch_max_messages: int = 500
    max_payload_bytes: int = 256 * 1024
    #: A batch write that takes longer is abandoned (its connection closed) and retried: a
    #: connection whose peer vanished without a reset would otherwise hang ingest for good.
    db_write_timeout_s: float = 60.0
    max_future_s: float = 300.0
    dead_letter_max_bytes: int = 64 * 1024

    # Analysis
    analysis_interval_s: float = 2.0
    analysis_window_days: float = 30.0
    #: An alert comes down a level only after the lower level has held this long (measurement time).
    deescalate_dwell_s: float = 6 * 3600.0

    # Watchdog over the analysis (run by the API process; docs/detection.md)
    #: The analysis is dead or behind when its last heartbeat, or the newest reading it has
    #: evaluated against the newest stored, is older than this: an alert is raised.
    watchdog_max_lag_s: float = 600.0
    #: How often the API checks the heartbeat and the mines' monitoring (0: never; tests).
    watchdog_poll_s: float = 10.0

    # API
    #: How often each server-sent-events stream polls the change feed.
    stream_poll_s: float = 1.0
    #: How often an open stream checks that its token (and session) is still valid.
    stream_recheck_s: float = 5.0
    #: How often the API recounts online sensors per mine for the summary (0: never; tests).
    summary_refresh_s: float = 10.0

    # Notifications and escalation (docs/notifications.md)
    #: After how long an unacknowledged alert of each level reaches the county, city and
    #: province: level:tier=delay,...;... (grammar in notify/policy.py). Empty: no escalation.
    escalation: str = "red:county=5m,city=15m,province=30m;orange:county=30m,city=2h,province=6h;yellow:county=24h"
    notify_poll_s: float = 1.0
    #: Messages per target and minute; more wait or fold into a digest. Red is never held back.
    notify_rate_per_minute: int = 10
    #: A failed send is retried after base, 2×base, 4×base … up to max seconds, until give_up (then: failed).
    notify_retry_base_s: float = 5.0
    notify_retry_max_s: float = 300.0
    notify_give_up_s: float = 86400.0
    notify_timeout_s: float = 10.0

    # Database
    db_pool_max: int = 10
    #: 0 turns asyncpg's prepared-statement cache off (needed behind pgbouncer or PGlite).
    db_statement_cache_size: int = 100
    #: Set on every pooled connection when it is handed out (for servers or poolers whose
    #: session reset loses it). Unset: the server's default.
    db_search_path: str | None = None
    #: auto: use TimescaleDB where the extension is available; on: require it; off: plain PostgreSQL.
    timescaledb: str = "auto"
    # Signed chain heads (docs/integrity.md)
    #: Ed25519 private key (PEM) with which the sealer in `slopewatch analyze` signs each new
    #: chain head; kept outside the database, readable only by the analysis service. Unset: unsigned.
    seal_key_file: str | None = None
    #: The matching public key, for `slopewatch verify` (also --public-key).
    seal_public_key_file: str | None = None
    #: Append-only JSON-lines file to which the sealer publishes every signed head, for an auditor to archive.
    heads_file: str | None = None
    # TimescaleDB (used only where the extension is present)
    retention_days: int | None = None
    compress_after_days: int = 7

    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> Self:
        """Read ``DATABASE_URL``, ``MQTT_URL`` and ``SLOPEWATCH_<FIELD>`` variables."""
        values: dict[str, Any] = {}
        if environ.get("DATABASE_URL"):
            values["database_url"] = environ["DATABASE_URL"]
        if environ.get("MQTT_URL"):
            values["mqtt_url"] = environ["MQTT_URL"]
        for f in fields(cls):
            key = f"SLOPEWATCH_{f.name.upper()}"
            if key in environ and f.name not in ("database_url", "mqtt_url"):
                values[f.name] = _convert(key, environ[key], f.type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        if self.mqtt_url is not None:
            MqttTarget.parse(self.mqtt_url)
        if self.broker_admin_url:
            try:
                MqttTarget.parse(self.broker_admin_url)
            except SettingsError as exc:
                raise SettingsError(f"SLOPEWATCH_BROKER_ADMIN_URL: {exc}") from None
        if self.ingest_workers_expected < 0:
            raise SettingsError("SLOPEWATCH_INGEST_WORKERS_EXPECTED must be 0 (not checked) or more")
        if self.database_url is not None and not self.database_url.startswith(("postgresql://", "postgres://")):
            raise SettingsError("DATABASE_URL must start with postgresql://")
        if self.timescaledb not in ("auto", "on", "off"):
            raise SettingsError("SLOPEWATCH_TIMESCALEDB must be auto, on or off")
        for origin in (o.strip() for o in self.api_origins.split(",")):
            if origin and (urlsplit(origin).scheme not in ("http", "https") or not urlsplit(origin).hostname):
                raise SettingsError(
                    f"SLOPEWATCH_API_ORIGINS: {origin!r} is not an origin like https://monitor.example.cn"
                )
        if self.rollup_cross_item not in ("convert", "at_or_above"):
            raise SettingsError("SLOPEWATCH_ROLLUP_CROSS_ITEM must be convert or at_or_above")
        for name in (
            "rollup_blue_to_yellow",
            "rollup_yellow_to_orange",
            "rollup_orange_to_red",
            "rollup_items_blue_to_yellow",
            "rollup_items_yellow_to_orange",
            "rollup_items_orange_to_red",
        ):
            if getattr(self, name) < 0:
                raise SettingsError(f"SLOPEWATCH_{name.upper()} must be 0 (off) or more")
        if self.watchdog_max_lag_s <= 0 or self.watchdog_poll_s < 0:
            raise SettingsError("SLOPEWATCH_WATCHDOG_MAX_LAG_S must be positive, SLOPEWATCH_WATCHDOG_POLL_S 0 or more")
        if bool(self.api_tls_cert) != bool(self.api_tls_key):
            raise SettingsError("set both SLOPEWATCH_API_TLS_CERT and SLOPEWATCH_API_TLS_KEY, or neither")
        for name in (
            "api_max_body_bytes",
            "batch_max_rows",
            "batch_max_age_ms",
            "batch_max_messages",
            "max_payload_bytes",
            "db_write_timeout_s",
            "api_session_max_s",
            "api_session_idle_s",
            "api_expensive_per_token",
            "api_expensive_total",
            "api_streams_per_token",
            "api_streams_total",
            "api_auth_failures",
            "api_auth_window_s",
            "api_auth_max_clients",
            "stream_recheck_s",
            "ingest_heartbeat_s",
        ):
            if getattr(self, name) <= 0:
                raise SettingsError(f"SLOPEWATCH_{name.upper()} must be positive")
        self._check_notify()

    def _check_notify(self) -> None:
        # Imported here: notify imports the db layer, which imports this module.
        from notify.policy import EscalationPolicy, PolicyError

        try:
            EscalationPolicy.parse(self.escalation)
        except PolicyError as exc:
            raise SettingsError(f"SLOPEWATCH_ESCALATION: {exc}") from None
        for name in ("notify_poll_s", "notify_rate_per_minute", "notify_retry_base_s", "notify_timeout_s"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"SLOPEWATCH_{name.upper()} must be positive")

    def with_(self, **changes: Any) -> Self:
        return replace(self, **changes)


def _convert(key: str, raw: str, typ: Any) -> Any:
    text = str(typ)
    try:
        if "Path" in text:
            return Path(raw)
        if text.startswith("int"):
            return None if raw == "" and "None" in text else int(raw)
        if text.startswith("float"):
            return float(raw)
        if text.startswith("bool"):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
    except ValueError:
        raise SettingsError(f"{key}={raw!r} is not a valid {text}") from None
    return raw
