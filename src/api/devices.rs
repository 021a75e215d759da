//! `/api/v1/devices`: binding trackers (by IMEI or the id they send) to persons. A device that
//! is not bound here is refused when it connects.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::problem::Problem;
use super::AppState;
use crate::model::Device;
use crate::store::Role;

const MANAGERS: &[Role] = &[Role::Admin, Role::Operator];
const READERS: &[Role] = &[Role::Admin, Role::Operator, Role::Integration];

/// Body of `POST /devices`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceBody {
    imei: String,
    person_id: String,
}

/// Device ids are what trackers send: IMEIs, terminal numbers, app ids.
fn check_imei(imei: &str) -> Result<String, Problem> {
    let ok = !imei.is_empty()
        && imei.len() <= 32
        && imei
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return Err(Problem::unprocessable(format!(
            "imei {imei:?} must be 1 to 32 letters, digits, '-' or '_'"
        )));
    }
    Ok(imei.to_owned())
}

/// Binds a device to a person.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<DeviceBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Device>), Problem> {
    caller.require(MANAGERS, "register devices")?;
    let Json(body) = body?;
    let imei = check_imei(body.imei.trim())?;
    let person_id = body.person_id.parse().map_err(|_| {
        Problem::unprocessable(format!("person_id {:?} is not a person id", body.person_id))
    })?;
    let device = state.store.create_device(&imei, person_id).await?;
    state.registry.device_bound(&device.imei, device.person_id);
    Ok((StatusCode::CREATED, Json(device)))
}

/// Lists devices.
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, Problem> {
    caller.require(READERS, "list devices")?;
    Ok(Json(json!({ "devices": state.store.devices().await? })))
}

/// One device.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(imei): Path<String>,
) -> Result<Json<Device>, Problem> {
    caller.require(READERS, "read devices")?;
    Ok(Json(state.store.device(&imei).await?))
}

/// Unbinds a device; it is refused from its next connection on.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(imei): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(MANAGERS, "remove devices")?;
    state.store.delete_device(&imei).await?;
    state.registry.device_unbound(&imei);
    Ok(StatusCode::NO_CONTENT)
}
