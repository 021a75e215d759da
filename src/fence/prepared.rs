//! One zone prepared for fast exact questions: "is this point inside?", "how far is it from the
//! boundary, in metres?" and "is it inside or outside by more than `r` metres?".
//!
//! Role in the pipeline: [`ZoneCatalog`](super::ZoneCatalog) prepares every zone once when it is
//! built (and reuses the preparation across rebuilds); the engine then asks
//! [`PreparedZone::classify`] for each fix and each of the person's zones. Nothing here keeps
//! per-person state or knows about time; it is geometry only.
//!
//! In: a [`Zone`] (WGS-84). Out: [`Placement`]s, booleans and distances in metres.
//!
//! # How a polygon zone is prepared
//!
//! All rings of all parts become one list of edges; a point is inside when a ray from it crosses
//! an odd number of edges (the even-odd rule, which respects holes and multiple parts of a valid
//! MultiPolygon). Zones with few edges ([`SCAN_MAX_EDGES`]) are tested by scanning every edge.
//! Bigger zones get two structures:
//!
//! * **A uniform grid over the bounding box** with about [`CELLS_PER_EDGE`] cells per edge. Each
//!   cell is either *boundary* (some edge touches it, with a 10⁻⁹° margin; the cell keeps the
//!   list of those edges) or wholly inside or wholly outside (decided once at build time by a
//!   scanline through the cell centre). Non-boundary cells also keep their Chebyshev distance, in
//!   cells, to the nearest boundary cell, which gives a guaranteed lower bound on the distance to
//!   the boundary in metres. A point-in-polygon test is then one cell lookup for most points; in
//!   a boundary cell the ray is walked right only through the boundary cells of that row, counting
//!   crossings that fall inside each cell's own x-range (so an edge listed in several cells is
//!   counted once), until it reaches a non-boundary cell whose status closes the count.
//! * **An R-tree of the edges** (rstar, bulk-loaded) for distances: the edges near a point are
//!   found by an envelope query, and the nearest edge by a growing envelope query.
//!
//! The common case of the engine, a fix far from the boundary, is one cell lookup (or one
//! bounding-box test when the fix is outside the box); only fixes within a few cells of the
//! boundary pay for an R-tree query, and no path scans all vertices.
//!
//! # Points exactly on the boundary
//!
//! [`PreparedZone::classify`] with any radius, including 0, returns [`Placement::Uncertain`] for
//! a point whose distance to the boundary is not more than the radius (plus
//! [`BOUNDARY_TOLERANCE_M`], one micrometre, which absorbs the rounding of the distance), so a
//! point exactly on the boundary is uncertain even with accuracy 0. [`PreparedZone::contains`]
//! answers a plain yes or no; for a point exactly on an edge it returns whichever side the
//! half-open crossing rule gives (stable for a given point, but not meaningful), which is why the
//! engine never uses it alone.

use rstar::primitives::Line;
use rstar::{RTree, AABB};

use super::geodesy::{circle_envelope, ellipsoidal_distance_m, LocalScale};
use crate::model::{Zone, ZoneId, ZoneKind, ZoneShape};

/// Zones with at most this many edges are tested by scanning all of them (no grid, no R-tree).
pub const SCAN_MAX_EDGES: usize = 32;
/// Grid cells per edge for bigger zones: more cells mean fewer points in boundary cells and
/// fewer edges per boundary cell, at 8 bytes a cell.
pub const CELLS_PER_EDGE: usize = 4;
/// Upper bound on the cells of one zone's grid (32 MiB of cells).
pub const MAX_GRID_CELLS: usize = 1 << 22;
/// Budget of edge copies in a grid, per edge (plus a fixed 65,536): a grid needing more is
/// coarsened (cells ÷ 4) until it fits, so shapes with long edges cannot blow up memory.
pub const EDGE_COPIES_PER_EDGE: usize = 64;
/// A radius box covering at most this many grid cells is searched for nearby edges cell by
/// cell; a bigger one goes to the edge R-tree.
pub const NEAR_QUERY_MAX_CELLS: usize = 16;
/// Margin, degrees, by which edges are widened when assigned to grid cells (about 0.1 mm); far
/// above the rounding error of coordinates below 180°.
const GRID_MARGIN_DEG: f64 = 1e-9;

/// Distances up to this much beyond the accuracy radius still count as "within" it, metres
/// (1 µm): the rounding of a distance computed for a point exactly on an edge.
pub const BOUNDARY_TOLERANCE_M: f64 = 1e-6;

/// Where a point stands relative to a zone, given an accuracy radius `r`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Placement {
    /// Inside the zone by more than `r` metres.
    Inside,
    /// Outside the zone by more than `r` metres.
    Outside,
    /// Within `r` metres of the boundary (or the zone is unusable): no conclusion.
    Uncertain,
}

/// A zone with its geometry prepared for fast exact tests. Immutable; shared as
/// `Arc<PreparedZone>` between catalog generations.
#[derive(Debug)]
pub struct PreparedZone {
    zone: Zone,
    /// `[min_lon, min_lat, max_lon, max_lat]`, degrees.
    envelope: [f64; 4],
    shape: Shape,
    vertices: usize,
}

#[derive(Debug)]
enum Shape {
    /// Few edges: scan them all.
    Scan(Vec<[f64; 4]>),
    /// Many edges: grid for containment, R-tree for distances.
    Indexed(Box<Indexed>),
    Circle {
        lon: f64,
        lat: f64,
        radius_m: f64,
    },
    /// No usable geometry (no edges, or non-finite coordinates): every question is uncertain.
    Unusable,
}

