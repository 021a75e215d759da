//! Errors as RFC 9457 problem details (`application/problem+json`), with a message a person can
//! act on, for every HTTP port.
//!
//! Handlers return [`Problem`] for anything but success. What the handlers do not produce
//! themselves, the method router's 405, an extractor's plain-text rejection, is rewritten into
//! a problem document by [`problem_errors`], keeping the status and headers such as `Allow`;
//! the connection layer does the same for what hyper answers before a request reaches the
//! router (see [`super::serve`]).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The media type of every error.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The challenge every 401 carries (RFC 6750).
pub const BEARER_CHALLENGE: &str = "Bearer realm=\"ewall\"";

/// Most bytes of a plain-text rejection kept as a problem's detail.
const DETAIL_MAX: usize = 4096;

/// A problem-details response.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "type": "about:blank",
    "title": "Unprocessable Entity",
    "status": 422,
    "detail": "timezone \"Mars/Olympus\" is not an IANA time zone name such as \"Asia/Shanghai\""
}))]
pub struct Problem {
    /// A URI naming the problem type; `about:blank` means the status says it all.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: &'static str,
    /// Short summary (the status's reason phrase).
    pub title: String,
    /// HTTP status code.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// What went wrong in this case and what to do about it.
    pub detail: String,
}

impl Problem {
    /// A problem with `status` and `detail`.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
        }
    }

    /// 400.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 401; the response carries `WWW-Authenticate: Bearer`.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::UNAUTHORIZED, detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, detail)
    }

    /// 422: the request is well-formed but its content is not acceptable.
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }

    /// The document as bytes.
    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings and an integer always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (
            status,
            [(header::CONTENT_TYPE, PROBLEM_JSON)],
            self.to_json(),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(BEARER_CHALLENGE),
            );
        }
        response
    }
}

/// Middleware: any error response (4xx, 5xx) that is not already a problem document becomes
/// one with the same status and headers, its text (if any) as the detail.
pub async fn problem_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if is_problem {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, DETAIL_MAX).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let detail = if text.is_empty() {
        default_detail(status)
    } else {
        text
    };
    let problem = Problem::new(status, detail);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    if status == StatusCode::UNAUTHORIZED {
        parts.headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(BEARER_CHALLENGE),
        );
    }
    Response::from_parts(parts, Body::from(problem.to_json()))
}

/// What to say for a status that came without text.
pub fn default_detail(status: StatusCode) -> String {
    match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            "this method is not allowed here; the Allow header lists the ones that are".into()
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            "the request body is larger than this endpoint accepts".into()
        }
        StatusCode::URI_TOO_LONG => "the request target is longer than the server accepts".into(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            "the request headers are larger than the server accepts".into()
        }
        StatusCode::BAD_REQUEST => "the request is not valid HTTP".into(),
        other => other
            .canonical_reason()
            .unwrap_or("the request failed")
            .to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_405_becomes_a_problem_and_keeps_its_allow_header() {
        let app = Router::new()
            .route("/only-get", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn(problem_errors));
        let response = app
            .oneshot(
                Request::builder()
                    .method("DELETE")
                    .uri("/only-get")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert!(response.headers().contains_key(header::ALLOW));
        let body = axum::body::to_bytes(response.into_body(), 10_000)
            .await
            .unwrap();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["status"], 405);
        assert!(value["detail"].as_str().unwrap().contains("Allow"));
    }

    #[test]
    fn a_401_carries_the_bearer_challenge() {
        let response = Problem::unauthorized("no token").into_response();
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            BEARER_CHALLENGE
        );
    }
}
