//! `/api/v1/persons/{id}/leaves`, `/orders` and `/checkins`: the records an officer keeps that
//! the timer-driven rules act on (leave permits, monitoring orders, check-ins). Each change is
//! committed to the store first and then handed to the pipeline's shard for the person
//! ([`crate::pipeline::Notices`]), so its deadlines move at once.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Duration, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Caller;
use super::body::JsonObject;
use super::openapi as doc;
use super::problem::Problem;
use super::{parse_id, AppState};
use crate::model::{
    new_id, AlertPosition, Checkin, CheckinMethod, LeavePermit, MonitoringOrder, PersonId,
};
use crate::store::{LeaveClosing, Role};
use crate::supervision::Notice;

/// Roles that grant leave, record orders and read them.
const MANAGERS: &[Role] = &[Role::Admin, Role::Operator];
/// Roles that may read.
const READERS: &[Role] = &[Role::Admin, Role::Operator, Role::Integration];
/// Roles that may record a check-in: the centre, and a kiosk or app holding an integration
/// token.
const CHECKIN_WRITERS: &[Role] = &[Role::Admin, Role::Operator, Role::Integration];
/// The longest a monitoring order (and a leave) may last: three months at a time.
pub const MAX_ORDER_DAYS: i64 = 92;
/// Most zones one leave suspends.
const MAX_LEAVE_ZONES: usize = 100;
/// How far ahead of the server's clock a check-in time may be (a kiosk's clock is off).
const CHECKIN_AHEAD_SECS: i64 = 300;
/// Most check-ins one list returns (the newest).
const CHECKIN_LIST_MAX: u32 = 1_000;

/// Body of `POST /persons/{id}/leaves`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaveBody {
    /// Start of the window (RFC 3339).
    from: DateTime<Utc>,
    /// End of the window (RFC 3339), after `from`, at most 92 days later, in the future.
    to: DateTime<Utc>,
    /// The zones suspended during the window; each must be assigned to the person.
    #[schema(min_items = 1, max_items = 100)]
    zone_ids: Vec<Uuid>,
    /// Why it was granted.
    #[schema(schema_with = doc::name_schema)]
    reason: String,
    /// Who approved it.
    #[schema(schema_with = doc::name_schema)]
    approved_by: String,
}

/// A person's leave permits.
#[derive(Debug, Serialize, ToSchema)]
pub struct LeaveList {
    /// Newest window first.
    pub leaves: Vec<LeavePermit>,
}

/// Body of `POST /persons/{id}/orders`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderBody {
    /// The statutory ground.
    #[schema(schema_with = doc::name_schema)]
    ground: String,
    /// Who approved it.
    #[schema(schema_with = doc::name_schema)]
    approved_by: String,
    /// Monitoring may start at (RFC 3339).
    from: DateTime<Utc>,
    /// Monitoring must stop at (RFC 3339): after `from`, at most 92 days later, in the future.
    to: DateTime<Utc>,
}

/// A person's monitoring orders.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderList {
    /// Newest first.
    pub orders: Vec<MonitoringOrder>,
}

/// Where a check-in was made.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckinPosition {
    /// WGS-84 latitude.
    #[schema(minimum = -90.0, maximum = 90.0)]
    lat: f64,
    /// WGS-84 longitude.
    #[schema(minimum = -180.0, maximum = 180.0)]
    lon: f64,
    /// Accuracy radius, metres.
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 100000.0)]
    accuracy_m: Option<f64>,
}

/// Body of `POST /persons/{id}/checkins`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckinBody {
    /// When the person checked in (RFC 3339), at most five minutes ahead of the server.
    time: DateTime<Utc>,
    /// How.
    method: CheckinMethod,
    /// Where, when the kiosk or app knows.
    #[serde(default)]
    position: Option<CheckinPosition>,
}

/// A person's check-ins.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckinList {
    /// Newest first, at most 1,000.
    pub checkins: Vec<Checkin>,
}

/// Checks a window: `from` before `to`, at most [`MAX_ORDER_DAYS`], ending in the future.
fn check_window(
    what: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), Problem> {
    if from >= to {
        return Err(Problem::unprocessable(format!(
            "the {what}'s `from` must be before its `to`"
        )));
    }
    if to - from > Duration::days(MAX_ORDER_DAYS) {
        return Err(Problem::unprocessable(format!(
            "a {what} lasts at most {MAX_ORDER_DAYS} days; renew it with a new one"
        )));
    }
    if to <= now {
        return Err(Problem::unprocessable(format!(
            "the {what} is already over (`to` is in the past)"
        )));
    }
    Ok(())
}

async fn person_id(state: &AppState, raw: &str) -> Result<PersonId, Problem> {
    let id = parse_id("person", raw)?;
    state.store.person(id).await?;
    Ok(id)
}

