//! An embedded loopback HTTP pre-provisioning hook service, so scenarios that compare an HTTP hook
//! run without anything else started (`url = "embedded"`). It answers like a hook service behind
//! AWS would: allow when the request's serial parameter starts with a prefix.
//!
//! Hand-written on tokio rather than pulling in an HTTP server crate: it serves one fixed POST
//! route on loopback for the mock's own hook client.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Start the service on 127.0.0.1:0; it stops with `shutdown`. Returns its URL.
pub async fn start(
    prefix: String,
    parameter: String,
    shutdown: CancellationToken,
) -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(s) => s,
                    Err(_) => continue,
                },
            };
            let (prefix, parameter) = (prefix.clone(), parameter.clone());
            tokio::spawn(async move {
                let Some(body) = read_request(&mut stream).await else {
                    return;
                };
                let allow = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|event| {
                        event["parameters"][parameter.as_str()]
                            .as_str()
                            .map(|serial| serial.starts_with(&prefix))
                    })
                    .unwrap_or(false);
                let reply = serde_json::json!({ "allowProvisioning": allow }).to_string();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                    reply.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok(format!("http://{addr}/hook"))
}

/// Read one HTTP/1.1 request and return its body (bounded to 1 MiB).
async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if length > 1 << 20 {
                return None;
            }
            let body_start = end + 4;
            while buf.len() < body_start + length {
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(buf[body_start..body_start + length].to_vec());
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
    }
}
