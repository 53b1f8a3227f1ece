"""A hostile MQTT 3.1.1 publisher, written out byte by byte.

paho refuses to send what a compromised or broken gateway might (wildcards in a publish
topic, for one), so the broker's own checks could never be tested through it.
"""

from __future__ import annotations

import asyncio
import enum
import struct
import uuid


class Outcome(enum.Enum):
    ACKNOWLEDGED = "acknowledged"  # the broker sent PUBACK
    DISCONNECTED = "disconnected"  # the broker closed the connection instead


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(raw: bytes) -> bytes:
    return struct.pack("!H", len(raw)) + raw


def _packet(header: int, body: bytes) -> bytes:
    return bytes([header]) + _remaining_length(len(body)) + body


async def _read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    header = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return header, await reader.readexactly(length)


async def publish_raw(
    host: str, port: int, topic: bytes, payload: bytes, *, username: str | None = None, timeout_s: float = 5.0
) -> Outcome:
    """Connect (clean session), send one QoS 1 PUBLISH with ``topic`` as given, and report
    whether the broker acknowledged it or hung up."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        client_id = f"raw-{uuid.uuid4().hex[:8]}".encode()
        flags = 0x02 | (0x80 if username is not None else 0)
        connect = _string(b"MQTT") + bytes([4, flags]) + struct.pack("!H", 30) + _string(client_id)
        if username is not None:
            connect += _string(username.encode())
        writer.write(_packet(0x10, connect))
        header, body = await asyncio.wait_for(_read_packet(reader), timeout_s)
        if header != 0x20 or body[1] != 0:
            raise ConnectionError(f"CONNACK refused: {body!r}")
        packet_id = 1
        writer.write(_packet(0x32, _string(topic) + struct.pack("!H", packet_id) + payload))
        await writer.drain()
        try:
            header, body = await asyncio.wait_for(_read_packet(reader), timeout_s)
        except (asyncio.IncompleteReadError, ConnectionError):
            return Outcome.DISCONNECTED
        if header == 0x40 and struct.unpack("!H", body[:2])[0] == packet_id:
            return Outcome.ACKNOWLEDGED
        raise ConnectionError(f"unexpected packet {header:#x}")
    finally:
        writer.transport.abort()
