"""Hand-picked hostile requests against the real server: oversized bodies, identifiers that
try to climb out of a path or smuggle bytes, SQL in every filter, tampered cursors.

Each answer is a 4xx with the API's error shape (or, where the HTTP parser refuses the
request line itself, uvicorn's 400), never a 5xx; and no filter lets a county token see
past its own subtree.
"""

from __future__ import annotations

import base64
import json
import select
import socket
import time
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import bearer
from tests.security.conftest import OTHER_COUNTY_MARKERS, LiveApi, Seeded, raw_request

pytestmark = pytest.mark.usefixtures("api")

MB = 1024 * 1024


def paths(api: LiveApi) -> dict[str, dict[str, Any]]:
    doc: dict[str, dict[str, dict[str, Any]]] = api.app.openapi()["paths"]
    return doc


def is_error(body: bytes) -> bool:
    try:
        doc = json.loads(body)
    except ValueError:
        return False
    return isinstance(doc, dict) and isinstance(doc.get("error"), str) and isinstance(doc.get("message"), str)


# -- oversized bodies ------------------------------------------------------------------------


def post_targets(api: LiveApi, seeded: Seeded) -> list[str]:
    out = []
    for path, ops in paths(api).items():
        if "post" in ops:
            out.append(
                path.replace("{mine}", "M1").replace("{sensor}", "GN01").replace("{alert_id}", str(seeded.own_alert))
            )
    return out


def test_a_declared_10_mb_body_is_refused_before_it_is_sent(api: LiveApi, seeded: Seeded) -> None:
    """Content-Length over the limit: 413 right after the headers, without reading the body."""
    targets = post_targets(api, seeded)
    assert len(targets) == 10, targets  # with POST /mines/{mine}/sensors/{sensor}/reference
    for target in targets:
        started = time.monotonic()
        with socket.create_connection((api.host, api.port), timeout=10) as sock:
            sock.sendall(
                f"POST {target} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {seeded.admin}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {10 * MB}\r\n\r\n".encode()
            )
            response = _read_all(sock)
        status, body = _status_and_body(response)
        assert status == 413, (target, response[:300])
        assert json.loads(body)["error"] == "payload_too_large"
        assert time.monotonic() - started < 2.0


