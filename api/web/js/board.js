// The live alert board: open alerts of a region or a mine, worst first, refreshed by the
// event stream (no reload), the newest change highlighted.

import * as api from "./api.js";
import { fill, h } from "./dom.js";
import { evacuationText, fmtTime, lang, LEVEL_ORDER, ruleText, t } from "./i18n.js";
import { onAlertEvent } from "./live.js";
import { explanation, levelBadge, showError, stageBadge } from "./ui.js";

export function regionPrefix(code) {
  if (!code) return "";
  if (code.endsWith("0000")) return code.slice(0, 2);
  if (code.endsWith("00")) return code.slice(0, 4);
  return code;
}

function byUrgency(a, b) {
  return LEVEL_ORDER.indexOf(b.level) - LEVEL_ORDER.indexOf(a.level) || b.modified_at.localeCompare(a.modified_at);
}

export function alertCard(alert, { fresh = false, showMine = true } = {}) {
  const forecast = alert.forecast_failure_at;
  return h(
    `article.alert-card.lvl-border-${alert.level}${fresh ? ".fresh" : ""}`,
    { dataset: { alertId: alert.id, level: alert.level, stage: alert.stage } },
    h(
      "div.row",
      {},
      levelBadge(alert.level, { big: true }),
      stageBadge(alert.stage),
      alert.active ? null : h("span.tag", {}, t("inactive")),
      alert.supervision_deadline ? h(`span.tag${alert.supervision_overdue ? ".overdue" : ""}`, {}, `${t("supervise")} ${fmtTime(alert.supervision_deadline)}`) : null,
      alert.handling_overdue ? h("span.tag.overdue", {}, t("overdue_handling")) : null,
    ),
    h(
      "h3",
      {},
      h("a", { href: `#/alert/${alert.id}` }, showMine ? `${alert.mine_name} · ` : "", `${alert.site_code} · ${alert.sensor_code ?? alert.subject} · ${ruleText(alert.rule)}`),
    ),
    h("p.explanation", {}, explanation(alert, lang)),
    forecast ? h("p.forecast", {}, `${t("forecast")}: ${fmtTime(forecast)}`) : null,
    alert.level === "red" && alert.evacuation ? h("p.evac", {}, evacuationText(alert.evacuation)) : null,
    h("p.muted.small", {}, `${t("opened")} ${fmtTime(alert.opened_at)} · ${t("changed")} ${fmtTime(alert.modified_at)} · #${alert.id}`),
  );
}

/** Fill ``container`` with the board; returns its cleanup. ``onChange`` runs after each live refresh. */
export function alertBoard(container, { region, mine, onChange } = {}) {
  const prefix = regionPrefix(region);
  const list = h("div.board", { dataset: { board: mine ?? region ?? "all" } }, h("p.muted", {}, t("loading")));
  container.append(list);
  let timer = null;
  let fresh = new Set();
  let alive = true;

  async function load() {
    try {
      const items = await api.all("/alerts", { state: "open", region, mine, limit: 500 }, 500);
      if (!alive) return;
      items.sort(byUrgency);
      fill(
        list,
        ...(items.length ? items.map((a) => alertCard(a, { fresh: fresh.has(a.id), showMine: !mine })) : [h("p.muted.empty", {}, t("no_open_alerts"))]),
      );
      fresh = new Set();
    } catch (err) {
      if (alive) showError(err, t("alert_board"));
    }
  }

  const off = onAlertEvent((event) => {
    if (mine ? event.mine_code !== mine : !event.region_code.startsWith(prefix)) return;
    fresh.add(event.alert_id);
    clearTimeout(timer);
    timer = setTimeout(async () => {
      await load();
      onChange?.(event);
    }, 250);
  });
  load();
  return () => {
    alive = false;
    clearTimeout(timer);
    off();
  };
}
