//! The OpenAPI 3.1 description of the HTTP API, built from the handlers' own annotations and
//! the request and response types' `ToSchema` derives, and served at `GET /api/v1/openapi.json`.
//!
//! Each handler carries a `#[utoipa::path]` naming its method, path, parameters, body and
//! success responses; [`ApiDoc`] lists the handlers. What every operation shares is added here
//! rather than repeated on each: the bearer security scheme, and the problem-details error
//! responses each kind of operation can give (401 and 403 where a token is needed, 404 where
//! the path names a resource, 400 for bad query parameters, 400, 408, 413 and 422 for a body,
//! 500 always). The unit tests below walk the real [`super::router`] and fail when a route is
//! missing from the description or the description names a route that does not exist, so the
//! two cannot drift apart; CI also fuzzes the running service against this description.
//!
//! The description is open (no token), like `/healthz`: it holds no data, only the shape of the
//! API, which is public in the source anyway, and tools that generate clients or fuzz the API
//! read it before they hold a token.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::schema::{ArrayBuilder, Object, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use super::problem::Problem;
use super::{
    alerts, broadcasts, bulk_registration, commands, devices, feed, health, integration, persons,
    positions, reports, stats, stream, supervision, tokens, webhooks, whoami, zones,
};
use crate::http::problem::{BEARER_CHALLENGE, PROBLEM_JSON};
use crate::model::PositionSource;

/// Name of the security scheme every protected operation requires.
pub const BEARER: &str = "bearer";

/// The API description: every route of [`super::router`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "ewall",
        description = "Real-time GPS electronic-fence monitoring for community supervision: \
            persons, their devices and zones, positions, and the alerts raised when a fence is \
            breached. Every `/api/v1` operation but this description needs \
            `Authorization: Bearer <token>` (create one with `ewall token create`); every error \
            is an RFC 9457 problem document (`application/problem+json`).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        health::healthz,
        health::readyz,
        super::metrics,
        serve,
        persons::create,
        bulk_registration::register,
        persons::list,
        persons::get,
        persons::update,
        persons::delete,
        persons::set_zones,
        persons::zones,
        persons::track,
        supervision::create_leave,
        supervision::list_leaves,
        supervision::cancel_leave,
        supervision::end_leave,
        supervision::create_order,
        supervision::list_orders,
        supervision::create_checkin,
        supervision::list_checkins,
        reports::record,
        reports::create_assessment,
        reports::list_assessments,
        reports::level_review,
        reports::county,
        broadcasts::create,
        broadcasts::list,
        broadcasts::get,
        devices::create,
        devices::list,
        devices::get,
        devices::update,
        devices::delete,
        commands::create,
        commands::list,
        commands::get,
        zones::create,
        zones::list,
        zones::get,
        zones::delete,
        alerts::list,
        alerts::get,
        alerts::acknowledge,
        alerts::verify,
        alerts::dispose,
        alerts::close,
        alerts::resolve,
        alerts::actions,
        stats::alerts,
        stream::stream,
        positions::stream,
        whoami::whoami,
        feed::feed,
        integration::reads,
        integration::border_hit,
        webhooks::list,
        webhooks::redeliver_all,
        webhooks::redeliver_one,
        tokens::create,
        tokens::list,
        tokens::revoke,
    ),
    components(schemas(Problem)),
    modifiers(&SharedResponses),
    tags(
        (name = "service", description = "Liveness, readiness, metrics and this description (no token)."),
        (name = "persons", description = "Supervised persons, their zones and tracks."),
        (name = "devices", description = "Trackers bound to persons."),
        (name = "supervision", description = "Leave permits, monitoring orders and check-ins."),
        (name = "zones", description = "Inclusion and exclusion zones as GeoJSON."),
        (name = "alerts", description = "The alert feed and the operator's handling."),
        (name = "reports", description = "Monthly records, officers' assessments, level reviews and the county's figures."),
        (name = "tokens", description = "API tokens (admin)."),
    ),
)]
pub struct ApiDoc;

/// The description, built once.
pub fn spec() -> &'static utoipa::openapi::OpenApi {
    static SPEC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    SPEC.get_or_init(ApiDoc::openapi)
}

