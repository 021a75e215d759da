//! TCP ingest: the accept loop of one protocol's listener and the task that serves each device
//! connection.
//!
//! A connection reads frames through [`SessionCodec`] in order, so a device's fixes reach the
//! pipeline in the order it sent them. For each frame it checks the device is registered and
//! hands positions and alarms to the pipeline; it reads on while they are committed (up to
//! [`MAX_IN_FLIGHT`] frames ahead), and writes each frame's reply only once that frame is
//! committed, in the order the frames came. Bad frames are counted and skipped; a corrupt stream,
//! an idle timeout or an unregistered device closes that connection alone.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ewall_protocol::{Item, Protocol};
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, info_span, trace, warn, Instrument};

use super::codec::{CodecError, SessionCodec};
use super::links::{ConnectionSink, LinkEvent, LinkGuard, Outbound, SinkError};
use super::{IngestContext, ListenerConfig, Pending, SubmitError};
use crate::descriptors::ACCEPT_BACKOFF;
use crate::identity;
use crate::log_limit;

/// Longest a reply write may take; a peer that does not read is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound TCP listener for one stream protocol.
pub struct TcpIngest {
    protocol: Protocol,
    config: ListenerConfig,
    listener: TcpListener,
    context: Arc<IngestContext>,
}

impl TcpIngest {
    /// Binds the listener's address.
    ///
    /// # Errors
    /// The bind error, e.g. the port is taken.
    pub async fn bind(
        protocol: Protocol,
        config: ListenerConfig,
        context: Arc<IngestContext>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.listen).await?;
        Ok(TcpIngest {
            protocol,
            config,
            listener,
            context,
        })
    }

    /// The address actually bound (port 0 resolved).
    ///
    /// # Errors
    /// When the socket has no local address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections until `token` is cancelled; connection tasks are spawned on
    /// `tracker` and finish the frame in hand before they stop.
    pub async fn run(self, token: CancellationToken, tracker: TaskTracker) {
        let protocol = self.protocol;
        let slots = Arc::new(Semaphore::new(self.config.max_connections));
        info!(protocol = protocol.name(), listen = %self.listener.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string()), "Listening for devices.");
        loop {
            let accepted = tokio::select! {
                _ = token.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning, and
                    // say so a few times per window, not ten times a second.
                    if let Some(suppressed) = log_limit::allow(protocol.name(), "accept_failed") {
                        warn!(protocol = protocol.name(), suppressed, error = %e, "Accept failed.");
                    }
                    tokio::select! {
                        _ = token.cancelled() => break,
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                self.context
                    .metrics
                    .connections_refused
                    .with_label_values(&[protocol.name(), "connection_cap"])
                    .inc();
                if let Some(suppressed) = log_limit::allow(protocol.name(), "connection_cap") {
                    warn!(protocol = protocol.name(), %peer, suppressed, "Connection cap reached; closing new connections.");
                }
                drop(stream);
                continue;
            };
            let Some(session) = protocol.session(&self.config.session_options()) else {
                break;
            };
            let connection = Connection {
                protocol,
                peer,
                idle_timeout: self.config.idle_timeout,
                context: self.context.clone(),
                token: token.clone(),
            };
            let span = info_span!(
                "connection",
                protocol = protocol.name(),
                %peer,
                device = tracing::field::Empty
            );
            tracker.spawn(
                async move {
                    connection.serve(stream, session).await;
                    drop(permit);
                }
                .instrument(span),
            );
        }
        info!(protocol = protocol.name(), "Listener stopped.");
    }
}

/// Frames of one connection read ahead of their commits. More wait in the socket, where TCP's
/// own flow control holds the device back; so a device emptying a blind-area backlog has it
/// committed in a few batches instead of one commit per frame.
const MAX_IN_FLIGHT: usize = 64;

/// Capacity of a new connection's read and write buffers. Device frames are tens to a few
/// hundred bytes, and tokio-util's default of 8 KiB for each buffer was most of what an idle
/// connection held; a longer frame or a backlog grows the read buffer as it needs.
const BUFFER_INITIAL: usize = 256;

