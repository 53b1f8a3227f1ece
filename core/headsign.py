"""Signed chain heads: what the sealer signs with a key the database never sees.

A chain head names a sensor and its newest chain entry (seq, entry_hash). The sealer signs
each head it produces with an Ed25519 private key kept in a file outside the database; the
signed heads are published outward (an append-only JSON-lines file, the API), where an
auditor archives them. Whoever controls the database can recompute a consistent chain after
rewriting readings, but cannot sign its new heads: against an archived signed head the
rewrite shows (docs/integrity.md).

Signed message (big-endian)::

    "slopewatch/head/v1" | int32 len(mine) | mine UTF-8 | int32 len(sensor) | sensor UTF-8
    | int32 sensor_id | int64 seq | 32-byte entry_hash | int64 signed_at µs since 1970 UTC

The key id is the first 16 hex digits of SHA-256 over the raw 32-byte public key.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

FORMAT = "slopewatch/head/v1"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class KeyFileError(Exception):
    """A key file that is missing, unreadable or not an Ed25519 key; the message says which."""


class HeadFormatError(ValueError):
    """A signed head (a JSON line) that cannot be read; the message says why."""


def _us(t: datetime) -> int:
    return (t - _EPOCH) // timedelta(microseconds=1)


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class SignedHead:
    mine_code: str
    sensor_code: str
    sensor_id: int
    seq: int
    entry_hash: bytes
    signed_at: datetime
    key_id: str
    signature: bytes
    #: its position in the published sequence (writing transaction, row id); not signed
    xid: int = 0
    id: int = 0

    def message(self) -> bytes:
        return head_message(self.mine_code, self.sensor_code, self.sensor_id, self.seq, self.entry_hash, self.signed_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "xid": self.xid,
            "id": self.id,
            "mine_code": self.mine_code,
            "sensor_code": self.sensor_code,
            "sensor_id": self.sensor_id,
            "seq": self.seq,
            "entry_hash": self.entry_hash.hex(),
            "signed_at": self.signed_at.astimezone(UTC).isoformat(timespec="microseconds"),
            "key_id": self.key_id,
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_json(cls, doc: object) -> SignedHead:
        """Read one published head; HeadFormatError names the first field that is wrong."""
        if not isinstance(doc, dict):
            raise HeadFormatError("not a JSON object")
        if doc.get("format") != FORMAT:
            raise HeadFormatError(f"format is {doc.get('format')!r}, expected {FORMAT!r}")
        try:
            head = cls(
                mine_code=_field(doc, "mine_code", str),
                sensor_code=_field(doc, "sensor_code", str),
                sensor_id=_field(doc, "sensor_id", int),
                seq=_field(doc, "seq", int),
                entry_hash=bytes.fromhex(_field(doc, "entry_hash", str)),
                signed_at=datetime.fromisoformat(_field(doc, "signed_at", str)),
                key_id=_field(doc, "key_id", str),
                signature=bytes.fromhex(_field(doc, "signature", str)),
                xid=int(doc.get("xid") or 0),
                id=int(doc.get("id") or 0),
            )
        except ValueError as exc:
            raise HeadFormatError(str(exc)) from None
        if head.signed_at.tzinfo is None:
            raise HeadFormatError("signed_at has no UTC offset")
        if len(head.entry_hash) != 32 or len(head.signature) != 64:
            raise HeadFormatError("entry_hash must be 32 bytes and signature 64 bytes (hex)")
        if head.seq < 1:
            raise HeadFormatError("seq must be at least 1")
        return head


def _field(doc: Mapping[str, object], name: str, typ: type) -> Any:
    value = doc.get(name)
    if not isinstance(value, typ) or isinstance(value, bool):
        raise HeadFormatError(f"{name} is missing or not a {typ.__name__}")
    return value


def head_message(
    mine_code: str, sensor_code: str, sensor_id: int, seq: int, entry_hash: bytes, signed_at: datetime
) -> bytes:
    mine, sensor = mine_code.encode(), sensor_code.encode()
    return (
        FORMAT.encode()
        + struct.pack(">i", len(mine))
        + mine
        + struct.pack(">i", len(sensor))
        + sensor
        + struct.pack(">iq", sensor_id, seq)
        + entry_hash
        + struct.pack(">q", _us(signed_at))
    )


class HeadSigner:
    """Signs heads with the private key; held only by the sealer."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.key_id = key_id(private.public_key())

    def sign(
        self, mine_code: str, sensor_code: str, sensor_id: int, seq: int, entry_hash: bytes, signed_at: datetime
    ) -> SignedHead:
        message = head_message(mine_code, sensor_code, sensor_id, seq, entry_hash, signed_at)
        return SignedHead(
            mine_code, sensor_code, sensor_id, seq, entry_hash, signed_at, self.key_id, self._private.sign(message)
        )


class HeadVerifier:
    """Checks signed heads against one or more public keys (several after a key rotation)."""

    def __init__(self, keys: Iterable[Ed25519PublicKey]) -> None:
        self.keys = {key_id(k): k for k in keys}

    def problem(self, head: SignedHead) -> str | None:
        """None if the signature is good, else why not."""
        key = self.keys.get(head.key_id)
        if key is None:
            return f"it is signed with key {head.key_id}, which is not among the given public keys"
        try:
            key.verify(head.signature, head.message())
        except InvalidSignature:
            return f"its signature does not verify with key {head.key_id}"
        return None


def load_private_key(path: str | Path) -> HeadSigner:
    data = _read(path, "private key")
    try:
        key: object = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not an Ed25519 private key in PEM (make one with `slopewatch keygen`)")
    return HeadSigner(key)


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    data = _read(path, "public key")
    try:
        key: object = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path} is not an Ed25519 public key in PEM (the .pub file of `slopewatch keygen`)")
    return key


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{what} file {path} does not exist") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read {what} file {path}: {exc.strerror}") from None


def generate_key_pair(private_path: Path, public_path: Path) -> str:
    """Write a new Ed25519 key pair (private: PKCS#8 PEM, mode 0600; public: PEM) and return
    its key id. Existing files are never overwritten."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pub = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    for path in (private_path, public_path):
        if path.exists():
            raise KeyFileError(f"{path} exists already; refusing to overwrite a key")
        if not path.parent.is_dir():
            raise KeyFileError(f"directory {path.parent} does not exist")
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        public_path.write_bytes(pub)
    except OSError as exc:
        raise KeyFileError(f"cannot write the key pair: {exc.strerror}: {exc.filename}") from None
    return key_id(private.public_key())


def parse_line(line: str) -> SignedHead:
    try:
        doc = json.loads(line)
    except json.JSONDecodeError as exc:
        raise HeadFormatError(f"not JSON ({exc.msg})") from None
    return SignedHead.from_json(doc)
