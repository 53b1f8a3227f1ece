"""``evaluate_sensor``: every rule that applies to one sensor, one :class:`RuleResult` each.

Dispatch on the sensor kind:

- gnss, total_station: acceleration of horizontal √(ΔE²+ΔN²) and of vertical ΔU from
  the baseline, judged separately (criterion (八)3), and their rate and cumulative
  thresholds;
- crack: acceleration of the width, its rate and width thresholds;
- inclinometer: acceleration of the depth channel that moved most, its rate and
  cumulative thresholds;
- piezometer, pond_level, beach, rain: threshold rules;
- every kind: ``health.silent``, ``health.stuck``, ``health.spike``.

Level ``NONE`` results are returned too, so the worker can bring alerts down.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from analytics import health
from analytics._arrays import HOUR_S, FloatArray
from analytics.acceleration import DEFAULT_PARAMS, Acceleration, AccelerationParams, assess_acceleration_many
from analytics.rate import RATE_CONFIDENCE, RED_CONFIDENCE
from analytics.threshold_rules import STANDARD_RAIN_24H, latest_robust, threshold_rule, trailing_sum
from analytics.types import RuleResult, SensorSpec, SensorWindow
from core.model import Level, SensorKind
from core.thresholds import ThresholdSet

EvidenceDict = dict[str, float | int | str | bool | list[float] | None]


@dataclass(frozen=True, slots=True)
class _Component:
    """One displacement component to judge: its rule suffix, words, series and thresholds."""

    suffix: str
    name_en: str
    name_zh: str
    disp_mm: FloatArray
    rate_quantity: str | None
    cumulative_quantity: str | None
    cumulative_abs: bool
    extra: EvidenceDict


def evaluate_sensor(
    spec: SensorSpec, window: SensorWindow, *, params: AccelerationParams = DEFAULT_PARAMS
) -> tuple[RuleResult, ...]:
    """All rule results for one sensor over one window (see the module docstring)."""
    return evaluate_many([(spec, window)], params=params)[0]


#: Kinds whose channels are judged against a reference position.
DISPLACEMENT_KINDS = (SensorKind.GNSS, SensorKind.TOTAL_STATION, SensorKind.CRACK, SensorKind.INCLINOMETER)


def evaluate_many(
    sensors: Sequence[tuple[SensorSpec, SensorWindow]], *, params: AccelerationParams = DEFAULT_PARAMS
) -> list[tuple[RuleResult, ...]]:
    """:func:`evaluate_sensor` of each ``(spec, window)``, in order, with the same results.

    Faster per sensor: the displacement components of all sensors whose windows have the
    same times and sampling interval (a site's receivers read on one schedule) go through
    the detector's array stages together (:func:`assess_acceleration_many`).
    """
    # Sensors read on one schedule (the same times and interval) are judged together.
    groups: dict[tuple[float, bytes], list[int]] = {}
    prepared: list[tuple[FloatArray, dict[str, FloatArray]]] = []
    for i, (spec, window) in enumerate(sensors):
        values = {ch: np.asarray(window.values[ch], dtype=np.float64) for ch in window.values}
        t_s = np.asarray(window.t_s, dtype=np.float64)
        groups.setdefault((spec.interval_s, t_s.tobytes()), []).append(i)
        prepared.append((t_s, values))
    comps: dict[int, list[_Component]] = {}
    accs: dict[int, list[Acceleration]] = {}
    checks: dict[int, list[RuleResult]] = {}
    for (interval_s, _), members in groups.items():
        t_s = prepared[members[0]][0]
        movers = [i for i in members if t_s.size and sensors[i][0].kind in DISPLACEMENT_KINDS]
        if movers:
            # the components are written straight into the rows of the stack
            disp = np.empty((sum(_n_components(sensors[i][0].kind) for i in movers), t_s.size))
            rows: list[tuple[int, _Component]] = []
            for i in movers:
                comps[i] = _components(sensors[i][0], t_s, prepared[i][1], disp[len(rows) :])
                rows.extend((i, c) for c in comps[i])
            found = assess_acceleration_many(
                t_s,
                disp,
                interval_s=interval_s,
                params=params,
                with_rate=[
                    c.rate_quantity is not None and c.rate_quantity in sensors[i][0].thresholds for i, c in rows
                ],
                judged_until_s=_judged_until([sensors[i][1] for i in movers]),
            )
            for (i, _), acc in zip(rows, found, strict=True):
                accs.setdefault(i, []).append(acc)
        health_results = health.rules_many(
            t_s,
            [prepared[i][1] for i in members],
            interval_s=interval_s,
            now_s=[sensors[i][1].now_s for i in members],
            rain=[sensors[i][0].kind is SensorKind.RAIN for i in members],
        )
        for i, res in zip(members, health_results, strict=True):
            checks[i] = res
    out: list[tuple[RuleResult, ...]] = []
    for i, (spec, _) in enumerate(sensors):
        t_s, values = prepared[i]
        results: list[RuleResult] = []
        if i in comps:
            for comp, acc in zip(comps[i], accs[i], strict=True):
                results.extend(_displacement_rules(spec, t_s, comp, acc, params))
        elif t_s.size and spec.kind not in DISPLACEMENT_KINDS:
            results.extend(_scalar_rules(spec, t_s, values))
        results.extend(checks[i])
        out.append(tuple(results))
    return out


def _judged_until(windows: Sequence[SensorWindow]) -> float | None:
    """The earliest previous evaluation of sensors judged together (None if any lacks one):
    prefixes after it are judged for all of them, which only holds a level longer."""
    until = [w.judged_until_s for w in windows]
    return None if any(u is None for u in until) else min(u for u in until if u is not None)


# --------------------------------------------------------------------------- displacement


def _baseline(spec: SensorSpec, x: FloatArray, channel: str) -> tuple[float, str, float | None]:
    """(reference value, its source, since when in epoch s) of a displacement channel: the
    stored reference, else the registry's baseline; only a caller that gives neither (a
    pure test) gets the median of the window's first readings, and the source says so."""
    ref = spec.references.get(channel)
    if ref is not None:
        return float(ref.value), ref.source, ref.since_s
    if channel in spec.baseline:
        return float(spec.baseline[channel]), "registry", None
    first = x[:6]
    if first.size == 0 or not np.isfinite(first).all():
        first = x[np.flatnonzero(np.isfinite(x))[:6]]
        if first.size == 0:
            return math.nan, "none", None
    return _median(first.tolist()), "window start", None


