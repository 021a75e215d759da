//! `GET /api/v1/positions/stream`: each person's latest position and supervision state, live,
//! as server-sent events, for the operators' map.
//!
//! The stream opens with every person's latest stored position (one `position` event each),
//! then sends a person's position again whenever a committed batch moves it or an alert changes
//! the person's state. The state is the server's, read from the store: `breach` while a breach
//! episode is open, `offline` while a device's offline episode is open, `unsupervised` while the
//! person's unsupervised episode is open, `compliant` otherwise. Updates are gathered for
//! [`FLUSH_INTERVAL`] so a busy centre costs the page one message per person per interval. The
//! stream has no event ids: on reconnect it starts again with the latest positions, which is all
//! a map needs. A subscriber that falls behind the live feed gets every position afresh.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::Stream;
use serde::Serialize;
use tokio::sync::broadcast::{self, error::RecvError};
use tracing::warn;
use utoipa::ToSchema;

use super::auth::Caller;
use super::problem::Problem;
use super::AppState;
use crate::alert::dispatch::sse::KEEP_ALIVE;
use crate::model::{Alert, AlertKind, Fix, PersonId};
use crate::store::{Role, Store, StoreError};

/// How long updates are gathered before they are sent.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(250);

/// The committed positions and alerts the live streams follow.
#[derive(Clone)]
pub struct LiveFeeds {
    /// Positions as the store writer commits them, a batch at a time.
    pub fixes: broadcast::Sender<Arc<[Fix]>>,
    /// Alerts as they are committed.
    pub alerts: broadcast::Sender<Alert>,
}

impl Default for LiveFeeds {
    /// Feeds nothing is published on (for a router built without a pipeline).
    fn default() -> Self {
        LiveFeeds {
            fixes: broadcast::channel(1).0,
            alerts: broadcast::channel(1).0,
        }
    }
}

/// A person's supervision state as the map colours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PersonState {
    /// Nothing open.
    Compliant,
    /// A breach episode (zone exit or entry, curfew, overdue leave) is open.
    Breach,
    /// A device's offline episode is open.
    Offline,
    /// The person's unsupervised episode (no device bound) is open.
    Unsupervised,
}

/// One `position` event's data.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LivePosition {
    /// The person.
    #[schema(value_type = String, format = Uuid)]
    pub person_id: PersonId,
    /// The device that sent the position.
    pub device_id: String,
    /// Fix time, UTC.
    pub time: DateTime<Utc>,
    /// WGS-84 latitude.
    pub lat: f64,
    /// WGS-84 longitude.
    pub lon: f64,
    /// Accuracy radius in metres, when the device gave one.
    pub accuracy_m: Option<f64>,
    /// The person's state now.
    pub state: PersonState,
}

