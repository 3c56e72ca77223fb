//! `fleetstorm aws cleanup` that cannot say "gone" when it is not: a loopback server answering
//! every call with a bare 404 (or `UnknownOperationException`) stops it before anything is
//! recorded; the in-process mock's control plane then gets everything removed, the template's
//! policy included; a rerun against another endpoint or Region than the progress file's is
//! refused; set-up errors fail fast with their message; `--log trace` carries no credentials.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common;
use crate::support::{command, fleetstorm, offline, offline_command, text};

/// What the mock's registry holds, over its control plane.
#[derive(Debug, PartialEq)]
pub(crate) struct Registry {
    pub(crate) things: BTreeSet<String>,
    pub(crate) certificates: BTreeSet<String>,
    pub(crate) policies: BTreeSet<String>,
}

pub(crate) async fn registry(control: &str) -> Registry {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(control)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_iot::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    let iot = aws_sdk_iot::Client::new(&config);
    let things = iot.list_things().max_results(250).send().await.unwrap();
    let certs = iot.list_certificates().page_size(250).send().await.unwrap();
    let policies = iot.list_policies().page_size(250).send().await.unwrap();
    Registry {
        things: things
            .things()
            .iter()
            .filter_map(|t| t.thing_name().map(str::to_string))
            .collect(),
        certificates: certs
            .certificates()
            .iter()
            .filter_map(|c| c.certificate_id().map(str::to_string))
            .collect(),
        policies: policies
            .policies()
            .iter()
            .filter_map(|p| p.policy_name().map(str::to_string))
            .collect(),
    }
}

/// A loopback HTTP server that answers every request with `status` and `headers`, counting them.
struct Answering {
    url: String,
    requests: Arc<AtomicUsize>,
}

fn answering(status: &'static str, headers: &'static str, body: &'static str) -> Answering {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match stream.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let length = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let mut rest = vec![0u8; length];
            let _ = stream.read_exact(&mut rest);
            count.fetch_add(1, Ordering::SeqCst);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Answering { url, requests }
}

/// The in-process mock's built-in seed template and claim, as an endpoint scenario.
fn scenario(dir: &Path, mock: &common::TestMock, devices: u32) -> PathBuf {
    let pki = &mock.handle.pki;
    std::fs::write(dir.join("ca.pem"), &pki.root_ca_pem).unwrap();
    std::fs::write(dir.join("claim.pem"), &pki.claim_cert_pem).unwrap();
    std::fs::write(dir.join("claim.key"), &pki.claim_key_pem).unwrap();
    let path = dir.join("scenario.toml");
    std::fs::write(
        &path,
        format!(
            r#"name = "cleanup-it"
seed = 1
[target]
kind = "endpoint"
host = "127.0.0.1"
port = {port}
ca = "ca.pem"
claim_cert = "claim.pem"
claim_key = "claim.key"
[devices]
count = {devices}
client_id = "cl-{{seq:03}}"
template = "FleetProvisioningTemplate"
certificate = "csr"
csr_key = "p256"
[devices.parameters]
SerialNumber = "123456{{seq:06}}"
DeviceName = "cl-thing-{{seq:03}}"
DeviceLocation = "Berlin"
[[schedule]]
executor = "constant-arrival-rate"
rate = 50
duration = "1s"
"#,
            port = mock.endpoint.port
        ),
    )
    .unwrap();
    path
}

