//! The police entry-exit integration's side of the API: what an `integration` token may call,
//! which alert fields it sees, the record kept of every request it makes, and the border hits
//! it reports.
//!
//! - **Routes.** An integration token reads alerts (`GET /alerts`, `/alerts/{id}`,
//!   `/alerts/stream`) and the integration feed, and reports border hits; [`integration_may`]
//!   refuses it everything else with 403 at authentication, before a body is read, so a route
//!   added later stays closed to it until it is listed here.
//! - **Fields.** It sees the alert fields `[integration] fields` lists ([`IntegrationConfig`];
//!   by default all but the operator's `note`), on every channel it reads: the alert pages, one
//!   alert, the stream, the feed, and the MQTT alert topic it subscribes to. The filter is the
//!   one webhooks use ([`crate::alert::select_fields`]).
//! - **Reads log.** [`record_reads`] wraps the API: each request an integration token makes is
//!   written to the store (who, when, method, path and query, status, how many records) before
//!   its answer leaves; when that write fails the answer is withheld (500), so nothing is read
//!   unrecorded. Admins list the log at `GET /integration/reads`.
//! - **Border hits.** `POST /integration/border-hits` raises a `border_hit` alert (critical) in
//!   the store's feed at once, so every dispatcher carries it; one per checking authority's
//!   reference, so a retried report answers with the alert already raised.

use std::sync::{Arc, Mutex};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{error, info};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::auth::Caller;
use super::body::JsonObject;
use super::openapi as doc;
use super::problem::Problem;
use super::text::check_name;
use super::{params, AppState};
use crate::alert::select_fields;
use crate::model::{
    new_id, Alert, AlertKind, AlertPosition, AlertState, BorderCheck, Event, Severity,
};
use crate::store::{IntegrationRead, IntegrationReadQuery, Role};

/// The routes (method, matched path) an integration token may call.
const INTEGRATION_ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/alerts"),
    ("GET", "/api/v1/alerts/stream"),
    ("GET", "/api/v1/alerts/{id}"),
    ("GET", "/api/v1/integration/feed"),
    ("POST", "/api/v1/integration/border-hits"),
];

/// Who may report a border hit: the integration, and an admin acting for it.
const REPORTERS: &[Role] = &[Role::Admin, Role::Integration];
/// Who may read the reads log.
const AUDITORS: &[Role] = &[Role::Admin];
/// Most reads one page returns.
const PAGE_MAX: u32 = 1000;
/// Largest `after` taken (the description's maximum; well inside `i64`).
const AFTER_MAX: i64 = 1_000_000_000_000_000_000;

/// Whether an integration token may call `method` on the route `route` (its matched path, with
/// `{id}` placeholders); `None` (no route matched) is refused.
pub fn integration_may(method: &Method, route: Option<&str>) -> bool {
    route.is_some_and(|route| {
        INTEGRATION_ROUTES
            .iter()
            .any(|(m, r)| *m == method.as_str() && *r == route)
    })
}

/// The `[integration]` section: what the police entry-exit integration is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntegrationConfig {
    /// Alert fields an integration token sees, on the API and on the MQTT alert topic;
    /// `id`, `seq`, `kind` and `person_id` always. Empty shows every field, the operators'
    /// notes included.
    pub fields: Vec<String>,
}

/// The alert fields shown by default: all but the operator's `note`. A field added to the
/// alert later is not shown until it is listed.
pub const DEFAULT_FIELDS: &[&str] = &[
    "id",
    "seq",
    "kind",
    "person_id",
    "device_id",
    "zone_id",
    "severity",
    "time",
    "raised_at",
    "position",
    "state",
    "late",
    "disposition",
    "acknowledged_at",
    "verified_at",
    "disposed_at",
    "closed_at",
    "repeat_of",
    "border",
];

impl Default for IntegrationConfig {
    fn default() -> Self {
        IntegrationConfig {
            fields: DEFAULT_FIELDS.iter().map(|f| (*f).to_owned()).collect(),
        }
    }
}

impl IntegrationConfig {
    /// Checks that every listed field is a field of the alert JSON.
    ///
    /// # Errors
    /// `(key, problem)` naming the first unknown field.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let known = alert_field_names();
        match self.fields.iter().find(|f| !known.contains(f)) {
            Some(unknown) => Err((
                "fields",
                format!(
                    "{unknown:?} is not an alert field; alert fields are {}",
                    known.join(", ")
                ),
            )),
            None => Ok(()),
        }
    }

    /// An alert as the integration sees it.
    pub fn alert(&self, alert: &Alert) -> Value {
        // An alert is plain data and always serialises.
        select_fields(
            &serde_json::to_value(alert).unwrap_or_default(),
            &self.fields,
        )
    }

    /// A feed event as the integration sees it: the alert in an alert event filtered, a filing
    /// event's person as it is.
    pub fn event(&self, mut event: Event) -> Event {
        if event.kind.is_alert() {
            event.data = select_fields(&event.data, &self.fields);
        }
        event
    }
}

