//! A TCP proxy a test controls, to take a database away from a running service and give it back:
//! [`Proxy::cut`] drops every live connection and closes each new one as soon as it is accepted
//! (the client sees its connection reset, as when a database host goes down);
//! [`Proxy::restore`] forwards again. The service is pointed at [`Proxy::addr`] instead of the
//! database.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running proxy; it stops when dropped.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// Cancelled when the current connections are to be dropped; `None` while cut.
    live: Arc<Mutex<Option<CancellationToken>>>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on an ephemeral loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let live = Arc::new(Mutex::new(Some(CancellationToken::new())));
        let state = live.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let token = state.lock().unwrap().clone();
                // Cut: the connection is dropped at once.
                let Some(token) = token else { continue };
                tokio::spawn(forward(client, upstream, token));
            }
        });
        Proxy { addr, live, task }
    }

    /// Drops every forwarded connection and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        if let Some(token) = self.live.lock().unwrap().take() {
            token.cancel();
        }
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        let mut live = self.live.lock().unwrap();
        if live.is_none() {
            *live = Some(CancellationToken::new());
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr, cut: CancellationToken) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cut.cancelled() => {
            // A reset rather than an orderly close, as a host that went away gives. (A zero
            // linger never blocks the drop, which is what the deprecation warns of.)
            #[allow(deprecated)]
            let _ = client.set_linger(Some(std::time::Duration::ZERO));
        }
    }
}

/// `url` (a postgres:// URL) with its host and port replaced by `addr`, user, database and
/// parameters kept.
pub fn through(url: &str, addr: SocketAddr) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let user = authority.rfind('@').map_or("", |at| &authority[..=at]);
    format!(
        "{}{user}{addr}{}",
        &url[..scheme_end],
        &rest[authority_end..]
    )
}

/// The host and port of a postgres:// URL (5432 when it names none), resolved.
pub async fn upstream_of(url: &str) -> SocketAddr {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[scheme_end..];
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let host_port = authority.rsplit('@').next().unwrap();
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    tokio::net::lookup_host(host_port)
        .await
        .unwrap()
        .next()
        .unwrap()
}
