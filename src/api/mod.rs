//! The HTTP API (`/api/v1`, JSON, bearer tokens) the monitoring centre and integrations use,
//! plus the open `/healthz` and `/metrics`.
//!
//! Handlers live one file per resource. They read and write through the [`Store`] trait, and
//! after each committed change tell the [`Registry`] so the change reaches the fence engine and
//! ingest on the next fix. Every error is a problem-details response ([`problem::Problem`]).

pub mod alerts;
pub mod auth;
pub mod devices;
pub mod persons;
pub mod problem;
pub mod tokens;
pub mod zones;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::registry::Registry;
use crate::store::Store;
use crate::telemetry::Metrics;

/// The `[http]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of the API.
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// Durable state.
    pub store: Arc<dyn Store>,
    /// The hot path's view, updated after each change.
    pub registry: Arc<Registry>,
    /// Metrics for `/metrics`.
    pub metrics: Arc<Metrics>,
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/persons", post(persons::create).get(persons::list))
        .route(
            "/persons/{id}",
            get(persons::get)
                .patch(persons::update)
                .delete(persons::delete),
        )
        .route(
            "/persons/{id}/zones",
            put(persons::set_zones).get(persons::zones),
        )
        .route("/persons/{id}/track", get(persons::track))
        .route("/devices", post(devices::create).get(devices::list))
        .route("/devices/{imei}", get(devices::get).delete(devices::delete))
        .route("/zones", post(zones::create).get(zones::list))
        .route("/zones/{id}", get(zones::get).delete(zones::delete))
        .route("/alerts", get(alerts::list))
        .route("/alerts/{id}", get(alerts::get))
        .route("/alerts/{id}/ack", post(alerts::acknowledge))
        .route("/alerts/{id}/resolve", post(alerts::resolve))
        .route("/tokens", post(tokens::create));
    Router::new()
        .nest("/api/v1", v1)
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(state)
}

impl AppState {
    /// Rebuilds the zone catalog after a committed change to zones or assignments, so the
    /// change reaches the fence engine on the next fix.
    ///
    /// # Errors
    /// 500 when the catalog cannot be rebuilt (the change is saved; the previous catalog stays).
    pub async fn reload_zones(&self) -> Result<(), problem::Problem> {
        self.registry
            .reload_zones(self.store.as_ref())
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "Zone catalog reload failed; the previous catalog stays in force.");
                problem::Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the change was saved but the zone catalog could not be rebuilt: {e}"),
                )
            })
    }
}

async fn healthz(State(state): State<AppState>) -> Response {
    match state.store.token_count().await {
        Ok(_) => Json(serde_json::json!({"status": "ok"})).into_response(),
        Err(e) => problem::Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the database does not answer: {e}"),
        )
        .into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn not_found() -> problem::Problem {
    problem::Problem::not_found("no such endpoint; the API lives under /api/v1")
}

/// Parses a path id, answering 404 for text that cannot be an id.
pub fn parse_id(what: &str, raw: &str) -> Result<uuid::Uuid, problem::Problem> {
    raw.parse()
        .map_err(|_| problem::Problem::not_found(format!("{what} {raw} not found")))
}
