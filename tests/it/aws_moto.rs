//! `fleetstorm aws cleanup` against moto in server mode, an AWS emulator written by others.
//!
//! The test creates its own virtualenv under `target/moto-venv` from `tests/aws/moto-requirements.txt`
//! when it is missing. It never skips: without Python or PyPI it fails and says why. moto listens
//! on an ephemeral loopback port; the AWS SDK gets dummy credentials and never leaves loopback.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common;
use crate::support;

use support::{fleetstorm, text};

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture_script() -> PathBuf {
    manifest_dir().join("tests/aws/moto_fixture.py")
}

/// The venv's python, creating the venv on first use.
pub(crate) fn venv_python() -> PathBuf {
    common::python_venv(
        "moto-venv",
        "tests/aws/moto-requirements.txt",
        "import moto.server, boto3, flask",
    )
    .join("python")
}

/// A moto server on 127.0.0.1 and an ephemeral port; stops when dropped (its stdin closes).
pub(crate) struct Moto {
    child: Child,
    stdin: Option<ChildStdin>,
    port: u16,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    pub(crate) fn start(python: &Path) -> Moto {
        Moto::start_with(python, &[])
    }

    /// [`Moto::start`] with more environment (moto's own settings).
    pub(crate) fn start_with(python: &Path, env: &[(&str, &str)]) -> Moto {
        let mut child = Command::new(python)
            .arg(fixture_script())
            .arg("serve")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto");
        let stdin = child.stdin.take();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("moto printed {line:?}, not a port"));
        // Ready when the port accepts a connection (polled, bounded).
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto never listened on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        let url = format!("http://127.0.0.1:{port}");
        Moto {
            child,
            stdin,
            port,
            url,
        }
    }

    fn url(&self) -> String {
        self.url.clone()
    }

    pub(crate) fn url_ref(&self) -> &str {
        &self.url
    }
}

pub(crate) fn fixture(python: &Path, args: &[&str]) -> Value {
    let out = Command::new(python)
        .arg(fixture_script())
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "moto_fixture {args:?} failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// created.csv for the populated run: the three devices and the certificate that never
/// reached RegisterThing.
fn write_created_csv(dir: &Path, run: &Value) {
    let mut csv = String::from(
        "run_id,device,attempt,certificate_id,certificate_arn,thing_name,policy_names,time\n",
    );
    for (i, d) in run["devices"].as_array().unwrap().iter().enumerate() {
        csv.push_str(&format!(
            "r1,{i},1,{},{},{},{};preexisting-shared,2026-01-01T00:00:0{i}Z\n",
            d["id"].as_str().unwrap(),
            d["arn"].as_str().unwrap(),
            d["thing"].as_str().unwrap(),
            d["policy"].as_str().unwrap(),
        ));
    }
    let o = &run["orphan"];
    csv.push_str(&format!(
        "r1,3,1,{},{},,,2026-01-01T00:00:05Z\n",
        o["id"].as_str().unwrap(),
        o["arn"].as_str().unwrap()
    ));
    std::fs::write(dir.join("created.csv"), csv).unwrap();
}

fn names(v: &Value, key: &str) -> BTreeSet<String> {
    match &v[key] {
        Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_string()).collect(),
        Value::Object(o) => o.keys().cloned().collect(),
        _ => panic!("{key}: {v}"),
    }
}