def _reference_evidence(refs: Sequence[tuple[float, str, float | None]], stored: bool) -> EvidenceDict:
    """Where the component's reference comes from; with stored references (the worker's),
    also ``reference_mm`` (per channel of the component) and since when."""
    sources = list(dict.fromkeys(src for _, src, _ in refs))
    out: EvidenceDict = {"baseline_source": "/".join(sources)}
    if stored:
        since = [s for _, _, s in refs if s is not None]
        out["reference_source"] = out["baseline_source"]
        out["reference_mm"] = [round(v, 4) for v, _, _ in refs] if all(math.isfinite(v) for v, _, _ in refs) else None
        out["reference_since"] = _iso(max(since)) if since else None
    return out


def _stored(spec: SensorSpec, *channels: str) -> bool:
    return all(ch in spec.references for ch in channels)


def _iso(t_s: float) -> str:
    return datetime.fromtimestamp(t_s, tz=UTC).isoformat().replace("+00:00", "Z")


def _median(values: list[float]) -> float:
    """``np.median`` of a few finite values: the middle one, or the mean of the middle two."""
    v = sorted(values)
    h = len(v) // 2
    return v[h] if len(v) % 2 else (v[h - 1] + v[h]) / 2.0


def _n_components(kind: SensorKind) -> int:
    return 2 if kind in (SensorKind.GNSS, SensorKind.TOTAL_STATION) else 1


