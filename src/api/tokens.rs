//! `POST /api/v1/tokens`: an admin creates a token for another role. The secret appears in this
//! response only.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{create_token, Caller};
use super::problem::Problem;
use super::AppState;
use crate::store::Role;

/// Body of a token request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    role: String,
    #[serde(default)]
    label: Option<String>,
}

/// Creates a token.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<NewToken>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    caller.require(&[Role::Admin], "create tokens")?;
    let Json(body) = body?;
    let role: Role = body.role.parse().map_err(Problem::unprocessable)?;
    let (record, secret) = create_token(state.store.as_ref(), role, body.label).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": record.id,
            "role": record.role,
            "label": record.label,
            "token": secret,
            "created_at": record.created_at,
        })),
    ))
}
