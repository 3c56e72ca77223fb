//! Live Prometheus metrics (`--metrics-listen`, `--metrics-linger`): the endpoint's OpenMetrics
//! text and its counters against the run's summary.json, the mock's endpoint, bad flags, and
//! Debian's `prometheus` scraping two running shards, with every PromQL expression of the
//! Grafana dashboard (deploy/grafana/fleetstorm.json) run against it.

use crate::common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use fleetstorm::exporter::RunMetrics;
use fleetstorm::fleet::{self, RunOptions};
use fleetstorm::scenario::Scenario;
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_fleetstorm");

/// Devices whose serial does not start with 123456 are denied by the hook: failures with a
/// reason, deterministic for the seed.
const SCENARIO: &str = r#"
name = "NAME"
seed = 5
max_in_flight = 200
[target]
kind = "mock"
[target.mock]
keys = "p256"
[target.mock.hooks.FleetProvisioningTemplate]
kind = "serial-prefix"
prefix = "123456"
[devices]
count = COUNT
client_id = "NAME-{seq:04}"
certificate = "csr"
[devices.parameters]
SerialNumber = "{pick:123456=3,999999=1}{seq:06}"
DeviceName = "NAME-thing-{seq:04}"
DeviceLocation = "Berlin"
[[schedule]]
executor = "constant-arrival-rate"
rate = RATE
duration = "DURATION"
"#;

fn scenario(dir: &Path, name: &str, count: u64, rate: u64, duration: &str) -> PathBuf {
    let body = SCENARIO
        .replace("NAME", name)
        .replace("COUNT", &count.to_string())
        .replace("RATE", &rate.to_string())
        .replace("DURATION", duration);
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, body).unwrap();
    path
}

// ---------------------------------------------------------------------------------------------
// HTTP on loopback, blocking: enough for a scrape and Prometheus's query API.

/// GET `target` (`path?query`) from `addr`: (status, content type, body).
fn get(addr: &str, target: &str) -> std::io::Result<(u16, String, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, content_type, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// OpenMetrics text, as prometheus-client writes it.

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parse an exposition, checking its OpenMetrics structure: every sample belongs to the family
/// declared by the `# TYPE` line before it, with a suffix its type allows (counter `_total`,
/// histogram `_bucket` / `_sum` / `_count`, gauge none), a family is declared once, and the
/// text ends with `# EOF`.
fn parse_openmetrics(text: &str) -> Vec<Sample> {
    assert!(text.ends_with("# EOF\n"), "no # EOF at the end:\n{text}");
    let mut samples = Vec::new();
    let mut family: Option<(String, String)> = None;
    let mut declared = std::collections::BTreeSet::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if *line == "# EOF" {
            assert_eq!(i, lines.len() - 1, "# EOF before the end");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name type");
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "line {i}: {line}"
            );
            assert!(declared.insert(name.to_string()), "{name} declared twice");
            family = Some((name.to_string(), kind.to_string()));
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
            continue;
        }
        assert!(!line.starts_with('#'), "line {i}: unknown comment {line}");
        let sample = parse_sample(line).unwrap_or_else(|e| panic!("line {i}: {e}: {line}"));
        let (fname, kind) = family
            .as_ref()
            .unwrap_or_else(|| panic!("line {i}: sample before any # TYPE"));
        let suffix = sample
            .name
            .strip_prefix(fname.as_str())
            .unwrap_or_else(|| panic!("line {i}: {} outside family {fname}", sample.name));
        let allowed: &[&str] = match kind.as_str() {
            "counter" => &["_total"],
            "gauge" => &[""],
            _ => &["_bucket", "_sum", "_count"],
        };
        assert!(allowed.contains(&suffix), "line {i}: {line} in a {kind}");
        samples.push(sample);
    }
    samples
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let (name, rest) = match line.find('{') {
        Some(i) => (&line[..i], &line[i..]),
        None => line.split_at(line.find(' ').ok_or("no value")?),
    };
    let mut labels = BTreeMap::new();
    let mut rest = rest;
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            if c == '}' {
                end = Some(i);
                break;
            }
            if c == ',' {
                continue;
            }
            let key_start = i;
            let mut key_end = i;
            for (j, c) in chars.by_ref() {
                if c == '=' {
                    key_end = j;
                    break;
                }
            }
            let key = &body[key_start..key_end];
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {key}: no opening quote"));
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => return Err("dangling escape".into()),
                    },
                    Some((_, '"')) => break,
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("label {key}: no closing quote")),
                }
            }
            labels.insert(key.to_string(), value);
        }
        let end = end.ok_or("no closing brace")?;
        rest = &body[end + 1..];
    }
    let value = rest.trim();
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().map_err(|e| format!("value {v:?}: {e}"))?,
    };
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// The sum of the samples named `name` whose labels include every one of `with`.
fn total(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            with.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
        })
        .map(|s| s.value)
        .sum()
}

