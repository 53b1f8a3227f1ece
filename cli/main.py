"""``slopewatch``: one entry point, one subcommand per job. ``slopewatch <command> --help``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server

from analytics.worker import AnalysisMetrics, AnalysisWorker
from api.app import create_app
from cli import runtime
from core.headsign import KeyFileError
from core.registry import RegistryError, load_registry, registry_summary
from core.settings import Settings, SettingsError
from db.heads import HeadsFileError
from db.integrity import run_sealer
from db.migrate import MigrationError, apply_policies, migrate
from db.pool import DatabaseUnavailable, connect, open_pool
from db.registry import load_registry as store_registry
from ingest.metrics import IngestMetrics
from ingest.service import IngestService
from notify import Notifier
from simulators.publisher import BrokerRefused

ENV_HELP = """environment:
  DATABASE_URL            postgresql://user:pass@host:5432/db (unset: an embedded PostgreSQL in the data directory)
  MQTT_URL                mqtt://user:pass@host:1883 or mqtts://host:8883 (unset: an in-process broker)
  SLOPEWATCH_<SETTING>    any setting of core/settings.py, e.g. SLOPEWATCH_API_PORT=8080, SLOPEWATCH_LOG_LEVEL=DEBUG
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slopewatch",
        description="Slope and tailings-dam monitoring: MQTT ingest, detection, alerts, API.",
        epilog=ENV_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data-dir", type=Path, help="where the embedded database keeps its files (.slopewatch)")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=ENV_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    demo = add("demo", "run everything on embedded defaults with simulated sensors; one slope fails")
    demo.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    demo.add_argument("--speed", type=float, default=None, help="simulated seconds per wall second")
    demo.add_argument("--days", type=float, default=None, help="days of history to simulate before now")
    demo.add_argument("--registry", type=Path, help="registry file instead of the built-in demo province")

    add("ingest", "consume readings from MQTT into the database (several workers share the load)")
    add("analyze", "run the detectors, maintain alerts, escalate and notify, seal readings into hash chains")
    add(
        "watchdog",
        "watch the analysis (heartbeat, lag) and every mine's monitoring from a process of its own; "
        "raise watchdog.analysis and monitoring.offline alerts (run it with the analysis' database login)",
    )
    api = add("api", "serve the HTTP API")
    api.add_argument("--host", help="bind address (default 127.0.0.1; SLOPEWATCH_API_HOST)")
    api.add_argument("--port", type=int, help="port (default 8000; SLOPEWATCH_API_PORT)")

    reg = add("registry", "load or check a registry file (regions, mines, sites, sensors, thresholds)")
    reg_sub = reg.add_subparsers(dest="registry_command", required=True, metavar="ACTION")
    load = reg_sub.add_parser("load", help="validate FILE and upsert it into the database")
    load.add_argument("file", type=Path)
    check = reg_sub.add_parser("check", help="validate FILE only")
    check.add_argument("file", type=Path)
    move = reg_sub.add_parser(
        "move", help="move MINE (and its alerts) to REGION of the region tree; recorded as an audited event"
    )
    move.add_argument("mine")
    move.add_argument("region", help="GB/T 2260 code of the county (or city, province) the mine now belongs to")

    dbp = add("db", "database maintenance")
    db_sub = dbp.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_sub.add_parser("migrate", help="apply pending schema migrations (idempotent)")
    login = db_sub.add_parser(
        "login-user",
        help="create (or set the password of) a service's LOGIN user in its group role (run as the owner)",
    )
    login.add_argument("name", help="the user name, e.g. slopewatch_ingest_1")
    login.add_argument("--service", required=True, choices=("ingest", "analyze", "api"))
    login.add_argument(
        "--password-env",
        metavar="VAR",
        required=True,
        help="environment variable holding the password (never on the command line)",
    )

    from cli import tokens

    tokens.add_arguments(add("token", "create, list or revoke API tokens (scoped to a region, a mine or all)"))
    from cli import integrity

    integrity.add_verify_arguments(add("verify", "prove stored readings against their hash chains (exit 1 if not)"))
    integrity.add_seal_arguments(add("seal", "seal pending readings into the hash chains (once, or --follow)"))
    integrity.add_keygen_arguments(add("keygen", "make the Ed25519 key pair with which the sealer signs chain heads"))
    from cli import reference

    reference.add_arguments(add("reference", "the reference position of a displacement sensor; re-baseline it"))
    from cli import notify

    notify.add_arguments(add("notify", "notification targets (webhook, e-mail, SMS), delivery log, test receiver"))
    from cli import broker

    broker.add_arguments(add("broker", "the broker's accounts: who may publish, subscribe and connect as whom"))

    _add_plugin_commands(add)
    return parser


