"""The backtest harness scores what it claims, on a tiny run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from analytics.backtest import FAMILIES, add_arguments, run, score_series, summarise
from analytics.backtest import T0 as T0_BACKTEST


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
    # the JSON record of that forecast: its interval (widened for α) and whether it holds the truth
    fc = score.forecast_24h
    forecast, lower, upper = fc["forecast_s"], fc["lower_s"], fc["upper_s"]
    assert isinstance(forecast, float)
    assert isinstance(lower, float)
    assert lower <= forecast
    assert upper is None or (isinstance(upper, float) and forecast <= upper)
    failure = T0_BACKTEST + 40 * 86_400.0
    assert fc["covered"] == (lower <= failure and (upper is None or failure <= upper))
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
    assert "rate: no red, <= 1 yellow per sensor-year" in summary["targets"]
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


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_recorded_csv_files_are_scored_with_and_without_a_failure_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A recorded failing point (its failure time given) gets lead times and a forecast
    error; a recorded stable point beside it counts alarms, and raises none."""
    import numpy as np

    from simulators.publisher import SensorStream
    from simulators.replay import write_replay_csv
    from simulators.scenarios import displacement_series

    t0 = 1_767_225_600.0
    failing = displacement_series(
        "tertiary",
        start_s=t0,
        duration_s=40 * 86_400.0,
        interval_s=3600.0,
        seed=3,
        v0_mm_per_day=5.0,
        tertiary_days=7.0,
    )
    stable = displacement_series("stable", start_s=t0, duration_s=40 * 86_400.0, interval_s=3600.0, seed=4)
    csv_path = tmp_path / "recorded.csv"
    write_replay_csv(
        [
            SensorStream("PIT", "GNSS-F", failing.t_s, {c: np.round(v, 2) for c, v in failing.values.items()}),
            SensorStream("PIT", "GNSS-S", stable.t_s, {c: np.round(v, 2) for c, v in stable.values.items()}),
        ],
        csv_path,
        layout="wide",
    )
    assert failing.truth.failure_s is not None
    failure_ms = int(failing.truth.failure_s * 1000)
    out = tmp_path / "rec.json"
    code = run(
        _args("--csv", str(csv_path), "--failure", f"PIT/GNSS-F={failure_ms}", "--step-h", "4", "--out", str(out))
    )
    assert code == 0
    data = json.loads(out.read_text())
    assert data["summaries"] == []  # only the file, no families
    by_sensor = {r["sensor"]: r for r in data["recorded"]}
    f, s = by_sensor["GNSS-F"], by_sensor["GNSS-S"]
    assert f["kind"] == "gnss"
    assert f["readings"] == failing.t_s.size
    assert f["failure_s"] == pytest.approx(failing.truth.failure_s)
    assert f["score"]["lead_h"]["red"] is not None
    assert f["score"]["lead_h"]["red"] >= 24.0
    assert f["score"]["forecast_24h_error"] is not None
    assert f["score"]["forecast_24h_error"] <= 0.25
    assert s["failure_s"] is None
    assert s["score"]["lead_h"] == {}
    assert s["score"]["evaluations"] > 100
    assert sum(s["score"]["alarms"][k] for k in ("yellow", "orange", "red")) == 0
    table = capsys.readouterr().out
    assert "PIT/GNSS-F" in table
    assert "PIT/GNSS-S" in table
    assert "no failure" in table


def test_recorded_input_errors_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("mine,sensor,time,east_mm\nPIT,G1,not-a-time,1.0\n")
    assert run(_args("--csv", str(bad))) == 2
    assert "line 2" in capsys.readouterr().err
    assert run(_args("--csv", str(tmp_path / "missing.csv"))) == 2
    assert "cannot read" in capsys.readouterr().err
    assert run(_args("--failure", "PIT/G1=2026-01-01T00:00:00Z")) == 2
    assert "--failure needs --csv" in capsys.readouterr().err
    good = tmp_path / "good.csv"
    good.write_text("mine,sensor,time,width_mm\nPIT,C1,2026-01-01T00:00:00Z,1.0\n")
    assert run(_args("--csv", str(good), "--failure", "PIT/G9=2026-01-02T00:00:00Z")) == 2
    assert "PIT/G9" in capsys.readouterr().err
    assert run(_args("--csv", str(good), "--failure", "PIT-G9")) == 2
    assert "MINE/SENSOR=TIME" in capsys.readouterr().err


