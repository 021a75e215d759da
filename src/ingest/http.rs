//! OsmAnd ingest: the HTTP listener phone apps report to (`GET /?id=..&lat=..&lon=..`, the same
//! keys as a form body, or a JSON body). Each request is one submission; the app gets `200 OK`
//! only once its position is committed, `400` for a request that does not decode, `404` for an
//! unregistered device and `503` when the position could not be stored (the app retries).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use chrono::Utc;
use ewall_protocol::{osmand, Protocol};
use tracing::debug;

use super::{IngestContext, SubmitError};

/// The OsmAnd router; serve it on the `[listeners.osmand]` address.
pub fn router(context: Arc<IngestContext>) -> Router {
    Router::new().fallback(report).with_state(context)
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
    let decoded = if method == Method::POST && is_json {
        osmand::decode_json(&body)
    } else if method == Method::POST && !body.is_empty() {
        // A form body carries the same keys as the query string; both are read.
        let query = uri.query().unwrap_or_default();
        let form = String::from_utf8_lossy(&body);
        let joined = if query.is_empty() {
            format!("/?{form}")
        } else {
            format!("/?{query}&{form}")
        };
        osmand::decode_request(&joined)
    } else if method == Method::GET || method == Method::POST {
        osmand::decode_request(&uri.to_string())
    } else {
        return (StatusCode::METHOD_NOT_ALLOWED, "use GET or POST\n").into_response();
    };
    let decoded = match decoded {
        Ok(decoded) => decoded,
        Err(e) => {
            context.count_rejected(protocol, e.reason_label());
            debug!(error = %e, "OsmAnd request rejected.");
            return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
        }
    };
    context.count_frame(protocol, &decoded);
    let Some(device_id) = decoded.messages.iter().find_map(|m| m.device_id.clone()) else {
        context.count_rejected(protocol, "no_identity");
        return (StatusCode::BAD_REQUEST, "missing device id (id=...)\n").into_response();
    };
    let Some(person) = context.authorize(protocol, &device_id, "http") else {
        return (
            StatusCode::NOT_FOUND,
            format!("device {device_id} is not registered\n"),
        )
            .into_response();
    };
    match context
        .submit(protocol, &device_id, person, &decoded, Utc::now())
        .await
    {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e @ SubmitError::Closed) | Err(e @ SubmitError::NotCommitted(_)) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("{e}; retry\n")).into_response()
        }
    }
}