def _add_plugin_commands(add: Callable[[str, str], argparse.ArgumentParser]) -> None:
    from simulators import replay, simulate

    simulate.add_simulate_arguments(add("simulate", "publish simulated sensors of a registry over MQTT"))
    replay.add_replay_arguments(add("replay", "replay a CSV of recorded readings over MQTT"))
    from analytics import backtest

    backtest.add_arguments(add("backtest", "score the detectors over simulated scenario families"))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env(os.environ, data_dir=args.data_dir, log_level=args.log_level)
    except SettingsError as exc:
        print(f"slopewatch: {exc}", file=sys.stderr)
        return 2
    runtime.setup_logging(settings.log_level)
    try:
        return asyncio.run(_dispatch(args, settings))
    except (DatabaseUnavailable, MigrationError, RegistryError) as exc:
        print(f"slopewatch: {exc}", file=sys.stderr)
        return 1
    except BrokerRefused as exc:
        print(f"slopewatch {args.command}: {exc}", file=sys.stderr)
        return 1
    except (KeyFileError, HeadsFileError) as exc:
        print(f"slopewatch {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


async def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    command: str = args.command
    if command == "demo":
        from cli.demo import run_demo

        return await run_demo(args, settings)
    if command == "registry":
        return await _registry(args, settings)
    if command == "db":
        if args.db_command == "login-user":
            return await _login_user(args, settings)
        return await _migrate(settings)
    if command == "token":
        from cli import tokens

        with runtime.database(settings) as dsn:
            await prepare_database(dsn, settings)
            return await tokens.run(args, settings, dsn)
    if command == "notify":
        from cli import notify

        return await notify.dispatch(args, settings)
    if command == "keygen":
        from cli import integrity

        return integrity.run_keygen(args)
    if command == "broker":
        from cli import broker

        return await broker.run(args, settings)
    if command in ("verify", "seal"):
        from cli import integrity

        with runtime.database(settings) as dsn:
            if command == "seal":
                await prepare_database(dsn, settings)
                return await integrity.run_seal(args, settings, dsn)
            return await integrity.run_verify(args, settings, dsn)
    if command == "reference":
        from cli import reference

        with runtime.database(settings) as dsn:
            await prepare_database(dsn, settings)
            return await reference.run(args, settings, dsn)
    if command == "ingest":
        return await _ingest(settings)
    if command == "analyze":
        return await _analyze(settings)
    if command == "watchdog":
        return await _watchdog(settings)
    if command == "api":
        return await _api(args, settings)
    if command == "simulate":
        from simulators import simulate

        return await simulate.run_simulate(args, settings)
    if command == "replay":
        from simulators import replay

        return await replay.run_replay(args, settings)
    if command == "backtest":
        from analytics import backtest

        return backtest.run(args)
    raise AssertionError(command)


async def prepare_database(dsn: str, settings: Settings) -> None:
    conn = await connect(dsn, settings)
    try:
        report = await migrate(conn, timescaledb=settings.timescaledb)
        await apply_policies(
            conn, compress_after_days=settings.compress_after_days, retention_days=settings.retention_days
        )
    finally:
        await conn.close()
    print(
        f"database schema up to date: flavour={report.flavour} applied={len(report.applied)} "
        f"already={report.already}"
        + (f" timescaledb={report.timescaledb_version}" if report.timescaledb_version else ""),
        file=sys.stderr,
    )


async def _migrate(settings: Settings) -> int:
    with runtime.database(settings) as dsn:
        await prepare_database(dsn, settings)
    return 0


def _actor(what: str) -> str:
    """Who is acting, for audited registry events: the operating-system user and the command."""
    return f"{getpass.getuser()} via slopewatch {what}"


async def _login_user(args: argparse.Namespace, settings: Settings) -> int:
    from db.roles import LoginError, check_login, ensure_login

    password = os.environ.get(args.password_env)
    if not password:
        print(f"slopewatch db login-user: environment variable {args.password_env} is not set", file=sys.stderr)
        return 2
    try:
        check_login(args.name, args.service, password)
    except LoginError as exc:
        print(f"slopewatch db login-user: {exc}", file=sys.stderr)
        return 2
    with runtime.database(settings) as dsn:
        await prepare_database(dsn, settings)
        conn = await connect(dsn, settings)
        try:
            created = await ensure_login(conn, args.name, args.service, password)
        except LoginError as exc:
            print(f"slopewatch db login-user: {exc}", file=sys.stderr)
            return 2
        finally:
            await conn.close()
    print(f"{'created' if created else 'updated'} login {args.name} in slopewatch_{args.service}")
    return 0


async def _registry(args: argparse.Namespace, settings: Settings) -> int:
    if args.registry_command == "move":
        return await _move(args, settings)
    reg = load_registry(args.file)
    summary = ", ".join(f"{v} {k}" for k, v in registry_summary(reg).items())
    if args.registry_command == "check":
        print(f"{args.file}: valid ({summary})")
        return 0
    with runtime.database(settings) as dsn:
        await prepare_database(dsn, settings)
        conn = await connect(dsn, settings)
        try:
            report = await store_registry(conn, reg, actor=_actor(f"registry load {args.file}"))
        finally:
            await conn.close()
    print(f"{args.file}: loaded ({summary})")
    if report.not_in_file:
        print(
            f"note: {len(report.not_in_file)} sensor(s) in the database are not in this file and were left as they are: "
            + ", ".join(report.not_in_file[:20])
        )
    return 0


async def _move(args: argparse.Namespace, settings: Settings) -> int:
    from db.registry import MoveError, move_mine

    with runtime.database(settings) as dsn:
        await prepare_database(dsn, settings)
        conn = await connect(dsn, settings)
        try:
            moved = await move_mine(conn, args.mine, args.region, actor=_actor(f"registry move {args.mine}"))
        except MoveError as exc:
            print(f"slopewatch registry move: {exc}", file=sys.stderr)
            return 2
        finally:
            await conn.close()
    if moved is None:
        print(f"mine {args.mine} is already in region {args.region}; nothing moved")
    else:
        print(
            f"mine {moved.mine_code} moved from {moved.from_region} to {moved.to_region} "
            f"with {moved.open_alerts} open alert(s) (move {moved.id}, {moved.moved_at.isoformat()})"
        )
    return 0


async def _run_services(
    settings: Settings, *, make: Callable[[], list[tuple[str, Awaitable[None], Callable[[], None]]]]
) -> int:
    services = make()

    def stop_all() -> None:
        for _, _, stop in services:
            stop()

    runtime.on_stop_signal(stop_all)
    async with asyncio.TaskGroup() as tg:
        for name, coro, _ in services:
            tg.create_task(coro, name=name)  # type: ignore[arg-type]
    return 0


async def _ingest(settings: Settings) -> int:
    registry = CollectorRegistry()
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.metrics_host, registry=registry)
    with runtime.database(settings) as dsn:
        async with runtime.broker(settings) as mqtt, open_pool(dsn, settings) as pool:
            service = IngestService(settings, pool, mqtt, IngestMetrics(registry))
            return await _run_services(settings, make=lambda: [("ingest", service.run(), service.stop)])


