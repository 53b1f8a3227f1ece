"""The demo registry: one province, its cities and counties, ten mines, about 100 sensors.

Names of mines are invented (no real mine is shown failing); region codes and
names follow GB/T 2260 for Jilin province. Thresholds are *reference* values in
the spirit of DOMAIN.md; a real design institute sets its own per sensor.

The structure (regions, mines, sites, sensor codes) is fixed; ``seed`` varies the
number of sensors per site and small details, never the codes used below.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Final

import yaml

from core.model import MineKind, SensorKind, SiteKind

#: The GNSS point on an open-pit slope that accelerates to failure in the demo.
DEMO_FAILING_SENSOR: Final = ("HONGLING-PIT", "GNSS-03")

_PROVINCE: Final = ("220000", "吉林省")
_CITIES: Final = (
    ("220200", "吉林市"),
    ("220500", "通化市"),
    ("220600", "白山市"),
)
_COUNTIES: Final = (
    ("220282", "桦甸市"),
    ("220284", "磐石市"),
    ("220521", "通化县"),
    ("220582", "集安市"),
    ("220605", "江源区"),
    ("220681", "临江市"),
)

# code, kind, county, Chinese name, English name, slope or dam height (m), crest elevation (m)
_MINES: Final = (
    ("HONGLING-PIT", MineKind.OPEN_PIT, "220605", "红岭铁矿露天采场", "Hongling Iron Mine open pit", 240.0, None),
    ("DONGGANG-PIT", MineKind.OPEN_PIT, "220681", "东岗石灰石矿露天采场", "Donggang Limestone Quarry", 180.0, None),
    (
        "BAISHILAZI-PIT",
        MineKind.OPEN_PIT,
        "220282",
        "白石砬子铜矿露天采场",
        "Baishilazi Copper Mine open pit",
        310.0,
        None,
    ),
    (
        "CHANGLING-PIT",
        MineKind.OPEN_PIT,
        "220284",
        "长岭硅灰石矿露天采场",
        "Changling Wollastonite Mine open pit",
        160.0,
        None,
    ),
    ("DAYANGCHA-PIT", MineKind.OPEN_PIT, "220521", "大阳岔白云岩矿露天采场", "Dayangcha Dolomite Quarry", 205.0, None),
    ("LAOLING-DUMP", MineKind.DUMP, "220582", "老岭铅锌矿排土场", "Laoling Lead-Zinc Mine waste dump", 150.0, None),
    (
        "QINGSHANGOU-TSF",
        MineKind.TAILINGS_POND,
        "220282",
        "青山沟金矿尾矿库",
        "Qingshangou Gold Mine tailings pond",
        62.0,
        258.0,
    ),
    (
        "SONGJIANG-TSF",
        MineKind.TAILINGS_POND,
        "220284",
        "松江钼矿尾矿库",
        "Songjiang Molybdenum tailings pond",
        85.0,
        412.0,
    ),
    (
        "HUANGNIHE-TSF",
        MineKind.TAILINGS_POND,
        "220521",
        "黄泥河铁矿尾矿库",
        "Huangnihe Iron Mine tailings pond",
        48.0,
        536.0,
    ),
    (
        "YALUJIANG-TSF",
        MineKind.TAILINGS_POND,
        "220582",
        "鸭绿江铜矿尾矿库",
        "Yalujiang Copper tailings pond",
        70.0,
        305.0,
    ),
)

_RAIN_1H: Final = {"blue": 10.0, "yellow": 20.0, "orange": 30.0, "red": 50.0}
#: GB 51108 commentary: yellow at 暴雨 (50 mm/24 h); 大暴雨 100, 特大暴雨 250.
_RAIN_24H: Final = {"blue": 25.0, "yellow": 50.0, "orange": 100.0, "red": 250.0}


def _levels(red: float, shares: tuple[float, float, float] = (0.2, 0.5, 0.8), ndigits: int = 1) -> dict[str, float]:
    """Blue, yellow, orange as shares of red (orange = 80 % of red, as for reservoir landslides)."""
    b, y, o = shares
    return {
        "blue": round(red * b, ndigits),
        "yellow": round(red * y, ndigits),
        "orange": round(red * o, ndigits),
        "red": red,
    }


def _slope_displacement(height_m: float, working: bool) -> dict[str, dict[str, float]]:
    # GB 51214 reference: slope > 10 mm/day; cumulative horizontal > 6e-3 × slope height
    red_rate = 10.0 if not working else 15.0
    red_total = round(6e-3 * height_m * 1000.0)
    return {
        "horizontal_mm_per_day": _levels(red_rate),
        "vertical_mm_per_day": _levels(red_rate * 1.5),
        "horizontal_mm": _levels(float(red_total), (0.25, 0.5, 0.8), 0),
        "vertical_mm": _levels(float(red_total), (0.25, 0.5, 0.8), 0),
    }


def _dam_displacement() -> dict[str, dict[str, float]]:
    return {
        "horizontal_mm_per_day": {"blue": 1.0, "yellow": 2.0, "orange": 4.0, "red": 5.0},
        "vertical_mm_per_day": {"blue": 2.0, "yellow": 4.0, "orange": 6.0, "red": 8.0},
        "horizontal_mm": {"blue": 30.0, "yellow": 50.0, "orange": 80.0, "red": 100.0},
        "vertical_mm": {"blue": 40.0, "yellow": 70.0, "orange": 100.0, "red": 130.0},
    }


def _surface_reference(mine: str, code: str) -> dict[str, float]:
    """A surface point's reference: its position surveyed at installation, in the site's
    local grid (mm, far from zero). The simulator reads the point near it, moved since
    then along its direction of movement (simulators/fleet.py). Seeded per point, apart
    from the registry's own generator, so no other part of the demo province changed."""
    rng = random.Random(f"reference/{mine}/{code}")
    return {
        "east_mm": round(rng.uniform(-400_000.0, 400_000.0), 1),
        "north_mm": round(rng.uniform(-400_000.0, 400_000.0), 1),
        "up_mm": round(rng.uniform(-60_000.0, 60_000.0), 1),
    }


