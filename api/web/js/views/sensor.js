// One sensor's plots from hourly buckets: displacement (horizontal √(ΔE²+ΔN²), vertical ΔU)
// from the reference position (the one the detectors use, with its source and date), velocity, inverse velocity with the forecast line and its interval;
// phreatic line, pond level and freeboard, dry beach against their thresholds; rainfall bars.

import * as api from "../api.js";
import { alertCard } from "../board.js";
import { fill, h } from "../dom.js";
import { fmtTime, kindText, t } from "../i18n.js";
import { timeChart } from "../charts.js";
import { onAlertEvent } from "../live.js";
import { section, showError } from "../ui.js";
import { mineCrumbs } from "./mine.js";
import * as sr from "../series.js";

const RANGES = [7, 30, 90];
const GAP_MS = 3 * 3600e3;
const STANDARD_RAIN_24H = { yellow: 50, orange: 100, red: 250 };

/** Which reference the displacement is measured from, since when, and the readings left out. */
function provenance(sensor, refs, invalid) {
  const parts = [];
  for (const [ch, r] of refs) {
    const since = r.since ? ` ${t("since")} ${fmtTime(r.since)}` : "";
    parts.push(`${ch} ${r.value.toFixed(1)} mm (${t(`ref_${r.source}`)}${since})`);
  }
  const items = [];
  if (parts.length) items.push(h("p.reference", { dataset: { reference: [...refs.values()].map((r) => r.source).join(" ") } }, `${t("reference")}: `, parts.join(" · ")));
  if (invalid.length) {
    items.push(
      h(
        "p.invalid",
        { dataset: { invalid: String(invalid.length) } },
        `${t("invalid_left_out")}: `,
        invalid.map((c) => `${c.channel ?? t("all_channels")} ${fmtTime(c.start)} – ${fmtTime(c.end)} (${c.reason})`).join(" · "),
      ),
    );
  }
  return items;
}

