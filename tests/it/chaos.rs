//! Chaos: 1,000 devices against the embedded mock with 10 % dropped connections, dropped
//! responses and stalled TLS handshakes, retries on. Afterwards the registry (read back from
//! the run's journal) is consistent and the runner's counts add up.
//!
//! What "consistent" can mean is fixed by the protocol: a dropped or refused request is never
//! handled (the mock decides before it handles it), so a certificate whose flow broke before
//! RegisterThing stays PENDING_ACTIVATION and goes when its token expires. A flow that breaks
//! *after* RegisterThing (its device's own connection stalls) has an active certificate on
//! the thing already; the retry registers a second one, as AWS would. So: a thing whose device
//! succeeded at its first attempt has exactly one ACTIVE certificate, and no thing has more
//! than its device had attempts.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use fleetstorm::fleet::{self, RunOptions};
use fleetstorm::mock::registry::control::ThingFilter;
use fleetstorm::mock::registry::{CertificateStatus, Registry, RegistryMode};
use fleetstorm::pki::{self, KeyAlgorithm, Pki};
use fleetstorm::scenario::Scenario;
use tokio_util::sync::CancellationToken;

const DEVICES: u64 = 1000;
const TOKEN_TTL: Duration = Duration::from_secs(120);

fn scenario(pki: &Path) -> String {
    format!(
        r#"
name = "chaos"
seed = 11
max_in_flight = 5000
[target]
kind = "mock"
pki = "{pki}"
[target.mock]
keys = "p256"
token_ttl = "{ttl}s"
[target.mock.faults]
seed = 5
tls_stall_rate = 0.1
[target.mock.faults.create_keys]
disconnect_rate = 0.1
drop_response_rate = 0.1
[target.mock.faults.register_thing]
disconnect_rate = 0.1
drop_response_rate = 0.1
[devices]
count = {DEVICES}
client_id = "chaos-{{seq:05}}"
certificate = "keys"
[devices.parameters]
SerialNumber = "123456{{seq:06}}"
DeviceName = "chaos-{{seq:05}}"
DeviceLocation = "Berlin"
[devices.timeouts]
connect = "1s"
subscribe = "1s"
create_certificate = "1s"
register_thing = "1s"
[devices.retry]
max_attempts = 10
base_delay = "50ms"
max_delay = "400ms"
on = ["timeout", "disconnected", "connection_reset", "tls_handshake"]
[[schedule]]
executor = "constant-arrival-rate"
rate = 250
duration = "4s"
"#,
        pki = pki.display(),
        ttl = TOKEN_TTL.as_secs(),
    )
}

#[derive(Debug, serde::Deserialize)]
struct Row {
    thing_name: String,
    outcome: String,
    attempts: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chaotic_run_leaves_a_consistent_registry_and_counts_that_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    let (pki, _) = Pki::init(&pki_dir, &[], KeyAlgorithm::P256).unwrap();
    let claim = pki::certificate_id(pki.claim_cert_der.as_ref());
    let path = dir.path().join("chaos.toml");
    std::fs::write(&path, scenario(&pki_dir)).unwrap();
    let s = Scenario::load(&path, &[]).unwrap();
    let out = dir.path().join("out");
    let started_at = Instant::now();
    let summary = fleet::run(
        s,
        RunOptions {
            drain: Duration::from_secs(20),
            ..RunOptions::new(&out)
        },
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let mock = summary.mock.clone().unwrap();

    // The runner's counts add up, and devices.csv has one row per started device.
    let d = &summary.devices;
    assert_eq!(d.started, DEVICES, "{d:?}");
    assert_eq!(d.started, d.provisioned + d.failed, "{d:?}");
    let rows: Vec<Row> = csv::Reader::from_path(out.join("devices.csv"))
        .unwrap()
        .deserialize()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len() as u64, d.started);
    let ok = rows.iter().filter(|r| r.outcome == "provisioned").count() as u64;
    assert_eq!(ok, d.provisioned);
    // Faults happened, and retries overcame nearly all of them.
    assert!(rows.iter().filter(|r| r.attempts > 1).count() > 100);
    assert!(
        d.provisioned >= DEVICES * 98 / 100,
        "{d:?} {:?}",
        summary.failures
    );

