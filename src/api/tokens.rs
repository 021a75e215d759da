//! `/api/v1/tokens` (admin): create a token for any role (the secret appears in that response
//! only), list every token with its expiry, revocation and last use, and revoke one. A revoked
//! token is refused at once; its row stays, so the listing still shows who could act when.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{create_token_until, Caller};
use super::problem::Problem;
use super::text::check_name;
use super::{parse_id, AppState};
use crate::store::{Role, TokenRecord};

/// Body of a token request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    role: String,
    #[serde(default)]
    label: Option<String>,
    /// RFC 3339; absent for a token that does not expire.
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

/// A token as listed: everything but the secret, which the store does not have.
pub fn token_json(record: &TokenRecord) -> Value {
    json!({
        "id": record.id,
        "role": record.role,
        "label": record.label,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "revoked_at": record.revoked_at,
        "last_used_at": record.last_used_at,
    })
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
    let label = body
        .label
        .as_deref()
        .map(|l| check_name("label", l))
        .transpose()?;
    if let Some(at) = body.expires_at {
        if at <= Utc::now() {
            return Err(Problem::unprocessable(format!(
                "expires_at {} is already past",
                at.to_rfc3339()
            )));
        }
    }
    let (record, secret) =
        create_token_until(state.store.as_ref(), role, label, body.expires_at).await?;
    let mut value = token_json(&record);
    value["token"] = json!(secret);
    Ok((StatusCode::CREATED, Json(value)))
}

/// Every token, oldest first.
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, Problem> {
    caller.require(&[Role::Admin], "list tokens")?;
    let tokens: Vec<Value> = state.store.tokens().await?.iter().map(token_json).collect();
    Ok(Json(json!({ "tokens": tokens })))
}

/// Revokes a token; revoking it again changes nothing.
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(&[Role::Admin], "revoke tokens")?;
    let id = parse_id("token", &id)?;
    let record = state.store.revoke_token(id, Utc::now()).await?;
    tracing::info!(token = %record.id, role = record.role.as_str(), "API token revoked.");
    Ok(StatusCode::NO_CONTENT)
}
