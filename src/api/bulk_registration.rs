//! `POST /api/v1/persons/bulk`: registering many wearers in one request, each person with the
//! devices they wear and the zones assigned to them. It is what an operator's import tool or
//! `ewall simulate --register` uses where one request per person, device and assignment would
//! take minutes for a county's caseload.
//!
//! Every item is checked as `POST /persons`, `POST /devices` and `PUT /persons/{id}/zones`
//! check theirs before anything is stored, and a refusal names the item by its place
//! (`persons[3].devices[0].imei`). The whole request is then one store transaction
//! ([`crate::store::Store::register_persons`]): all of it or none, each creation recorded in
//! the actions chain and the feed as the single routes record it.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::body::JsonObject;
use super::openapi as doc;
use super::problem::Problem;
use super::{devices, persons, AppState};
use crate::model::{Device, Person, SupervisionLevel, ZoneId, ZoneScope};
use crate::store::{NewDevice, NewPerson, NewRegistration, Role};
use crate::supervision::Notice;

const MANAGERS: &[Role] = &[Role::Admin, Role::Operator];

/// Most persons one request registers.
pub const MAX_PERSONS: usize = 1_000;
/// Most devices one person of a request wears.
pub const MAX_DEVICES_PER_PERSON: usize = 16;
/// Most zones one person of a request is assigned.
pub const MAX_ZONES_PER_PERSON: usize = 100;

/// Body of `POST /persons/bulk`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkBody {
    /// The persons to register, 1 to 1,000.
    #[schema(min_items = 1, max_items = 1_000)]
    persons: Vec<BulkPerson>,
}

/// One person of a bulk registration.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkPerson {
    /// Name as the supervising authority records it.
    #[schema(schema_with = doc::name_schema)]
    name: String,
    /// Supervision level; `normal` when absent.
    #[serde(default)]
    #[schema(value_type = Option<SupervisionLevel>)]
    level: Option<String>,
    /// IANA time zone; `fence.default_timezone` when absent.
    #[serde(default)]
    #[schema(schema_with = doc::optional_timezone_schema)]
    timezone: Option<String>,
    /// The devices the person wears, bound to them (at most 16).
    #[serde(default)]
    #[schema(max_items = 16)]
    devices: Vec<BulkDevice>,
    /// The zones assigned to the person (at most 100, repeats count once); none when absent.
    /// Shared zones apply without an assignment and are refused here as by
    /// `PUT /persons/{id}/zones`.
    #[serde(default)]
    #[schema(value_type = Vec<uuid::Uuid>, max_items = 100)]
    zone_ids: Vec<String>,
}

/// A device of a bulk registration.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkDevice {
    /// The id the tracker sends: IMEI, terminal number or app id.
    #[schema(
        min_length = 1,
        pattern = r"^\s*[A-Za-z0-9_-]{1,32}\s*$",
        example = "864768011234562"
    )]
    imei: String,
    /// The device model, when frames depend on it: 1 to 64 printable characters.
    #[serde(default)]
    #[schema(
        nullable = true,
        pattern = r"^\s*(?:[^\s\u0000-\u001f\u007f-\u009f]|[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]{0,62}[^\s\u0000-\u001f\u007f-\u009f])\s*$"
    )]
    model: Option<String>,
}

/// `201` of `POST /persons/bulk`: what was registered, in the order given.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkRegistered {
    /// One entry per person of the request.
    pub persons: Vec<RegisteredPerson>,
}

/// A person as registered, with their devices and zones.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegisteredPerson {
    /// The person, created.
    pub person: Person,
    /// Their device bindings, created.
    pub devices: Vec<Device>,
    /// The zones assigned to them.
    #[schema(value_type = Vec<uuid::Uuid>)]
    pub zone_ids: Vec<ZoneId>,
}

/// Registers persons with their devices and zone assignments, all in one transaction.
#[utoipa::path(
    post, path = "/api/v1/persons/bulk", tag = "persons",
    security(("bearer" = [])),
    request_body = BulkBody,
    responses(
        (status = 201, description = "Every person, device and assignment, created.", body = BulkRegistered),
        (status = 409, response = doc::Conflict),
        (status = 415, response = doc::UnsupportedMediaType),
    ),
)]
pub async fn register(
    State(state): State<AppState>,
    caller: Caller,
    JsonObject(body): JsonObject<BulkBody>,
) -> Result<(StatusCode, Json<BulkRegistered>), Problem> {
    caller.require(MANAGERS, "register persons")?;
    let registrations = check(&state, body).await?;
    let registered = state.store.register_persons(registrations).await?;
    // What the single routes tell the hot path and the timer-driven rules after their commits.
    for entry in &registered {
        state.registry.person_saved(&entry.person);
        state
            .notices
            .send(Notice::PersonSaved(entry.person.clone()));
        for device in &entry.devices {
            state.registry.device_bound(&device.imei, device.person_id);
            state
                .registry
                .device_model_set(&device.imei, device.model.as_deref());
            state.notices.send(Notice::DeviceBound {
                person: device.person_id,
                device: device.imei.clone(),
                at: device.created_at,
            });
        }
    }
    if registered.iter().any(|entry| !entry.zones.is_empty()) {
        state.reload_zones().await?;
    }
    Ok((
        StatusCode::CREATED,
        Json(BulkRegistered {
            persons: registered
                .into_iter()
                .map(|entry| RegisteredPerson {
                    person: entry.person,
                    devices: entry.devices,
                    zone_ids: entry.zones,
                })
                .collect(),
        }),
    ))
}

