"""Signed chain heads: a consistent rewrite of readings and chain by the table owner passes a
plain check, and is caught against the signed heads archived outside the database."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest

from api.app import create_app
from core import headsign
from core.registry import parse_registry
from core.settings import Settings
from db import heads, integrity
from db.integrity import seal_pass
from db.pool import open_pool
from db.registry import load_registry
from tests.conftest import bearer, issue_token, small_registry_doc
from tests.integrity.support import SEAL_ALL, T0, sensor_id, write_hourly
from tests.support.roles import owned_database

ROOT = Path(__file__).resolve().parents[2]


def cli(tmp: Path, *args: str, dsn: str | None = None, **env_extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLOPEWATCH_") and k != "DATABASE_URL"}
    env.update(SLOPEWATCH_DATA_DIR=str(tmp), SLOPEWATCH_LOG_LEVEL="WARNING", **env_extra)
    if dsn:
        env["DATABASE_URL"] = dsn
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def one_line_error(p: subprocess.CompletedProcess[str], text: str) -> None:
    """Exit 2, and exactly one line on stderr that says ``text``: no traceback."""
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stderr.strip().count("\n") == 0, p.stderr
    assert text in p.stderr, p.stderr


@dataclass
class Sealed:
    dsn: str
    pool: asyncpg.Pool
    key: Path
    pub: Path
    heads_file: Path
    sid: int


@pytest.fixture
async def sealed(pg_root_dsn: str, settings: Settings, tmp_path: Path) -> AsyncIterator[Sealed]:
    """GN01 with 24 hourly blocks, sealed in three passes by a signing sealer (heads 10, 20
    and 24 signed and published to the heads file), in a database owned by an ordinary login."""
    made = await asyncio.to_thread(cli, tmp_path, "keygen", str(tmp_path / "seal.pem"))
    assert made.returncode == 0, made.stderr
    key, pub = tmp_path / "seal.pem", tmp_path / "seal.pem.pub"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    signer = headsign.load_private_key(key)
    assert made.stdout.startswith(f"key {signer.key_id}: private {key}")
    heads_path = tmp_path / "heads.jsonl"
    async with owned_database(pg_root_dsn) as dsn, open_pool(dsn, settings) as pool:
        async with pool.acquire() as conn:
            await load_registry(conn, parse_registry(small_registry_doc()))
            sid = await sensor_id(conn, "GN01")
        out = heads.open_heads_file(heads_path)
        for start, hours in ((0, 10), (10, 10), (20, 4)):
            async with pool.acquire() as conn:
                await write_hourly(conn, sid, hours, start=T0 + timedelta(hours=start))
            report = await seal_pass(pool, SEAL_ALL, signer=signer)
            assert (report.seals, report.signed) == (hours, 1)
            assert await heads.publish(pool, out) == 1
        yield Sealed(dsn, pool, key, pub, heads_path, sid)


async def test_a_consistent_rewrite_by_the_owner_is_caught_by_the_archived_signed_heads(
    sealed: Sealed, tmp_path: Path
) -> None:
    lines = [json.loads(line) for line in sealed.heads_file.read_text().splitlines()]
    assert [(h["mine_code"], h["sensor_code"], h["seq"]) for h in lines] == [
        ("M1", "GN01", 10),
        ("M1", "GN01", 20),
        ("M1", "GN01", 24),
    ]
    archive = tmp_path / "archived.jsonl"
    archive.write_text(sealed.heads_file.read_text())  # what the auditor keeps
    key_args = ("--public-key", str(sealed.pub))
    before = await asyncio.to_thread(
        cli, tmp_path, "verify", "--mine", "M1", *key_args, "--archived-heads", str(archive), dsn=sealed.dsn
    )
    assert before.returncode == 0, before.stdout + before.stderr

    # The owner (no superuser) rewrites a reading of block 15:00 and recomputes the chain from
    # that block on (entries 1-15 stay as they were): every digest and link is consistent
    # again. Without the key it cannot sign new heads, so it removes the signatures that no
    # longer fit.
    conn = await asyncpg.connect(sealed.dsn)
    try:
        assert not await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        await conn.execute("ALTER TABLE seal_entry DISABLE TRIGGER USER")
        await conn.execute("ALTER TABLE chain_head_signature DISABLE TRIGGER USER")
        await conn.execute(
            "UPDATE reading SET value = value + 25 WHERE sensor_id = $1 AND channel = 'east_mm' AND ts = $2",
            sealed.sid,
            T0 + timedelta(hours=15),
        )
        await conn.execute("DELETE FROM chain_head_signature WHERE sensor_id = $1 AND seq >= 16", sealed.sid)
        await conn.execute("DELETE FROM seal_entry WHERE sensor_id = $1 AND seq >= 16", sealed.sid)
        await conn.execute(
            "UPDATE seal_pending SET min_ts = $2, max_ts = $3 WHERE sensor_id = $1",
            sealed.sid,
            T0 + timedelta(hours=15),
            T0 + timedelta(hours=23),
        )
    finally:
        await conn.close()
    assert (await seal_pass(sealed.pool, SEAL_ALL)).seals == 9

    plain = await asyncio.to_thread(cli, tmp_path, "verify", "--mine", "M1", dsn=sealed.dsn)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert plain.stdout.split()[:2] == ["M1/GN01", "OK"]
    keyed = await asyncio.to_thread(cli, tmp_path, "verify", "--mine", "M1", *key_args, dsn=sealed.dsn)
    # What is left signed in the database (head 10) still fits: the copy there proves nothing.
    assert keyed.returncode == 0, keyed.stdout + keyed.stderr

    caught = await asyncio.to_thread(
        cli, tmp_path, "verify", "--mine", "M1", *key_args, "--archived-heads", str(archive), dsn=sealed.dsn
    )
    assert caught.returncode == 1, caught.stdout + caught.stderr
    out = caught.stdout.splitlines()
    assert out[0].split()[:2] == ["M1/GN01", "TAMPERED"]
    assert [line.split()[1] for line in out if line.startswith("M1/")] == ["TAMPERED", "OK"]
    finding = out[1]
    assert finding.startswith("    signed_head_mismatch: entry 20 is not the head signed ")
    assert (
        "the chain was rewritten after entry 10 (the newest signed head that still matches), in blocks "
        "2026-11-01T10:00:00+00:00 to 2026-11-01T19:00:00+00:00; 1 later signed head(s) differ too"
    ) in finding
    assert "1 with findings" in caught.stderr


async def test_signatures_are_checked_and_the_database_copy_too(sealed: Sealed, tmp_path: Path) -> None:
    key_args = ("--public-key", str(sealed.pub))
    lines = sealed.heads_file.read_text().splitlines()
    forged = json.loads(lines[1])
    forged["entry_hash"] = "00" * 32  # a head the sealer never signed
    other = tmp_path / "other.pem"
    headsign.generate_key_pair(other, tmp_path / "other.pub")
    foreign = headsign.load_private_key(other).sign("M1", "GN01", sealed.sid, 24, bytes(32), T0)
    archive = tmp_path / "archive.jsonl"
    archive.write_text(lines[0] + "\n" + json.dumps(forged) + "\n\n" + json.dumps(foreign.to_json()) + "\n")
    p = await asyncio.to_thread(
        cli, tmp_path, "verify", "--sensor", "GN01", *key_args, "--archived-heads", str(archive), dsn=sealed.dsn
    )
    assert p.returncode == 1, p.stdout + p.stderr
    findings = [line.strip() for line in p.stdout.splitlines()[1:]]
    assert findings[0].startswith("head_signature_invalid: signed head 20 (signed ")
    assert findings[0].endswith(f"its signature does not verify with key {forged['key_id']}")
    assert findings[1].startswith("head_signature_invalid: signed head 24 (signed ")
    assert findings[1].endswith(f"it is signed with key {foreign.key_id}, which is not among the given public keys")
    assert len(findings) == 2

    # The owner edits a stored signature's head instead of deleting it: the database copy shows it.
    conn = await asyncpg.connect(sealed.dsn)
    try:
        await conn.execute("ALTER TABLE chain_head_signature DISABLE TRIGGER USER")
        await conn.execute("UPDATE chain_head_signature SET signed_at = signed_at + interval '1 s' WHERE seq = 10")
    finally:
        await conn.close()
    p = await asyncio.to_thread(cli, tmp_path, "verify", "--sensor", "GN01", *key_args, dsn=sealed.dsn)
    assert p.returncode == 1, p.stdout + p.stderr
    assert p.stdout.splitlines()[1].strip().startswith("head_signature_invalid: signed head 10 (signed ")


async def test_the_api_serves_what_the_heads_file_holds_within_scope(
    sealed: Sealed, settings: Settings, tmp_path: Path
) -> None:
    app = create_app(settings, pool=sealed.pool)
    mine_token = bearer(await issue_token(sealed.pool, role="viewer", scope_kind="mine", scope_code="M1"))
    other_county = bearer(await issue_token(sealed.pool, role="viewer", scope_kind="region", scope_code="220203"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        r = await http.get("/api/v1/integrity/signed-heads?limit=2", headers=mine_token)
        assert r.status_code == 200, r.text
        page = r.json()
        r = await http.get(f"/api/v1/integrity/signed-heads?cursor={page['next_cursor']}", headers=mine_token)
        rest = r.json()
        served = page["items"] + rest["items"]
        assert served == [json.loads(line) for line in sealed.heads_file.read_text().splitlines()]
        # Saved pages are an archive `verify` reads as it is.
        saved = tmp_path / "pages.jsonl"
        saved.write_text(json.dumps(page) + "\n" + json.dumps(rest) + "\n")
        p = await asyncio.to_thread(
            cli, tmp_path, "verify", "--sensor", "GN01", "--public-key", str(sealed.pub), "--archived-heads",
            str(saved), dsn=sealed.dsn,
        )  # fmt: skip
        assert p.returncode == 0, p.stdout + p.stderr
        altered = json.loads(json.dumps(page))
        altered["items"][0]["seq"] = 11  # the pages are read, not skipped: an altered head shows
        saved.write_text(json.dumps(altered) + "\n")
        p = await asyncio.to_thread(
            cli, tmp_path, "verify", "--sensor", "GN01", "--public-key", str(sealed.pub), "--archived-heads",
            str(saved), dsn=sealed.dsn,
        )  # fmt: skip
        assert p.returncode == 1, p.stdout + p.stderr
        assert "head_signature_invalid: signed head 11" in p.stdout
        # Following the last cursor gives nothing until the next head.
        again = await http.get(f"/api/v1/integrity/signed-heads?cursor={rest['next_cursor']}", headers=mine_token)
        assert again.json()["items"] == []
        assert (await http.get("/api/v1/integrity/signed-heads", headers=other_county)).json()["items"] == []
    verifier = headsign.HeadVerifier([headsign.load_public_key(sealed.pub)])
    assert [verifier.problem(headsign.SignedHead.from_json(h)) for h in served] == [None, None, None]


async def test_the_heads_file_resumes_after_a_torn_line_without_duplicates(sealed: Sealed) -> None:
    before = sealed.heads_file.read_text()
    with sealed.heads_file.open("a") as f:
        f.write('{"format": "slopewatch/head/v1", "id": 9')  # a crash mid-write
    out = heads.open_heads_file(sealed.heads_file)
    assert sealed.heads_file.read_text() == before
    assert await heads.publish(sealed.pool, out) == 0
    async with sealed.pool.acquire() as conn:
        await write_hourly(conn, sealed.sid, 2, start=T0 + timedelta(hours=24))
    signer = headsign.load_private_key(sealed.key)
    assert (await seal_pass(sealed.pool, SEAL_ALL, signer=signer)).signed == 1
    assert await heads.publish(sealed.pool, out) == 1
    # A correction (through the API, which has no key) makes a new head: signed at the next pass.
    async with sealed.pool.acquire() as conn:
        await integrity.record_correction(
            conn, sealed.sid, channel=None, ts_from=T0, ts_to=T0 + timedelta(hours=1), action="invalidate",
            reason="prism knocked", actor="operator",
        )  # fmt: skip
    assert (await seal_pass(sealed.pool, SEAL_ALL, signer=signer)).signed == 1
    assert (await seal_pass(sealed.pool, SEAL_ALL, signer=signer)).signed == 0
    assert await heads.publish(sealed.pool, out) == 1
    seqs = [json.loads(line)["seq"] for line in sealed.heads_file.read_text().splitlines()]
    assert seqs == [10, 20, 24, 26, 27]


async def test_bad_keys_and_archives_are_one_line_errors(sealed: Sealed, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pub"
    one_line_error(
        await asyncio.to_thread(cli, tmp_path, "verify", "--public-key", str(missing), dsn=sealed.dsn),
        f"public key file {missing} does not exist",
    )
    one_line_error(
        await asyncio.to_thread(cli, tmp_path, "verify", "--public-key", str(sealed.key), dsn=sealed.dsn),
        "is not an Ed25519 public key in PEM",
    )
    one_line_error(
        await asyncio.to_thread(cli, tmp_path, "verify", "--archived-heads", str(sealed.heads_file), dsn=sealed.dsn),
        "--archived-heads needs the sealer's public key",
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text(sealed.heads_file.read_text().splitlines()[0] + "\nnot json at all\n")
    one_line_error(
        await asyncio.to_thread(
            cli, tmp_path, "verify", "--public-key", str(sealed.pub), "--archived-heads", str(bad), dsn=sealed.dsn
        ),
        f"{bad} line 2: not JSON",
    )
    bad.write_text('{"format": "slopewatch/head/v1", "mine_code": "M1"}\n')
    one_line_error(
        await asyncio.to_thread(
            cli, tmp_path, "verify", "--public-key", str(sealed.pub), "--archived-heads", str(bad), dsn=sealed.dsn
        ),
        f"{bad} line 1: sensor_code is missing or not a str",
    )
    one_line_error(
        await asyncio.to_thread(cli, tmp_path, "verify", "--anchors", str(bad), dsn=sealed.dsn),
        f"{bad} is not a heads JSON of /integrity/heads",
    )
    one_line_error(
        await asyncio.to_thread(cli, tmp_path, "keygen", str(sealed.key)),
        f"{sealed.key} exists already; refusing to overwrite a key",
    )
    # The analysis service refuses to start with a key file it cannot use, before anything else.
    one_line_error(
        await asyncio.to_thread(
            cli, tmp_path, "analyze", dsn=sealed.dsn, SLOPEWATCH_SEAL_KEY_FILE=str(tmp_path / "absent.pem")
        ),
        f"slopewatch analyze: private key file {tmp_path / 'absent.pem'} does not exist",
    )
    one_line_error(
        await asyncio.to_thread(
            cli,
            tmp_path,
            "analyze",
            dsn=sealed.dsn,
            SLOPEWATCH_SEAL_KEY_FILE=str(sealed.key),
            SLOPEWATCH_HEADS_FILE=str(tmp_path / "no-such-dir" / "heads.jsonl"),
        ),
        "cannot append to the heads file",
    )
