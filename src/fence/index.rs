//! The zone catalog: every zone, prepared, plus who is assigned which zones.
//!
//! Role in the pipeline: the pipeline builds a [`ZoneCatalog`] from the store's zones and
//! assignments, shares it as `Arc<ZoneCatalog>` with every fence engine shard, and builds a new
//! one (with [`ZoneCatalog::rebuild`], which reuses the prepared geometry of unchanged zones) and
//! swaps it in whenever a zone or an assignment changes, so changes apply without a restart. A
//! catalog never changes after it is built.
//!
//! In: [`Zone`]s and a map person → zone ids. Out: for a person (at a supervision level) and a
//! point, the [`Placement`] against each of the person's zones; for a point, the zones whose
//! envelope is near it (an rstar R-tree over zone envelopes, bulk-loaded).
//!
//! It must not keep per-person state (that is [`FenceEngine`](super::FenceEngine)'s) nor do
//! I/O.
//!
//! # How a person's zones are checked
//!
//! A person usually has a handful of zones: for up to [`PERSON_SCAN_MAX`] zones each one is asked
//! directly, and its first test is its own bounding box, so a fix far from a zone costs a few
//! comparisons. A person with more zones is served by one R-tree query over all zone envelopes
//! (widened by the accuracy radius): the zones it does not return are outside by more than the
//! radius without being looked at.
//!
//! Shared zones ([`ZoneScope::Everyone`], [`ZoneScope::Level`]: a border post, an airport)
//! apply without an assignment and may number in the thousands, so they are never scanned: a
//! second R-tree holds only them, and each fix asks it for the ones near the point. A shared
//! exclusion zone it does not return is outside and is not listed (the engine gives the ones it
//! holds state for their `Outside` itself); a shared inclusion zone is always listed, as being
//! outside it is a breach. A per-person assignment of a shared zone is skipped (it already
//! applies).
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{RTree, AABB};

use super::geodesy::LocalScale;
use super::prepared::{Placement, PreparedZone};
use crate::model::{PersonId, SupervisionLevel, Zone, ZoneId, ZoneKind};

/// A person with more zones than this is checked through the catalog's R-tree instead of zone
/// by zone.
pub const PERSON_SCAN_MAX: usize = 16;

/// The R-tree entry of one zone: its envelope and its slot in the catalog.
pub type ZoneEnvelope = GeomWithData<Rectangle<[f64; 2]>, u32>;

/// Counter behind [`ZoneCatalog::generation`].
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// Something wrong in what a catalog was built from; the catalog is still built without it.
#[derive(Debug, Clone, PartialEq)]
pub enum CatalogWarning {
    /// Two zones had the same id; the first one was kept.
    DuplicateZone(ZoneId),
    /// A person was assigned a zone the catalog does not have; the assignment was skipped.
    UnknownZone {
        /// The person.
        person: PersonId,
        /// The missing zone.
        zone: ZoneId,
    },
    /// The zone's geometry could not be prepared (no rings, or non-finite coordinates); it
    /// answers every fix with "uncertain" and so never raises an alert.
    UnusableZone(ZoneId),
    /// A person was assigned a shared zone, which applies anyway; the assignment was skipped.
    SharedZoneAssigned {
        /// The person.
        person: PersonId,
        /// The shared zone.
        zone: ZoneId,
    },
}

/// The shared zones of one supervision level, as catalog slots, sorted.
#[derive(Debug, Default)]
struct SharedSlots {
    /// Every shared zone applying at the level.
    all: Box<[u32]>,
    /// The inclusion zones among them (always listed for a fix).
    inclusion: Box<[u32]>,
}

fn level_index(level: SupervisionLevel) -> usize {
    match level {
        SupervisionLevel::Strict => 0,
        SupervisionLevel::Normal => 1,
        SupervisionLevel::Lenient => 2,
    }
}

