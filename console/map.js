// The maps: Leaflet with the configured XYZ tiles, or, without a tile URL, a plain background
// with the reference boundaries (fixtures/zones, served with the console) and a scale bar.
// Zones are drawn from the API's GeoJSON (WGS-84), shifted to the tiles' datum.

import { Display } from "./geo.js";
import { t } from "./i18n.js";

const BOUNDARIES = [
  "boundaries/hunan-province-430000.gcj02.geojson",
  "boundaries/chenzhou-city-431000.gcj02.geojson",
  "boundaries/jiahe-county-431024.gcj02.geojson",
];
let boundaryCache = null;

export const ZONE_STYLES = {
  inclusion: { color: "#2f855a", weight: 2, fillOpacity: 0.08 },
  exclusion: { color: "#c53030", weight: 2, fillOpacity: 0.12, dashArray: "6 4" },
  shared: { color: "#6b46c1", weight: 2, fillOpacity: 0.06, dashArray: "2 4" },
};

export function zoneStyleName(zone) {
  const scope = zone.properties.assigned_to?.scope;
  if (scope === "everyone" || scope === "level") return "shared";
  return zone.properties.kind;
}

function loadBoundaries() {
  boundaryCache ??= Promise.all(
    BOUNDARIES.map((path) => fetch(path).then((r) => (r.ok ? r.json() : null)).catch(() => null)),
  );
  return boundaryCache;
}

// A map in `element`; settings = whoami.map.
export function createMap(element, settings) {
  const L = window.L;
  const display = new Display(settings.tile_crs);
  const map = L.map(element, { attributionControl: Boolean(settings.tile_url), zoomSnap: 0.5 });
  map.display = display;
  if (settings.tile_url) {
    L.tileLayer(settings.tile_url, { maxZoom: 19 }).addTo(map);
    if (map.attributionControl) map.attributionControl.setPrefix(false);
  } else {
    element.classList.add("plain");
    loadBoundaries().then((shapes) => {
      shapes.forEach((geometry, i) => {
        if (!geometry) return;
        L.geoJSON(geometry, {
          coordsToLatLng: ([lon, lat]) => L.latLng(...display.showGcj(lat, lon)),
          style: { color: "#718096", weight: 1 + i * 0.5, fill: false, interactive: false },
        }).addTo(map);
      });
    });
  }
  L.control.scale({ metric: true, imperial: false }).addTo(map);
  map.setView(display.show(25.57, 112.36), 11);
  return map;
}

// Draws zones (GeoJSON Features as the API returns them) on `map`; returns the layer group.
export function drawZones(map, zones) {
  const L = window.L;
  const group = L.layerGroup();
  for (const zone of zones) {
    const style = ZONE_STYLES[zoneStyleName(zone)] || ZONE_STYLES.inclusion;
    let layer;
    const geometry = zone.geometry;
    if (geometry.type === "Point") {
      const [lon, lat] = geometry.coordinates;
      layer = L.circle(map.display.show(lat, lon), { radius: zone.properties.radius_m, ...style });
    } else {
      layer = L.geoJSON(geometry, {
        coordsToLatLng: ([lon, lat]) => L.latLng(...map.display.show(lat, lon)),
        style,
      });
    }
    layer.bindTooltip(zoneLabel(zone));
    layer.addTo(group);
  }
  group.addTo(map);
  return group;
}

export function zoneLabel(zone) {
  const p = zone.properties;
  let text = `${p.name} · ${t(`kind.${p.kind}`)}`;
  if (p.assigned_to?.scope === "everyone") text += ` · ${t("zones.shared.everyone")}`;
  if (p.assigned_to?.scope === "level") text += ` · ${t("zones.shared.level", { level: t(`level.${p.assigned_to.level}`) })}`;
  if (p.schedule?.length) text += ` · ${scheduleText(p.schedule)}`;
  return text;
}

export function scheduleText(schedule) {
  return schedule
    .map((w) => `${w.days.map((d) => t(`day.${d}`)).join(",")} ${w.from}–${w.to}`)
    .join("; ");
}
