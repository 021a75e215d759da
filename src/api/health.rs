//! The two open probes: `/healthz` says the process is up and serving HTTP (liveness: a
//! supervisor restarts it when this fails), `/readyz` says whether it can do its work, that is
//! whether the database answers and the store writer is committing (readiness: a load balancer
//! or an operator's dashboard reads it). During a database outage `/healthz` stays 200, because
//! restarting would lose nothing but also fix nothing and drop every device connection, while
//! `/readyz` answers 503 with a problem document titled `degraded` whose detail is the reason.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::AppState;
use crate::http::problem::PROBLEM_JSON;

/// Longest `/readyz` waits for the database to answer its probe; a probe must answer sooner
/// than the probers' own timeouts (often 1 to 5 s), and a database slower than this is not
/// ready to take a batch either.
pub const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The process is up.
#[utoipa::path(
    get, path = "/healthz", tag = "service",
    responses(
        (status = 200, description = "The process serves HTTP. Says nothing of the database: see `/readyz`.", body = Health),
    ),
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: HealthStatus::Ok,
    })
}

/// What `/healthz` answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: HealthStatus,
}

/// The liveness status.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Serving.
    Ok,
}

/// The problem type of a degraded service.
pub const DEGRADED: &str = "urn:ewall:problem:degraded";

/// Whether the service can store positions: the database answers a probe within
/// [`READY_PROBE_TIMEOUT`] and the store writer is not holding a batch for want of it.
#[utoipa::path(
    get, path = "/readyz", tag = "service",
    responses(
        (status = 200, description = "Ready: the database answers and batches commit.", body = Readiness),
        (status = 503, description = "Degraded: the database does not answer or the store \
            writer cannot reach it. Device connections stay open; their positions are held and \
            not acknowledged until the database answers (in cluster mode they are acknowledged \
            once in the fix stream, and wait there).",
         content_type = "application/problem+json", body = Degraded),
    ),
)]
pub async fn readyz(State(state): State<AppState>) -> Response {
    // A cluster node has a store writer per owned partition; its devices are acknowledged
    // by the fix stream, where what the writers cannot commit waits.
    let (outage, reason) = match &state.cluster {
        None => {
            let outage = state.store_health.outage();
            let reason = outage.as_ref().map(|o| {
                format!(
                    "the store writer cannot reach the database ({}); {} positions held, devices not acknowledged",
                    o.reason, o.held_positions
                )
            });
            (outage, reason)
        }
        Some(cluster) => match cluster.store_outage() {
            Some((outage, partitions)) => {
                let reason = format!(
                    "the store writers of {partitions} of this node's partitions cannot reach the database ({}); {} positions held, the rest wait in the fix stream",
                    outage.reason, outage.held_positions
                );
                (Some(outage), Some(reason))
            }
            None => (None, None),
        },
    };
    let reason = match reason {
        Some(reason) => reason,
        None => match tokio::time::timeout(READY_PROBE_TIMEOUT, state.store.ping()).await {
            Ok(Ok(())) => {
                return Json(Readiness {
                    status: ReadinessStatus::Ready,
                    cluster: cluster_readiness(&state),
                })
                .into_response()
            }
            Ok(Err(e)) => format!("the database does not answer: {e}"),
            Err(_) => format!(
                "the database did not answer within {} s",
                READY_PROBE_TIMEOUT.as_secs()
            ),
        },
    };
    let degraded = Degraded {
        kind: DEGRADED,
        title: "degraded".into(),
        status: StatusCode::SERVICE_UNAVAILABLE.as_u16(),
        detail: reason,
        since: outage.as_ref().map(|o| o.since),
        held_positions: outage.map(|o| o.held_positions as u64),
        cluster: cluster_readiness(&state),
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, PROBLEM_JSON)],
        Json(degraded),
    )
        .into_response()
}

fn cluster_readiness(state: &AppState) -> Option<ClusterReadiness> {
    state.cluster.as_ref().map(|c| ClusterReadiness {
        node_id: c.node_id.clone(),
        partitions: c.owned(),
        nodes: c.nodes(),
        partition_count: c.partitions,
    })
}

/// What `/readyz` answers when ready.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// Always `ready`.
    pub status: ReadinessStatus,
    /// Cluster mode only: this node and the partitions it owns now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterReadiness>,
}

/// A cluster node's share, as `/readyz` reports it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClusterReadiness {
    /// This node's `cluster.node_id`.
    pub node_id: String,
    /// The partitions this node owns (processes) now, ascending.
    pub partitions: Vec<u32>,
    /// The nodes alive at the last lease round, this one included.
    pub nodes: Vec<String>,
    /// The deployment's `cluster.partitions`.
    pub partition_count: u32,
}

/// The ready status.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadinessStatus {
    /// The database answers and batches commit.
    Ready,
}

/// What `/readyz` answers when degraded: a problem document (RFC 9457) with two extension
/// members saying since when the store writer has been waiting and what it holds.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Degraded {
    /// Always `urn:ewall:problem:degraded`.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: &'static str,
    /// Always `degraded`.
    pub title: String,
    /// Always 503.
    #[schema(minimum = 503, maximum = 503)]
    pub status: u16,
    /// The reason: what the database last answered, or that it did not answer in time.
    pub detail: String,
    /// When the store writer's first commit failed for want of the database (in cluster mode,
    /// the first of the owned partitions' writers); absent when only the probe failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// Positions the store writer holds until the database answers (in cluster mode, all the
    /// owned partitions' writers together); absent as `since` is.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub held_positions: Option<u64>,
    /// Cluster mode only: this node and the partitions it owns now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterReadiness>,
}