#[derive(Debug)]
struct Indexed {
    grid: Grid,
    segments: RTree<Line<[f64; 2]>>,
    /// A first search radius for the nearest edge, metres (about one cell).
    first_search_m: f64,
}

impl PreparedZone {
    /// Prepares a zone. Never fails: a zone without usable geometry (no rings, non-finite
    /// coordinates, a circle with a radius that is not a positive number) is kept but answers
    /// [`Placement::Uncertain`] to everything; see [`PreparedZone::is_usable`].
    pub fn new(zone: Zone) -> PreparedZone {
        let (shape, envelope, vertices) = match &zone.shape {
            ZoneShape::Circle { center, radius_m } => {
                let (lon, lat, r) = (center.x(), center.y(), *radius_m);
                if lon.is_finite() && lat.is_finite() && r.is_finite() && r > 0.0 {
                    (
                        Shape::Circle {
                            lon,
                            lat,
                            radius_m: r,
                        },
                        circle_envelope(lon, lat, r),
                        1,
                    )
                } else {
                    (Shape::Unusable, [f64::NAN; 4], 1)
                }
            }
            ZoneShape::Area(mp) => prepare_area(mp),
        };
        PreparedZone {
            zone,
            envelope,
            shape,
            vertices,
        }
    }

    /// The zone as given.
    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    /// The zone's id.
    pub fn id(&self) -> ZoneId {
        self.zone.id
    }

    /// Inclusion or exclusion.
    pub fn kind(&self) -> ZoneKind {
        self.zone.kind
    }

    /// Whether the geometry could be prepared; an unusable zone answers every question with
    /// [`Placement::Uncertain`] (and `contains` with `false`).
    pub fn is_usable(&self) -> bool {
        !matches!(self.shape, Shape::Unusable)
    }

    /// Bounding box `[min_lon, min_lat, max_lon, max_lat]` in degrees (NaN when unusable). For
    /// a circle, the box of every point within its radius.
    pub fn envelope(&self) -> [f64; 4] {
        self.envelope
    }

    /// Number of vertices (positions, counting each ring's closing one) of the geometry.
    pub fn vertex_count(&self) -> usize {
        self.vertices
    }

    /// Whether the point is inside the zone (accuracy 0). Points exactly on the boundary get an
    /// arbitrary but stable answer; see the module docs. NaN coordinates are never inside.
    pub fn contains(&self, lon: f64, lat: f64) -> bool {
        match &self.shape {
            Shape::Scan(edges) => {
                in_envelope(&self.envelope, lon, lat) && scan_contains(edges, lon, lat)
            }
            Shape::Indexed(ix) => ix.grid.contains(lon, lat),
            Shape::Circle {
                lon: clon,
                lat: clat,
                radius_m,
            } => ellipsoidal_distance_m(*clon, *clat, lon, lat) < *radius_m,
            Shape::Unusable => false,
        }
    }

    /// Signed distance in metres from the point to the zone boundary: positive inside, negative
    /// outside. `NaN` for an unusable zone or a non-finite point.
    pub fn signed_distance_m(&self, lon: f64, lat: f64) -> f64 {
        if !(lon.is_finite() && lat.is_finite()) {
            return f64::NAN;
        }
        let scale = LocalScale::at(lat);
        let d = match &self.shape {
            Shape::Scan(edges) => edges
                .iter()
                .map(|e| scale.distance_to_segment_m(lon, lat, e))
                .fold(f64::INFINITY, f64::min),
            Shape::Indexed(ix) => ix.nearest_edge_m(&scale, &self.envelope, lon, lat),
            Shape::Circle {
                lon: clon,
                lat: clat,
                radius_m,
            } => return radius_m - ellipsoidal_distance_m(*clon, *clat, lon, lat),
            Shape::Unusable => return f64::NAN,
        };
        if self.contains(lon, lat) {
            d
        } else {
            -d
        }
    }

    /// Classifies the point given an accuracy radius of `radius_m` metres: [`Placement::Inside`]
    /// when inside by more than the radius, [`Placement::Outside`] when outside by more than the
    /// radius, [`Placement::Uncertain`] otherwise (also for a non-finite point or radius, and for
    /// an unusable zone). A negative radius counts as 0.
    pub fn classify(&self, lon: f64, lat: f64, radius_m: f64) -> Placement {
        if !(lon.is_finite() && lat.is_finite() && radius_m.is_finite()) {
            return Placement::Uncertain;
        }
        // A point within a micrometre of the boundary is on it, whatever the radius.
        let r = radius_m.max(0.0) + BOUNDARY_TOLERANCE_M;
        match &self.shape {
            Shape::Circle {
                lon: clon,
                lat: clat,
                radius_m: zr,
            } => {
                let d = ellipsoidal_distance_m(*clon, *clat, lon, lat);
                if d - zr > r {
                    Placement::Outside
                } else if zr - d > r {
                    Placement::Inside
                } else {
                    Placement::Uncertain
                }
            }
            Shape::Unusable => Placement::Uncertain,
            Shape::Scan(edges) => {
                let scale = LocalScale::at(lat);
                if scale.distance_to_rect_m(lon, lat, &self.envelope) > r {
                    return Placement::Outside;
                }
                if edges
                    .iter()
                    .any(|e| scale.distance_to_segment_m(lon, lat, e) <= r)
                {
                    return Placement::Uncertain;
                }
                side(scan_contains(edges, lon, lat))
            }
            Shape::Indexed(ix) => {
                let within_box = in_envelope(&self.envelope, lon, lat);
                if within_box {
                    if let Some(inside) = ix.grid.clear_status(lon, lat, r) {
                        // Far enough from every boundary cell: decided by the cell alone.
                        return side(inside);
                    }
                }
                let scale = LocalScale::at(lat);
                if !within_box && scale.distance_to_rect_m(lon, lat, &self.envelope) > r {
                    return Placement::Outside;
                }
                let near = ix
                    .grid
                    .any_edge_within(&scale, lon, lat, r)
                    .unwrap_or_else(|| ix.any_edge_within(&scale, lon, lat, r));
                if near {
                    Placement::Uncertain
                } else {
                    side(ix.grid.contains(lon, lat))
                }
            }
        }
    }
}