def _components(
    spec: SensorSpec, t_s: FloatArray, values: Mapping[str, FloatArray], out: FloatArray | None = None
) -> list[_Component]:
    """The displacement components of a sensor; their series are written into the rows of
    ``out`` (at least :func:`_n_components` rows of ``t_s.size``) when given."""
    if out is None:
        out = np.empty((_n_components(spec.kind), t_s.size))
    nan_series = np.full(t_s.size, np.nan)
    if spec.kind in (SensorKind.GNSS, SensorKind.TOTAL_STATION):
        e = values.get("east_mm", nan_series)
        n = values.get("north_mm", nan_series)
        u = values.get("up_mm", nan_series)
        ref_e = _baseline(spec, e, "east_mm")
        ref_n = _baseline(spec, n, "north_mm")
        ref_u = _baseline(spec, u, "up_mm")
        # Horizontal displacement is √(ΔE²+ΔN²) from the reference (DOMAIN.md), for the
        # acceleration and rates as for the cumulative threshold: what the backtest scores.
        e0, n0, u0 = ref_e[0], ref_n[0], ref_u[0]
        return [
            _Component(
                "horizontal",
                "horizontal displacement",
                "水平位移",
                np.hypot(e - e0, n - n0, out=out[0]),
                "horizontal_mm_per_day",
                "horizontal_mm",
                False,
                {
                    **_reference_evidence((ref_e, ref_n), _stored(spec, "east_mm", "north_mm")),
                    "component": "sqrt(dE^2+dN^2)",
                },
            ),
            _Component(
                "vertical",
                "vertical displacement",
                "垂直位移",
                np.subtract(u, u0, out=out[1]),
                "vertical_mm_per_day",
                "vertical_mm",
                True,
                {**_reference_evidence((ref_u,), _stored(spec, "up_mm")), "component": "dU"},
            ),
        ]
    if spec.kind is SensorKind.CRACK:
        # The crack meter reads the width itself, and width_mm thresholds are widths: judged
        # as read. The reference is shown, with the opening since it.
        out[0] = values.get("width_mm", nan_series)
        ref_w = _baseline(spec, out[0], "width_mm")
        idx = np.flatnonzero(np.isfinite(out[0]))
        opening = float(out[0][idx[-1]]) - ref_w[0] if idx.size else math.nan
        extra: EvidenceDict = {}
        if _stored(spec, "width_mm"):
            extra = {**_reference_evidence((ref_w,), True), "opening_since_reference_mm": _f(round(opening, 4))}
        return [_Component("width", "crack width", "裂缝宽度", out[0], "width_mm_per_day", "width_mm", False, extra)]
    # inclinometer: the depth channel that moved most over the window
    best: tuple[float, str] | None = None
    for ch in spec.channels or tuple(values):
        x = values.get(ch)
        if x is None:
            continue
        idx = np.flatnonzero(np.isfinite(x))
        if idx.size < 2:
            continue
        ref = _baseline(spec, x, ch)[0]
        moved = abs(float(np.median(x[idx[-6:]])) - ref)
        if best is None or moved > best[0]:
            best = (moved, ch)
    if best is None:
        ch = (spec.channels or tuple(values) or ("none",))[0]
        x = values.get(ch, nan_series)
    else:
        ch = best[1]
        x = values[ch]
    # Inclinometers read displacement from their installation: without a reference, zero.
    ref_i = _baseline(spec, x, ch) if ch in spec.references or ch in spec.baseline else (0.0, "none", None)
    return [
        _Component(
            "internal",
            f"internal displacement at {ch}",
            f"深部位移({ch})",
            np.subtract(x, ref_i[0], out=out[0]),
            "rate_mm_per_day",
            "cumulative_mm",
            True,
            {"channel": ch, **_reference_evidence((ref_i,), _stored(spec, ch))},
        )
    ]


def _displacement_rules(
    spec: SensorSpec, t_s: FloatArray, comp: _Component, acc: Acceleration, params: AccelerationParams
) -> list[RuleResult]:
    out = [_acceleration_result(comp, acc, params)]
    at_s = acc.at_s
    if comp.rate_quantity and comp.rate_quantity in spec.thresholds:
        out.append(_rate_result(comp, acc, spec.thresholds[comp.rate_quantity]))
    if comp.cumulative_quantity and comp.cumulative_quantity in spec.thresholds:
        value = acc.value_now
        if not math.isfinite(value):
            value, _, _ = latest_robust(t_s, comp.disp_mm)
        if comp.cumulative_abs:
            value = abs(value)
        out.append(
            threshold_rule(
                comp.cumulative_quantity,
                spec.thresholds[comp.cumulative_quantity],
                value,
                at_s,
                method=f"smoothed (least-squares line, trailing {params.current_window_s / HOUR_S:.0f} h) "
                "displacement from the baseline at the newest reading",
                extra=dict(comp.extra),
            )
        )
    return out


