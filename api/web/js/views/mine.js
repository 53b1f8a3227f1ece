// The monitoring room of one mine: the live alert board, and every site with its sensors
// and their current level (the worst open alert of each sensor).

import * as api from "../api.js";
import { alertBoard } from "../board.js";
import { fill, h } from "../dom.js";
import { evacuationText, fmtNumber, fmtTime, kindText, LEVEL_ORDER, t } from "../i18n.js";
import { onAlertEvent } from "../live.js";
import { levelBadge, link, section, showError, table } from "../ui.js";

export function mineCrumbs(me, mine) {
  const crumbs = [];
  if (me.scope_kind !== "mine") {
    crumbs.push({ label: t("overview"), href: me.scope_kind === "region" ? `#/region/${me.scope_code}` : "#/region/" });
    crumbs.push({ label: mine.region_code, href: `#/region/${mine.region_code}` });
  }
  crumbs.push({ label: mine.name, href: `#/mine/${encodeURIComponent(mine.code)}` });
  return crumbs;
}

export async function renderMine(main, [code], { me, setCrumbs, isCurrent }) {
  const mine = await api.get(`/mines/${encodeURIComponent(code)}`);
  setCrumbs(mineCrumbs(me, mine));
  const sitesBox = h("div.sites");
  const boardBox = h("div");
  const levelBox = h("span");
  fill(
    main,
    h("h1", {}, `${mine.name} `, h("span.muted", {}, `${kindText(mine.kind)} · ${mine.code} · ${mine.region_code}`), " ", levelBox),
    mine.evacuation ? h("p.evac-plan", {}, evacuationText(mine.evacuation)) : null,
    h("div.columns", {}, h("div.col-main", {}, section(t("alert_board"), boardBox)), h("div.col-side", {}, section(t("sites"), sitesBox))),
  );

  let alive = true;
  async function loadSites() {
    const [sites, sensors, open] = await Promise.all([
      api.get(`/mines/${encodeURIComponent(code)}/sites`),
      api.all("/sensors", { mine: code, limit: 1000 }, 5000),
      api.all("/alerts", { mine: code, state: "open", limit: 1000 }, 5000),
    ]);
    if (!alive) return;
    const worst = new Map();
    for (const a of open) {
      if (!a.sensor_code) continue; // facility, mine and watchdog alerts belong to no sensor
      const prev = worst.get(a.sensor_code) ?? "none";
      if (LEVEL_ORDER.indexOf(a.level) > LEVEL_ORDER.indexOf(prev)) worst.set(a.sensor_code, a.level);
    }
    // The mine's level counts its facility (GB 39496 roll-up) and monitoring alerts too.
    const mineWorst = open.map((a) => a.level).reduce((acc, lv) => (LEVEL_ORDER.indexOf(lv) > LEVEL_ORDER.indexOf(acc) ? lv : acc), "none");
    fill(levelBox, levelBadge(mineWorst, { big: true }));
    fill(
      sitesBox,
      ...sites.map((site) => {
        const own = sensors.filter((x) => x.site_code === site.code);
        const siteLevel = own.reduce((acc, x) => {
          const lv = worst.get(x.code) ?? "none";
          return LEVEL_ORDER.indexOf(lv) > LEVEL_ORDER.indexOf(acc) ? lv : acc;
        }, "none");
        return h(
          `div.site.lvl-border-${siteLevel}`,
          { dataset: { site: site.code, level: siteLevel } },
          h(
            "h3",
            {},
            `${site.name} `,
            h("span.muted", {}, `${kindText(site.kind)} · ${site.code}`),
            site.height_m ? h("span.muted", {}, ` · H ${fmtNumber(site.height_m, 0)} m`) : null,
            site.crest_elevation_m ? h("span.muted", {}, ` · ▲${fmtNumber(site.crest_elevation_m, 1)} m`) : null,
            " ",
            levelBadge(siteLevel),
          ),
          table(
            [t("sensor"), t("kind"), t("level"), t("last_reading")],
            own.map((x) =>
              h(
                "tr",
                { dataset: { sensor: x.code, level: worst.get(x.code) ?? "none" } },
                h("td", {}, link(`#/mine/${encodeURIComponent(code)}/sensor/${encodeURIComponent(x.code)}`, x.code), x.name ? h("span.muted", {}, ` ${x.name}`) : null),
                h("td", {}, kindText(x.kind)),
                h("td", {}, levelBadge(worst.get(x.code) ?? "none")),
                h("td", { class: x.silent ? "bad" : "" }, fmtTime(x.last_reading_at), x.silent ? ` · ${t("silent")}` : ""),
              ),
            ),
          ),
        );
      }),
    );
  }

  try {
    await loadSites();
  } catch (err) {
    showError(err, t("sites"));
  }
  if (!isCurrent()) return undefined;
  let timer = null;
  const off = onAlertEvent((event) => {
    if (event.mine_code !== code) return;
    clearTimeout(timer);
    timer = setTimeout(() => loadSites().catch((err) => showError(err, t("sites"))), 300);
  });
  const closeBoard = alertBoard(boardBox, { mine: code });
  return () => {
    alive = false;
    clearTimeout(timer);
    off();
    closeBoard();
  };
}
