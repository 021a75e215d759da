//! `/api/v1/devices/{imei}/commands`: downlink commands to a device (message, vibrate,
//! set_interval, locate_now) and their status (pending → sent → acknowledged | failed |
//! expired). A command the device's protocol cannot carry is refused with 422 saying so; for a
//! device never seen (protocol unknown) it is queued and fails when the device connects.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{SubsecRound, TimeDelta, Utc};
use ewall_protocol::{command::reply_ref, CommandKind, Protocol};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::body::JsonObject;
use super::openapi as doc;
use super::problem::Problem;
use super::{parse_id, AppState};
use crate::identity;
use crate::model::{new_id, CommandStatus, DeviceCommand};
use crate::store::Role;

const SENDERS: &[Role] = &[Role::Admin, Role::Operator];
const READERS: &[Role] = &[Role::Admin, Role::Operator];

/// Expiry when the request names none: an hour.
const DEFAULT_EXPIRES_IN_S: u64 = 3600;
/// Longest expiry accepted: seven days.
const MAX_EXPIRES_IN_S: u64 = 7 * 24 * 3600;
/// Longest message text, in characters.
const MAX_TEXT_CHARS: usize = 500;
/// Most commands listed per device.
const LIST_LIMIT: u32 = 200;

/// Body of `POST /devices/{imei}/commands`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandBody {
    /// What the device is to do.
    #[serde(rename = "type")]
    #[schema(value_type = CommandType)]
    kind: String,
    /// The text of a message (1 to 500 characters; only for `message`).
    #[schema(nullable = true)]
    text: Option<String>,
    /// Seconds between reports (only for `set_interval`).
    #[schema(nullable = true, minimum = 1, maximum = 86_400)]
    interval_s: Option<u32>,
    /// Seconds until the command expires unless answered (default 3600, at most 7 days).
    #[schema(nullable = true, minimum = 1, maximum = 604_800)]
    expires_in: Option<u64>,
}

/// A downlink command's type.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommandType {
    /// Show or read out a text.
    Message,
    /// Ring and vibrate so the wearer looks.
    Vibrate,
    /// Report every `interval_s` seconds.
    SetInterval,
    /// Send a position now.
    LocateNow,
}

impl From<CommandKind> for CommandType {
    fn from(kind: CommandKind) -> Self {
        // Exhaustive on purpose: a new command kind fails to compile here until it is described.
        match kind {
            CommandKind::Message => CommandType::Message,
            CommandKind::Vibrate => CommandType::Vibrate,
            CommandKind::SetInterval => CommandType::SetInterval,
            CommandKind::LocateNow => CommandType::LocateNow,
        }
    }
}

/// `GET /devices/{imei}/commands`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandList {
    /// The device's commands, newest first (at most 200).
    pub commands: Vec<DeviceCommand>,
}

/// Checks a body and turns it into a new pending command for `imei`.
fn validate(imei: &str, body: CommandBody) -> Result<DeviceCommand, Problem> {
    let kind = CommandKind::from_name(&body.kind).ok_or_else(|| {
        Problem::unprocessable(format!(
            "type {:?} is not a command; expected message, vibrate, set_interval or locate_now",
            body.kind
        ))
    })?;
    let text = match (kind, body.text) {
        (CommandKind::Message, Some(text)) => {
            let text = text.trim().to_owned();
            if text.is_empty() || text.chars().count() > MAX_TEXT_CHARS {
                return Err(Problem::unprocessable(format!(
                    "text must be 1 to {MAX_TEXT_CHARS} characters"
                )));
            }
            Some(text)
        }
        (CommandKind::Message, None) => {
            return Err(Problem::unprocessable("a message needs text"));
        }
        (_, Some(_)) => {
            return Err(Problem::unprocessable(format!(
                "text is only for message commands, not {}",
                kind.name()
            )))
        }
        (_, None) => None,
    };
    let interval_s = match (kind, body.interval_s) {
        (CommandKind::SetInterval, Some(s)) if (1..=86_400).contains(&s) => Some(s),
        (CommandKind::SetInterval, Some(s)) => {
            return Err(Problem::unprocessable(format!(
                "interval_s {s} must be 1 to 86400 seconds"
            )))
        }
        (CommandKind::SetInterval, None) => {
            return Err(Problem::unprocessable("set_interval needs interval_s"));
        }
        (_, Some(_)) => {
            return Err(Problem::unprocessable(format!(
                "interval_s is only for set_interval commands, not {}",
                kind.name()
            )))
        }
        (_, None) => None,
    };
    let expires_in = body.expires_in.unwrap_or(DEFAULT_EXPIRES_IN_S);
    if expires_in == 0 || expires_in > MAX_EXPIRES_IN_S {
        return Err(Problem::unprocessable(format!(
            "expires_in {expires_in} must be 1 to {MAX_EXPIRES_IN_S} seconds"
        )));
    }
    // Microsecond precision, what the store keeps, so the response equals a later read.
    let now = Utc::now().trunc_subsecs(6);
    let command = DeviceCommand {
        id: new_id(),
        seq: 0,
        device_id: imei.to_owned(),
        kind: kind.name().to_owned(),
        text,
        interval_s,
        status: CommandStatus::Pending,
        protocol: None,
        reference: None,
        created_at: now,
        // In range: at most seven days ahead.
        expires_at: now + TimeDelta::seconds(expires_in as i64),
        sent_at: None,
        completed_at: None,
        reply: None,
        error: None,
    };
    Ok(command)
}

