//! Bearer-token authentication and the role each endpoint requires.
//!
//! Tokens are random secrets shown once at creation; the store keeps only their SHA-256. There
//! is no open access: every `/api/v1` request carries `Authorization: Bearer <token>` (the
//! scheme in any case, as RFC 9110 has it). A token may expire (`expires_at`) and can be
//! revoked; either is refused with 401 and the reason. Each token's last use is recorded, at
//! most once a minute per token, so authentication costs no write per request.
//!
//! An `integration` token is judged here by route as well as by role: it may call only the
//! routes `api::integration` lists (alerts, the feed, border hits), and anything else is 403
//! before the handler or its body is reached; its requests are noted for the reads log.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use chrono::{DateTime, SubsecRound, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use uuid::Uuid;

use super::integration::{integration_may, ReadSlot};
use super::problem::Problem;
use super::AppState;
use crate::store::{Role, Store, StoreError, TokenRecord};

/// Prefix of every token, so a leaked one is easy to recognise.
pub const TOKEN_PREFIX: &str = "ewall_";

/// The caller, authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// What the caller's token may do.
    pub role: Role,
    /// The token's id, recorded with what the caller does (an alert's handling steps).
    pub token_id: Uuid,
    /// The token's label, recorded with the id.
    pub label: Option<String>,
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
        let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            Problem::unauthorized(
                "missing Authorization header; send `Authorization: Bearer <token>` \
                 (create a token with `ewall token create --role operator`)",
            )
        })?;
        let token = bearer_token(value.as_bytes()).ok_or_else(|| {
            Problem::unauthorized("the Authorization header must be `Bearer <token>`")
        })?;
        let record = state
            .store
            .token_by_hash(&hash_secret(token))
            .await?
            .ok_or_else(|| Problem::unauthorized("unknown token"))?;
        let now = Utc::now();
        if let Some(reason) = record.refusal(now) {
            return Err(Problem::unauthorized(reason));
        }
        if record.role == Role::Integration {
            // Noted before the route is judged, so that a refused request is recorded too.
            if let Some(slot) = parts.extensions.get::<ReadSlot>() {
                slot.note_token(record.id);
            }
            let route = parts
                .extensions
                .get::<MatchedPath>()
                .map(MatchedPath::as_str);
            if !integration_may(&parts.method, route) {
                return Err(Problem::new(
                    StatusCode::FORBIDDEN,
                    "an integration token reads alerts and the integration feed and reports \
                     border hits, nothing else",
                ));
            }
        }
        if state.token_uses.due(record.id, Instant::now()) {
            // Recorded off the request's path: a slow write never delays the caller, and a
            // failed one only leaves the last use a little older.
            let store = state.store.clone();
            let id = record.id;
            tokio::spawn(async move {
                if let Err(e) = store.record_token_use(id, now.trunc_subsecs(6)).await {
                    tracing::warn!(token = %id, error = %e, "Could not record a token's last use.");
                }
            });
        }
        // Actions this request makes are recorded as this token's (the audit trail).
        crate::store::chain::set_actor(format!("token:{}", record.id));
        Ok(Caller {
            role: record.role,
            token_id: record.id,
            label: record.label,
        })
    }
}

/// The token of an `Authorization` value whose scheme is `Bearer`, compared without regard to
/// case as RFC 9110 requires; `None` for another scheme or no token.
pub fn bearer_token(value: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = text.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// How often a token's use is written to the store, at most.
pub const TOKEN_USE_INTERVAL: Duration = Duration::from_secs(60);

/// Most tokens whose last recorded use is remembered; beyond it the memory starts afresh (at
/// worst one extra write per token).
const TOKEN_USES_REMEMBERED: usize = 100_000;

/// When each token's use was last written, so a token used a thousand times a minute costs one
/// write a minute.
#[derive(Debug, Default)]
pub struct TokenUses {
    written: Mutex<HashMap<Uuid, Instant>>,
}

impl TokenUses {
    /// Whether a use of `id` at `now` should be written (and, if so, notes that it is).
    pub fn due(&self, id: Uuid, now: Instant) -> bool {
        // A poisoned lock only means another thread panicked between two plain updates.
        let mut written = self
            .written
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(last) = written.get(&id) {
            if now.duration_since(*last) < TOKEN_USE_INTERVAL {
                return false;
            }
        }
        if written.len() >= TOKEN_USES_REMEMBERED {
            written.clear();
        }
        written.insert(id, now);
        true
    }
}

/// SHA-256 of a token secret, hex.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Creates a token with `role` that never expires; see [`create_token_until`].
///
/// # Errors
/// Store errors.
pub async fn create_token(
    store: &dyn Store,
    role: Role,
    label: Option<String>,
) -> Result<(TokenRecord, String), StoreError> {
    create_token_until(store, role, label, None).await
}

/// Creates a token with `role`, valid until `expires_at` (if given), stores its hash and
/// returns the record and the secret.
///
/// # Errors
/// Store errors.
pub async fn create_token_until(
    store: &dyn Store,
    role: Role,
    label: Option<String>,
    expires_at: Option<DateTime<Utc>>,
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
        expires_at: expires_at.map(|t| t.trunc_subsecs(6)),
        revoked_at: None,
        last_used_at: None,
    };
    store.create_token(&record, &hash_secret(&secret)).await?;
    Ok((record, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_matched_without_regard_to_case() {
        assert_eq!(bearer_token(b"Bearer abc"), Some("abc"));
        assert_eq!(bearer_token(b"bearer abc"), Some("abc"));
        assert_eq!(bearer_token(b"BEARER   abc "), Some("abc"));
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bearer"), None);
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Bearerabc"), None);
        assert_eq!(bearer_token(&[0x42, 0xff, 0x20, 0x61]), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_s_use_is_written_at_most_once_a_minute() {
        let uses = TokenUses::default();
        let (a, b) = (crate::model::new_id(), crate::model::new_id());
        let mut writes = 0;
        // A request a second for three minutes.
        for _ in 0..180 {
            if uses.due(a, Instant::now()) {
                writes += 1;
            }
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert_eq!(writes, 3);
        assert!(uses.due(b, Instant::now()), "tokens are throttled apart");
    }
}
