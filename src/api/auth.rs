//! Bearer-token authentication and the role each endpoint requires.
//!
//! Tokens are random secrets shown once at creation; the store keeps only their SHA-256. There
//! is no open access: every `/api/v1` request carries `Authorization: Bearer <token>`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use chrono::{SubsecRound, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::problem::Problem;
use super::AppState;
use crate::store::{Role, Store, StoreError, TokenRecord};

/// Prefix of every token, so a leaked one is easy to recognise.
pub const TOKEN_PREFIX: &str = "ewall_";

/// The caller, authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// What the caller's token may do.
    pub role: Role,
}

impl Caller {
    /// Succeeds when the caller holds one of `roles`.
    ///
    /// # Errors
    /// 403 naming the roles that would be allowed.
    pub fn require(&self, roles: &[Role], action: &str) -> Result<(), Problem> {
        if roles.contains(&self.role) {
            return Ok(());
        }
        let allowed: Vec<&str> = roles.iter().map(Role::as_str).collect();
        Err(Problem::new(
            StatusCode::FORBIDDEN,
            format!(
                "a {} token cannot {action}; this needs a token with role {}",
                self.role.as_str(),
                allowed.join(" or ")
            ),
        ))
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let unauthorized = |detail: &str| Problem::new(StatusCode::UNAUTHORIZED, detail);
        let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            unauthorized(
                "missing Authorization header; send `Authorization: Bearer <token>` \
                     (create a token with `ewall token create --role operator`)",
            )
        })?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
        let record = state
            .store
            .token_by_hash(&hash_secret(token))
            .await?
            .ok_or_else(|| unauthorized("unknown or revoked token"))?;
        Ok(Caller { role: record.role })
    }
}

/// SHA-256 of a token secret, hex.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Creates a token with `role`, stores its hash and returns the record and the secret.
///
/// # Errors
/// Store errors.
pub async fn create_token(
    store: &dyn Store,
    role: Role,
    label: Option<String>,
) -> Result<(TokenRecord, String), StoreError> {
    let mut secret_bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut secret_bytes);
    let secret = format!("{TOKEN_PREFIX}{}", hex::encode(secret_bytes));
    let record = TokenRecord {
        id: crate::model::new_id(),
        role,
        label,
        // The store keeps microseconds; return what a later read returns.
        created_at: Utc::now().trunc_subsecs(6),
    };
    store.create_token(&record, &hash_secret(&secret)).await?;
    Ok((record, secret))
}
