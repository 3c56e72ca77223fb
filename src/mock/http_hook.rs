//! HTTP pre-provisioning hooks: the mock's keep-alive client for a hook service on loopback, and an
//! embedded loopback hook service, so scenarios that compare an HTTP hook run without anything
//! else started (`url = "embedded"`). The embedded service answers like a hook service behind AWS
//! would: allow when the request's serial parameter starts with a prefix.
//!
//! Both sides are hyper (HTTP/1.1): the client keeps a pool of keep-alive connections per hook,
//! so consecutive RegisterThing requests reuse one connection instead of paying a TCP handshake
//! each, and chunked responses are read like any other.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Largest request body the embedded service reads.
const MAX_REQUEST_BYTES: usize = 1 << 20;

/// The mock's client for one HTTP hook: its URL and a keep-alive connection pool.
pub(super) struct HookClient {
    uri: Uri,
    authority: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl HookClient {
    /// A client for `url`, which must be a plain-HTTP URL on loopback.
    pub(super) fn new(url: &str) -> Result<HookClient, String> {
        let authority = loopback_target(url)?;
        let uri: Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .build_http();
        Ok(HookClient {
            uri,
            authority,
            client,
        })
    }

    /// POST `body` as JSON; returns (status, response body).
    pub(super) async fn post(&self, body: Vec<u8>) -> Result<(u16, Bytes), String> {
        let request = Request::post(self.uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("{}: {}", self.authority, error_chain(&e)))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{}: {}", self.authority, error_chain(&e)))?
            .to_bytes();
        Ok((status, body))
    }
}

/// An error and its sources, `: `-separated (hyper's own messages are terse, e.g. "client
/// error (Connect)", and the cause, such as "Connection refused", is in the sources).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Hooks are local simulations: only plain-HTTP URLs on loopback are accepted, so a test or a
/// shipped scenario can never send traffic off the machine. Returns the URL's authority.
pub(super) fn loopback_target(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs on loopback are supported")?;
    let authority = rest.split_once('/').map_or(rest, |(a, _)| a);
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .trim_matches(|c| c == '[' || c == ']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err(format!(
            "{host} is not a loopback address (hooks are local simulations)"
        ));
    }
    Ok(authority.to_string())
}

