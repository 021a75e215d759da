//! OsmAnd ingest: the HTTP listener phone apps report to (`GET /?id=..&lat=..&lon=..`, the same
//! keys as a form body, or a JSON body). Each request is one submission; the app gets `200 OK`
//! only once its position is committed, `400` for a request that does not decode, `404` for an
//! unregistered device, `405` for a method other than GET and POST, and `503` when the position
//! could not be stored (the app retries). Every error is a problem document; the listener is
//! served and bounded like the API ([`crate::http::serve`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use chrono::Utc;
use ewall_protocol::{osmand, Protocol};
use tracing::debug;

use super::links::LinkEvent;
use super::{IngestContext, SubmitError};
use crate::http::limits::{with_body_limit, BodyLimit};
use crate::http::problem::Problem;
use crate::identity;

/// Largest OsmAnd request body when `max_frame_len` is not set: a report is a few hundred
/// bytes, a JSON body with a short batch a few kilobytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// The OsmAnd router; serve it on the `[listeners.osmand]` address.
pub fn router(context: Arc<IngestContext>, body: BodyLimit) -> Router {
    with_body_limit(
        Router::new()
            .route("/", any(report))
            .route("/{*path}", any(report)),
        body,
    )
    .with_state(context)
}

async fn report(
    State(context): State<Arc<IngestContext>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let protocol = Protocol::Osmand;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    // `raw`: what was decoded, kept with the fixes as evidence (the JSON body, or the request
    // target with any form body joined to it).
    let (decoded, raw) = if method == Method::POST && is_json {
        (osmand::decode_json(&body), body)
    } else if method == Method::POST && !body.is_empty() {
        // A form body carries the same keys as the query string; both are read.
        let query = uri.query().unwrap_or_default();
        let form = String::from_utf8_lossy(&body);
        let joined = if query.is_empty() {
            format!("/?{form}")
        } else {
            format!("/?{query}&{form}")
        };
        (osmand::decode_request(&joined), Bytes::from(joined))
    } else if method == Method::GET || method == Method::POST {
        let target = uri.to_string();
        (osmand::decode_request(&target), Bytes::from(target))
    } else {
        let mut response =
            Problem::new(StatusCode::METHOD_NOT_ALLOWED, "use GET or POST").into_response();
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
        return response;
    };
    let decoded = match decoded {
        Ok(decoded) => decoded,
        Err(e) => {
            context.count_rejected(protocol, e.reason_label());
            debug!(error = %e, "OsmAnd request rejected.");
            return Problem::bad_request(e.to_string()).into_response();
        }
    };
    context.count_frame(protocol, &decoded);
    let Some(device_id) = decoded
        .messages
        .iter()
        .find_map(|m| m.device_id.as_deref())
        .map(|id| identity::normalise(id).into_owned())
    else {
        context.count_rejected(protocol, "no_identity");
        return Problem::bad_request("missing device id (id=...)").into_response();
    };
    let Some(person) = context.authorize(protocol, &device_id, "http") else {
        return Problem::not_found(format!("device {device_id} is not registered")).into_response();
    };
    match context
        .submit(protocol, &device_id, person, &decoded, raw, Utc::now())
        .await
    {
        Ok(()) => {
            // OsmAnd takes no commands; recording its protocol lets the API say so at once.
            context
                .report(LinkEvent::Seen {
                    device_id,
                    protocol,
                })
                .await;
            StatusCode::OK.into_response()
        }
        Err(e @ SubmitError::Closed) | Err(e @ SubmitError::NotCommitted(_)) => {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, format!("{e}; retry")).into_response()
        }
        Err(e @ SubmitError::Unstorable(_)) => Problem::bad_request(e.to_string()).into_response(),
    }
}