/// The description as JSON bytes, built once.
fn spec_json() -> &'static [u8] {
    static JSON: OnceLock<Vec<u8>> = OnceLock::new();
    JSON.get_or_init(|| {
        // A tree of strings, numbers and maps always serialises.
        serde_json::to_vec_pretty(spec()).unwrap_or_default()
    })
}

/// This description.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "service",
    responses(
        (status = 200, description = "The OpenAPI 3.1 description of this API.",
         content_type = "application/json", body = Object),
    ),
)]
pub async fn serve() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], spec_json()).into_response()
}

/// Adds the bearer scheme and the error responses every operation shares.
struct SharedResponses;

/// The shared error responses: (status, component name, description).
const ERRORS: &[(&str, &str, &str)] = &[
    (
        "400",
        "BadRequest",
        "The request is malformed: a query parameter or JSON syntax.",
    ),
    (
        "401",
        "Unauthorized",
        "No token, an unknown one, or one revoked or expired.",
    ),
    ("403", "Forbidden", "The token's role may not do this."),
    ("404", "NotFound", "No such resource."),
    (
        "408",
        "RequestTimeout",
        "The body did not arrive within the body read timeout.",
    ),
    (
        "409",
        "Conflict",
        "The change conflicts with what is stored.",
    ),
    (
        "413",
        "PayloadTooLarge",
        "The body is larger than this endpoint accepts.",
    ),
    (
        "415",
        "UnsupportedMediaType",
        "The body is not `application/json`.",
    ),
    (
        "422",
        "UnprocessableEntity",
        "The body is well-formed but its content is refused; the detail says why.",
    ),
    (
        "500",
        "InternalServerError",
        "The server failed; the request was not carried out.",
    ),
    ("503", "ServiceUnavailable", "The database does not answer."),
];

impl Modify for SharedResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token from `ewall token create --role admin|operator|integration` \
                         or `POST /api/v1/tokens`.",
                    ))
                    .build(),
            ),
        );
        for (status, name, description) in ERRORS {
            let mut response = problem_response(description);
            if *status == "401" {
                response.headers.insert(
                    "WWW-Authenticate".to_owned(),
                    HeaderBuilder::new()
                        .schema(
                            utoipa::openapi::ObjectBuilder::new()
                                .schema_type(utoipa::openapi::schema::Type::String)
                                .enum_values(Some([BEARER_CHALLENGE])),
                        )
                        .description(Some("The bearer challenge (RFC 6750)."))
                        .build(),
                );
            }
            components
                .responses
                .insert((*name).to_owned(), RefOr::T(response));
        }
        for item in openapi.paths.paths.values_mut() {
            for operation in operations(item) {
                add_errors(operation);
            }
        }
    }
}

/// Every operation of a path.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
        item.head.as_mut(),
        item.options.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// Adds to `operation` the shared error responses that apply to it, keeping any it names itself.
fn add_errors(operation: &mut Operation) {
    let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let parameters = operation.parameters.as_deref().unwrap_or_default();
    let in_path = parameters
        .iter()
        .any(|p| matches!(p.parameter_in, ParameterIn::Path));
    let in_query = parameters
        .iter()
        .any(|p| matches!(p.parameter_in, ParameterIn::Query));
    let body = operation.request_body.is_some();
    let mut wanted = vec!["500"];
    if secured {
        wanted.extend(["401", "403"]);
    }
    if in_path {
        wanted.push("404");
    }
    if in_query || body {
        wanted.push("400");
    }
    if body {
        wanted.extend(["408", "413", "422"]);
    }
    for (status, name, _) in ERRORS {
        if wanted.contains(status) {
            operation
                .responses
                .responses
                .entry((*status).to_owned())
                .or_insert_with(|| RefOr::Ref(Ref::from_response_name(*name)));
        }
    }
}

/// Declares a shared error response usable as `(status = N, response = doc::Name)`.
macro_rules! error_response {
    ($name:ident) => {
        #[doc = concat!("The shared `", stringify!($name), "` problem response.")]
        pub struct $name;

        impl<'r> utoipa::ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<utoipa::openapi::Response>) {
                let description = ERRORS
                    .iter()
                    .find(|(_, name, _)| *name == stringify!($name))
                    .map_or("", |(_, _, d)| d);
                (stringify!($name), RefOr::T(problem_response(description)))
            }
        }
    };
}

