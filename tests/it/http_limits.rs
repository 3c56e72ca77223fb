//! The HTTP listeners drop what they do not need: half-sent request heads and idle connections
//! to the mock's control plane and to the metrics endpoint are closed within the configured
//! timeouts while a live client is served throughout, and past the connection cap new
//! connections wait for a slot.
//!
//! Real time, short timeouts and bounded waits, not tokio's paused clock: a paused runtime
//! advances its clock to the next timer at every park with one pending, even when the
//! zero-timeout I/O poll just found a socket ready (tokio's `park_thread_timeout`), so with
//! real sockets every I/O wait would leap to some connection's deadline. Closure is an EOF
//! read within a bounded wait; each connection's time is measured from its own connect.

use std::net::SocketAddr;
use std::time::Duration;

use fleetstorm::http::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

use crate::common::start_mock;

const HALF_SENT: usize = 200;
const IDLE: usize = 100;
/// The short timeout under test, and the one that must not be what closed them.
const SHORT: Duration = Duration::from_secs(1);
const LONG: Duration = Duration::from_secs(60);
/// How late after its deadline a close may reach the client on a loaded machine.
const SLACK: Duration = Duration::from_secs(2);

/// A complete request with `Connection: close`: its status line, within `within`.
async fn get(addr: SocketAddr, path: &str, within: Duration) -> Result<String, String> {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await?;
        let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(head.as_bytes()).await?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await?;
        let text = String::from_utf8_lossy(&answer).into_owned();
        std::io::Result::Ok(text.lines().next().unwrap_or("").to_string())
    };
    match timeout(within, exchange).await {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {within:?}")),
    }
}

/// How long after `opened` the server closed `s` (EOF or reset), or `None` when it is still
/// open after `bound`. Whatever the server writes before closing (a 408) is read and ignored.
async fn closed_after(mut s: TcpStream, opened: Instant, bound: Duration) -> Option<Duration> {
    let mut buf = [0u8; 1024];
    let read_to_eof = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    timeout(bound, read_to_eof)
        .await
        .ok()
        .map(|()| opened.elapsed())
}

