"""The PGlite TimescaleDB test engine does what the schema needs, and its known limits hold.

These tests pin the engine's behaviour that the migrations and the test suite rely
on (see devtools/timescaledb/README.md); when the engine is upgraded they say what
changed.
"""

from __future__ import annotations

import asyncio
import io
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from .timescale import NodeNotFoundError, TimescaleEngine, TimescaleEngineError, start_timescale

pytestmark = pytest.mark.timescale

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BULK_ROWS = 10_000

INSERT_UNNEST = """
INSERT INTO {table} (sensor_id, channel, ts, value)
SELECT * FROM unnest($1::int[], $2::text[], $3::timestamptz[], $4::float8[])
ON CONFLICT DO NOTHING
"""


@pytest.fixture(scope="module")
def dsn() -> Iterator[str]:
    with start_timescale() as dsn:
        yield dsn


async def connect(dsn: str, **kwargs: object) -> asyncpg.Connection:
    return await asyncpg.connect(dsn, statement_cache_size=0, **kwargs)  # type: ignore[arg-type]


def readings(n: int, *, sensors: int = 40) -> tuple[list[int], list[str], list[datetime], list[float]]:
    """``n`` rows, one a minute per sensor from T0; values are the row index."""
    ids = [i % sensors for i in range(n)]
    ts = [T0 + timedelta(minutes=i // sensors) for i in range(n)]
    return ids, ["disp_h_mm"] * n, ts, [float(i) for i in range(n)]


async def test_schema_features_the_migrations_use(dsn: str) -> None:
    conn = await connect(dsn)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        version = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
        assert version.startswith("2.23")  # "2.23.0-dev": not a plain x.y.z
        await conn.execute(
            """
            CREATE TABLE reading_t (
                sensor_id int, channel text, ts timestamptz, value float8,
                PRIMARY KEY (sensor_id, channel, ts)
            )
            """
        )
        await conn.execute("SELECT create_hypertable('reading_t', by_range('ts', INTERVAL '1 day'))")
        await conn.execute(
            "ALTER TABLE reading_t SET (timescaledb.compress, timescaledb.compress_segmentby = 'sensor_id')"
        )
        compression_job = await conn.fetchval("SELECT add_compression_policy('reading_t', INTERVAL '7 days')")
        retention_job = await conn.fetchval("SELECT add_retention_policy('reading_t', INTERVAL '3650 days')")
        await conn.execute(
            """
            CREATE MATERIALIZED VIEW reading_t_hourly WITH (timescaledb.continuous) AS
            SELECT sensor_id, channel, time_bucket(INTERVAL '1 hour', ts) AS bucket,
                   min(value) AS min, max(value) AS max, avg(value) AS avg, count(*) AS n
            FROM reading_t GROUP BY sensor_id, channel, bucket
            WITH NO DATA
            """
        )
        refresh_job = await conn.fetchval(
            "SELECT add_continuous_aggregate_policy('reading_t_hourly',"
            " start_offset => NULL, end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 minute')"
        )
        jobs = {r["job_id"]: r["proc_name"] for r in await conn.fetch("SELECT * FROM timescaledb_information.jobs")}
        assert jobs[compression_job] == "policy_compression"
        assert jobs[retention_job] == "policy_retention"
        assert jobs[refresh_job] == "policy_refresh_continuous_aggregate"

        # 10,000 rows in one statement: a Bind of about half a megabyte.
        began = time.perf_counter()
        status = await conn.execute(INSERT_UNNEST.format(table="reading_t"), *readings(BULK_ROWS))
        elapsed = time.perf_counter() - began
        assert status == f"INSERT 0 {BULK_ROWS}"
        print(f"bulk insert: {BULK_ROWS} rows in {elapsed:.3f} s = {BULK_ROWS / elapsed:,.0f} rows/s")
        # A redelivered batch is a no-op.
        assert await conn.execute(INSERT_UNNEST.format(table="reading_t"), *readings(BULK_ROWS)) == "INSERT 0 0"

        # Refresh is explicit: background jobs do not run in this engine.
        assert await conn.fetchval("SELECT count(*) FROM reading_t_hourly") == 0
        await conn.execute("CALL refresh_continuous_aggregate('reading_t_hourly', NULL, NULL)")
        rows = await conn.fetch("SELECT n, min, max FROM reading_t_hourly WHERE sensor_id = 0 ORDER BY bucket")
        assert [r["n"] for r in rows] == [60] * (BULK_ROWS // 40 // 60) + [BULK_ROWS // 40 % 60]
        assert (rows[0]["min"], rows[0]["max"]) == (0.0, 59 * 40.0)

        # Compression by hand, and a duplicate landing in a compressed chunk.
        compressed = await conn.fetch("SELECT compress_chunk(c) FROM show_chunks('reading_t') c")
        assert compressed
        assert await conn.execute(INSERT_UNNEST.format(table="reading_t"), *readings(100)) == "INSERT 0 0"
        assert await conn.fetchval("SELECT count(*) FROM reading_t") == BULK_ROWS
        # A policy job can be run on demand.
        await conn.execute("CALL run_job($1)", retention_job)
    finally:
        await conn.close()


async def test_a_departing_client_leaves_no_session_state(dsn: str) -> None:
    conn = await connect(dsn)
    await conn.execute("SET application_name = 'leaky'")
    await conn.execute("CREATE TEMP TABLE leak_tmp (x int)")
    await conn.execute("SELECT pg_advisory_lock(4242)")
    await conn.execute("LISTEN leak_channel")
    await conn.execute("BEGIN")
    await conn.execute("CREATE TABLE leak_uncommitted (x int)")
    await conn.close()

    # The default statement cache would collide on names like __asyncpg_stmt_1__
    # if prepared statements outlived the connection.
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SHOW application_name") == ""
        assert await conn.fetchval("SELECT to_regclass('pg_temp.leak_tmp')") is None
        assert await conn.fetchval("SELECT to_regclass('leak_uncommitted')") is None
        assert await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
        assert await conn.fetch("SELECT pg_listening_channels()") == []
        assert await conn.fetchval("SHOW search_path") == '"$user", public'
        assert await conn.fetchval("SELECT $1::int + 1", 1) == 2
    finally:
        await conn.close()


async def test_transactions_savepoints_and_advisory_locks(dsn: str) -> None:
    conn = await connect(dsn)

    async def duplicate_in_savepoint() -> None:
        async with conn.transaction():
            await conn.execute("INSERT INTO tx_t VALUES (1)")

    async def failing_transaction() -> None:
        async with conn.transaction():
            await conn.execute("INSERT INTO tx_t VALUES (2)")
            await conn.execute("SELECT 1 / 0")

    try:
        await conn.execute("CREATE TABLE tx_t (x int UNIQUE)")
        async with conn.transaction():
            await conn.execute("INSERT INTO tx_t VALUES (1)")
            with pytest.raises(asyncpg.UniqueViolationError):
                await duplicate_in_savepoint()
            await conn.execute("INSERT INTO tx_t VALUES (3)")
        with pytest.raises(asyncpg.DivisionByZeroError):
            await failing_transaction()
        assert await conn.fetchval("SELECT array_agg(x ORDER BY x) FROM tx_t") == [1, 3]
        assert await conn.fetchval("SELECT pg_try_advisory_lock(1)") is True
        async with conn.transaction():
            assert await conn.fetchval("SELECT pg_try_advisory_xact_lock(2)") is True
        assert await conn.fetchval("SELECT pg_advisory_unlock(1)") is True
    finally:
        await conn.close()


async def test_a_pool_of_one_keeps_search_path_across_reset_all(dsn: str) -> None:
    # asyncpg's pool sends RESET ALL on release; the build's reset value of
    # search_path is pg_catalog, which the engine puts back to the stock default.
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1, statement_cache_size=0)
    try:
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE pool_t (x int)")
            await conn.execute("SET application_name = 'pooled'")
        results = await asyncio.gather(*(pool.fetchval("SELECT count(*) + $1::int FROM pool_t", i) for i in range(10)))
        assert results == list(range(10))
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW search_path") == '"$user", public'
            assert await conn.fetchval("SHOW application_name") == ""
    finally:
        await pool.close()


async def test_a_second_connection_waits_for_the_first(dsn: str) -> None:
    first = await connect(dsn)
    try:
        with pytest.raises(TimeoutError):
            await connect(dsn, timeout=1.0)
    finally:
        await first.close()
    second = await connect(dsn)
    await second.close()


async def test_listen_notify_within_one_connection(dsn: str) -> None:
    conn = await connect(dsn)
    try:
        got: list[str] = []
        await conn.add_listener("sw_test", lambda *args: got.append(args[-1]))
        await conn.execute("NOTIFY sw_test, 'hello'")
        await conn.execute("SELECT pg_notify('sw_test', 'again')")
        await asyncio.sleep(0.1)
        assert got == ["hello", "again"]
    finally:
        await conn.close()


async def test_copy_in_is_refused_cleanly_and_copy_out_works(dsn: str) -> None:
    conn = await connect(dsn)
    try:
        await conn.execute("CREATE TABLE copy_t (x int)")
        with pytest.raises(asyncpg.FeatureNotSupportedError):
            await conn.copy_records_to_table("copy_t", records=[(1,), (2,)])
        out = io.BytesIO()
        assert await conn.copy_from_query("SELECT generate_series(1, 3)", output=out) == "COPY 3"
        assert out.getvalue() == b"1\n2\n3\n"
    finally:
        await conn.close()


async def test_a_timed_out_query_leaves_the_connection_usable(dsn: str) -> None:
    # The cancel request is dropped; the statement runs to its end, then the
    # connection answers again. statement_timeout is not enforced either.
    conn = await connect(dsn)
    try:
        with pytest.raises(TimeoutError):
            await conn.fetchval("SELECT pg_sleep(1)", timeout=0.2)
        assert await conn.fetchval("SELECT 42") == 42
    finally:
        await conn.close()


def test_a_missing_node_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(NodeNotFoundError, match=r"Node\.js"), start_timescale():
        pass


def test_a_server_that_cannot_start_reports_its_stderr() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        engine = TimescaleEngine(port=taken.getsockname()[1])
        with pytest.raises(TimescaleEngineError, match="cannot listen") as caught:
            engine.start()
    assert "EADDRINUSE" in caught.value.stderr
