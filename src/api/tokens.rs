//! `/api/v1/tokens` (admin): create a token for any role (the secret appears in that response
//! only), list every token with its expiry, revocation and last use, and revoke one. A revoked
//! token is refused at once; its row stays, so the listing still shows who could act when.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::{create_token_until, Caller};
use super::body::JsonObject;
use super::problem::Problem;
use super::text::check_name;
use super::{parse_id, AppState};
use crate::store::{Role, TokenRecord};

/// Body of a token request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What the token may do.
    #[schema(value_type = Role)]
    role: String,
    /// Who holds it.
    #[serde(default)]
    #[schema(schema_with = super::openapi::optional_name_schema)]
    label: Option<String>,
    /// RFC 3339, in the future; absent for a token that does not expire.
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

/// A token as listed: everything but the secret, which the store does not have.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    /// Token id (not secret).
    pub id: Uuid,
    /// What the token may do.
    pub role: Role,
    /// Who holds it.
    pub label: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working; null for never.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it was last used, to within a minute.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<&TokenRecord> for TokenView {
    fn from(record: &TokenRecord) -> Self {
        TokenView {
            id: record.id,
            role: record.role,
            label: record.label.clone(),
            created_at: record.created_at,
            expires_at: record.expires_at,
            revoked_at: record.revoked_at,
            last_used_at: record.last_used_at,
        }
    }
}

/// A token as `ewall token list` prints it: the listing's JSON.
pub fn token_json(record: &TokenRecord) -> serde_json::Value {
    // A struct of strings, ids and times always serialises.
    serde_json::to_value(TokenView::from(record)).unwrap_or_default()
}

/// A token just created: the listing's fields and the secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    /// The token as it will be listed.
    #[serde(flatten)]
    pub token: TokenView,
    /// The secret to send as `Authorization: Bearer <token>`; the server keeps only its hash.
    #[serde(rename = "token")]
    pub secret: String,
}

/// `GET /tokens`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    /// Every token, oldest first.
    pub tokens: Vec<TokenView>,
}

/// Creates a token.
#[utoipa::path(
    post, path = "/api/v1/tokens", tag = "tokens",
    security(("bearer" = [])),
    request_body = NewToken,
    responses(
        (status = 201, description = "The token; its secret is shown only here.", body = CreatedToken),
        (status = 415, response = super::openapi::UnsupportedMediaType),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonObject(body): JsonObject<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), Problem> {
    caller.require(&[Role::Admin], "create tokens")?;
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
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: TokenView::from(&record),
            secret,
        }),
    ))
}

/// Every token, oldest first.
#[utoipa::path(
    get, path = "/api/v1/tokens", tag = "tokens",
    security(("bearer" = [])),
    responses((status = 200, description = "Every token.", body = TokenList)),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<TokenList>, Problem> {
    caller.require(&[Role::Admin], "list tokens")?;
    let tokens = state
        .store
        .tokens()
        .await?
        .iter()
        .map(TokenView::from)
        .collect();
    Ok(Json(TokenList { tokens }))
}

/// Revokes a token; revoking it again changes nothing.
#[utoipa::path(
    delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Token id.")),
    responses((status = 204, description = "Revoked (or already revoked).")),
)]
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