/// The live positions.
#[utoipa::path(
    get, path = "/api/v1/positions/stream", tag = "persons",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Server-sent events named `position`, `data:` = a \
            `LivePosition`: first every person's latest position, then each change of position \
            or state; keep-alive comments between them. The stream does not end.",
         content_type = "text/event-stream", body = LivePosition),
    ),
)]
pub async fn stream(State(state): State<AppState>, caller: Caller) -> Result<Response, Problem> {
    caller.require(&[Role::Admin, Role::Operator], "follow live positions")?;
    // Subscribed before the snapshot is read, so nothing committed in between is missed.
    let fixes = state.live.fixes.subscribe();
    let alerts = state.live.alerts.subscribe();
    let latest = latest_positions(state.store.as_ref()).await?;
    let follower = Follower {
        store: state.store.clone(),
        fixes,
        alerts,
        latest,
        dirty: HashSet::new(),
        outbox: Vec::new(),
        started: false,
        stop: state.shutdown.clone(),
    };
    Ok(Sse::new(follower.into_stream())
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

/// Each person's newest position across their devices, from the store.
async fn latest_positions(store: &dyn Store) -> Result<HashMap<PersonId, Fix>, StoreError> {
    let mut latest: HashMap<PersonId, Fix> = HashMap::new();
    for fix in store.latest_fixes().await? {
        keep_newer(&mut latest, fix);
    }
    Ok(latest)
}

fn keep_newer(latest: &mut HashMap<PersonId, Fix>, fix: Fix) -> bool {
    match latest.get(&fix.person_id) {
        Some(known) if known.time >= fix.time => false,
        _ => {
            latest.insert(fix.person_id, fix);
            true
        }
    }
}

/// Every person's state, from the open episodes the store knows.
async fn person_states(store: &dyn Store) -> Result<HashMap<PersonId, PersonState>, StoreError> {
    let mut states = HashMap::new();
    for episode in store.open_episodes().await? {
        let state = match episode.kind {
            AlertKind::Unsupervised => PersonState::Unsupervised,
            _ => PersonState::Offline,
        };
        let entry = states.entry(episode.person_id).or_insert(state);
        // Offline is the stronger of the two: a device exists and has gone silent.
        if state == PersonState::Offline {
            *entry = state;
        }
    }
    for breach in store.open_breaches().await? {
        states.insert(breach.person_id, PersonState::Breach);
    }
    Ok(states)
}

struct Follower {
    store: Arc<dyn Store>,
    fixes: broadcast::Receiver<Arc<[Fix]>>,
    alerts: broadcast::Receiver<Alert>,
    latest: HashMap<PersonId, Fix>,
    dirty: HashSet<PersonId>,
    outbox: Vec<LivePosition>,
    started: bool,
    stop: tokio_util::sync::CancellationToken,
}

impl Follower {
    fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> + Send {
        futures::stream::unfold(self, |mut follower| async move {
            loop {
                if let Some(position) = follower.outbox.pop() {
                    let event = Event::default()
                        .event("position")
                        .json_data(&position)
                        // A struct of plain fields always serialises.
                        .unwrap_or_else(|_| Event::default().comment("unserialisable"));
                    return Some((Ok(event), follower));
                }
                if !follower.started {
                    follower.started = true;
                    follower.dirty = follower.latest.keys().copied().collect();
                } else if !follower.gather().await {
                    return None;
                }
                if let Err(e) = follower.flush().await {
                    warn!(error = %e, "Cannot read person states for the positions stream; it ends.");
                    return None;
                }
            }
        })
    }

    /// Waits for at least one change, then gathers changes for [`FLUSH_INTERVAL`]; false when
    /// the service stops.
    async fn gather(&mut self) -> bool {
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.stop.cancelled() => return false,
                _ = sleep => return true,
                batch = self.fixes.recv() => match batch {
                    Ok(batch) => {
                        for fix in batch.iter().filter(|f| f.valid) {
                            if keep_newer(&mut self.latest, fix.clone()) {
                                self.dirty.insert(fix.person_id);
                            }
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        if let Ok(latest) = latest_positions(self.store.as_ref()).await {
                            self.latest = latest;
                        }
                        self.dirty = self.latest.keys().copied().collect();
                    }
                    Err(RecvError::Closed) => return false,
                },
                alert = self.alerts.recv() => match alert {
                    Ok(alert) => {
                        self.dirty.insert(alert.person_id);
                    }
                    Err(RecvError::Lagged(_)) => {
                        self.dirty = self.latest.keys().copied().collect();
                    }
                    Err(RecvError::Closed) => return false,
                },
            }
            if deadline.is_none() && !self.dirty.is_empty() {
                deadline = Some(tokio::time::Instant::now() + FLUSH_INTERVAL);
            }
        }
    }

    /// Turns the changed persons into events, with their states read now.
    async fn flush(&mut self) -> Result<(), StoreError> {
        if self.dirty.is_empty() {
            return Ok(());
        }
        let states = person_states(self.store.as_ref()).await?;
        for person in self.dirty.drain() {
            let Some(fix) = self.latest.get(&person) else {
                continue;
            };
            self.outbox.push(LivePosition {
                person_id: person,
                device_id: fix.device_id.clone(),
                time: fix.time,
                lat: fix.lat,
                lon: fix.lon,
                accuracy_m: fix.accuracy_m,
                state: states
                    .get(&person)
                    .copied()
                    .unwrap_or(PersonState::Compliant),
            });
        }
        Ok(())
    }
}
