//! The devices against a broker written by others: Debian's Mosquitto 2 with mutual TLS
//! (require_certificate, use_identity_as_username) on an ephemeral loopback port, and a small
//! fleet-provisioning responder (tests/mosquitto/responder.py, paho-mqtt) that answers the $aws
//! topics in JSON and CBOR and signs device certificates with the CA Mosquitto trusts. Every
//! device provisions and reconnects with its new certificate, over MQTT 3.1.1 and MQTT 5.
//!
//! Mosquitto and `$` topics: wildcards at the first level do not match them, so the responder
//! subscribes with `$aws` spelled out (`$aws/certificates/create/+`, ...); clients may publish to
//! `$aws/...` (only `$SYS` and `$CONTROL` are Mosquitto's own), and no ACL file is set, so every
//! authenticated client may publish and subscribe anywhere. Unlike AWS, which delivers a
//! response only to the connection that asked, a plain broker delivers it to every subscriber of
//! the shared `…/accepted` topic: devices run one at a time (a closed model of one), or one would
//! adopt another's certificate.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use fleetstorm::pki::{self, KeyAlgorithm, Pki};

const BIN: &str = env!("CARGO_BIN_EXE_fleetstorm");
const READY: Duration = Duration::from_secs(60);

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines of `child`'s stdout or stderr, read on a thread.
fn lines(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Wait for a line containing `want`; the lines seen before it when it does not come.
fn wait_for(rx: &mpsc::Receiver<String>, want: &str) -> Result<(), String> {
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + READY;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(want) => return Ok(()),
            Ok(line) => seen.push(line),
            Err(_) => return Err(seen.join("\n")),
        }
    }
}

struct Broker {
    port: u16,
    pki: PathBuf,
    _mosquitto: Killed,
    _responder: Killed,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Mosquitto with mutual TLS on loopback, and the responder connected to it.
fn start() -> Broker {
    let mosquitto = common::install::command(
        &["mosquitto", "/usr/sbin/mosquitto"],
        "mosquitto",
        "the device test against a broker written by others",
    );
    let bin = common::python_venv(
        "mosquitto-venv",
        "tests/mosquitto/requirements.txt",
        "import paho.mqtt.client, cryptography, cbor2",
    );
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    Pki::init(&pki_dir, &[], KeyAlgorithm::P256).unwrap();
    let file = |name: &str| pki_dir.join(name).display().to_string();
    // A port another process takes between our probe and Mosquitto's bind makes Mosquitto exit:
    // try another.
    for _ in 0..3 {
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                // `user root`: started as root (CI), Mosquitto would switch to the `mosquitto`
                // user, who cannot read the 0600 keys in our temporary directory; as anyone
                // else it keeps running as that user.
                "user root\nper_listener_settings false\npersistence false\nlog_dest stderr\n\
                 log_type all\n\
                 allow_anonymous false\n\
                 listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n\
                 require_certificate true\nuse_identity_as_username true\n",
                file(pki::ROOT_CA_PEM),
                file(pki::SERVER_PEM),
                file(pki::SERVER_KEY),
            ),
        )
        .unwrap();
        let mut child = Command::new(&mosquitto)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = lines(child.stderr.take().unwrap());
        let broker = Killed(child);
        if let Err(seen) = wait_for(&log, "running") {
            eprintln!("mosquitto on port {port} did not start:\n{seen}");
            continue;
        }
        let mut responder = Command::new(bin.join("python"))
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mosquitto/responder.py"))
            .args(["--port", &port.to_string()])
            .args(["--ca", &file(pki::ROOT_CA_PEM)])
            .args(["--ca-key", &file(pki::ROOT_CA_KEY)])
            .args(["--cert", &file(pki::CLAIM_PEM)])
            .args(["--key", &file(pki::CLAIM_KEY)])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = lines(responder.stdout.take().unwrap());
        let responder = Killed(responder);
        if let Err(seen) = wait_for(&out, "ready") {
            panic!("the responder did not get ready:\n{seen}");
        }
        // Keep reading the responder's lines (a full pipe would block it).
        std::thread::spawn(move || for _ in out {});
        std::thread::spawn(move || for _ in log {});
        return Broker {
            port,
            pki: pki_dir,
            _mosquitto: broker,
            _responder: responder,
            _dir: dir,
        };
    }
    panic!("mosquitto did not start on three ports");
}

