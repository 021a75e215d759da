//! `GET /api/v1/integration/feed`: the whole event feed (alerts, their state changes and the
//! exit-entry filing events) by cursor, for the police entry-exit integration, which is shown
//! the alert fields its configuration allows.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::integration::counted;
use super::problem::Problem;
use super::AppState;
use crate::model::Event;
use crate::store::{EventQuery, Role};

const READERS: &[Role] = &[Role::Admin, Role::Operator, Role::Integration];
/// Most events one page returns.
const PAGE_MAX: u32 = 1000;

/// Query of `GET /integration/feed`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// Events with a `seq` after this one (default 0, the beginning).
    #[serde(default)]
    #[param(minimum = 0)]
    after: Option<i64>,
    /// Most events in the page (default 100).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// A page of the event feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    /// In ascending `seq`.
    pub events: Vec<Event>,
    /// The `seq` to pass as `after` for the next page.
    pub next: i64,
}

/// A page: `{"events": [...], "next": SEQ}`; pass `next` as `after` to resume.
#[utoipa::path(
    get, path = "/api/v1/integration/feed", tag = "alerts",
    security(("bearer" = [])),
    params(FeedQuery),
    responses((status = 200, description = "A page of events.", body = EventPage)),
)]
pub async fn feed(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<FeedQuery>, QueryRejection>,
) -> Result<Response, Problem> {
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
    let events = if caller.role == Role::Integration {
        events
            .into_iter()
            .map(|e| state.integration.event(e))
            .collect()
    } else {
        events
    };
    let count = events.len();
    Ok(counted(
        Json(EventPage { events, next }).into_response(),
        count,
    ))
}