fn side(inside: bool) -> Placement {
    if inside {
        Placement::Inside
    } else {
        Placement::Outside
    }
}

#[inline]
fn in_envelope(env: &[f64; 4], lon: f64, lat: f64) -> bool {
    lon >= env[0] && lon <= env[2] && lat >= env[1] && lat <= env[3]
}

/// Whether the edge crosses the horizontal line through `y` under the half-open rule (one
/// endpoint strictly above, the other not), and where; `t` stays in [0, 1] so the crossing lies
/// on the edge even when the edge is nearly horizontal.
#[inline(always)]
fn crossing_x(e: &[f64; 4], y: f64) -> Option<f64> {
    if (e[1] > y) != (e[3] > y) {
        let t = (y - e[1]) / (e[3] - e[1]);
        Some(e[0] + t * (e[2] - e[0]))
    } else {
        None
    }
}

fn scan_contains(edges: &[[f64; 4]], lon: f64, lat: f64) -> bool {
    let mut inside = false;
    for e in edges {
        if let Some(x) = crossing_x(e, lat) {
            if x > lon {
                inside = !inside;
            }
        }
    }
    inside
}

/// Edges, envelope and vertex count of a MultiPolygon; `None` when a coordinate is not finite.
fn area_edges(mp: &geo::MultiPolygon<f64>) -> Option<(Vec<[f64; 4]>, [f64; 4], usize)> {
    let mut edges = Vec::new();
    let mut env = [
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    ];
    let mut vertices = 0;
    for polygon in &mp.0 {
        for ring in std::iter::once(polygon.exterior()).chain(polygon.interiors()) {
            let coords = &ring.0;
            vertices += coords.len();
            for c in coords {
                if !(c.x.is_finite() && c.y.is_finite()) {
                    return None;
                }
                env = [
                    env[0].min(c.x),
                    env[1].min(c.y),
                    env[2].max(c.x),
                    env[3].max(c.y),
                ];
            }
            // Consecutive positions, plus the closing edge if the ring was left open.
            let closing = match (coords.first(), coords.last()) {
                (Some(f), Some(l)) if f != l => Some((*l, *f)),
                _ => None,
            };
            let pairs = coords.windows(2).map(|w| (w[0], w[1])).chain(closing);
            for (a, b) in pairs {
                if a != b {
                    edges.push([a.x, a.y, b.x, b.y]);
                }
            }
        }
    }
    Some((edges, env, vertices))
}

fn prepare_area(mp: &geo::MultiPolygon<f64>) -> (Shape, [f64; 4], usize) {
    let Some((edges, env, vertices)) = area_edges(mp) else {
        return (Shape::Unusable, [f64::NAN; 4], 0);
    };
    if edges.len() < 3 {
        return (Shape::Unusable, [f64::NAN; 4], vertices);
    }
    if edges.len() <= SCAN_MAX_EDGES {
        return (Shape::Scan(edges), env, vertices);
    }
    let grid = Grid::build(&edges, env);
    let first_search_m = {
        let scale = LocalScale::min_over(env[1], env[3]);
        (grid.cw * scale.m_per_deg_lon)
            .max(grid.ch * scale.m_per_deg_lat)
            .max(1.0)
    };
    let segments = RTree::bulk_load(
        edges
            .iter()
            .map(|e| Line::new([e[0], e[1]], [e[2], e[3]]))
            .collect(),
    );
    let indexed = Indexed {
        grid,
        segments,
        first_search_m,
    };
    (Shape::Indexed(Box::new(indexed)), env, vertices)
}

impl Indexed {
    fn query_box(scale: &LocalScale, lon: f64, lat: f64, m: f64) -> AABB<[f64; 2]> {
        let (hx, hy) = scale.degrees(m);
        AABB::from_corners([lon - hx, lat - hy], [lon + hx, lat + hy])
    }

    fn seg(line: &Line<[f64; 2]>) -> [f64; 4] {
        [line.from[0], line.from[1], line.to[0], line.to[1]]
    }

    /// Whether some edge is within `r` metres of the point.
    fn any_edge_within(&self, scale: &LocalScale, lon: f64, lat: f64, r: f64) -> bool {
        let query = Self::query_box(scale, lon, lat, r);
        self.segments
            .locate_in_envelope_intersecting(&query)
            .any(|l| scale.distance_to_segment_m(lon, lat, &Self::seg(l)) <= r)
    }

