//! `/api/v1/alerts`: the cursor feed (ascending `seq`, resumable with `after`; newest first or
//! only the unclosed ones for an operator's queue), and the
//! handling chain an operator takes an alert through: acknowledge, verify, dispose, close (or
//! resolve, every missing step at once), each step recorded with who took it; and the list of
//! those steps. An integration token is shown the alert fields its configuration allows
//! (`api::integration`).

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::body::from_object;
use super::integration::counted;
use super::openapi as doc;
use super::problem::Problem;
use super::{parse_id, AppState};
use crate::model::{Actor, Alert, AlertAction, Disposition};
use crate::store::{AlertActionRequest, AlertQuery, AlertStep, Role};

/// Who may handle alerts (and read how they were handled): never an integration token.
pub(super) const HANDLERS: &[Role] = &[Role::Admin, Role::Operator];
const READERS: &[Role] = &[Role::Admin, Role::Operator, Role::Integration];
/// Most alerts one page returns.
const PAGE_MAX: u32 = 1000;

/// Query of `GET /alerts`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// Alerts with a `seq` after this one (0, the default, starts at the beginning).
    #[serde(default)]
    #[param(minimum = 0)]
    after: Option<i64>,
    /// Only this person's alerts.
    #[serde(default)]
    #[param(value_type = Option<uuid::Uuid>)]
    person_id: Option<String>,
    /// Most alerts in the page (default 100).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// `true`: only alerts not yet closed, whatever their age.
    #[serde(default)]
    open: Option<bool>,
    /// `desc`: the newest `limit` alerts after `after`, newest first (an operator's queue);
    /// `asc`, the default, pages forwards from `after`.
    #[serde(default)]
    #[param(inline)]
    order: Option<FeedOrder>,
}

/// The order of a page of `GET /alerts`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FeedOrder {
    /// Oldest first, from `after` on: the cursor feed.
    #[default]
    Asc,
    /// Newest first.
    Desc,
}

/// A page of the alert feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertPage {
    /// In ascending `seq`, or descending with `order=desc`.
    pub alerts: Vec<Alert>,
    /// The `seq` to pass as `after` to read on: the highest one here, or `after` itself.
    pub next: i64,
}

/// A page of the feed: `{"alerts": [...], "next": SEQ}`; pass `next` as `after` to resume.
#[utoipa::path(
    get, path = "/api/v1/alerts", tag = "alerts",
    security(("bearer" = [])),
    params(FeedQuery),
    responses((status = 200, description = "A page of alerts.", body = AlertPage)),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<FeedQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    caller.require(READERS, "read alerts")?;
    let Query(query) = query?;
    let after = query.after.unwrap_or(0);
    if after < 0 {
        return Err(Problem::bad_request("`after` must be a seq of 0 or more"));
    }
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > PAGE_MAX {
        return Err(Problem::bad_request(format!(
            "`limit` must be between 1 and {PAGE_MAX}"
        )));
    }
    let person_id = query
        .person_id
        .as_deref()
        .map(|p| {
            p.parse()
                .map_err(|_| Problem::bad_request(format!("person_id {p:?} is not a person id")))
        })
        .transpose()?;
    let alerts = state
        .store
        .alerts(AlertQuery {
            after,
            person_id,
            limit,
            open_only: query.open.unwrap_or(false),
            newest_first: query.order == Some(FeedOrder::Desc),
        })
        .await?;
    let next = alerts.iter().map(|a| a.seq).max().unwrap_or(after);
    let count = alerts.len();
    let page = if caller.role == Role::Integration {
        let shown: Vec<Value> = alerts.iter().map(|a| state.integration.alert(a)).collect();
        Json(serde_json::json!({ "alerts": shown, "next": next })).into_response()
    } else {
        Json(AlertPage { alerts, next }).into_response()
    };
    Ok(counted(page, count))
}

/// One alert.
#[utoipa::path(
    get, path = "/api/v1/alerts/{id}", tag = "alerts",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Alert id.")),
    responses((status = 200, description = "The alert.", body = Alert)),
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    caller.require(READERS, "read alerts")?;
    let id = parse_id("alert", &id)?;
    let alert = state.store.alert(id).await?;
    let shown = if caller.role == Role::Integration {
        Json(state.integration.alert(&alert)).into_response()
    } else {
        Json(alert).into_response()
    };
    Ok(counted(shown, 1))
}

/// Body of ack, verify and close: an optional operator note. The body itself may be empty.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    /// What the operator did or saw, at most 4000 characters.
    #[serde(default)]
    #[schema(max_length = 4000, nullable = true)]
    note: Option<String>,
}

/// Body of dispose: what the alert was, and an optional note.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisposeBody {
    /// What the operator decided it was.
    disposition: Disposition,
    /// What the operator did or saw, at most 4000 characters.
    #[serde(default)]
    #[schema(max_length = 4000, nullable = true)]
    note: Option<String>,
}

/// Body of resolve: the disposition (needed unless the alert is already disposed) and an
/// optional note. The body itself may be empty.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    /// What the operator decided it was; needed unless the alert is already disposed.
    #[serde(default)]
    #[schema(nullable = true)]
    disposition: Option<Disposition>,
    /// What the operator did or saw, at most 4000 characters (kept on the closing step).
    #[serde(default)]
    #[schema(max_length = 4000, nullable = true)]
    note: Option<String>,
}

/// Most characters in a note.
const NOTE_MAX_CHARS: usize = 4000;

