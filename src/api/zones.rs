//! placeholder
#![allow(missing_docs)]
use axum::http::StatusCode;
pub async fn create() -> StatusCode {
    StatusCode::NOT_IMPLEMENTED
}
pub async fn list() -> StatusCode {
    StatusCode::NOT_IMPLEMENTED
}
pub async fn get() -> StatusCode {
    StatusCode::NOT_IMPLEMENTED
}
pub async fn delete() -> StatusCode {
    StatusCode::NOT_IMPLEMENTED
}