/// Checks every item as the single routes check theirs; the first refusal names its place.
async fn check(state: &AppState, body: BulkBody) -> Result<Vec<NewRegistration>, Problem> {
    let count = body.persons.len();
    if count == 0 || count > MAX_PERSONS {
        return Err(Problem::unprocessable(format!(
            "persons lists {count} persons; one request registers 1 to {MAX_PERSONS} \
             (send more in further requests)"
        )));
    }
    let at = |place: String| {
        move |p: Problem| Problem {
            detail: format!("{place}: {}", p.detail),
            ..p
        }
    };
    let mut first_place: HashMap<String, String> = HashMap::new();
    let mut registrations = Vec::with_capacity(count);
    let mut wants_zones = false;
    for (i, item) in body.persons.into_iter().enumerate() {
        let person = NewPerson {
            name: persons::check_name(&item.name).map_err(at(format!("persons[{i}].name")))?,
            level: item
                .level
                .as_deref()
                .map(persons::check_level)
                .transpose()
                .map_err(at(format!("persons[{i}].level")))?
                .unwrap_or_default(),
            timezone: match item.timezone.as_deref() {
                Some(tz) => {
                    persons::check_timezone(tz).map_err(at(format!("persons[{i}].timezone")))?
                }
                None => state.default_timezone.name().to_owned(),
            },
        };
        if item.devices.len() > MAX_DEVICES_PER_PERSON {
            return Err(Problem::unprocessable(format!(
                "persons[{i}].devices lists {} devices; at most {MAX_DEVICES_PER_PERSON}",
                item.devices.len()
            )));
        }
        let mut new_devices = Vec::with_capacity(item.devices.len());
        for (j, device) in item.devices.into_iter().enumerate() {
            let place = format!("persons[{i}].devices[{j}]");
            let imei = devices::check_imei(&device.imei).map_err(at(format!("{place}.imei")))?;
            let model = device
                .model
                .as_deref()
                .map(devices::check_model)
                .transpose()
                .map_err(at(format!("{place}.model")))?;
            if let Some(earlier) = first_place.get(&imei) {
                return Err(Problem::unprocessable(format!(
                    "{place}.imei: device {imei} is listed twice (first at {earlier})"
                )));
            }
            first_place.insert(imei.clone(), place);
            new_devices.push(NewDevice { imei, model });
        }
        if item.zone_ids.len() > MAX_ZONES_PER_PERSON {
            return Err(Problem::unprocessable(format!(
                "persons[{i}].zone_ids lists {} zones; at most {MAX_ZONES_PER_PERSON}",
                item.zone_ids.len()
            )));
        }
        let mut zones: Vec<ZoneId> = Vec::with_capacity(item.zone_ids.len());
        for (k, raw) in item.zone_ids.iter().enumerate() {
            let zone = raw.parse().map_err(|_| {
                Problem::unprocessable(format!(
                    "persons[{i}].zone_ids[{k}]: zone id {raw:?} is not a zone id"
                ))
            })?;
            if !zones.contains(&zone) {
                zones.push(zone);
            }
        }
        wants_zones |= !zones.is_empty();
        registrations.push(NewRegistration {
            person,
            devices: new_devices,
            zones,
        });
    }
    if wants_zones {
        let shared: HashMap<ZoneId, ZoneScope> = state
            .store
            .zones()
            .await?
            .into_iter()
            .filter(|z| z.scope.is_shared())
            .map(|z| (z.id, z.scope))
            .collect();
        for (i, registration) in registrations.iter().enumerate() {
            if let Some((zone, scope)) = registration
                .zones
                .iter()
                .find_map(|z| shared.get(z).map(|scope| (z, scope)))
            {
                return Err(Problem::unprocessable(format!(
                    "persons[{i}].zone_ids: zone {zone} is shared ({}); it applies without a \
                     per-person assignment",
                    match scope {
                        ZoneScope::Level(level) => format!("level {}", level.as_str()),
                        _ => "everyone".to_owned(),
                    }
                )));
            }
        }
    }
    Ok(registrations)
}
