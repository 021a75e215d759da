//! `/api/v1/alerts`: the cursor feed (ascending `seq`, resumable with `after`), and the
//! operator's acknowledge and resolve. An integration token is shown the alert fields its
//! configuration allows (`api::integration`).

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::body::from_object;
use super::integration::counted;
use super::openapi as doc;
use super::problem::Problem;
use super::{parse_id, AppState};
use crate::model::{Alert, AlertState};
use crate::store::{AlertQuery, Role};

const HANDLERS: &[Role] = &[Role::Admin, Role::Operator];
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
}

/// A page of the alert feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertPage {
    /// In ascending `seq`.
    pub alerts: Vec<Alert>,
    /// The `seq` to pass as `after` for the next page (the last one here, or `after` itself).
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
        })
        .await?;
    let next = alerts.last().map_or(after, |a| a.seq);
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

/// Body of ack and resolve: an optional operator note. The body itself may be empty.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    /// What the operator did or saw, at most 4000 characters.
    #[serde(default)]
    #[schema(max_length = 4000, nullable = true)]
    note: Option<String>,
}

async fn transition(
    state: AppState,
    caller: Caller,
    id: String,
    body: Bytes,
    to: AlertState,
    action: &str,
) -> Result<Json<Alert>, Problem> {
    caller.require(HANDLERS, action)?;
    let id = parse_id("alert", &id)?;
    // The body is optional: an empty one, or JSON null, means no note.
    let note = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let refused =
            |e: String| Problem::unprocessable(format!("body must be {{\"note\": \"...\"}}: {e}"));
        match serde_json::from_slice::<Value>(&body) {
            Err(e) => return Err(Problem::bad_request(format!("the body is not JSON: {e}"))),
            Ok(Value::Null) => None,
            Ok(Value::Object(object)) => {
                from_object::<NoteBody>(object)
                    .map_err(|p| refused(p.detail))?
                    .note
            }
            Ok(other) => return Err(refused(format!("found {other}"))),
        }
    };
    if note.as_ref().is_some_and(|n| n.chars().count() > 4000) {
        return Err(Problem::unprocessable(
            "note must be at most 4000 characters",
        ));
    }
    Ok(Json(
        state
            .store
            .set_alert_state(id, to, note, Utc::now())
            .await?,
    ))
}

/// Acknowledges an alert: an operator has seen it.
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
    transition(
        state,
        caller,
        id,
        body,
        AlertState::Acknowledged,
        "acknowledge alerts",
    )
    .await
}

/// Resolves an alert: it has been dealt with.
#[utoipa::path(
    post, path = "/api/v1/alerts/{id}/resolve", tag = "alerts",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Alert id.")),
    request_body(content = Option<NoteBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "The alert, resolved.", body = Alert),
        (status = 409, response = doc::Conflict),
    ),
)]
pub async fn resolve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Alert>, Problem> {
    transition(
        state,
        caller,
        id,
        body,
        AlertState::Resolved,
        "resolve alerts",
    )
    .await
}