function charts(sensor, site, channels, alerts, refs) {
  const out = [];
  const accel = (suffix) => alerts.find((a) => a.rule === `displacement.acceleration.${suffix}`);
  const displacementCharts = (name, label, points, suffix, thresholdsQ, rateQ, sign = 1) => {
    const vel = sr.velocity(points);
    const alert = accel(suffix);
    const ev = alert?.evidence ?? {};
    const direction = ev.direction ?? (sign < 0 ? -1 : 1);
    out.push(timeChart({ id: `${name}-disp`, title: label, unit: "mm", series: [{ label, points, cls: "s0", gapMs: GAP_MS }], thresholds: sr.thresholdLines(sensor, thresholdsQ, sign) }));
    const blocks = Array.isArray(ev.block_t_s) ? ev.block_t_s.map((ts, i) => [ts * 1000, ev.block_velocity_mm_per_day[i] * direction]) : [];
    out.push(
      timeChart({
        id: `${name}-vel`,
        title: `${label} · ${t("velocity")}`,
        unit: "mm/d",
        series: [
          { label: `${t("velocity")} (24 h)`, points: vel, cls: "s1", gapMs: GAP_MS },
          ...(blocks.length ? [{ label: `${t("evidence")}: 12 h`, points: blocks, style: "dots", cls: "s3" }] : []),
        ],
        thresholds: sr.thresholdLines(sensor, rateQ, direction < 0 ? -1 : 1),
      }),
    );
    // 1/v amplifies noise: a three-day window for it, as the detectors smooth first too
    const inv = sr.inverse(sr.velocity(points, { windowMs: 3 * 86400e3, minPoints: 24 }), { direction });
    const fc = sr.forecastOf(alert);
    const spec = { id: `${name}-inv`, title: `${label} · ${t("inverse_velocity")} (72 h)`, unit: "d/mm", series: [{ label: t("inverse_velocity"), points: inv, cls: "s2", gapMs: GAP_MS }], yMin0: true };
    if (fc) {
      const xEnd = Math.max(fc.failMs, fc.upperMs ?? fc.failMs + (fc.failMs - fc.tRef)) + 3600e3;
      // Zoom on the accelerating stage and the forecast ahead of it.
      const first = points.find(([, v]) => Number.isFinite(v));
      spec.x = [Math.max(first ? first[0] : -Infinity, fc.onsetMs - 0.5 * (fc.tRef - fc.onsetMs)), xEnd];
      spec.lines = [{ points: fc.line, label: `${t("forecast_line")} 1/v = a + b·t`, cls: "forecast" }];
      const tip = [fc.tRef, fc.a];
      if (fc.lowerMs) spec.band = [tip, [fc.lowerMs, 0], [fc.upperMs ?? xEnd, fc.upperMs ? 0 : fc.a], ...(fc.upperMs ? [] : [[xEnd, fc.a]])];
      spec.bandLabel = `${t("forecast_band")} (95 %)`;
      spec.markers = [{ ms: fc.failMs, label: `${t("forecast")} ${fmtTime(fc.forecastAt ?? fc.failMs)}`, cls: "forecast" }];
      const finite = inv.filter(([ms, v]) => Number.isFinite(v) && ms >= spec.x[0]).map(([, v]) => v).sort((a, b) => a - b);
      // 1/v explodes where the slope barely moves: scale to the bulk of the points and the line
      const top = Math.max(fc.a * 1.5, finite.length ? finite[Math.floor(finite.length * 0.9)] : fc.a);
      spec.y = [0, top];
    }
    out.push(timeChart(spec));
    if (fc) {
      out.push(
        h(
          "p.forecast",
          { dataset: { forecast: name } },
          `${t("forecast")}: ${fmtTime(fc.forecastAt ?? fc.failMs)}`,
          fc.lowerMs ? ` · ${t("interval")} ${fmtTime(fc.lowerMs)} – ${fc.upperMs ? fmtTime(fc.upperMs) : "∞"}` : "",
          ev.forecast_reliable === false ? ` · ${ev.reason ?? ""}` : "",
        ),
      );
    }
  };

  const kind = sensor.kind;
  if (kind === "gnss" || kind === "total_station") {
    const d = sr.displacement(sensor, channels, refs);
    const settling = d.vertical.filter(([, v]) => Number.isFinite(v)).reduce((acc, [, v]) => acc + v, 0) < 0;
    displacementCharts("horizontal", t("horizontal"), d.horizontal, "horizontal", "horizontal_mm", "horizontal_mm_per_day");
    displacementCharts("vertical", t("vertical"), d.vertical, "vertical", "vertical_mm", "vertical_mm_per_day", settling ? -1 : 1);
  } else if (kind === "crack") {
    const ms = sr.times(channels, ["width_mm"]);
    const pts = sr.series(channels.get("width_mm"), ms);
    const w0 = sr.baselineOf(sensor, "width_mm", pts, refs).value;
    displacementCharts("width", t("crack"), pts.map(([ms2, v]) => [ms2, v - w0]), "width", "width_mm", "width_mm_per_day");
  } else if (kind === "inclinometer") {
    const names = [...channels.keys()];
    const ms = sr.times(channels, names);
    out.push(
      timeChart({
        id: "internal",
        title: t("internal"),
        unit: "mm",
        series: names.map((name, i) => {
          const pts = sr.series(channels.get(name), ms);
          const base = sr.baselineOf(sensor, name, pts, refs).value;
          return { label: name, points: pts.map(([x, v]) => [x, v - base]), cls: `s${i % 4}`, gapMs: GAP_MS };
        }),
        thresholds: sr.thresholdLines(sensor, "cumulative_mm"),
      }),
    );
  } else if (kind === "piezometer") {
    const ms = sr.times(channels, ["depth_m"]);
    out.push(timeChart({ id: "phreatic", title: t("phreatic"), unit: "m", series: [{ label: t("phreatic"), points: sr.series(channels.get("depth_m"), ms), gapMs: GAP_MS }], thresholds: sr.thresholdLines(sensor, "depth_m") }));
  } else if (kind === "pond_level") {
    const ms = sr.times(channels, ["level_m"]);
    const level = sr.series(channels.get("level_m"), ms);
    out.push(timeChart({ id: "pond", title: t("pond_level"), unit: "m", series: [{ label: t("pond_level"), points: level, gapMs: GAP_MS }], thresholds: sr.thresholdLines(sensor, "level_m") }));
    if (site?.crest_elevation_m) {
      const crest = site.crest_elevation_m;
      out.push(
        timeChart({
          id: "freeboard",
          title: `${t("freeboard")} (${crest} m − ${t("pond_level")})`,
          unit: "m",
          series: [{ label: t("freeboard"), points: level.map(([x, v]) => [x, crest - v]), cls: "s1", gapMs: GAP_MS }],
          thresholds: sr.thresholdLines(sensor, "freeboard_m"),
        }),
      );
    }
  } else if (kind === "beach") {
    const ms = sr.times(channels, ["length_m"]);
    out.push(timeChart({ id: "beach", title: t("beach"), unit: "m", series: [{ label: t("beach"), points: sr.series(channels.get("length_m"), ms), gapMs: GAP_MS }], thresholds: sr.thresholdLines(sensor, "length_m") }));
  } else if (kind === "rain") {
    const ms = sr.times(channels, ["rain_mm"]);
    const hourly = sr.series(channels.get("rain_mm"), ms, "sum");
    out.push(timeChart({ id: "rain", title: `${t("rain")} (1 h)`, unit: "mm", series: [{ label: t("rain"), points: hourly, style: "bars", cls: "s0" }], thresholds: sr.thresholdLines(sensor, "rain_1h_mm"), yMin0: true }));
    const own = sensor.thresholds?.rain_24h_mm;
    const th24 = own ? sr.thresholdLines(sensor, "rain_24h_mm") : Object.entries(STANDARD_RAIN_24H).map(([level, value]) => ({ level, value }));
    out.push(timeChart({ id: "rain24", title: t("rain_24h"), unit: "mm", series: [{ label: t("rain_24h"), points: sr.trailingSum(hourly, 86400e3), cls: "s1" }], thresholds: th24, yMin0: true }));
  }
  return out;
}

