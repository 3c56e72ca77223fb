//! Live Prometheus metrics: `--metrics-listen ADDR` on `run` and `mock` serves the OpenMetrics
//! text at `http://ADDR/metrics` (prometheus-client's encoder, hyper's HTTP/1 server).
//!
//! Nothing here runs on a device's path. A scrape reads the run's live atomics and the mock's
//! counters through custom collectors ([`run::RunMetrics`], [`mock::MockMetrics`]); the only
//! values pushed are the ones the aggregator owns (provisioned, failed by reason, retries, the
//! stage histograms, the interval's CPU and target rate), updated where it already handles a
//! finished device or closes its one-second window.

pub mod mock;
pub mod run;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::{CancellationToken, DropGuard};

pub use mock::MockMetrics;
pub use run::{Labels, RunMetrics};

/// Every metric's name starts with this (`fleetstorm_provisioned_total`).
pub const PREFIX: &str = "fleetstorm";
/// The path the metrics are served at.
pub const PATH: &str = "/metrics";
/// OpenMetrics 1.0 text, what prometheus-client's text encoder writes.
pub const CONTENT_TYPE_OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `--metrics-listen`'s socket that could not be made (the error names the flag and address).
pub type MetricsError = crate::http::BindError;

/// `--metrics-listen`'s value: an IP address and a port (host names are not resolved, so the
/// address bound is the one written).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        format!(
            "{s:?} is not IP:PORT (e.g. 127.0.0.1:9464, 0.0.0.0:9464 or [::1]:9464; port 0 picks a free port)"
        )
    })
}

/// The running endpoint; it stops when dropped or [`stop`](MetricsServer::stop)ped.
pub struct MetricsServer {
    /// The address bound (the port chosen when 0 was asked for).
    pub addr: SocketAddr,
    _stop: DropGuard,
}

impl MetricsServer {
    /// The URL a scraper reads.
    pub fn url(&self) -> String {
        format!("http://{}{PATH}", self.addr)
    }

    pub fn stop(self) {}
}

/// A bound metrics address, not serving yet: bind before anything else starts, so a taken
/// port fails the command before it does any work.
pub struct MetricsListener {
    listener: TcpListener,
    pub addr: SocketAddr,
}

/// Bind `addr` (the error names it).
pub async fn bind(addr: SocketAddr) -> Result<MetricsListener, MetricsError> {
    let listener = crate::http::bind("--metrics-listen", addr)?;
    let bound = listener.local_addr().map_err(|source| MetricsError {
        what: "--metrics-listen",
        addr,
        source,
    })?;
    Ok(MetricsListener {
        listener,
        addr: bound,
    })
}

/// `--metrics-listen`'s socket when the flag was given, bound before the command does anything
/// else.
pub async fn bind_optional(
    addr: Option<SocketAddr>,
) -> Result<Option<MetricsListener>, MetricsError> {
    match addr {
        Some(addr) => bind(addr).await.map(Some),
        None => Ok(None),
    }
}

/// `--metrics-linger`: keep `server` up for `linger` after the run, whose results are written,
/// so a last scrape sees the final counts; `signal` ends it early.
pub async fn linger(
    server: MetricsServer,
    linger: Option<std::time::Duration>,
    signal: &CancellationToken,
) {
    let Some(linger) = linger.filter(|d| !d.is_zero()) else {
        return;
    };
    if signal.is_cancelled() {
        return;
    }
    eprintln!(
        "fleetstorm: serving the final metrics at {} for {} (Ctrl-C ends it)",
        server.url(),
        humantime::format_duration(linger)
    );
    tokio::select! {
        _ = tokio::time::sleep(linger) => {}
        _ = signal.cancelled() => {}
    }
    server.stop();
}

/// Bind `addr` and serve `registry` (see [`MetricsListener::serve`]).
pub async fn serve(addr: SocketAddr, registry: Registry) -> Result<MetricsServer, MetricsError> {
    Ok(bind(addr).await?.serve(registry))
}

impl MetricsListener {
    /// Serve `registry` at [`PATH`] on the current tokio runtime until the returned server is
    /// dropped, under the default [`Limits`](crate::http::Limits). A scrape encodes the
    /// registry on the connection's task: a few kilobytes of text from atomics and a handful
    /// of histograms.
    pub fn serve(self, registry: Registry) -> MetricsServer {
        self.serve_with(registry, crate::http::Limits::default())
    }

    /// [`serve`](Self::serve) under `limits` (the mock's `[http]` settings).
    pub fn serve_with(self, registry: Registry, limits: crate::http::Limits) -> MetricsServer {
        let MetricsListener { listener, addr } = self;
        let registry = Arc::new(registry);
        let stop = CancellationToken::new();
        let service = service_fn(move |request: Request<Incoming>| {
            let response = respond(&request, &registry);
            async move { Ok::<_, Infallible>(response) }
        });
        tokio::spawn(crate::http::serve(
            listener,
            service,
            limits,
            stop.clone(),
            None,
        ));
        MetricsServer {
            addr,
            _stop: stop.drop_guard(),
        }
    }
}

fn respond(request: &Request<Incoming>, registry: &Registry) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, text: &str| {
        let mut r = Response::new(Full::new(Bytes::from(text.to_string())));
        *r.status_mut() = status;
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    };
    if request.uri().path() != PATH {
        return plain(
            StatusCode::NOT_FOUND,
            "fleetstorm: metrics are at /metrics\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n");
    }
    let mut text = String::with_capacity(16 * 1024);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, registry) {
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("encoding the metrics failed: {e}\n"),
        );
    }
    let mut r = Response::new(Full::new(Bytes::from(text)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(CONTENT_TYPE_OPENMETRICS),
    );
    r
}

/// One label set: (name, value) pairs.
pub(crate) type LabelPairs<'a> = Vec<(&'static str, &'a str)>;

/// Write one metric family from a collector: its descriptor, then one sample per label set.
pub(crate) fn family<'a, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (LabelPairs<'a>, M)>,
) -> std::fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// `labels` with one more pair.
pub(crate) fn with<'a>(
    labels: &LabelPairs<'a>,
    key: &'static str,
    value: &'a str,
) -> LabelPairs<'a> {
    let mut l = labels.clone();
    l.push((key, value));
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listen_address_is_ip_and_port() {
        assert_eq!(
            parse_listen("127.0.0.1:9464"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 9464)))
        );
        assert!(parse_listen("[::1]:0").is_ok());
        for bad in ["localhost:9464", "9464", "127.0.0.1", "127.0.0.1:99999", ""] {
            let e = parse_listen(bad).unwrap_err();
            assert!(e.contains("is not IP:PORT"), "{bad}: {e}");
        }
    }
}
