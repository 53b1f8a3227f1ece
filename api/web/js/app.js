// The pages' entry: who is logged in, which page the URL's hash names, the header.

import * as api from "./api.js";
import { fill, h } from "./dom.js";
import { lang, regionLevelText, setLang, t } from "./i18n.js";
import { startLive, stopLive, updateSoundButton } from "./live.js";
import { clearErrors, showError } from "./ui.js";
import { renderLogin } from "./views/login.js";
import { renderRegion } from "./views/region.js";
import { renderMine } from "./views/mine.js";
import { renderSensor } from "./views/sensor.js";
import { renderAlert } from "./views/alert.js";

const main = document.getElementById("main");
let me = null;
let cleanup = null;
let generation = 0;

const ROUTES = [
  [/^#\/login$/, () => renderLogin],
  [/^#\/region\/?(\d{6})?$/, () => renderRegion],
  [/^#\/mine\/([^/]+)\/sensor\/([^/]+)$/, () => renderSensor],
  [/^#\/mine\/([^/]+)$/, () => renderMine],
  [/^#\/alert\/(\d+)$/, () => renderAlert],
];

/** The page a token lands on: its mine, or its region's overview. */
export function home(who) {
  if (!who) return "#/login";
  if (who.scope_kind === "mine") return `#/mine/${encodeURIComponent(who.scope_code)}`;
  return who.scope_kind === "region" ? `#/region/${who.scope_code}` : "#/region/";
}

export function setCrumbs(items) {
  const nav = document.getElementById("crumbs");
  fill(
    nav,
    ...items.flatMap((item, i) => [...(i ? [h("span.sep", {}, " › ")] : []), item.href ? h("a", { href: item.href }, item.label) : h("span", {}, item.label)]),
  );
}

function renderHeader() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.title = `Slopewatch · ${t("title")}`;
  document.getElementById("brand").textContent = `Slopewatch · ${t("title")}`;
  const langButton = document.getElementById("lang");
  langButton.textContent = t("language");
  const who = document.getElementById("who");
  const logout = document.getElementById("logout");
  logout.textContent = t("logout");
  logout.hidden = !me;
  who.textContent = me ? `${t("signed_in_as")}: ${me.name} · ${me.role} · ${regionLevelText(me.level)} ${me.scope_code}` : "";
  who.dataset.level = me?.level ?? "";
  updateSoundButton();
}

async function route() {
  const mine = ++generation;
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  clearErrors();
  let hash = window.location.hash || "";
  if (!me && hash !== "#/login") {
    window.location.replace("#/login");
    return;
  }
  if (me && (hash === "" || hash === "#/" || hash === "#/login")) {
    window.location.replace(home(me));
    return;
  }
  const found = ROUTES.find(([re]) => re.test(hash));
  if (!found) {
    window.location.replace(home(me));
    return;
  }
  const params = hash.match(found[0]).slice(1).map((p) => (p === undefined ? undefined : decodeURIComponent(p)));
  fill(main, h("p.muted", {}, t("loading")));
  setCrumbs([]);
  const view = found[1]();
  try {
    const result = await view(main, params, { me, setCrumbs, home, onLogin, isCurrent: () => mine === generation });
    if (mine === generation) cleanup = result ?? null;
    else if (typeof result === "function") result();
  } catch (err) {
    if (mine !== generation) return;
    main.replaceChildren();
    showError(err);
  }
}

async function onLogin(who) {
  me = who;
  renderHeader();
  startLive();
  window.location.hash = home(me);
}

async function logout() {
  try {
    await api.del("/session");
  } catch (err) {
    showError(err);
  }
  me = null;
  stopLive();
  renderHeader();
  window.location.hash = "#/login";
}

/** The banner on every page while the watchdog says the analysis is dead or behind
 * (or mines' monitoring is offline); /health needs no login, so it shows on the login page too. */
async function watchdogBanner() {
  const banner = document.getElementById("watchdog");
  try {
    const resp = await fetch("/health", { cache: "no-store" });
    const dog = (await resp.json()).detail?.watchdog ?? {};
    const parts = [];
    if (dog.analysis === "dead") parts.push(t("watchdog_dead"));
    else if (dog.analysis === "behind") parts.push(`${t("watchdog_behind")} (${Math.round(dog.backlog_s)} s)`);
    if (dog.mines_offline?.length) parts.push(`${t("watchdog_offline")}: ${dog.mines_offline.join(", ")}`);
    banner.textContent = parts.join(" · ");
    banner.dataset.state = dog.analysis ?? "";
    banner.hidden = parts.length === 0;
  } catch {
    // the API itself is unreachable: the live-state indicator says so
  }
}

async function boot() {
  watchdogBanner();
  setInterval(watchdogBanner, 5000);
  document.getElementById("lang").addEventListener("click", () => {
    setLang(lang === "zh" ? "en" : "zh");
    renderHeader();
    route();
  });
  document.getElementById("logout").addEventListener("click", logout);
  window.addEventListener("hashchange", route);
  window.addEventListener("slopewatch:unauthorized", () => {
    if (!me) return;
    me = null;
    stopLive();
    renderHeader();
    window.location.hash = "#/login";
  });
  try {
    me = await api.get("/me");
  } catch (err) {
    if (err.status !== 401) showError(err);
    me = null;
  }
  renderHeader();
  if (me) startLive();
  document.body.dataset.ready = "true";
  route();
}

boot();
