//! The accept loop and connection task every HTTP port runs (the API, and the OsmAnd listener).
//!
//! Instead of `axum::serve`, which has no header read timeout and no cap on connections, each
//! accepted socket is served by hyper's HTTP/1.1 connection builder with:
//! - a cap on open connections (further ones are accepted and closed at once, counted as
//!   `connection_cap`), with the `ewall_connections_open{protocol}` gauge counting what is open;
//! - a header read timeout (a request line and headers sent a byte a second are cut off), and
//!   an idle timeout (nothing read or written for that long closes the connection, counted as
//!   `idle`); body read time and size are the router's ([`super::limits`]);
//! - optional TLS (rustls), the handshake bounded by the header read timeout;
//! - the answers hyper gives on its own, before a request reaches the router (a request line
//!   that is not HTTP, headers over its buffer), rewritten into problem documents like every
//!   other error.
//!
//! On stop the loop accepts no more, each connection finishes the request in hand, and
//! [`HttpServer::run`] returns once all are closed.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::StatusCode;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::limits::{MAX_HEADERS, MAX_HEADER_BYTES, MAX_URI_BYTES};
use super::problem::{default_detail, problem_errors, Problem, PROBLEM_JSON};
use crate::descriptors::ACCEPT_BACKOFF;
use crate::log_limit;
use crate::telemetry::Metrics;

/// hyper's read buffer: room for the router's own header limit, so the router's 431 (a
/// problem document with the numbers) answers first, and a hard stop well beyond it.
const HYPER_BUF_BYTES: usize = MAX_HEADER_BYTES + MAX_URI_BYTES + 16 * 1024;
/// hyper's header-count limit, above the router's for the same reason.
const HYPER_MAX_HEADERS: usize = MAX_HEADERS * 2;

/// How one HTTP port is bounded.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The port's name in metrics and logs (`api`, `osmand`).
    pub name: &'static str,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Close a connection after this long with nothing read or written.
    pub idle_timeout: Duration,
    /// Longest a request line and headers (and a TLS handshake) may take.
    pub header_read_timeout: Duration,
    /// TLS, when the port speaks HTTPS.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Why TLS could not be set up.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("cannot read {path}: {reason}")]
    Pem {
        /// File.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// rustls refused the certificate and key.
    #[error("the certificate {cert} and key {key} do not make a TLS configuration: {reason}")]
    Config {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
        /// rustls's reason.
        reason: String,
    },
}

/// Reads a PEM certificate chain and private key into a rustls server configuration (HTTP/1.1
/// over TLS 1.2 or 1.3).
///
/// # Errors
/// [`TlsError`] naming the file at fault.
pub fn load_tls(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pem_error = |path: &Path, reason: String| TlsError::Pem {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_error(cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_error(cert, "no certificate in the file".into()));
    }
    let private_key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e.to_string()))?;
    let config_error = |reason: String| TlsError::Config {
        cert: cert.to_owned(),
        key: key.to_owned(),
        reason,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, private_key)
        .map_err(|e| config_error(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A bound HTTP port, ready to serve a router.
pub struct HttpServer {
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    metrics: Arc<Metrics>,
}

impl HttpServer {
    /// Serves `router` on `listener`; every error response becomes a problem document.
    pub fn new(
        listener: TcpListener,
        router: Router,
        options: ServeOptions,
        metrics: Arc<Metrics>,
    ) -> Self {
        let router = router
            .layer(axum::middleware::from_fn(super::limits::head_limits))
            .layer(axum::middleware::from_fn(problem_errors));
        HttpServer {
            listener,
            router,
            options,
            metrics,
        }
    }

    /// Accepts until `stop` is cancelled, then waits for the open connections to finish the
    /// request in hand.
    pub async fn run(self, stop: CancellationToken) {
        let name = self.options.name;
        let slots = Arc::new(Semaphore::new(self.options.max_connections));
        let tracker = TaskTracker::new();
        let acceptor = self.options.tls.clone().map(TlsAcceptor::from);
        // The port's series exist from the start, at zero, like the device protocols'.
        self.metrics.connections_open.with_label_values(&[name]);
        for reason in ["connection_cap", "idle"] {
            self.metrics
                .connections_refused
                .with_label_values(&[name, reason]);
        }
        info!(
            port = name,
            listen = %self.listener.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string()),
            tls = acceptor.is_some(),
            max_connections = self.options.max_connections,
            "Serving HTTP."
        );
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors and similar: back off instead of spinning, and say
                    // so a few times per window, not ten times a second.
                    if let Some(suppressed) = log_limit::allow(name, "accept_failed") {
                        warn!(port = name, suppressed, error = %e, "Accept failed.");
                    }
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                self.metrics
                    .connections_refused
                    .with_label_values(&[name, "connection_cap"])
                    .inc();
                if let Some(suppressed) = log_limit::allow(name, "connection_cap") {
                    warn!(port = name, %peer, suppressed, "Connection cap reached; closing new connections.");
                }
                drop(stream);
                continue;
            };
            let connection = Connection {
                name,
                router: self.router.clone(),
                idle_timeout: self.options.idle_timeout,
                header_read_timeout: self.options.header_read_timeout,
                metrics: self.metrics.clone(),
                stop: stop.clone(),
            };
            let acceptor = acceptor.clone();
            tracker.spawn(async move {
                let _open = OpenConnection::new(&connection.metrics, name);
                connection.serve(stream, peer, acceptor).await;
                drop(permit);
            });
        }
        tracker.close();
        tracker.wait().await;
        info!(port = name, "HTTP port stopped.");
    }
}

