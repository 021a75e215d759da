//! The monthly reports: `GET /persons/{id}/record` (JSON, or CSV), the officer's entries
//! (`/persons/{id}/assessments`), `GET /persons/{id}/level-review` and `GET /stats/county`.
//! The figures are computed by [`crate::report`] from the store on each request; an entry is
//! stored with who made it and recorded in the actions chain.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::body::JsonObject;
use super::openapi as doc;
use super::problem::Problem;
use super::{parse_id, AppState};
use crate::model::{new_id, Actor, AlertId, PersonId};
use crate::report::{self, CountyFigures, LevelReview, Month, PersonRecord};
use crate::store::reports::{Assessment, AssessmentKind};
use crate::store::{Role, StoreError};

/// The monitoring centre and the supervising officers.
const OFFICERS: &[Role] = &[Role::Admin, Role::Operator];
/// Most alerts one entry cites.
const MAX_CITED_ALERTS: usize = 100;

/// Query of `GET /persons/{id}/record`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RecordQuery {
    /// The month, `YYYY-MM` (1970 to 2999), read in the person's time zone.
    #[param(
        pattern = r"^(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])$",
        example = "2027-01"
    )]
    month: String,
    /// `csv` for CSV (as `Accept: text/csv` asks), `json` (the default) for JSON.
    #[serde(default)]
    #[param(inline, value_type = Option<RecordFormat>)]
    format: Option<String>,
}

/// The formats a record is given in.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordFormat {
    /// `application/json`.
    Json,
    /// `text/csv`: `section,item,value` rows.
    Csv,
}

/// Query of the review and the county's figures.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MonthQuery {
    /// The month, `YYYY-MM` (1970 to 2999).
    #[param(
        pattern = r"^(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])$",
        example = "2027-01"
    )]
    month: String,
}

fn parse_month(raw: &str) -> Result<Month, Problem> {
    raw.parse().map_err(Problem::bad_request)
}

/// Whether the request asks for CSV: `format=csv`, or an `Accept` naming `text/csv` (and no
/// `format`).
fn wants_csv(format: Option<&str>, headers: &HeaderMap) -> Result<bool, Problem> {
    match format {
        Some("csv") => Ok(true),
        Some("json") => Ok(false),
        Some(other) => Err(Problem::bad_request(format!(
            "format {other:?} is not a record format; expected csv or json"
        ))),
        None => Ok(headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|m| m.split(';').next().unwrap_or("").trim() == "text/csv")
            })),
    }
}

/// A person's month: reporting rate, hours offline, alerts by kind and disposition, confirmed
/// breaches, leaves, check-ins, commands and the officer's entries. The month runs from local
/// midnight to local midnight in the person's time zone; only the part they were supervised
/// counts. JSON, or CSV with `Accept: text/csv` or `format=csv`.
#[utoipa::path(
    get, path = "/api/v1/persons/{id}/record", tag = "reports",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Person id."), RecordQuery),
    responses(
        (status = 200, description = "The person's month.", content(
            (PersonRecord = "application/json"),
            (String = "text/csv"),
        )),
    ),
)]
pub async fn record(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<RecordQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    caller.require(OFFICERS, "read person records")?;
    let id = parse_id("person", &id)?;
    let Query(query) = query?;
    let month = parse_month(&query.month)?;
    let csv = wants_csv(query.format.as_deref(), &headers)?;
    let record =
        report::person_record(state.store.as_ref(), &state.levels, id, month, Utc::now()).await?;
    if csv {
        let name = format!("attachment; filename=\"record-{id}-{month}.csv\"");
        Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (header::CONTENT_DISPOSITION, name),
            ],
            record.to_csv(),
        )
            .into_response())
    } else {
        Ok(Json(record).into_response())
    }
}

/// Body of `POST /persons/{id}/assessments`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssessmentBody {
    /// What the entry is.
    kind: AssessmentKind,
    /// Why.
    #[schema(schema_with = doc::name_schema)]
    reason: String,
    /// The month it assesses, `YYYY-MM` (1970 to 2999), not after the current month.
    #[schema(
        pattern = r"^(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])$",
        example = "2027-01"
    )]
    month: String,
    /// Alerts of the person it cites (a warning or revocation proposal only; at most 100).
    #[serde(default)]
    #[schema(value_type = Option<Vec<uuid::Uuid>>, max_items = 100)]
    alert_ids: Option<Vec<AlertId>>,
}

/// `GET /persons/{id}/assessments`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssessmentList {
    /// The person's entries, oldest first.
    pub assessments: Vec<Assessment>,
}

