//! `/api/v1/broadcasts`: one text (a legal-education lesson, 法制教育, or a notice) sent as a
//! `message` downlink command to every device of the persons addressed, by level, by list or
//! by zone. The broadcast and its commands are stored in one transaction, then handed to the
//! [`CommandDispatcher`](crate::commands::CommandDispatcher): connected devices get it at
//! once, offline ones when they next connect, until it expires. Its counts are read back from
//! the commands' states.

use std::collections::HashSet;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use ewall_protocol::{command::reply_ref, CommandKind, Protocol};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::body::JsonObject;
use super::openapi as doc;
use super::problem::Problem;
use super::{parse_id, AppState};
use crate::model::{new_id, Actor, CommandStatus, DeviceCommand, PersonId, ZoneScope};
use crate::store::reports::{Broadcast, BroadcastSummary, BroadcastTarget};
use crate::store::{Role, StoreError};

/// Who may broadcast and read broadcasts: the roles that send commands.
const SENDERS: &[Role] = &[Role::Admin, Role::Operator];
/// Expiry when the request names none: a day, so a device switched off overnight gets it.
const DEFAULT_EXPIRES_IN_S: i64 = 24 * 3600;
/// Longest expiry accepted: seven days, as for any command.
const MAX_EXPIRES_IN_S: i64 = 7 * 24 * 3600;
/// Longest text, in characters, as for any message command.
const MAX_TEXT_CHARS: usize = 500;
/// Most persons one broadcast may list.
const MAX_LISTED_PERSONS: usize = 10_000;
/// Broadcasts listed by default, and at most.
const LIST_DEFAULT: u32 = 50;
const LIST_MAX: u32 = 500;

/// Body of `POST /broadcasts`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BroadcastBody {
    /// The message, 1 to 500 characters.
    #[schema(min_length = 1, max_length = 500)]
    text: String,
    /// Whom to: `{"level": "strict"}`, `{"person_ids": [...]}` or `{"zone_id": "..."}`.
    to: BroadcastTarget,
    /// When the message expires unless a device answered (RFC 3339; default a day from now,
    /// at most seven days).
    #[serde(default)]
    #[schema(value_type = Option<DateTime<Utc>>)]
    expires_at: Option<String>,
}

/// `GET /broadcasts`.
#[derive(Debug, Serialize, ToSchema)]
pub struct BroadcastList {
    /// The newest broadcasts first.
    pub broadcasts: Vec<BroadcastSummary>,
}

/// Query of `GET /broadcasts`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Most broadcasts returned (default 50, at most 500).
    #[serde(default)]
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// The persons `target` addresses, each once, in a stable order.
async fn addressed(state: &AppState, target: &BroadcastTarget) -> Result<Vec<PersonId>, Problem> {
    let persons = state.store.persons().await?;
    let mut chosen: Vec<PersonId> = match target {
        BroadcastTarget::Level(level) => persons
            .iter()
            .filter(|p| p.level == *level)
            .map(|p| p.id)
            .collect(),
        BroadcastTarget::PersonIds(ids) => {
            if ids.is_empty() || ids.len() > MAX_LISTED_PERSONS {
                return Err(Problem::unprocessable(format!(
                    "person_ids must list 1 to {MAX_LISTED_PERSONS} persons"
                )));
            }
            let known: HashSet<PersonId> = persons.iter().map(|p| p.id).collect();
            if let Some(unknown) = ids.iter().find(|id| !known.contains(id)) {
                return Err(Problem::unprocessable(format!(
                    "person {unknown} does not exist"
                )));
            }
            ids.clone()
        }
        BroadcastTarget::ZoneId(zone) => {
            let zone = match state.store.zone(*zone).await {
                Ok(zone) => zone,
                Err(StoreError::NotFound { .. }) => {
                    return Err(Problem::unprocessable(format!(
                        "zone {zone} does not exist"
                    )))
                }
                Err(e) => return Err(e.into()),
            };
            match zone.scope {
                ZoneScope::Persons => zone.persons,
                scope => persons
                    .iter()
                    .filter(|p| scope.covers(p.level))
                    .map(|p| p.id)
                    .collect(),
            }
        }
    };
    let mut seen = HashSet::new();
    chosen.retain(|id| seen.insert(*id));
    Ok(chosen)
}