/// Queues a command for a device and sends it at once if the device is connected.
#[utoipa::path(
    post, path = "/api/v1/devices/{imei}/commands", tag = "devices",
    security(("bearer" = [])),
    params(("imei" = String, Path, description = "The device id as registered.")),
    request_body = CommandBody,
    responses(
        (status = 201, description = "The command, pending or already sent.", body = DeviceCommand),
        (status = 415, response = doc::UnsupportedMediaType),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(imei): Path<String>,
    JsonObject(body): JsonObject<CommandBody>,
) -> Result<(StatusCode, Json<DeviceCommand>), Problem> {
    caller.require(SENDERS, "send commands to devices")?;
    let device = state.store.device(&identity::normalise(&imei)).await?;
    let command = validate(&device.imei, body)?;
    // Judged by the way the device is reachable now, else by the protocol it last used.
    let wanted = crate::commands::command_of(&command).map_err(Problem::unprocessable)?;
    let verdict = state
        .commands
        .check_live(&device.imei, &wanted)
        .or_else(|| {
            let protocol = device.protocol.as_deref()?.parse::<Protocol>().ok()?;
            Some(reply_ref(protocol, &wanted, 0).map(drop))
        });
    if let Some(Err(e)) = verdict {
        return Err(Problem::unprocessable(e.to_string()));
    }
    let stored = state.commands.submit(command).await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

/// Queues a `set_interval` of `seconds` for each of the person's devices whose protocol can
/// carry one (a device never seen, whose protocol is unknown, is skipped: its first
/// connection comes at the default interval and the next level change reaches it). Each is a
/// normal command: sent at once to a connected device, queued for an offline one (for the
/// longest expiry, seven days) and sent when it connects.
///
/// # Errors
/// Store errors; commands queued before the error stay queued.
pub(crate) async fn queue_reporting_interval(
    state: &AppState,
    person: crate::model::PersonId,
    seconds: u32,
) -> Result<Vec<DeviceCommand>, crate::store::StoreError> {
    let wanted = ewall_protocol::Command::SetInterval { seconds };
    let mut queued = Vec::new();
    for device in state.store.devices().await? {
        if device.person_id != person {
            continue;
        }
        let carried = match state.commands.check_live(&device.imei, &wanted) {
            Some(verdict) => verdict.is_ok(),
            None => device
                .protocol
                .as_deref()
                .and_then(|p| p.parse::<Protocol>().ok())
                .is_some_and(|p| reply_ref(p, &wanted, 0).is_ok()),
        };
        if !carried {
            tracing::debug!(
                device = device.imei,
                "The device cannot be set a reporting interval."
            );
            continue;
        }
        let now = Utc::now().trunc_subsecs(6);
        let command = DeviceCommand {
            id: new_id(),
            seq: 0,
            device_id: device.imei.clone(),
            kind: CommandKind::SetInterval.name().to_owned(),
            text: None,
            interval_s: Some(seconds),
            status: CommandStatus::Pending,
            protocol: None,
            reference: None,
            created_at: now,
            expires_at: now + TimeDelta::seconds(MAX_EXPIRES_IN_S as i64),
            sent_at: None,
            completed_at: None,
            reply: None,
            error: None,
        };
        queued.push(state.commands.submit(command).await?);
    }
    Ok(queued)
}

/// A device's commands, newest first.
#[utoipa::path(
    get, path = "/api/v1/devices/{imei}/commands", tag = "devices",
    security(("bearer" = [])),
    params(("imei" = String, Path, description = "The device id as registered.")),
    responses((status = 200, description = "The device's commands.", body = CommandList)),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(imei): Path<String>,
) -> Result<Json<CommandList>, Problem> {
    caller.require(READERS, "read device commands")?;
    let device = state.store.device(&identity::normalise(&imei)).await?;
    let commands = state
        .store
        .device_commands(&device.imei, LIST_LIMIT)
        .await?;
    Ok(Json(CommandList { commands }))
}

/// One command of a device.
#[utoipa::path(
    get, path = "/api/v1/devices/{imei}/commands/{id}", tag = "devices",
    security(("bearer" = [])),
    params(
        ("imei" = String, Path, description = "The device id as registered."),
        ("id" = uuid::Uuid, Path, description = "Command id."),
    ),
    responses((status = 200, description = "The command.", body = DeviceCommand)),
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path((imei, id)): Path<(String, String)>,
) -> Result<Json<DeviceCommand>, Problem> {
    caller.require(READERS, "read device commands")?;
    let id = parse_id("command", &id)?;
    let command = state.store.command(id).await?;
    if command.device_id != identity::normalise(&imei) {
        return Err(Problem::not_found(format!("command {id} not found")));
    }
    Ok(Json(command))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(kind: &str) -> CommandBody {
        CommandBody {
            kind: kind.into(),
            text: None,
            interval_s: None,
            expires_in: None,
        }
    }

    #[test]
    fn bodies_are_checked_per_type() {
        assert!(validate("1", body("locate_now")).is_ok());
        assert!(validate("1", body("reboot")).is_err());
        assert!(
            validate("1", body("message")).is_err(),
            "message needs text"
        );
        assert!(
            validate("1", body("set_interval")).is_err(),
            "needs interval_s"
        );
        let with_text = CommandBody {
            text: Some("hi".into()),
            ..body("vibrate")
        };
        assert!(validate("1", with_text).is_err(), "text only for message");
        let interval = CommandBody {
            interval_s: Some(0),
            ..body("set_interval")
        };
        assert!(validate("1", interval).is_err());
        let forever = CommandBody {
            expires_in: Some(MAX_EXPIRES_IN_S + 1),
            ..body("vibrate")
        };
        assert!(validate("1", forever).is_err());
        let ok = validate(
            "1",
            CommandBody {
                text: Some("  回家  ".into()),
                ..body("message")
            },
        )
        .unwrap();
        assert_eq!(ok.text.as_deref(), Some("回家"));
        assert_eq!(ok.expires_at - ok.created_at, TimeDelta::seconds(3600));
    }
}