/// Counts a connection in `ewall_connections_open` while it lives, panics included.
struct OpenConnection(prometheus::IntGauge);

impl OpenConnection {
    fn new(metrics: &Metrics, name: &str) -> Self {
        let gauge = metrics.connections_open.with_label_values(&[name]);
        gauge.inc();
        OpenConnection(gauge)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

struct Connection {
    name: &'static str,
    router: Router,
    idle_timeout: Duration,
    header_read_timeout: Duration,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
}

impl Connection {
    async fn serve(self, stream: TcpStream, peer: SocketAddr, acceptor: Option<TlsAcceptor>) {
        let Some(acceptor) = acceptor else {
            self.serve_io(stream, peer).await;
            return;
        };
        match tokio::time::timeout(self.header_read_timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => self.serve_io(tls, peer).await,
            Ok(Err(e)) => debug!(port = self.name, %peer, error = %e, "TLS handshake failed."),
            Err(_) => debug!(port = self.name, %peer, "TLS handshake timed out."),
        }
    }

    async fn serve_io<I>(self, io: I, peer: SocketAddr)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(ConnectionIo::new(io, activity.clone()));
        let service = TowerToHyperService::new(self.router.clone());
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .keep_alive(true)
            .max_buf_size(HYPER_BUF_BYTES)
            .max_headers(HYPER_MAX_HEADERS);
        let connection = builder.serve_connection(io, service);
        tokio::pin!(connection);
        let mut closing = false;
        loop {
            let idle_at = activity.last() + self.idle_timeout;
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        debug!(port = self.name, %peer, error = %e, "HTTP connection ended with an error.");
                    }
                    break;
                }
                _ = self.stop.cancelled(), if !closing => {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
                _ = tokio::time::sleep_until(idle_at), if !closing => {
                    if activity.last() + self.idle_timeout <= Instant::now() {
                        closing = true;
                        self.metrics
                            .connections_refused
                            .with_label_values(&[self.name, "idle"])
                            .inc();
                        debug!(port = self.name, %peer, "Idle HTTP connection closed.");
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    }
}

/// When a connection last read or wrote, as milliseconds after it opened.
struct Activity {
    opened: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            opened: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.opened + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// The socket as hyper sees it: records activity for the idle timeout, and replaces the bare
/// responses hyper writes on its own for requests it cannot parse with problem documents.
struct ConnectionIo<I> {
    inner: I,
    activity: Arc<Activity>,
    /// A replacement response still to be written, and how much of it is written.
    pending: Vec<u8>,
    written: usize,
}

impl<I> ConnectionIo<I> {
    fn new(inner: I, activity: Arc<Activity>) -> Self {
        ConnectionIo {
            inner,
            activity,
            pending: Vec::new(),
            written: 0,
        }
    }
}

/// The status of a response head hyper wrote by itself: it answers a request it could not
/// parse with a bare head (`content-length: 0`) and closes; the router never sends an error
/// without a problem body, so such a head can only be hyper's.
fn automatic_error(buf: &[u8]) -> Option<StatusCode> {
    if buf.len() > 512 || !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let status = match buf.get(..13)? {
        b"HTTP/1.1 400 " => StatusCode::BAD_REQUEST,
        b"HTTP/1.1 414 " => StatusCode::URI_TOO_LONG,
        b"HTTP/1.1 431 " => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        _ => return None,
    };
    let text = std::str::from_utf8(buf).ok()?;
    text.to_ascii_lowercase()
        .contains("\r\ncontent-length: 0\r\n")
        .then_some(status)
}

fn problem_response(status: StatusCode) -> Vec<u8> {
    let body = Problem::new(status, default_detail(status)).to_json();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {PROBLEM_JSON}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error"),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

impl<I: AsyncWrite + Unpin> ConnectionIo<I> {
    /// Writes what is left of a replacement response; Ready once it is all out.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n = match Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]) {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for ConnectionIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        result
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for ConnectionIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.poll_pending(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        this.activity.touch();
        if let Some(status) = automatic_error(buf) {
            this.pending = problem_response(status);
            // The replacement counts as the head hyper asked to write; what is not out yet
            // goes out on the next write, flush or shutdown.
            if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_pending(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_pending(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_shutdown(cx),
            other => other,
        }
    }

    // Not vectored: hyper then hands each response head to `poll_write` in one buffer, which
    // is what lets `automatic_error` see it whole.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bare_error_heads_are_taken_for_hyper_s_own() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 08:00:00 GMT\r\n\r\n";
        assert_eq!(
            automatic_error(bare),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: 80\r\n\r\n";
        assert_eq!(automatic_error(with_body), None);
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(automatic_error(ok), None);
        let response = problem_response(StatusCode::URI_TOO_LONG);
        let text = String::from_utf8(response).unwrap();
        assert!(text.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{text}");
        assert!(text.contains("application/problem+json"), "{text}");
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        let value: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(value["status"], 414);
    }
}
