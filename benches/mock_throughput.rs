//! End-to-end benchmark of the mock: provisioning flows per second over loopback, and the mock's
//! CPU per flow.
//!
//! The mock runs as its own `fleetstorm mock` process so its CPU time can be read from
//! /proc/<pid>/stat apart from the clients', which run here as fleetstorm devices.
//!
//! cargo bench --bench mock_throughput -- [--flows N] [--concurrency C] [--mode csr|keys|both] [--keys p256|rsa2048]
//!
//! Flags are parsed with clap: an unknown flag or a bad value is an error (`-- --help` lists them).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use fleetstorm::device::{self, CertificateMode, DeviceSpec, DeviceTls, Endpoint, Timeouts};
use fleetstorm::pki::{KeyAlgorithm, Pki};

mod common;
use common::{cpu_seconds, start_mock_process};

/// The bench's flags (see the comment at the top); a bad value is an error, not a default.
#[derive(Parser)]
#[command(about = "Provisioning flows per second against a `fleetstorm mock` process")]
struct Args {
    /// Flows per mode.
    #[arg(long, default_value_t = 2000)]
    flows: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Which flows to run.
    #[arg(long = "mode", value_enum, default_value_t = Modes::Both)]
    modes: Modes,
    /// The mock's key type for CreateKeysAndCertificate (p256 or rsa2048).
    #[arg(long, default_value = "p256")]
    keys: KeyAlgorithm,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Modes {
    Csr,
    Keys,
    Both,
}

impl Modes {
    fn list(self) -> Vec<CertificateMode> {
        match self {
            Modes::Csr => vec![CertificateMode::Csr],
            Modes::Keys => vec![CertificateMode::Keys],
            Modes::Both => vec![CertificateMode::Csr, CertificateMode::Keys],
        }
    }
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (pki, _) = Pki::init(dir.path(), &[], KeyAlgorithm::P256).expect("pki");
    let tls = DeviceTls::new(
        &pki.root_ca_pem,
        &pki.claim_cert_pem,
        &pki.claim_key_pem,
        false,
    )
    .expect("tls");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "mock_throughput: {} flows per mode, {} concurrent clients, keys {}, {} cores, client and mock on the same machine",
        args.flows,
        args.concurrency,
        args.keys.as_str(),
        cores
    );
    println!(
        "{:<6} {:>8} {:>10} {:>12} {:>14} {:>14} {:>8}",
        "mode", "flows", "seconds", "flows/s", "mock CPU/flow", "client CPU/flow", "failed"
    );
    for mode in &args.modes.list() {
        let mock = start_mock_process(dir.path(), args.keys.as_str());
        let pid = mock.child.id().to_string();
        let endpoint = Endpoint {
            host: "127.0.0.1".into(),
            port: mock.addr.port(),
        };
        let mock_cpu0 = cpu_seconds(&pid);
        let self_cpu0 = cpu_seconds("self");
        let started = Instant::now();
        let failed = runtime.block_on(run_flows(&endpoint, &tls, *mode, &args));
        let elapsed = started.elapsed().as_secs_f64();
        let mock_cpu = cpu_seconds(&pid) - mock_cpu0;
        let self_cpu = cpu_seconds("self") - self_cpu0;
        let label = match mode {
            CertificateMode::Csr => "csr",
            CertificateMode::Keys => "keys",
        };
        println!(
            "{:<6} {:>8} {:>10.2} {:>12.0} {:>11.3} ms {:>11.3} ms {:>8}",
            label,
            args.flows,
            elapsed,
            args.flows as f64 / elapsed,
            mock_cpu * 1000.0 / args.flows as f64,
            self_cpu * 1000.0 / args.flows as f64,
            failed
        );
    }
}

async fn run_flows(
    endpoint: &Endpoint,
    tls: &DeviceTls,
    mode: CertificateMode,
    args: &Args,
) -> usize {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    let profile = Arc::new(fleetstorm::device::Profile {
        timeouts: Timeouts {
            connect: Duration::from_secs(30),
            ..Timeouts::default()
        },
        ..fleetstorm::device::Profile::generic()
    });
    for _ in 0..args.concurrency {
        let (endpoint, tls, next, failed, profile) = (
            endpoint.clone(),
            tls.clone(),
            next.clone(),
            failed.clone(),
            profile.clone(),
        );
        let flows = args.flows;
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= flows {
                    return;
                }
                let name = format!("bench-{i}-{}", std::process::id());
                let spec = DeviceSpec {
                    client_id: name.clone(),
                    template: "FleetProvisioningTemplate".into(),
                    parameters: BTreeMap::from([
                        ("DeviceName".into(), name),
                        ("SerialNumber".into(), format!("123456{i:06}")),
                        ("DeviceLocation".into(), "Berlin".into()),
                    ]),
                    mode,
                    csr_key: KeyAlgorithm::P256,
                    protocol: fleetstorm::device::Protocol::Mqtt311,
                    profile: profile.clone(),
                    classify: Default::default(),
                    after: Default::default(),
                };
                if let Err(f) =
                    device::provision(&endpoint, &tls, &spec, &device::Handles::default())
                        .await
                        .outcome
                {
                    failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    eprintln!("flow {i} failed: {} ({})", f.reason.label(), f.detail);
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    failed.load(std::sync::atomic::Ordering::Relaxed)
}
