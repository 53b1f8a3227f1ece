"""The pure parts of notifications: the escalation policy grammar, webhook signatures, the
rate-limit plan and the settings check."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from core.model import Level
from core.settings import Settings, SettingsError
from notify.policy import EscalationPolicy, PolicyError, Tier, parse_duration_s
from notify.ratelimit import Due, Plan, plan_target
from notify.signing import SignatureError, sign, verify


def test_default_policy_ladders() -> None:
    policy = EscalationPolicy.parse(Settings().escalation)
    assert policy.ladder(Level.RED) == [
        (Tier.MINE, 0.0),
        (Tier.COUNTY, 300.0),
        (Tier.CITY, 900.0),
        (Tier.PROVINCE, 1800.0),
    ]
    assert policy.ladder(Level.ORANGE) == [
        (Tier.MINE, 0.0),
        (Tier.COUNTY, 1800.0),
        (Tier.CITY, 7200.0),
        (Tier.PROVINCE, 21600.0),
    ]
    assert policy.ladder(Level.YELLOW) == [(Tier.MINE, 0.0), (Tier.COUNTY, 86400.0)]
    assert policy.ladder(Level.BLUE) == [(Tier.MINE, 0.0)]
    assert (
        policy.describe()
        == "red:county=5m,city=15m,province=30m;orange:county=30m,city=2h,province=6h;yellow:county=1d"
    )
    assert EscalationPolicy.parse(policy.describe()) == policy


def test_policy_text_variants() -> None:
    assert EscalationPolicy.parse("").ladder(Level.RED) == [(Tier.MINE, 0.0)]
    assert EscalationPolicy.parse("none").describe() == "none"
    spaced = EscalationPolicy.parse(" RED : city = 90s , county = 1.5m ; ")
    assert spaced.ladder(Level.RED) == [(Tier.MINE, 0.0), (Tier.COUNTY, 90.0), (Tier.CITY, 90.0)]
    assert parse_duration_s("2") == 2.0
    assert parse_duration_s("1d") == 86400.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "red:county=5x",
            "SLOPEWATCH_ESCALATION: 'red:county=5x': '5x' is not a duration; write e.g. 30s, 5m, 2h or 1d",
        ),
        (
            "red:city=5m,county=10m",
            "SLOPEWATCH_ESCALATION: 'red:city=5m,county=10m': city (5m) comes before county (10m); "
            "delays must not decrease up the ladder",
        ),
        (
            "purple:county=1m",
            "SLOPEWATCH_ESCALATION: 'purple:county=1m': unknown warning level 'purple'; "
            "expected one of none, blue, yellow, orange, red",
        ),
        (
            "red county=5m",
            "SLOPEWATCH_ESCALATION: 'red county=5m': expected level:tier=duration,... e.g. red:county=5m,city=15m",
        ),
        (
            "red:mine=1m",
            "SLOPEWATCH_ESCALATION: 'red:mine=1m': 'mine=1m' should be county=, city= or province=<duration>",
        ),
        ("red:county=1m;red:city=2m", "SLOPEWATCH_ESCALATION: level red is given twice"),
        ("red:county=1m,county=2m", "SLOPEWATCH_ESCALATION: 'red:county=1m,county=2m': county is given twice"),
    ],
)
def test_bad_policy_is_a_settings_error(text: str, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"SLOPEWATCH_ESCALATION": text})
    assert str(info.value) == message
    with pytest.raises(PolicyError):
        EscalationPolicy.parse(text)


def test_notify_settings_from_env() -> None:
    s = Settings.from_env({"SLOPEWATCH_NOTIFY_RATE_PER_MINUTE": "3", "SLOPEWATCH_ESCALATION": "red:county=1m"})
    assert (s.notify_rate_per_minute, s.escalation) == (3, "red:county=1m")
    with pytest.raises(SettingsError, match=r"^SLOPEWATCH_NOTIFY_RATE_PER_MINUTE must be positive$"):
        Settings.from_env({"SLOPEWATCH_NOTIFY_RATE_PER_MINUTE": "0"})


def test_signature_round_trip_and_failures() -> None:
    secret, body, t = "whsec_test", b'{"version":1}', 1_700_000_000
    expected = hmac.new(b"whsec_test", b"1700000000." + body, hashlib.sha256).hexdigest()
    header = sign(secret, t, body)
    assert header == f"t=1700000000,v1={expected}"
    assert verify(secret, header, body, now_s=t + 299) == t
    # while a secret is rotated the header may carry two signatures
    assert verify(secret, f"t={t},v1={'0' * 64},v1={expected}", body, now_s=t) == t
    failures = {
        "stale": (header, body, t + 301),
        "mismatch": (header, body + b" ", t),
        "malformed": ("v1=" + expected, body, t),
    }
    for reason, (h, b, now) in failures.items():
        with pytest.raises(SignatureError) as info:
            verify(secret, h, b, now_s=now)
        assert info.value.reason == reason
    with pytest.raises(SignatureError) as wrong_key:
        verify("whsec_other", header, body, now_s=t)
    assert wrong_key.value.reason == "mismatch"


def test_rate_plan() -> None:
    normal = [Due(i, urgent=False) for i in (1, 2, 3, 4, 5)]
    # within budget: one message each
    assert plan_target(normal[:3], sent_in_window=0, per_minute=3, digest_max=50) == Plan(((1,), (2,), (3,)), ())
    # over budget: the last message of the budget is a digest of the rest
    assert plan_target(normal, sent_in_window=1, per_minute=3, digest_max=50) == Plan(((1,), (2, 3, 4, 5)), ())
    # the digest has a maximum size; what is beyond it stays due (not held)
    assert plan_target(normal, sent_in_window=2, per_minute=3, digest_max=2) == Plan(((1, 2),), ())
    # no budget left: held
    assert plan_target(normal[:2], sent_in_window=3, per_minute=3, digest_max=50) == Plan((), (1, 2))
    # red is never held, and uses budget
    mixed = [Due(1, urgent=False), Due(9, urgent=True), Due(10, urgent=True)]
    assert plan_target(mixed, sent_in_window=3, per_minute=3, digest_max=50) == Plan(((9,), (10,)), (1,))
    assert plan_target(mixed, sent_in_window=0, per_minute=3, digest_max=50) == Plan(((9,), (10,), (1,)), ())
