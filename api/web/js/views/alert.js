// One alert: what the detectors found (explanation, evidence, forecast), the closed loop
// (acknowledge → handle with the five fixed → resolve → verify or reject → close), 督办 from
// above, and the history. The API decides who may do what; its refusals are shown as they come.

import * as api from "../api.js";
import { fill, h } from "../dom.js";
import { evacuationText, eventText, fmtTime, lang, ruleText, shanghaiInput, shanghaiInputValue, t } from "../i18n.js";
import { onAlertEvent } from "../live.js";
import { clearErrors, evidenceTable, explanation, levelBadge, section, showError, stageBadge, table } from "../ui.js";
import { mineCrumbs } from "./mine.js";

/** Which actions the stage allows (the role is the API's to check). */
const ACTIONS = {
  open: ["acknowledge", "handle"],
  acknowledged: ["handle"],
  handling: ["handle", "resolve"],
  resolved: ["verify", "reject"],
  verified: ["close", "reject"],
  closed: [],
};

function field(name, label, input) {
  input.name = name;
  input.id = `f-${name}`;
  return h("div.field", {}, h("label", { for: input.id }, label), input);
}

function actionForm(alert, action, done) {
  const fields = [];
  if (action === "handle") {
    const five = alert.five_fixed;
    fields.push(
      field("responsible_person", t("responsible_person"), h("input", { required: true, maxlength: 200, value: five?.responsible_person ?? "" })),
      field("measures", t("measures"), h("textarea", { required: true, maxlength: 4000, rows: 2, value: five?.measures ?? "" })),
      field("funds", t("funds"), h("input", { required: true, maxlength: 500, value: five?.funds ?? "" })),
      field("deadline", `${t("deadline")} (UTC+8)`, h("input", { type: "datetime-local", required: true, value: five ? fmtTime(five.deadline).replace(" ", "T") : shanghaiInputValue(3) })),
      field("contingency_plan", t("contingency_plan"), h("textarea", { required: true, maxlength: 4000, rows: 2, value: five?.contingency_plan ?? "" })),
      field("note", t("note"), h("input", { maxlength: 4000 })),
    );
  } else if (action === "supervise") {
    fields.push(
      field("deadline", `${t("supervision_deadline")} (UTC+8)`, h("input", { type: "datetime-local", required: true, value: shanghaiInputValue(2) })),
      field("note", t("note"), h("textarea", { required: true, maxlength: 4000, rows: 2 })),
    );
  } else {
    // acknowledge takes an optional note; every later step needs one for the record
    fields.push(field("note", t("note"), h("input", { required: action !== "acknowledge", maxlength: 4000 })));
  }
  const button = h("button.primary", { type: "submit" }, t(action));
  return h(
    `form.action.action-${action}`,
    {
      dataset: { action },
      onsubmit: async (ev) => {
        ev.preventDefault();
        const data = Object.fromEntries(new FormData(ev.target).entries());
        if (data.deadline) data.deadline = shanghaiInput(data.deadline);
        if (data.note === "" && (action === "acknowledge" || action === "handle")) delete data.note;
        button.disabled = true;
        try {
          await api.post(`/alerts/${alert.id}/${action}`, data);
          clearErrors();
          ev.target.reset();
          await done();
        } catch (err) {
          showError(err, t(action));
        } finally {
          button.disabled = false;
        }
      },
    },
    h("h3", {}, t(action)),
    fields,
    button,
  );
}

function detailsText(details) {
  if (!details) return "";
  return Object.entries(details)
    .map(([k, v]) => `${t(k)}: ${k === "deadline" ? fmtTime(v) : v}`)
    .join(" · ");
}

