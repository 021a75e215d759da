//! `/api/v1/webhooks/{name}/deliveries`: a webhook's dead letters (deliveries that failed
//! every attempt) and their redelivery.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::problem::Problem;
use super::{parse_id, AppState};
use crate::store::{DeliveryState, Role};

const READERS: &[Role] = &[Role::Admin, Role::Operator];
const MANAGERS: &[Role] = &[Role::Admin];
/// Most deliveries one page returns.
const PAGE_MAX: u32 = 1000;

/// Query of `GET /webhooks/{name}/deliveries`.
#[derive(Debug, Deserialize)]
pub struct DeliveriesQuery {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    after: Option<i64>,
    #[serde(default)]
    limit: Option<u32>,
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
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    query: Result<Query<DeliveriesQuery>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
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
    let deliveries: Vec<Value> = deliveries
        .into_iter()
        .map(|d| {
            json!({
                "id": d.event.id,
                "seq": d.event.seq,
                "state": d.state,
                "attempts": d.attempts,
                "last_error": d.last_error,
                "dead_at": d.dead_at,
                "delivered_at": d.delivered_at,
                "event": d.event,
            })
        })
        .collect();
    Ok(Json(json!({ "deliveries": deliveries, "next": next })))
}

/// Asks for one dead letter to be redelivered: 202 `{"redelivering": 1}`; 404 for an unknown
/// delivery, 409 when it is not dead.
pub async fn redeliver_one(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    caller.require(MANAGERS, "redeliver webhooks")?;
    known(&state, &name)?;
    let id = parse_id("webhook delivery", &id)?;
    let n = state.store.request_redelivery(&name, Some(id)).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "redelivering": n }))))
}

/// Asks for every dead letter of the webhook to be redelivered: 202 `{"redelivering": N}`.
pub async fn redeliver_all(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    caller.require(MANAGERS, "redeliver webhooks")?;
    known(&state, &name)?;
    let n = state.store.request_redelivery(&name, None).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "redelivering": n }))))
}
