//! The API's errors: [`Problem`] (RFC 9457, `application/problem+json`, shared with every HTTP
//! port in [`crate::http::problem`]) and how store errors and extractor rejections map onto
//! statuses, here and nowhere else.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use tracing::error;

pub use crate::http::problem::Problem;
use crate::store::StoreError;

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
        // Each rejection knows its status: 415 without a JSON content type, 400 for a syntax
        // error, 413 for a body over the limit, 422 for JSON of the wrong shape.
        Problem::new(e.status(), e.body_text())
    }
}

impl From<QueryRejection> for Problem {
    fn from(e: QueryRejection) -> Self {
        Problem::bad_request(e.body_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::extract::{FromRequest, Request};
    use axum::Json;

    #[tokio::test]
    async fn a_json_body_over_the_limit_is_413_not_422() {
        let request = Request::builder()
            .method("POST")
            .header("content-type", "application/json")
            .body(Body::from(vec![b' '; 3 * 1024 * 1024]))
            .unwrap();
        let rejection = Json::<serde_json::Value>::from_request(request, &())
            .await
            .unwrap_err();
        assert_eq!(Problem::from(rejection).status, 413);
    }
}