/// Every zone, prepared, and every person's assigned zones. Immutable once built; share it as
/// `Arc<ZoneCatalog>`.
#[derive(Debug)]
pub struct ZoneCatalog {
    zones: Vec<Arc<PreparedZone>>,
    by_id: HashMap<ZoneId, u32>,
    tree: RTree<ZoneEnvelope>,
    /// Each person's zone slots, sorted, without duplicates (shared zones excluded).
    assignments: HashMap<PersonId, Box<[u32]>>,
    /// Envelopes of the usable shared zones only.
    shared_tree: RTree<ZoneEnvelope>,
    /// Shared zones per level (strict, normal, lenient).
    shared: [SharedSlots; 3],
    generation: u64,
    warnings: Vec<CatalogWarning>,
}

impl Default for ZoneCatalog {
    fn default() -> Self {
        ZoneCatalog::from_prepared(Vec::new(), HashMap::new())
    }
}

impl ZoneCatalog {
    /// Prepares every zone and builds the catalog. Duplicate zone ids, assignments to unknown
    /// zones and unusable geometry do not fail the build; they are listed in
    /// [`ZoneCatalog::warnings`] for the caller to log.
    pub fn build(zones: Vec<Zone>, assignments: HashMap<PersonId, Vec<ZoneId>>) -> ZoneCatalog {
        let prepared = zones
            .into_iter()
            .map(|z| Arc::new(PreparedZone::new(z)))
            .collect();
        ZoneCatalog::from_prepared(prepared, assignments)
    }

    /// Builds a new catalog like [`ZoneCatalog::build`], reusing this catalog's prepared
    /// geometry for every zone that is unchanged (same id and equal [`Zone`]); only new or
    /// changed zones are prepared again.
    pub fn rebuild(
        &self,
        zones: Vec<Zone>,
        assignments: HashMap<PersonId, Vec<ZoneId>>,
    ) -> ZoneCatalog {
        let prepared = zones
            .into_iter()
            .map(|z| match self.zone(&z.id) {
                Some(old) if *old.zone() == z => Arc::clone(old),
                _ => Arc::new(PreparedZone::new(z)),
            })
            .collect();
        ZoneCatalog::from_prepared(prepared, assignments)
    }

    /// Builds a catalog from zones already prepared (e.g. kept by the caller in a cache keyed
    /// by zone id).
    pub fn from_prepared(
        zones: Vec<Arc<PreparedZone>>,
        assignments: HashMap<PersonId, Vec<ZoneId>>,
    ) -> ZoneCatalog {
        let mut warnings = Vec::new();
        let mut kept: Vec<Arc<PreparedZone>> = Vec::with_capacity(zones.len());
        let mut by_id = HashMap::with_capacity(zones.len());
        for zone in zones {
            if by_id.contains_key(&zone.id()) {
                warnings.push(CatalogWarning::DuplicateZone(zone.id()));
                continue;
            }
            if !zone.is_usable() {
                warnings.push(CatalogWarning::UnusableZone(zone.id()));
            }
            // Slots are u32; a catalog of 4 billion zones is not a use case, so stop there.
            let Ok(slot) = u32::try_from(kept.len()) else {
                break;
            };
            by_id.insert(zone.id(), slot);
            kept.push(zone);
        }
        let tree = RTree::bulk_load(
            kept.iter()
                .enumerate()
                .filter(|(_, z)| z.is_usable())
                .map(|(slot, z)| envelope_entry(z, slot as u32))
                .collect(),
        );
        let shared_tree = RTree::bulk_load(
            kept.iter()
                .enumerate()
                .filter(|(_, z)| z.is_usable() && z.zone().scope.is_shared())
                .map(|(slot, z)| envelope_entry(z, slot as u32))
                .collect(),
        );
        let shared = [
            SupervisionLevel::Strict,
            SupervisionLevel::Normal,
            SupervisionLevel::Lenient,
        ]
        .map(|level| {
            let covering = |inclusion_only: bool| -> Box<[u32]> {
                kept.iter()
                    .enumerate()
                    .filter(|(_, z)| z.zone().scope.covers(level))
                    .filter(|(_, z)| !inclusion_only || z.kind() == ZoneKind::Inclusion)
                    .map(|(slot, _)| slot as u32)
                    .collect()
            };
            SharedSlots {
                all: covering(false),
                inclusion: covering(true),
            }
        });
        let mut persons = HashMap::with_capacity(assignments.len());
        for (person, ids) in assignments {
            let mut slots: Vec<u32> = Vec::with_capacity(ids.len());
            for id in ids {
                match by_id.get(&id) {
                    Some(&slot) if kept[slot as usize].zone().scope.is_shared() => {
                        warnings.push(CatalogWarning::SharedZoneAssigned { person, zone: id })
                    }
                    Some(&slot) => slots.push(slot),
                    None => warnings.push(CatalogWarning::UnknownZone { person, zone: id }),
                }
            }
            slots.sort_unstable();
            slots.dedup();
            if !slots.is_empty() {
                persons.insert(person, slots.into_boxed_slice());
            }
        }
        ZoneCatalog {
            zones: kept,
            by_id,
            tree,
            assignments: persons,
            shared_tree,
            shared,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            warnings,
        }
    }