def _sensor(code: str, kind: SensorKind, name: str, interval_s: float, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"code": code, "kind": kind.value, "name": name, "interval_s": interval_s}
    doc.update(extra)
    return doc


def _rain_gauge(code: str, where: str) -> dict[str, Any]:
    return _sensor(
        code,
        SensorKind.RAIN,
        f"{where}雨量计 rain gauge",
        300.0,
        thresholds={"rain_1h_mm": _RAIN_1H, "rain_24h_mm": _RAIN_24H},
    )


def _open_pit_sites(rng: random.Random, code: str, name_zh: str, kind: MineKind, height: float) -> list[dict[str, Any]]:
    sites: list[dict[str, Any]] = []
    site_kind = SiteKind.DUMP if kind is MineKind.DUMP else SiteKind.SLOPE
    site_names = ("北帮边坡 north wall", "东帮边坡 east wall") if site_kind is SiteKind.SLOPE else ("1号排土场 dump 1",)
    gnss_no = crack_no = ts_no = inc_no = 0
    for s, site_name in enumerate(site_names):
        sensors: list[dict[str, Any]] = []
        site_height = round(height * (1.0 if s == 0 else rng.uniform(0.6, 0.9)))
        # the first site carries GNSS-01..GNSS-04 at least: DEMO_FAILING_SENSOR lives there
        for _ in range(4 if s == 0 else rng.randint(2, 3)):
            gnss_no += 1
            sensors.append(
                _sensor(
                    f"GNSS-{gnss_no:02d}",
                    SensorKind.GNSS,
                    f"{site_name.split()[0]}GNSS监测点{gnss_no} GNSS point {gnss_no}",
                    600.0,
                    baseline=_surface_reference(code, f"GNSS-{gnss_no:02d}"),
                    thresholds=_slope_displacement(site_height, working=s == 1),
                )
            )
        # Total stations and inclinometers carry no registered baseline: their first readings
        # are the reference (stored by the analysis with their times).
        for _ in range(rng.randint(0, 1)):
            ts_no += 1
            sensors.append(
                _sensor(
                    f"TS-{ts_no:02d}",
                    SensorKind.TOTAL_STATION,
                    f"测量机器人棱镜{ts_no} total-station prism {ts_no}",
                    1800.0,
                    thresholds=_slope_displacement(site_height, working=s == 1),
                )
            )
        for _ in range(1 if s == 0 else rng.randint(0, 1)):
            crack_no += 1
            width0 = round(rng.uniform(3.0, 25.0), 1)
            sensors.append(
                _sensor(
                    f"CRK-{crack_no:02d}",
                    SensorKind.CRACK,
                    f"坡顶裂缝计{crack_no} crest crack meter {crack_no}",
                    600.0,
                    baseline={"width_mm": width0},
                    thresholds={
                        "width_mm_per_day": {"blue": 0.5, "yellow": 1.0, "orange": 2.0, "red": 3.0},
                        "width_mm": {
                            "blue": width0 + 5.0,
                            "yellow": width0 + 10.0,
                            "orange": width0 + 20.0,
                            "red": width0 + 30.0,
                        },
                    },
                )
            )
        if s == 0:
            inc_no += 1
            depths = (5, 10, 15, 20, 30)
            sensors.append(
                _sensor(
                    f"INC-{inc_no:02d}",
                    SensorKind.INCLINOMETER,
                    f"深部测斜孔{inc_no} in-place inclinometer {inc_no}",
                    1800.0,
                    channels=[f"a_{d}m_mm" for d in depths],
                    thresholds={
                        "rate_mm_per_day": {"blue": 1.0, "yellow": 2.0, "orange": 4.0, "red": 5.0},
                        "cumulative_mm": {"blue": 20.0, "yellow": 40.0, "orange": 60.0, "red": 80.0},
                    },
                )
            )
            sensors.append(_rain_gauge("RG-01", name_zh))
        sites.append(
            {
                "code": f"{code}-S{s + 1}",
                "name": site_name,
                "kind": site_kind.value,
                "height_m": float(site_height),
                "sensors": sensors,
            }
        )
    return sites


