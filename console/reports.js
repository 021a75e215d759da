// The month report pages, laid out to print on A4 (console.css, @media print):
// a person's month (track density on the map as a grid of cells coloured by fix count, a
// timeline of alerts and check-ins, the record of /persons/{id}/record, the officer's entries
// with a form to add one, the level review with its reasons) and the county's month (the
// figures of /stats/county beside the previous month's, as SVG bars drawn here).

import * as api from "./api.js";
import { createMap, drawZones } from "./map.js";
import { t, formatTime, centreTimeZone } from "./i18n.js";
import { el, clear } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
// Cells across the track's larger side; a cell is never smaller than this many metres.
const DENSITY_CELLS = 16;
const DENSITY_MIN_CELL_M = 50;
const DENSITY_CLASSES = 5;
const METRES_PER_DEGREE = 111320;
const ALERT_PAGES = 20;
// The three one-row charts share a line.
const SMALL = { width: 230, label: 50 };

// The current month, YYYY-MM, in the centre's time zone.
export function currentMonth() {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat("en-GB", { timeZone: centreTimeZone(), year: "numeric", month: "2-digit" })
      .formatToParts(new Date())
      .map((p) => [p.type, p.value]),
  );
  return `${parts.year}-${parts.month}`;
}

function validMonth(month) {
  return /^[0-9]{4}-(0[1-9]|1[0-2])$/.test(month || "") ? month : currentMonth();
}