/// A buffer grown beyond this (a long frame, a backlog read in large pieces) is replaced by
/// one of [`BUFFER_INITIAL`] once the connection has nothing in flight and the buffer is empty.
const BUFFER_KEPT: usize = 1024;

/// Gives back what a burst grew the read buffer to, and the whole write buffer, once they are
/// empty. A reply is a few bytes, written at once; an idle connection needs no room for one
/// (the next reply allocates what it needs).
fn shrink_idle_buffers<T, U>(framed: &mut Framed<T, U>) {
    let read = framed.read_buffer_mut();
    if read.is_empty() && read.capacity() > BUFFER_KEPT {
        *read = bytes::BytesMut::with_capacity(BUFFER_INITIAL);
    }
    let write = framed.write_buffer_mut();
    if write.is_empty() && write.capacity() > 0 {
        *write = bytes::BytesMut::new();
    }
}

/// A frame handed to the pipeline, waiting for its commit before it is answered.
struct InFlight {
    pending: Pending,
    /// The commit's outcome once [`oldest_commit`] has seen it.
    outcome: Option<Result<(), SubmitError>>,
    reply: Option<Vec<u8>>,
    answers: Vec<ewall_protocol::CommandReply>,
    device_id: String,
    received_at: chrono::DateTime<Utc>,
}

/// What woke a connection.
enum Event {
    /// The service is stopping.
    Shutdown,
    /// The oldest frame in flight has its commit's outcome.
    Committed,
    /// A downlink command to write.
    Outbound(Outbound),
    /// The next frame, the end of the stream, or the idle timeout.
    Read(Result<Option<Result<Item, CodecError>>, tokio::time::error::Elapsed>),
}

/// Resolves once the oldest frame in flight has its commit's outcome (kept in the frame);
/// never while nothing is in flight.
async fn oldest_commit(in_flight: &mut VecDeque<InFlight>) {
    match in_flight.front_mut() {
        Some(frame) if frame.outcome.is_none() => {
            frame.outcome = Some(frame.pending.committed().await);
        }
        Some(_) => {}
        None => std::future::pending().await,
    }
}

/// The next command for the connection to write; never while it takes none.
async fn next_command(commands: Option<&Commands>) -> Outbound {
    match commands {
        Some(commands) => commands.sink.next().await,
        None => std::future::pending().await,
    }
}

/// A connection's place in the links, from its first answered frame on: how the dispatcher
/// reaches it. Dropping it unregisters the device and tells commands still queued that the
/// connection is gone.
struct Commands {
    sink: Arc<ConnectionSink>,
    _link: LinkGuard,
}

impl Drop for Commands {
    fn drop(&mut self) {
        self.sink.close();
    }
}

/// The next frame; with `idle` set, bounded by the idle deadline.
async fn read_next(
    framed: &mut Framed<TcpStream, SessionCodec>,
    idle_deadline: Instant,
    idle: bool,
) -> Result<Option<Result<Item, CodecError>>, tokio::time::error::Elapsed> {
    if idle {
        tokio::time::timeout_at(idle_deadline, framed.next()).await
    } else {
        Ok(framed.next().await)
    }
}

/// One device connection.
struct Connection {
    protocol: Protocol,
    peer: SocketAddr,
    idle_timeout: Duration,
    context: Arc<IngestContext>,
    token: CancellationToken,
}

/// Counts a connection in `ewall_connections_open` for as long as it lives, including when its
/// task ends by a panic.
struct OpenConnection(prometheus::IntGauge);