fn run_ids(run: &Value) -> BTreeSet<String> {
    let mut ids: BTreeSet<String> = run["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    ids.insert(run["orphan"]["id"].as_str().unwrap().to_string());
    ids
}

#[test]
fn cleanup_removes_exactly_the_runs_things_and_certificates() {
    let python = venv_python();
    let moto = Moto::start(&python);
    let run = fixture(&python, &["populate", &moto.url(), "run1-"]);
    let dir = tempfile::tempdir().unwrap();
    write_created_csv(dir.path(), &run);
    let run_dir = dir.path().to_str().unwrap();

    // The dry run lists, and sends nothing.
    let dry = fleetstorm(&[
        "aws",
        "cleanup",
        run_dir,
        "--dry-run",
        "--endpoint-url",
        &moto.url(),
    ]);
    assert!(dry.status.success(), "{}", text(&dry));
    let listing = String::from_utf8_lossy(&dry.stdout);
    assert!(
        listing.contains("would remove 4 certificates, 3 things"),
        "{listing}"
    );
    let before = fixture(&python, &["inspect", &moto.url()]);
    assert_eq!(names(&before, "certificates").len(), 5);

    let out = fleetstorm(&["aws", "cleanup", run_dir, "--endpoint-url", &moto.url()]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("certificates 4 deleted"), "{}", text(&out));
    assert!(stdout.contains("things       3 deleted"), "{}", text(&out));
    // The per-device policies go; the shared one predates the run and has another target.
    assert!(
        stdout.contains("policies     3 deleted, 0 already gone, 1 kept"),
        "{}",
        text(&out)
    );

    let after = fixture(&python, &["inspect", &moto.url()]);
    let certs = names(&after, "certificates");
    assert!(certs.is_disjoint(&run_ids(&run)), "{after}");
    assert!(
        certs.contains(run["others"]["id"].as_str().unwrap()),
        "{after}"
    );
    assert_eq!(
        names(&after, "things"),
        BTreeSet::from(["other-0".to_string()])
    );
    assert_eq!(
        names(&after, "policies"),
        BTreeSet::from(["preexisting-shared".to_string(), "unrelated".to_string()])
    );

    // A second cleanup finds everything done and removes nothing.
    let again = fleetstorm(&["aws", "cleanup", run_dir, "--endpoint-url", &moto.url()]);
    assert!(again.status.success(), "{}", text(&again));
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(
        stdout.contains("certificates 0 deleted, 0 already gone, 0 kept, 4 skipped"),
        "{stdout}"
    );
    crate::aws_e2e::assert_nothing_removed(&again);

    // Without the progress file, everything counts as already gone (NotFound is done).
    std::fs::remove_file(dir.path().join("cleanup-progress.csv")).unwrap();
    let fresh = fleetstorm(&["aws", "cleanup", run_dir, "--endpoint-url", &moto.url()]);
    assert!(fresh.status.success(), "{}", text(&fresh));
    let stdout = String::from_utf8_lossy(&fresh.stdout);
    assert!(
        stdout.contains("things       0 deleted, 3 already gone"),
        "{stdout}"
    );
    assert_eq!(fixture(&python, &["inspect", &moto.url()]), after);
}

#[test]
fn cleanup_by_prefix_removes_matching_things_and_their_certificates() {
    let python = venv_python();
    let moto = Moto::start(&python);
    let run = fixture(&python, &["populate", &moto.url(), "lost-"]);
    let out = fleetstorm(&[
        "aws",
        "cleanup",
        "--prefix",
        "lost-",
        "--endpoint-url",
        &moto.url(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let after = fixture(&python, &["inspect", &moto.url()]);
    assert_eq!(
        names(&after, "things"),
        BTreeSet::from(["other-0".to_string()])
    );
    let certs = names(&after, "certificates");
    for d in run["devices"].as_array().unwrap() {
        assert!(!certs.contains(d["id"].as_str().unwrap()), "{after}");
    }
    // Not attached to a matching thing: kept, as are all policies.
    assert!(certs.contains(run["orphan"]["id"].as_str().unwrap()));
    assert_eq!(names(&after, "policies").len(), 5, "{after}");
}

/// A loopback proxy in front of moto that answers the first `throttle` requests with 429 +
/// `x-amzn-ErrorType: ThrottlingException` and forwards the rest.
struct ThrottlingProxy {
    port: u16,
    seen: Arc<AtomicUsize>,
}

fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut byte).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&byte[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap_or(0));
    while buf.len() < head_end + length {
        let n = stream.read(&mut byte).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&byte[..n]);
    }
    // One request per upstream connection: ask moto to close after answering.
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut rewritten: Vec<&str> = head
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    rewritten.push("Connection: close");
    let mut out = (rewritten.join("\r\n") + "\r\n\r\n").into_bytes();
    out.extend_from_slice(&buf[head_end..]);
    Some(out)
}

impl ThrottlingProxy {
    fn start(upstream: u16, throttle: usize) -> ThrottlingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut client) = stream else { return };
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let Some(request) = read_request(&mut client) else {
                        return;
                    };
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    if n < throttle {
                        let body = r#"{"message":"Rate exceeded"}"#;
                        let _ = write!(
                            client,
                            "HTTP/1.1 429 Too Many Requests\r\nx-amzn-ErrorType: ThrottlingException\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        return;
                    }
                    let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
                        return;
                    };
                    let _ = up.write_all(&request);
                    let mut response = Vec::new();
                    let _ = up.read_to_end(&mut response);
                    let _ = client.write_all(&response);
                });
            }
        });
        ThrottlingProxy { port, seen }
    }
}

#[test]
fn throttling_exceptions_are_retried_to_success() {
    let python = venv_python();
    let moto = Moto::start(&python);
    let run = fixture(&python, &["populate", &moto.url(), "thr-"]);
    let dir = tempfile::tempdir().unwrap();
    write_created_csv(dir.path(), &run);
    const THROTTLED: usize = 5;
    let proxy = ThrottlingProxy::start(moto.port, THROTTLED);
    let url = format!("http://127.0.0.1:{}", proxy.port);
    let out = fleetstorm(&[
        "aws",
        "cleanup",
        dir.path().to_str().unwrap(),
        "--endpoint-url",
        &url,
        "--concurrency",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{THROTTLED} throttled answers")),
        "{}",
        text(&out)
    );
    assert!(proxy.seen.load(Ordering::SeqCst) > THROTTLED);
    let after = fixture(&python, &["inspect", &moto.url()]);
    assert!(
        names(&after, "certificates").is_disjoint(&run_ids(&run)),
        "{after}"
    );
    assert_eq!(
        names(&after, "things"),
        BTreeSet::from(["other-0".to_string()])
    );
}