function number(value, digits = 0) {
  if (value === null || value === undefined) return "—";
  // Rounded first, so a small negative shows as 0 rather than -0.
  const factor = 10 ** digits;
  return (Math.round(Number(value) * factor) / factor + 0).toLocaleString(document.documentElement.lang === "zh-CN" ? "zh-CN" : "en-GB", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

function percent(share) {
  return share === null || share === undefined ? "—" : `${number(share * 100, 1)} %`;
}

function svg(tag, attributes = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

// Counts fixes per cell of a grid laid over their extent; returns the cells with a count.
export function densityGrid(points) {
  if (!points.length) return { cells: [], max: 0 };
  let [south, north, west, east] = [Infinity, -Infinity, Infinity, -Infinity];
  for (const [lat, lon] of points) {
    south = Math.min(south, lat); north = Math.max(north, lat);
    west = Math.min(west, lon); east = Math.max(east, lon);
  }
  const cosLat = Math.cos(((south + north) / 2) * Math.PI / 180);
  const spanM = Math.max((north - south) * METRES_PER_DEGREE, (east - west) * METRES_PER_DEGREE * cosLat);
  const cellM = Math.max(DENSITY_MIN_CELL_M, spanM / DENSITY_CELLS);
  const dLat = cellM / METRES_PER_DEGREE;
  const dLon = cellM / (METRES_PER_DEGREE * cosLat);
  const counts = new Map();
  for (const [lat, lon] of points) {
    const row = Math.floor((lat - south) / dLat);
    const col = Math.floor((lon - west) / dLon);
    const key = `${row}:${col}`;
    counts.set(key, (counts.get(key) || 0) + 1);
  }
  let max = 0;
  const cells = [];
  for (const [key, count] of counts) {
    const [row, col] = key.split(":").map(Number);
    max = Math.max(max, count);
    cells.push({
      count,
      south: south + row * dLat, north: south + (row + 1) * dLat,
      west: west + col * dLon, east: west + (col + 1) * dLon,
    });
  }
  return { cells, max, cellM };
}

function densityClass(count, max) {
  return Math.max(1, Math.ceil((count / max) * DENSITY_CLASSES));
}

async function personAlerts(personId) {
  const alerts = [];
  let after = 0;
  for (let page = 0; page < ALERT_PAGES; page++) {
    const result = await api.get(`/alerts?person_id=${personId}&after=${after}&limit=1000`);
    alerts.push(...result.alerts);
    after = result.next;
    if (result.alerts.length < 1000) break;
  }
  return alerts;
}

export class PersonReport {
  constructor(context) {
    this.context = context;
    this.map = null;
    this.personId = null;
    document.getElementById("report-form").addEventListener("submit", (e) => {
      e.preventDefault();
      location.hash = `#/report/${this.personId}?month=${document.getElementById("report-month").value}`;
    });
    document.getElementById("report-print").addEventListener("click", () => window.print());
    document.getElementById("assessment-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.addAssessment();
    });
  }

  async show(personId, month) {
    const L = window.L;
    this.personId = personId;
    this.month = validMonth(month);
    document.getElementById("report-month").value = this.month;
    document.getElementById("report-error").textContent = "";
    document.getElementById("assessment-error").textContent = "";
    if (!this.map) {
      this.map = createMap(document.getElementById("report-map"), this.context.settings.map);
      this.densityLayer = L.layerGroup().addTo(this.map);
    }
    this.map.invalidateSize();
    const page = document.getElementById("page-report");
    page.dataset.ready = "";
    try {
      const [record, review, zones] = await Promise.all([
        api.get(`/persons/${personId}/record?month=${this.month}`),
        api.get(`/persons/${personId}/level-review?month=${this.month}`),
        api.get(`/zones?assigned_to=${personId}`),
      ]);
      this.record = record;
      this.renderHead(record);
      this.renderRecord(record);
      this.renderEntries(record.assessments);
      this.renderReview(review);
      if (this.zoneLayer) this.zoneLayer.remove();
      this.zoneLayer = drawZones(this.map, zones.features);
      const [track, alerts, checkins] = await Promise.all([
        api.get(`/persons/${personId}/track?from=${encodeURIComponent(record.from)}&to=${encodeURIComponent(record.to)}&limit=100000`),
        personAlerts(personId),
        api.get(`/persons/${personId}/checkins`),
      ]);
      this.renderDensity(track.features.filter((f) => f.properties.valid));
      this.renderTimeline(record, alerts, checkins.checkins);
      page.dataset.ready = this.month;
    } catch (error) {
      document.getElementById("report-error").textContent = error.message;
    }
  }

  renderHead(record) {
    document.getElementById("report-title").textContent =
      t("report.person.title", { name: record.name ?? record.person_id, month: record.month });
    document.getElementById("report-subtitle").textContent = t("report.person.subtitle", {
      level: t(`level.${record.level}`),
      timezone: record.timezone,
      from: formatTime(record.from),
      to: formatTime(record.to),
    });
  }

  renderDensity(points) {
    const L = window.L;
    this.densityLayer.clearLayers();
    const legend = document.getElementById("report-density-legend");
    clear(legend);
    const { cells, max, cellM } = densityGrid(points.map((f) => [f.geometry.coordinates[1], f.geometry.coordinates[0]]));
    const show = (lat, lon) => this.map.display.show(lat, lon);
    const bounds = [];
    for (const cell of cells) {
      const corners = [show(cell.south, cell.west), show(cell.north, cell.east)];
      bounds.push(...corners);
      L.rectangle(corners, {
        className: `density density-${densityClass(cell.count, max)}`,
        weight: 1,
        fillOpacity: 0.7,
      })
        .bindTooltip(t("report.density.cell", { n: cell.count }))
        .addTo(this.densityLayer);
    }
    if (bounds.length) this.map.fitBounds(L.latLngBounds(bounds).pad(0.2), { maxZoom: 17, animate: false });
    if (!cells.length) {
      legend.append(el("span", { class: "hint" }, t("report.density.none")));
      return;
    }
    legend.append(el("span", { class: "hint" }, t("report.density.legend", { n: points.length, m: Math.round(cellM) })));
    for (let level = 1; level <= DENSITY_CLASSES; level++) {
      const low = Math.floor(((level - 1) * max) / DENSITY_CLASSES) + 1;
      const high = Math.floor((level * max) / DENSITY_CLASSES);
      if (high < low) continue;
      legend.append(el("span", { class: `swatch density-${level}` }), low === high ? `${low}` : `${low}–${high}`);
    }
  }

  renderTimeline(record, alerts, checkins) {
    const list = document.getElementById("report-timeline");
    clear(list);
    const from = new Date(record.from);
    const to = new Date(record.to);
    const within = (time) => new Date(time) >= from && new Date(time) < to;
    const entries = [
      ...alerts.filter((a) => within(a.time)).map((a) => ({
        time: a.time,
        kind: "alert",
        node: el("li", { class: `entry alert sev-${a.severity}`, "data-alert-id": a.id },
          el("span", { class: "when" }, formatTime(a.time)),
          el("span", { class: `badge sev-${a.severity}` }, t(`severity.${a.severity}`)),
          ` ${t(`alert.${a.kind}`)} · ${t(`state.${a.state}`)}`,
          a.disposition ? ` · ${t(`disposition.${a.disposition}`)}` : ""),
      })),
      ...checkins.filter((c) => within(c.time)).map((c) => ({
        time: c.time,
        kind: "checkin",
        node: el("li", { class: "entry checkin", "data-checkin-id": c.id },
          el("span", { class: "when" }, formatTime(c.time)),
          el("span", { class: "tag" }, t("report.checkin")),
          ` ${t(`checkin.${c.method}`)}`),
      })),
    ].sort((a, b) => new Date(a.time) - new Date(b.time));
    for (const entry of entries) list.append(entry.node);
    if (!entries.length) list.append(el("li", { class: "hint" }, t("report.timeline.none")));
  }

  renderRecord(record) {
    const body = document.querySelector("#report-record tbody");
    clear(body);
    const rows = [
      ["record.supervised_days", number(record.supervised_days, 1)],
      ["record.fixes_received", number(record.reporting.fixes_received)],
      ["record.fixes_expected", number(record.reporting.fixes_expected)],
      ["record.reporting_rate", percent(record.reporting.rate)],
      ["record.offline_hours", number(record.offline_hours, 1)],
      ["record.alerts", number(record.alerts.total)],
      ["record.false_alarms", number(record.alerts.false_alarms)],
      ["record.undisposed", number(record.alerts.undisposed)],
      ["record.confirmed_breaches", number(record.confirmed_breaches)],
      ["record.leaves_taken", number(record.leaves.taken)],
      ["record.leaves_overdue", number(record.leaves.overdue)],
      ["record.checkins_made", number(record.checkins.made)],
      ["record.checkins_missed", number(record.checkins.missed)],
      ["record.commands_queued", number(record.commands.queued)],
      ["record.commands_acknowledged", number(record.commands.acknowledged)],
    ];
    for (const [key, value] of rows) {
      body.append(el("tr", { "data-item": key.slice("record.".length) }, el("th", {}, t(key)), el("td", { class: "num" }, value)));
    }
    const kinds = document.getElementById("report-kinds");
    const head = kinds.querySelector("thead");
    const rowsOut = kinds.querySelector("tbody");
    clear(head);
    clear(rowsOut);
    const columns = ["count", "false_alarm", "warned", "escalated", "returned_by_itself", "undisposed"];
    head.append(el("tr", {}, el("th", {}, t("alerts.kind")), ...columns.map((c) => el("th", { class: "num" }, t(`record.kind.${c}`)))));
    const byKind = Object.entries(record.alerts.by_kind);
    for (const [kind, summary] of byKind) {
      rowsOut.append(el("tr", { "data-kind": kind }, el("td", {}, t(`alert.${kind}`)),
        ...columns.map((c) => el("td", { class: "num" }, number(summary[c])))));
    }
    if (!byKind.length) rowsOut.append(el("tr", {}, el("td", { class: "hint", colspan: columns.length + 1 }, t("person.none"))));
  }

  renderEntries(assessments) {
    const list = document.getElementById("report-entries");
    clear(list);
    for (const entry of assessments) {
      const who = entry.actor?.label ?? entry.actor?.token_id?.slice(0, 8) ?? "";
      list.append(el("li", { class: `assessment kind-${entry.kind}`, "data-assessment-id": entry.id },
        el("span", { class: "tag" }, t(`assessment.${entry.kind}`)),
        ` ${entry.reason}`,
        el("span", { class: "hint" }, ` · ${formatTime(entry.created_at)}${who ? ` · ${who}` : ""}`),
        entry.alert_ids?.length ? el("span", { class: "hint" }, ` · ${t("assessment.cites", { n: entry.alert_ids.length })}`) : ""));
    }
    if (!assessments.length) list.append(el("li", { class: "hint" }, t("person.none")));
  }

  renderReview(review) {
    const summary = document.getElementById("review-summary");
    summary.textContent = review.change
      ? t("review.change", { from: t(`level.${review.current_level}`), to: t(`level.${review.suggested_level}`) })
      : t("review.keep", { level: t(`level.${review.current_level}`) });
    summary.className = review.change ? "review change" : "review";
    const reasons = document.getElementById("review-reasons");
    clear(reasons);
    for (const reason of review.reasons) reasons.append(el("li", {}, reason));
    const table = document.getElementById("review-months");
    const head = table.querySelector("thead");
    const body = table.querySelector("tbody");
    clear(head);
    clear(body);
    head.append(el("tr", {}, ...["month", "supervised_days", "confirmed_breaches", "missed_checkins", "reporting_rate", "clean"]
      .map((c) => el("th", {}, t(`review.${c}`)))));
    for (const m of review.months) {
      body.append(el("tr", {}, el("td", {}, m.month), el("td", { class: "num" }, number(m.supervised_days, 1)),
        el("td", { class: "num" }, number(m.confirmed_breaches)), el("td", { class: "num" }, number(m.missed_checkins)),
        el("td", { class: "num" }, percent(m.reporting_rate)), el("td", {}, m.clean ? t("review.yes") : t("review.no"))));
    }
  }

  async addAssessment() {
    const error = document.getElementById("assessment-error");
    error.textContent = "";
    const reason = document.getElementById("assessment-reason");
    try {
      await api.post(`/persons/${this.personId}/assessments`, {
        kind: document.getElementById("assessment-kind").value,
        reason: reason.value,
        month: this.month,
      });
      reason.value = "";
      const record = await api.get(`/persons/${this.personId}/record?month=${this.month}`);
      this.renderEntries(record.assessments);
    } catch (e) {
      error.textContent = e.message;
    }
  }
}

// One chart: a row per item, this month's bar above the previous month's, scaled to the
// chart's largest value.
function barChart(title, rows, format, { width = 640, label = 200 } = {}) {
  const bar = 14;
  const rowHeight = bar * 2 + 12;
  const height = rows.length * rowHeight + 8;
  const max = Math.max(0, ...rows.flatMap((r) => [r.current ?? 0, r.previous ?? 0]));
  const scale = (value) => (max > 0 ? ((value ?? 0) / max) * (width - label - 96) : 0);
  const chart = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
  rows.forEach((row, i) => {
    const y = i * rowHeight + 4;
    chart.append(svg("text", { class: "chart-label", x: 0, y: y + bar + 4 }, row.label));
    for (const [which, offset] of [["current", 0], ["previous", bar + 2]]) {
      const value = row[which];
      const rect = svg("rect", {
        class: `bar bar-${which}`, x: label, y: y + offset, width: scale(value).toFixed(1), height: bar,
        "data-item": row.key, "data-value": value ?? "",
      });
      rect.append(svg("title", {}, `${t(`county.${which}`)}: ${format(value)}`));
      chart.append(rect, svg("text", { class: "chart-value", x: label + scale(value) + 4, y: y + offset + bar - 3 }, format(value)));
    }
  });
  return el("figure", { class: "chart-box" }, el("figcaption", {}, title), chart);
}

export class CountyReport {
  constructor(context) {
    this.context = context;
    document.getElementById("county-form").addEventListener("submit", (e) => {
      e.preventDefault();
      location.hash = `#/county?month=${document.getElementById("county-month").value}`;
    });
    document.getElementById("county-print").addEventListener("click", () => window.print());
  }

  async show(month) {
    this.month = validMonth(month);
    document.getElementById("county-month").value = this.month;
    document.getElementById("county-error").textContent = "";
    const page = document.getElementById("page-county");
    page.dataset.ready = "";
    try {
      const figures = await api.get(`/stats/county?month=${this.month}`);
      this.render(figures);
      page.dataset.ready = this.month;
    } catch (error) {
      document.getElementById("county-error").textContent = error.message;
    }
  }

  render({ timezone, month, previous }) {
    document.getElementById("county-title").textContent = t("county.title", { month: month.month });
    document.getElementById("county-subtitle").textContent =
      t("county.subtitle", { previous: previous.month, timezone });
    const charts = document.getElementById("county-charts");
    clear(charts);
    const legend = el("p", { class: "legend" },
      el("span", { class: "swatch bar-current" }), `${t("county.current")} ${month.month}`,
      el("span", { class: "swatch bar-previous" }), `${t("county.previous")} ${previous.month}`);
    const levels = [...new Set([...Object.keys(month.persons_by_level), ...Object.keys(previous.persons_by_level)])];
    const kinds = [...new Set([...Object.keys(month.alerts_per_100_person_days), ...Object.keys(previous.alerts_per_100_person_days)])].sort();
    const pair = (key, label, pick) => ({ key, label, current: pick(month), previous: pick(previous) });
    const whole = (v) => number(v);
    charts.append(
      legend,
      barChart(t("county.chart.persons"), [
        pair("persons", t("county.persons"), (m) => m.persons),
        ...levels.map((level) => pair(`level.${level}`, t(`level.${level}`), (m) => m.persons_by_level[level] ?? 0)),
        pair("enrolments", t("county.enrolments"), (m) => m.enrolments),
        pair("releases", t("county.releases"), (m) => m.releases),
      ], whole),
      barChart(t("county.chart.alerts"), kinds.length
        ? kinds.map((kind) => pair(`alert.${kind}`, t(`alert.${kind}`), (m) => m.alerts_per_100_person_days[kind] ?? 0))
        : [pair("alerts", t("county.noalerts"), () => 0)], (v) => number(v, 2)),
      el("div", { class: "chart-row" },
        barChart(t("county.false_alarm_share"), [pair("false_alarm_share", t("county.share"), (m) => m.false_alarm_share)], percent, SMALL),
        barChart(t("county.disposition_minutes"), [pair("disposition_minutes", t("county.minutes"),
          (m) => (m.mean_seconds_to_disposition === null ? null : m.mean_seconds_to_disposition / 60))], (v) => number(v, 1), SMALL),
        barChart(t("county.lost_hours"), [pair("lost_hours", t("county.hours"), (m) => m.lost_supervision_hours)], (v) => number(v, 1), SMALL)),
    );
    const table = document.getElementById("county-table");
    const head = table.querySelector("thead");
    const body = table.querySelector("tbody");
    clear(head);
    clear(body);
    head.append(el("tr", {}, el("th", {}, ""), el("th", { class: "num" }, month.month), el("th", { class: "num" }, previous.month)));
    const rows = [
      ["persons", whole, (m) => m.persons],
      ["enrolments", whole, (m) => m.enrolments],
      ["releases", whole, (m) => m.releases],
      ["person_days", (v) => number(v, 1), (m) => m.person_days],
      ["alerts", whole, (m) => Object.values(m.alerts_by_kind).reduce((a, b) => a + b, 0)],
      ["disposed", whole, (m) => m.disposed],
      ["false_alarms", whole, (m) => m.false_alarms],
      ["false_alarm_share", percent, (m) => m.false_alarm_share],
      ["disposition_minutes", (v) => number(v, 1), (m) => (m.mean_seconds_to_disposition === null ? null : m.mean_seconds_to_disposition / 60)],
      ["lost_hours", (v) => number(v, 1), (m) => m.lost_supervision_hours],
    ];
    for (const [key, format, pick] of rows) {
      body.append(el("tr", { "data-item": key }, el("th", {}, t(`county.${key}`)),
        el("td", { class: "num" }, format(pick(month))), el("td", { class: "num" }, format(pick(previous)))));
    }
  }
}