impl OpenConnection {
    fn new(metrics: &crate::telemetry::Metrics, protocol: Protocol) -> Self {
        let gauge = metrics
            .connections_open
            .with_label_values(&[protocol.name()]);
        gauge.inc();
        OpenConnection(gauge)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
enum CloseReason {
    #[error("peer closed the connection")]
    ByPeer,
    #[error("no frame for {0:?}")]
    Idle(Duration),
    #[error("server shutting down")]
    Shutdown,
    #[error("device {0} is not registered")]
    UnknownDevice(String),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("reply not written within {0:?}")]
    WriteTimeout(Duration),
    #[error("pipeline closed")]
    PipelineClosed,
}

impl Connection {
    async fn serve(self, stream: TcpStream, session: Box<dyn ewall_protocol::Session>) {
        let _open = OpenConnection::new(&self.context.metrics, self.protocol);
        debug!("Device connected.");
        let mut framed = Framed::with_capacity(stream, SessionCodec::new(session), BUFFER_INITIAL);
        // Replies allocate what they need; most of the time there is none to write.
        *framed.write_buffer_mut() = bytes::BytesMut::new();
        let closed = self.read_frames(&mut framed).await;
        match closed {
            CloseReason::ByPeer | CloseReason::Shutdown => {
                debug!(reason = %closed, "Connection closed.")
            }
            CloseReason::Idle(_) => {
                self.context
                    .metrics
                    .connections_refused
                    .with_label_values(&[self.protocol.name(), "idle"])
                    .inc();
                debug!(reason = %closed, "Connection closed.");
            }
            CloseReason::UnknownDevice(_) => debug!(reason = %closed, "Connection closed."),
            // A reset or broken pipe is how mobile devices usually leave.
            CloseReason::Codec(CodecError::Io(_)) => debug!(reason = %closed, "Connection closed."),
            CloseReason::Codec(ref e) => {
                let reason = match e {
                    CodecError::Frame(_) => "oversize",
                    CodecError::Io(_) | CodecError::Unfinished(_) => "truncated",
                };
                self.context.count_rejected(self.protocol, reason);
                // Any client can provoke this, so it is counted always and logged a few times
                // per window.
                if let Some(suppressed) = log_limit::allow(self.protocol.name(), "stream_error") {
                    warn!(reason = %closed, suppressed, "Connection closed on a stream error.");
                } else {
                    debug!(reason = %closed, "Connection closed on a stream error.");
                }
            }
            CloseReason::WriteTimeout(_) => {
                if let Some(suppressed) = log_limit::allow(self.protocol.name(), "write_timeout") {
                    warn!(reason = %closed, suppressed, "Connection closed.");
                } else {
                    debug!(reason = %closed, "Connection closed.");
                }
            }
            CloseReason::PipelineClosed => warn!(reason = %closed, "Connection closed."),
        }
    }

