// Pieces every page uses: level badges, error messages, tables, links.

import { h } from "./dom.js";
import { LEVEL_ICON, levelText, stageText, t } from "./i18n.js";

/** A level by colour, shape and words: readable without colour vision. */
export function levelBadge(level, { big = false } = {}) {
  const lv = level || "none";
  return h(`span.lvl.lvl-${lv}${big ? ".big" : ""}`, { dataset: { level: lv }, title: levelText(lv) }, h("span.icon", { "aria-hidden": "true" }, LEVEL_ICON[lv]), " ", levelText(lv));
}

export function stageBadge(stage) {
  return h(`span.stage.stage-${stage}`, { dataset: { stage } }, stageText(stage));
}

/** Show an API error (its JSON message) until dismissed; 401 means the session ended. */
export function showError(err, context = "") {
  const box = document.getElementById("errors");
  const status = err?.status ? `${err.status} ${err.code ?? ""}`.trim() : t("error");
  const item = h(
    "div.error",
    { dataset: { status: err?.status ?? "" } },
    h("strong", {}, status),
    " ",
    context ? `${context}: ` : "",
    err?.message ?? String(err),
    " ",
    h("button.link", { type: "button", onclick: () => item.remove() }, t("dismiss")),
  );
  box.append(item);
  if (err?.status === 401) window.dispatchEvent(new CustomEvent("slopewatch:unauthorized"));
  return item;
}

export function clearErrors() {
  document.getElementById("errors").replaceChildren();
}

export function table(headers, rows, { cls = "" } = {}) {
  return h(
    `table${cls ? `.${cls}` : ""}`,
    {},
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))),
    h("tbody", {}, rows),
  );
}

export function section(title, ...children) {
  return h("section.panel", {}, h("h2", {}, title), ...children);
}

export function link(hash, ...children) {
  return h("a", { href: hash }, ...children);
}

export function stat(label, value, { cls = "", id } = {}) {
  return h(`div.stat${cls ? `.${cls}` : ""}`, { dataset: id ? { stat: id } : {} }, h("span.value", {}, value), h("span.label", {}, label));
}

/** The explanation in the chosen language. */
export function explanation(alert, lang) {
  return lang === "en" ? alert.explanation_en : alert.explanation_zh || alert.explanation_en;
}

const TIME_KEYS = /_s$/;

/** The alert's evidence as a two-column table; epoch-second fields shown as Shanghai times. */
export function evidenceTable(evidence, fmtTime) {
  const rows = Object.entries(evidence ?? {})
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([key, value]) => {
    let shown;
    if (Array.isArray(value)) shown = value.length > 8 ? `[${value.slice(0, 4).join(", ")}, … ${value.length} values]` : `[${value.join(", ")}]`;
    else if (typeof value === "number" && TIME_KEYS.test(key) && value > 1e9) shown = `${fmtTime(value * 1000)} (${value})`;
    else if (typeof value === "number") shown = Number.isInteger(value) ? String(value) : value.toPrecision(4);
    else shown = value === null ? "—" : String(value);
    return h("tr", { dataset: { key } }, h("th", {}, key), h("td", {}, shown));
  });
  return h("table.evidence", {}, h("tbody", {}, rows));
}
