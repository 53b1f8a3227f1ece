"""The registry file: regions, mines, sites and sensors, with each sensor's thresholds.

A YAML or JSON document (see docs/registry.md). :func:`load_registry` reads and
validates it and raises :class:`RegistryError` listing every problem with its
place in the file, so a person can fix them all in one pass.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.model import (
    CHANNEL_NAME_PATTERN,
    KIND_SPECS,
    MineKind,
    RegionLevel,
    SensorKind,
    SiteKind,
    region_level_of,
    region_parent,
)
from core.thresholds import THRESHOLD_QUANTITIES, ThresholdSet
from core.wire import CODE_PATTERN

Code = Annotated[str, Field(pattern=CODE_PATTERN.pattern)]


class RegistryError(Exception):
    """The registry file is unusable; ``problems`` lists each as ``place: what is wrong``."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        listing = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in the registry:\n{listing}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Levels(_Strict):
    blue: float | None = None
    yellow: float | None = None
    orange: float | None = None
    red: float | None = None


class RegionDoc(_Strict):
    code: str = Field(description="six-digit GB/T 2260 code")
    name: str = Field(min_length=1, max_length=200)

    @field_validator("code")
    @classmethod
    def _gb2260(cls, v: str) -> str:
        region_level_of(v)
        return v


class SensorDoc(_Strict):
    code: Code
    kind: SensorKind
    name: str | None = Field(default=None, max_length=200)
    channels: list[str] | None = Field(
        default=None, description="channel names; only for kinds without fixed channels (inclinometer)"
    )
    interval_s: float = Field(default=3600, gt=0, le=86_400, description="expected reporting interval")
    baseline: dict[str, float] = Field(default_factory=dict, description="reference value per channel")
    thresholds: dict[str, Levels] = Field(default_factory=dict)


class SiteDoc(_Strict):
    code: Code
    name: str = Field(min_length=1, max_length=200)
    kind: SiteKind
    height_m: float | None = Field(default=None, gt=0, description="slope or dam height")
    crest_elevation_m: float | None = Field(default=None, description="dam crest, for freeboard")
    facility: Code | None = Field(
        default=None,
        description="the facility this site belongs to for the GB 39496 roll-up (a tailings pond's dam, pond "
        "and beach sites share one); default: the site is its own facility",
    )
    sensors: list[SensorDoc] = Field(default_factory=list)

    @property
    def facility_code(self) -> str:
        return self.facility or self.code


class MineDoc(_Strict):
    code: Code
    name: str = Field(min_length=1, max_length=200)
    kind: MineKind
    region: str = Field(description="county code of GB/T 2260")
    evacuation: str | None = Field(
        default=None, max_length=4000, description="停产撤人 instruction sent with a red alert"
    )
    sites: list[SiteDoc] = Field(default_factory=list)


class RegistryDoc(_Strict):
    regions: list[RegionDoc]
    mines: list[MineDoc] = Field(default_factory=list)

    def sensor_count(self) -> int:
        return sum(len(site.sensors) for mine in self.mines for site in mine.sites)


def sensor_channels(sensor: SensorDoc) -> tuple[str, ...]:
    spec = KIND_SPECS[sensor.kind]
    return spec.channels or tuple(sensor.channels or ())


def threshold_sets(sensor: SensorDoc) -> dict[str, ThresholdSet]:
    quantities = THRESHOLD_QUANTITIES[sensor.kind]
    return {
        name: ThresholdSet(quantities[name], levels.blue, levels.yellow, levels.orange, levels.red)
        for name, levels in sensor.thresholds.items()
        if name in quantities
    }