def test_a_streamed_body_is_cut_off_at_the_limit(api: LiveApi, seeded: Seeded) -> None:
    """No Content-Length (chunked): the server stops reading at the limit and answers 413
    while the client is still sending. The client offers 64 MiB; loopback socket buffers
    hold up to about 10 MiB, so an answer before 24 MiB were accepted means the server did
    not wait for the rest."""
    piece = b'{"note": "' + b"x" * (64 * 1024 - 10)
    chunk = b"%x\r\n%s\r\n" % (len(piece), piece)
    for target in post_targets(api, seeded):
        started = time.monotonic()
        with socket.create_connection((api.host, api.port), timeout=10) as sock:
            sock.sendall(
                f"POST {target} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {seeded.admin}\r\n"
                "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            )
            sent = 0
            while sent < 64 * MB:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break
                try:
                    sock.sendall(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += len(piece)
            response = _read_all(sock)
        status, answer = _status_and_body(response)
        assert status == 413, (target, response[:300])
        assert json.loads(answer)["error"] == "payload_too_large"
        assert sent < 24 * MB, (target, sent)
        assert time.monotonic() - started < 3.0
    # The server is unharmed.
    assert httpx.get(f"{api.base_url}/health").status_code == 200


def test_a_body_under_the_limit_is_read_and_validated(api: LiveApi, seeded: Seeded) -> None:
    """Just under the limit the route sees the body: the note is too long for its schema (422)."""
    note = "x" * (seeded.settings.api_max_body_bytes - 100)
    r = httpx.post(
        f"{api.base_url}/api/v1/alerts/{seeded.own_alert}/acknowledge",
        headers=bearer(seeded.admin),
        json={"note": note},
    )
    assert r.status_code == 422, r.text[:300]
    assert r.json()["error"] == "invalid_request"
    assert r.json()["details"][0]["where"] == "body.note"


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while data := sock.recv(65536):
            chunks.append(data)
    except ConnectionResetError:
        pass  # the server closed with our unread bytes in its buffer; what came before counts
    return b"".join(chunks)


def _status_and_body(response: bytes) -> tuple[int, bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


# -- hostile identifiers in paths ----------------------------------------------------------------

HOSTILE_IDS: list[tuple[str, bytes]] = [
    ("dot-dot", b".."),
    ("encoded dot-dot", b"%2e%2e"),
    ("encoded dot-dot upper", b"%2E%2E"),
    ("dot-dot slash", b"..%2f..%2fetc%2fpasswd"),
    ("double-encoded", b"%252e%252e"),
    ("overlong UTF-8 dot", b"%c0%ae%c0%ae"),
    ("NUL", b"M1%00"),
    ("NUL alone", b"%00"),
    ("CRLF", b"M1%0d%0aSet-Cookie:%20x=1"),
    ("unicode", "矿山".encode()),
    ("encoded unicode", b"%E7%9F%BF%E5%B1%B1"),
    ("full-width", "ＭＩ".encode()),
    ("invalid UTF-8", b"%ff%fe"),
    ("surrogate", b"%ed%a0%80"),
    ("10 kB code", b"M" * 10_240),
    ("65 characters", b"M" * 65),
    ("star", b"*"),
    ("percent", b"%25"),
    ("LIKE wildcards", b"M%25"),
    ("underscore", b"_1"),
    ("quote", b"M1'--"),
    ("SQL", b"M1%27%20OR%20%271%27%3D%271"),
    ("negative", b"-1"),
    ("huge number", b"9" * 40),
    ("float", b"1.5"),
    ("space", b"M%201"),
]


@pytest.mark.parametrize(("name", "ident"), HOSTILE_IDS, ids=[n for n, _ in HOSTILE_IDS])
def test_hostile_identifiers_in_paths(api: LiveApi, seeded: Seeded, name: str, ident: bytes) -> None:
    """In every path parameter of every operation (the others valid): 400, 404 or 422, never
    a 5xx, never a 200; and the web pages serve nothing outside their folder."""
    checked = 0
    for path, ops in paths(api).items():
        if "{" not in path:
            continue
        valid = {"mine": b"M1", "sensor": b"GN01", "alert_id": str(seeded.own_alert).encode()}
        for param in valid:
            if "{" + param + "}" not in path:
                continue
            values = {**valid, param: ident}
            target = path.encode()
            for key, value in values.items():
                target = target.replace(b"{" + key.encode() + b"}", value)
            for method in ops:
                r = raw_request(api.port, method.upper(), target, headers=bearer(seeded.admin))
                checked += 1
                assert r.status in (400, 404, 405, 422), (name, method, target[:200], r.status, r.body[:300])
                if r.status != 400 or is_error(r.body):
                    assert is_error(r.body), (name, target[:200], r.status, r.body[:300])
    assert checked >= 25
    for target in (b"/ui/" + ident, b"/ui/" + ident + b"/" + ident + b"/etc/passwd", b"/ui/js/" + ident + b"/api.js"):
        r = raw_request(api.port, "GET", target)
        assert r.status in (400, 404), (name, target[:200], r.status)


def test_traversal_out_of_the_web_folder(api: LiveApi) -> None:
    for target in (
        b"/ui/../../../../etc/passwd",
        b"/ui/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        b"/ui/..%2f..%2f..%2fapi%2fapp.py",
        b"/ui/js/../../app.py",
        b"/ui/%2e%2e%2fapp.py",
        b"/ui//etc/passwd",
        b"/ui/index.html%00.js",
    ):
        r = raw_request(api.port, "GET", target)
        assert r.status in (400, 404), (target, r.status)
        assert b"root:" not in r.body
        assert b"create_app" not in r.body


# -- SQL injection in every filter -------------------------------------------------------------------

INJECTIONS = [
    "' OR 1=1 --",
    "220102' OR '1'='1",
    "220102' OR '1'='1' --",
    "M1' OR '1'='1",
    "M1T' --",
    "1; DROP TABLE reading; --",
    "' UNION SELECT code, name FROM mine --",
    "%",
    "22%",
    "2202__",
    "_",
    "*",
    "$1",
    "\\",
    "220203",
    "M1T",
    "M1\x00",
    "' OR region_code LIKE '%",
]


def listings(api: LiveApi) -> list[tuple[str, list[str]]]:
    """Every GET without path parameters and its query parameters (the stream excepted)."""
    out = []
    for path, ops in paths(api).items():
        op = ops.get("get")
        if op is None or "{" in path or path.endswith("/stream"):
            continue
        names = [p["name"] for p in op.get("parameters", []) if p["in"] == "query"]
        if names:
            out.append((path, names))
    return out


def sensor_paths(api: LiveApi) -> list[tuple[str, list[str]]]:
    out = []
    for path, ops in paths(api).items():
        op = ops.get("get")
        if op is None or "{sensor}" not in path:
            continue
        names = [p["name"] for p in op.get("parameters", []) if p["in"] == "query"]
        if names:
            out.append((path.replace("{mine}", "M1").replace("{sensor}", "GN01"), names))
    return out


async def test_sql_injection_in_every_filter_never_widens_a_county_view(api: LiveApi, seeded: Seeded) -> None:
    county = bearer(seeded.county)
    admin = bearer(seeded.admin)
    targets = listings(api) + sensor_paths(api)
    assert len(targets) >= 12, targets
    async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as http:
        conn = await asyncpg.connect(seeded.dsn)
        try:
            before = await conn.fetchval("SELECT count(*) FROM reading")
        finally:
            await conn.close()
        sent = 0
        for path, names in targets:
            baseline = await http.get(path, headers=county)
            assert baseline.status_code in (200, 403), (path, baseline.text[:300])
            for name in names:
                for attack in INJECTIONS:
                    for who, headers in (("county", county), ("admin", admin)):
                        r = await http.get(path, headers=headers, params={name: attack})
                        sent += 1
                        assert r.status_code < 500, (who, path, name, attack, r.text[:300])
                        if r.status_code != 200:
                            assert r.status_code in (400, 403, 404, 422), (who, path, name, attack, r.status_code)
                            assert is_error(r.content), (who, path, name, attack, r.text[:300])
                            continue
                        if who == "county":
                            for marker in OTHER_COUNTY_MARKERS:
                                assert marker not in r.text, (path, name, attack, r.text[:300])
                        # An injection that got through as a filter value matches nothing more than no filter.
                        if baseline.status_code == 200 and who == "county":
                            assert _size(r.json()) <= _size(baseline.json()), (path, name, attack)
        print(f"SQL injection: {sent} requests over {len(targets)} endpoints")
        conn = await asyncpg.connect(seeded.dsn)
        try:
            assert await conn.fetchval("SELECT count(*) FROM reading") == before
            assert await conn.fetchval("SELECT count(*) FROM mine") == 2
        finally:
            await conn.close()
        # Exact: a text filter holding SQL is compared as text and matches nothing.
        r = await http.get("/api/v1/alerts", headers=admin, params={"rule": "' OR 1=1 --"})
        assert r.status_code == 200
        assert r.json()["items"] == []
        r = await http.get("/api/v1/alerts", headers=county, params={"region": "220102' OR '1'='1"})
        assert r.status_code == 422
        own = await http.get("/api/v1/alerts", headers=county)
        assert [a["id"] for a in own.json()["items"]] == [seeded.own_alert]


def _size(doc: Any) -> int:
    if isinstance(doc, dict) and isinstance(doc.get("items"), list):
        return len(doc["items"])
    if isinstance(doc, list):
        return len(doc)
    return 0


# -- tampered cursors ----------------------------------------------------------------------------


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


TAMPERED = [
    _cursor([1]),
    _cursor([None]),
    _cursor([[1, 2]]),
    _cursor([{"a": 1}]),
    _cursor([1e308]),
    _cursor([2**70]),
    _cursor(["x"]),
    _cursor(["M1", 1]),
    _cursor([1, 2]),
    _cursor(["2026-11-01T00:00:00", 2**70]),
    _cursor(["2026-11-01T00:00:00+00:00", -1]),
    _cursor(["2026-11-01T00:00:00+00:00", "x"]),
    _cursor(["9999-12-31T23:59:59+14:00", 1]),
    _cursor(["0001-01-01T00:00:00-12:00", 1]),
    _cursor(["9999-12-31T23:59:59-14:00", 1]),
    _cursor(["0001-01-01T00:00:00+14:00", "east_mm"]),
    _cursor(["2026-11-01T00:00:00+00:00", "east_mm\u0000"]),
    _cursor(["2026-11-01", None]),
    _cursor([True, False]),
    _cursor([1, 2, 3]),
    _cursor(["' OR 1=1 --", "' OR 1=1 --"]),
    "not base64!",
    "",
    "=",
    "W10",  # []
]
FEED_CURSORS = ["9" * 39 + ".1", "1." + "9" * 38, "²." + "1", "1.1.1", "-1.1", "latest", ".", "0.0"]


def test_tampered_cursors_are_refused_not_crashed(api: LiveApi, seeded: Seeded) -> None:
    cursor_targets = []
    for path, ops in paths(api).items():
        op = ops.get("get")
        if op is None or path.endswith("/stream"):
            continue
        names = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
        target = path.replace("{mine}", "M1").replace("{sensor}", "GN01").replace("{alert_id}", str(seeded.own_alert))
        if "cursor" in names:
            cursor_targets.append((target, "cursor", TAMPERED))
        if "after" in names:
            cursor_targets.append((target, "after", FEED_CURSORS))
    assert len(cursor_targets) >= 6, cursor_targets
    with httpx.Client(base_url=api.base_url, headers=bearer(seeded.admin), timeout=30) as http:
        for target, name, values in cursor_targets:
            for value in values:
                r = http.get(target, params={name: value})
                assert r.status_code in (200, 400, 422), (target, name, value, r.status_code, r.text[:300])
                if r.status_code != 200:
                    assert is_error(r.content), r.text[:300]


# -- times at the ends of the calendar ----------------------------------------------------------

EXTREME_TIMES = [
    "9999-12-31T23:59:59-14:00",  # after 9999 in UTC
    "0001-01-01T00:00:00+14:00",  # before year 1 in UTC
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999Z",
    "1970-01-01T00:00:00Z",
    "2026-11-01T00:00:00",  # no offset
    "2026-11-01T00:00:00+25:00",
    "-1",
    "1e30",
    "99999999999999999999",
]


def test_times_at_the_ends_of_the_calendar(api: LiveApi, seeded: Seeded) -> None:
    """Every time parameter, alone: answered, or refused with 4xx; never a 5xx."""
    targets = []
    for path, ops in paths(api).items():
        op = ops.get("get")
        if op is None or path.endswith("/stream"):
            continue
        names = [
            p["name"] for p in op.get("parameters", []) if p["in"] == "query" and "date-time" in json.dumps(p["schema"])
        ]
        target = path.replace("{mine}", "M1").replace("{sensor}", "GN01").replace("{alert_id}", str(seeded.own_alert))
        targets += [(target, name) for name in names]
    assert len(targets) >= 10, targets
    failures = []
    with httpx.Client(base_url=api.base_url, headers=bearer(seeded.admin), timeout=30) as http:
        for target, name in targets:
            for value in EXTREME_TIMES:
                r = http.get(target, params={name: value})
                if r.status_code >= 500 or (r.status_code != 200 and not is_error(r.content)):
                    failures.append((target, name, value, r.status_code))
    assert not failures, failures