/// The names of the alert JSON's fields, every optional one included.
pub fn alert_field_names() -> Vec<String> {
    let now = Utc::now();
    let full = Alert {
        id: new_id(),
        seq: 1,
        kind: AlertKind::BorderHit,
        person_id: new_id(),
        device_id: Some(String::new()),
        zone_id: Some(new_id()),
        severity: Severity::Critical,
        time: now,
        raised_at: now,
        position: Some(AlertPosition {
            lat: 0.0,
            lon: 0.0,
            accuracy_m: None,
        }),
        state: AlertState::Open,
        late: false,
        note: Some(String::new()),
        disposition: Some(crate::model::Disposition::FalseAlarm),
        acknowledged_at: Some(now),
        verified_at: Some(now),
        disposed_at: Some(now),
        closed_at: Some(now),
        repeat_of: Some(new_id()),
        border: Some(BorderCheck {
            port: String::new(),
            reference: String::new(),
        }),
    };
    match serde_json::to_value(full) {
        Ok(Value::Object(fields)) => fields.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Where the token of an integration request is noted (by [`Caller`] extraction) for
/// [`record_reads`], which puts it in each request's extensions.
#[derive(Debug, Clone, Default)]
pub struct ReadSlot(Arc<Mutex<Option<Uuid>>>);

impl ReadSlot {
    /// Notes that the request is made with integration token `id`.
    pub fn note_token(&self, id: Uuid) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(id);
    }

    fn token(&self) -> Option<Uuid> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How many records a response carries, for the reads log (a response extension).
#[derive(Debug, Clone, Copy)]
struct Records(u64);

/// `response`, marked as carrying `records` records.
pub fn counted(mut response: Response, records: usize) -> Response {
    response.extensions_mut().insert(Records(records as u64));
    response
}

/// Writes each request an integration token made to the reads log before its answer goes
/// out; a failed write withholds the answer (500).
pub async fn record_reads(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let slot = ReadSlot::default();
    request.extensions_mut().insert(slot.clone());
    let method = request.method().to_string();
    // Inside the nested `/api/v1` router the URI has lost its prefix; the original has it.
    let uri = request
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| request.uri().clone(), |o| o.0.clone());
    let path = uri.path().to_owned();
    let query = uri.query().map(str::to_owned);
    let response = next.run(request).await;
    let Some(token_id) = slot.token() else {
        return response;
    };
    let read = IntegrationRead {
        seq: 0,
        token_id,
        at: Utc::now().trunc_subsecs(6),
        method,
        path,
        query,
        status: response.status().as_u16(),
        records: response.extensions().get::<Records>().map_or(0, |r| r.0),
    };
    match state.store.record_integration_read(&read).await {
        Ok(()) => response,
        Err(e) => {
            error!(token = %token_id, path = read.path, error = %e, "Integration read not recorded; its answer is withheld.");
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the request could not be recorded in the reads log, so its answer is withheld; try again",
            )
            .into_response()
        }
    }
}

/// Query of `GET /integration/reads`. Unknown parameters are refused.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReadsQuery {
    /// Only the reads of this token (its id, as `GET /tokens` lists it).
    #[serde(default)]
    #[param(value_type = Option<uuid::Uuid>)]
    token_id: Option<String>,
    /// Only reads answered at or after this time (RFC 3339).
    #[serde(default)]
    #[param(value_type = Option<DateTime<Utc>>)]
    from: Option<String>,
    /// Only reads answered at or before this time (RFC 3339); before `from`, nothing is listed.
    #[serde(default)]
    #[param(value_type = Option<DateTime<Utc>>)]
    to: Option<String>,
    /// Reads with a `seq` after this one (default 0, the beginning).
    #[serde(default)]
    #[param(minimum = 0, maximum = 1_000_000_000_000_000_000_i64)]
    after: Option<i64>,
    /// Most reads in the page (default 100).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// A page of the reads log.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadsPage {
    /// In ascending `seq`.
    pub reads: Vec<IntegrationRead>,
    /// The `seq` to pass as `after` for the next page (the last one here, or `after` itself).
    pub next: i64,
}

/// The reads log: every request integration tokens made, oldest first (admin).
#[utoipa::path(
    get, path = "/api/v1/integration/reads", tag = "alerts",
    security(("bearer" = [])),
    params(ReadsQuery),
    responses((status = 200, description = "A page of the reads log.", body = ReadsPage)),
)]
pub async fn reads(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ReadsQuery>, QueryRejection>,
) -> Result<Json<ReadsPage>, Problem> {
    caller.require(AUDITORS, "read the integration reads log")?;
    let Query(query) = query?;
    let token_id = query
        .token_id
        .as_deref()
        .map(|t| params::uuid("token_id", t))
        .transpose()
        .map_err(Problem::bad_request)?;
    let time = |key: &str, raw: &Option<String>| {
        raw.as_deref()
            .map(|t| params::date_time(key, t))
            .transpose()
            .map_err(Problem::bad_request)
    };
    let from = time("from", &query.from)?;
    let to = time("to", &query.to)?;
    let after = query.after.unwrap_or(0);
    if !(0..=AFTER_MAX).contains(&after) {
        return Err(Problem::bad_request(format!(
            "`after` must be a seq from 0 to {AFTER_MAX}"
        )));
    }
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > PAGE_MAX {
        return Err(Problem::bad_request(format!(
            "`limit` must be between 1 and {PAGE_MAX}"
        )));
    }
    let reads = state
        .store
        .integration_reads(IntegrationReadQuery {
            token_id,
            from,
            to,
            after,
            limit,
        })
        .await?;
    let next = reads.last().map_or(after, |r| r.seq);
    Ok(Json(ReadsPage { reads, next }))
}

