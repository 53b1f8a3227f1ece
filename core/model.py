"""The domain vocabulary shared by every layer: warning levels, sensor kinds, channels.

Nothing here does I/O. Units are in the names: ``east_mm``, ``depth_m``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final


class Level(enum.IntEnum):
    """Warning level, ordered low to high (GB 39496-2020 §5.5.4, GB 51108-2015 §8.3).

    ``NONE`` means the rule sees nothing to warn about.
    """

    NONE = 0
    BLUE = 1  # 蓝 注意 attention
    YELLOW = 2  # 黄 警示 caution
    ORANGE = 3  # 橙 警戒 warning
    RED = 4  # 红 警报 danger

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def label_zh(self) -> str:
        return _LEVEL_ZH[self]

    @classmethod
    def parse(cls, text: str) -> Level:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(
                f"unknown warning level {text!r}; expected one of none, blue, yellow, orange, red"
            ) from None


_LEVEL_ZH: Final = {
    Level.NONE: "正常",
    Level.BLUE: "蓝色(注意)",
    Level.YELLOW: "黄色(警示)",
    Level.ORANGE: "橙色(警戒)",
    Level.RED: "红色(警报)",
}

WARNING_LEVELS: Final = (Level.BLUE, Level.YELLOW, Level.ORANGE, Level.RED)


class SensorKind(enum.StrEnum):
    GNSS = "gnss"  # GNSS surface displacement 表面位移
    TOTAL_STATION = "total_station"  # robotic total station 全站仪
    CRACK = "crack"  # crack meter 裂缝计
    INCLINOMETER = "inclinometer"  # in-place inclinometer 固定式测斜仪 (internal displacement)
    PIEZOMETER = "piezometer"  # phreatic line 浸润线, burial depth below the dam surface
    POND_LEVEL = "pond_level"  # pond water level 库水位, elevation
    BEACH = "beach"  # dry beach length 干滩长度
    RAIN = "rain"  # tipping-bucket rain gauge 雨量计, mm per interval


#: The monitored item (监测项目) each kind of sensor belongs to: GB 39496 rolls point
#: levels up within an item, then items up to the site.
MONITORING_ITEM: dict[SensorKind, str] = {
    SensorKind.GNSS: "surface_displacement",
    SensorKind.TOTAL_STATION: "surface_displacement",
    SensorKind.CRACK: "crack",
    SensorKind.INCLINOMETER: "internal_displacement",
    SensorKind.PIEZOMETER: "phreatic_line",
    SensorKind.POND_LEVEL: "pond_level",
    SensorKind.BEACH: "dry_beach",
    SensorKind.RAIN: "rainfall",
}


@dataclass(frozen=True, slots=True)
class KindSpec:
    """What a sensor kind measures.

    ``channels`` is empty for kinds whose channels each sensor declares (inclinometers
    carry one channel per depth); ``channel_unit`` is then the unit of every channel.
    """

    kind: SensorKind
    channels: tuple[str, ...]
    channel_unit: str
    description: str
    displacement: bool = False

    def unit_of(self, channel: str) -> str:
        return self.channel_unit


KIND_SPECS: Final[dict[SensorKind, KindSpec]] = {
    SensorKind.GNSS: KindSpec(
        SensorKind.GNSS,
        ("east_mm", "north_mm", "up_mm"),
        "mm",
        "GNSS surface displacement, east/north/up from the reference position",
        displacement=True,
    ),
    SensorKind.TOTAL_STATION: KindSpec(
        SensorKind.TOTAL_STATION,
        ("east_mm", "north_mm", "up_mm"),
        "mm",
        "robotic total station prism, east/north/up from the reference position",
        displacement=True,
    ),
    SensorKind.CRACK: KindSpec(SensorKind.CRACK, ("width_mm",), "mm", "crack width", displacement=True),
    SensorKind.INCLINOMETER: KindSpec(
        SensorKind.INCLINOMETER,
        (),
        "mm",
        "in-place inclinometer, cumulative displacement at each depth (one channel per depth)",
        displacement=True,
    ),
    SensorKind.PIEZOMETER: KindSpec(
        SensorKind.PIEZOMETER, ("depth_m",), "m", "phreatic line burial depth below the dam surface"
    ),
    SensorKind.POND_LEVEL: KindSpec(SensorKind.POND_LEVEL, ("level_m",), "m", "pond water level elevation"),
    SensorKind.BEACH: KindSpec(SensorKind.BEACH, ("length_m",), "m", "dry beach length"),
    SensorKind.RAIN: KindSpec(SensorKind.RAIN, ("rain_mm",), "mm", "rainfall in the reporting interval"),
}

#: Channel names a sensor may declare for kinds without fixed channels.
CHANNEL_NAME_PATTERN: Final = r"^[a-z][a-z0-9_]{0,62}$"


class RegionLevel(enum.StrEnum):
    PROVINCE = "province"
    CITY = "city"
    COUNTY = "county"


def region_level_of(code: str) -> RegionLevel:
    """The level of a GB/T 2260 six-digit code: ``220000`` province, ``220100`` city, else county."""
    if len(code) != 6 or not code.isdigit():
        raise ValueError(f"region code {code!r} is not a six-digit GB/T 2260 code")
    if code[2:] == "0000":
        return RegionLevel.PROVINCE
    if code[4:] == "00":
        return RegionLevel.CITY
    return RegionLevel.COUNTY


def region_prefix(code: str) -> str:
    """The code prefix that every code in the region's subtree starts with."""
    level = region_level_of(code)
    return {RegionLevel.PROVINCE: code[:2], RegionLevel.CITY: code[:4], RegionLevel.COUNTY: code}[level]


def region_parent(code: str) -> str | None:
    level = region_level_of(code)
    if level is RegionLevel.PROVINCE:
        return None
    if level is RegionLevel.CITY:
        return code[:2] + "0000"
    return code[:4] + "00"


class MineKind(enum.StrEnum):
    OPEN_PIT = "open_pit"  # 露天矿山
    TAILINGS_POND = "tailings_pond"  # 尾矿库
    DUMP = "dump"  # 排土场


class SiteKind(enum.StrEnum):
    SLOPE = "slope"  # 边坡
    DAM = "dam"  # 坝体
    DUMP = "dump"  # 排土场
    POND = "pond"  # 库区
