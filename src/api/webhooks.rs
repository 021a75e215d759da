//! `/api/v1/webhooks/{name}/deliveries`: a webhook's dead letters (deliveries that failed
//! every attempt) and their redelivery.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::problem::Problem;
use super::{parse_id, AppState};
use crate::model::Event;
use crate::store::{DeliveryState, Role};

const READERS: &[Role] = &[Role::Admin, Role::Operator];
const MANAGERS: &[Role] = &[Role::Admin];
/// Most deliveries one page returns.
const PAGE_MAX: u32 = 1000;

/// Query of `GET /webhooks/{name}/deliveries`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// Only deliveries in this state.
    #[serde(default)]
    #[param(value_type = Option<DeliveryState>)]
    state: Option<String>,
    /// Deliveries of events after this `seq`.
    #[serde(default)]
    after: Option<i64>,
    /// Most deliveries in the page (default 100).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// One delivery of an event to a webhook.
#[derive(Debug, Serialize, ToSchema)]
pub struct Delivery {
    /// The event id, sent as `webhook-id`.
    pub id: uuid::Uuid,
    /// The event's `seq`.
    pub seq: i64,
    /// Where the delivery stands.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: u32,
    /// The last attempt's error.
    pub last_error: String,
    /// When it gave up.
    pub dead_at: chrono::DateTime<chrono::Utc>,
    /// When the receiver took it.
    pub delivered_at: Option<chrono::DateTime<chrono::Utc>>,
    /// What was delivered.
    pub event: Event,
}

/// A page of a webhook's deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    /// In ascending `seq`.
    pub deliveries: Vec<Delivery>,
    /// The `seq` to pass as `after` for the next page.
    pub next: i64,
}

/// What a redelivery request set going.
#[derive(Debug, Serialize, ToSchema)]
pub struct Redelivering {
    /// Dead letters queued again.
    pub redelivering: u64,
}

fn known(state: &AppState, name: &str) -> Result<(), Problem> {
    if state.webhooks.iter().any(|w| w == name) {
        Ok(())
    } else {
        Err(Problem::not_found(format!(
            "no webhook named {name:?} is configured"
        )))
    }
}

/// `{"deliveries": [...], "next": SEQ}`: each with `id` (the event id, sent as `webhook-id`),
/// `seq`, `state` (dead, pending, delivered), `attempts`, `last_error`, `dead_at`,
/// `delivered_at` and the `event`.
#[utoipa::path(
    get, path = "/api/v1/webhooks/{name}/deliveries", tag = "alerts",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The webhook's configured name."), DeliveriesQuery),
    responses((status = 200, description = "A page of deliveries.", body = DeliveryPage)),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    query: Result<Query<DeliveriesQuery>, QueryRejection>,
) -> Result<Json<DeliveryPage>, Problem> {
    caller.require(READERS, "read webhook deliveries")?;
    known(&state, &name)?;
    let Query(query) = query?;
    let filter = query
        .state
        .as_deref()
        .map(|s| s.parse::<DeliveryState>().map_err(Problem::bad_request))
        .transpose()?;
    let after = query.after.unwrap_or(0);
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > PAGE_MAX {
        return Err(Problem::bad_request(format!(
            "`limit` must be between 1 and {PAGE_MAX}"
        )));
    }
    let deliveries = state
        .store
        .webhook_deliveries(&name, filter, after, limit)
        .await?;
    let next = deliveries.last().map_or(after, |d| d.event.seq);
    let deliveries = deliveries
        .into_iter()
        .map(|d| Delivery {
            id: d.event.id,
            seq: d.event.seq,
            state: d.state,
            attempts: d.attempts,
            last_error: d.last_error,
            dead_at: d.dead_at,
            delivered_at: d.delivered_at,
            event: d.event,
        })
        .collect();
    Ok(Json(DeliveryPage { deliveries, next }))
}

/// Asks for one dead letter to be redelivered: 202 `{"redelivering": 1}`; 404 for an unknown
/// delivery, 409 when it is not dead.
#[utoipa::path(
    post, path = "/api/v1/webhooks/{name}/deliveries/{id}/redeliver", tag = "alerts",
    security(("bearer" = [])),
    params(
        ("name" = String, Path, description = "The webhook's configured name."),
        ("id" = uuid::Uuid, Path, description = "The delivery (event) id."),
    ),
    responses(
        (status = 202, description = "Queued again.", body = Redelivering),
        (status = 409, response = super::openapi::Conflict),
    ),
)]
pub async fn redeliver_one(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Redelivering>), Problem> {
    caller.require(MANAGERS, "redeliver webhooks")?;
    known(&state, &name)?;
    let id = parse_id("webhook delivery", &id)?;
    let n = state.store.request_redelivery(&name, Some(id)).await?;
    Ok((StatusCode::ACCEPTED, Json(Redelivering { redelivering: n })))
}

/// Asks for every dead letter of the webhook to be redelivered: 202 `{"redelivering": N}`.
#[utoipa::path(
    post, path = "/api/v1/webhooks/{name}/deliveries/redeliver", tag = "alerts",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The webhook's configured name.")),
    responses((status = 202, description = "Every dead letter queued again.", body = Redelivering)),
)]
pub async fn redeliver_all(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Redelivering>), Problem> {
    caller.require(MANAGERS, "redeliver webhooks")?;
    known(&state, &name)?;
    let n = state.store.request_redelivery(&name, None).await?;
    Ok((StatusCode::ACCEPTED, Json(Redelivering { redelivering: n })))
}