/// Open `HALF_SENT` connections that send part of a request head and `IDLE` that send nothing,
/// while a client asks for `path` every 100 ms and must be answered within a second each time;
/// returns when each bad connection closed (from just before its own connect) and how often the client
/// was answered.
async fn flood(addr: SocketAddr, path: &str) -> (Vec<Option<Duration>>, usize) {
    let done = tokio_util::sync::CancellationToken::new();
    let live = {
        let (done, path) = (done.clone(), path.to_string());
        tokio::spawn(async move {
            let mut answered = 0;
            while !done.is_cancelled() {
                let status = get(addr, &path, Duration::from_secs(1)).await;
                assert_eq!(status.as_deref(), Ok("HTTP/1.1 200 OK"), "the live client");
                answered += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            answered
        })
    };
    let mut watching = Vec::new();
    for i in 0..HALF_SENT + IDLE {
        // Timed from before the connect: the server's timer starts at its accept, which can
        // come before this task resumes from `connect` on a loaded machine (a close measured
        // from after the connect was then seen 7 ms "early").
        let opened = Instant::now();
        let mut s = TcpStream::connect(addr).await.unwrap();
        if i < HALF_SENT {
            // A write into a connection the server already closed would fail; it has not: the
            // timeouts are far longer than opening them all takes.
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nUser-Ag")
                .await
                .unwrap();
        }
        watching.push(tokio::spawn(closed_after(s, opened, LONG / 2)));
    }
    let mut closed = Vec::new();
    for w in watching {
        closed.push(w.await.unwrap());
    }
    done.cancel();
    (closed, live.await.unwrap())
}

/// Both timeouts on one server: first the header-read timeout short (the idle one long), then
/// the idle timeout short (the header-read one long); every bad connection closes when the
/// short one runs out, not before, and the live client is answered all along and after.
async fn both_timeouts(mut serve: impl AsyncFnMut(Limits) -> (SocketAddr, &'static str)) {
    let _ = fleetstorm::limits::raise_nofile();
    for (header_read_timeout, idle_timeout, which) in
        [(SHORT, LONG, "header-read"), (LONG, SHORT, "idle")]
    {
        let limits = Limits {
            header_read_timeout,
            idle_timeout,
            max_connections: 1000,
        };
        let (addr, path) = serve(limits).await;
        let (closed, answered) = flood(addr, path).await;
        for (i, c) in closed.iter().enumerate() {
            let kind = if i < HALF_SENT {
                "half-sent head"
            } else {
                "idle connection"
            };
            let c = c.unwrap_or_else(|| panic!("{which} timeout: {kind} {i} still open"));
            assert!(
                SHORT <= c && c <= SHORT + SLACK,
                "{which} timeout: {kind} {i} closed after {c:?}"
            );
        }
        assert!(
            answered >= 5,
            "{which}: the live client was answered {answered} times"
        );
        assert_eq!(
            get(addr, path, SHORT).await.as_deref(),
            Ok("HTTP/1.1 200 OK")
        );
    }
}

#[tokio::test]
async fn the_control_plane_closes_half_sent_heads_and_idle_connections_within_its_timeouts() {
    let mut mocks = Vec::new();
    both_timeouts(async |limits| {
        let m = start_mock(|s| s.http = limits).await;
        let addr = m.handle.control_addr.unwrap();
        mocks.push(m);
        (addr, "/endpoint")
    })
    .await;
}

#[tokio::test]
async fn the_metrics_endpoint_closes_half_sent_heads_and_idle_connections_within_its_timeouts() {
    let mut servers = Vec::new();
    both_timeouts(async |limits| {
        let metrics = fleetstorm::exporter::RunMetrics::new();
        let listener = fleetstorm::exporter::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let server = listener.serve_with(metrics.registry(), limits);
        let addr = server.addr;
        servers.push(server);
        (addr, "/metrics")
    })
    .await;
}

#[tokio::test]
async fn a_trickled_head_is_closed_by_the_header_read_timeout_though_bytes_keep_coming() {
    let limits = Limits {
        header_read_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(1),
        max_connections: 10,
    };
    let m = start_mock(|s| s.http = limits).await;
    let addr = m.handle.control_addr.unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let opened = Instant::now();
    // A byte every 250 ms: never idle for a second, never a whole head.
    let mut writing = tokio::time::interval(Duration::from_millis(250));
    let mut buf = [0u8; 256];
    let cut = loop {
        tokio::select! {
            _ = writing.tick() => {
                if s.write_all(b"a").await.is_err() {
                    break opened.elapsed();
                }
            }
            read = s.read(&mut buf) => {
                if matches!(read, Ok(0) | Err(_)) {
                    break opened.elapsed();
                }
            }
        }
        assert!(opened.elapsed() < LONG, "never cut");
    };
    assert!(
        Duration::from_secs(2) <= cut && cut <= Duration::from_secs(2) + SLACK,
        "the trickle was cut after {cut:?}"
    );
}

#[tokio::test]
async fn past_the_cap_a_connection_waits_for_a_slot_and_is_then_served() {
    let limits = Limits {
        header_read_timeout: LONG,
        idle_timeout: LONG,
        max_connections: 3,
    };
    let m = start_mock(|s| s.http = limits).await;
    let addr = m.handle.control_addr.unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    // The fourth is connected (the kernel's backlog) but not served while the three are held ...
    let mut fourth = tokio::spawn(get(addr, "/endpoint", LONG));
    assert!(
        timeout(Duration::from_millis(500), &mut fourth)
            .await
            .is_err(),
        "answered past the cap"
    );
    // ... and is served once one of them closes.
    drop(held.pop());
    let status = timeout(Duration::from_secs(5), fourth)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.as_deref(), Ok("HTTP/1.1 200 OK"));
}