def _rate_result(comp: _Component, acc: Acceleration, thresholds: ThresholdSet) -> RuleResult:
    """``threshold.<rate>``: judged on the fastest rate the data prove (see :mod:`analytics.rate`)."""
    assert comp.rate_quantity is not None
    rb = acc.rate
    extra: EvidenceDict = dict(comp.extra)
    if rb is None:
        return threshold_rule(
            comp.rate_quantity,
            thresholds,
            math.nan,
            acc.at_s,
            method="rate not judged",
            extra=extra,
            unjudged=acc.reason,
            unjudged_zh=acc.reason_zh,
        )
    hours = [w / HOUR_S for w in rb.windows_s]
    have = [i for i, v in enumerate(rb.velocity_per_day) if math.isfinite(v) and math.isfinite(rb.se_per_day[i])]
    extra.update(
        rate_windows_h=[hours[i] for i in have],
        rate_mm_per_day=[round(rb.velocity_per_day[i], 4) for i in have],
        rate_se_mm_per_day=[round(rb.se_per_day[i], 4) for i in have],
        noise_density_mm2_day=_f(rb.density_mm2_day),
        noise_density_source="assumed upper bound (under 6 days of data)" if rb.noise_assumed else "measured",
        noise_block_h=_f(rb.noise_block_s / HOUR_S),
        noise_dof=_f(rb.dof),
        se_multiplier=_f(rb.k),
        judged_window_h=None if rb.judged_window_s is None else rb.judged_window_s / HOUR_S,
        se_multiplier_red=_f(rb.k_red),
    )
    windows = ", ".join(f"{h:.0f}" for h in hours)
    source = (
        "a pessimistic bound on the sensor's noise (too few days to measure it)"
        if rb.noise_assumed
        else "the sensor's own long-run noise (scatter of day-long block means)"
    )
    method = (
        f"least-squares rates over the trailing {windows} h; each judged on its lower bound, "
        f"rate − {rb.k:.2f} × standard error (one-sided {100 * RATE_CONFIDENCE:.1f} %), the standard error "
        f"from {source}, so noise correlated over hours cannot cross a threshold; the fastest bound counts; "
        f"red also when that bound is at orange and the {100 * RED_CONFIDENCE:.1f} % bound (rate − "
        f"{rb.k_red:.2f} × standard error) reaches red"
    )
    # Shown: the rate over the window that set the judged value, so value and bound agree.
    i = rb.windows_s.index(rb.judged_window_s) if rb.judged_window_s is not None else 0
    shown = abs(rb.velocity_per_day[i]) if rb.velocity_per_day else math.nan
    win_h = hours[i] if hours else math.nan
    return threshold_rule(
        comp.rate_quantity,
        thresholds,
        shown,
        acc.at_s,
        judged=rb.judged_per_day if math.isfinite(rb.judged_per_day) else math.nan,
        judged_note=f"{win_h:.0f} h rate; lower bound",
        judged_note_zh=f"{win_h:.0f} 小时速率；置信下限",
        method=method,
        extra=extra,
        unjudged=rb.reason,
        unjudged_zh=rb.reason_zh,
        red_judged=rb.judged_red_per_day,
        red_note=f"{100 * RED_CONFIDENCE:.1f} % bound",
        red_note_zh=f"{100 * RED_CONFIDENCE:.1f}% 置信下限",
    )


