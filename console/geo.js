// Datum shifts for display and marker clustering. Positions and zones are WGS-84 in the API;
// tiles of a map published in China are drawn in GCJ-02, so with `tile_crs = gcj02` every
// coordinate is shifted before it is drawn (and shifted back when the operator draws a zone).

const A = 6378245.0;
const EE = 0.00669342162296594323;

function outsideChina(lat, lon) {
  return lon < 72.004 || lon > 137.8347 || lat < 0.8293 || lat > 55.8271;
}

function shiftLat(x, y) {
  let r = -100 + 2 * x + 3 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * Math.sqrt(Math.abs(x));
  r += ((20 * Math.sin(6 * x * Math.PI) + 20 * Math.sin(2 * x * Math.PI)) * 2) / 3;
  r += ((20 * Math.sin(y * Math.PI) + 40 * Math.sin((y / 3) * Math.PI)) * 2) / 3;
  r += ((160 * Math.sin((y / 12) * Math.PI) + 320 * Math.sin((y * Math.PI) / 30)) * 2) / 3;
  return r;
}

function shiftLon(x, y) {
  let r = 300 + x + 2 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * Math.sqrt(Math.abs(x));
  r += ((20 * Math.sin(6 * x * Math.PI) + 20 * Math.sin(2 * x * Math.PI)) * 2) / 3;
  r += ((20 * Math.sin(x * Math.PI) + 40 * Math.sin((x / 3) * Math.PI)) * 2) / 3;
  r += ((150 * Math.sin((x / 12) * Math.PI) + 300 * Math.sin((x / 30) * Math.PI)) * 2) / 3;
  return r;
}

// WGS-84 [lat, lon] to GCJ-02 [lat, lon]; unchanged outside China.
export function wgsToGcj(lat, lon) {
  if (outsideChina(lat, lon)) return [lat, lon];
  let dLat = shiftLat(lon - 105, lat - 35);
  let dLon = shiftLon(lon - 105, lat - 35);
  const radLat = (lat / 180) * Math.PI;
  let magic = Math.sin(radLat);
  magic = 1 - EE * magic * magic;
  const sqrtMagic = Math.sqrt(magic);
  dLat = (dLat * 180) / (((A * (1 - EE)) / (magic * sqrtMagic)) * Math.PI);
  dLon = (dLon * 180) / ((A / sqrtMagic) * Math.cos(radLat) * Math.PI);
  return [lat + dLat, lon + dLon];
}

// GCJ-02 [lat, lon] to WGS-84, by iterating the forward shift (within centimetres).
export function gcjToWgs(lat, lon) {
  if (outsideChina(lat, lon)) return [lat, lon];
  let wLat = lat;
  let wLon = lon;
  for (let i = 0; i < 5; i++) {
    const [gLat, gLon] = wgsToGcj(wLat, wLon);
    wLat -= gLat - lat;
    wLon -= gLon - lon;
  }
  return [wLat, wLon];
}

// The display datum: shows WGS-84 positions on tiles of `crs`, and reads drawn ones back.
export class Display {
  constructor(crs) {
    this.crs = crs || "wgs84";
  }
  // WGS-84 -> display.
  show(lat, lon) {
    return this.crs === "gcj02" ? wgsToGcj(lat, lon) : [lat, lon];
  }
  // Display -> WGS-84.
  read(lat, lon) {
    return this.crs === "gcj02" ? gcjToWgs(lat, lon) : [lat, lon];
  }
  // GCJ-02 (the reference boundaries' datum) -> display.
  showGcj(lat, lon) {
    return this.crs === "gcj02" ? [lat, lon] : gcjToWgs(lat, lon);
  }
}

// Groups points that would sit within `cellPixels` of one another at the map's zoom: each
// group is [{point, items}], drawn as one marker with a count when it holds more than one.
export function cluster(map, items, cellPixels = 48) {
  const cells = new Map();
  for (const item of items) {
    const p = map.project(item.latlng, map.getZoom());
    const key = `${Math.floor(p.x / cellPixels)}:${Math.floor(p.y / cellPixels)}`;
    let cell = cells.get(key);
    if (!cell) {
      cell = { items: [], x: 0, y: 0 };
      cells.set(key, cell);
    }
    cell.items.push(item);
    cell.x += p.x;
    cell.y += p.y;
  }
  return [...cells.values()].map((cell) => ({
    latlng: map.unproject([cell.x / cell.items.length, cell.y / cell.items.length], map.getZoom()),
    items: cell.items,
  }));
}
