"""Region scoping: a GB/T 2260 code narrows a listing to that region's subtree."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from api.errors import NotFound
from core.model import region_prefix
from db import queries
from db.pool import Conn

RegionQuery = Annotated[
    str | None,
    Query(pattern=r"^[0-9]{6}$", description="GB/T 2260 code: only this region's subtree (province, city or county)"),
]


async def scope_prefix(conn: Conn, region: str | None) -> str:
    """The code prefix of the region's subtree; empty for everything."""
    if region is None:
        return ""
    if await queries.region(conn, region) is None:
        raise NotFound(f"region {region} is not in the registry")
    return region_prefix(region)