/// Start the embedded service on 127.0.0.1:0 under `limits`; it stops with `shutdown`. Returns
/// its URL.
pub async fn start(
    prefix: String,
    parameter: String,
    limits: crate::http::Limits,
    shutdown: CancellationToken,
) -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let answer = move |body: &[u8]| {
        let allow = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|event| {
                event["parameters"][parameter.as_str()]
                    .as_str()
                    .map(|serial| serial.starts_with(&prefix))
            })
            .unwrap_or(false);
        serde_json::json!({ "allowProvisioning": allow })
    };
    let answer = Arc::new(answer);
    // Any method and path.
    let service = service_fn(move |request: Request<Incoming>| {
        let answer = answer.clone();
        async move {
            let response = match Limited::new(request.into_body(), MAX_REQUEST_BYTES)
                .collect()
                .await
            {
                Ok(body) => Response::builder()
                    .header(CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::from(answer(&body.to_bytes()).to_string()))),
                Err(_) => Response::builder()
                    .status(StatusCode::PAYLOAD_TOO_LARGE)
                    .body(Full::new(Bytes::new())),
            };
            Ok::<_, Infallible>(response.unwrap_or_default())
        }
    });
    tokio::spawn(crate::http::serve(
        listener, service, limits, shutdown, None,
    ));
    Ok(url)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpStream;

    use super::*;
    use crate::mock::hooks::{Hook, HookEvent, HookFailure, HookOutcome, HookSettings};

    fn event(serial: &str) -> HookEvent {
        HookEvent::for_serial(serial)
    }

    fn http_hook(url: &str) -> Hook {
        let settings: HookSettings =
            toml::from_str(&format!("kind = \"http\"\nurl = \"{url}\"")).unwrap();
        Hook::new("T", &settings, std::path::Path::new(".")).unwrap()
    }

    /// Read one request (head and content-length body) off a raw connection.
    async fn read_request(reader: &mut BufReader<TcpStream>) -> Vec<u8> {
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await.unwrap();
            let line = line.trim_end().to_ascii_lowercase();
            if line.is_empty() {
                break;
            }
            if let Some(v) = line.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await.unwrap();
        body
    }

    #[tokio::test]
    async fn a_chunked_response_is_read_whole() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut reader = BufReader::new(stream);
            let request = read_request(&mut reader).await;
            let mut stream = reader.into_inner();
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                        transfer-encoding: chunked\r\n\r\n";
            stream.write_all(head.as_bytes()).await.unwrap();
            // The reply in three chunks, each its own write.
            let reply =
                r#"{"allowProvisioning": true, "parameterOverrides": {"DeviceName": "from-hook"}}"#;
            let (a, rest) = reply.split_at(10);
            let (b, c) = rest.split_at(30);
            for chunk in [a, b, c] {
                let frame = format!("{:x}\r\n{chunk}\r\n", chunk.len());
                stream.write_all(frame.as_bytes()).await.unwrap();
                stream.flush().await.unwrap();
            }
            stream.write_all(b"0\r\n\r\n").await.unwrap();
            request
        });
        let hook = http_hook(&url);
        let outcome = hook.invoke(&event("123")).await;
        let overrides: BTreeMap<String, String> =
            [("DeviceName".to_string(), "from-hook".to_string())].into();
        assert_eq!(
            outcome,
            HookOutcome::Allow {
                parameter_overrides: overrides
            }
        );
        let request: serde_json::Value = serde_json::from_slice(&server.await.unwrap()).unwrap();
        assert_eq!(request["parameters"]["SerialNumber"], "123");
        assert_eq!(request["clientId"], "client");
    }

    #[tokio::test]
    async fn consecutive_calls_reuse_one_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let shutdown = CancellationToken::new();
        let service = {
            let requests = requests.clone();
            service_fn(move |request: Request<Incoming>| {
                let requests = requests.clone();
                async move {
                    let body = request.into_body().collect().await.unwrap().to_bytes();
                    requests.fetch_add(1, Ordering::SeqCst);
                    let event: serde_json::Value =
                        serde_json::from_slice(&body).unwrap_or_default();
                    let allow = event["parameters"]["SerialNumber"] == "123456";
                    let answer = serde_json::json!({ "allowProvisioning": allow });
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(answer.to_string()))))
                }
            })
        };
        {
            let (accepted, shutdown) = (accepted.clone(), shutdown.clone());
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(crate::http::serve_until(
                        stream,
                        service.clone(),
                        crate::http::Limits::default(),
                        shutdown.clone(),
                        None,
                    ));
                }
            });
        }
        let hook = http_hook(&url);
        for serial in ["123456", "999", "123456", "999", "123456"] {
            let allowed = matches!(hook.invoke(&event(serial)).await, HookOutcome::Allow { .. });
            assert_eq!(allowed, serial == "123456", "{serial}");
        }
        assert_eq!(requests.load(Ordering::SeqCst), 5);
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        let stats = hook.stats();
        assert_eq!((stats.allowed, stats.denied), (3, 2));
        shutdown.cancel();
    }

    #[tokio::test]
    async fn the_embedded_service_allows_by_prefix_and_failures_keep_their_class() {
        let shutdown = CancellationToken::new();
        let url = start(
            "123".into(),
            "SerialNumber".into(),
            crate::http::Limits::default(),
            shutdown.clone(),
        )
        .await
        .unwrap();
        let hook = http_hook(&url);
        assert!(matches!(
            hook.invoke(&event("123-a")).await,
            HookOutcome::Allow { .. }
        ));
        assert!(matches!(
            hook.invoke(&event("456")).await,
            HookOutcome::Reject {
                cause: HookFailure::Denied,
                ..
            }
        ));

        // Nothing listening: an error, naming the address.
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let hook = http_hook(&format!("http://{addr}/hook"));
        match hook.invoke(&event("1")).await {
            HookOutcome::Reject {
                cause: HookFailure::Error,
                message,
                ..
            } => assert!(
                message.starts_with(&format!(
                    "Pre-provisioning hook failed with an error: {addr}: "
                )),
                "{message}"
            ),
            other => panic!("{other:?}"),
        }
        shutdown.cancel();
    }

    #[test]
    fn only_loopback_urls_are_accepted() {
        assert_eq!(
            loopback_target("http://127.0.0.1:8080/hook").as_deref(),
            Ok("127.0.0.1:8080")
        );
        assert_eq!(
            loopback_target("http://[::1]:1/x").as_deref(),
            Ok("[::1]:1")
        );
        assert_eq!(
            loopback_target("http://localhost").as_deref(),
            Ok("localhost")
        );
        assert!(loopback_target("https://127.0.0.1/").is_err());
        assert!(loopback_target("http://192.0.2.1/hook").is_err());
        assert!(HookClient::new("http://127.0.0.1:1/a b").is_err());
    }
}
