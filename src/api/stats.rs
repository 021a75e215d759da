//! `GET /api/v1/stats/alerts`: counts of the alerts raised in a window by kind, zone, severity,
//! supervision level, state and disposition, and the false-alarm rate the monitoring centre
//! measures from its own dispositions.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use utoipa::IntoParams;

use super::alerts::HANDLERS;
use super::auth::Caller;
use super::openapi as doc;
use super::problem::Problem;
use super::AppState;
use crate::store::AlertStats;

/// The window when `from` is not given: this long before `to`.
const DEFAULT_WINDOW_DAYS: i64 = 30;

/// Query of `GET /stats/alerts`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// Start of the window (alerts raised at or after it), RFC 3339; 30 days before `to` when
    /// absent. Must be before `to`.
    #[serde(default)]
    #[param(value_type = Option<DateTime<Utc>>)]
    from: Option<String>,
    /// End of the window (alerts raised before it), RFC 3339; now when absent.
    #[serde(default)]
    #[param(value_type = Option<DateTime<Utc>>)]
    to: Option<String>,
}

fn parse_time(key: &str, raw: &str) -> Result<DateTime<Utc>, Problem> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            Problem::bad_request(format!(
                "`{key}` must be an RFC 3339 time such as 2026-01-31T08:00:00Z: {e}"
            ))
        })
}

/// Counts of the alerts raised in `[from, to)`: by kind, zone, severity, the person's
/// supervision level, state and disposition, with repeats counted apart, and the false-alarm
/// rate (`false_alarm` dispositions over disposed alerts).
#[utoipa::path(
    get, path = "/api/v1/stats/alerts", tag = "alerts",
    security(("bearer" = [])),
    params(StatsQuery),
    responses(
        (status = 200, description = "The counts.", body = AlertStats),
        (status = 422, response = doc::UnprocessableEntity),
    ),
)]
pub async fn alerts(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Json<AlertStats>, Problem> {
    caller.require(HANDLERS, "read alert statistics")?;
    let Query(query) = query?;
    let to = query
        .to
        .as_deref()
        .map(|t| parse_time("to", t))
        .transpose()?
        .unwrap_or_else(Utc::now);
    let from = match query.from.as_deref() {
        Some(t) => parse_time("from", t)?,
        None => to
            .checked_sub_signed(Duration::days(DEFAULT_WINDOW_DAYS))
            .ok_or_else(|| Problem::unprocessable("`to` is too early for a default `from`"))?,
    };
    if from >= to {
        return Err(Problem::unprocessable("`from` must be before `to`"));
    }
    Ok(Json(state.store.alert_stats(from, to).await?))
}
