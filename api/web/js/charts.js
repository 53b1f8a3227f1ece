// Small SVG time-series charts: lines, dots, bars, threshold lines, a shaded band.
// Drawn in a fixed viewBox and scaled by CSS, so one chart reads on a laptop and a wall.

import { s, h } from "./dom.js";
import { fmtAxis, fmtNumber, levelText, LEVEL_ICON, t } from "./i18n.js";

const W = 960;
const H = 280;
const M = { top: 16, right: 96, bottom: 34, left: 64 };

function niceStep(span, count) {
  const raw = span / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  return (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
}

function extent(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (!Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return lo <= hi ? [lo, hi] : null;
}

/**
 * spec: {
 *   title, unit,
 *   series: [{label, points: [[ms, value]], style: "line"|"dots"|"bars", cls, barWidthMs}],
 *   thresholds: [{value, level}],          horizontal lines, coloured and labelled by level
 *   lines: [{points: [[ms, v], [ms, v]], label, cls}],   straight extra lines (forecast)
 *   band: [[ms, v], ...] polygon,           shaded interval
 *   markers: [{ms, label, cls}],            vertical lines
 *   x: [ms0, ms1] (optional), y: [lo, hi] (optional), yMin0: bool
 * }
 */
export function timeChart(spec) {
  const pts = spec.series.flatMap((sr) => sr.points);
  const xs = [...pts.map((p) => p[0]), ...(spec.markers ?? []).map((m) => m.ms), ...(spec.lines ?? []).flatMap((l) => l.points.map((p) => p[0]))];
  const figure = h("figure.chart", { dataset: { chart: spec.id ?? "" } }, h("figcaption", {}, spec.title, spec.unit ? ` (${spec.unit})` : ""));
  if (!pts.length) {
    figure.append(h("p.muted", {}, t("no_data")));
    return figure;
  }
  let [x0, x1] = spec.x ?? extent(xs);
  if (x0 === x1) x1 = x0 + 3600e3;
  const ys = [
    ...pts.map((p) => p[1]),
    ...(spec.thresholds ?? []).map((th) => th.value),
    ...(spec.band ?? []).map((p) => p[1]),
  ];
  let [y0, y1] = spec.y ?? extent(ys) ?? [0, 1];
  if (spec.yMin0) y0 = Math.min(0, y0);
  if (y0 === y1) {
    y0 -= 1;
    y1 += 1;
  }
  const pad = (y1 - y0) * 0.06;
  y0 -= spec.yMin0 && y0 === 0 ? 0 : pad;
  y1 += pad;
  const px = (ms) => M.left + ((ms - x0) / (x1 - x0)) * (W - M.left - M.right);
  const py = (v) => H - M.bottom - ((v - y0) / (y1 - y0)) * (H - M.top - M.bottom);

  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": spec.title, preserveAspectRatio: "xMidYMid meet" });
  svg.append(s("defs", {}, s("clipPath", { id: `clip-${spec.id}` }, s("rect", { x: M.left, y: M.top, width: W - M.left - M.right, height: H - M.top - M.bottom }))));
  // grid and axes
  const yStep = niceStep(y1 - y0, 5);
  for (let v = Math.ceil(y0 / yStep) * yStep; v <= y1; v += yStep) {
    svg.append(s("line", { class: "grid", x1: M.left, x2: W - M.right, y1: py(v), y2: py(v) }));
    svg.append(s("text", { class: "tick", x: M.left - 6, y: py(v) + 4, "text-anchor": "end" }, fmtNumber(v, 3)));
  }
  const spanH = (x1 - x0) / 3600e3;
  const xStepH = spanH <= 48 ? 6 : spanH <= 24 * 8 ? 24 : spanH <= 24 * 40 ? 24 * 5 : 24 * 15;
  const stepMs = xStepH * 3600e3;
  // ticks at Shanghai midnight / 6-hour marks (UTC+8 has no daylight saving)
  const offset = 8 * 3600e3;
  for (let ms = Math.ceil((x0 + offset) / stepMs) * stepMs - offset; ms <= x1; ms += stepMs) {
    svg.append(s("line", { class: "grid", x1: px(ms), x2: px(ms), y1: M.top, y2: H - M.bottom }));
    svg.append(s("text", { class: "tick", x: px(ms), y: H - M.bottom + 16, "text-anchor": "middle" }, fmtAxis(ms, xStepH < 24)));
  }
  svg.append(s("rect", { class: "frame", x: M.left, y: M.top, width: W - M.left - M.right, height: H - M.top - M.bottom }));
  const plot = s("g", { "clip-path": `url(#clip-${spec.id})` });
  svg.append(plot);

  if (spec.band?.length) {
    plot.append(s("polygon", { class: "band", points: spec.band.map(([ms, v]) => `${px(ms)},${py(v)}`).join(" ") }));
  }
  for (const th of spec.thresholds ?? []) {
    if (th.value === null || th.value === undefined) continue;
    const y = py(th.value);
    svg.append(s("line", { class: `threshold lvl-${th.level}`, x1: M.left, x2: W - M.right, y1: y, y2: y }));
    svg.append(s("text", { class: `threshold-label lvl-text-${th.level}`, x: W - M.right + 4, y: y + 4 }, `${LEVEL_ICON[th.level]} ${levelText(th.level).split(/[ ·]/)[0]} ${fmtNumber(th.value, 3)}`));
  }
  for (const sr of spec.series) {
    const cls = sr.cls ?? "s0";
    if (sr.style === "bars") {
      const bw = Math.max(1, px(x0 + (sr.barWidthMs ?? 3600e3)) - px(x0) - 0.5);
      const base = py(Math.max(y0, 0));
      for (const [ms, v] of sr.points) {
        if (!Number.isFinite(v)) continue;
        const y = py(v);
        plot.append(s("rect", { class: `bar ${cls}`, x: px(ms) - bw / 2, y: Math.min(y, base), width: bw, height: Math.abs(base - y) }));
      }
    } else if (sr.style === "dots") {
      for (const [ms, v] of sr.points) {
        if (Number.isFinite(v)) plot.append(s("circle", { class: `dot ${cls}`, cx: px(ms), cy: py(v), r: 3.5 }));
      }
    } else {
      // gaps (NaN or a jump of more than gapMs) split the line: never draw across missing data
      const gapMs = sr.gapMs ?? Infinity;
      let d = "";
      let prev = null;
      for (const [ms, v] of sr.points) {
        if (!Number.isFinite(v)) {
          prev = null;
          continue;
        }
        d += `${prev === null || ms - prev > gapMs ? "M" : "L"}${px(ms).toFixed(1)},${py(v).toFixed(1)}`;
        prev = ms;
      }
      plot.append(s("path", { class: `line ${cls}`, d }));
    }
  }
  for (const line of spec.lines ?? []) {
    const [[ma, va], [mb, vb]] = line.points;
    plot.append(s("line", { class: `extra ${line.cls ?? ""}`, x1: px(ma), y1: py(va), x2: px(mb), y2: py(vb) }));
  }
  for (const m of spec.markers ?? []) {
    if (m.ms < x0 || m.ms > x1) continue;
    svg.append(s("line", { class: `marker ${m.cls ?? ""}`, x1: px(m.ms), x2: px(m.ms), y1: M.top, y2: H - M.bottom }));
    svg.append(s("text", { class: "marker-label", x: px(m.ms) - 4, y: M.top + 12, "text-anchor": "end" }, m.label));
  }
  figure.append(svg);
  const legend = [...spec.series, ...(spec.lines ?? []).filter((l) => l.label), ...(spec.band?.length && spec.bandLabel ? [{ label: spec.bandLabel, cls: "band-key" }] : [])];
  if (legend.length > 1 || spec.lines?.length) {
    figure.append(h("ul.legend", {}, legend.map((item) => h("li", {}, h(`span.key.${(item.cls ?? "s0").split(" ")[0]}`), item.label))));
  }
  return figure;
}
