// The zone editor: draw a polygon (click the corners) or a circle (click the centre, then a
// point on its edge) on the map, or import a GeoJSON file in the datum chosen; name it, choose
// kind, schedule and whom it applies to, and create it through the API, which judges the shape
// (its problem message is shown as it is).

import * as api from "./api.js";
import { createMap, drawZones, zoneLabel } from "./map.js";
import { t } from "./i18n.js";
import { el, clear } from "./dom.js";

const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

export class ZoneEditor {
  constructor(context) {
    this.context = context;
    this.map = null;
    this.mode = null;
    this.vertices = [];
    this.circle = null;
    this.imported = null;
    this.preview = null;
    const days = document.getElementById("zone-days");
    for (const day of DAYS) {
      days.append(el("label", { class: "check" }, el("input", { type: "checkbox", value: day }), el("span", { "data-i18n": `day.${day}` }, t(`day.${day}`))));
    }
    document.getElementById("draw-polygon").addEventListener("click", () => this.startDrawing("polygon"));
    document.getElementById("draw-circle").addEventListener("click", () => this.startDrawing("circle"));
    document.getElementById("draw-clear").addEventListener("click", () => this.reset());
    document.getElementById("zone-file").addEventListener("change", (e) => this.importFile(e.target.files[0]));
    document.getElementById("zone-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.save();
    });
  }

  show() {
    const L = window.L;
    if (!this.map) {
      this.map = createMap(document.getElementById("zone-map"), this.context.settings.map);
      this.drawLayer = L.layerGroup().addTo(this.map);
      this.map.on("click", (e) => this.onMapClick(e.latlng));
    }
    this.map.invalidateSize();
    this.fillAssign();
    this.renderList();
  }

  fillAssign() {
    const select = document.getElementById("zone-assign");
    const current = select.value;
    clear(select);
    select.append(el("option", { value: "" }, t("zones.assign.none")));
    select.append(el("option", { value: "everyone" }, t("zones.shared.everyone")));
    for (const level of ["strict", "normal", "lenient"]) {
      select.append(el("option", { value: `level:${level}` }, t("zones.shared.level", { level: t(`level.${level}`) })));
    }
    for (const person of this.context.persons.values()) {
      select.append(el("option", { value: `person:${person.id}` }, person.name));
    }
    select.value = current;
  }

  renderList() {
    if (this.zoneLayer) this.zoneLayer.remove();
    const zones = [...this.context.zones.values()];
    this.zoneLayer = drawZones(this.map, zones);
    const list = document.getElementById("zone-list");
    clear(list);
    for (const zone of zones) {
      const item = el("li", { "data-zone-id": zone.id }, zoneLabel(zone));
      if (this.context.may("delete_records")) {
        const button = el("button", { type: "button", class: "secondary small" }, t("zones.delete"));
        button.addEventListener("click", async () => {
          try {
            await api.del(`/zones/${zone.id}`);
            await this.context.reloadZones();
            this.renderList();
          } catch (error) {
            document.getElementById("zone-error").textContent = error.message;
          }
        });
        item.append(" ", button);
      }
      list.append(item);
    }
  }

  startDrawing(mode) {
    this.reset();
    this.mode = mode;
    document.getElementById("zone-crs").value = "wgs84";
    document.getElementById("draw-hint").textContent = t(`zones.hint.${mode}`);
    this.map.getContainer().classList.add("drawing");
  }

  reset() {
    this.mode = null;
    this.vertices = [];
    this.circle = null;
    this.imported = null;
    if (this.drawLayer) this.drawLayer.clearLayers();
    document.getElementById("draw-hint").textContent = "";
    document.getElementById("zone-error").textContent = "";
    if (this.map) this.map.getContainer().classList.remove("drawing");
  }

  onMapClick(latlng) {
    const L = window.L;
    if (this.mode === "polygon") {
      this.vertices.push(latlng);
      this.drawLayer.clearLayers();
      L.polygon(this.vertices, { color: "#dd6b20", className: "draft" }).addTo(this.drawLayer);
      this.vertices.forEach((v) => L.circleMarker(v, { radius: 4, className: "draft-vertex" }).addTo(this.drawLayer));
      document.getElementById("draw-hint").textContent = t("zones.hint.vertices", { n: this.vertices.length });
    } else if (this.mode === "circle") {
      if (!this.circle || this.circle.radius) {
        this.circle = { centre: latlng, radius: 0 };
      } else {
        this.circle.radius = this.map.distance(this.circle.centre, latlng);
      }
      this.drawLayer.clearLayers();
      L.circleMarker(this.circle.centre, { radius: 4, className: "draft-vertex" }).addTo(this.drawLayer);
      if (this.circle.radius) {
        L.circle(this.circle.centre, { radius: this.circle.radius, color: "#dd6b20", className: "draft" }).addTo(this.drawLayer);
        document.getElementById("draw-hint").textContent = t("zones.hint.radius", { m: Math.round(this.circle.radius) });
      }
    }
  }

  async importFile(file) {
    if (!file) return;
    this.reset();
    const error = document.getElementById("zone-error");
    try {
      const json = JSON.parse(await file.text());
      let feature = json;
      if (json.type === "FeatureCollection") feature = json.features?.[0];
      else if (json.type !== "Feature") feature = { type: "Feature", geometry: json, properties: {} };
      if (!feature || !feature.geometry) throw new Error(t("zones.import.empty"));
      this.imported = feature;
      const p = feature.properties || {};
      if (p.crs) document.getElementById("zone-crs").value = p.crs;
      if (p.name) document.getElementById("zone-name").value = p.name;
      if (p.kind) document.getElementById("zone-kind").value = p.kind;
      const L = window.L;
      const crs = document.getElementById("zone-crs").value;
      const display = this.map.display;
      const toDisplay = ([lon, lat]) => {
        // Preview only: the file's coordinates go to the API unchanged, with their datum.
        if (crs === "gcj02") return L.latLng(...display.showGcj(lat, lon));
        return L.latLng(...display.show(lat, lon));
      };
      if (feature.geometry.type === "Point") {
        L.circle(toDisplay(feature.geometry.coordinates), { radius: p.radius_m || 50, color: "#dd6b20" }).addTo(this.drawLayer);
      } else {
        const layer = L.geoJSON(feature.geometry, { coordsToLatLng: toDisplay, style: { color: "#dd6b20" } }).addTo(this.drawLayer);
        const bounds = layer.getBounds();
        if (bounds.isValid()) this.map.fitBounds(bounds.pad(0.2), { animate: false });
      }
      document.getElementById("draw-hint").textContent = t("zones.import.loaded", { name: file.name });
    } catch (e) {
      error.textContent = t("zones.import.bad", { reason: e.message });
    }
  }

  // The Feature to create, from the drawing or the imported file and the form.
  feature() {
    const read = (latlng) => {
      const [lat, lon] = this.map.display.read(latlng.lat, latlng.lng);
      return [Number(lon.toFixed(7)), Number(lat.toFixed(7))];
    };
    let geometry;
    const properties = {};
    if (this.imported) {
      geometry = this.imported.geometry;
      if (this.imported.properties?.radius_m) properties.radius_m = this.imported.properties.radius_m;
      properties.crs = document.getElementById("zone-crs").value;
    } else if (this.mode === "polygon" && this.vertices.length) {
      const ring = this.vertices.map(read);
      ring.push(ring[0]);
      geometry = { type: "Polygon", coordinates: [ring] };
      properties.crs = "wgs84";
    } else if (this.mode === "circle" && this.circle) {
      geometry = { type: "Point", coordinates: read(this.circle.centre) };
      properties.radius_m = Math.round(this.circle.radius);
      properties.crs = "wgs84";
    } else {
      return null;
    }
    properties.name = document.getElementById("zone-name").value;
    properties.kind = document.getElementById("zone-kind").value;
    const days = [...document.querySelectorAll("#zone-days input:checked")].map((i) => i.value);
    const from = document.getElementById("zone-from").value;
    const to = document.getElementById("zone-to").value;
    if (days.length || from || to) properties.schedule = [{ days, from, to }];
    const assign = document.getElementById("zone-assign").value;
    if (assign === "everyone") properties.assigned_to = { scope: "everyone" };
    else if (assign.startsWith("level:")) properties.assigned_to = { scope: "level", level: assign.slice(6) };
    else if (assign.startsWith("person:")) properties.assigned_to = { scope: "persons", persons: [assign.slice(7)] };
    return { type: "Feature", geometry, properties };
  }

  async save() {
    const error = document.getElementById("zone-error");
    const status = document.getElementById("zone-status");
    error.textContent = "";
    status.textContent = "";
    const feature = this.feature();
    if (!feature) {
      error.textContent = t("zones.noshape");
      return;
    }
    try {
      const zone = await api.post("/zones", feature);
      status.textContent = t("zones.created", { name: zone.properties.name });
      this.reset();
      document.getElementById("zone-name").value = "";
      await this.context.reloadZones();
      this.renderList();
    } catch (e) {
      error.textContent = e.message;
    }
  }
}
