//! Server-sent events: the alert events of the feed as an endless HTTP response, for
//! `GET /api/v1/alerts/stream`.
//!
//! Each event goes out as `id: <seq>`, `event: <kind>` (`alert.raised`, `alert.acknowledged`,
//! ...) and `data: <CloudEvents envelope>`. A client resumes with `Last-Event-ID` (browsers send
//! it by themselves on reconnect) or `?after=`: the stream is one loop over the store from that
//! cursor, so the backlog and the live events that follow it come with no gap and no repeat.
//! The stream ends when the service shuts down; the client reconnects and resumes.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse;
use futures::Stream;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::BATCH_LIMIT;
use crate::alert::{cloud_event, AlertOutbox};
use crate::model::Event;
use crate::store::Store;
use crate::telemetry::Metrics;

/// Interval of the keep-alive comments that stop proxies from closing an idle stream.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

struct Cursor {
    outbox: AlertOutbox,
    after: i64,
    buffer: VecDeque<Event>,
    stop: CancellationToken,
    metrics: Arc<Metrics>,
}

/// The alert events after `after`, then every new one as it is committed, until `stop`.
pub fn alert_stream(
    store: Arc<dyn Store>,
    after: i64,
    stop: CancellationToken,
    metrics: Arc<Metrics>,
) -> impl Stream<Item = Result<sse::Event, Infallible>> + Send {
    let cursor = Cursor {
        outbox: AlertOutbox::new(store, true),
        after,
        buffer: VecDeque::new(),
        stop,
        metrics,
    };
    futures::stream::unfold(cursor, |mut cursor| async move {
        loop {
            if let Some(event) = cursor.buffer.pop_front() {
                cursor.after = event.seq;
                cursor.metrics.delivered("sse", 1);
                return Some((Ok(sse_event(&event)), cursor));
            }
            match cursor
                .outbox
                .next_batch(cursor.after, BATCH_LIMIT, &cursor.stop)
                .await
            {
                Ok(Some(batch)) => cursor.buffer.extend(batch),
                Ok(None) => return None,
                Err(e) => {
                    warn!(error = %e, after = cursor.after, "Cannot read the event feed for a stream; retrying.");
                    tokio::select! {
                        _ = cursor.stop.cancelled() => return None,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
            }
        }
    })
}

/// One feed event as an SSE event.
pub fn sse_event(event: &Event) -> sse::Event {
    sse::Event::default()
        .id(event.seq.to_string())
        .event(event.kind.to_string())
        .data(cloud_event(event, event.data.clone()).to_string())
}