export async function renderAlert(main, [id], { me, setCrumbs, isCurrent }) {
  let alive = true;
  let actions = null;
  const box = h("div.alert-page");
  fill(main, box);

  async function load() {
    const [alert, events, sups] = await Promise.all([api.get(`/alerts/${id}`), api.get(`/alerts/${id}/events`), api.get(`/alerts/${id}/supervisions`)]);
    if (!alive) return;
    const mine = { code: alert.mine_code, name: alert.mine_name, region_code: alert.region_code };
    setCrumbs([...mineCrumbs(me, mine), { label: `${t("alert")} #${alert.id}` }]);
    const sensorHref = `#/mine/${encodeURIComponent(alert.mine_code)}/sensor/${encodeURIComponent(alert.sensor_code)}`;
    const ev = alert.evidence ?? {};
    const five = alert.five_fixed;
    // A live refresh must not wipe what someone is typing: the forms are rebuilt only when
    // the stage changes.
    if (actions?.stage !== alert.stage) {
      const forms = ACTIONS[alert.stage].map((action) => actionForm(alert, action, load));
      if (me.scope_kind !== "mine" && alert.stage !== "closed") forms.push(actionForm(alert, "supervise", load));
      actions = { stage: alert.stage, node: section(t("actions"), forms.length ? forms : h("p.muted", {}, stageBadge(alert.stage))) };
    }
    fill(
      box,
      h(
        `div.alert-head.lvl-border-${alert.level}`,
        { dataset: { alertId: alert.id, level: alert.level, stage: alert.stage } },
        h("div.row", {}, levelBadge(alert.level, { big: true }), stageBadge(alert.stage), h("span.tag", {}, alert.active ? t("active") : t("inactive")), alert.retroactive ? h("span.tag", {}, t("retroactive")) : null),
        h("h1", {}, `#${alert.id} ${alert.mine_name} · ${alert.site_code} · `, alert.sensor_code ? h("a", { href: sensorHref }, alert.sensor_code) : alert.subject, ` · ${ruleText(alert.rule)}`),
        h("p.explanation.big", {}, explanation(alert, lang)),
        h("p.muted", {}, lang === "en" ? alert.explanation_zh : alert.explanation_en),
        alert.forecast_failure_at
          ? h(
              "p.forecast",
              {},
              `${t("forecast")}: ${fmtTime(alert.forecast_failure_at)}`,
              Number.isFinite(ev.voight_ttf_lower_h) && Number.isFinite(ev.window_to_s)
                ? ` · ${t("interval")} ${fmtTime(ev.window_to_s * 1000 + ev.voight_ttf_lower_h * 3600e3)} – ${Number.isFinite(ev.voight_ttf_upper_h) ? fmtTime(ev.window_to_s * 1000 + ev.voight_ttf_upper_h * 3600e3) : "∞"}`
                : "",
              " ",
              h("a", { href: sensorHref }, t("charts")),
            )
          : null,
        alert.evacuation ? h("p.evac", {}, evacuationText(alert.evacuation)) : null,
        h(
          "p.muted.small",
          {},
          `${t("rule")} ${alert.rule} v${alert.rule_version} · ${t("opened")} ${fmtTime(alert.opened_at)} · ${t("changed")} ${fmtTime(alert.modified_at)}`,
          alert.supervision_deadline ? ` · ${t("supervision_deadline")} ${fmtTime(alert.supervision_deadline)}${alert.supervision_overdue ? ` (${t("overdue")})` : ""}` : "",
        ),
      ),
      h(
        "div.columns",
        {},
        h(
          "div.col-main",
          {},
          five
            ? section(
                t("five_fixed"),
                h(
                  "dl.five",
                  { class: alert.handling_overdue ? "overdue" : "" },
                  ["responsible_person", "measures", "funds", "deadline", "contingency_plan"].flatMap((k) => [h("dt", {}, t(k)), h("dd", { dataset: { five: k } }, k === "deadline" ? fmtTime(five[k]) : five[k])]),
                ),
              )
            : null,
          section(
            t("history"),
            table(
              [t("at"), t("event"), t("level"), t("actor"), t("note"), t("details")],
              events.map((e) =>
                h(
                  "tr",
                  { dataset: { event: e.kind } },
                  h("td", {}, fmtTime(e.recorded_at ?? e.at, { seconds: true })),
                  h("td", {}, eventText(e.kind)),
                  h("td", {}, levelBadge(e.level)),
                  h("td.small", {}, e.actor ?? t("detectors")),
                  h("td", {}, e.note ?? ""),
                  h("td.small", {}, detailsText(e.details)),
                ),
              ),
              { cls: "history" },
            ),
          ),
          sups.length
            ? section(
                t("supervisions"),
                table(
                  [t("deadline"), t("region"), t("note"), t("actor")],
                  sups.map((x) => h(`tr${x.overdue ? ".overdue" : ""}`, {}, h("td", {}, fmtTime(x.deadline), x.overdue ? ` (${t("overdue")})` : ""), h("td", {}, `${x.region_name} ${x.region_code}`), h("td", {}, x.note), h("td.small", {}, x.actor))),
                ),
              )
            : null,
          section(t("evidence"), evidenceTable(ev, fmtTime)),
        ),
        h("div.col-side", {}, actions.node),
      ),
    );
  }

  await load();
  if (!isCurrent()) return undefined;
  let timer = null;
  const off = onAlertEvent((event) => {
    if (String(event.alert_id) !== String(id)) return;
    clearTimeout(timer);
    timer = setTimeout(() => load().catch((err) => showError(err)), 300);
  });
  return () => {
    alive = false;
    clearTimeout(timer);
    off();
  };
}