fn cleanup(run: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["aws", "cleanup", run.to_str().unwrap()];
    args.extend_from_slice(extra);
    fleetstorm(&args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn cleanup_stops_where_no_control_plane_answers_then_removes_everything_from_the_mock() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mock = rt.block_on(common::start_mock(|_| {}));
    let control = format!("http://{}", mock.handle.control_addr.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let before = rt.block_on(registry(&control));

    let run = dir.path().join("run");
    let o = fleetstorm(&[
        "run",
        scenario(dir.path(), &mock, 6).to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--no-tui",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let during = rt.block_on(registry(&control));
    let new_things: BTreeSet<_> = during.things.difference(&before.things).cloned().collect();
    let new_certs: BTreeSet<_> = during
        .certificates
        .difference(&before.certificates)
        .cloned()
        .collect();
    let new_policies: BTreeSet<_> = during
        .policies
        .difference(&before.policies)
        .cloned()
        .collect();
    assert_eq!(new_things.len(), 6, "{during:?}");
    assert_eq!(new_certs.len(), 6, "{during:?}");
    assert_eq!(
        new_policies.len(),
        1,
        "the seed template's policy: {during:?}"
    );

    // A bare 404, and UnknownOperationException: exit 1 after one call, nothing recorded.
    let progress = run.join("cleanup-progress.csv");
    let unknown_operation = "x-amzn-ErrorType: UnknownOperationException:http://internal.amazon.com/coral/com.amazonaws.iot/\r\ncontent-type: application/json\r\n";
    for server in [
        answering("404 Not Found", "", ""),
        answering("404 Not Found", unknown_operation, "{\"message\":\"\"}"),
    ] {
        let o = cleanup(&run, &["--endpoint-url", &server.url]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let message = stderr(&o);
        assert!(
            message.contains("does not answer as an AWS IoT control plane")
                && message.contains("before changing or recording anything"),
            "{message}"
        );
        assert_eq!(server.requests.load(Ordering::SeqCst), 1, "stops at once");
        assert!(!progress.exists(), "nothing recorded");
    }
    assert_eq!(rt.block_on(registry(&control)), during);

    // The right control plane: everything the run created goes, the template's policy too.
    let o = cleanup(&run, &["--endpoint-url", &control]);
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("of the run's certificates looked up (DescribeCertificate) are here"),
        "{stdout}"
    );
    assert!(
        stdout.contains("certificates 6 deleted, 0 already gone"),
        "{stdout}"
    );
    assert!(
        stdout.contains("things       6 deleted, 0 already gone"),
        "{stdout}"
    );
    assert!(stdout.contains("policies     1 deleted"), "{stdout}");
    assert_eq!(rt.block_on(registry(&control)), before);
    let recorded = std::fs::read_to_string(&progress).unwrap();
    assert!(
        recorded.starts_with(&format!("against,us-east-1,123456789012,{control}\n")),
        "{recorded}"
    );

    // A rerun against another Region or endpoint than the progress file's is refused.
    let o = cleanup(&run, &["--endpoint-url", &control, "--region", "eu-west-1"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("Region us-east-1"), "{}", text(&o));
    assert!(stderr(&o).contains("--restart-progress"), "{}", text(&o));
    let localhost = control.replace("127.0.0.1", "localhost");
    let o = cleanup(&run, &["--endpoint-url", &localhost]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains(&control), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&progress).unwrap(), recorded);

    // Told to start over there: nothing of the run is found, so it wants --yes; then every
    // certificate is "already gone" because the control plane said ResourceNotFoundException.
    let o = cleanup(&run, &["--endpoint-url", &localhost, "--restart-progress"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("not confirmed"), "{}", text(&o));
    let o = cleanup(
        &run,
        &["--endpoint-url", &localhost, "--restart-progress", "--yes"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("certificates 0 deleted, 6 already gone"),
        "{stdout}"
    );
    // DeleteThing of a thing that does not exist succeeds, on AWS as on the mock.
    assert!(
        stdout.contains(
            "things       6 deleted, 0 already gone, 0 kept, 0 skipped (done earlier), 0 failed"
        ),
        "{stdout}"
    );
    assert!(run.join("cleanup-progress.csv.old").exists());
    assert_eq!(rt.block_on(registry(&control)), before);
}

/// A created.csv of two certificates with no ARN (as a run against loopback writes it).
fn small_created_csv(dir: &Path) {
    let mut csv = String::from(
        "run_id,device,attempt,certificate_id,certificate_arn,thing_name,policy_names,time\n",
    );
    for i in 0..2 {
        csv.push_str(&format!(
            "r1,d{i},1,{},,t-{i},,2026-11-30T06:00:00Z\n",
            format!("{i:x}").repeat(64)
        ));
    }
    std::fs::write(dir.join("created.csv"), csv).unwrap();
}

#[test]
fn set_up_errors_fail_within_5_s_with_their_message() {
    let dir = tempfile::tempdir().unwrap();
    small_created_csv(dir.path());
    let run = dir.path().to_str().unwrap();
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let timed = |what: &str, mut c: std::process::Command, code: u8, needles: &[&str]| {
        let start = Instant::now();
        let o = c.output().unwrap();
        let took = start.elapsed();
        assert!(took < Duration::from_secs(5), "{what}: {took:?}");
        assert_eq!(o.status.code(), Some(code.into()), "{what}: {}", text(&o));
        for n in needles {
            assert!(stderr(&o).contains(n), "{what}: {n:?} in {}", text(&o));
        }
        assert!(
            !dir.path().join("cleanup-progress.csv").exists(),
            "{what}: nothing recorded"
        );
    };
    let mut no_credentials = offline_command(&["aws", "cleanup", run, "--endpoint-url", &refused]);
    no_credentials.env("AWS_REGION", "us-east-1");
    timed("no credentials", no_credentials, 2, &["no AWS credentials"]);
    timed(
        "not a url",
        command(&["aws", "cleanup", run, "--endpoint-url", "not a url"]),
        2,
        &["--endpoint-url", "not a URL"],
    );
    timed(
        "refused",
        command(&["aws", "cleanup", run, "--endpoint-url", &refused]),
        1,
        &[
            "before changing or recording anything",
            "Connection refused",
        ],
    );
}

#[test]
fn an_empty_or_header_less_created_csv_is_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().to_str().unwrap();
    std::fs::write(dir.path().join("created.csv"), "").unwrap();
    let o = offline(&["aws", "cleanup", run]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(stderr(&o).contains("created.csv: empty"), "{}", text(&o));
    std::fs::write(
        dir.path().join("created.csv"),
        format!("r1,d0,1,{},,t-0,,2026-11-30T06:00:00Z\n", "a".repeat(64)),
    )
    .unwrap();
    let o = offline(&["aws", "cleanup", run]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        stderr(&o).contains("created.csv: line 1: not a created.csv header"),
        "{}",
        text(&o)
    );
}

#[test]
fn trace_logs_of_an_aws_command_carry_no_credentials_unless_asked_for_by_name() {
    const TOKEN: &str = "SESSIONTOKENthatmustnotbelogged0123456789";
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mock = rt.block_on(common::start_mock(|_| {}));
    let control = format!("http://{}", mock.handle.control_addr.unwrap());
    let dir = tempfile::tempdir().unwrap();
    small_created_csv(dir.path());
    let run = dir.path().to_str().unwrap();
    let traced = |filter: &str| {
        std::fs::remove_file(dir.path().join("cleanup-progress.csv")).ok();
        let o = command(&[
            "--log",
            filter,
            "aws",
            "cleanup",
            run,
            "--endpoint-url",
            &control,
            "--yes",
        ])
        .env("AWS_SESSION_TOKEN", TOKEN)
        .output()
        .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        stderr(&o)
    };
    let log = traced("trace");
    assert!(log.contains("TRACE"), "a trace log: {log}");
    assert!(!log.contains(TOKEN), "the session token is logged");
    assert!(
        !log.to_ascii_lowercase()
            .contains("aws4-hmac-sha256 credential="),
        "a signed Authorization header is logged"
    );
    // Named in the filter, the signer's trace is there again (so the check above can fail).
    let log = traced("info,aws_sigv4=trace");
    assert!(log.contains(TOKEN), "{log}");
}