/// Grants a leave: the zones named are suspended for the window, and if the person is not back
/// when it ends, `leave_overdue` is raised.
#[utoipa::path(
    post, path = "/api/v1/persons/{id}/leaves", tag = "supervision",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Person id.")),
    request_body = LeaveBody,
    responses(
        (status = 201, description = "The leave, granted.", body = LeavePermit),
        (status = 415, response = doc::UnsupportedMediaType),
    ),
)]
pub async fn create_leave(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonObject(body): JsonObject<LeaveBody>,
) -> Result<(StatusCode, Json<LeavePermit>), Problem> {
    caller.require(MANAGERS, "grant leave")?;
    let person = person_id(&state, &id).await?;
    let now = Utc::now().trunc_subsecs(6);
    let (from, to) = (body.from.trunc_subsecs(6), body.to.trunc_subsecs(6));
    check_window("leave", from, to, now)?;
    let mut zone_ids = body.zone_ids;
    zone_ids.sort();
    zone_ids.dedup();
    if zone_ids.is_empty() || zone_ids.len() > MAX_LEAVE_ZONES {
        return Err(Problem::unprocessable(format!(
            "`zone_ids` names 1 to {MAX_LEAVE_ZONES} zones"
        )));
    }
    let assigned = state.store.person_zones(person).await?;
    if let Some(zone) = zone_ids.iter().find(|z| !assigned.contains(z)) {
        return Err(Problem::unprocessable(format!(
            "zone {zone} is not assigned to the person"
        )));
    }
    let leave = LeavePermit {
        id: new_id(),
        person_id: person,
        from,
        to,
        zone_ids,
        reason: super::text::check_name("reason", &body.reason)?,
        approved_by: super::text::check_name("approved_by", &body.approved_by)?,
        created_at: now,
        cancelled_at: None,
        ended_at: None,
    };
    state.store.create_leave(&leave).await?;
    state.notices.send(Notice::LeaveSaved(leave.clone()));
    Ok((StatusCode::CREATED, Json(leave)))
}

/// A person's leave permits.
#[utoipa::path(
    get, path = "/api/v1/persons/{id}/leaves", tag = "supervision",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Person id.")),
    responses((status = 200, description = "Newest window first.", body = LeaveList)),
)]
pub async fn list_leaves(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<LeaveList>, Problem> {
    caller.require(READERS, "read leaves")?;
    let person = person_id(&state, &id).await?;
    Ok(Json(LeaveList {
        leaves: state.store.leaves(person).await?,
    }))
}

async fn close_leave(
    state: &AppState,
    id: &str,
    leave_id: &str,
    closing: LeaveClosing,
) -> Result<Json<LeavePermit>, Problem> {
    let person = person_id(state, id).await?;
    let leave_id = parse_id("leave", leave_id)?;
    let leave = state.store.leave(leave_id).await?;
    if leave.person_id != person {
        return Err(Problem::not_found(format!("leave {leave_id} not found")));
    }
    let now = Utc::now().trunc_subsecs(6);
    if leave.cancelled_at.is_some() || leave.ended_at.is_some() {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "the leave was already cancelled or ended",
        ));
    }
    if leave.end() <= now {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "the leave is already over",
        ));
    }
    if closing == LeaveClosing::EndEarly && leave.from > now {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "the leave has not started; cancel it instead",
        ));
    }
    let leave = state.store.close_leave(leave_id, closing, now).await?;
    state.notices.send(Notice::LeaveSaved(leave.clone()));
    Ok(Json(leave))
}

/// Cancels a leave: its zones are no longer suspended, and nothing is owed at its end.
#[utoipa::path(
    post, path = "/api/v1/persons/{id}/leaves/{leave_id}/cancel", tag = "supervision",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "Person id."),
        ("leave_id" = Uuid, Path, description = "Leave id."),
    ),
    responses(
        (status = 200, description = "The leave, cancelled.", body = LeavePermit),
        (status = 409, response = doc::Conflict),
    ),
)]
pub async fn cancel_leave(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, leave_id)): Path<(String, String)>,
) -> Result<Json<LeavePermit>, Problem> {
    caller.require(MANAGERS, "cancel leave")?;
    close_leave(&state, &id, &leave_id, LeaveClosing::Cancel).await
}

/// Ends a leave early (the person reported back): the window ends now, and `leave_overdue`
/// is raised at once if the person's latest definite fix is outside a suspended zone.
#[utoipa::path(
    post, path = "/api/v1/persons/{id}/leaves/{leave_id}/end", tag = "supervision",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "Person id."),
        ("leave_id" = Uuid, Path, description = "Leave id."),
    ),
    responses(
        (status = 200, description = "The leave, ended.", body = LeavePermit),
        (status = 409, response = doc::Conflict),
    ),
)]
pub async fn end_leave(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, leave_id)): Path<(String, String)>,
) -> Result<Json<LeavePermit>, Problem> {
    caller.require(MANAGERS, "end leave")?;
    close_leave(&state, &id, &leave_id, LeaveClosing::EndEarly).await
}

