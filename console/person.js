// The person page: details, level, devices with their last position, zones, leave permits and
// monitoring orders; the track for a chosen period on the map with a time slider and the
// alerts on it; and a message to the device through the commands API.

import * as api from "./api.js";
import { createMap, drawZones, zoneLabel } from "./map.js";
import { t, formatTime, toLocalInput, fromLocalInput } from "./i18n.js";
import { el, clear } from "./dom.js";
import { currentMonth } from "./reports.js";

const HOUR = 3600 * 1000;

export class PersonPage {
  constructor(context) {
    this.context = context;
    this.map = null;
    this.layers = [];
    this.points = [];
    this.cursor = null;
    this.person = null;
    document.getElementById("track-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.loadTrack(
        fromLocalInput(document.getElementById("track-from").value),
        fromLocalInput(document.getElementById("track-to").value),
      );
    });
    document.getElementById("track-slider").addEventListener("input", (e) => this.moveTo(Number(e.target.value)));
    document.getElementById("message-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.sendMessage();
    });
  }

  async show(id, at) {
    const L = window.L;
    if (!this.map) {
      this.map = createMap(document.getElementById("person-map"), this.context.settings.map);
      this.trackLayer = L.layerGroup().addTo(this.map);
    }
    this.map.invalidateSize();
    document.getElementById("person-error").textContent = "";
    try {
      const [person, devices, zones, leaves, orders] = await Promise.all([
        api.get(`/persons/${id}`),
        api.get("/devices"),
        api.get(`/zones?assigned_to=${id}`),
        api.get(`/persons/${id}/leaves`),
        api.get(`/persons/${id}/orders`),
      ]);
      this.person = person;
      this.devices = devices.devices.filter((d) => d.person_id === id);
      this.renderDetails(person);
      this.renderDevices();
      this.renderZones(zones.features);
      this.renderLeaves(leaves.leaves);
      this.renderOrders(orders.orders);
      const centre = at ? new Date(at) : new Date();
      const from = new Date(centre.getTime() - (at ? HOUR : 24 * HOUR));
      const to = new Date(Math.min(centre.getTime() + (at ? HOUR : 0), Date.now()) + 60 * 1000);
      document.getElementById("track-from").value = toLocalInput(from);
      document.getElementById("track-to").value = toLocalInput(to);
      await this.loadTrack(from, to, at ? centre : null);
    } catch (error) {
      document.getElementById("person-error").textContent = error.message;
    }
  }

  renderDetails(person) {
    document.getElementById("person-name").textContent = person.name;
    document.getElementById("person-report").href = `#/report/${person.id}?month=${currentMonth()}`;
    const details = document.getElementById("person-details");
    clear(details);
    const position = this.context.positions.get(person.id);
    const rows = [
      [t("person.level"), t(`level.${person.level}`)],
      [t("person.timezone"), person.timezone],
      [t("person.state"), position ? t(`pstate.${position.state}`) : "—"],
      [t("person.last"), position ? formatTime(position.time) : t("person.never")],
      [t("person.enrolled"), formatTime(person.created_at)],
    ];
    for (const [name, value] of rows) details.append(el("dt", {}, name), el("dd", {}, value));
  }

  renderDevices() {
    const list = document.getElementById("person-devices");
    clear(list);
    const select = document.getElementById("message-device");
    clear(select);
    const position = this.context.positions.get(this.person.id);
    for (const device of this.devices) {
      const last = position && position.device_id === device.imei ? formatTime(position.time) : "";
      list.append(el("li", {}, `${device.imei}`, device.model ? ` · ${device.model}` : "",
        device.protocol ? ` · ${device.protocol}` : "",
        last ? el("span", { class: "hint" }, ` · ${t("person.lastfix")} ${last}`) : ""));
      select.append(el("option", { value: device.imei }, device.imei));
    }
    if (!this.devices.length) list.append(el("li", { class: "hint" }, t("person.nodevices")));
    const form = document.getElementById("message-form");
    const disabled = !this.devices.length || !this.context.may("send_commands");
    form.querySelectorAll("select, textarea, button").forEach((node) => { node.disabled = disabled; });
  }

  renderZones(zones) {
    const list = document.getElementById("person-zones");
    clear(list);
    for (const zone of zones) list.append(el("li", {}, zoneLabel(zone)));
    if (!zones.length) list.append(el("li", { class: "hint" }, t("person.nozones")));
    if (this.zoneLayer) this.zoneLayer.remove();
    this.zoneLayer = drawZones(this.map, zones);
  }

  renderLeaves(leaves) {
    const list = document.getElementById("person-leaves");
    clear(list);
    for (const leave of leaves) {
      const state = leave.cancelled_at ? t("leave.cancelled") : leave.ended_at ? t("leave.ended") : "";
      list.append(el("li", {}, `${formatTime(leave.from)} – ${formatTime(leave.to)} · ${leave.reason}`,
        state ? el("span", { class: "tag" }, state) : ""));
    }
    if (!leaves.length) list.append(el("li", { class: "hint" }, t("person.none")));
  }

  renderOrders(orders) {
    const list = document.getElementById("person-orders");
    clear(list);
    for (const order of orders) {
      const current = order.started_at && !order.ended_at;
      list.append(el("li", {}, `${formatTime(order.from)} – ${formatTime(order.to)} · ${order.ground}`,
        el("span", { class: "tag" }, current ? t("order.current") : order.ended_at ? t("order.ended") : t("order.pending"))));
    }
    if (!orders.length) list.append(el("li", { class: "hint" }, t("person.none")));
  }

  async loadTrack(from, to, at = null) {
    const L = window.L;
    document.getElementById("person-error").textContent = "";
    try {
      const track = await api.get(`/persons/${this.person.id}/track?from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`);
      this.points = track.features.filter((f) => f.properties.valid);
      this.trackLayer.clearLayers();
      const latlngs = this.points.map((f) => L.latLng(...this.map.display.show(f.geometry.coordinates[1], f.geometry.coordinates[0])));
      if (latlngs.length) {
        L.polyline(latlngs, { color: "#1f6feb", weight: 3, opacity: 0.7, className: "track-line" }).addTo(this.trackLayer);
        latlngs.forEach((latlng, i) => {
          L.circleMarker(latlng, { radius: 4, className: "track-point", weight: 1, fillOpacity: 0.8 })
            .bindTooltip(formatTime(this.points[i].properties.time))
            .addTo(this.trackLayer);
        });
        this.map.fitBounds(L.latLngBounds(latlngs).pad(0.3), { maxZoom: 16, animate: false });
      }
      document.getElementById("track-count").textContent = t("track.count", { n: this.points.length });
      const slider = document.getElementById("track-slider");
      slider.max = String(Math.max(0, this.points.length - 1));
      let index = this.points.length - 1;
      if (at && this.points.length) {
        let best = Infinity;
        this.points.forEach((p, i) => {
          const d = Math.abs(new Date(p.properties.time) - at);
          if (d < best) { best = d; index = i; }
        });
      }
      slider.value = String(Math.max(0, index));
      slider.disabled = this.points.length === 0;
      this.cursor = null;
      this.moveTo(index);
      this.renderAlerts(from, to);
    } catch (error) {
      document.getElementById("person-error").textContent = error.message;
    }
  }

  moveTo(index) {
    const L = window.L;
    const point = this.points[index];
    const label = document.getElementById("track-at");
    if (!point) {
      label.textContent = "";
      return;
    }
    const latlng = L.latLng(...this.map.display.show(point.geometry.coordinates[1], point.geometry.coordinates[0]));
    if (!this.cursor) {
      this.cursor = L.circleMarker(latlng, { radius: 9, className: "track-cursor", weight: 3, fill: false }).addTo(this.trackLayer);
    } else {
      this.cursor.setLatLng(latlng);
    }
    const p = point.properties;
    label.textContent = `${formatTime(p.time)}${p.speed_kmh != null ? ` · ${p.speed_kmh} km/h` : ""}${p.accuracy_m != null ? ` · ±${p.accuracy_m} m` : ""}`;
  }

  async renderAlerts(from, to) {
    const list = document.getElementById("track-alerts");
    clear(list);
    let alerts = [];
    try {
      let after = 0;
      for (let page = 0; page < 20; page++) {
        const result = await api.get(`/alerts?person_id=${this.person.id}&after=${after}&limit=1000`);
        alerts.push(...result.alerts);
        after = result.next;
        if (result.alerts.length < 1000) break;
      }
    } catch (error) {
      list.append(el("li", { class: "error" }, error.message));
      return;
    }
    alerts = alerts.filter((a) => new Date(a.time) >= from && new Date(a.time) <= to).sort((a, b) => b.seq - a.seq);
    const L = window.L;
    for (const alert of alerts) {
      list.append(el("li", { class: `sev-${alert.severity}` },
        el("span", { class: `badge sev-${alert.severity}` }, t(`severity.${alert.severity}`)),
        ` ${formatTime(alert.time)} · ${t(`alert.${alert.kind}`)} · ${t(`state.${alert.state}`)}`));
      if (alert.position) {
        L.circleMarker(L.latLng(...this.map.display.show(alert.position.lat, alert.position.lon)), {
          radius: 7, className: `track-alert sev-${alert.severity}`, weight: 2, fillOpacity: 0.6,
        }).bindTooltip(`${t(`alert.${alert.kind}`)} · ${formatTime(alert.time)}`).addTo(this.trackLayer);
      }
    }
    if (!alerts.length) list.append(el("li", { class: "hint" }, t("person.none")));
  }

  async sendMessage() {
    const status = document.getElementById("message-status");
    const imei = document.getElementById("message-device").value;
    const text = document.getElementById("message-text").value.trim();
    if (!imei || !text) return;
    try {
      const command = await api.post(`/devices/${encodeURIComponent(imei)}/commands`, { type: "message", text });
      status.textContent = t("person.message.status", { status: t(`command.${command.status}`) });
      document.getElementById("message-text").value = "";
    } catch (error) {
      status.textContent = error.message;
    }
  }
}