def _acceleration_result(comp: _Component, acc: Acceleration, params: AccelerationParams) -> RuleResult:
    ev: EvidenceDict = {**acc.evidence(params), **comp.extra}
    lv = acc.level
    # Velocities inside the detector are oriented along the movement; show them signed.
    v = acc.v_now_per_day * acc.direction
    v0 = acc.v0_per_day * acc.direction
    level_en = "no warning" if lv is Level.NONE else lv.label
    if acc.mk is None:
        en = f"Acceleration of the {comp.name_en} not judged: {acc.reason}."
        zh = f"{comp.name_zh}加速判据未评估：{acc.reason_zh}。"
    else:
        forecast = forecast_zh = ""
        if acc.forecast_failure_s is not None and acc.voight is not None:
            f = acc.voight
            lo_s, hi_s = acc.any_alpha if acc.any_alpha is not None else (f.lower_ttf_s, f.upper_ttf_s)
            hi = f"{hi_s / HOUR_S:.0f}" if hi_s is not None else "?"
            alphas = "Voight's α from 1.5 to 2.5" if acc.any_alpha is not None else "α = 2"
            forecast = (
                f" Forecast failure in {f.ttf_s / HOUR_S:.0f} h "
                f"(95% interval {lo_s / HOUR_S:.0f}–{hi} h for {alphas}, inverse-velocity/Voight fit since "
                f"{f.onset_age_s / HOUR_S:.0f} h ago)."
            )
            forecast_zh = (
                f"预测约 {f.ttf_s / HOUR_S:.0f} 小时后失稳(95%区间 {lo_s / HOUR_S:.0f}–{hi} 小时，"
                f"{'Voight 指数 α 取 1.5–2.5' if acc.any_alpha is not None else 'α = 2'}；"
                f"反速度法/Voight 拟合自 {f.onset_age_s / HOUR_S:.0f} 小时前的加速起点)。"
            )
        win = ev.get("velocity_window_h")
        win_h = f"{win:.3g}" if isinstance(win, float) else "24"
        en = (
            f"The {comp.name_en} moves at {v:.2f} mm/day over the last {win_h} h (steady creep before: "
            f"{v0:.2f} mm/day); {acc.reason}. Level: {level_en}.{forecast}"
        )
        zh = (
            f"{comp.name_zh}最近{win_h}小时速率 {v:.2f} mm/d(此前等速阶段 {v0:.2f} mm/d)；{acc.reason_zh}。"
            f"预警级别：{lv.label_zh}。{forecast_zh}"
        )
    return RuleResult(
        f"displacement.acceleration.{comp.suffix}",
        lv,
        acc.at_s,
        ev,
        en,
        zh,
        forecast_failure_s=acc.forecast_failure_s,
    )


# --------------------------------------------------------------------------- scalar kinds


def _scalar_rules(spec: SensorSpec, t_s: FloatArray, values: Mapping[str, FloatArray]) -> list[RuleResult]:
    out: list[RuleResult] = []
    th = spec.thresholds
    nan_series = np.full(t_s.size, np.nan)
    latest = "median of the newest 3 readings"
    if spec.kind is SensorKind.PIEZOMETER and "depth_m" in th:
        v, at, n = latest_robust(t_s, values.get("depth_m", nan_series))
        out.append(threshold_rule("depth_m", th["depth_m"], v, at, method=latest, extra={"n": n}))
    elif spec.kind is SensorKind.POND_LEVEL:
        v, at, n = latest_robust(t_s, values.get("level_m", nan_series))
        if "level_m" in th:
            out.append(threshold_rule("level_m", th["level_m"], v, at, method=latest, extra={"n": n}))
        if "freeboard_m" in th and spec.crest_elevation_m is not None:
            out.append(
                threshold_rule(
                    "freeboard_m",
                    th["freeboard_m"],
                    spec.crest_elevation_m - v,
                    at,
                    method=f"crest elevation minus pond level ({latest})",
                    extra={"crest_elevation_m": spec.crest_elevation_m, "level_m": _f(v)},
                )
            )
    elif spec.kind is SensorKind.BEACH and "length_m" in th:
        v, at, n = latest_robust(t_s, values.get("length_m", nan_series))
        out.append(threshold_rule("length_m", th["length_m"], v, at, method=latest, extra={"n": n}))
    elif spec.kind is SensorKind.RAIN:
        rain = values.get("rain_mm", nan_series)
        if "rain_1h_mm" in th:
            s1, at, n = trailing_sum(t_s, rain, window_s=HOUR_S)
            out.append(
                threshold_rule(
                    "rain_1h_mm",
                    th["rain_1h_mm"],
                    s1,
                    at,
                    method="sum of readings in the trailing hour of measurement time",
                    extra={"n": n, "window_s": HOUR_S},
                )
            )
        s24, at, n = trailing_sum(t_s, rain, window_s=24 * HOUR_S)
        own = th.get("rain_24h_mm")
        out.append(
            threshold_rule(
                "rain_24h_mm",
                own or STANDARD_RAIN_24H,
                s24,
                at,
                method="sum of readings in the trailing 24 h of measurement time",
                extra={"n": n, "window_s": 24 * HOUR_S},
                source="sensor thresholds"
                if own
                else "standard rainstorm classes (no site threshold): yellow >=50, orange >=100, red >=250 mm/24h",
            )
        )
    return out


def _f(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None