/// The body as `T`; `None` for an empty body or JSON null.
fn optional_body<T: DeserializeOwned>(body: &Bytes, shape: &str) -> Result<Option<T>, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let refused = |e: String| Problem::unprocessable(format!("body must be {shape}: {e}"));
    match serde_json::from_slice::<Value>(body) {
        Err(e) => Err(Problem::bad_request(format!("the body is not JSON: {e}"))),
        Ok(Value::Null) => Ok(None),
        Ok(Value::Object(object)) => from_object::<T>(object)
            .map(Some)
            .map_err(|p| refused(p.detail)),
        Ok(other) => Err(refused(format!("found {other}"))),
    }
}

/// Takes one handling step on an alert as `caller`.
async fn take_step(
    state: &AppState,
    caller: &Caller,
    id: &str,
    step: AlertStep,
    note: Option<String>,
) -> Result<Json<Alert>, Problem> {
    let id = parse_id("alert", id)?;
    if note
        .as_ref()
        .is_some_and(|n| n.chars().count() > NOTE_MAX_CHARS)
    {
        return Err(Problem::unprocessable(format!(
            "note must be at most {NOTE_MAX_CHARS} characters"
        )));
    }
    let request = AlertActionRequest {
        step,
        actor: Actor {
            token_id: Some(caller.token_id),
            label: caller.label.clone(),
        },
        note,
        at: Utc::now(),
    };
    Ok(Json(state.store.record_alert_action(id, request).await?))
}

/// A step that takes only a note.
async fn noted_step(
    state: AppState,
    caller: Caller,
    id: String,
    body: Bytes,
    step: AlertStep,
    action: &str,
) -> Result<Json<Alert>, Problem> {
    caller.require(HANDLERS, action)?;
    let note = optional_body::<NoteBody>(&body, "{\"note\": \"...\"}")?.and_then(|b| b.note);
    take_step(&state, &caller, &id, step, note).await
}

/// Acknowledges an open alert: an operator has seen it and takes it on (open → acknowledged).
#[utoipa::path(
    post, path = "/api/v1/alerts/{id}/ack", tag = "alerts",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Alert id.")),
    request_body(content = Option<NoteBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "The alert, acknowledged.", body = Alert),
        (status = 409, response = doc::Conflict),
    ),
)]
pub async fn acknowledge(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Alert>, Problem> {
    noted_step(
        state,
        caller,
        id,
        body,
        AlertStep::Acknowledge,
        "acknowledge alerts",
    )
    .await
}

/// Verifies an acknowledged alert: the operator has checked what happened (acknowledged →
/// verified).
#[utoipa::path(
    post, path = "/api/v1/alerts/{id}/verify", tag = "alerts",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Alert id.")),
    request_body(content = Option<NoteBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "The alert, verified.", body = Alert),
        (status = 409, response = doc::Conflict),
    ),
)]
pub async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Alert>, Problem> {
    noted_step(state, caller, id, body, AlertStep::Verify, "verify alerts").await
}

/// Disposes of a verified alert: what it was and what was done (verified → disposed).
#[utoipa::path(
    post, path = "/api/v1/alerts/{id}/dispose", tag = "alerts",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Alert id.")),
    request_body(content = DisposeBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The alert, disposed.", body = Alert),
        (status = 409, response = doc::Conflict),
    ),
)]
pub async fn dispose(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Alert>, Problem> {
    caller.require(HANDLERS, "dispose of alerts")?;
    let shape =
        "{\"disposition\": \"false_alarm|warned|escalated|returned_by_itself\", \"note\": \"...\"}";
    let body = optional_body::<DisposeBody>(&body, shape)?.ok_or_else(|| {
        Problem::unprocessable(format!("body must be {shape}: a disposition is needed"))
    })?;
    take_step(
        &state,
        &caller,
        &id,
        AlertStep::Dispose(body.disposition),
        body.note,
    )
    .await
}

/// Closes a disposed alert: followed up and finished (disposed → closed).
#[utoipa::path(
    post, path = "/api/v1/alerts/{id}/close", tag = "alerts",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Alert id.")),
    request_body(content = Option<NoteBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "The alert, closed.", body = Alert),
        (status = 409, response = doc::Conflict),
    ),
)]
pub async fn close(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Alert>, Problem> {
    noted_step(state, caller, id, body, AlertStep::Close, "close alerts").await
}

/// Resolves an alert in one request: takes every step still missing up to closed, each
/// recorded as its own action (with its own event) by the caller; the note goes on the closing
/// step. A disposition is needed unless the alert is already disposed (409 otherwise).
#[utoipa::path(
    post, path = "/api/v1/alerts/{id}/resolve", tag = "alerts",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Alert id.")),
    request_body(content = Option<ResolveBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "The alert, closed.", body = Alert),
        (status = 409, response = doc::Conflict),
    ),
)]
pub async fn resolve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Alert>, Problem> {
    caller.require(HANDLERS, "resolve alerts")?;
    let shape = "{\"disposition\": \"...\", \"note\": \"...\"}";
    let body = optional_body::<ResolveBody>(&body, shape)?.unwrap_or_default();
    take_step(
        &state,
        &caller,
        &id,
        AlertStep::Resolve(body.disposition),
        body.note,
    )
    .await
}

/// The steps taken on an alert.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActionList {
    /// Oldest first.
    pub actions: Vec<AlertAction>,
}

/// The handling steps taken on an alert, oldest first: who (token id and label), when, the
/// state moved from and to, the disposition and the note of each.
#[utoipa::path(
    get, path = "/api/v1/alerts/{id}/actions", tag = "alerts",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Alert id.")),
    responses((status = 200, description = "The alert's actions.", body = ActionList)),
)]
pub async fn actions(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ActionList>, Problem> {
    caller.require(HANDLERS, "read alert actions")?;
    let id = parse_id("alert", &id)?;
    let actions = state.store.alert_actions(id).await?;
    Ok(Json(ActionList { actions }))
}