def _tailings_sites(rng: random.Random, code: str, name_zh: str, height: float, crest: float) -> list[dict[str, Any]]:
    dam: list[dict[str, Any]] = []
    for i in range(1, rng.randint(3, 4) + 1):
        dam.append(
            _sensor(
                f"GNSS-{i:02d}",
                SensorKind.GNSS,
                f"坝体表面位移监测点{i} dam GNSS point {i}",
                1800.0,
                baseline=_surface_reference(code, f"GNSS-{i:02d}"),
                thresholds=_dam_displacement(),
            )
        )
    # GB 50863 minimum burial depth: red; orange = 1.1 × red
    red_depth = 4.0 if height < 60 else 6.0
    depth0 = red_depth + 4.0
    for i in range(1, rng.randint(3, 5) + 1):
        dam.append(
            _sensor(
                f"PZ-{i:02d}",
                SensorKind.PIEZOMETER,
                f"浸润线监测孔{i} piezometer {i}",
                1800.0,
                baseline={"depth_m": round(depth0 + rng.uniform(-0.8, 0.8), 2)},
                thresholds={
                    "depth_m": {
                        "blue": round(red_depth * 1.4, 2),
                        "yellow": round(red_depth * 1.25, 2),
                        "orange": round(red_depth * 1.1, 2),
                        "red": red_depth,
                    }
                },
            )
        )
    if rng.random() < 0.5:
        dam.append(
            _sensor(
                "INC-01",
                SensorKind.INCLINOMETER,
                "坝体测斜孔 dam inclinometer",
                1800.0,
                channels=["a_5m_mm", "a_10m_mm", "a_20m_mm"],
                thresholds={"rate_mm_per_day": {"blue": 0.5, "yellow": 1.0, "orange": 2.0, "red": 3.0}},
            )
        )
    normal = round(crest - 4.0, 1)
    # freeboard red = design minimum; pond level red = highest flood level
    pond: list[dict[str, Any]] = [
        _sensor(
            "PL-01",
            SensorKind.POND_LEVEL,
            "库水位计 pond level gauge",
            600.0,
            baseline={"level_m": normal},
            thresholds={
                "level_m": {"blue": normal + 0.8, "yellow": normal + 1.3, "orange": normal + 1.8, "red": normal + 2.3},
                "freeboard_m": {"blue": 3.2, "yellow": 2.7, "orange": 2.2, "red": 1.7},
            },
        ),
        _sensor(
            "BCH-01",
            SensorKind.BEACH,
            "干滩长度监测 dry beach",
            3600.0,
            baseline={"length_m": 200.0},
            thresholds={"length_m": {"blue": 120.0, "yellow": 100.0, "orange": 80.0, "red": 70.0}},
        ),
        _rain_gauge("RG-01", name_zh),
    ]
    return [
        {
            "code": f"{code}-DAM",
            "name": "初期坝及堆积坝 starter and raised dam",
            "kind": SiteKind.DAM.value,
            "height_m": height,
            "crest_elevation_m": crest,
            # the dam and the pond are one facility for the GB 39496 roll-up
            "facility": code,
            "sensors": dam,
        },
        {
            "code": f"{code}-POND",
            "name": "库区 pond",
            "kind": SiteKind.POND.value,
            "crest_elevation_m": crest,
            "facility": code,
            "sensors": pond,
        },
    ]