async def _analyze(settings: Settings) -> int:
    from cli.integrity import sealer_outputs

    signer, heads_file = sealer_outputs(settings)
    registry = CollectorRegistry()
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.metrics_host, registry=registry)
    with runtime.database(settings) as dsn:
        async with open_pool(dsn, settings) as pool:
            worker = AnalysisWorker(settings, pool, AnalysisMetrics(registry))
            notifier = Notifier(settings, pool)
            seal_stop = asyncio.Event()
            return await _run_services(
                settings,
                make=lambda: [
                    ("analyze", worker.run(), worker.stop),
                    ("notify", notifier.run(), notifier.stop),
                    ("seal", run_sealer(pool, seal_stop, signer=signer, heads_file=heads_file), seal_stop.set),
                ],
            )


async def _watchdog(settings: Settings) -> int:
    from api.watchdog import Watchdog

    if settings.watchdog_poll_s <= 0:
        print("slopewatch watchdog: SLOPEWATCH_WATCHDOG_POLL_S must be above 0 to watch", file=sys.stderr)
        return 2
    with runtime.database(settings) as dsn:
        async with open_pool(dsn, settings) as pool:
            dog = Watchdog(settings, pool)
            stop = asyncio.Event()

            async def watch() -> None:
                task = asyncio.create_task(dog.run(), name="watchdog")
                await stop.wait()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

            return await _run_services(settings, make=lambda: [("watchdog", watch(), stop.set)])


async def _api(args: argparse.Namespace, settings: Settings) -> int:
    host = args.host or settings.api_host
    port = args.port or settings.api_port
    with runtime.database(settings) as dsn:
        server = runtime.api_server(
            create_app(settings, dsn=dsn), host, port, tls_cert=settings.api_tls_cert, tls_key=settings.api_tls_key
        )
        scheme = "https" if settings.api_tls_cert else "http"
        print(f"API on {scheme}://{host}:{port}/docs", file=sys.stderr)

        def stop() -> None:
            server.should_exit = True

        return await _run_services(settings, make=lambda: [("api", server.serve(), stop)])


if __name__ == "__main__":
    sys.exit(main())