/// Records an officer's entry on a person's month (praise, reward, warning, revocation
/// proposal), with who made it and when, in the actions chain (`assessment.create`). A warning
/// or revocation proposal may cite the person's alerts.
#[utoipa::path(
    post, path = "/api/v1/persons/{id}/assessments", tag = "reports",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Person id.")),
    request_body = AssessmentBody,
    responses(
        (status = 201, description = "The entry, recorded.", body = Assessment),
        (status = 415, response = doc::UnsupportedMediaType),
    ),
)]
pub async fn create_assessment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonObject(body): JsonObject<AssessmentBody>,
) -> Result<(StatusCode, Json<Assessment>), Problem> {
    caller.require(OFFICERS, "record assessments")?;
    let id = parse_id("person", &id)?;
    let person = state.store.person(id).await?;
    let reason = super::text::check_name("reason", &body.reason)?;
    let month: Month = body.month.parse().map_err(Problem::unprocessable)?;
    let tz = person.timezone.parse().unwrap_or(state.default_timezone);
    let current = Month::containing(Utc::now(), tz);
    if month > current {
        return Err(Problem::unprocessable(format!(
            "month {month} has not begun (it is {current} in the person's time zone)"
        )));
    }
    let mut alert_ids: Vec<AlertId> = Vec::new();
    for alert in body.alert_ids.unwrap_or_default() {
        if !alert_ids.contains(&alert) {
            alert_ids.push(alert);
        }
    }
    if !alert_ids.is_empty() && !body.kind.cites_alerts() {
        return Err(Problem::unprocessable(format!(
            "a {} cites no alerts; only a warning or a revocation_proposal may",
            body.kind.as_str()
        )));
    }
    if alert_ids.len() > MAX_CITED_ALERTS {
        return Err(Problem::unprocessable(format!(
            "an entry cites at most {MAX_CITED_ALERTS} alerts"
        )));
    }
    for alert in &alert_ids {
        match state.store.alert(*alert).await {
            Ok(a) if a.person_id == id => {}
            Ok(_) => {
                return Err(Problem::unprocessable(format!(
                    "alert {alert} is not one of this person's"
                )))
            }
            Err(StoreError::NotFound { .. }) => {
                return Err(Problem::unprocessable(format!(
                    "alert {alert} does not exist"
                )))
            }
            Err(e) => return Err(e.into()),
        }
    }
    let assessment = Assessment {
        id: new_id(),
        person_id: id,
        kind: body.kind,
        reason,
        month: month.to_string(),
        alert_ids,
        actor: Actor {
            token_id: Some(caller.token_id),
            label: caller.label.clone(),
        },
        created_at: Utc::now().trunc_subsecs(6),
    };
    state.store.create_assessment(&assessment).await?;
    Ok((StatusCode::CREATED, Json(assessment)))
}

/// A person's entries, oldest first.
#[utoipa::path(
    get, path = "/api/v1/persons/{id}/assessments", tag = "reports",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Person id.")),
    responses((status = 200, description = "The person's entries.", body = AssessmentList)),
)]
pub async fn list_assessments(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<AssessmentList>, Problem> {
    caller.require(OFFICERS, "read assessments")?;
    let id: PersonId = parse_id("person", &id)?;
    state.store.person(id).await?;
    let assessments = state.store.assessments(id, None).await?;
    Ok(Json(AssessmentList { assessments }))
}

/// The level the rules suggest after a month, with the reasons: at least three confirmed
/// breaches in the month → strict; three clean months in a row ending with it → one level
/// lighter; otherwise the level stays. Nothing changes until an officer applies it with
/// `PATCH /persons/{id}` (recorded as `person.update` in the actions chain).
#[utoipa::path(
    get, path = "/api/v1/persons/{id}/level-review", tag = "reports",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Person id."), MonthQuery),
    responses((status = 200, description = "The suggestion.", body = LevelReview)),
)]
pub async fn level_review(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<MonthQuery>, QueryRejection>,
) -> Result<Json<LevelReview>, Problem> {
    caller.require(OFFICERS, "read level reviews")?;
    let id = parse_id("person", &id)?;
    let Query(query) = query?;
    let month = parse_month(&query.month)?;
    Ok(Json(
        report::level_review(state.store.as_ref(), &state.levels, id, month, Utc::now()).await?,
    ))
}

/// The county's figures for a month, beside the month before: persons under supervision by
/// level, enrolments and releases, alerts per 100 person-days by kind, the false-alarm share,
/// the mean time from alert to disposition and the hours of lost supervision. Months are read
/// in `fence.default_timezone`.
#[utoipa::path(
    get, path = "/api/v1/stats/county", tag = "reports",
    security(("bearer" = [])),
    params(MonthQuery),
    responses((status = 200, description = "The figures.", body = CountyFigures)),
)]
pub async fn county(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<MonthQuery>, QueryRejection>,
) -> Result<Json<CountyFigures>, Problem> {
    caller.require(OFFICERS, "read the county's figures")?;
    let Query(query) = query?;
    let month = parse_month(&query.month)?;
    Ok(Json(
        report::county_figures(
            state.store.as_ref(),
            month,
            state.default_timezone,
            Utc::now(),
        )
        .await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_is_chosen_by_format_or_accept() {
        let mut headers = HeaderMap::new();
        assert!(!wants_csv(None, &headers).unwrap());
        headers.insert(
            header::ACCEPT,
            "application/json, text/csv;q=0.9".parse().unwrap(),
        );
        assert!(wants_csv(None, &headers).unwrap());
        assert!(!wants_csv(Some("json"), &headers).unwrap());
        assert!(wants_csv(Some("csv"), &HeaderMap::new()).unwrap());
        assert_eq!(wants_csv(Some("xml"), &headers).unwrap_err().status, 400);
    }

    /// The console offers the entry form by `record_assessments`; it must name exactly the
    /// roles this module lets record one.
    #[test]
    fn whoami_offers_assessments_to_the_roles_that_may_record_them() {
        use crate::api::whoami::{capabilities, Capability};
        for role in [Role::Admin, Role::Operator, Role::Integration] {
            assert_eq!(
                capabilities(role).contains(&Capability::RecordAssessments),
                OFFICERS.contains(&role),
                "{role:?}"
            );
        }
    }
}