/// Body of `POST /integration/border-hits`: a border-control check flagged a person.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BorderHitBody {
    /// The person the check flagged.
    #[schema(value_type = uuid::Uuid)]
    person_id: String,
    /// The crossing or port where the check took place.
    #[schema(schema_with = doc::name_schema)]
    port: String,
    /// When the check took place (RFC 3339).
    #[schema(value_type = DateTime<Utc>)]
    time: String,
    /// The checking authority's reference for the check. A report is raised once per
    /// reference: sending it again answers with the alert already raised.
    #[schema(schema_with = doc::name_schema)]
    reference: String,
}

/// Reports a border hit: raises a `border_hit` alert, critical, at once; every channel carries
/// it. A retry with the same reference raises nothing and answers 200 with the alert raised the
/// first time; the same reference for another person, port or time is 409.
#[utoipa::path(
    post, path = "/api/v1/integration/border-hits", tag = "alerts",
    security(("bearer" = [])),
    request_body = BorderHitBody,
    responses(
        (status = 201, description = "The border_hit alert, raised.", body = Alert),
        (status = 200, description = "The reference was reported before: the alert raised then.", body = Alert),
        (status = 409, response = doc::Conflict),
        (status = 415, response = doc::UnsupportedMediaType),
    ),
)]
pub async fn border_hit(
    State(state): State<AppState>,
    caller: Caller,
    JsonObject(body): JsonObject<BorderHitBody>,
) -> Result<Response, Problem> {
    caller.require(REPORTERS, "report border hits")?;
    let person_id = params::uuid("person_id", &body.person_id).map_err(Problem::unprocessable)?;
    let time = params::date_time("time", &body.time)
        .map_err(Problem::unprocessable)?
        .trunc_subsecs(6);
    let port = check_name("port", &body.port)?;
    let reference = check_name("reference", &body.reference)?;
    let now = Utc::now();
    let alert = Alert {
        id: new_id(),
        seq: 0,
        kind: AlertKind::BorderHit,
        person_id,
        device_id: None,
        zone_id: None,
        severity: Severity::of(AlertKind::BorderHit, Default::default()),
        time,
        raised_at: now,
        position: None,
        state: AlertState::Open,
        late: false,
        note: None,
        disposition: None,
        acknowledged_at: None,
        verified_at: None,
        disposed_at: None,
        closed_at: None,
        repeat_of: None,
        border: Some(BorderCheck {
            port: port.clone(),
            reference: reference.clone(),
        }),
    };
    let (stored, raised) = state.store.raise_border_hit(alert).await?;
    let status = if raised {
        state.metrics.alert_raised(AlertKind::BorderHit);
        info!(alert = %stored.id, person = %person_id, reference, "Border hit raised.");
        StatusCode::CREATED
    } else {
        let same = stored.person_id == person_id
            && stored.time == time
            && stored.border.as_ref().is_some_and(|b| b.port == port);
        if !same {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                format!(
                    "reference {reference:?} was reported already, for another check (alert {})",
                    stored.id
                ),
            ));
        }
        StatusCode::OK
    };
    let shown = if caller.role == Role::Integration {
        state.integration.alert(&stored)
    } else {
        serde_json::to_value(&stored).unwrap_or_default()
    };
    Ok(counted((status, Json(shown)).into_response(), 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_alerts_the_feed_and_border_hits_are_open_to_the_integration() {
        assert!(integration_may(&Method::GET, Some("/api/v1/alerts")));
        assert!(integration_may(&Method::GET, Some("/api/v1/alerts/{id}")));
        assert!(integration_may(
            &Method::POST,
            Some("/api/v1/integration/border-hits")
        ));
        assert!(!integration_may(
            &Method::POST,
            Some("/api/v1/alerts/{id}/ack")
        ));
        assert!(!integration_may(&Method::GET, Some("/api/v1/persons")));
        assert!(!integration_may(
            &Method::GET,
            Some("/api/v1/integration/reads")
        ));
        assert!(!integration_may(&Method::GET, None));
    }

    #[test]
    fn the_default_fields_are_every_alert_field_but_the_note() {
        let config = IntegrationConfig::default();
        assert!(config.validate().is_ok());
        let mut expected = alert_field_names();
        expected.retain(|f| f != "note");
        let mut fields = config.fields.clone();
        fields.sort();
        expected.sort();
        assert_eq!(fields, expected);
        let unknown = IntegrationConfig {
            fields: vec!["track".into()],
        };
        assert_eq!(unknown.validate().unwrap_err().0, "fields");
    }
}
