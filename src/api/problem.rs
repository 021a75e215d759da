//! Errors as RFC 9457 problem details (`application/problem+json`), with a message a person can
//! act on. Every handler returns [`Problem`] for anything but success; store errors map onto
//! statuses here and nowhere else.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tracing::error;

use crate::store::StoreError;

/// A problem-details response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// A URI naming the problem type; `about:blank` means the status says it all.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Short summary (the status's reason phrase).
    pub title: String,
    /// HTTP status code.
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

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, detail)
    }

    /// 422: the request is well-formed but its content is not acceptable.
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response()
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => Problem::not_found(e.to_string()),
            StoreError::Conflict(detail) => Problem::new(StatusCode::CONFLICT, detail),
            StoreError::UnknownReference(detail) => Problem::unprocessable(detail),
            other => {
                error!(error = %other, "Store error while serving a request.");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the database failed; the request was not carried out, try again",
                )
            }
        }
    }
}

impl From<JsonRejection> for Problem {
    fn from(e: JsonRejection) -> Self {
        let status = match &e {
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            JsonRejection::JsonSyntaxError(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Problem::new(status, e.body_text())
    }
}

impl From<QueryRejection> for Problem {
    fn from(e: QueryRejection) -> Self {
        Problem::bad_request(e.body_text())
    }
}
