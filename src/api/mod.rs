//! The HTTP API (`/api/v1`, JSON, bearer tokens) the monitoring centre and integrations use,
//! plus the open `/healthz`, `/readyz` and `/metrics`.
//!
//! Handlers live one file per resource. They read and write through the [`Store`] trait, and
//! after each committed change tell the [`Registry`] so the change reaches the fence engine and
//! ingest on the next fix. Every error is a problem-details response ([`problem::Problem`]).
//! The API describes itself at `/api/v1/openapi.json` ([`openapi`]); every route added here
//! needs a `#[utoipa::path]` on its handler and a line in [`openapi::ApiDoc`] (a unit test
//! fails otherwise).

pub mod alerts;
pub mod auth;
pub mod body;
pub mod broadcasts;
pub mod bulk_registration;
pub mod commands;
pub mod devices;
pub mod feed;
pub mod health;
pub mod integration;
pub mod openapi;
pub mod params;
pub mod persons;
pub mod positions;
pub mod problem;
pub mod reports;
pub mod stats;
pub mod stream;
pub mod supervision;
pub mod text;
pub mod tokens;
pub mod webhooks;
pub mod whoami;
pub mod zones;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use serde::{Deserialize, Serialize};

use crate::http::limits::{with_body_limit, BodyLimit};
use crate::registry::Registry;
use crate::store::Store;
use crate::telemetry::Metrics;

/// The `[http]` section: the API's address, its bounds, and TLS. The header and body read
/// timeouts apply to the OsmAnd listener too (its connection cap and idle timeout are its own,
/// under `[listeners.osmand]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of the API.
    pub listen: SocketAddr,
    /// Most API connections open at once; more are closed on accept.
    pub max_connections: usize,
    /// Close a connection after this long with nothing read or written.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Longest a client may take to send a request's line and headers (slowloris).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Longest a client may take to send a request's body, from its headers on.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// Largest request body, bytes, except zones.
    pub max_body_bytes: usize,
    /// Largest `POST /zones` body, bytes: room for a zone of a million vertices.
    pub max_zone_body_bytes: usize,
    /// PEM certificate chain; with `tls_key`, the API speaks HTTPS only.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_connections: 1024,
            idle_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
            max_body_bytes: 2 * 1024 * 1024,
            max_zone_body_bytes: 64 * 1024 * 1024,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl HttpConfig {
    /// Checks the values; an error names the key (relative to the section) and the problem.
    ///
    /// # Errors
    /// `(key, problem)` for the first bad value.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.max_connections == 0 {
            return Err(("max_connections", "must be at least 1".into()));
        }
        for (key, value) in [
            ("idle_timeout", self.idle_timeout),
            ("header_read_timeout", self.header_read_timeout),
            ("body_read_timeout", self.body_read_timeout),
        ] {
            if value.is_zero() {
                return Err((key, "must be longer than zero".into()));
            }
        }
        if self.max_body_bytes == 0 {
            return Err(("max_body_bytes", "must be at least 1".into()));
        }
        if self.max_zone_body_bytes < self.max_body_bytes {
            return Err((
                "max_zone_body_bytes",
                "must be at least max_body_bytes".into(),
            ));
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => Err(("tls_key", "tls_cert is set; tls_key must be too".into())),
            (None, Some(_)) => Err(("tls_cert", "tls_key is set; tls_cert must be too".into())),
            _ => Ok(()),
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
    /// When each token's use was last written (throttles last-use writes).
    pub token_uses: Arc<auth::TokenUses>,
    /// Downlink commands: stores them and sends them to connected devices.
    pub commands: Arc<crate::commands::CommandDispatcher>,
    /// Cancelled when the service stops, which ends the endless responses (SSE streams).
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Names of the configured webhooks.
    pub webhooks: Arc<[String]>,
    /// What the police entry-exit integration is shown (`[integration]`).
    pub integration: Arc<integration::IntegrationConfig>,
    /// Each supervision level's settings (the reporting interval a level change sets).
    pub levels: Arc<crate::fence::LevelsConfig>,
    /// The time zone of a person created without one (`fence.default_timezone`).
    pub default_timezone: chrono_tz::Tz,
    /// Where changes the timer-driven rules must know of go (to the pipeline's shards).
    pub notices: crate::pipeline::Notices,
    /// Monitoring orders and the timer-driven rules' settings.
    pub supervision: crate::supervision::SupervisionConfig,
    /// Whether the store writer can reach the database, for `/readyz`.
    pub store_health: Arc<crate::store::health::StoreHealth>,
    /// Committed positions and alerts, for the live positions stream.
    pub live: positions::LiveFeeds,
    /// The operator console's settings (its base map), which `whoami` hands the console.
    pub console: Arc<crate::console::ConsoleConfig>,
    /// Cluster mode: this node and its partitions, for `/readyz` (`None` for a single node).
    pub cluster: Option<Arc<crate::cluster::node::ClusterStatus>>,
}

