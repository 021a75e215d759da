//! Server-sent events: the alert events of the feed as an endless HTTP response, for
//! `GET /api/v1/alerts/stream`.
//!
//! Each event goes out as `id: <seq>`, `event: <kind>` (`alert.raised`, `alert.acknowledged`,
//! ...) and `data: <CloudEvents envelope>`. A client resumes with `Last-Event-ID` (browsers send
//! it by themselves on reconnect) or `?after=`: the stream is one loop over the store from that
//! cursor, so the backlog and the live events that follow it come with no gap and no repeat.
//! The stream ends when the service shuts down; the client reconnects and resumes.
//!
//! A stream opened by the police integration ([`IntegrationReader`]) carries only the alert
//! fields it may see, and each batch it is sent is first written to the reads log; when that
//! write fails the stream ends (the client resumes from its `Last-Event-ID`), so nothing goes
//! out unrecorded.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse;
use futures::Stream;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::BATCH_LIMIT;
use crate::alert::{cloud_event, select_fields, AlertOutbox};
use crate::model::Event;
use crate::store::{IntegrationRead, Store};
use crate::telemetry::Metrics;

/// Interval of the keep-alive comments that stop proxies from closing an idle stream.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The integration token a stream is for.
#[derive(Debug, Clone)]
pub struct IntegrationReader {
    /// The token's id, for the reads log.
    pub token_id: uuid::Uuid,
    /// The alert fields it may see (`integration.fields`).
    pub fields: Vec<String>,
    /// The path it opened the stream on, for the reads log.
    pub path: String,
}

struct Cursor {
    outbox: AlertOutbox,
    reader: Option<IntegrationReader>,
    after: i64,
    buffer: VecDeque<Event>,
    stop: CancellationToken,
    metrics: Arc<Metrics>,
}

/// The alert events after `after`, then every new one as it is committed, until `stop`; as
/// `reader` may see them, when it is the integration's.
pub fn alert_stream(
    store: Arc<dyn Store>,
    after: i64,
    stop: CancellationToken,
    metrics: Arc<Metrics>,
    reader: Option<IntegrationReader>,
) -> impl Stream<Item = Result<sse::Event, Infallible>> + Send {
    let cursor = Cursor {
        outbox: AlertOutbox::new(store, true),
        reader,
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
                cursor.metrics.events_delivered_at("sse", [event.seq]);
                let fields = cursor.reader.as_ref().map(|r| r.fields.as_slice());
                return Some((Ok(sse_event(&event, fields)), cursor));
            }
            match cursor
                .outbox
                .next_batch(cursor.after, BATCH_LIMIT, &cursor.stop)
                .await
            {
                Ok(Some(batch)) => {
                    if let Some(reader) = &cursor.reader {
                        if !batch.is_empty() {
                            let read = IntegrationRead {
                                seq: 0,
                                token_id: reader.token_id,
                                at: chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6),
                                method: "GET".into(),
                                path: reader.path.clone(),
                                query: Some(format!("after={}", cursor.after)),
                                status: 200,
                                records: batch.len() as u64,
                            };
                            if let Err(e) =
                                cursor.outbox.store().record_integration_read(&read).await
                            {
                                warn!(token = %reader.token_id, error = %e, "Integration stream read not recorded; the stream ends.");
                                return None;
                            }
                        }
                    }
                    cursor.buffer.extend(batch);
                }
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

/// One feed event as an SSE event, with only the alert fields in `fields` when given.
pub fn sse_event(event: &Event, fields: Option<&[String]>) -> sse::Event {
    let data = match fields {
        Some(fields) => select_fields(&event.data, fields),
        None => event.data.clone(),
    };
    sse::Event::default()
        .id(event.seq.to_string())
        .event(event.kind.to_string())
        .data(cloud_event(event, data).to_string())
}