    /// A number that differs between any two catalogs built by this process; the engine uses
    /// it to notice that assignments may have changed.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// What was skipped or is suspect in the input; see [`CatalogWarning`].
    pub fn warnings(&self) -> &[CatalogWarning] {
        &self.warnings
    }

    /// Number of zones.
    pub fn len(&self) -> usize {
        self.zones.len()
    }

    /// Whether the catalog has no zones.
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    /// The prepared zone with this id.
    pub fn zone(&self, id: &ZoneId) -> Option<&Arc<PreparedZone>> {
        self.by_id.get(id).map(|&slot| &self.zones[slot as usize])
    }

    /// Every prepared zone, in build order (for reuse in a cache).
    pub fn zones(&self) -> &[Arc<PreparedZone>] {
        &self.zones
    }

    /// The zones that apply to a person at `level`: those assigned to them, then the shared
    /// zones of the level.
    pub fn zones_of<'a>(
        &'a self,
        person: &PersonId,
        level: SupervisionLevel,
    ) -> impl Iterator<Item = &'a PreparedZone> {
        self.slots_of(person)
            .iter()
            .chain(self.shared[level_index(level)].all.iter())
            .map(move |&slot| &*self.zones[slot as usize])
    }

    /// The zones assigned to a person one by one (shared zones excluded).
    pub fn assigned_to<'a>(&'a self, person: &PersonId) -> impl Iterator<Item = &'a PreparedZone> {
        self.slots_of(person)
            .iter()
            .map(move |&slot| &*self.zones[slot as usize])
    }

    /// Whether any zone applies to a person at `level`.
    pub fn has_zones(&self, person: &PersonId, level: SupervisionLevel) -> bool {
        self.assignments.contains_key(person) || !self.shared[level_index(level)].all.is_empty()
    }

    fn slots_of(&self, person: &PersonId) -> &[u32] {
        self.assignments.get(person).map_or(&[], |s| s)
    }

    /// Whether the zone applies to a person at `level`.
    pub fn applies(&self, person: &PersonId, level: SupervisionLevel, zone: &ZoneId) -> bool {
        let Some(&slot) = self.by_id.get(zone) else {
            return false;
        };
        self.slots_of(person).binary_search(&slot).is_ok()
            || self.shared[level_index(level)]
                .all
                .binary_search(&slot)
                .is_ok()
    }

    /// The set of zone ids that apply to a person at `level`.
    pub fn zone_ids_of(&self, person: &PersonId, level: SupervisionLevel) -> HashSet<ZoneId> {
        self.zones_of(person, level).map(|z| z.id()).collect()
    }

    /// Zones whose envelope comes within `radius_m` metres of the point (one R-tree query; the
    /// box is widened by 1 % + 1 m to cover the sphere/ellipsoid difference of circle zones).
    /// Every zone not returned is outside by more than `radius_m`.
    pub fn zones_near(
        &self,
        lon: f64,
        lat: f64,
        radius_m: f64,
    ) -> impl Iterator<Item = &PreparedZone> {
        self.tree
            .locate_in_envelope_intersecting(&widened(lon, lat, radius_m))
            .map(move |e| &*self.zones[e.data as usize])
    }

    /// Ids of every zone containing the point (accuracy 0), via the R-tree.
    pub fn containing(&self, lon: f64, lat: f64) -> Vec<ZoneId> {
        self.tree
            .locate_all_at_point(&[lon, lat])
            .map(|e| &self.zones[e.data as usize])
            .filter(|z| z.contains(lon, lat))
            .map(|z| z.id())
            .collect()
    }

    /// Classifies the point, with accuracy radius `radius_m`, against every zone assigned to
    /// the person (in slot order), then against the shared zones of `level` that matter: those
    /// near the point and every shared inclusion zone (see the module docs), appending
    /// `(zone, placement)` to `out`. A shared exclusion zone not listed is outside by more than
    /// `radius_m`.
    pub fn classify_for<'a>(
        &'a self,
        person: &PersonId,
        level: SupervisionLevel,
        lon: f64,
        lat: f64,
        radius_m: f64,
        out: &mut Vec<(&'a PreparedZone, Placement)>,
    ) {
        self.classify_slots(self.slots_of(person), lon, lat, radius_m, out);
        let shared = &self.shared[level_index(level)];
        if shared.all.is_empty() {
            return;
        }
        if !(lon.is_finite() && lat.is_finite()) {
            out.extend(shared.all.iter().map(|&slot| {
                let z = &*self.zones[slot as usize];
                (z, z.classify(lon, lat, radius_m))
            }));
            return;
        }
        // Inclusion zones first, outside unless the tree finds them near; then the exclusion
        // zones the tree finds.
        let start = out.len();
        out.extend(
            shared
                .inclusion
                .iter()
                .map(|&slot| (&*self.zones[slot as usize], Placement::Outside)),
        );
        let query = widened(lon, lat, radius_m);
        for entry in self.shared_tree.locate_in_envelope_intersecting(&query) {
            if shared.all.binary_search(&entry.data).is_err() {
                continue;
            }
            let z = &*self.zones[entry.data as usize];
            let placement = z.classify(lon, lat, radius_m);
            match shared.inclusion.binary_search(&entry.data) {
                Ok(i) => out[start + i].1 = placement,
                Err(_) => out.push((z, placement)),
            }
        }
        for (z, placement) in &mut out[start..start + shared.inclusion.len()] {
            if !z.is_usable() {
                *placement = Placement::Uncertain;
            }
        }
    }

    /// [`ZoneCatalog::classify_for`] for a person's own slots.
    fn classify_slots<'a>(
        &'a self,
        slots: &[u32],
        lon: f64,
        lat: f64,
        radius_m: f64,
        out: &mut Vec<(&'a PreparedZone, Placement)>,
    ) {
        if slots.len() <= PERSON_SCAN_MAX || !(lon.is_finite() && lat.is_finite()) {
            out.extend(slots.iter().map(|&slot| {
                let z = &*self.zones[slot as usize];
                (z, z.classify(lon, lat, radius_m))
            }));
            return;
        }
        // Many zones: one R-tree query picks the ones that need a look.
        let start = out.len();
        out.extend(
            slots
                .iter()
                .map(|&slot| (&*self.zones[slot as usize], Placement::Outside)),
        );
        for entry in self
            .tree
            .locate_in_envelope_intersecting(&widened(lon, lat, radius_m))
        {
            if let Ok(i) = slots.binary_search(&entry.data) {
                let z = &*self.zones[entry.data as usize];
                out[start + i].1 = z.classify(lon, lat, radius_m);
            }
        }
        // Unusable zones are not in the tree; they stay uncertain rather than outside.
        for (z, placement) in &mut out[start..] {
            if !z.is_usable() {
                *placement = Placement::Uncertain;
            }
        }
    }
}

