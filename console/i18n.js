// Texts in English and Simplified Chinese, chosen from the browser's languages and switchable;
// times shown in the centre's time zone (from /whoami).

import en from "./messages/en.js";
import zh from "./messages/zh-CN.js";

const CATALOGS = { en, "zh-CN": zh };
const LANGUAGE_KEY = "ewall.language";
let language = chooseLanguage();
let timeZone = "UTC";
const listeners = [];

function chooseLanguage() {
  const saved = localStorage.getItem(LANGUAGE_KEY);
  if (saved && CATALOGS[saved]) return saved;
  for (const wanted of navigator.languages || [navigator.language || "en"]) {
    if (wanted.toLowerCase().startsWith("zh")) return "zh-CN";
    if (wanted.toLowerCase().startsWith("en")) return "en";
  }
  return "en";
}

export function currentLanguage() {
  return language;
}

export function setLanguage(next) {
  if (!CATALOGS[next]) return;
  language = next;
  localStorage.setItem(LANGUAGE_KEY, next);
  document.documentElement.lang = next;
  listeners.forEach((listener) => listener());
}

export function onLanguageChange(listener) {
  listeners.push(listener);
}

export function setTimeZone(zone) {
  timeZone = zone || "UTC";
}

export function centreTimeZone() {
  return timeZone;
}

// The text of `key`, with `{name}` placeholders filled from `values`.
export function t(key, values = {}) {
  const text = CATALOGS[language][key] ?? CATALOGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (values[name] ?? `{${name}}`));
}

// Fills every element carrying data-i18n (text) or data-i18n-placeholder / -title.
export function translate(root = document) {
  root.querySelectorAll("[data-i18n]").forEach((el) => {
    el.textContent = t(el.dataset.i18n);
  });
  root.querySelectorAll("[data-i18n-placeholder]").forEach((el) => {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  });
  root.querySelectorAll("[data-i18n-title]").forEach((el) => {
    el.title = t(el.dataset.i18nTitle);
  });
}

function formatter(options) {
  return new Intl.DateTimeFormat(language === "zh-CN" ? "zh-CN" : "en-GB", { timeZone, ...options });
}

export function formatTime(iso) {
  if (!iso) return "";
  return formatter({
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
  }).format(new Date(iso));
}

export function formatClock(iso) {
  return formatter({ hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false })
    .format(new Date(iso));
}

// The value of an <input type="datetime-local"> for an instant, in the centre's time zone.
export function toLocalInput(date) {
  const parts = Object.fromEntries(
    formatter({
      year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", hour12: false,
    }).formatToParts(date).map((p) => [p.type, p.value]),
  );
  const hour = parts.hour === "24" ? "00" : parts.hour;
  return `${parts.year}-${parts.month}-${parts.day}T${hour}:${parts.minute}`;
}

// The instant an <input type="datetime-local"> value names in the centre's time zone.
export function fromLocalInput(value) {
  const guess = new Date(`${value}:00Z`);
  // The zone's offset at that instant: format the guess there and compare.
  const shown = new Date(`${toLocalInput(guess)}:00Z`);
  const offset = shown.getTime() - guess.getTime();
  return new Date(guess.getTime() - offset);
}
