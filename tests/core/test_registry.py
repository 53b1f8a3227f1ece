from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from core.model import Level, region_prefix
from core.registry import RegistryError, load_registry, parse_registry, threshold_sets
from tests.conftest import small_registry_doc


def test_small_registry_is_valid() -> None:
    reg = parse_registry(small_registry_doc())
    assert reg.sensor_count() == 4
    gnss = reg.mines[0].sites[0].sensors[0]
    ts = threshold_sets(gnss)["horizontal_mm_per_day"]
    assert ts.level_of(1.0) is Level.NONE
    assert ts.level_of(5.0) is Level.YELLOW
    assert ts.level_of(25.0) is Level.RED


def test_every_problem_is_listed_with_its_place(tmp_path: Path) -> None:
    doc = copy.deepcopy(small_registry_doc())
    mines = doc["mines"]
    assert isinstance(mines, list)
    mines[0]["region"] = "220100"  # a city, not a county
    sensor = mines[0]["sites"][0]["sensors"][0]
    sensor["thresholds"] = {"horizontal_mm_per_day": {"blue": 10, "red": 5}, "depth_m": {"red": 1}}
    sensor["baseline"] = {"width_mm": 0}
    mines[1]["sites"][0]["sensors"][1]["code"] = "PZ01"  # duplicate within the mine
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    text = str(info.value)
    assert "not a county-level code" in text
    assert "red (5.0) must be greater than blue (10.0)" in text
    assert "threshold 'depth_m' is not known for a gnss" in text
    assert "baseline names channel 'width_mm'" in text
    assert "sensor code is used twice in mine M1T" in text
    assert len(info.value.problems) == 5


def test_schema_errors_name_the_field() -> None:
    doc = small_registry_doc()
    doc["mines"][0]["sites"][0]["sensors"][0]["kind"] = "laser"  # type: ignore[index]
    doc["mines"][0]["colour"] = "red"  # type: ignore[index]
    with pytest.raises(RegistryError) as info:
        parse_registry(doc)
    assert any("mines[0].sites[0].sensors[0].kind" in p for p in info.value.problems)
    assert any("mines[0].colour" in p for p in info.value.problems)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="cannot read"):
        load_registry(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(RegistryError, match="not valid JSON"):
        load_registry(bad)


def test_region_prefixes() -> None:
    assert region_prefix("220000") == "22"
    assert region_prefix("220100") == "2201"
    assert region_prefix("220102") == "220102"


def test_sites_share_a_facility_within_one_mine_only() -> None:
    import copy

    from tests.conftest import small_registry_doc

    doc = small_registry_doc()
    reg = parse_registry(doc)
    assert reg.mines[0].sites[0].facility_code == "M1-E"  # default: the site itself
    joined = copy.deepcopy(doc)
    joined["mines"][1]["sites"][0]["facility"] = "M1-E"  # type: ignore[index]
    with pytest.raises(RegistryError) as info:
        parse_registry(joined)
    assert any("facility M1-E is also used in mine M1" in p for p in info.value.problems)
