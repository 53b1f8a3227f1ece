// The live feed: one server-sent-events stream per session (the cookie authenticates it),
// handed to whichever page is showing; a beep and a flashing banner for orange and red.

import * as api from "./api.js";
import { fill, h } from "./dom.js";
import { evacuationText, eventText, fmtTime, LEVEL_ICON, levelText, t } from "./i18n.js";

const listeners = new Set();
let source = null;
let audio = null;

/** Call ``fn(event)`` for every alert event; returns the unsubscribe function. */
export function onAlertEvent(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

const ALARMING = new Set(["opened", "escalated", "reactivated"]);

export function startLive() {
  if (source) return;
  const state = document.getElementById("live-state");
  state.hidden = false;
  source = new EventSource("/api/v1/alert-events/stream");
  source.addEventListener("open", () => {
    state.textContent = `● ${t("live")}`;
    state.className = "live-state ok";
  });
  source.addEventListener("error", () => {
    // EventSource reconnects by itself, resuming from Last-Event-ID
    state.textContent = `○ ${t("live_lost")}`;
    state.className = "live-state lost";
  });
  source.addEventListener("end", () => {
    // The server ended the stream because the session or its token ended. Ask who we are:
    // a 401 takes the page back to the login; otherwise (a glitch) listen again.
    source?.close();
    source = null;
    api.get("/me").then(
      () => startLive(),
      (err) => {
        if (err.status === 401) window.dispatchEvent(new CustomEvent("slopewatch:unauthorized"));
      },
    );
  });
  source.addEventListener("alert_event", (msg) => {
    let event;
    try {
      event = JSON.parse(msg.data);
    } catch {
      return;
    }
    if (ALARMING.has(event.kind)) announce(event);
    for (const fn of listeners) fn(event);
  });
  // After the login click the page may play sound; otherwise the button asks for a click.
  audioContext()?.resume().then(updateSoundButton, () => {});
  updateSoundButton();
}

export function stopLive() {
  source?.close();
  source = null;
  listeners.clear();
  document.getElementById("live-state").hidden = true;
  document.getElementById("flash").hidden = true;
}

const RANK = { none: 0, blue: 1, yellow: 2, orange: 3, red: 4 };

function announce(event) {
  const level = event.level;
  const loud = level === "orange" || level === "red";
  const flash = document.getElementById("flash");
  // A lower alert arriving right after does not hide a red one still on the banner.
  if (!flash.hidden && RANK[flash.dataset.level] > RANK[level]) return;
  flash.className = `flash lvl-${level}${loud ? " flashing" : ""}`;
  flash.dataset.level = level;
  fill(
    flash,
    h("span.icon", { "aria-hidden": "true" }, LEVEL_ICON[level]),
    h("strong", {}, ` ${t("new_alert")}: ${levelText(level)} `),
    `${event.mine_name} · ${event.site_code} · ${event.sensor_code ?? event.subject} · ${event.rule} · ${eventText(event.kind)} · ${fmtTime(event.at)}`,
    event.evacuation && level === "red" ? h("strong.evac", {}, ` ${evacuationText(event.evacuation)}`) : null,
    " ",
    h("a", { href: `#/alert/${event.alert_id}` }, t("view")),
    " ",
    h("button.link", { type: "button", onclick: () => (flash.hidden = true) }, t("dismiss")),
  );
  flash.hidden = false;
  if (loud) beep(level === "red" ? 3 : 2);
}

function audioContext() {
  if (!audio) {
    const Ctx = window.AudioContext ?? window.webkitAudioContext;
    if (!Ctx) return null;
    audio = new Ctx();
  }
  return audio;
}

/** ``count`` short tones; the browser lets sound play only after a click on the page. */
export function beep(count = 2) {
  const ctx = audioContext();
  if (!ctx) return;
  if (ctx.state === "suspended") ctx.resume().catch(() => {});
  const start = ctx.currentTime + 0.05;
  for (let i = 0; i < count; i++) {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = "square";
    osc.frequency.value = count >= 3 ? 1100 : 880;
    gain.gain.setValueAtTime(0.0001, start + i * 0.35);
    gain.gain.exponentialRampToValueAtTime(0.2, start + i * 0.35 + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, start + i * 0.35 + 0.25);
    osc.connect(gain).connect(ctx.destination);
    osc.start(start + i * 0.35);
    osc.stop(start + i * 0.35 + 0.3);
  }
  window.dispatchEvent(new CustomEvent("slopewatch:beep", { detail: { count } }));
}

export function updateSoundButton() {
  const button = document.getElementById("sound");
  const ctx = audioContext();
  button.hidden = !ctx;
  const on = ctx?.state === "running";
  button.textContent = on ? `♪ ${t("sound_off")}` : `✕♪ ${t("sound_on")}`;
  button.classList.toggle("off", !on);
  button.onclick = () => ctx?.resume().then(updateSoundButton, () => {});
}
