//! The HTTP/1.1 servers' shared parts (the embedded hook service, the mock's control plane and
//! the metrics endpoint): binding a listening socket, one accept loop with a cap on concurrent
//! connections, and one keep-alive connection served by hyper under a header-read timeout
//! (hyper's own, with hyper-util's tokio timer) and an idle timeout, until its client closes it
//! or a shutdown fires.
//!
//! Past the cap the loop stops accepting: new connections wait in the kernel's listen backlog
//! (costing no file descriptor of ours) until a connection ends, which the two timeouts bound.
//! Closing them instead would turn a burst of legitimate clients (`aws cleanup` at its
//! concurrency) into errors, and would not free a slot any sooner.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The listen backlog of every listening socket made by [`bind`].
pub const LISTEN_BACKLOG: u32 = 4096;

/// What one listener gives its connections (the mock's `[http]` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// A request head must arrive whole within this time of the connection starting to wait for
    /// it (when it opens, and after each response): a trickled head is closed at this point.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub header_read_timeout: Duration,
    /// A connection on which no byte moves either way for this long is closed: an idle
    /// keep-alive connection, a half-sent head or body, a client that does not read its answer.
    /// (The handlers answer in milliseconds, so a request being answered is never idle this long.)
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub idle_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog until one ends.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // hyper's own default.
            header_read_timeout: Duration::from_secs(30),
            // Longer than Prometheus's default 15 s scrape interval, so a scraper keeps its
            // connection.
            idle_timeout: Duration::from_secs(20),
            max_connections: 256,
        }
    }
}

impl Limits {
    /// Refuse values that would serve nothing (the message names the field).
    pub fn validate(&self) -> Result<(), String> {
        if self.header_read_timeout.is_zero() {
            return Err("http.header_read_timeout: must be more than 0".into());
        }
        if self.idle_timeout.is_zero() {
            return Err("http.idle_timeout: must be more than 0".into());
        }
        if self.max_connections == 0 {
            return Err("http.max_connections: must be at least 1".into());
        }
        Ok(())
    }
}

/// A listening socket that could not be made; `what` names the listener (`--control`).
#[derive(Debug, thiserror::Error)]
#[error("{what} {addr}: cannot listen: {source}")]
pub struct BindError {
    pub what: &'static str,
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// A listening socket on `addr` (SO_REUSEADDR, backlog [`LISTEN_BACKLOG`]); a taken port or an
/// address of another machine is a [`BindError`] naming `what` and `addr`.
pub fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, BindError> {
    let error = |source| BindError { what, addr, source };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(error)?;
    socket.set_reuseaddr(true).map_err(error)?;
    socket.bind(addr).map_err(error)?;
    socket.listen(LISTEN_BACKLOG).map_err(error)
}

/// Accept connections on `listener` and serve each with a clone of `service` under `limits`
/// (see [`serve_until`]) until `stop` fires; returns when every connection has ended.
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    limits: Limits,
    stop: CancellationToken,
    grace: Option<Duration>,
) where
    S: HttpService<Incoming, ResBody = B> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let tracker = tokio_util::task::TaskTracker::new();
    loop {
        let slot = tokio::select! {
            _ = stop.cancelled() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors or similar: back off briefly instead of spinning.
                    tracing::debug!("HTTP accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let (service, stop) = (service.clone(), stop.clone());
        tracker.spawn(async move {
            serve_until(stream, service, limits, stop, grace).await;
            drop(slot);
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// Serve every request of one keep-alive connection with `service` until the client closes it,
/// a timeout of `limits` closes it, or `stop` fires; then finish the request in progress,
/// waiting at most `grace` (no limit when `None`).
pub async fn serve_until<S, B>(
    stream: TcpStream,
    service: S,
    limits: Limits,
    stop: CancellationToken,
    grace: Option<Duration>,
) where
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    B: Body + 'static,
    B::Error: Into<BoxError>,
{
    let activity = Arc::new(Activity::new());
    let io = Watched {
        inner: stream,
        activity: activity.clone(),
    };
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = activity.idle_for(limits.idle_timeout) => {
            // Dropping the connection closes the socket.
        }
        _ = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            match grace {
                Some(grace) => {
                    let _ = tokio::time::timeout(grace, connection).await;
                }
                None => {
                    let _ = connection.await;
                }
            }
        }
    }
}

/// When a byte last moved on a connection (nanoseconds after it opened, on tokio's clock).
struct Activity {
    opened: Instant,
    last: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            opened: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let nanos = u64::try_from(self.opened.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last.store(nanos, Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.opened + Duration::from_nanos(self.last.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A stream that records in its [`Activity`] every read or write that moved bytes.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