error_response!(Conflict);
error_response!(NotFound);
error_response!(UnprocessableEntity);
error_response!(UnsupportedMediaType);
error_response!(ServiceUnavailable);

/// A problem-document response with `description`.
fn problem_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

/// The characters a name may not hold (see [`super::text`]): C0 and C1 controls and the
/// bidirectional formatting characters.
const NAME_FORBIDDEN: &str =
    "\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069";
/// Whitespace that trimming removes, besides the controls already forbidden.
const NAME_SPACE: &str = " \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";

/// A name as [`super::text::check_name`] takes it: 1 to 200 characters, not only whitespace,
/// no control or bidirectional control characters.
pub fn name_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(super::text::NAME_MAX_CHARS))
        .pattern(Some(format!(
            "^[^{NAME_FORBIDDEN}]*[^{NAME_FORBIDDEN}{NAME_SPACE}][^{NAME_FORBIDDEN}]*$"
        )))
        .examples(["Zhang San"])
        .build()
}

/// A name, or null for none.
pub fn optional_name_schema() -> Schema {
    nullable(name_schema())
}

/// An IANA time zone name known to the server, or null for the default.
pub fn optional_timezone_schema() -> Schema {
    nullable(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())))
            .examples(["Asia/Shanghai"])
            .build(),
    )
}

/// `schema` or null.
fn nullable(schema: Object) -> Schema {
    Schema::OneOf(
        OneOfBuilder::new()
            .item(schema)
            .item(Object::with_type(Type::Null))
            .build(),
    )
}

/// GeoJSON `"type": "Feature"`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub enum FeatureType {
    /// The only value.
    Feature,
}

/// GeoJSON `"type": "FeatureCollection"`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub enum FeatureCollectionType {
    /// The only value.
    FeatureCollection,
}

/// GeoJSON `"type": "Point"`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub enum PointType {
    /// The only value.
    Point,
}

/// A GeoJSON Point.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PointGeometry {
    /// Always `Point`.
    #[serde(rename = "type")]
    pub kind: PointType,
    /// `[lon, lat]`, WGS-84 degrees.
    #[schema(schema_with = position_schema)]
    pub coordinates: [f64; 2],
}

impl PointGeometry {
    /// The point at `lon`, `lat`.
    pub fn new(lon: f64, lat: f64) -> Self {
        PointGeometry {
            kind: PointType::Point,
            coordinates: [lon, lat],
        }
    }
}

/// A GeoJSON position: longitude in [-180, 180], latitude in [-90, 90], then any further
/// members (altitude), which are ignored.
pub fn position_schema() -> ArrayBuilder {
    let degrees = |limit: f64, what: &str| {
        ObjectBuilder::new()
            .schema_type(Type::Number)
            .minimum(Some(-limit))
            .maximum(Some(limit))
            .description(Some(what))
            .build()
    };
    ArrayBuilder::new()
        .prefix_items([
            degrees(180.0, "Longitude, degrees."),
            degrees(90.0, "Latitude, degrees."),
        ])
        .items(Object::with_type(Type::Number))
        .min_items(Some(2))
}

/// A GeoJSON linear ring: at least 4 positions, the last equal to the first.
fn ring_schema() -> ArrayBuilder {
    ArrayBuilder::new()
        .items(position_schema())
        .min_items(Some(4))
}

/// GeoJSON Polygon coordinates: the exterior ring, then any holes.
pub fn polygon_schema() -> ArrayBuilder {
    ArrayBuilder::new().items(ring_schema()).min_items(Some(1))
}

/// GeoJSON MultiPolygon coordinates: one or more polygons.
pub fn multi_polygon_schema() -> ArrayBuilder {
    ArrayBuilder::new()
        .items(polygon_schema())
        .min_items(Some(1))
}

/// Where a position came from.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Satellite fix.
    Gps,
    /// Cell towers.
    Lbs,
    /// Wi-Fi access points.
    Wifi,
}

impl From<PositionSource> for Source {
    fn from(source: PositionSource) -> Self {
        // Exhaustive on purpose: a new source fails to compile here until it is described.
        match source {
            PositionSource::Gps => Source::Gps,
            PositionSource::Lbs => Source::Lbs,
            PositionSource::Wifi => Source::Wifi,
        }
    }
}

#[cfg(test)]
mod tests;
