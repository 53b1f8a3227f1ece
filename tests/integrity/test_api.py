"""The integrity and gap endpoints over a real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import httpx
import pytest

from api.app import create_app
from core.settings import Settings
from db.integrity import ChainEntry, check_links, seal_pass
from db.pool import open_pool
from tests.conftest import bearer, issue_token
from tests.integrity.support import SEAL_ALL, T0, sensor_id, write_hourly

BASE = "/api/v1/mines/M1/sensors/GN01"
WINDOW = {"start": T0.isoformat(), "end": (T0 + timedelta(days=1)).isoformat()}


@dataclass
class Api:
    http: httpx.AsyncClient
    pool: asyncpg.Pool
    sid: int


@pytest.fixture
async def api(loaded_dsn: str, settings: Settings) -> AsyncIterator[Api]:
    async with open_pool(loaded_dsn, settings) as pool:
        async with pool.acquire() as conn:
            sid = await sensor_id(conn, "GN01")
            await write_hourly(conn, sid, 24)
            await write_hourly(conn, await sensor_id(conn, "PZ01"), 24, channels=("depth_m",))
        await seal_pass(pool, SEAL_ALL)
        app = create_app(settings.with_(summary_refresh_s=0), pool=pool)
        headers = bearer(await issue_token(pool))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t", headers=headers
        ) as http:
            yield Api(http, pool, sid)


def _entry(sid: int, d: dict[str, object]) -> ChainEntry:
    def t(v: object) -> datetime | None:
        return datetime.fromisoformat(str(v)) if v is not None else None

    return ChainEntry(
        sensor_id=sid,
        seq=int(str(d["seq"])),
        kind=str(d["kind"]),
        block_start=t(d["block_start"]),
        block_s=d["block_s"],  # type: ignore[arg-type]
        received_to=t(d["received_to"]),
        n_rows=int(str(d["n_rows"])),
        digest=bytes.fromhex(str(d["digest"])),
        keys_digest=bytes.fromhex(str(d["keys_digest"])) if d["keys_digest"] else None,
        prev_hash=bytes.fromhex(str(d["prev_hash"])),
        entry_hash=bytes.fromhex(str(d["entry_hash"])),
        sealed_at=datetime.fromisoformat(str(d["sealed_at"])),
    )


async def test_heads_are_scoped_and_the_chain_recomputes_from_the_json(api: Api) -> None:
    heads = (await api.http.get("/api/v1/integrity/heads")).json()
    assert [(h["mine_code"], h["sensor_code"], h["seq"]) for h in heads["items"]] == [
        ("M1", "GN01", 24),
        ("M1T", "PZ01", 24),
    ]
    county = bearer(await issue_token(api.pool, role="viewer", scope_kind="region", scope_code="220102"))
    mine_heads = (await api.http.get("/api/v1/integrity/heads", headers=county)).json()["items"]
    assert [h["sensor_code"] for h in mine_heads] == ["GN01"]
    assert (await api.http.get("/api/v1/integrity/heads", headers=county, params={"mine": "M1T"})).status_code == 404
    page = (await api.http.get("/api/v1/integrity/heads", params={"limit": 1})).json()
    rest = (await api.http.get("/api/v1/integrity/heads", params={"cursor": page["next_cursor"]})).json()
    assert [h["sensor_code"] for h in rest["items"]] == ["PZ01"]
    # An upper level holding head 24 recomputes every link from the published fields.
    entries = [_entry(api.sid, d) for d in (await api.http.get(f"{BASE}/chain")).json()]
    assert check_links(entries, api.sid) is None
    assert entries[-1].entry_hash.hex() == heads["items"][0]["entry_hash"]
    tail = (await api.http.get(f"{BASE}/chain", params={"after_seq": 22})).json()
    assert [e["seq"] for e in tail] == [23, 24]


async def test_verify_endpoint_reports_tampering(api: Api) -> None:
    ok = (await api.http.get(f"{BASE}/integrity", params=WINDOW)).json()
    assert (ok["status"], ok["blocks_checked"], ok["rows_checked"], ok["findings"]) == ("OK", 24, 72, [])
    assert ok["head"]["seq"] == 24
    async with api.pool.acquire() as conn:
        await conn.execute("DELETE FROM reading WHERE sensor_id = $1 AND ts = $2", api.sid, T0 + timedelta(hours=6))
    bad = (await api.http.get(f"{BASE}/integrity", params=WINDOW)).json()
    assert bad["status"] == "TAMPERED"
    assert [(f["reason"], f["seq"], f["block_start"]) for f in bad["findings"]] == [
        ("row_deleted", 7, "2026-11-01T06:00:00Z")
    ]
    assert "3 of its 3 sealed row(s) are gone" in bad["findings"][0]["detail"]
    mine = (await api.http.get("/api/v1/mines/M1/integrity", params=WINDOW)).json()
    assert [(r["sensor_code"], r["status"]) for r in mine] == [("GN01", "TAMPERED"), ("RG01", "OK")]
    too_long = {"start": T0.isoformat(), "end": (T0 + timedelta(days=40)).isoformat()}
    r = await api.http.get("/api/v1/mines/M1/integrity", params=too_long)
    assert (r.status_code, r.json()["message"]) == (400, "the window may be at most 31 days; ask for several windows")


async def test_corrections_need_an_operator_and_are_chained(api: Api) -> None:
    body = {"channel": "up_mm", "start": T0.isoformat(), "end": (T0 + timedelta(hours=2)).isoformat(),
            "action": "invalidate", "reason": "prism knocked over"}  # fmt: skip
    viewer = bearer(await issue_token(api.pool, role="viewer"))
    r = await api.http.post(f"{BASE}/corrections", json=body, headers=viewer)
    assert r.status_code == 403
    operator = bearer(await issue_token(api.pool, role="operator", scope_kind="mine", scope_code="M1"))
    r = await api.http.post(f"{BASE}/corrections", json=body, headers=operator)
    assert r.status_code == 201, r.text
    made = r.json()
    assert (made["seq"], made["action"], made["channel"]) == (25, "invalidate", "up_mm")
    assert made["actor"].startswith("test operator mine M1 (token ")
    assert (await api.http.get(f"{BASE}/corrections")).json() == [made]
    r = await api.http.post(f"{BASE}/corrections", json={**body, "channel": "nope"}, headers=operator)
    assert r.status_code == 400
    r = await api.http.post(f"{BASE}/corrections", json={**body, "start": "2026-11-01T00:00:00"}, headers=operator)
    assert r.status_code == 422
    ok = (await api.http.get(f"{BASE}/integrity", params=WINDOW)).json()
    assert (ok["status"], ok["head"]["kind"], ok["entries"]) == ("OK", "correction", 25)


async def test_gaps_endpoint_and_its_bounds(api: Api) -> None:
    async with api.pool.acquire() as conn:
        await conn.execute(
            "DELETE FROM reading WHERE sensor_id = $1 AND ts >= $2 AND ts < $3",
            api.sid,
            T0 + timedelta(hours=4),
            T0 + timedelta(hours=9),
        )
    r = (await api.http.get(f"{BASE}/gaps", params=WINDOW)).json()
    assert r["factor"] == 3.0
    assert r["gaps"][0] == {
        "start": "2026-11-01T03:00:00Z",
        "end": "2026-11-01T09:00:00Z",
        "duration_s": 21600.0,
        "expected_interval_s": 3600.0,
        "open_start": False,
        "ongoing": False,
    }
    assert r["gaps"][1]["start"] == "2026-11-01T23:00:00Z"
    assert r["gaps"][1]["ongoing"] is True
    assert (r["truncated"], len(r["gaps"])) == (False, 2)
    one = (await api.http.get(f"{BASE}/gaps", params={**WINDOW, "limit": 1})).json()
    assert (one["truncated"], len(one["gaps"])) == (True, 1)
    assert (await api.http.get(f"{BASE}/gaps", params={"start": "2026-11-01T00:00:00"})).status_code == 400
    year = {"start": T0.isoformat(), "end": (T0 + timedelta(days=400)).isoformat()}
    assert (await api.http.get(f"{BASE}/gaps", params=year)).status_code == 400
    assert (await api.http.get(f"{BASE}/gaps", params={**WINDOW, "factor": 1})).status_code == 422
    assert (await api.http.get("/api/v1/mines/M1/sensors/NOPE/gaps")).status_code == 404
