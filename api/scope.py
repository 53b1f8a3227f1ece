"""Query filters that narrow a listing within the caller's subtree (see api/auth.narrow)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from core.wire import CODE_PATTERN

RegionQuery = Annotated[
    str | None,
    Query(pattern=r"^[0-9]{6}$", description="GB/T 2260 code: only this region's subtree (province, city or county)"),
]
MineQuery = Annotated[
    str | None, Query(pattern=CODE_PATTERN.pattern, max_length=64, description="only this mine (its code)")
]