    // The registry, as a restarted mock would see it.
    let registry = Registry::open(&pki_dir, RegistryMode::Full).unwrap();
    let certs = registry.certificates_page(None, true, usize::MAX).items;
    let device_certs: Vec<_> = certs.iter().filter(|c| c.certificate_id != claim).collect();
    let active = device_certs
        .iter()
        .filter(|c| c.status == CertificateStatus::Active)
        .count() as u64;
    let pending = device_certs
        .iter()
        .filter(|c| c.status == CertificateStatus::PendingActivation)
        .count() as u64;
    assert_eq!(
        active + pending,
        device_certs.len() as u64,
        "only active and pending"
    );
    // Every accepted RegisterThing activated one certificate; every other issued one is pending.
    assert_eq!(active, mock.stats.register_thing_accepted);
    assert_eq!(device_certs.len() as u64, mock.stats.create_keys_accepted);
    assert!(pending > 0);

    let attempts: HashMap<&str, &Row> = rows.iter().map(|r| (r.thing_name.as_str(), r)).collect();
    let things = registry
        .things_page(&ThingFilter::default(), None, usize::MAX)
        .items;
    let unnamed_failures = rows
        .iter()
        .filter(|r| r.outcome != "provisioned" && r.thing_name.is_empty())
        .count();
    let mut unnamed_things = 0;
    for thing in &things {
        let mut active_here = 0;
        for id in thing.certificates.iter() {
            let cert = registry.certificate(id).unwrap();
            assert_eq!(
                cert.status,
                CertificateStatus::Active,
                "{}",
                thing.thing_name
            );
            assert_eq!(cert.things.iter().collect::<Vec<_>>(), [&*thing.thing_name]);
            active_here += 1;
        }
        assert!(active_here >= 1, "{}", thing.thing_name);
        let Some(&row) = attempts.get(thing.thing_name.as_str()) else {
            // RegisterThing went through but its answer was lost (a dropped response or a
            // disconnect) on the device's last attempt: it failed without learning its thing's
            // name, so its devices.csv row has none.
            unnamed_things += 1;
            continue;
        };
        assert!(active_here <= row.attempts, "{row:?}: {active_here} active");
        if row.attempts == 1 {
            assert_eq!(active_here, 1, "{row:?}");
        }
    }
    assert!(
        unnamed_things <= unnamed_failures,
        "{unnamed_things} things match no devices.csv row, but only {unnamed_failures} failed devices have no thing name"
    );
    // Every provisioned device has its thing.
    for row in rows.iter().filter(|r| r.outcome == "provisioned") {
        assert!(registry.thing(&row.thing_name).is_some(), "{row:?}");
    }

    // Pending certificates belong to no thing, each holds a live token, and they go with it.
    let tokens = registry.token_expiries();
    assert_eq!(tokens.len() as u64, pending);
    for c in device_certs
        .iter()
        .filter(|c| c.status == CertificateStatus::PendingActivation)
    {
        assert!(
            registry
                .certificate(&c.certificate_id)
                .unwrap()
                .things
                .is_empty()
        );
        assert!(tokens.iter().any(|(id, _)| *id == c.certificate_id));
    }
    let earliest = tokens.iter().map(|(_, at)| *at).min().unwrap();
    let latest = tokens.iter().map(|(_, at)| *at).max().unwrap();
    // Issued during the run, each with the whole TTL (some of it spent since).
    assert!(latest <= Instant::now() + TOKEN_TTL);
    assert!(earliest + started_at.elapsed() + Duration::from_secs(1) >= Instant::now() + TOKEN_TTL);
    assert_eq!(
        registry.expire_tokens(earliest - Duration::from_millis(1)),
        0
    );
    assert_eq!(registry.expire_tokens(latest) as u64, pending);
    let counts = registry.counts();
    assert_eq!(
        (
            counts.pending_certificates as u64,
            counts.active_certificates as u64
        ),
        (0, active + 1)
    );
}
