//! `GET /api/v1/integration/feed`: the whole event feed (alerts, their state changes and the
//! exit-entry filing events) by cursor, for the police entry-exit integration.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::problem::Problem;
use super::AppState;
use crate::store::{EventQuery, Role};

const READERS: &[Role] = &[Role::Admin, Role::Operator, Role::Integration];
/// Most events one page returns.
const PAGE_MAX: u32 = 1000;

/// Query of `GET /integration/feed`.
#[derive(Debug, Deserialize)]
pub struct FeedQuery {
    #[serde(default)]
    after: Option<i64>,
    #[serde(default)]
    limit: Option<u32>,
}

/// A page: `{"events": [...], "next": SEQ}`; pass `next` as `after` to resume.
pub async fn feed(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<FeedQuery>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
    caller.require(READERS, "read the integration feed")?;
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
    let events = state
        .store
        .events(EventQuery {
            after,
            limit,
            alerts_only: false,
        })
        .await?;
    let next = events.last().map_or(after, |e| e.seq);
    Ok(Json(json!({ "events": events, "next": next })))
}