def parse_registry(doc: Any, source: str = "<registry>") -> RegistryDoc:
    """Validate a decoded document; raise RegistryError with every problem found."""
    try:
        reg = RegistryDoc.model_validate(doc)
    except ValidationError as exc:
        problems = [f"{_loc(err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise RegistryError(source, problems) from exc
    problems = _cross_checks(reg)
    if problems:
        raise RegistryError(source, problems)
    return reg


def load_registry(path: Path) -> RegistryDoc:
    """Read a .yaml/.yml/.json registry file."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError(source, [f"cannot read the file: {exc.strerror}"]) from exc
    try:
        doc = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise RegistryError(source, [f"not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"]) from exc
    return parse_registry(doc, source)


def _cross_checks(reg: RegistryDoc) -> list[str]:
    problems: list[str] = []
    regions: dict[str, RegionDoc] = {}
    for i, region in enumerate(reg.regions):
        if region.code in regions:
            problems.append(f"regions[{i}]: code {region.code} is listed twice")
        regions[region.code] = region
    for i, region in enumerate(reg.regions):
        parent = region_parent(region.code)
        if parent is not None and parent not in regions:
            problems.append(f"regions[{i}] ({region.code}): its parent region {parent} is not listed")
    mine_codes: set[str] = set()
    site_codes: set[str] = set()
    facility_mine: dict[str, str] = {}
    for m, mine in enumerate(reg.mines):
        where = f"mines[{m}] ({mine.code})"
        if mine.code in mine_codes:
            problems.append(f"{where}: mine code is listed twice")
        mine_codes.add(mine.code)
        if mine.region not in regions:
            problems.append(f"{where}: region {mine.region} is not listed under regions")
        elif region_level_of(mine.region) is not RegionLevel.COUNTY:
            problems.append(f"{where}: region {mine.region} is not a county-level code (mines sit under counties)")
        sensor_codes: set[str] = set()
        for s, site in enumerate(mine.sites):
            swhere = f"{where}.sites[{s}] ({site.code})"
            if site.code in site_codes:
                problems.append(f"{swhere}: site code is used twice (site codes are unique in the registry)")
            site_codes.add(site.code)
            owner = facility_mine.setdefault(site.facility_code, mine.code)
            if owner != mine.code:
                problems.append(
                    f"{swhere}: facility {site.facility_code} is also used in mine {owner} (a facility lies in one mine)"
                )
            for n, sensor in enumerate(site.sensors):
                problems.extend(_sensor_checks(f"{swhere}.sensors[{n}] ({sensor.code})", sensor))
                if sensor.code in sensor_codes:
                    problems.append(
                        f"{swhere}.sensors[{n}] ({sensor.code}): sensor code is used twice in mine {mine.code}"
                    )
                sensor_codes.add(sensor.code)
    return problems


def _sensor_checks(where: str, sensor: SensorDoc) -> list[str]:
    problems: list[str] = []
    spec = KIND_SPECS[sensor.kind]
    if spec.channels and sensor.channels is not None and tuple(sensor.channels) != spec.channels:
        problems.append(f"{where}: kind {sensor.kind} has fixed channels {list(spec.channels)}; leave 'channels' out")
    if not spec.channels:
        if not sensor.channels:
            problems.append(f"{where}: kind {sensor.kind} needs 'channels' (one per depth, e.g. a_5m_mm)")
        else:
            for ch in sensor.channels:
                if not re.match(CHANNEL_NAME_PATTERN, ch):
                    problems.append(f"{where}: channel {ch!r} must match {CHANNEL_NAME_PATTERN}")
            if len(set(sensor.channels)) != len(sensor.channels):
                problems.append(f"{where}: a channel is listed twice")
    channels = set(sensor_channels(sensor))
    for ch in sensor.baseline:
        if ch not in channels:
            problems.append(f"{where}: baseline names channel {ch!r}, which a {sensor.kind} does not have")
    quantities = THRESHOLD_QUANTITIES[sensor.kind]
    for name, levels in sensor.thresholds.items():
        if name not in quantities:
            problems.append(
                f"{where}: threshold {name!r} is not known for a {sensor.kind}; known: {sorted(quantities)}"
            )
            continue
        ts = ThresholdSet(quantities[name], levels.blue, levels.yellow, levels.orange, levels.red)
        problems.extend(f"{where}: threshold {name}: {p}" for p in ts.check())
    return problems


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<document>"


def registry_summary(reg: RegistryDoc) -> Mapping[str, int]:
    return {
        "regions": len(reg.regions),
        "mines": len(reg.mines),
        "sites": sum(len(m.sites) for m in reg.mines),
        "sensors": reg.sensor_count(),
    }
