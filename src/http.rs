//! One HTTP/1.1 connection served until its client closes it or a shutdown fires: the loop the
//! embedded hook service, the mock's control plane and the metrics endpoint share.

use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serve every request of one keep-alive connection with `service` until the client closes it
/// or `stop` fires; then finish the request in progress, waiting at most `grace` (no limit when
/// `None`).
pub async fn serve_until<S, B>(
    stream: TcpStream,
    service: S,
    stop: CancellationToken,
    grace: Option<Duration>,
) where
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    B: Body + 'static,
    B::Error: Into<BoxError>,
{
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
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