    /// Distance in metres to the nearest edge, by envelope queries of growing size.
    fn nearest_edge_m(&self, scale: &LocalScale, env: &[f64; 4], lon: f64, lat: f64) -> f64 {
        let min_in = |m: f64| {
            self.segments
                .locate_in_envelope_intersecting(&Self::query_box(scale, lon, lat, m))
                .map(|l| scale.distance_to_segment_m(lon, lat, &Self::seg(l)))
                .fold(f64::INFINITY, f64::min)
        };
        // Beyond this radius the box holds the whole zone.
        let corners = [
            (env[0], env[1]),
            (env[0], env[3]),
            (env[2], env[1]),
            (env[2], env[3]),
        ];
        let whole = corners
            .iter()
            .map(|&(x, y)| scale.distance_to_segment_m(lon, lat, &[x, y, x, y]))
            .fold(0.0, f64::max);
        let mut m = self.first_search_m;
        loop {
            let d = min_in(m);
            if d <= m {
                // Every edge nearer than `m` is in the box, so the nearest one was seen.
                return d;
            }
            if d.is_finite() {
                // An edge at `d` exists; every edge nearer than it is in the box of size `d`.
                return min_in(d);
            }
            if m >= whole {
                return min_in(whole * 2.0 + 1.0);
            }
            m *= 4.0;
        }
    }
}

/// A uniform grid over a zone's bounding box; see the module docs.
#[derive(Debug)]
struct Grid {
    x0: f64,
    y0: f64,
    cw: f64,
    ch: f64,
    inv_cw: f64,
    inv_ch: f64,
    nx: usize,
    ny: usize,
    env: [f64; 4],
    cells: Vec<Cell>,
    /// Edges of boundary cells, cell after cell (an edge appears once per cell it touches).
    edges: Vec<[f64; 4]>,
    /// Metres per degree guaranteed anywhere in the box (the smallest on each axis).
    min_scale: LocalScale,
}

/// A grid cell: `tag` bit 0 = boundary, bit 1 = inside (non-boundary cells); the bits above
/// hold the number of edges (boundary cells) or the Chebyshev distance in cells to the nearest
/// boundary cell (other cells). `start` indexes the cell's first edge in `Grid::edges`.
#[derive(Debug, Clone, Copy, Default)]
struct Cell {
    start: u32,
    tag: u32,
}

const BOUNDARY: u32 = 1;
const INSIDE: u32 = 2;
const TAG_SHIFT: u32 = 2;
const TAG_MAX: u32 = u32::MAX >> TAG_SHIFT;

impl Grid {
    fn build(edges: &[[f64; 4]], env: [f64; 4]) -> Grid {
        let width = (env[2] - env[0]).max(1e-9);
        let height = (env[3] - env[1]).max(1e-9);
        let mut target = edges
            .len()
            .saturating_mul(CELLS_PER_EDGE)
            .clamp(64, MAX_GRID_CELLS);
        // Long edges are copied into every cell they cross; coarsen until the copies fit.
        let budget = edges.len().saturating_mul(EDGE_COPIES_PER_EDGE) + 65_536;
        let scale = LocalScale::min_over(env[1], env[3]);
        loop {
            let nx = (((target as f64) * width / height).sqrt().round() as usize).clamp(1, 1 << 16);
            let ny = ((target as f64 / nx as f64).ceil() as usize).clamp(1, 1 << 16);
            let (cw, ch) = (width / nx as f64, height / ny as f64);
            let mut grid = Grid {
                x0: env[0],
                y0: env[1],
                cw,
                ch,
                inv_cw: 1.0 / cw,
                inv_ch: 1.0 / ch,
                nx,
                ny,
                env,
                cells: vec![Cell::default(); nx * ny],
                edges: Vec::new(),
                min_scale: scale,
            };
            let limit = if target <= 64 { usize::MAX } else { budget };
            if grid.assign_edges(edges, limit) {
                grid.classify_free_cells(edges);
                grid.distance_transform();
                return grid;
            }
            target /= 4;
        }
    }

    #[inline(always)]
    fn col(&self, x: f64) -> usize {
        // `as` saturates (NaN becomes 0); then clamp to the grid.
        (((x - self.x0) * self.inv_cw).floor() as isize).clamp(0, self.nx as isize - 1) as usize
    }

    #[inline(always)]
    fn row(&self, y: f64) -> usize {
        (((y - self.y0) * self.inv_ch).floor() as isize).clamp(0, self.ny as isize - 1) as usize
    }

    #[inline(always)]
    fn x_lo(&self, col: usize) -> f64 {
        self.x0 + col as f64 * self.cw
    }

    #[inline(always)]
    fn y_lo(&self, row: usize) -> f64 {
        self.y0 + row as f64 * self.ch
    }

    /// Calls `f` with the index of every cell the edge touches (widened by the margin).
    fn for_each_cell(&self, e: &[f64; 4], mut f: impl FnMut(usize)) {
        let (ymin, ymax) = (e[1].min(e[3]), e[1].max(e[3]));
        let (exmin, exmax) = (e[0].min(e[2]), e[0].max(e[2]));
        let (r0, r1) = (
            self.row(ymin - GRID_MARGIN_DEG),
            self.row(ymax + GRID_MARGIN_DEG),
        );
        for r in r0..=r1 {
            // The part of the edge inside this row's band (widened), as an x-range.
            let band_lo = (self.y_lo(r) - GRID_MARGIN_DEG).max(ymin);
            let band_hi = (self.y_lo(r + 1) + GRID_MARGIN_DEG).min(ymax);
            let (xa, xb) = if e[1] == e[3] || band_lo > band_hi {
                (exmin, exmax)
            } else {
                let at = |y: f64| {
                    let t = ((y - e[1]) / (e[3] - e[1])).clamp(0.0, 1.0);
                    e[0] + t * (e[2] - e[0])
                };
                let (p, q) = (at(band_lo), at(band_hi));
                (p.min(q).max(exmin), p.max(q).min(exmax))
            };
            let (c0, c1) = (
                self.col(xa - GRID_MARGIN_DEG),
                self.col(xb + GRID_MARGIN_DEG),
            );
            for c in c0..=c1 {
                f(r * self.nx + c);
            }
        }
    }