    async fn read_frames(&self, framed: &mut Framed<TcpStream, SessionCodec>) -> CloseReason {
        // Idle means no usable frame: a peer trickling garbage does not keep its slot.
        let mut idle_deadline = Instant::now() + self.idle_timeout;
        let mut identified = false;
        // Downlink commands for this device arrive here once it is registered in the links.
        let mut commands: Option<Commands> = None;
        // Frames handed to the pipeline whose replies wait for their commits, oldest first.
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        loop {
            let waiting = in_flight.len();
            let event = tokio::select! {
                // Oldest first: a frame's reply never overtakes an earlier one's.
                biased;
                _ = self.token.cancelled() => Event::Shutdown,
                () = oldest_commit(&mut in_flight) => Event::Committed,
                outbound = next_command(commands.as_ref()) => Event::Outbound(outbound),
                // While frames wait for their commits, a store slower than the idle timeout
                // is not the device's silence.
                next = read_next(framed, idle_deadline, waiting == 0),
                    if waiting < MAX_IN_FLIGHT => Event::Read(next),
            };
            let next = match event {
                Event::Shutdown => {
                    // Finish the frames in hand: their commits come before the store stops.
                    while let Some(frame) = in_flight.pop_front() {
                        if let Err(closed) = self.answer(framed, frame).await {
                            return closed;
                        }
                    }
                    return CloseReason::Shutdown;
                }
                Event::Committed => {
                    let Some(frame) = in_flight.pop_front() else {
                        continue;
                    };
                    // Only a connection not yet taking commands needs the id after the answer.
                    let device_id = commands.is_none().then(|| frame.device_id.clone());
                    if let Err(closed) = self.answer(framed, frame).await {
                        return closed;
                    }
                    if in_flight.is_empty() {
                        shrink_idle_buffers(framed);
                        // A burst's queue is given back too; one frame at a time needs none.
                        in_flight = VecDeque::new();
                    }
                    // Queued commands go out only after the login (or first frame) is
                    // answered, and after a JT/T 808 terminal's authentication: before that it
                    // is not listening.
                    if let Some(device_id) = device_id.filter(|_| {
                        self.context.link_events.is_some() && framed.codec().ready_for_commands()
                    }) {
                        let sink = Arc::new(ConnectionSink::new(self.protocol));
                        let link = self.context.links.register(&device_id, sink.clone());
                        commands = Some(Commands { sink, _link: link });
                        // Once a connection, so boxed: the task's state keeps no room for it.
                        Box::pin(self.context.report(LinkEvent::Connected {
                            device_id,
                            protocol: self.protocol,
                        }))
                        .await;
                    }
                    continue;
                }
                Event::Outbound(outbound) => {
                    // Rare, so boxed: the task's state keeps no room for it.
                    if let Err(closed) = Box::pin(self.write_command(framed, outbound)).await {
                        return closed;
                    }
                    continue;
                }
                Event::Read(next) => next,
            };
            let item = match next {
                Err(_) => return CloseReason::Idle(self.idle_timeout),
                Ok(None) => {
                    // The peer has written all it will; what it wrote is still answered.
                    while let Some(frame) = in_flight.pop_front() {
                        if self.answer(framed, frame).await.is_err() {
                            break;
                        }
                    }
                    return CloseReason::ByPeer;
                }
                Ok(Some(Err(e))) => return e.into(),
                Ok(Some(Ok(item))) => item,
            };
            let decoded = match item {
                Item::Rejected(e) => {
                    self.context.count_rejected(self.protocol, e.reason_label());
                    debug!(error = %e, "Frame rejected; skipped.");
                    continue;
                }
                Item::Frame(decoded) => decoded,
            };
            let raw = framed.codec_mut().take_frame();
            idle_deadline = Instant::now() + self.idle_timeout;
            let received_at = Utc::now();
            self.context.count_frame(self.protocol, &decoded);
            trace!(messages = decoded.messages.len(), "Frame decoded.");
            // In the registered form (no BCD padding zeros), so fixes name the device as the
            // registry does.
            let device_id = framed
                .codec()
                .device_id()
                .or_else(|| decoded.messages.iter().find_map(|m| m.device_id.as_deref()))
                .map(|id| identity::normalise(id).into_owned());
            let Some(device_id) = device_id else {
                // Nothing identifies the sender yet (a position before any login): it cannot be
                // attributed, so it is neither stored nor acknowledged.
                if decoded.messages.iter().any(|m| m.position.is_some()) {
                    self.context.count_rejected(self.protocol, "no_identity");
                    debug!("Position before the device identified itself; dropped.");
                }
                continue;
            };
            let Some(person) = self.context.authorize(self.protocol, &device_id, self.peer) else {
                return CloseReason::UnknownDevice(device_id);
            };
            if !identified {
                identified = true;
                tracing::Span::current().record("device", device_id.as_str());
                framed
                    .codec_mut()
                    .set_model(self.context.registry.model_of(&device_id).as_deref());
                debug!("Device identified.");
            }
            match self
                .context
                .enqueue(
                    self.protocol,
                    &device_id,
                    person,
                    &decoded,
                    raw,
                    received_at,
                )
                .await
            {
                Ok(pending) => in_flight.push_back(InFlight {
                    pending,
                    outcome: None,
                    reply: decoded.reply,
                    answers: decoded
                        .messages
                        .into_iter()
                        .filter_map(|m| m.command_reply)
                        .collect(),
                    device_id,
                    received_at,
                }),
                Err(SubmitError::Closed) => return CloseReason::PipelineClosed,
                Err(SubmitError::Unstorable(e)) => {
                    // Counted as a rejected frame; not acknowledged, so the device knows.
                    debug!(error = %e, "Frame with an unstorable position; not acknowledged.");
                }
                Err(SubmitError::NotCommitted(e)) => {
                    debug!(error = %e, "Frame not committed; not acknowledged.");
                }
            }
        }
    }

