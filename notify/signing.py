"""Webhook signatures: HMAC-SHA256 over ``<unix time>.<body>`` with the target's secret.

Header: ``X-Slopewatch-Signature: t=<unix seconds>,v1=<hex digest>``. A receiver recomputes
the digest over the raw body with its copy of the secret, compares in constant time, and
refuses a timestamp outside its replay window (default 5 minutes); see
docs/notifications.md.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

SIGNATURE_HEADER: Final = "X-Slopewatch-Signature"
#: Every generated secret starts with this, so a leaked one is easy to spot.
SECRET_MARK: Final = "whsec_"
DEFAULT_TOLERANCE_S: Final = 300


class SignatureError(ValueError):
    """A signature that does not verify; ``reason`` is malformed, stale or mismatch."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def new_secret() -> str:
    return SECRET_MARK + secrets.token_urlsafe(32)


def digest(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return mac.hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The header value for ``body`` sent at ``timestamp`` (unix seconds)."""
    return f"t={timestamp},v1={digest(secret, timestamp, body)}"


def verify(secret: str, header: str, body: bytes, *, now_s: float, tolerance_s: float = DEFAULT_TOLERANCE_S) -> int:
    """Check ``header`` against ``body``; returns the signed timestamp or raises SignatureError.

    Several ``v1=`` entries are accepted (one per secret while a secret is being rotated).
    """
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError(f"{SIGNATURE_HEADER} is not t=<unix>,v1=<hex>", reason="malformed")
    if abs(now_s - timestamp) > tolerance_s:
        raise SignatureError(
            f"signature timestamp {timestamp} is {now_s - timestamp:+.0f} s from now, outside ±{tolerance_s:g} s",
            reason="stale",
        )
    expected = digest(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise SignatureError("signature does not match the body and secret", reason="mismatch")
    return timestamp