/// `fleetstorm run` of `count` devices named after `what` against the broker, with `devices`
/// added to `[devices]` (keys, then any `[devices.*]` tables): the summary and devices.csv's
/// rows.
fn run(broker: &Broker, what: &str, count: u32, devices: &str) -> (serde_json::Value, Rows) {
    let dir = tempfile::tempdir().unwrap();
    let pki = |name: &str| broker.pki.join(name).display().to_string();
    let scenario = format!(
        r#"
name = "mosquitto"
[target]
kind = "endpoint"
host = "127.0.0.1"
port = {port}
ca = "{ca}"
claim_cert = "{cert}"
claim_key = "{key}"
[devices]
count = {count}
client_id = "mosq-{what}-{{seq:03}}"
{devices}
[devices.parameters]
DeviceName = "thing-{what}-{{seq:03}}"
# One device in flight at a time: a plain broker delivers the responses on the shared $aws
# topics to every subscriber, where AWS delivers them to the requesting connection only.
[[schedule]]
executor = "ramping-concurrency"
start = 1
stages = [{{ target = 1, duration = "60s" }}]
"#,
        port = broker.port,
        ca = pki(pki::ROOT_CA_PEM),
        cert = pki(pki::CLAIM_PEM),
        key = pki(pki::CLAIM_KEY),
    );
    let path = dir.path().join("s.toml");
    std::fs::write(&path, scenario).unwrap();
    let out = dir.path().join("out");
    let output = Command::new(BIN)
        .arg("run")
        .arg(&path)
        .arg("--no-tui")
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let summary = std::fs::read_to_string(out.join("summary.json")).unwrap_or_else(|e| {
        panic!(
            "no summary ({e}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (
        serde_json::from_str(&summary).unwrap(),
        crate::profiles::device_rows(&out),
    )
}

type Rows = Vec<std::collections::BTreeMap<String, String>>;

fn assert_all_provisioned(summary: &serde_json::Value, what: &str, count: u32) {
    let devices = &summary["devices"];
    assert_eq!(devices["planned"], count, "{what}: {summary}");
    assert_eq!(
        devices["provisioned"], count,
        "{what}: {}",
        summary["failures"]
    );
    // The reconnect with the new certificate is part of every provisioned flow.
    assert_eq!(
        summary["stages"]["connect_device"]["count"], count,
        "{what}"
    );
}

#[test]
fn devices_provision_through_mosquitto_over_mqtt311_and_mqtt5_in_json_and_cbor() {
    let broker = start();
    for (protocol, payload, certificate) in [
        ("mqtt311", "json", "csr"),
        ("mqtt311", "cbor", "keys"),
        ("mqtt5", "json", "keys"),
        ("mqtt5", "cbor", "csr"),
    ] {
        let what = format!("{protocol}-{payload}-{certificate}");
        let devices = format!(
            "certificate = \"{certificate}\"\nprotocol = \"{protocol}\"\npayload = \"{payload}\"\n\
             [devices.timeouts]\nconnect = \"10s\"\nsubscribe = \"10s\"\n\
             create_certificate = \"20s\"\nregister_thing = \"20s\""
        );
        assert_all_provisioned(&run(&broker, &what, 12, &devices).0, &what, 12);
    }
}

/// Every built-in profile against the broker, with its own timeouts, keep-alive, payload format
/// (CBOR for embedded-c-demo), subscription pattern (embedded-c-demo subscribes and
/// unsubscribes around each step) and PUBACK waits (greengrass-fp does not await
/// RegisterThing's), over its client's MQTT version: nothing is slow, so every device
/// provisions on its first attempt.
#[test]
fn every_built_in_profile_provisions_through_mosquitto() {
    const COUNT: u32 = 3;
    let broker = start();
    for name in fleetstorm::device::profile::names() {
        let (protocol, certificate) = crate::profiles::client(name);
        let began = std::time::Instant::now();
        let devices = format!(
            "profile = \"{name}\"\nprotocol = \"{protocol}\"\ncertificate = \"{certificate}\""
        );
        let (summary, rows) = run(&broker, name, COUNT, &devices);
        assert_all_provisioned(&summary, name, COUNT);
        assert!(
            rows.iter().all(|r| r["attempts"] == "1"),
            "{name}: {rows:?}"
        );
        eprintln!("mosquitto {name}: {COUNT} devices in {:?}", began.elapsed());
    }
}