/// Sends a text to every device of the persons addressed, as one `message` command per device
/// (queued for a device that is offline, until `expires_at`). A device whose protocol cannot
/// carry a message (an H02 tracker) gets a command failed with the reason,
/// counted as `failed`. Recorded in the actions chain (`broadcast.create`).
#[utoipa::path(
    post, path = "/api/v1/broadcasts", tag = "devices",
    security(("bearer" = [])),
    request_body = BroadcastBody,
    responses(
        (status = 201, description = "The broadcast, queued, with its counts.", body = BroadcastSummary),
        (status = 415, response = doc::UnsupportedMediaType),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonObject(body): JsonObject<BroadcastBody>,
) -> Result<(StatusCode, Json<BroadcastSummary>), Problem> {
    caller.require(SENDERS, "broadcast messages")?;
    let text = body.text.trim().to_owned();
    if text.is_empty() || text.chars().count() > MAX_TEXT_CHARS {
        return Err(Problem::unprocessable(format!(
            "text must be 1 to {MAX_TEXT_CHARS} characters"
        )));
    }
    let now = Utc::now().trunc_subsecs(6);
    let expires_at = match body.expires_at.as_deref() {
        None => now + TimeDelta::seconds(DEFAULT_EXPIRES_IN_S),
        Some(raw) => {
            let at = DateTime::parse_from_rfc3339(raw)
                .map_err(|e| {
                    Problem::unprocessable(format!(
                        "expires_at must be an RFC 3339 time such as 2027-01-31T08:00:00Z: {e}"
                    ))
                })?
                .with_timezone(&Utc)
                .trunc_subsecs(6);
            if at <= now || at > now + TimeDelta::seconds(MAX_EXPIRES_IN_S) {
                return Err(Problem::unprocessable(
                    "expires_at must be in the future and at most seven days ahead",
                ));
            }
            at
        }
    };
    let persons: HashSet<PersonId> = addressed(&state, &body.to).await?.into_iter().collect();
    let broadcast = Broadcast {
        id: new_id(),
        text: text.clone(),
        to: body.to,
        created_at: now,
        expires_at,
        created_by: Actor {
            token_id: Some(caller.token_id),
            label: caller.label.clone(),
        },
    };
    let mut devices = state.store.devices().await?;
    devices.retain(|d| persons.contains(&d.person_id));
    devices.sort_by(|a, b| a.imei.cmp(&b.imei));
    let wanted = ewall_protocol::Command::Message { text: text.clone() };
    let commands: Vec<DeviceCommand> = devices
        .iter()
        .map(|device| {
            // Judged as a single command is: by the device's live link, else by the protocol
            // it last used. One that cannot be carried (an H02 tracker has no text command) is
            // stored failed with the reason, so the counts say so at once; a device never
            // seen is queued and judged when it connects.
            let verdict = state
                .commands
                .check_live(&device.imei, &wanted)
                .or_else(|| {
                    let protocol = device.protocol.as_deref()?.parse::<Protocol>().ok()?;
                    Some(reply_ref(protocol, &wanted, 0).map(drop))
                });
            let refusal = match verdict {
                Some(Err(e)) => Some(e.to_string()),
                _ => None,
            };
            DeviceCommand {
                id: new_id(),
                seq: 0,
                device_id: device.imei.clone(),
                kind: CommandKind::Message.name().to_owned(),
                text: Some(text.clone()),
                interval_s: None,
                status: if refusal.is_some() {
                    CommandStatus::Failed
                } else {
                    CommandStatus::Pending
                },
                protocol: None,
                reference: None,
                created_at: now,
                expires_at,
                sent_at: None,
                completed_at: refusal.as_ref().map(|_| now),
                reply: None,
                error: refusal,
            }
        })
        .collect();
    let stored = state.store.create_broadcast(&broadcast, &commands).await?;
    state.commands.stored(&stored);
    let summary = state.store.broadcast(broadcast.id).await?;
    Ok((StatusCode::CREATED, Json(summary)))
}

/// One broadcast with its counts: devices targeted, pending, delivered, acknowledged,
/// expired, failed.
#[utoipa::path(
    get, path = "/api/v1/broadcasts/{id}", tag = "devices",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Broadcast id.")),
    responses((status = 200, description = "The broadcast.", body = BroadcastSummary)),
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<BroadcastSummary>, Problem> {
    caller.require(SENDERS, "read broadcasts")?;
    let id = parse_id("broadcast", &id)?;
    Ok(Json(state.store.broadcast(id).await?))
}

/// The newest broadcasts with their counts.
#[utoipa::path(
    get, path = "/api/v1/broadcasts", tag = "devices",
    security(("bearer" = [])),
    params(ListQuery),
    responses((status = 200, description = "The broadcasts, newest first.", body = BroadcastList)),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<BroadcastList>, Problem> {
    caller.require(SENDERS, "read broadcasts")?;
    let Query(query) = query?;
    let limit = query.limit.unwrap_or(LIST_DEFAULT);
    if limit == 0 || limit > LIST_MAX {
        return Err(Problem::bad_request(format!(
            "`limit` must be between 1 and {LIST_MAX}"
        )));
    }
    Ok(Json(BroadcastList {
        broadcasts: state.store.broadcasts(limit).await?,
    }))
}