    /// Waits for `frame`'s commit (if it has not come yet) and then reports the command
    /// answers it carried and writes its reply. A failed commit is not acknowledged: the
    /// device keeps the fix and sends it again.
    async fn answer(
        &self,
        framed: &mut Framed<TcpStream, SessionCodec>,
        mut frame: InFlight,
    ) -> Result<(), CloseReason> {
        let outcome = match frame.outcome.take() {
            Some(outcome) => outcome,
            None => frame.pending.committed().await,
        };
        match outcome {
            Ok(()) => {}
            Err(SubmitError::Closed) => return Err(CloseReason::PipelineClosed),
            Err(e) => {
                // A failing store fails every connection at once: a few lines per window say
                // so.
                if let Some(suppressed) = log_limit::allow(self.protocol.name(), "not_committed") {
                    warn!(device = frame.device_id.as_str(), suppressed, error = %e, "Frame not committed; not acknowledged.");
                }
                return Ok(());
            }
        }
        for answer in frame.answers {
            // Rare (a command's answer), so boxed: the task's state keeps no room for it.
            Box::pin(self.context.report(LinkEvent::Reply {
                device_id: frame.device_id.clone(),
                reply: answer,
                received_at: frame.received_at,
            }))
            .await;
        }
        if let Some(reply) = frame.reply {
            match tokio::time::timeout(WRITE_TIMEOUT, framed.send(reply)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => return Err(CloseReason::WriteTimeout(WRITE_TIMEOUT)),
            }
        }
        Ok(())
    }

    /// Encodes a downlink command with the connection's session and writes it; tells the
    /// dispatcher how it went (a dispatcher that stopped waiting no longer listens, so those
    /// sends may go nowhere). A write error ends the connection.
    async fn write_command(
        &self,
        framed: &mut Framed<TcpStream, SessionCodec>,
        outbound: Outbound,
    ) -> Result<(), CloseReason> {
        let downlink =
            match framed
                .codec()
                .encode_command(&outbound.command, outbound.tag, Utc::now())
            {
                Ok(downlink) => downlink,
                Err(e) => {
                    let _ = outbound.written.send(Err(SinkError::Encode(e)));
                    return Ok(());
                }
            };
        match tokio::time::timeout(WRITE_TIMEOUT, framed.send(downlink.bytes)).await {
            Ok(Ok(())) => {
                debug!(tag = outbound.tag, "Command written.");
                let _ = outbound.written.send(Ok(downlink.reference));
                Ok(())
            }
            Ok(Err(e)) => {
                let _ = outbound.written.send(Err(SinkError::Write(e.to_string())));
                Err(e.into())
            }
            Err(_) => {
                let _ = outbound
                    .written
                    .send(Err(SinkError::Write("write timed out".into())));
                Err(CloseReason::WriteTimeout(WRITE_TIMEOUT))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::codec::BytesCodec;

    #[tokio::test]
    async fn buffers_grown_by_a_burst_shrink_once_empty_and_not_before() {
        let (stream, _peer) = tokio::io::duplex(64);
        let mut framed = Framed::with_capacity(stream, BytesCodec::new(), BUFFER_INITIAL);
        assert!(framed.read_buffer().capacity() <= BUFFER_KEPT);
        framed
            .read_buffer_mut()
            .extend_from_slice(&[0x78; 16 * 1024]);
        framed
            .write_buffer_mut()
            .extend_from_slice(&[0x79; 4 * 1024]);
        shrink_idle_buffers(&mut framed);
        assert_eq!(
            framed.read_buffer().len(),
            16 * 1024,
            "bytes waiting are kept"
        );
        assert_eq!(framed.write_buffer().len(), 4 * 1024);
        framed.read_buffer_mut().clear();
        framed.write_buffer_mut().clear();
        shrink_idle_buffers(&mut framed);
        assert!(framed.read_buffer().capacity() <= BUFFER_KEPT);
        assert_eq!(framed.write_buffer().capacity(), 0);
    }
}
