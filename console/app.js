// The console's entry point: sign-in (a token typed in, or `#token=` in the address, which is
// removed at once), the pages behind hash routes, and the two live streams every page shares
// (alerts, positions). What the token's role may not do is not offered: the navigation and
// forms marked data-needs="capability" are hidden unless /whoami lists that capability.

import * as api from "./api.js";
import { t, translate, setLanguage, currentLanguage, onLanguageChange, setTimeZone } from "./i18n.js";
import { AlertQueue } from "./alerts.js";
import { Overview } from "./overview.js";
import { PersonPage } from "./person.js";
import { ZoneEditor } from "./zones.js";
import { TokensPage } from "./tokens.js";
import { PersonReport, CountyReport } from "./reports.js";

const context = {
  whoami: null,
  settings: null,
  persons: new Map(),
  zones: new Map(),
  positions: new Map(),
  stops: [],
  may(capability) {
    return Boolean(this.whoami && this.whoami.capabilities.includes(capability));
  },
  async reloadZones() {
    const { features } = await api.get("/zones");
    this.zones = new Map(features.map((z) => [z.id, z]));
    pages.overview?.drawZones();
    pages.alerts?.fillFilters();
  },
  async reloadPersons() {
    const { persons } = await api.get("/persons");
    this.persons = new Map(persons.map((p) => [p.id, p]));
  },
  alertChanged(alert) {
    if (!this.persons.has(alert.person_id)) this.reloadPersons().then(() => pages.overview?.renderPersons()).catch(() => {});
  },
  setLive(stream, state, detail) {
    liveStates[stream] = state;
    const badge = document.getElementById("live");
    badge.hidden = false;
    const all = Object.values(liveStates);
    const live = all.every((s) => s === "live");
    badge.className = `live ${live ? "on" : "off"}`;
    badge.textContent = live ? t("live.on") : t("live.off");
    badge.title = detail || "";
  },
};
const liveStates = {};
const pages = {};

function showPage(name) {
  document.querySelectorAll(".page").forEach((page) => { page.hidden = page.id !== `page-${name}`; });
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("current", a.dataset.page === name));
}

async function route() {
  if (!context.whoami) return;
  const hash = location.hash || "#/alerts";
  const [path, query] = hash.slice(1).split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  const page = parts[0] || "alerts";
  if (page === "person" && parts[1]) {
    showPage("person");
    await pages.person.show(parts[1], params.get("at"));
  } else if (page === "report" && parts[1] && context.may("read_records")) {
    showPage("report");
    await pages.report.show(parts[1], params.get("month"));
  } else if (page === "county" && context.may("read_records")) {
    showPage("county");
    await pages.county.show(params.get("month"));
  } else if (page === "map") {
    showPage("map");
    pages.overview.show();
  } else if (page === "persons") {
    showPage("persons");
    pages.overview.renderPersons();
  } else if (page === "zones") {
    showPage("zones");
    pages.zones.show();
  } else if (page === "tokens" && context.may("manage_tokens")) {
    showPage("tokens");
    pages.tokens.show();
  } else {
    showPage("alerts");
    pages.alerts.render();
  }
}

function applyCapabilities() {
  document.querySelectorAll("[data-needs]").forEach((node) => {
    node.hidden = !context.may(node.dataset.needs);
  });
}

async function signIn(secret) {
  api.setToken(secret);
  const error = document.getElementById("signin-error");
  error.textContent = "";
  let whoami;
  try {
    whoami = await api.get("/whoami");
  } catch (e) {
    api.setToken(null);
    error.textContent = e.status === 403 ? t("signin.role") : e.message;
    return false;
  }
  context.whoami = whoami;
  context.settings = { map: whoami.map };
  setTimeZone(whoami.timezone);
  document.getElementById("who").textContent = `${whoami.label ?? whoami.token_id.slice(0, 8)} · ${t(`role.${whoami.role}`)}`;
  document.getElementById("signin").hidden = true;
  document.getElementById("nav").hidden = false;
  document.getElementById("sign-out").hidden = false;
  applyCapabilities();
  try {
    await Promise.all([context.reloadPersons(), context.reloadZones()]);
  } catch (e) {
    document.getElementById("alerts-error").textContent = e.message;
  }
  pages.alerts = new AlertQueue(context);
  pages.overview = new Overview(context);
  pages.person = new PersonPage(context);
  pages.zones = new ZoneEditor(context);
  pages.tokens = new TokensPage(context);
  pages.report = new PersonReport(context);
  pages.county = new CountyReport(context);
  pages.alerts.start();
  if (context.may("follow_positions")) {
    context.stops.push(api.follow("/positions/stream", (name, position) => {
      if (name !== "position") return;
      context.positions.set(position.person_id, position);
      if (!context.persons.has(position.person_id)) context.reloadPersons().catch(() => {});
      pages.overview.drawPositions();
      if (!document.getElementById("page-persons").hidden) pages.overview.renderPersons();
    }, { onState: (state, detail) => context.setLive("positions", state, detail) }));
  }
  context.stops.push(() => pages.alerts.stop?.());
  await route();
  return true;
}

function signOut(message = "") {
  api.setToken(null);
  context.stops.forEach((stop) => stop());
  // A fresh page drops every piece of state the previous token loaded.
  sessionStorage.setItem("ewall.signout", message);
  location.hash = "";
  location.reload();
}

function start() {
  document.documentElement.lang = currentLanguage();
  const language = document.getElementById("language");
  language.value = currentLanguage();
  language.addEventListener("change", () => setLanguage(language.value));
  onLanguageChange(() => {
    translate();
    if (context.whoami) {
      pages.alerts.fillFilters();
      route();
    }
  });
  translate();
  document.title = t("app.short");
  api.whenUnauthorized((detail) => {
    if (context.whoami) signOut(detail);
  });
  document.getElementById("sign-out").addEventListener("click", () => signOut());
  document.getElementById("signin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    signIn(document.getElementById("signin-token").value.trim());
  });
  window.addEventListener("hashchange", route);
  const farewell = sessionStorage.getItem("ewall.signout");
  if (farewell) {
    document.getElementById("signin-error").textContent = farewell;
    sessionStorage.removeItem("ewall.signout");
  }
  // A token in the fragment (wall screens, automation) signs in and leaves the address bar at once.
  const match = location.hash.match(/^#token=([^&]+)/);
  if (match) {
    history.replaceState(null, "", `${location.pathname}${location.search}#/alerts`);
    signIn(decodeURIComponent(match[1]));
  } else if (api.token()) {
    signIn(api.token());
  }
}

// Leaflet is a classic script loaded with defer, which runs before module scripts.
start();