    /// Lists every edge in the cells it touches; `false` (and nothing stored) when that would
    /// take more than `budget` copies.
    fn assign_edges(&mut self, edges: &[[f64; 4]], budget: usize) -> bool {
        let mut counts = vec![0u32; self.cells.len()];
        let mut total = 0usize;
        for e in edges {
            self.for_each_cell(e, |i| {
                counts[i] = counts[i].saturating_add(1);
                total += 1;
            });
        }
        if total > budget {
            return false;
        }
        let mut start = 0u32;
        for (cell, &n) in self.cells.iter_mut().zip(&counts) {
            cell.start = start;
            if n > 0 {
                cell.tag = BOUNDARY | (n.min(TAG_MAX) << TAG_SHIFT);
            }
            start = start.saturating_add(n);
        }
        let mut filled = vec![[0.0f64; 4]; start as usize];
        let mut next: Vec<u32> = self.cells.iter().map(|c| c.start).collect();
        for e in edges {
            self.for_each_cell(e, |i| {
                filled[next[i] as usize] = *e;
                next[i] += 1;
            });
        }
        self.edges = filled;
        true
    }

    /// Decides inside/outside for every non-boundary cell with a scanline through the centre of
    /// each row (no edge comes near those cell centres, so the count is robust).
    fn classify_free_cells(&mut self, edges: &[[f64; 4]]) {
        let mut crossings: Vec<Vec<f64>> = vec![Vec::new(); self.ny];
        for e in edges {
            let (r0, r1) = (self.row(e[1].min(e[3])), self.row(e[1].max(e[3])));
            for (r, row) in crossings.iter_mut().enumerate().take(r1 + 1).skip(r0) {
                let yc = self.y_lo(r) + 0.5 * self.ch;
                if let Some(x) = crossing_x(e, yc) {
                    row.push(x);
                }
            }
        }
        for (r, row) in crossings.iter_mut().enumerate() {
            row.sort_unstable_by(f64::total_cmp);
            // Walk right to left: the number of crossings right of the cell centre.
            let mut right = row.len();
            for c in (0..self.nx).rev() {
                let xc = self.x_lo(c) + 0.5 * self.cw;
                while right > 0 && row[right - 1] > xc {
                    right -= 1;
                }
                let cell = &mut self.cells[r * self.nx + c];
                if cell.tag & BOUNDARY == 0 && (row.len() - right) % 2 == 1 {
                    cell.tag |= INSIDE;
                }
            }
        }
    }

    /// Chebyshev distance, in cells, from every non-boundary cell to the nearest boundary cell
    /// (two passes of an 8-neighbour chamfer, exact for this metric).
    fn distance_transform(&mut self) {
        let (nx, ny) = (self.nx, self.ny);
        let mut dist: Vec<u32> = self
            .cells
            .iter()
            .map(|c| if c.tag & BOUNDARY != 0 { 0 } else { TAG_MAX })
            .collect();
        for r in 0..ny {
            for c in 0..nx {
                let mut d = dist[r * nx + c];
                if c > 0 {
                    d = d.min(dist[r * nx + c - 1].saturating_add(1));
                }
                if r > 0 {
                    for cc in c.saturating_sub(1)..=(c + 1).min(nx - 1) {
                        d = d.min(dist[(r - 1) * nx + cc].saturating_add(1));
                    }
                }
                dist[r * nx + c] = d;
            }
        }
        for r in (0..ny).rev() {
            for c in (0..nx).rev() {
                let mut d = dist[r * nx + c];
                if c + 1 < nx {
                    d = d.min(dist[r * nx + c + 1].saturating_add(1));
                }
                if r + 1 < ny {
                    for cc in c.saturating_sub(1)..=(c + 1).min(nx - 1) {
                        d = d.min(dist[(r + 1) * nx + cc].saturating_add(1));
                    }
                }
                dist[r * nx + c] = d;
            }
        }
        for (cell, d) in self.cells.iter_mut().zip(dist) {
            if cell.tag & BOUNDARY == 0 {
                cell.tag = (cell.tag & INSIDE) | (d.min(TAG_MAX) << TAG_SHIFT);
            }
        }
    }

    /// `Some(inside)` when the point's cell is not a boundary cell and the point is guaranteed
    /// to be more than `r` metres from the boundary; `None` when the exact test is needed.
    ///
    /// The nearest boundary cell is `k` cells away (Chebyshev), so on one axis the boundary is
    /// at least `k - 1` whole cells plus the point's distance to its own cell's side away.
    #[inline]
    fn clear_status(&self, lon: f64, lat: f64, r: f64) -> Option<bool> {
        let (row, col) = (self.row(lat), self.col(lon));
        let cell = self.cells[row * self.nx + col];
        if cell.tag & BOUNDARY != 0 {
            return None;
        }
        let whole = f64::from((cell.tag >> TAG_SHIFT).saturating_sub(1));
        let to_side_x = (lon - self.x_lo(col))
            .min(self.x_lo(col + 1) - lon)
            .max(0.0);
        let to_side_y = (lat - self.y_lo(row))
            .min(self.y_lo(row + 1) - lat)
            .max(0.0);
        let clear_x = (whole * self.cw + to_side_x) * self.min_scale.m_per_deg_lon;
        let clear_y = (whole * self.ch + to_side_y) * self.min_scale.m_per_deg_lat;
        (clear_x.min(clear_y) > r).then_some(cell.tag & INSIDE != 0)
    }

