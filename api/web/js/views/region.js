// Regulators (county, city, province): the node's picture, its children one level down with
// their worst level, silent sensors, supervision (督办) due and overdue, and the live board.
// The summary is polled with If-None-Match, so an unchanged picture costs a 304.

import * as api from "../api.js";
import { alertBoard, regionPrefix } from "../board.js";
import { fill, h } from "../dom.js";
import { fmtPercent, fmtTime, kindText, LEVEL_ORDER, levelText, regionLevelText, t } from "../i18n.js";
import { onAlertEvent } from "../live.js";
import { levelBadge, link, section, showError, stageBadge, stat, table } from "../ui.js";

const POLL_MS = 5000;

function worstOf(byLevel) {
  return [...LEVEL_ORDER].reverse().find((lv) => lv !== "none" && byLevel[lv] > 0) ?? "none";
}

function levelCounts(byLevel) {
  return h(
    "span.counts",
    {},
    ["red", "orange", "yellow", "blue"].map((lv) => (byLevel[lv] ? h(`span.count.lvl-${lv}`, { title: levelText(lv) }, levelBadge(lv).firstChild.cloneNode(true), ` ${byLevel[lv]}`) : null)),
  );
}

async function regionNames() {
  try {
    const regions = await api.get("/regions");
    return new Map(regions.map((r) => [r.code, r]));
  } catch {
    return new Map();
  }
}

function ancestors(code) {
  if (!code) return [];
  const out = [`${code.slice(0, 2)}0000`];
  if (!code.endsWith("0000")) out.push(`${code.slice(0, 4)}00`);
  if (!code.endsWith("00")) out.push(code);
  return out;
}