/// Records a monitoring order. One whose `from` has passed starts at once (`order.started` in
/// the integration feed); a later one starts at its `from`. Renew an order by recording the
/// next one.
#[utoipa::path(
    post, path = "/api/v1/persons/{id}/orders", tag = "supervision",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Person id.")),
    request_body = OrderBody,
    responses(
        (status = 201, description = "The order, recorded.", body = MonitoringOrder),
        (status = 415, response = doc::UnsupportedMediaType),
    ),
)]
pub async fn create_order(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonObject(body): JsonObject<OrderBody>,
) -> Result<(StatusCode, Json<MonitoringOrder>), Problem> {
    caller.require(MANAGERS, "record monitoring orders")?;
    let person = person_id(&state, &id).await?;
    let now = Utc::now().trunc_subsecs(6);
    let (from, to) = (body.from.trunc_subsecs(6), body.to.trunc_subsecs(6));
    check_window("monitoring order", from, to, now)?;
    let order = MonitoringOrder {
        id: new_id(),
        person_id: person,
        ground: super::text::check_name("ground", &body.ground)?,
        approved_by: super::text::check_name("approved_by", &body.approved_by)?,
        from,
        to,
        created_at: now,
        started_at: (from <= now).then_some(now),
        ended_at: None,
    };
    state.store.create_order(&order).await?;
    state.notices.send(Notice::OrderSaved(order.clone()));
    Ok((StatusCode::CREATED, Json(order)))
}

/// A person's monitoring orders.
#[utoipa::path(
    get, path = "/api/v1/persons/{id}/orders", tag = "supervision",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Person id.")),
    responses((status = 200, description = "Newest first.", body = OrderList)),
)]
pub async fn list_orders(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<OrderList>, Problem> {
    caller.require(READERS, "read monitoring orders")?;
    let person = person_id(&state, &id).await?;
    Ok(Json(OrderList {
        orders: state.store.orders(person).await?,
    }))
}

/// Records a check-in (from a kiosk, the app or an officer); a check-in window of the person's
/// level that closes without one raises `missed_checkin`.
#[utoipa::path(
    post, path = "/api/v1/persons/{id}/checkins", tag = "supervision",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Person id.")),
    request_body = CheckinBody,
    responses(
        (status = 201, description = "The check-in, recorded.", body = Checkin),
        (status = 415, response = doc::UnsupportedMediaType),
    ),
)]
pub async fn create_checkin(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonObject(body): JsonObject<CheckinBody>,
) -> Result<(StatusCode, Json<Checkin>), Problem> {
    caller.require(CHECKIN_WRITERS, "record check-ins")?;
    let person = person_id(&state, &id).await?;
    let now = Utc::now().trunc_subsecs(6);
    let time = body.time.trunc_subsecs(6);
    if time > now + Duration::seconds(CHECKIN_AHEAD_SECS) {
        return Err(Problem::unprocessable(
            "`time` is in the future; a check-in is recorded when it happens",
        ));
    }
    let position = match body.position {
        None => None,
        Some(p) => {
            let in_range = (-90.0..=90.0).contains(&p.lat)
                && (-180.0..=180.0).contains(&p.lon)
                && p.accuracy_m.is_none_or(|a| (0.0..=100_000.0).contains(&a));
            if !in_range {
                return Err(Problem::unprocessable(
                    "`position` needs lat in [-90, 90], lon in [-180, 180] and accuracy_m in \
                     [0, 100000]",
                ));
            }
            Some(AlertPosition {
                lat: p.lat,
                lon: p.lon,
                accuracy_m: p.accuracy_m,
            })
        }
    };
    let checkin = Checkin {
        id: new_id(),
        person_id: person,
        time,
        method: body.method,
        position,
        created_at: now,
    };
    state.store.create_checkin(&checkin).await?;
    state.notices.send(Notice::CheckedIn(checkin.clone()));
    Ok((StatusCode::CREATED, Json(checkin)))
}

/// A person's check-ins.
#[utoipa::path(
    get, path = "/api/v1/persons/{id}/checkins", tag = "supervision",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Person id.")),
    responses((status = 200, description = "Newest first, at most 1,000.", body = CheckinList)),
)]
pub async fn list_checkins(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<CheckinList>, Problem> {
    caller.require(READERS, "read check-ins")?;
    let person = person_id(&state, &id).await?;
    Ok(Json(CheckinList {
        checkins: state.store.checkins(person, CHECKIN_LIST_MAX).await?,
    }))
}
