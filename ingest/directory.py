"""Which sensors exist: the registry as ingest sees it, refreshed from the database."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import asyncpg

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class KnownSensor:
    sensor_id: int
    channels: frozenset[str]


class SensorDirectory:
    """Maps (mine code, sensor code) to the sensor's id and channels.

    A miss triggers a reload, at most once per ``min_reload_s``, so a sensor added to
    the registry is accepted within seconds without a restart, while a flood of
    unknown sensors cannot hammer the database.
    """

    def __init__(self, pool: asyncpg.Pool, *, min_reload_s: float = 5.0) -> None:
        self._pool = pool
        self._min_reload_s = min_reload_s
        self._sensors: dict[tuple[str, str], KnownSensor] = {}
        self._loaded_at = float("-inf")

    def __len__(self) -> int:
        return len(self._sensors)

    async def load(self) -> None:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT m.code AS mine, s.code AS sensor, s.id, s.channels FROM sensor s JOIN mine m ON m.id = s.mine_id"
            )
        self._sensors = {(r["mine"], r["sensor"]): KnownSensor(r["id"], frozenset(r["channels"])) for r in rows}
        self._loaded_at = time.monotonic()
        logger.info("sensor directory loaded sensors=%d", len(self._sensors))

    def get(self, mine: str, sensor: str) -> KnownSensor | None:
        return self._sensors.get((mine, sensor))

    async def lookup(self, mine: str, sensor: str) -> KnownSensor | None:
        found = self._sensors.get((mine, sensor))
        if found is None and time.monotonic() - self._loaded_at >= self._min_reload_s:
            await self.load()
            found = self._sensors.get((mine, sensor))
        return found
