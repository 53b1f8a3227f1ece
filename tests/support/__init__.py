"""Helpers shared by tests: throwaway servers and the like (not a test package itself)."""

from .timescale import (
    DEFAULT_WORKDIR,
    NodeNotFoundError,
    TimescaleEngine,
    TimescaleEngineError,
    ensure_node_modules,
    start_timescale,
)

__all__ = [
    "DEFAULT_WORKDIR",
    "NodeNotFoundError",
    "TimescaleEngine",
    "TimescaleEngineError",
    "ensure_node_modules",
    "start_timescale",
]
