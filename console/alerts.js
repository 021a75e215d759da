// The alert queue: the recent alerts from the cursor feed, then every alert event live over
// the alert stream; newest first, coloured by severity, filtered by kind, severity, zone and
// state, with the handling chain's steps as buttons. A new high or critical alert sounds and
// counts in the page title until it is acknowledged.

import * as api from "./api.js";
import { t, formatTime } from "./i18n.js";
import { el, clear } from "./dom.js";

const KINDS = [
  "zone_exit", "zone_enter", "curfew", "offline", "unsupervised", "sos", "tamper", "low_battery",
  "fall", "leave_overdue", "device_separation", "border_hit", "order_expiring", "missed_checkin",
  "returned",
];
const SEVERITIES = ["critical", "high", "medium", "low", "info"];
const STATES = ["open", "acknowledged", "verified", "disposed", "closed"];
const DISPOSITIONS = ["false_alarm", "warned", "escalated", "returned_by_itself"];
// The step each state offers next, as the API's route names it.
const NEXT_STEP = { open: "ack", acknowledged: "verify", verified: "dispose", disposed: "close" };
const KEPT = 1000;
const PAGE = 1000;

export class AlertQueue {
  constructor(context) {
    this.context = context;
    this.alerts = new Map();
    this.stop = null;
    this.started = Date.now();
    this.filters = { kind: "", level: "", zone: "", state: "" };
    this.handling = null;
    this.audio = null;
    document.getElementById("sound").addEventListener("change", (e) => {
      if (e.target.checked) this.unlockSound();
    });
    for (const name of Object.keys(this.filters)) {
      document.getElementById(`filter-${name}`).addEventListener("change", (e) => {
        this.filters[name] = e.target.value;
        this.render();
      });
    }
    document.getElementById("handle-cancel").addEventListener("click", () => {
      document.getElementById("handle-dialog").close();
    });
    document.getElementById("handle-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.confirmStep();
    });
    document.addEventListener("pointerdown", () => this.unlockSound(), { once: true });
  }

  fillFilters() {
    const option = (value, text) => el("option", { value }, text);
    const fill = (id, values, label) => {
      const select = document.getElementById(id);
      const current = select.value;
      clear(select);
      select.append(option("", t("filter.all")));
      for (const value of values) select.append(option(value, label(value)));
      select.value = current;
    };
    fill("filter-kind", KINDS, (k) => t(`alert.${k}`));
    fill("filter-level", SEVERITIES, (s) => t(`severity.${s}`));
    fill("filter-state", STATES, (s) => t(`state.${s}`));
    const zones = [...this.context.zones.values()];
    fill("filter-zone", zones.map((z) => z.id), (id) => this.context.zones.get(id)?.properties.name ?? id);
    const disposition = document.getElementById("handle-disposition");
    clear(disposition);
    for (const d of DISPOSITIONS) disposition.append(option(d, t(`disposition.${d}`)));
  }

  async start() {
    this.fillFilters();
    // The newest alerts, then every alert still being handled however old, so an open alert
    // never drops out of the queue; the stream goes on from the newest seq read.
    let after = 0;
    try {
      const newest = await api.get(`/alerts?order=desc&limit=${PAGE}`);
      newest.alerts.forEach((alert) => this.alerts.set(alert.id, alert));
      after = newest.next;
      let cursor = 0;
      for (;;) {
        const open = await api.get(`/alerts?open=true&after=${cursor}&limit=${PAGE}`);
        open.alerts.forEach((alert) => this.alerts.set(alert.id, alert));
        cursor = open.next;
        if (open.alerts.length < PAGE) break;
      }
      this.trim();
      this.render();
    } catch (error) {
      document.getElementById("alerts-error").textContent = error.message;
    }
    this.stop = api.follow(`/alerts/stream?after=${after}`, (name, event) => this.onEvent(name, event), {
      onState: (state, detail) => this.context.setLive("alerts", state, detail),
    });
  }

  onEvent(name, event) {
    if (!name.startsWith("alert.") || !event || !event.data || !event.data.id) return;
    const alert = event.data;
    const known = this.alerts.get(alert.id);
    // An alert event carries the whole alert as it then was; keep the most advanced.
    if (known && known.state !== alert.state && STATES.indexOf(known.state) > STATES.indexOf(alert.state)) return;
    this.alerts.set(alert.id, { ...known, ...alert });
    if (name === "alert.raised" && !known) this.announce(alert);
    this.trim();
    this.render();
    this.context.alertChanged(alert);
  }

  // Drops the oldest closed alerts beyond KEPT; an alert still being handled always stays.
  trim() {
    if (this.alerts.size <= KEPT) return;
    const closed = [...this.alerts.values()].filter((a) => a.state === "closed").sort((a, b) => a.seq - b.seq);
    for (const alert of closed.slice(0, Math.max(0, this.alerts.size - KEPT))) this.alerts.delete(alert.id);
  }

  urgentOpen() {
    return [...this.alerts.values()].filter(
      (a) => a.state === "open" && (a.severity === "high" || a.severity === "critical"),
    ).length;
  }

  updateTitle() {
    const count = this.urgentOpen();
    document.title = count ? `(${count}) ${t("app.short")}` : t("app.short");
  }

  announce(alert) {
    if (alert.severity !== "high" && alert.severity !== "critical") return;
    if (!document.getElementById("sound").checked) return;
    this.beep(alert.severity === "critical" ? 3 : 1);
  }

  unlockSound() {
    try {
      this.audio ??= new AudioContext();
      if (this.audio.state === "suspended") this.audio.resume();
    } catch (_) {
      this.audio = null;
    }
  }

  beep(times) {
    this.unlockSound();
    if (!this.audio) return;
    for (let i = 0; i < times; i++) {
      const start = this.audio.currentTime + i * 0.35;
      const oscillator = this.audio.createOscillator();
      const gain = this.audio.createGain();
      oscillator.frequency.value = 880;
      gain.gain.setValueAtTime(0.2, start);
      gain.gain.exponentialRampToValueAtTime(0.001, start + 0.3);
      oscillator.connect(gain).connect(this.audio.destination);
      oscillator.start(start);
      oscillator.stop(start + 0.3);
    }
  }

  visible() {
    const f = this.filters;
    return [...this.alerts.values()]
      .filter((a) => (!f.kind || a.kind === f.kind)
        && (!f.level || a.severity === f.level)
        && (!f.zone || a.zone_id === f.zone)
        && (!f.state || a.state === f.state))
      .sort((a, b) => b.seq - a.seq);
  }

  render() {
    this.updateTitle();
    const rows = document.getElementById("alert-rows");
    clear(rows);
    const list = this.visible();
    document.getElementById("alerts-empty").hidden = list.length > 0;
    const mayHandle = this.context.may("handle_alerts");
    for (const alert of list) {
      const person = this.context.persons.get(alert.person_id);
      const zone = alert.zone_id ? this.context.zones.get(alert.zone_id) : null;
      const at = encodeURIComponent(alert.time);
      const actions = el("td", { class: "actions" });
      const step = NEXT_STEP[alert.state];
      if (mayHandle && step) {
        actions.append(el("button", { type: "button", "data-step": step, class: `step step-${step}` }, t(`step.${step}`)));
      }
      const row = el("tr", { class: `sev-${alert.severity} state-${alert.state}`, "data-alert-id": alert.id },
        el("td", {}, formatTime(alert.time), alert.late ? el("span", { class: "tag" }, t("alerts.late")) : ""),
        el("td", {}, el("span", { class: `badge sev-${alert.severity}` }, t(`severity.${alert.severity}`))),
        el("td", {}, t(`alert.${alert.kind}`)),
        el("td", {}, el("a", { href: `#/person/${alert.person_id}?at=${at}`, class: "person-link" }, person?.name ?? alert.person_id.slice(0, 8))),
        el("td", {}, zone ? zone.properties.name : ""),
        el("td", { class: "state" }, t(`state.${alert.state}`),
          alert.disposition ? el("span", { class: "tag" }, t(`disposition.${alert.disposition}`)) : "",
          alert.note ? el("div", { class: "note" }, alert.note) : ""),
        actions,
      );
      actions.querySelectorAll("button").forEach((button) => {
        button.addEventListener("click", () => this.openStep(alert.id, button.dataset.step));
      });
      rows.append(row);
    }
  }

  openStep(id, step) {
    this.handling = { id, step };
    document.getElementById("handle-title").textContent = t(`step.${step}`);
    document.getElementById("handle-disposition-label").hidden = step !== "dispose";
    document.getElementById("handle-note").value = "";
    document.getElementById("handle-error").textContent = "";
    document.getElementById("handle-dialog").showModal();
    document.getElementById("handle-note").focus();
  }

  async confirmStep() {
    const { id, step } = this.handling;
    const note = document.getElementById("handle-note").value.trim();
    const body = note ? { note } : {};
    if (step === "dispose") body.disposition = document.getElementById("handle-disposition").value;
    try {
      const alert = await api.post(`/alerts/${id}/${step}`, body);
      this.alerts.set(alert.id, alert);
      document.getElementById("handle-dialog").close();
      this.render();
    } catch (error) {
      document.getElementById("handle-error").textContent = error.message;
    }
  }

  // The alerts of one person between two instants, newest first.
  forPerson(personId, from, to) {
    return [...this.alerts.values()]
      .filter((a) => a.person_id === personId && new Date(a.time) >= from && new Date(a.time) <= to)
      .sort((a, b) => b.seq - a.seq);
  }
}