export async function renderSensor(main, [mineCode, code], { me, setCrumbs, isCurrent }) {
  const base = `/mines/${encodeURIComponent(mineCode)}`;
  const [mine, sensor, sites] = await Promise.all([api.get(base), api.get(`${base}/sensors/${encodeURIComponent(code)}`), api.get(`${base}/sites`)]);
  const site = sites.find((x) => x.code === sensor.site_code);
  setCrumbs([...mineCrumbs(me, mine), { label: `${sensor.site_code} · ${sensor.code}` }]);
  let days = 30;
  const chartsBox = h("div.charts");
  const alertsBox = h("div.board");
  const rangeBox = h("div.range");
  fill(
    main,
    h("h1", {}, `${mine.name} · ${sensor.code} `, h("span.muted", {}, `${kindText(sensor.kind)} · ${site?.name ?? sensor.site_code} · ${t("last_reading")} ${fmtTime(sensor.last_reading_at)}`), sensor.silent ? h("span.tag.overdue", {}, ` ${t("silent")}`) : null),
    rangeBox,
    h("div.columns", {}, h("div.col-main", {}, section(t("charts"), chartsBox)), h("div.col-side", {}, section(t("open_alerts"), alertsBox))),
  );
  let alive = true;

  async function load() {
    const end = new Date();
    const start = new Date(end.getTime() - days * 86400e3);
    const one = `${base}/sensors/${encodeURIComponent(code)}`;
    const displacementKind = ["gnss", "total_station", "crack", "inclinometer"].includes(sensor.kind);
    // Readings an operator marked invalid are left out by the API; the charts say which.
    const [readings, open, reference, corrections] = await Promise.all([
      api.get(`${one}/readings${api.query({ bucket: "1h", start: start.toISOString(), end: end.toISOString(), limit: 50000 })}`),
      api.all("/alerts", { mine: mineCode, state: "open", limit: 1000 }, 5000),
      displacementKind ? api.get(`${one}/reference`) : null,
      api.get(`${one}/corrections`),
    ]);
    if (!alive) return;
    const own = open.filter((a) => a.sensor_code === code);
    fill(
      rangeBox,
      `${t("range")}: `,
      ...RANGES.map((d) => h(`button${d === days ? ".active" : ""}`, { type: "button", onclick: () => { days = d; load().catch((err) => showError(err)); } }, `${d} ${t("days")}`)),
    );
    const refs = sr.referencesOf(reference);
    const invalid = sr.invalidRanges(corrections).filter((c) => Date.parse(c.end) >= start.getTime() && Date.parse(c.start) < end.getTime());
    fill(chartsBox, ...provenance(sensor, refs, invalid), ...charts(sensor, site, sr.byChannel(readings.buckets), own, refs));
    fill(alertsBox, ...(own.length ? own.map((a) => alertCard(a, { showMine: false })) : [h("p.muted", {}, t("no_open_alerts"))]));
  }

  await load();
  if (!isCurrent()) return undefined;
  let timer = null;
  const off = onAlertEvent((event) => {
    if (event.mine_code !== mineCode || event.sensor_code !== code) return;
    clearTimeout(timer);
    timer = setTimeout(() => load().catch((err) => showError(err)), 300);
  });
  return () => {
    alive = false;
    clearTimeout(timer);
    off();
  };
}