    /// Whether some edge is within `r` metres of the point, looking only at the grid cells the
    /// radius box covers; `None` when that is more than [`NEAR_QUERY_MAX_CELLS`] cells.
    #[inline]
    fn any_edge_within(&self, scale: &LocalScale, lon: f64, lat: f64, r: f64) -> Option<bool> {
        let (hx, hy) = scale.degrees(r);
        let (c0, c1) = (self.col(lon - hx), self.col(lon + hx));
        let (r0, r1) = (self.row(lat - hy), self.row(lat + hy));
        if (c1 - c0 + 1) * (r1 - r0 + 1) > NEAR_QUERY_MAX_CELLS {
            return None;
        }
        for row in r0..=r1 {
            for cell in &self.cells[row * self.nx + c0..=row * self.nx + c1] {
                if cell.tag & BOUNDARY == 0 {
                    continue;
                }
                let start = cell.start as usize;
                let count = (cell.tag >> TAG_SHIFT) as usize;
                if self.edges[start..start + count]
                    .iter()
                    .any(|e| scale.distance_to_segment_m(lon, lat, e) <= r)
                {
                    return Some(true);
                }
            }
        }
        Some(false)
    }

    /// Even-odd point-in-polygon test; see the module docs for the walk through boundary cells.
    #[inline]
    fn contains(&self, lon: f64, lat: f64) -> bool {
        if !in_envelope(&self.env, lon, lat) {
            return false;
        }
        let row = self.row(lat);
        let base = row * self.nx;
        let mut c = self.col(lon);
        let first = self.cells[base + c];
        if first.tag & BOUNDARY == 0 {
            return first.tag & INSIDE != 0;
        }
        let mut odd = false;
        let mut lo = f64::NEG_INFINITY;
        loop {
            let cell = self.cells[base + c];
            if cell.tag & BOUNDARY == 0 {
                // A free cell: its status holds at its left side, where the walk entered.
                return odd ^ (cell.tag & INSIDE != 0);
            }
            let hi = if c + 1 < self.nx {
                self.x_lo(c + 1)
            } else {
                f64::INFINITY
            };
            let start = cell.start as usize;
            let count = (cell.tag >> TAG_SHIFT) as usize;
            for e in &self.edges[start..start + count] {
                if let Some(x) = crossing_x(e, lat) {
                    if x > lon && x >= lo && x < hi {
                        odd = !odd;
                    }
                }
            }
            c += 1;
            if c == self.nx {
                // Past the box: outside, so the parity alone decides.
                return odd;
            }
            lo = hi;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Zone;
    use geo::{Contains, Coord, LineString, MultiPolygon, Polygon};
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

    fn zone(shape: ZoneShape) -> Zone {
        Zone {
            id: uuid::Uuid::nil(),
            name: "test".into(),
            kind: ZoneKind::Inclusion,
            shape,
            wifi: Default::default(),
            scope: Default::default(),
            schedule: None,
        }
    }

    fn square(x0: f64, y0: f64, side: f64) -> Vec<Coord<f64>> {
        crate::fence::fixtures::rectangle(x0, y0, side, side)
    }

    /// A ring with `n` vertices approximating a circle, with a small wobble so it has many
    /// distinct edges (forces the indexed path).
    fn ring(cx: f64, cy: f64, r: f64, n: usize, wobble: f64) -> Vec<Coord<f64>> {
        let mut v: Vec<Coord<f64>> = (0..n)
            .map(|i| {
                let a = i as f64 / n as f64 * std::f64::consts::TAU;
                let rr = r * (1.0 + wobble * (7.0 * a).sin());
                Coord {
                    x: cx + rr * a.cos(),
                    y: cy + rr * a.sin(),
                }
            })
            .collect();
        v.push(v[0]);
        v
    }

    fn area(polys: Vec<Polygon<f64>>) -> PreparedZone {
        PreparedZone::new(zone(ZoneShape::Area(MultiPolygon(polys))))
    }

    #[test]
    fn point_in_the_hole_is_outside() {
        for n in [8, 400] {
            let outer = LineString(ring(112.0, 25.0, 0.1, n, 0.0));
            let hole = LineString(ring(112.0, 25.0, 0.03, n, 0.0));
            let z = area(vec![Polygon::new(outer, vec![hole])]);
            assert!(!z.contains(112.0, 25.0), "{n}: centre is in the hole");
            assert!(z.contains(112.06, 25.0), "{n}: between hole and exterior");
            assert!(!z.contains(112.2, 25.0), "{n}: outside");
            assert_eq!(z.classify(112.0, 25.0, 50.0), Placement::Outside);
            assert_eq!(z.classify(112.065, 25.0, 50.0), Placement::Inside);
            // About 2.8 km from the hole's edge, so uncertain with a 5 km radius.
            assert_eq!(z.classify(112.0, 25.0, 5_000.0), Placement::Uncertain);
            assert!(z.signed_distance_m(112.0, 25.0) < -2_500.0);
        }
    }

    #[test]
    fn multipolygon_inside_either_part() {
        for n in [5, 200] {
            let a = Polygon::new(LineString(ring(112.0, 25.0, 0.05, n, 0.0)), vec![]);
            let b = Polygon::new(LineString(ring(113.0, 25.0, 0.05, n, 0.0)), vec![]);
            let z = area(vec![a, b]);
            assert!(z.contains(112.0, 25.0));
            assert!(z.contains(113.0, 25.0));
            assert!(!z.contains(112.5, 25.0));
            assert_eq!(z.classify(113.0, 25.0, 100.0), Placement::Inside);
            assert_eq!(z.classify(112.5, 25.0, 100.0), Placement::Outside);
        }
    }

    #[test]
    fn circle_uses_the_ellipsoidal_distance() {
        let z = PreparedZone::new(zone(ZoneShape::Circle {
            center: geo::Point::new(112.0, 25.0),
            radius_m: 500.0,
        }));
        let scale = LocalScale::at(25.0);
        let (_, dlat) = scale.degrees(1.0);
        // 400 m north: inside by 100 m.
        assert_eq!(
            z.classify(112.0, 25.0 + 400.0 * dlat, 50.0),
            Placement::Inside
        );
        assert_eq!(
            z.classify(112.0, 25.0 + 400.0 * dlat, 150.0),
            Placement::Uncertain
        );
        // 700 m north: outside by 200 m.
        assert_eq!(
            z.classify(112.0, 25.0 + 700.0 * dlat, 150.0),
            Placement::Outside
        );
        assert_eq!(
            z.classify(112.0, 25.0 + 700.0 * dlat, 250.0),
            Placement::Uncertain
        );
        assert!(z.contains(112.0, 25.0));
        assert!((z.signed_distance_m(112.0, 25.0) - 500.0).abs() < 1e-9);
        let env = z.envelope();
        assert!(env[0] < 112.0 && env[2] > 112.0);
    }

    /// The point `distance_m` from `(lon, lat)` along `azimuth_deg`, on the WGS-84 ellipsoid
    /// (Karney's direct geodesic, the reference every distance here is held to).
    fn geodesic_destination(lon: f64, lat: f64, azimuth_deg: f64, distance_m: f64) -> (f64, f64) {
        use geo::Destination;
        let p = geo::Geodesic.destination(geo::Point::new(lon, lat), azimuth_deg, distance_m);
        (p.x(), p.y())
    }

    #[test]
    fn circles_are_measured_on_the_ellipsoid_to_a_tenth_of_a_metre_per_kilometre() {
        // Circles of 500 m to 50 km at the latitudes of the boundaries (25-30 N) and further
        // north; points placed by the geodesic 10 m outside and 10 m inside the circle, in
        // every direction, must be judged 10 m out (within 0.1 m per km of radius).
        for &(lon, lat) in &[(112.4, 25.6), (113.0, 28.2), (2.44, 48.83), (24.9, 60.2)] {
            for &radius in &[500.0, 5_000.0, 20_000.0, 50_000.0] {
                let z = PreparedZone::new(zone(ZoneShape::Circle {
                    center: geo::Point::new(lon, lat),
                    radius_m: radius,
                }));
                let tolerance = 0.1 * radius / 1_000.0;
                for k in 0..24 {
                    let azimuth = f64::from(k) * 15.0;
                    for offset in [10.0, -10.0] {
                        let (plon, plat) = geodesic_destination(lon, lat, azimuth, radius + offset);
                        let judged = -z.signed_distance_m(plon, plat);
                        assert!(
                            (judged - offset).abs() < tolerance,
                            "{lat} N, r {radius} m, azimuth {azimuth}: {judged} m, expected {offset}"
                        );
                        let env = z.envelope();
                        if offset < 0.0 {
                            assert!(in_envelope(&env, plon, plat), "envelope holds the circle");
                            assert!(z.contains(plon, plat));
                        } else {
                            assert!(!z.contains(plon, plat));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn point_exactly_on_the_boundary_is_uncertain_even_with_accuracy_zero() {
        for n in [4, 100] {
            let sq = if n == 4 {
                square(112.0, 25.0, 0.1)
            } else {
                // A square whose sides are split into many collinear edges.
                let mut v = Vec::new();
                for side in 0..4 {
                    for k in 0..25 {
                        let t = k as f64 / 25.0 * 0.1;
                        v.push(match side {
                            0 => Coord {
                                x: 112.0 + t,
                                y: 25.0,
                            },
                            1 => Coord {
                                x: 112.1,
                                y: 25.0 + t,
                            },
                            2 => Coord {
                                x: 112.1 - t,
                                y: 25.1,
                            },
                            _ => Coord {
                                x: 112.0,
                                y: 25.1 - t,
                            },
                        });
                    }
                }
                v.push(v[0]);
                v
            };
            let z = area(vec![Polygon::new(LineString(sq), vec![])]);
            assert!(z.vertex_count() >= 5);
            // On the west side and on a corner.
            assert_eq!(z.classify(112.0, 25.05, 0.0), Placement::Uncertain, "{n}");
            assert_eq!(z.classify(112.0, 25.05, 10.0), Placement::Uncertain);
            assert_eq!(z.classify(112.1, 25.1, 0.0), Placement::Uncertain);
            assert!(z.signed_distance_m(112.0, 25.05).abs() < BOUNDARY_TOLERANCE_M);
            // A hair inside with accuracy 0 is decided.
            assert_eq!(z.classify(112.000_001, 25.05, 0.0), Placement::Inside);
        }
    }

    #[test]
    fn unusable_zones_are_uncertain_not_alarming() {
        let bad = Polygon::new(
            LineString(vec![
                Coord { x: 0.0, y: 0.0 },
                Coord {
                    x: f64::NAN,
                    y: 1.0,
                },
                Coord { x: 1.0, y: 1.0 },
                Coord { x: 0.0, y: 0.0 },
            ]),
            vec![],
        );
        let z = area(vec![bad]);
        assert!(!z.is_usable());
        assert_eq!(z.classify(0.5, 0.5, 10.0), Placement::Uncertain);
        let empty = area(vec![]);
        assert!(!empty.is_usable());
        let circle = PreparedZone::new(zone(ZoneShape::Circle {
            center: geo::Point::new(1.0, 1.0),
            radius_m: -3.0,
        }));
        assert!(!circle.is_usable());
        assert!(!circle.contains(1.0, 1.0));
    }

    #[test]
    fn nan_points_are_never_inside() {
        let z = area(vec![Polygon::new(
            LineString(ring(112.0, 25.0, 0.1, 300, 0.1)),
            vec![],
        )]);
        assert!(!z.contains(f64::NAN, 25.0));
        assert_eq!(z.classify(f64::NAN, 25.0, 1.0), Placement::Uncertain);
        assert_eq!(z.classify(112.0, 25.0, f64::NAN), Placement::Uncertain);
        assert!(z.signed_distance_m(112.0, f64::INFINITY).is_nan());
    }

    /// A star with `n` vertices alternating between two radii: long thin spikes, the
    /// pathological case for grid and strip methods alike.
    fn star(n: usize) -> Polygon<f64> {
        let mut v: Vec<Coord<f64>> = (0..n)
            .map(|i| {
                let a = i as f64 / n as f64 * std::f64::consts::TAU;
                let r = if i % 2 == 0 { 0.1 } else { 0.02 };
                Coord {
                    x: 112.0 + r * a.cos(),
                    y: 25.0 + r * a.sin(),
                }
            })
            .collect();
        v.push(v[0]);
        Polygon::new(LineString(v), vec![])
    }

    /// Compares `contains`, `signed_distance_m` and `classify` with geo's own algorithms and a
    /// brute-force distance on random points around the shape (fixed seed).
    fn agree_with_reference(poly: MultiPolygon<f64>, cases: u32) {
        let z = PreparedZone::new(zone(ZoneShape::Area(poly.clone())));
        let env = z.envelope();
        let (w, h) = (env[2] - env[0], env[3] - env[1]);
        let edges = area_edges(&poly).expect("finite").0;
        let mut runner = TestRunner::new_with_rng(
            Config {
                cases,
                ..Config::default()
            },
            TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
        );
        runner
            .run(
                &(-0.1f64..1.1, -0.1f64..1.1, 0.0f64..3_000.0),
                |(fx, fy, r)| {
                    let (x, y) = (env[0] + fx * w, env[1] + fy * h);
                    let reference = poly.contains(&geo::Point::new(x, y));
                    let scale = LocalScale::at(y);
                    let d = edges
                        .iter()
                        .map(|e| scale.distance_to_segment_m(x, y, e))
                        .fold(f64::INFINITY, f64::min);
                    // Points within a micrometre of an edge may fall either way.
                    if d > 1e-6 {
                        prop_assert_eq!(z.contains(x, y), reference, "at {} {}", x, y);
                        let signed = z.signed_distance_m(x, y);
                        prop_assert!(
                            (signed.abs() - d).abs() < 1e-6,
                            "distance {} vs {}",
                            signed,
                            d
                        );
                    }
                    let expected = if d <= r {
                        Placement::Uncertain
                    } else {
                        side(reference)
                    };
                    if (d - r).abs() > 1e-6 {
                        prop_assert_eq!(z.classify(x, y, r), expected, "at {} {} r {}", x, y, r);
                    }
                    Ok(())
                },
            )
            .expect("agrees with the reference");
    }

    #[test]
    fn agrees_with_geo_on_a_spiky_star() {
        agree_with_reference(MultiPolygon(vec![star(2_000)]), 3_000);
    }

    #[test]
    fn agrees_with_geo_on_a_wobbly_ring_with_a_hole_and_a_second_part() {
        let outer = LineString(ring(112.0, 25.0, 0.2, 500, 0.2));
        let hole = LineString(ring(112.0, 25.0, 0.05, 300, 0.3));
        let island = Polygon::new(LineString(ring(112.0, 25.0, 0.02, 50, 0.0)), vec![]);
        let poly = MultiPolygon(vec![Polygon::new(outer, vec![hole]), island]);
        agree_with_reference(poly, 3_000);
    }

    #[test]
    fn agrees_with_geo_on_axis_aligned_steps() {
        // A staircase: many horizontal and vertical edges exactly on grid-like coordinates.
        let mut v = vec![Coord { x: 0.0, y: 0.0 }];
        for i in 0..60 {
            let x = i as f64 * 0.01;
            v.push(Coord {
                x,
                y: 0.01 * (i + 1) as f64,
            });
            v.push(Coord {
                x: x + 0.01,
                y: 0.01 * (i + 1) as f64,
            });
        }
        v.push(Coord { x: 0.6, y: 0.0 });
        v.push(Coord { x: 0.0, y: 0.0 });
        agree_with_reference(
            MultiPolygon(vec![Polygon::new(LineString(v), vec![])]),
            3_000,
        );
    }
}
