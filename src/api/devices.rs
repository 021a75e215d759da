//! `/api/v1/devices`: binding trackers (by IMEI or the id they send) to persons. A device that
//! is not bound here is refused when it connects.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::body::JsonObject;
use super::openapi as doc;
use super::problem::Problem;
use super::AppState;
use crate::identity;
use crate::model::Device;
use crate::store::Role;
use crate::supervision::Notice;

const MANAGERS: &[Role] = &[Role::Admin, Role::Operator];
/// The monitoring centre; the integration reads alerts only.
const READERS: &[Role] = &[Role::Admin, Role::Operator];

/// Body of `POST /devices`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceBody {
    /// The id the tracker sends: IMEI, terminal number or app id.
    #[schema(
        min_length = 1,
        pattern = r"^\s*[A-Za-z0-9_-]{1,32}\s*$",
        example = "864768011234562"
    )]
    imei: String,
    /// The person wearing it.
    #[schema(value_type = uuid::Uuid)]
    person_id: String,
    /// The device model, when frames depend on it (see the protocol READMEs): 1 to 64
    /// printable characters, surrounding blanks dropped.
    #[serde(default)]
    #[schema(
        nullable = true,
        pattern = r"^\s*(?:[^\s\u0000-\u001f\u007f-\u009f]|[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]{0,62}[^\s\u0000-\u001f\u007f-\u009f])\s*$"
    )]
    model: Option<String>,
}

/// Body of `PATCH /devices/{imei}`: the fields to change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DevicePatchBody {
    /// The new model; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable = true, pattern = r"^\s*(?:[^\s\u0000-\u001f\u007f-\u009f]|[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]{0,62}[^\s\u0000-\u001f\u007f-\u009f])\s*$")]
    model: Option<Option<String>>,
}

/// Tells a field sent as `null` (clear it) from one left out (keep it).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A model name: printable, 1 to 64 characters, surrounding blanks dropped.
pub(super) fn check_model(model: &str) -> Result<String, Problem> {
    let model = model.trim();
    if model.is_empty() || model.chars().count() > 64 || model.chars().any(char::is_control) {
        return Err(Problem::unprocessable(format!(
            "model {model:?} must be 1 to 64 printable characters"
        )));
    }
    Ok(model.to_owned())
}

/// `GET /devices`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceList {
    /// Every device binding.
    pub devices: Vec<Device>,
}

/// Device ids in their canonical form ([`identity::canonical`]): what trackers send, whatever
/// form was typed.
pub(super) fn check_imei(imei: &str) -> Result<String, Problem> {
    identity::canonical(imei).map_err(|e| Problem::unprocessable(e.to_string()))
}

/// Binds a device to a person.
#[utoipa::path(
    post, path = "/api/v1/devices", tag = "devices",
    security(("bearer" = [])),
    request_body = DeviceBody,
    responses(
        (status = 201, description = "The binding, created.", body = Device),
        (status = 409, response = doc::Conflict),
        (status = 415, response = doc::UnsupportedMediaType),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonObject(body): JsonObject<DeviceBody>,
) -> Result<(StatusCode, Json<Device>), Problem> {
    caller.require(MANAGERS, "register devices")?;
    let imei = check_imei(&body.imei)?;
    let person_id = body.person_id.parse().map_err(|_| {
        Problem::unprocessable(format!("person_id {:?} is not a person id", body.person_id))
    })?;
    let model = body.model.as_deref().map(check_model).transpose()?;
    let mut device = state.store.create_device(&imei, person_id).await?;
    if let Some(model) = model.as_deref() {
        device = state
            .store
            .set_device_model(&device.imei, Some(model))
            .await?;
    }
    state.registry.device_bound(&device.imei, device.person_id);
    state
        .registry
        .device_model_set(&device.imei, device.model.as_deref());
    state.notices.send(Notice::DeviceBound {
        person: device.person_id,
        device: device.imei.clone(),
        at: device.created_at,
    });
    Ok((StatusCode::CREATED, Json(device)))
}

/// Changes a device's model; its next connection decodes by it.
#[utoipa::path(
    patch, path = "/api/v1/devices/{imei}", tag = "devices",
    security(("bearer" = [])),
    params(("imei" = String, Path, description = "The device id as registered.")),
    request_body = DevicePatchBody,
    responses(
        (status = 200, description = "The device, changed.", body = Device),
        (status = 415, response = doc::UnsupportedMediaType),
    ),
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(imei): Path<String>,
    JsonObject(body): JsonObject<DevicePatchBody>,
) -> Result<Json<Device>, Problem> {
    caller.require(MANAGERS, "change devices")?;
    let mut device = state.store.device(&identity::normalise(&imei)).await?;
    if let Some(model) = body.model {
        let model = model.as_deref().map(check_model).transpose()?;
        device = state
            .store
            .set_device_model(&device.imei, model.as_deref())
            .await?;
        state
            .registry
            .device_model_set(&device.imei, device.model.as_deref());
    }
    Ok(Json(device))
}

/// Lists devices.
#[utoipa::path(
    get, path = "/api/v1/devices", tag = "devices",
    security(("bearer" = [])),
    responses((status = 200, description = "Every binding.", body = DeviceList)),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<DeviceList>, Problem> {
    caller.require(READERS, "list devices")?;
    Ok(Json(DeviceList {
        devices: state.store.devices().await?,
    }))
}

/// One device.
#[utoipa::path(
    get, path = "/api/v1/devices/{imei}", tag = "devices",
    security(("bearer" = [])),
    params(("imei" = String, Path, description = "The device id as registered.")),
    responses((status = 200, description = "The binding.", body = Device)),
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(imei): Path<String>,
) -> Result<Json<Device>, Problem> {
    caller.require(READERS, "read devices")?;
    Ok(Json(state.store.device(&identity::normalise(&imei)).await?))
}

/// Unbinds a device; it is refused from its next connection on. A person left without a device
/// raises `unsupervised` at once.
#[utoipa::path(
    delete, path = "/api/v1/devices/{imei}", tag = "devices",
    security(("bearer" = [])),
    params(("imei" = String, Path, description = "The device id as registered.")),
    responses((status = 204, description = "Unbound.")),
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(imei): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(MANAGERS, "remove devices")?;
    let imei = identity::normalise(&imei);
    let device = state.store.device(&imei).await?;
    state.store.delete_device(&imei).await?;
    state.registry.device_unbound(&imei);
    state.notices.send(Notice::DeviceUnbound {
        person: device.person_id,
        device: device.imei,
        at: chrono::Utc::now(),
    });
    state.commands.forget(&imei);
    Ok(StatusCode::NO_CONTENT)
}