/// The whole API. Request bodies are bounded by `http.max_body_bytes`, except `POST /zones`,
/// which has `http.max_zone_body_bytes` (a zone of a million vertices is tens of megabytes).
pub fn router(state: AppState, http: &HttpConfig) -> Router {
    let general = BodyLimit {
        max_bytes: http.max_body_bytes,
        read_timeout: http.body_read_timeout,
    };
    let zones = with_body_limit(
        Router::new().route("/zones", post(zones::create).get(zones::list)),
        BodyLimit {
            max_bytes: http.max_zone_body_bytes,
            ..general
        },
    );
    let v1 = Router::new()
        .route("/persons", post(persons::create).get(persons::list))
        .route("/persons/bulk", post(bulk_registration::register))
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
        .route(
            "/persons/{id}/leaves",
            post(supervision::create_leave).get(supervision::list_leaves),
        )
        .route(
            "/persons/{id}/leaves/{leave_id}/cancel",
            post(supervision::cancel_leave),
        )
        .route(
            "/persons/{id}/leaves/{leave_id}/end",
            post(supervision::end_leave),
        )
        .route(
            "/persons/{id}/orders",
            post(supervision::create_order).get(supervision::list_orders),
        )
        .route(
            "/persons/{id}/checkins",
            post(supervision::create_checkin).get(supervision::list_checkins),
        )
        .route("/persons/{id}/record", get(reports::record))
        .route(
            "/persons/{id}/assessments",
            post(reports::create_assessment).get(reports::list_assessments),
        )
        .route("/persons/{id}/level-review", get(reports::level_review))
        .route(
            "/broadcasts",
            post(broadcasts::create).get(broadcasts::list),
        )
        .route("/broadcasts/{id}", get(broadcasts::get))
        .route("/devices", post(devices::create).get(devices::list))
        .route(
            "/devices/{imei}",
            get(devices::get)
                .patch(devices::update)
                .delete(devices::delete),
        )
        .route(
            "/devices/{imei}/commands",
            post(commands::create).get(commands::list),
        )
        .route("/devices/{imei}/commands/{id}", get(commands::get))
        .route("/zones/{id}", get(zones::get).delete(zones::delete))
        .route("/alerts", get(alerts::list))
        .route("/alerts/stream", get(stream::stream))
        .route("/positions/stream", get(positions::stream))
        .route("/whoami", get(whoami::whoami))
        .route("/alerts/{id}", get(alerts::get))
        .route("/alerts/{id}/ack", post(alerts::acknowledge))
        .route("/alerts/{id}/verify", post(alerts::verify))
        .route("/alerts/{id}/dispose", post(alerts::dispose))
        .route("/alerts/{id}/close", post(alerts::close))
        .route("/alerts/{id}/resolve", post(alerts::resolve))
        .route("/alerts/{id}/actions", get(alerts::actions))
        .route("/stats/alerts", get(stats::alerts))
        .route("/stats/county", get(reports::county))
        .route("/integration/feed", get(feed::feed))
        .route("/integration/reads", get(integration::reads))
        .route("/integration/border-hits", post(integration::border_hit))
        .route("/webhooks/{name}/deliveries", get(webhooks::list))
        .route(
            "/webhooks/{name}/deliveries/redeliver",
            post(webhooks::redeliver_all),
        )
        .route(
            "/webhooks/{name}/deliveries/{id}/redeliver",
            post(webhooks::redeliver_one),
        )
        .route("/tokens", post(tokens::create).get(tokens::list))
        .route("/tokens/{id}", delete(tokens::revoke))
        .route("/openapi.json", get(openapi::serve));
    // Every request of an integration token is recorded, whatever route it reaches.
    let v1 = with_body_limit(v1, general)
        .merge(zones)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            integration::record_reads,
        ));
    let open = with_body_limit(
        Router::new()
            .route("/healthz", get(health::healthz))
            .route("/readyz", get(health::readyz))
            .route("/metrics", get(metrics)),
        general,
    );
    Router::new()
        .nest("/api/v1", v1)
        .merge(open)
        .fallback(not_found)
        .layer(axum::middleware::from_fn(actor_scope))
        .with_state(state)
}

/// Runs each request in its own audit actor scope: the authentication names the token there
/// ([`auth::Caller`]), and the actions the store records for the request carry it.
async fn actor_scope(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    crate::store::chain::with_actor(None, next.run(request)).await
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

/// Prometheus metrics, text exposition format.
#[utoipa::path(
    get, path = "/metrics", tag = "service",
    responses(
        (status = 200, description = "Every ewall metric.", content_type = "text/plain; version=0.0.4", body = String),
    ),
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zone_body_limit_fits_the_largest_zone_the_engine_takes() {
        // A ring of MAX_VERTICES positions at full f64 precision, as serde_json writes it.
        let n = crate::fence::MAX_VERTICES;
        let ring: Vec<[f64; 2]> = (0..n)
            .map(|i| {
                let a = i as f64 / n as f64 * std::f64::consts::TAU;
                [
                    112.360_000_000_1 + 0.5 * a.cos(),
                    -25.510_000_000_1 + 0.5 * a.sin(),
                ]
            })
            .collect();
        let zone = serde_json::json!({
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"name": "largest", "kind": "inclusion"}
        });
        let bytes = serde_json::to_vec(&zone).unwrap().len();
        let config = HttpConfig::default();
        assert!(
            bytes < config.max_zone_body_bytes,
            "{bytes} bytes against {}",
            config.max_zone_body_bytes
        );
        assert!(bytes > config.max_body_bytes);
    }
}
