//! The in-memory view of who is supervised and where: which person each device belongs to,
//! each person's supervision level, and the zone catalog the fence engine checks against.
//!
//! It is loaded from the store at start and updated by the API after every change it commits,
//! so a new device, zone or assignment takes effect on the next fix without a restart. Readers
//! take a short lock and never hold it across an `.await`; the zone catalog is swapped whole as
//! an `Arc`, so a fence check always sees one consistent version.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use thiserror::Error;
use tracing::warn;

use crate::fence::{ZoneCatalog, ZoneProperties, ZoneSpec};
use crate::identity;
use crate::model::{Crs, Person, PersonId, SupervisionLevel, Zone, ZoneId};
use crate::store::{Store, StoreError, ZoneRecord};

/// Errors loading the registry.
#[derive(Debug, Error)]
pub enum RegistryError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored zone's geometry could not be read.
    #[error("zone {id}: {reason}")]
    Zone {
        /// Zone id.
        id: ZoneId,
        /// What is wrong with it.
        reason: String,
    },
}

/// The maps a fix is looked up in: foldhash rather than SipHash, as every frame reads three of
/// them and their keys are what the store holds (a device id sent by a stranger is only looked
/// up, never inserted).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Devices, persons and zones as the hot path needs them.
pub struct Registry {
    devices: RwLock<FastMap<String, PersonId>>,
    /// Device models, for the devices that have one.
    models: RwLock<FastMap<String, String>>,
    levels: RwLock<FastMap<PersonId, SupervisionLevel>>,
    /// Each person's time zone, for zone schedules.
    timezones: RwLock<FastMap<PersonId, chrono_tz::Tz>>,
    catalog: RwLock<Arc<ZoneCatalog>>,
    /// Serialises reloads so the last one to finish reflects the latest store state.
    reload: tokio::sync::Mutex<()>,
    /// The generation of the catalog in force, sent on every swap: the timer-driven rules
    /// re-arm curfews from it without waiting for a fix.
    catalog_swaps: tokio::sync::watch::Sender<u64>,
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // A panic while holding the lock cannot leave these maps half-updated (every write is a
    // single insert, remove or swap), so a poisoned lock is still safe to use.
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            devices: RwLock::default(),
            models: RwLock::default(),
            levels: RwLock::default(),
            timezones: RwLock::default(),
            catalog: RwLock::default(),
            reload: tokio::sync::Mutex::default(),
            catalog_swaps: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Registry {
    /// Tells of every swap of the zone catalog (the value is the new catalog's generation).
    pub fn catalog_swaps(&self) -> tokio::sync::watch::Receiver<u64> {
        self.catalog_swaps.subscribe()
    }

    /// Loads everything from the store.
    ///
    /// # Errors
    /// Store errors, or a stored zone that cannot be read.
    pub async fn load(store: &dyn Store) -> Result<Self, RegistryError> {
        let registry = Registry::default();
        for person in store.persons().await? {
            registry.person_saved(&person);
        }
        for device in store.devices().await? {
            registry.device_bound(&device.imei, device.person_id);
            registry.device_model_set(&device.imei, device.model.as_deref());
        }
        registry.reload_zones(store).await?;
        Ok(registry)
    }

    /// Replaces everything with the store's current devices, persons and zones: how a
    /// cluster node learns of the changes another node's API made.
    ///
    /// # Errors
    /// Store errors, or a stored zone that cannot be read (the zones in force stay).
    pub async fn refresh(&self, store: &dyn Store) -> Result<(), RegistryError> {
        let fresh = Registry::default();
        for person in store.persons().await? {
            fresh.person_saved(&person);
        }
        for device in store.devices().await? {
            fresh.device_bound(&device.imei, device.person_id);
            fresh.device_model_set(&device.imei, device.model.as_deref());
        }
        *write(&self.devices) = std::mem::take(&mut *write(&fresh.devices));
        *write(&self.models) = std::mem::take(&mut *write(&fresh.models));
        *write(&self.levels) = std::mem::take(&mut *write(&fresh.levels));
        *write(&self.timezones) = std::mem::take(&mut *write(&fresh.timezones));
        self.reload_zones(store).await
    }

    /// The person a device is bound to; `device_id` in any form [`identity::normalise`] maps
    /// to the registered one.
    pub fn person_of(&self, device_id: &str) -> Option<PersonId> {
        read(&self.devices)
            .get(identity::normalise(device_id).as_ref())
            .copied()
    }

    /// A person's supervision level (normal for a person not loaded).
    pub fn level_of(&self, person: PersonId) -> SupervisionLevel {
        read(&self.levels).get(&person).copied().unwrap_or_default()
    }

    /// A person's time zone, for reading zone schedules (`None` for a person not loaded, or
    /// a stored name this build of the time zone database does not know).
    pub fn timezone_of(&self, person: PersonId) -> Option<chrono_tz::Tz> {
        read(&self.timezones).get(&person).copied()
    }

    /// The current zone catalog.
    pub fn catalog(&self) -> Arc<ZoneCatalog> {
        read(&self.catalog).clone()
    }

    /// Records a device binding.
    pub fn device_bound(&self, imei: &str, person: PersonId) {
        write(&self.devices).insert(imei.to_owned(), person);
    }

    /// Forgets a device binding.
    pub fn device_unbound(&self, imei: &str) {
        write(&self.devices).remove(imei);
        write(&self.models).remove(imei);
    }

    /// A device's model, when it has one.
    pub fn model_of(&self, imei: &str) -> Option<String> {
        read(&self.models).get(imei).cloned()
    }

    /// Records a device's model (`None` clears it); its next connection decodes by it.
    pub fn device_model_set(&self, imei: &str, model: Option<&str>) {
        match model {
            Some(model) => write(&self.models).insert(imei.to_owned(), model.to_owned()),
            None => write(&self.models).remove(imei),
        };
    }

    /// Records a new or changed person.
    pub fn person_saved(&self, person: &Person) {
        write(&self.levels).insert(person.id, person.level);
        match person.timezone.parse::<chrono_tz::Tz>() {
            Ok(tz) => write(&self.timezones).insert(person.id, tz),
            Err(_) => {
                warn!(person = %person.id, timezone = person.timezone, "Unknown time zone; schedules are read in the default one.");
                write(&self.timezones).remove(&person.id)
            }
        };
    }

    /// Forgets a deleted person.
    pub fn person_deleted(&self, person: PersonId) {
        write(&self.levels).remove(&person);
        write(&self.timezones).remove(&person);
    }

    /// Rebuilds the zone catalog from the store's zones and assignments and swaps it in.
    ///
    /// # Errors
    /// Store errors, or a stored zone that cannot be read (the old catalog stays in force).
    pub async fn reload_zones(&self, store: &dyn Store) -> Result<(), RegistryError> {
        let _one_at_a_time = self.reload.lock().await;
        let records = store.zones().await?;
        let pairs = store.assignments().await?;
        // Zones already in the catalog are taken from it; only new ones are parsed.
        let current = self.catalog();
        let zones = records
            .iter()
            .map(|record| match current.zone(&record.id) {
                // Geometry never changes in place; the Wi-Fi list can (learned access points).
                Some(prepared) => Ok(Zone {
                    wifi: record.wifi.clone(),
                    ..prepared.zone().clone()
                }),
                None => zone_from_record(record),
            })
            .collect::<Result<Vec<Zone>, _>>()?;
        let mut assignments: HashMap<PersonId, Vec<ZoneId>> = HashMap::new();
        for (person, zone) in pairs {
            assignments.entry(person).or_default().push(zone);
        }
        let catalog = current.rebuild(zones, assignments);
        for warning in catalog.warnings() {
            warn!(?warning, "Zone catalog warning.");
        }
        let generation = catalog.generation();
        *write(&self.catalog) = Arc::new(catalog);
        self.catalog_swaps.send_replace(generation);
        Ok(())
    }
}

/// Reads a stored zone back: its geometry is WGS-84 GeoJSON, validated when it was created and
/// validated again here, so a damaged row cannot reach the engine.
///
/// # Errors
/// [`RegistryError::Zone`] when the stored geometry is not a valid zone.
pub fn zone_from_record(record: &ZoneRecord) -> Result<Zone, RegistryError> {
    let bad = |reason: String| RegistryError::Zone {
        id: record.id,
        reason,
    };
    let geometry: geojson::Geometry = record
        .geometry
        .parse()
        .map_err(|e: geojson::Error| bad(e.to_string()))?;
    let properties = ZoneProperties {
        name: record.name.clone(),
        kind: record.kind,
        crs: Crs::Wgs84,
        radius_m: record.radius_m,
        wifi: record.wifi.clone(),
        schedule: record.schedule.clone(),
    };
    let spec = ZoneSpec::from_geometry(&geometry, properties).map_err(|e| bad(e.to_string()))?;
    let mut zone = spec.into_zone(record.id);
    zone.scope = record.scope;
    Ok(zone)
}
