//! `GET /api/v1/alerts/stream`: the alert events as server-sent events (`id:` = `seq`),
//! resumable with `Last-Event-ID` or `?after=`, with keep-alive comments. An integration
//! token's stream carries only the alert fields it may see, and every batch is recorded in the
//! reads log.

use axum::extract::rejection::QueryRejection;
use axum::extract::{OriginalUri, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::Caller;
use super::problem::Problem;
use super::AppState;
use crate::alert::dispatch::sse::{alert_stream, IntegrationReader, KEEP_ALIVE};
use crate::store::Role;

const READERS: &[Role] = &[Role::Admin, Role::Operator, Role::Integration];

/// Query of `GET /alerts/stream`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Start after this `seq` (0 replays everything); `Last-Event-ID` wins over it.
    #[serde(default)]
    #[param(minimum = 0)]
    after: Option<i64>,
}

/// The stream. `Last-Event-ID` wins over `after`; with neither it starts at the end of the
/// feed (only events from now on); `after=0` replays everything.
#[utoipa::path(
    get, path = "/api/v1/alerts/stream", tag = "alerts",
    security(("bearer" = [])),
    params(
        StreamQuery,
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this `seq`.", minimum = 0),
    ),
    responses(
        (status = 200, description = "Server-sent events, `id:` = `seq`, `data:` = the event \
            as in the integration feed; keep-alive comments between them. The stream does not end.",
         content_type = "text/event-stream", body = String),
    ),
)]
pub async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    caller.require(READERS, "read alerts")?;
    let Query(query) = query?;
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|seq| *seq >= 0)
                .ok_or_else(|| {
                    Problem::bad_request("Last-Event-ID must be the seq (an integer) of an event")
                })
        })
        .transpose()?;
    if query.after.is_some_and(|a| a < 0) {
        return Err(Problem::bad_request("`after` must be a seq of 0 or more"));
    }
    let after = match last_event_id.or(query.after) {
        Some(after) => after,
        None => state.store.last_event_seq().await?,
    };
    let reader = (caller.role == Role::Integration).then(|| IntegrationReader {
        token_id: caller.token_id,
        fields: state.integration.fields.clone(),
        path: uri.path().to_owned(),
    });
    let events = alert_stream(
        state.store.clone(),
        after,
        state.shutdown.clone(),
        state.metrics.clone(),
        reader,
    );
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}