def test_a_short_fast_crack_meter_record_is_scored_from_its_first_readings() -> None:
    """Issue 11's 5-minute crack meter family: installed two days before a 1–3 day tertiary
    stage; scored from the record's first readings, it is warned a quarter of the stage ahead."""
    fam = next(f for f in FAMILIES if f.name == "crack 5min tertiary 1-3d")
    score = score_series(fam, 0, 2 * 3600.0)
    assert score.tertiary_days is not None
    assert 1.0 <= score.tertiary_days <= 3.0
    orange = score.lead_h["orange"]
    assert orange is not None
    assert orange >= 24.0 * score.tertiary_days / 4


def test_recorded_readings_marked_invalid_are_left_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A stable point whose prism was knocked for half a day alarms on the recorded file; with
    the operator's correction (--invalid) those readings are left out and it raises nothing."""
    import numpy as np

    from simulators.publisher import SensorStream
    from simulators.replay import write_replay_csv
    from simulators.scenarios import displacement_series

    t0 = 1_767_225_600.0
    stable = displacement_series("stable", start_s=t0, duration_s=30 * 86_400.0, interval_s=3600.0, seed=4)
    values = {c: np.round(v, 2) for c, v in stable.values.items()}
    knocked = (stable.t_s >= t0 + 20 * 86_400.0) & (stable.t_s < t0 + 20.5 * 86_400.0)
    values["east_mm"][knocked] += 300.0
    csv_path = tmp_path / "knocked.csv"
    write_replay_csv([SensorStream("PIT", "GNSS-K", stable.t_s, values)], csv_path, layout="wide")
    lo, hi = stable.t_s[knocked][[0, -1]]
    corrections = tmp_path / "invalid.csv"
    corrections.write_text(
        "# knocked by a loader, 21 Jan\nmine,sensor,start,end,channel\n"
        f"PIT,GNSS-K,{int(lo * 1000)},{int(hi * 1000)},east_mm\n"
    )

    def alarms(*extra: str) -> dict[str, int]:
        """Acceleration and rate-threshold alarms raised, per level."""
        out = tmp_path / "out.json"
        assert run(_args("--csv", str(csv_path), "--step-h", "4", "--out", str(out), *extra)) == 0
        score = json.loads(out.read_text())["recorded"][0]["score"]
        return {k: score["alarms"][k] + score["rate_alarms"][k] for k in score["alarms"]}

    raw = alarms()
    assert sum(raw[k] for k in ("yellow", "orange", "red")) > 0, raw
    corrected = alarms("--invalid", str(corrections))
    assert corrected == dict.fromkeys(("blue", "yellow", "orange", "red"), 0), corrected
    capsys.readouterr()
    assert run(_args("--invalid", str(corrections))) == 2
    assert "--invalid needs --csv" in capsys.readouterr().err
    stray = tmp_path / "stray.csv"
    stray.write_text("mine,sensor,start,end\nPIT,NOPE,2026-01-01T00:00:00Z,2026-01-02T00:00:00Z\n")
    assert run(_args("--csv", str(csv_path), "--invalid", str(stray))) == 2
    assert "PIT/NOPE" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("mine,sensor,start,end\nPIT,GNSS-K,2026-01-02T00:00:00Z,2026-01-01T00:00:00Z\n")
    assert run(_args("--csv", str(csv_path), "--invalid", str(bad))) == 2
    assert "line 2: start is after end" in capsys.readouterr().err