export async function renderRegion(main, [code], { me, setCrumbs, isCurrent }) {
  const names = await regionNames();
  const nameOf = (c) => names.get(c)?.name ?? c;
  const top = me.scope_kind === "region" ? me.scope_code : "";
  // A county's token sees nothing above its county: no crumbs up there.
  const visible = ancestors(code).filter((c) => regionPrefix(c).startsWith(regionPrefix(top)));
  setCrumbs([{ label: t("overview"), href: top ? `#/region/${top}` : "#/region/" }, ...visible.map((c) => ({ label: `${nameOf(c)} ${c}`, href: `#/region/${c}` }))]);

  const head = h("div.summary-head");
  const children = h("div");
  const worst = h("div");
  const silent = h("div");
  const supervision = h("div");
  const boardBox = h("div");
  const stamp = h("p.muted.small.updated");
  fill(
    main,
    h("h1", {}, code ? `${nameOf(code)} (${code})` : t("overview")),
    head,
    stamp,
    h(
      "div.columns",
      {},
      h("div.col-main", {}, section(t("region_tree"), children), section(t("worst_mines"), worst), section(t("supervisions"), supervision), section(t("silent_sensors"), silent)),
      h("div.col-side", {}, section(t("alert_board"), boardBox)),
    ),
  );

  let etag = null;
  let alive = true;
  const query = api.query({ region: code });

  function renderSummary(sum) {
    const nodeWorst = worstOf(sum.mines_by_worst_level);
    fill(
      head,
      h(
        "div.stat-row",
        {},
        h("div.stat.worst", { dataset: { stat: "worst" } }, levelBadge(nodeWorst, { big: true }), h("span.label", {}, t("worst_level"))),
        stat(t("open_alerts"), sum.alerts.open, { id: "open" }),
        stat(t("unacknowledged"), sum.alerts.unacknowledged, { id: "unacknowledged", cls: sum.alerts.unacknowledged ? "warn" : "" }),
        stat(t("mines"), sum.mines, { id: "mines" }),
        stat(`${t("online")} / ${t("sensors")}`, `${sum.sensors.online} / ${sum.sensors.total}`, { id: "sensors" }),
        stat(t("online_rate"), fmtPercent(sum.sensors.online_rate), { id: "online-rate", cls: sum.sensors.silent ? "warn" : "" }),
        stat(t("overdue_handling"), sum.overdue.handling ?? 0, { id: "overdue-handling", cls: sum.overdue.handling ? "bad" : "" }),
        stat(t("overdue_supervision"), sum.overdue.supervision ?? 0, { id: "overdue-supervision", cls: sum.overdue.supervision ? "bad" : "" }),
      ),
      h("p", {}, `${t("by_level")}: `, levelCounts(sum.alerts.by_level)),
    );
    fill(
      children,
      table(
        [t("region"), t("worst_level"), t("mines"), t("by_level"), t("open_alerts"), t("unacknowledged"), t("sensors"), t("online_rate")],
        sum.children.map((c) =>
          h(
            "tr",
            { dataset: { node: c.code, level: c.worst_level } },
            h("td", {}, link(c.level === "mine" ? `#/mine/${encodeURIComponent(c.code)}` : `#/region/${c.code}`, `${c.name} `, h("span.muted", {}, `${regionLevelText(c.level)} ${c.code}`))),
            h("td", {}, levelBadge(c.worst_level)),
            h("td.num", {}, c.mines),
            h("td", {}, levelCounts(c.mines_by_worst_level)),
            h("td.num", {}, c.open_alerts),
            h("td.num", { class: c.unacknowledged ? "warn" : "" }, c.unacknowledged),
            h("td.num", {}, c.sensors),
            h("td.num", {}, fmtPercent(c.online_rate)),
          ),
        ),
        { cls: "tree" },
      ),
    );
    fill(
      worst,
      sum.worst_mines.length
        ? table(
            [t("mine"), t("worst_level"), t("open_alerts"), t("online")],
            sum.worst_mines.map((m) =>
              h(
                "tr",
                { dataset: { mine: m.code } },
                h("td", {}, link(`#/mine/${encodeURIComponent(m.code)}`, `${m.name} `, h("span.muted", {}, `${kindText(m.kind)} ${m.code}`))),
                h("td", {}, levelBadge(m.worst_level)),
                h("td.num", {}, m.open_alerts),
                h("td.num", {}, `${m.online} / ${m.sensors}`),
              ),
            ),
          )
        : h("p.muted", {}, t("no_open_alerts")),
    );
  }

  async function loadSupervisions() {
    const rows = await api.get(`/supervisions${query}`);
    fill(
      supervision,
      rows.length
        ? table(
            [t("deadline"), t("mine"), t("alert"), t("level"), t("stage"), t("note"), t("actor")],
            rows.map((r) =>
              h(
                `tr${r.overdue ? ".overdue" : ""}`,
                { dataset: { supervision: r.id } },
                h("td", {}, fmtTime(r.deadline), r.overdue ? h("span.tag.overdue", {}, ` ${t("overdue")}`) : null),
                h("td", {}, link(`#/mine/${encodeURIComponent(r.mine_code)}`, r.mine_name)),
                h("td", {}, link(`#/alert/${r.alert_id}`, `#${r.alert_id}`)),
                h("td", {}, levelBadge(r.alert_level)),
                h("td", {}, stageBadge(r.alert_stage)),
                h("td", {}, r.note),
                h("td.small", {}, `${r.region_name}`),
              ),
            ),
          )
        : h("p.muted", {}, t("no_supervisions")),
    );
  }

  async function loadSilent() {
    const sensors = await api.all("/sensors", { region: code, limit: 1000 }, 5000);
    const quiet = sensors.filter((x) => x.silent);
    fill(
      silent,
      quiet.length
        ? table(
            [t("mine"), t("sensor"), t("kind"), t("last_reading")],
            quiet.slice(0, 200).map((x) =>
              h(
                "tr",
                { dataset: { sensor: `${x.mine_code}/${x.code}` } },
                h("td", {}, link(`#/mine/${encodeURIComponent(x.mine_code)}`, x.mine_code)),
                h("td", {}, link(`#/mine/${encodeURIComponent(x.mine_code)}/sensor/${encodeURIComponent(x.code)}`, x.code)),
                h("td", {}, kindText(x.kind)),
                h("td", {}, fmtTime(x.last_reading_at)),
              ),
            ),
          )
        : h("p.muted", {}, t("none_silent")),
    );
  }

  let busy = false;
  async function poll() {
    if (busy || !alive) return;
    busy = true;
    try {
      const res = await api.getIfChanged(`/summary${query}`, etag);
      if (!alive) return;
      if (res.changed) {
        etag = res.etag;
        renderSummary(res.data);
        await Promise.all([loadSupervisions(), loadSilent()]);
      }
      stamp.textContent = `${t("updated")} ${fmtTime(new Date(), { seconds: true })}${res.changed ? "" : ` (${t("unchanged")})`}`;
    } catch (err) {
      if (alive) showError(err, t("overview"));
    } finally {
      busy = false;
    }
  }

  await poll();
  if (!isCurrent()) return undefined;
  const timer = setInterval(poll, POLL_MS);
  const off = onAlertEvent(() => setTimeout(poll, 300));
  const closeBoard = alertBoard(boardBox, { region: code });
  return () => {
    alive = false;
    clearInterval(timer);
    off();
    closeBoard();
  };
}