/// The query box around a point: `radius_m` widened by 1 % + 1 m to cover the
/// sphere/ellipsoid difference of circle zones.
fn widened(lon: f64, lat: f64, radius_m: f64) -> AABB<[f64; 2]> {
    let scale = LocalScale::at(lat);
    let (hx, hy) = scale.degrees(radius_m.max(0.0) * 1.01 + 1.0);
    AABB::from_corners([lon - hx, lat - hy], [lon + hx, lat + hy])
}

/// The R-tree entry for a zone (its envelope, tagged with its slot).
pub fn envelope_entry(zone: &PreparedZone, slot: u32) -> ZoneEnvelope {
    let e = zone.envelope();
    GeomWithData::new(Rectangle::from_corners([e[0], e[1]], [e[2], e[3]]), slot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ZoneKind, ZoneShape};
    use geo::{LineString, MultiPolygon, Polygon};
    use uuid::Uuid;

    fn square_zone(id: u128, x0: f64, y0: f64, side: f64) -> Zone {
        let ring = crate::fence::fixtures::rectangle(x0, y0, side, side);
        Zone {
            id: Uuid::from_u128(id),
            name: format!("square {id}"),
            kind: ZoneKind::Inclusion,
            shape: ZoneShape::Area(MultiPolygon(vec![Polygon::new(LineString(ring), vec![])])),
            wifi: Default::default(),
            scope: Default::default(),
            schedule: None,
        }
    }

    #[test]
    fn many_zones_via_the_tree_agree_with_zone_by_zone() {
        let person = Uuid::from_u128(1);
        let zones: Vec<Zone> = (0..100)
            .map(|i| {
                square_zone(
                    i + 10,
                    100.0 + (i % 10) as f64 * 0.1,
                    20.0 + (i / 10) as f64 * 0.1,
                    0.05,
                )
            })
            .collect();
        let ids: Vec<ZoneId> = zones.iter().map(|z| z.id).collect();
        let catalog = ZoneCatalog::build(zones, HashMap::from([(person, ids)]));
        assert!(catalog.warnings().is_empty());
        for &(x, y, r) in &[
            (100.22, 20.32, 10.0),
            (100.25, 20.35, 3_000.0),
            (99.0, 19.0, 5.0),
        ] {
            let mut out = Vec::new();
            catalog.classify_for(&person, SupervisionLevel::Normal, x, y, r, &mut out);
            assert_eq!(out.len(), 100);
            for (z, p) in out {
                assert_eq!(
                    p,
                    z.classify(x, y, r),
                    "zone {} at {x} {y} r {r}",
                    z.zone().name
                );
            }
        }
        assert_eq!(
            catalog.containing(100.22, 20.32),
            vec![Uuid::from_u128(10 + 32)]
        );
        assert_eq!(catalog.zones_near(100.22, 20.32, 0.0).count(), 1);
    }

    #[test]
    fn rebuild_reuses_unchanged_zones_and_reports_problems() {
        let person = Uuid::from_u128(1);
        let a = square_zone(1, 112.0, 25.0, 0.1);
        let b = square_zone(2, 113.0, 25.0, 0.1);
        let first = ZoneCatalog::build(
            vec![a.clone(), b.clone()],
            HashMap::from([(person, vec![a.id, b.id])]),
        );
        let mut b2 = b.clone();
        b2.name = "renamed".into();
        let missing = Uuid::from_u128(99);
        let second = first.rebuild(
            vec![a.clone(), b2, a.clone()],
            HashMap::from([(person, vec![a.id, missing])]),
        );
        assert!(Arc::ptr_eq(
            first.zone(&a.id).expect("a"),
            second.zone(&a.id).expect("a")
        ));
        assert!(!Arc::ptr_eq(
            first.zone(&b.id).expect("b"),
            second.zone(&b.id).expect("b")
        ));
        assert_ne!(first.generation(), second.generation());
        assert_eq!(
            second.warnings(),
            &[
                CatalogWarning::DuplicateZone(a.id),
                CatalogWarning::UnknownZone {
                    person,
                    zone: missing
                }
            ]
        );
        assert_eq!(
            second.zone_ids_of(&person, SupervisionLevel::Normal),
            HashSet::from([a.id])
        );
        assert!(!second.has_zones(&Uuid::from_u128(5), SupervisionLevel::Normal));
    }
}
