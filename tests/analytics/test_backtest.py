"""The backtest harness scores what it claims, on a tiny run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from analytics.backtest import FAMILIES, add_arguments, run, score_series, summarise


def test_a_fast_tertiary_series_is_red_a_day_ahead_with_a_good_forecast() -> None:
    fam = next(f for f in FAMILIES if f.name == "tertiary v0=5 7d")
    score = score_series(fam, 0, 6 * 3600.0)
    assert score.lead_h["red"] is not None
    assert score.lead_h["red"] >= 24.0
    assert score.lead_h["yellow"] is not None
    assert score.lead_h["yellow"] >= score.lead_h["red"]
    assert score.forecast_24h_made
    assert score.forecast_24h_error is not None
    assert score.forecast_24h_error <= 0.25
    summary = summarise(fam, [score])
    assert summary.red_24h == 1.0
    assert summary.targets["red >= 24 h in >= 95 %"]


def test_run_writes_json_and_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "bt.json"
    args = parser.parse_args(["--families", "stable faults", "--seeds", "1", "--step-h", "12", "--out", str(out)])
    assert run(args) == 0
    data = json.loads(out.read_text())
    (summary,) = data["summaries"]
    assert summary["family"] == "stable faults"
    assert summary["alarms_per_year"]["red"] == 0.0
    assert set(summary["rate_alarms_per_year"]) == {"blue", "yellow", "orange", "red"}
    assert "no rate-threshold alarm" in summary["targets"]
    assert data["series"][0]["evaluations"] > 100
    assert "stable faults" in capsys.readouterr().out


def test_unknown_family_is_an_error(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args(["--families", "no such thing", "--out", str(tmp_path / "x.json")])) == 2


def test_rate_thresholds_are_scored_and_a_fast_burst_crosses_them() -> None:
    """The step family's bursts reach 2-6 mm/day: the 1 mm/day horizontal blue is crossed
    (a true exceedance), and counted apart from the acceleration alarms."""
    fam = next(f for f in FAMILIES if f.name == "step")
    score = score_series(fam, 0, 6 * 3600.0)
    assert score.rate_alarms["blue"] >= 1
    assert set(score.rate_alarms) == set(score.alarms)
