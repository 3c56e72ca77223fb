//! Pre-provisioning hooks seen from the runner: the mock's hook decisions reach devices as
//! rejected RegisterThing responses with the right failure reason, never as disconnects.

use crate::common;

use std::path::Path;
use std::time::Duration;

use fleetstorm::fleet::{self, RunOptions};
use fleetstorm::scenario::Scenario;
use tokio_util::sync::CancellationToken;

fn run(dir: &Path, hook: &str, extra_devices: &str) -> fleetstorm::output::Summary {
    let path = dir.join("s.toml");
    std::fs::write(
        &path,
        format!(
            r#"
name = "hooks"
max_in_flight = 100
[target]
kind = "mock"
[target.mock]
keys = "p256"
[target.mock.hooks.FleetProvisioningTemplate]
{hook}
[devices]
count = 6
client_id = "h-{{seq:03}}"
certificate = "csr"
[devices.parameters]
SerialNumber = "{{pick:123456=1,999999=1}}{{seq:03}}"
DeviceName = "h-thing-{{seq:03}}"
DeviceLocation = "Berlin"
{extra_devices}
[[schedule]]
executor = "burst"
count = 6
"#
        ),
    )
    .unwrap();
    let s = Scenario::load(&path, &[]).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(fleet::run(
            s,
            RunOptions {
                drain: Duration::from_secs(5),
                ..RunOptions::new(dir.join("out"))
            },
            CancellationToken::new(),
        ))
        .unwrap()
}

fn handler(dir: &Path, body: &str) -> String {
    let path = dir.join("handler.py");
    std::fs::write(&path, body).unwrap();
    format!(
        "kind = \"command\"\ncommand = [\"python3\", \"{}\"]\nworkers = 2",
        path.display()
    )
}

#[test]
fn the_seed_handler_denies_bad_serials_as_hook_denied() {
    let dir = tempfile::tempdir().unwrap();
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/hooks/Provisioning_hook.py");
    let hook = format!(
        "kind = \"command\"\ncommand = [\"python3\", \"{}\"]",
        seed.display()
    );
    let s = run(dir.path(), &hook, "");
    let d = &s.devices;
    assert_eq!(d.provisioned + d.failed, 6);
    assert!(d.provisioned > 0 && d.failed > 0, "{:?}", s.failures);
    assert_eq!(
        s.failures.get("hook_denied").copied(),
        Some(d.failed),
        "{:?}",
        s.failures
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn parameter_overrides_show_in_the_registered_thing() {
    let dir = tempfile::tempdir().unwrap();
    let hook = handler(
        dir.path(),
        "def lambda_handler(event, context):\n    assert event['clientId'] and event['certificatePem'].startswith('-----BEGIN CERTIFICATE')\n    return {'allowProvisioning': True, 'parameterOverrides': {'SerialNumber': 'OVERRIDDEN-' + event['parameters']['SerialNumber']}}\n",
    );
    let settings: fleetstorm::mock::hooks::HookSettings = toml::from_str(&hook).unwrap();
    let m = common::start_mock(|s| {
        s.hooks.insert("FleetProvisioningTemplate".into(), settings);
    })
    .await;
    let spec = fleetstorm::device::DeviceSpec {
        client_id: "override-client".into(),
        template: "FleetProvisioningTemplate".into(),
        parameters: [
            ("DeviceName".to_string(), "override-thing".to_string()),
            ("SerialNumber".to_string(), "123456777".to_string()),
            ("DeviceLocation".to_string(), "Berlin".to_string()),
        ]
        .into(),
        mode: fleetstorm::device::CertificateMode::Csr,
        csr_key: fleetstorm::pki::KeyAlgorithm::P256,
        protocol: fleetstorm::device::Protocol::Mqtt311,
        profile: std::sync::Arc::new(fleetstorm::device::Profile::generic()),
        classify: Default::default(),
        after: Default::default(),
    };
    let report =
        fleetstorm::device::provision(&m.endpoint, &m.tls, &spec, &Default::default()).await;
    assert!(report.outcome.is_ok(), "{:?}", report.outcome.err());
    let thing = m.handle.registry().thing("override-thing").unwrap();
    assert_eq!(thing.attributes["serialNumber"], "OVERRIDDEN-123456777");
}

#[test]
fn an_exception_garbage_output_and_a_slow_handler_are_rejections_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let raising = handler(
        dir.path(),
        "def lambda_handler(event, context):\n    raise RuntimeError('database down')\n",
    );
    let s = run(dir.path(), &raising, "");
    assert_eq!(
        s.failures.get("hook_denied.error").copied(),
        Some(6),
        "{:?}",
        s.failures
    );

    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("garbage.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\ncat > /dev/null\necho 'this is not json'\n",
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let garbage = format!(
        "kind = \"command\"\nmode = \"json-stdio\"\ncommand = [\"{}\"]",
        script.display()
    );
    let s = run(dir.path(), &garbage, "");
    assert_eq!(
        s.failures.get("hook_denied.malformed").copied(),
        Some(6),
        "{:?}",
        s.failures
    );

    let dir = tempfile::tempdir().unwrap();
    let slow = handler(
        dir.path(),
        "import time\ndef lambda_handler(event, context):\n    time.sleep(2)\n    return {'allowProvisioning': True}\n",
    ) + "\ndeadline = \"300ms\"";
    let s = run(dir.path(), &slow, "");
    assert_eq!(
        s.failures.get("hook_denied.timeout").copied(),
        Some(6),
        "{:?}",
        s.failures
    );
    // Rejections, not disconnects: the devices got as far as RegisterThing's answer.
    assert_eq!(s.stages["create_certificate"].latency.count, 6);
}

#[test]
fn an_http_hook_on_loopback_decides() {
    let dir = tempfile::tempdir().unwrap();
    let s = run(
        dir.path(),
        "kind = \"http\"\nurl = \"embedded\"\nprefix = \"123456\"",
        "",
    );
    let d = &s.devices;
    assert!(d.provisioned > 0 && d.failed > 0, "{:?}", s.failures);
    assert_eq!(
        s.failures.get("hook_denied").copied(),
        Some(d.failed),
        "{:?}",
        s.failures
    );
}

#[test]
fn an_http_hook_answers_from_a_loopback_server_started_by_the_test() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    // Answer every request: allow serials starting with 123456, deny the rest.
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                let n = stream.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < end + 4 + len {
                        let n = stream.read(&mut chunk).unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    break Some(buf[end + 4..].to_vec());
                }
            };
            let Some(body) = body else { continue };
            let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert!(
                event["certificatePem"]
                    .as_str()
                    .unwrap()
                    .starts_with("-----BEGIN CERTIFICATE")
            );
            let allow = event["parameters"]["SerialNumber"]
                .as_str()
                .unwrap()
                .starts_with("123456");
            let reply = serde_json::json!({"allowProvisioning": allow}).to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let s = run(dir.path(), &format!("kind = \"http\"\nurl = \"{url}\""), "");
    let d = &s.devices;
    assert!(d.provisioned > 0 && d.failed > 0, "{:?}", s.failures);
    assert_eq!(
        s.failures.get("hook_denied").copied(),
        Some(d.failed),
        "{:?}",
        s.failures
    );
    let hook = &s.mock.as_ref().unwrap().hooks["FleetProvisioningTemplate"];
    assert_eq!(hook.invocations, 6);
    assert_eq!(hook.allowed, d.provisioned);
}