fn summary(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The run's endpoint, in process.

/// Scraped during and after an in-process run: the text is OpenMetrics, and at the end every
/// counter equals summary.json's figure (started, provisioned, failed by reason, dropped), the
/// `total` histogram counts the provisioned devices and the embedded mock's series agree.
#[tokio::test]
async fn the_endpoint_serves_openmetrics_whose_counters_equal_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(dir.path(), "endpoint", 60, 30, "2s");
    let s = Scenario::load(&path, &[]).unwrap();
    let metrics = RunMetrics::new();
    let server = fleetstorm::exporter::serve("127.0.0.1:0".parse().unwrap(), metrics.registry())
        .await
        .unwrap();
    let addr = server.addr.to_string();

    // Before a run starts: an empty, valid exposition.
    let (status, content_type, body) = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || get(&addr, "/metrics").unwrap()
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert_eq!(body, "# EOF\n");

    let out = dir.path().join("out");
    let options = RunOptions {
        metrics: Some(metrics.clone()),
        ..RunOptions::new(&out)
    };
    let run = tokio::spawn(fleet::run(s, options, CancellationToken::new()));
    // Scrapes while devices run: at least one sees devices started and not all finished.
    let mut mid_run = 0;
    while !run.is_finished() {
        let addr = addr.clone();
        let text = tokio::task::spawn_blocking(move || get(&addr, "/metrics").unwrap().2)
            .await
            .unwrap();
        let samples = parse_openmetrics(&text);
        let started = total(&samples, "fleetstorm_started_total", &[]);
        let finished = total(&samples, "fleetstorm_provisioned_total", &[])
            + total(&samples, "fleetstorm_failed_total", &[]);
        if started > 0.0 && finished < 60.0 && !run.is_finished() {
            mid_run += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let summary_returned = run.await.unwrap().unwrap();
    assert!(mid_run > 0, "no scrape saw the run in progress");

    let text = tokio::task::spawn_blocking(move || get(&addr, "/metrics").unwrap().2)
        .await
        .unwrap();
    let samples = parse_openmetrics(&text);
    let json = summary(&out);
    let labels = [("scenario", "endpoint"), ("shard", "0")];
    let count = |key: &str| json["devices"][key].as_f64().unwrap();
    assert_eq!(
        total(&samples, "fleetstorm_started_total", &labels),
        count("started")
    );
    assert_eq!(
        total(&samples, "fleetstorm_provisioned_total", &labels),
        count("provisioned")
    );
    assert_eq!(
        total(&samples, "fleetstorm_failed_total", &labels),
        count("failed")
    );
    assert_eq!(
        total(&samples, "fleetstorm_dropped_total", &labels),
        count("dropped")
    );
    assert_eq!(
        total(&samples, "fleetstorm_planned_devices", &labels),
        count("planned")
    );
    assert_eq!(
        count("provisioned"),
        summary_returned.devices.provisioned as f64
    );
    // The hook denied some: failures with their summary.json label.
    let failures = json["failures"].as_object().unwrap();
    assert!(!failures.is_empty(), "{json}");
    for (reason, n) in failures {
        let with = [labels[0], labels[1], ("reason", reason.as_str())];
        assert_eq!(
            total(&samples, "fleetstorm_failed_total", &with),
            n.as_f64().unwrap(),
            "{reason}"
        );
    }
    assert!(count("provisioned") > 0.0);
    assert_eq!(total(&samples, "fleetstorm_in_flight", &labels), 0.0);
    // Histograms: total counts the provisioned devices, register_thing every device that got
    // an answer, and the +Inf bucket equals the count.
    let total_count = total(
        &samples,
        "fleetstorm_stage_latency_seconds_count",
        &[("stage", "total")],
    );
    assert_eq!(total_count, count("provisioned"));
    for stage in ["connect_claim", "register_thing", "total"] {
        let counted = json["stages"][stage]["count"].as_f64().unwrap();
        for family in ["latency", "service"] {
            let name = format!("fleetstorm_stage_{family}_seconds");
            let with = [("stage", stage)];
            assert_eq!(total(&samples, &format!("{name}_count"), &with), counted);
            let inf = [("stage", stage), ("le", "+Inf")];
            assert_eq!(total(&samples, &format!("{name}_bucket"), &inf), counted);
        }
    }
    // The embedded mock's counters, with the run's labels.
    let rejected = total(
        &samples,
        "fleetstorm_mock_requests_total",
        &[("api", "register_thing"), ("result", "rejected")],
    );
    let accepted = total(
        &samples,
        "fleetstorm_mock_requests_total",
        &[("api", "register_thing"), ("result", "accepted")],
    );
    assert_eq!(accepted, count("provisioned"));
    assert_eq!(rejected, count("failed"));
    assert_eq!(
        total(
            &samples,
            "fleetstorm_mock_hook_calls_total",
            &[("result", "denied")]
        ),
        count("failed")
    );
    server.stop();
}

// ---------------------------------------------------------------------------------------------
// The mock's endpoint.

/// The mock's collector serves what the mock counted: CONNECTs, API calls by result, hook
/// decisions, open connections.
#[tokio::test]
async fn the_mock_endpoint_serves_its_counters() {
    let m = common::start_mock(|s| {
        let hook: fleetstorm::mock::hooks::HookSettings =
            toml::from_str("kind = \"serial-prefix\"\nprefix = \"123456\"").unwrap();
        s.hooks.insert("FleetProvisioningTemplate".into(), hook);
    })
    .await;
    let registry = fleetstorm::exporter::mock::registry(m.handle.observer());
    let server = fleetstorm::exporter::serve("127.0.0.1:0".parse().unwrap(), registry)
        .await
        .unwrap();
    let good = common::seed_device("good", "FleetProvisioningTemplate");
    let mut bad = common::seed_device("bad", "FleetProvisioningTemplate");
    bad.parameters.insert("SerialNumber".into(), "999".into());
    let handles = fleetstorm::device::Handles::default();
    for (spec, ok) in [(&good, true), (&bad, false)] {
        let report = fleetstorm::device::provision(&m.endpoint, &m.tls, spec, &handles).await;
        assert_eq!(report.outcome.is_ok(), ok, "{:?}", report.outcome.err());
    }
    m.handle.wait_active_at_most(0).await;

    let addr = server.addr.to_string();
    let text = tokio::task::spawn_blocking(move || get(&addr, "/metrics").unwrap().2)
        .await
        .unwrap();
    let samples = parse_openmetrics(&text);
    let v = |name: &str, with: &[(&str, &str)]| total(&samples, name, with);
    // good: claim + own certificate; bad: claim only.
    assert_eq!(v("fleetstorm_mock_connections_total", &[]), 3.0);
    assert_eq!(
        v("fleetstorm_mock_connects_total", &[("result", "accepted")]),
        3.0
    );
    assert_eq!(
        v("fleetstorm_mock_connects_total", &[("result", "refused")]),
        0.0
    );
    assert_eq!(v("fleetstorm_mock_connections_open", &[]), 0.0);
    let api = |api: &'static str, result: &'static str| {
        v(
            "fleetstorm_mock_requests_total",
            &[("api", api), ("result", result)],
        )
    };
    assert_eq!(api("create_keys_and_certificate", "accepted"), 2.0);
    assert_eq!(api("register_thing", "accepted"), 1.0);
    assert_eq!(api("register_thing", "rejected"), 1.0);
    let hook = |result: &'static str| {
        v(
            "fleetstorm_mock_hook_calls_total",
            &[
                ("template", "FleetProvisioningTemplate"),
                ("result", result),
            ],
        )
    };
    assert_eq!((hook("allowed"), hook("denied")), (1.0, 1.0));
    assert_eq!(
        v("fleetstorm_mock_keys_total", &[]),
        2.0,
        "keys served: {text}"
    );
    // No labels on a standalone mock's series.
    assert!(
        samples
            .iter()
            .filter(|s| s.name == "fleetstorm_mock_connections_total")
            .all(|s| s.labels.is_empty())
    );
    // Anything but /metrics is a 404.
    let addr = server.addr.to_string();
    let (status, _, _) = tokio::task::spawn_blocking(move || get(&addr, "/").unwrap())
        .await
        .unwrap();
    assert_eq!(status, 404);
    m.handle.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The command line.

/// A child process whose stdout and stderr lines arrive on a channel; killed if dropped alive.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for stream in [Box::new(out) as Box<dyn Read + Send>, Box::new(err)] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Proc {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first line from now on that `f` maps to Some, within `timeout`.
    fn find<T>(&mut self, f: impl Fn(&str) -> Option<T>, timeout: Duration) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = f(&line);
                    self.seen.push(line);
                    if let Some(t) = found {
                        return t;
                    }
                }
                Err(e) => panic!(
                    "no such line ({e:?}); output so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The metrics address from the line that announces it.
    fn metrics_addr(&mut self) -> String {
        self.find(
            |l| {
                let url = l.split("http://").nth(1)?;
                l.contains("metrics")
                    .then(|| url.trim_end_matches("/metrics").to_string())
                    .filter(|_| url.ends_with("/metrics"))
            },
            Duration::from_secs(60),
        )
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn exit_within(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("still running after {timeout:?}: {}", self.seen.join("\n"));
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn fleetstorm(cwd: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap()
}

/// A bad address is a usage error naming the flag; a linger without an endpoint too; an
/// address in use fails with exit 1 naming it, before the run claims its results folder.
#[test]
fn bad_metrics_flags_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(dir.path(), "flags", 2, 10, "1s");
    let path = path.to_str().unwrap();
    let out = dir.path().join("out");
    let out_arg = out.to_str().unwrap();
    for bad in ["localhost:9464", "127.0.0.1", "1.2.3.4.5:80", ""] {
        let o = fleetstorm(
            dir.path(),
            &["run", path, "--no-tui", "--metrics-listen", bad],
        );
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.contains("--metrics-listen"), "{stderr}");
        assert!(stderr.contains("is not IP:PORT"), "{stderr}");
    }
    let o = fleetstorm(dir.path(), &["run", path, "--metrics-linger", "5s"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--metrics-listen"));
    let o = fleetstorm(
        dir.path(),
        &[
            "run",
            path,
            "--metrics-listen",
            "127.0.0.1:0",
            "--metrics-linger",
            "soon",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--metrics-linger"));

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = fleetstorm(
        dir.path(),
        &[
            "run",
            path,
            "--no-tui",
            "--out",
            out_arg,
            "--metrics-listen",
            &addr,
        ],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("--metrics-listen {addr}: cannot listen")),
        "{stderr}"
    );
    assert!(!out.exists(), "the results folder was claimed");
    let pki = dir.path().join("pki");
    let o = fleetstorm(
        dir.path(),
        &[
            "mock",
            "--listen",
            "127.0.0.1:0",
            "--pki",
            pki.to_str().unwrap(),
            "--metrics-listen",
            &addr,
        ],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&addr), "{stderr}");
}

/// `fleetstorm mock --metrics-listen 127.0.0.1:0` prints its metrics URL and serves there.
#[test]
fn the_mock_command_serves_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let mut mock = Proc::spawn(Command::new(BIN).current_dir(dir.path()).args([
        "mock",
        "--listen",
        "127.0.0.1:0",
        "--keys",
        "p256",
        "--pki",
        "pki",
        "--metrics-listen",
        "127.0.0.1:0",
    ]));
    let addr = mock.metrics_addr();
    let (status, _, text) = get(&addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    let samples = parse_openmetrics(&text);
    assert_eq!(
        total(&samples, "fleetstorm_mock_connections_total", &[]),
        0.0
    );
    assert!(
        samples
            .iter()
            .any(|s| s.name == "fleetstorm_mock_requests_total")
    );
    mock.terminate();
    assert!(mock.exit_within(Duration::from_secs(30)).success());
}

// ---------------------------------------------------------------------------------------------
// Debian's Prometheus scraping two shards.

/// A free loopback port, for a server that cannot report the one it bound.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Prometheus's HTTP API: one instant query, (result vector) or the error it answered.
fn query(prometheus: &str, promql: &str) -> Result<Vec<serde_json::Value>, String> {
    let target = format!("/api/v1/query?query={}", percent_encode(promql));
    let (status, _, body) = get(prometheus, &target).map_err(|e| e.to_string())?;
    let json: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("HTTP {status}: {e}: {body}"))?;
    if json["status"] != "success" {
        return Err(format!("HTTP {status}: {body}"));
    }
    let result = &json["data"]["result"];
    Ok(match json["data"]["resultType"].as_str() {
        Some("vector") => result.as_array().cloned().unwrap_or_default(),
        // A scalar answers with [time, "value"].
        _ => vec![serde_json::json!({ "metric": {}, "value": result })],
    })
}

fn value(sample: &serde_json::Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The single value of a query (None while it has no data).
fn scalar(prometheus: &str, promql: &str) -> Option<f64> {
    let result = query(prometheus, promql).unwrap_or_else(|e| panic!("{promql}: {e}"));
    (result.len() == 1).then(|| value(&result[0]))
}

/// Poll `promql` until `done` holds for its value, within `timeout`; the last value.
fn poll(prometheus: &str, promql: &str, done: impl Fn(f64) -> bool, timeout: Duration) -> f64 {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    while Instant::now() < deadline {
        last = scalar(prometheus, promql);
        if last.is_some_and(&done) {
            return last.unwrap_or_default();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{promql}: still {last:?} after {timeout:?}");
}

/// Every PromQL expression of the dashboard (panel targets; the template variables'
/// `label_values(SELECTOR, LABEL)` as their selector), Grafana's variables substituted.
fn dashboard_queries(scenario: &str) -> Vec<(String, Option<String>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/fleetstorm.json");
    let dashboard: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let substitute = |e: &str| {
        e.replace("$scenario", scenario)
            .replace("$shard", ".*")
            .replace("$__rate_interval", "1m")
    };
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            assert!(!expr.contains("$DS"), "{expr}");
            queries.push((substitute(expr), None));
        }
    }
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        if var["type"] != "query" {
            continue;
        }
        let q = var["query"]["query"].as_str().unwrap();
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {}: {q}", var["name"]));
        let (selector, label) = inner.rsplit_once(',').unwrap();
        queries.push((substitute(selector.trim()), Some(label.trim().to_string())));
    }
    assert!(queries.len() >= 15, "{queries:?}");
    queries
}

/// The acceptance test: Debian's Prometheus, started here on loopback, scrapes two running
/// shards (`--shard 0/2` and `1/2`, the same `--start-at`, each with its own embedded mock);
/// `sum(fleetstorm_provisioned_total)` through its HTTP API equals the provisioned count of
/// `fleetstorm merge` of the two shard folders, and every expression of the Grafana dashboard
/// parses and returns data.
#[test]
fn prometheus_scrapes_two_shards_and_the_dashboard_queries_return_data() {
    let prometheus_bin = common::install::command(
        &["prometheus"],
        "prometheus",
        "the Prometheus acceptance test scrapes two shards with Debian's Prometheus",
    );
    let dir = tempfile::tempdir().unwrap();
    let name = "prom-shards";
    let planned = 80u64;
    let path = scenario(dir.path(), name, planned, 20, "4s");
    // Both shards wait for the same instant, time for Prometheus to start scraping them.
    let start_at =
        humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(15)).to_string();
    let outs: Vec<PathBuf> = (0..2)
        .map(|i| dir.path().join(format!("shard-{i}")))
        .collect();
    let mut shards: Vec<Proc> = outs
        .iter()
        .enumerate()
        .map(|(i, out)| {
            Proc::spawn(Command::new(BIN).current_dir(dir.path()).args([
                "run",
                path.to_str().unwrap(),
                "--no-tui",
                "--shard",
                &format!("{i}/2"),
                "--start-at",
                &start_at,
                "--out",
                out.to_str().unwrap(),
                "--metrics-listen",
                "127.0.0.1:0",
                "--metrics-linger",
                "10m",
            ]))
        })
        .collect();
    let targets: Vec<String> = shards.iter_mut().map(Proc::metrics_addr).collect();

    let port = free_port();
    let prometheus_addr = format!("127.0.0.1:{port}");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 250ms\n  scrape_timeout: 250ms\n\
             scrape_configs:\n  - job_name: fleetstorm\n    static_configs:\n      - targets: [{}]\n",
            targets
                .iter()
                .map(|t| format!("'{t}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let mut prometheus = Command::new(&prometheus_bin)
        .current_dir(dir.path())
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={prometheus_addr}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let guard = Kill(&mut prometheus);
    let prometheus_log =
        || std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();

    // Ready, and scraping both shards.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !get(&prometheus_addr, "/-/ready").is_ok_and(|(s, _, _)| s == 200) {
        assert!(
            Instant::now() < deadline,
            "Prometheus not ready within 60 s:\n{}",
            prometheus_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    poll(
        &prometheus_addr,
        "sum(up{job=\"fleetstorm\"})",
        |up| up == 2.0,
        Duration::from_secs(60),
    );

    // Every device finished on both shards (provisioned or failed), as Prometheus sees it.
    let sel = format!("{{scenario=\"{name}\"}}");
    let finished = format!(
        "sum(fleetstorm_provisioned_total{sel}) + (sum(fleetstorm_failed_total{sel}) or vector(0))"
    );
    poll(
        &prometheus_addr,
        &finished,
        |n| n == planned as f64,
        Duration::from_secs(120),
    );
    // The last scrape may predate the shard's final write of a gauge; the counters are final.
    let provisioned = scalar(
        &prometheus_addr,
        &format!("sum(fleetstorm_provisioned_total{sel})"),
    )
    .unwrap();
    let failed = scalar(
        &prometheus_addr,
        &format!("sum(fleetstorm_failed_total{sel})"),
    )
    .unwrap();
    let per_shard = query(
        &prometheus_addr,
        &format!("sum by (shard) (fleetstorm_provisioned_total{sel})"),
    )
    .unwrap();
    assert_eq!(per_shard.len(), 2, "{per_shard:?}");

    // The dashboard, on these series.
    for (expr, label) in dashboard_queries(name) {
        let result = query(&prometheus_addr, &expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        assert!(!result.is_empty(), "no data: {expr}");
        match label {
            Some(label) => assert!(
                result.iter().all(|s| s["metric"][&label].is_string()),
                "{expr}: no {label} label: {result:?}"
            ),
            None => assert!(
                result.iter().any(|s| value(s).is_finite()),
                "{expr}: no number: {result:?}"
            ),
        }
    }

    // Both shards still serve (the linger), until a signal ends it with the run's exit code.
    for shard in &mut shards {
        assert!(shard.running(), "exited before the signal");
        shard.terminate();
    }
    for shard in &mut shards {
        let status = shard.exit_within(Duration::from_secs(30));
        assert_eq!(status.code(), Some(0), "{}", shard.seen.join("\n"));
    }
    drop(guard);

    // The merged count: `fleetstorm merge` of the two shard folders.
    let merged = dir.path().join("merged");
    let o = fleetstorm(
        dir.path(),
        &[
            "merge",
            outs[0].to_str().unwrap(),
            outs[1].to_str().unwrap(),
            "--out",
            merged.to_str().unwrap(),
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let merged = summary(&merged);
    let merged_count = |key: &str| merged["devices"][key].as_f64().unwrap();
    assert_eq!(merged_count("planned"), planned as f64);
    assert_eq!(merged_count("started"), planned as f64);
    assert_eq!(provisioned, merged_count("provisioned"));
    assert_eq!(failed, merged_count("failed"));
    assert!(failed > 0.0 && provisioned > 0.0);
    // And shard by shard.
    let summaries: Vec<serde_json::Value> = outs.iter().map(|o| summary(o)).collect();
    for s in &per_shard {
        let shard: usize = s["metric"]["shard"].as_str().unwrap().parse().unwrap();
        assert_eq!(summaries[shard]["shard"]["index"], shard as u64);
        assert_eq!(
            value(s),
            summaries[shard]["devices"]["provisioned"].as_f64().unwrap()
        );
    }
}
