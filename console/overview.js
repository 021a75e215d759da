// The overview map and the persons list: every zone, and each person's latest position from
// the live positions stream, coloured by the state the server reports, clustered when close.

import { createMap, drawZones } from "./map.js";
import { cluster } from "./geo.js";
import { t, formatTime } from "./i18n.js";
import { el, clear } from "./dom.js";

export const STATES = ["compliant", "breach", "offline", "unsupervised"];

export class Overview {
  constructor(context) {
    this.context = context;
    this.map = null;
    this.zoneLayer = null;
    this.markers = null;
  }

  show() {
    const L = window.L;
    if (!this.map) {
      this.map = createMap(document.getElementById("overview-map"), this.context.settings.map);
      this.markers = L.layerGroup().addTo(this.map);
      this.map.on("zoomend moveend", () => this.drawPositions());
      const legend = document.getElementById("legend");
      for (const state of STATES) {
        legend.append(el("span", { class: `dot state-${state}` }), el("span", {}, t(`pstate.${state}`)));
      }
    }
    this.map.invalidateSize();
    this.drawZones();
    this.drawPositions();
  }

  drawZones() {
    if (!this.map) return;
    if (this.zoneLayer) this.zoneLayer.remove();
    this.zoneLayer = drawZones(this.map, [...this.context.zones.values()]);
  }

  drawPositions() {
    if (!this.map || !document.getElementById("page-map").offsetParent) return;
    const L = window.L;
    this.markers.clearLayers();
    const items = [...this.context.positions.values()].map((p) => ({
      position: p,
      latlng: L.latLng(...this.map.display.show(p.lat, p.lon)),
    }));
    for (const group of cluster(this.map, items)) {
      if (group.items.length === 1) {
        const p = group.items[0].position;
        const name = this.context.persons.get(p.person_id)?.name ?? p.person_id;
        L.circleMarker(group.latlng, { radius: 8, className: `position state-${p.state}`, weight: 2, fillOpacity: 0.9 })
          .bindTooltip(`${name} · ${t(`pstate.${p.state}`)} · ${formatTime(p.time)}`)
          .on("click", () => { location.hash = `#/person/${p.person_id}`; })
          .addTo(this.markers);
      } else {
        const worst = ["breach", "offline", "unsupervised"].find((s) => group.items.some((i) => i.position.state === s)) ?? "compliant";
        const icon = L.divIcon({ className: `cluster state-${worst}`, iconSize: [32, 32] });
        const marker = L.marker(group.latlng, { icon, title: String(group.items.length) }).addTo(this.markers);
        // Text set as text, never as HTML.
        marker.getElement().textContent = String(group.items.length);
        marker.on("click", () => this.map.setView(group.latlng, this.map.getZoom() + 2));
      }
    }
  }

  renderPersons() {
    const rows = document.getElementById("person-rows");
    clear(rows);
    for (const person of this.context.persons.values()) {
      const p = this.context.positions.get(person.id);
      rows.append(el("tr", { "data-person-id": person.id },
        el("td", {}, el("a", { href: `#/person/${person.id}` }, person.name)),
        el("td", {}, t(`level.${person.level}`)),
        el("td", {}, p ? el("span", { class: `badge state-${p.state}` }, t(`pstate.${p.state}`)) : ""),
        el("td", {}, p ? formatTime(p.time) : t("person.never")),
      ));
    }
  }
}