def _evacuation(kind: MineKind, name_zh: str, name_en: str, rng: random.Random) -> str:
    point = rng.choice(("东山坡集合点", "矿部广场集合点", "北岭高地集合点"))
    if kind is MineKind.TAILINGS_POND:
        village = rng.choice(("下游河口村", "下游柳树屯", "下游三道沟村"))
        return (
            f"红色警报：{name_zh}立即停止放矿和一切坝上作业，调度室按应急预案通知{village}村委会组织居民"
            f"沿上山撤离路线撤至{point}，同时报告县应急管理局。"
            f" RED: stop tailings discharge and all work on the dam of the {name_en}; the control room"
            " alerts the downstream village per the emergency plan and evacuates residents uphill to the"
            " assembly point; report to the county emergency management bureau."
        )
    return (
        f"红色警报：{name_zh}立即停产撤人，边坡下方及采场内全部人员和设备沿1号撤离路线撤至{point}，"
        "封闭危险区，调度室清点人数并报告县应急管理局。"
        f" RED: stop production at the {name_en} and evacuate: all people and equipment below the slope"
        " and in the pit leave by escape route 1 to the assembly point; close the danger zone; the control"
        " room counts heads and reports to the county emergency management bureau."
    )


def demo_registry(seed: int = 7) -> dict[str, Any]:
    """The demo registry document (passes :func:`core.registry.parse_registry`)."""
    rng = random.Random(seed)
    regions = [{"code": _PROVINCE[0], "name": _PROVINCE[1]}]
    regions += [{"code": c, "name": n} for c, n in _CITIES]
    regions += [{"code": c, "name": n} for c, n in _COUNTIES]
    mines: list[dict[str, Any]] = []
    for code, kind, county, name_zh, name_en, height, crest in _MINES:
        if kind is MineKind.TAILINGS_POND:
            assert crest is not None
            sites = _tailings_sites(rng, code, name_zh, height, crest)
        else:
            sites = _open_pit_sites(rng, code, name_zh, kind, height)
        mines.append(
            {
                "code": code,
                "name": f"{name_zh} {name_en}",
                "kind": kind.value,
                "region": county,
                "evacuation": _evacuation(kind, name_zh, name_en, rng),
                "sites": sites,
            }
        )
    return {"regions": regions, "mines": mines}


def write_demo_registry(path: Path, seed: int = 7) -> Path:
    """Write :func:`demo_registry` as YAML (UTF-8, Chinese kept readable)."""
    text = yaml.safe_dump(demo_registry(seed), allow_unicode=True, sort_keys=False, width=120)
    path.write_text(text, encoding="utf-8")
    return path
