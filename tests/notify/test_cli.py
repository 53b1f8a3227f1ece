"""``slopewatch notify``: add, list, test, deliveries, remove against a real database and receiver."""

from __future__ import annotations

import asyncpg
import pytest

from cli import notify as cli_notify
from cli.main import build_parser
from core.settings import Settings
from notify.receiver import WebhookReceiver


async def notify(argv: list[str], settings: Settings, dsn: str) -> int:
    return await cli_notify.run(build_parser().parse_args(["notify", *argv]), settings, dsn)


async def test_add_list_test_deliveries_remove(
    loaded_dsn: str, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    async with WebhookReceiver() as hook:
        assert await notify(["add", "--scope", "220102", "--channel", "webhook", "--url", hook.url,
                             "--min-level", "orange", "--name", "county duty room"], settings, loaded_dsn) == 0  # fmt: skip
        out, err = capsys.readouterr()
        secret = out.strip()
        assert secret.startswith("whsec_")
        assert len(secret) == 49
        assert err == (
            f"target 1: webhook {hook.url} for region 220102, from orange. The signing secret above is shown only now.\n"
        )
        hook.secret = secret
        assert (
            await notify(["add", "--scope", "M1", "--channel", "sms", "--to", "+8613800000000"], settings, loaded_dsn)
            == 0
        )
        assert (
            await notify(["add", "--scope", "M1", "--channel", "sms", "--to", "+8613800000000"], settings, loaded_dsn)
            == 1
        )
        assert await notify(["add", "--scope", "999999", "--channel", "log"], settings, loaded_dsn) == 2
        assert (
            await notify(["add", "--scope", "M1", "--channel", "webhook", "--url", "ftp://x"], settings, loaded_dsn)
            == 2
        )
        capsys.readouterr()
        assert await notify(["list"], settings, loaded_dsn) == 0
        listing = capsys.readouterr().out.splitlines()
        assert [line.split()[:5] for line in listing[1:]] == [
            ["1", "region", "220102", "webhook", "orange"],
            ["2", "mine", "M1", "sms", "blue"],
        ]
        assert secret not in "\n".join(listing)

        assert await notify(["test", "1", "--note", "hello"], settings, loaded_dsn) == 0
        assert capsys.readouterr().out == f"target 1 (webhook {hook.url}): delivered (notification 1)\n"
        assert [item.verified for item in hook.received] == [True]
        assert hook.received[0].json()["notifications"][0]["text"] == "Slopewatch test notification for target 1. hello"

    # the receiver is gone: a test reports the failure at once and is not retried later
    assert await notify(["test", "1"], settings, loaded_dsn) == 1
    assert capsys.readouterr().err.startswith(f"target 1 (webhook {hook.url}): FAILED: ConnectError")
    assert await notify(["deliveries"], settings, loaded_dsn) == 0
    rows = [line.split()[:7] for line in capsys.readouterr().out.splitlines()[1:]]
    assert rows == [
        ["2", "-", "blue", "test", "1", "webhook", "failed"],
        ["1", "-", "blue", "test", "1", "webhook", "sent"],
    ]

    assert await notify(["remove", "1"], settings, loaded_dsn) == 0
    assert capsys.readouterr().out == "target 1 removed; 0 pending notification(s) cancelled\n"
    assert await notify(["remove", "1"], settings, loaded_dsn) == 1
    conn = await asyncpg.connect(loaded_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM notify_target WHERE removed_at IS NULL") == 1
    finally:
        await conn.close()
