"""The optimised detectors reproduce the recorded decisions on a fixed corpus (see ``equivalence.py``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from analytics import evaluate_many, evaluate_sensor
from tests.analytics.equivalence import FIXTURE, corpus, diff_values, input_digest, result_record

RECORDED: list[dict[str, Any]] = json.loads(FIXTURE.read_text())["cases"]
CASES = corpus()


def test_corpus_inputs_are_the_recorded_ones() -> None:
    assert [c.name for c in CASES] == [r["name"] for r in RECORDED]
    moved = [c.name for c, r in zip(CASES, RECORDED, strict=True) if input_digest(c) != r["input"]]
    assert not moved, f"corpus inputs changed (simulator retuned?): {moved[:5]}; regenerate the fixture"


@pytest.mark.parametrize("i", range(len(CASES)), ids=[c.name for c in CASES])
def test_evaluate_sensor_reproduces_the_recorded_results(i: int) -> None:
    case, rec = CASES[i], RECORDED[i]
    got = [result_record(r) for r in evaluate_sensor(case.spec, case.window)]
    want = rec["results"]
    assert [(r["rule"], r["level"]) for r in got] == [(r["rule"], r["level"]) for r in want]
    for g, w in zip(got, want, strict=True):
        for key in ("explanation_en", "explanation_zh", "rule_version"):
            assert g[key] == w[key], f"{w['rule']} {key}"
        diffs = diff_values(w, g, w["rule"])
        assert not diffs, diffs


def test_evaluate_many_reproduces_the_recorded_results() -> None:
    """The whole corpus in one batch: windows with the same times are stacked together."""
    batched = evaluate_many([(c.spec, c.window) for c in CASES])
    for case, rec, res in zip(CASES, RECORDED, batched, strict=True):
        got = [result_record(r) for r in res]
        diffs = [d for g, w in zip(got, rec["results"], strict=True) for d in diff_values(w, g, w["rule"])]
        assert len(got) == len(rec["results"]), case.name
        assert not diffs, (case.name, diffs)
