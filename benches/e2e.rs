//! End-to-end load benchmark, devices and the embedded mock in one process on the same cores.
//!
//! Flow mode (default): `fleetstorm run` in process, printing flows/s, CPU per flow and peak RSS
//! beside a calibration of the crypto floor measured in the same run (mutual-TLS P-256
//! handshakes client + server, CSR key + signature; on every core at once, before and after the
//! run), so the achieved/limit ratio holds on a noisy machine.
//!
//! cargo bench --bench e2e -- [--devices N] [--rate R] [--mode csr|keys] [--keys p256|rsa2048]
//!                            [--in-flight M] [--pki DIR] [--tui] [--metrics]
//!                            [--protocol mqtt311|mqtt5] [--payload json|cbor]
//!
//! `--tui` also runs the dashboard's work (snapshot updates and frames on a 200x60 test terminal)
//! and prints its CPU per frame and share of one core, timed on its thread's CPU clock.
//!
//! Stay mode: N devices provision at `--rate` and stay connected; once all are connected the
//! bench prints RSS per connected device. With the mock in process the figure is client + mock;
//! `--mock-process` runs `fleetstorm mock` as a child process and splits client and mock.
//!
//! cargo bench --bench e2e -- --stay --devices N [--rate R] [--mock-process]
//!                            [--protocol mqtt311|mqtt5] [--payload json|cbor]
//!
//! Run one size per invocation: peak RSS is the process's high-water mark.
//!
//! Flags are parsed with clap: an unknown flag or a bad value is an error (`-- --help` lists them).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use fleetstorm::device::{
    self, After, AfterAction, CertificateMode, DeviceSpec, DeviceTls, Endpoint, Timeouts,
};
use fleetstorm::fleet::{self, RunOptions};
use fleetstorm::mock::{self, MockConfig, MockSettings, keypool::KeyPool};
use fleetstorm::pki::{self, KeyAlgorithm, Pki};
use fleetstorm::scenario::Scenario;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

mod common;
use common::{cpu_seconds, start_mock_process};

/// The bench's flags (see the comment at the top); a bad value is an error, not a default.
#[derive(Parser)]
#[command(about = "End-to-end load benchmark: devices and the embedded mock in one process")]
struct Args {
    /// Devices to provision.
    #[arg(long, default_value_t = 1000)]
    devices: u64,
    /// Offered arrival rate, devices per second [default: 3000; 500 with --stay].
    #[arg(long)]
    rate: Option<f64>,
    /// Flow mode: the scenario's max_in_flight.
    #[arg(long, default_value_t = 2000)]
    in_flight: u64,
    /// Flow mode: how devices get their certificate.
    #[arg(long, value_enum, default_value_t = Mode::Csr)]
    mode: Mode,
    /// Flow mode: the mock's key type for CreateKeysAndCertificate (p256 or rsa2048).
    #[arg(long, default_value = "p256")]
    keys: KeyAlgorithm,
    /// Flow mode: PKI directory (kept, so an RSA key pool cached there is reused) [default: a
    /// temporary directory].
    #[arg(long)]
    pki: Option<PathBuf>,
    /// Flow mode: also run the dashboard's work and print its CPU cost.
    #[arg(long)]
    tui: bool,
    /// Flow mode: also serve the Prometheus endpoint (--metrics-listen) and scrape it every
    /// 250 ms, as a Prometheus at that interval would.
    #[arg(long)]
    metrics: bool,
    /// Stay mode: devices stay connected; prints RSS per connected device.
    #[arg(long)]
    stay: bool,
    /// Stay mode: run the mock as a `fleetstorm mock` child process.
    #[arg(long)]
    mock_process: bool,
    /// Both modes: the devices' MQTT version.
    #[arg(long, value_enum, default_value_t = Wire::Mqtt311)]
    protocol: Wire,
    /// Both modes: the provisioning API's payload format.
    #[arg(long, value_enum, default_value_t = Payload::Json)]
    payload: Payload,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Wire {
    Mqtt311,
    Mqtt5,
}

impl Wire {
    fn protocol(self) -> fleetstorm::device::Protocol {
        match self {
            Wire::Mqtt311 => fleetstorm::device::Protocol::Mqtt311,
            Wire::Mqtt5 => fleetstorm::device::Protocol::Mqtt5,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Payload {
    Json,
    Cbor,
}

impl Payload {
    fn format(self) -> fleetstorm::device::Format {
        match self {
            Payload::Json => fleetstorm::device::Format::Json,
            Payload::Cbor => fleetstorm::device::Format::Cbor,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Csr,
    Keys,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Csr => "csr",
            Mode::Keys => "keys",
        }
    }
}

/// Scrapes done by [`scrape_every`], and the bytes of the last.
static SCRAPES: AtomicU64 = AtomicU64::new(0);
static SCRAPE_BYTES: AtomicU64 = AtomicU64::new(0);

/// GET /metrics from `addr` every `interval` (a new connection each time, as Prometheus may).
async fn scrape_every(addr: std::net::SocketAddr, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        scrape(addr).await;
    }
}

async fn scrape(addr: std::net::SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return;
    };
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut body = Vec::new();
    if stream.write_all(request.as_bytes()).await.is_ok()
        && stream.read_to_end(&mut body).await.is_ok()
    {
        SCRAPES.fetch_add(1, Ordering::Relaxed);
        SCRAPE_BYTES.store(body.len() as u64, Ordering::Relaxed);
    }
}

/// (scrapes, bytes of the last), after one more scrape of the final counts.
async fn scraped(server: &fleetstorm::exporter::MetricsServer) -> (u64, u64) {
    scrape(server.addr).await;
    (
        SCRAPES.load(Ordering::Relaxed),
        SCRAPE_BYTES.load(Ordering::Relaxed),
    )
}

/// A `kB` field of /proc/<pid>/status (`pid` may be `self`).
fn status_kb(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The same allocator as the `fleetstorm` binary (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args = Args::parse();
    fleetstorm::limits::raise_nofile();
    if args.stay {
        stay(&args);
    } else {
        flows(&args);
    }
}

/// The crypto floor of one flow on this machine.
#[derive(Clone, Copy)]
struct Calibration {
    /// Mutual-TLS handshake with P-256 identities on both sides, client + server.
    handshake_us: f64,
    csr_us: f64,
    /// The CA parses and checks a CSR and signs a certificate for its key.
    sign_us: f64,
    /// Keys path only: the device loading the key it received and its handshake with it (a new
    /// key each time, as every device's is: aws-lc checks an RSA key and sets up its state at
    /// the first signature), and the CA's signature over its public key (no CSR).
    keys: Option<(f64, f64)>,
}

impl Calibration {
    /// The mean of several calibrations: one per core taken at once, and those before and
    /// after the run (the machine's speed drifts, and the run sits between them).
    fn mean(all: &[Calibration]) -> Calibration {
        let n = all.len().max(1) as f64;
        let avg = |f: &dyn Fn(&Calibration) -> f64| all.iter().map(f).sum::<f64>() / n;
        let key = |i: usize| {
            avg(&|c: &Calibration| c.keys.map_or(0.0, |k| if i == 0 { k.0 } else { k.1 }))
        };
        Calibration {
            handshake_us: avg(&|c| c.handshake_us),
            csr_us: avg(&|c| c.csr_us),
            sign_us: avg(&|c| c.sign_us),
            keys: all
                .iter()
                .all(|c| c.keys.is_some())
                .then(|| (key(0), key(1))),
        }
    }

    /// CSR path: two mutual-TLS handshakes (claim, own), the device's key + CSR, the CA's
    /// signature. Keys path: the claim handshake, the RSA-identity handshake, the signature.
    fn floor_us(&self) -> f64 {
        match self.keys {
            None => 2.0 * self.handshake_us + self.csr_us + self.sign_us,
            Some((own_handshake_us, own_sign_us)) => {
                self.handshake_us + own_handshake_us + own_sign_us
            }
        }
    }

    fn limit_per_s(&self) -> f64 {
        cores() as f64 * 1e6 / self.floor_us()
    }
}

/// CPU time of this thread (nanosecond clock), insensitive to other processes' load.
fn thread_cpu() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// The dashboard's work (take each snapshot, draw `tui::FPS` frames a second on a 200x60
/// terminal), timed on the CPU clock of the thread doing it: (frames, CPU seconds).
fn dashboard(
    mut snapshots: tokio::sync::watch::Receiver<Arc<fleetstorm::live::Snapshot>>,
) -> tokio::task::JoinHandle<(u64, f64)> {
    use ratatui::{Terminal, backend::TestBackend};
    tokio::spawn(async move {
        let mut app = fleetstorm::tui::App::default();
        let mut terminal = Terminal::new(TestBackend::new(200, 60)).expect("terminal");
        let mut tick = tokio::time::interval(Duration::from_secs(1) / fleetstorm::tui::FPS);
        let (mut frames, mut cpu) = (0u64, 0.0f64);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let t0 = thread_cpu();
                    terminal.draw(|f| fleetstorm::tui::render(f, &app)).expect("draw");
                    cpu += thread_cpu() - t0;
                    frames += 1;
                }
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let t0 = thread_cpu();
                    app.update(snapshots.borrow_and_update().clone());
                    cpu += thread_cpu() - t0;
                }
            }
        }
        (frames, cpu)
    })
}

/// Time `n` in-memory mutual-TLS handshakes (client and server, the configurations devices and
/// the mock use), `n` P-256 keys + CSRs, and `n` CA signatures of those CSRs.
/// The mock's server configuration and the devices' server verifier, both validating every
/// chain in full (the devices and the mock cache validated chains, see
/// `fleetstorm::tls::VERIFIED_TTL_S`): the floor is the whole cost.
struct UncachedPeers {
    server: Arc<rustls::ServerConfig>,
    verifier: Arc<rustls::client::WebPkiServerVerifier>,
}

impl UncachedPeers {
    fn new(pki: &Pki) -> UncachedPeers {
        let provider = fleetstorm::tls::provider();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.root_ca_der.clone()).expect("root");
        let roots = Arc::new(roots);
        let client_verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .expect("client verifier");
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(pki.server_chain.clone(), pki.server_key())
            .expect("server config");
        server.send_tls13_tickets = 0;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .expect("server verifier");
        UncachedPeers {
            server: Arc::new(server),
            verifier,
        }
    }

    /// A device's client configuration presenting `identity` (loading its key).
    fn client(
        &self,
        identity: (CertificateDer<'static>, PrivateKeyDer<'static>),
    ) -> Arc<rustls::ClientConfig> {
        let config = rustls::ClientConfig::builder_with_provider(fleetstorm::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(self.verifier.clone())
            .with_client_auth_cert(vec![identity.0], identity.1)
            .expect("client config");
        Arc::new(config)
    }
}

/// [`calibrate`] on every core at once, averaged: the run keeps all cores busy, and on this
/// machine a handshake cost 15–22 % more CPU while the other core worked too than on one thread
/// alone (2 × 9 s of each, 2026-11-29; shared caches and the host's scheduling of the vCPUs).
fn calibrate_all_cores(pki: &Pki, n: usize, keys: Option<KeyAlgorithm>) -> Calibration {
    let each: Vec<Calibration> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..cores())
            .map(|_| s.spawn(|| calibrate(pki, n, keys)))
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("calibration thread"))
            .collect()
    });
    Calibration::mean(&each)
}

fn calibrate(pki: &Pki, n: usize, keys: Option<KeyAlgorithm>) -> Calibration {
    let per_op = |f: &mut dyn FnMut()| {
        f(); // warm caches
        let cpu0 = thread_cpu();
        for _ in 0..n {
            f();
        }
        (thread_cpu() - cpu0) * 1e6 / n as f64
    };
    let claim_key = pki::parse_key(&pki.claim_key_path(), &pki.claim_key_pem).expect("claim key");
    let handshake_us = per_op(&mut handshake(pki, (pki.claim_cert_der.clone(), claim_key)));
    let mut csrs = Vec::with_capacity(n + 1);
    let csr_us = per_op(&mut || {
        let (_, csr) = pki::generate_csr(KeyAlgorithm::P256, "calibration").expect("csr");
        csrs.push(csr);
    });
    let mut next = csrs.into_iter();
    let sign_us = per_op(&mut || {
        let csr = next.next().expect("csr");
        pki.issue_from_csr(&csr).expect("sign");
    });
    let keys = keys.map(|alg| {
        let key = alg.generate().expect("device key");
        let cert = pki
            .issue_device_certificate(&key)
            .expect("device certificate");
        let pem = pki::private_key_pem_like_aws(&key);
        let own_handshake_us = per_op(&mut fresh_identity_handshake(pki, cert.der.into(), pem));
        let own_sign_us = per_op(&mut || {
            pki.issue_device_certificate(&key).expect("sign");
        });
        (own_handshake_us, own_sign_us)
    });
    Calibration {
        handshake_us,
        csr_us,
        sign_us,
        keys,
    }
}

/// One in-memory mutual-TLS handshake per call, the device presenting `identity`.
fn handshake(
    pki: &Pki,
    identity: (CertificateDer<'static>, PrivateKeyDer<'static>),
) -> impl FnMut() {
    let peers = UncachedPeers::new(pki);
    let client = peers.client(identity);
    move || handshake_once(client.clone(), peers.server.clone())
}

/// Per call, what a device with a new key does: load the key from its PEM (a new aws-lc key
/// object: an RSA key is checked, and its Montgomery and blinding state is set up at its first
/// signature), build its own `ClientConfig`, and run one handshake with it.
fn fresh_identity_handshake(
    pki: &Pki,
    cert: CertificateDer<'static>,
    key_pem: String,
) -> impl FnMut() {
    let peers = UncachedPeers::new(pki);
    move || {
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key PEM");
        handshake_once(peers.client((cert.clone(), key)), peers.server.clone());
    }
}

fn handshake_once(client_config: Arc<rustls::ClientConfig>, server: Arc<rustls::ServerConfig>) {
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let client = rustls::ClientConnection::new(client_config, name).expect("client");
    let server = rustls::ServerConnection::new(server).expect("server");
    let (mut c, mut s) = (
        rustls::Connection::from(client),
        rustls::Connection::from(server),
    );
    while c.is_handshaking() || s.is_handshaking() {
        pump(&mut c, &mut s);
        pump(&mut s, &mut c);
    }
}

/// Move every pending TLS record from `from` to `to`.
fn pump(from: &mut rustls::Connection, to: &mut rustls::Connection) {
    let mut wire = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut wire).expect("write_tls");
    }
    let mut rd = &wire[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd).expect("read_tls");
        to.process_new_packets().expect("handshake");
    }
}

fn device_tls(pki: &Pki) -> DeviceTls {
    DeviceTls::new(
        &pki.root_ca_pem,
        &pki.claim_cert_pem,
        &pki.claim_key_pem,
        false,
    )
    .expect("device TLS")
}

fn flows(args: &Args) {
    let (devices, in_flight, key_alg) = (args.devices, args.in_flight, args.keys);
    let rate = args.rate.unwrap_or(3000.0);
    let mode = args.mode.as_str();
    let keys = key_alg.as_str();
    let dir = tempfile::tempdir().expect("tempdir");
    let pki_dir = args.pki.clone().unwrap_or_else(|| dir.path().join("pki"));
    let (pki, _) = Pki::init(&pki_dir, &[], KeyAlgorithm::P256).expect("pki");
    let calibrate_now = || calibrate_all_cores(&pki, 200, (mode == "keys").then_some(key_alg));
    let before = calibrate_now();

    let pool = devices as usize;
    let warm_up = (mode == "keys" && key_alg == KeyAlgorithm::Rsa2048).then(|| {
        // The mock loads the pool cached in its PKI directory; fill it to `pool` keys first.
        let started = Instant::now();
        let cached = pki_dir.join(mock::keypool::POOL_FILE);
        let keypool = KeyPool::new(KeyAlgorithm::Rsa2048, pool, Some(cached));
        let loaded = keypool.stats().pooled;
        assert!(
            keypool.wait_for(pool, Duration::from_secs(3600)),
            "key pool warm-up"
        );
        let cached = keypool.shutdown().expect("cache the key pool");
        (started.elapsed(), loaded, cached)
    });

    let path = dir.path().join("e2e.toml");
    let duration_s = (devices as f64 / rate).ceil().max(1.0);
    std::fs::write(
        &path,
        format!(
            r#"
name = "e2e"
max_in_flight = {in_flight}
[target]
kind = "mock"
pki = "{pki}"
[target.mock]
keys = "{keys}"
key_pool_size = {pool}
[devices]
count = {devices}
client_id = "e2e-{{seq:06}}"
certificate = "{mode}"
protocol = "{protocol}"
payload = "{payload}"
[devices.parameters]
SerialNumber = "123456{{seq:06}}"
DeviceName = "e2e-{{seq:06}}"
DeviceLocation = "Berlin"
[devices.timeouts]
connect = "60s"
subscribe = "60s"
create_certificate = "60s"
register_thing = "60s"
[[schedule]]
executor = "constant-arrival-rate"
rate = {rate}
duration = "{duration_s}s"
"#,
            pki = pki_dir.display(),
            protocol = args.protocol.protocol().as_str(),
            payload = args.payload.format().as_str(),
        ),
    )
    .expect("scenario");
    let scenario = Scenario::load(&path, &[]).expect("scenario");
    let rss_before = status_kb("self", "VmRSS:");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let load_before = loadavg();
    let cpu0 = cpu_seconds("self");
    let started = Instant::now();
    let with_tui = args.tui;
    let with_metrics = args.metrics;
    let (summary, tui) = runtime.block_on(async {
        let mut options = RunOptions::new(dir.path().join("out"));
        let mut tui = None;
        if with_tui {
            let (tx, rx) = tokio::sync::watch::channel(Arc::default());
            options.snapshots = Some(tx);
            tui = Some(dashboard(rx));
        }
        let mut scraper = None;
        if with_metrics {
            let source = fleetstorm::exporter::RunMetrics::new();
            let server = fleetstorm::exporter::serve(([127, 0, 0, 1], 0).into(), source.registry())
                .await
                .expect("metrics endpoint");
            options.metrics = Some(source);
            let task = tokio::spawn(scrape_every(server.addr, Duration::from_millis(250)));
            scraper = Some((server, task));
        }
        let summary = fleet::run(scenario, options, CancellationToken::new())
            .await
            .expect("run");
        if let Some((server, task)) = scraper {
            task.abort();
            let (scrapes, bytes) = scraped(&server).await;
            println!("  metrics: scraped every 250 ms during the run ({scrapes} scrapes; the last {bytes} bytes)");
        }
        let tui = match tui {
            Some(t) => Some(t.await.expect("dashboard")),
            None => None,
        };
        (summary, tui)
    });
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds("self") - cpu0;
    let peak = status_kb("self", "VmHWM:");
    let d = &summary.devices;
    let achieved = summary.throughput.provisioned_per_s;
    // CPU within the run's intervals (timeseries.csv `cpu_percent`): without the embedded
    // mock's start (loading a cached key pool) and stop (writing it back).
    let run_cpu = run_window_cpu_s(&summary.out_dir.join("timeseries.csv"));
    let cpu_per_flow_us = run_cpu * 1e6 / d.provisioned.max(1) as f64;
    println!(
        "e2e: {} devices ({mode}, {}/{}, keys {keys}, offered {rate}/s, in-flight cap {in_flight}): {} provisioned, {} failed, {} dropped in {:.2} s (load average {load_before} before, {} after)",
        devices,
        args.protocol.protocol().as_str(),
        args.payload.format().as_str(),
        d.provisioned,
        d.failed,
        d.dropped,
        wall,
        loadavg()
    );
    println!(
        "  throughput {achieved:.0} flows/s | CPU {cpu_per_flow_us:.0} µs/flow (devices + mock, in the run's intervals; {:.0} µs with start and stop) | peak RSS {:.1} MiB (baseline {:.1} MiB) | total p50 {:.1} ms, p99 {:.1} ms",
        cpu * 1e6 / d.provisioned.max(1) as f64,
        peak as f64 / 1024.0,
        rss_before as f64 / 1024.0,
        summary.stages["total"].latency.p50_ms,
        summary.stages["total"].latency.p99_ms,
    );
    let after = calibrate_now();
    let c = &Calibration::mean(&[before, after]);
    println!(
        "  calibrated handshake before / after the run: {:.0} / {:.0} µs CPU (client + server, every core calibrating at once); the floor below uses the mean",
        before.handshake_us, after.handshake_us
    );
    let floor_parts = match c.keys {
        None => format!(
            "2 × handshake {:.0} µs CPU (client + server), P-256 key + CSR {:.0} µs, CA signature {:.0} µs",
            c.handshake_us, c.csr_us, c.sign_us
        ),
        Some((own_handshake_us, own_sign_us)) => format!(
            "claim handshake {:.0} µs CPU (client + server), new {keys} key loaded + its handshake {own_handshake_us:.0} µs, CA signature {own_sign_us:.0} µs (key from the pool)",
            c.handshake_us
        ),
    };
    println!(
        "  calibration: {floor_parts} -> crypto floor {:.0} µs/flow, limit {:.0} flows/s on {} cores | achieved {:.0} % of the limit, CPU/flow {:.2}× the floor",
        c.floor_us(),
        c.limit_per_s(),
        cores(),
        100.0 * achieved / c.limit_per_s(),
        cpu_per_flow_us / c.floor_us(),
    );
    if let Some(pool) = summary.mock.as_ref().map(|m| m.keys)
        && pool.generated_background > 0
    {
        // The generators run at nice 19 beside the run; their CPU is in the process total.
        let refill_us = pool.background_cpu_s * 1e6 / d.provisioned.max(1) as f64;
        println!(
            "  pool refill during the run (nice 19): {} keys, {:.1} s CPU = {refill_us:.0} µs/flow; without it CPU/flow is {:.0} µs, {:.2}× the floor",
            pool.generated_background,
            pool.background_cpu_s,
            cpu_per_flow_us - refill_us,
            (cpu_per_flow_us - refill_us) / c.floor_us(),
        );
    }
    if let Some((frames, tui_cpu)) = tui {
        println!(
            "  dashboard: {frames} frames in {wall:.1} s, {:.0} µs CPU per frame, {:.2} % of one core ({:.2} % of this run's CPU)",
            tui_cpu * 1e6 / frames.max(1) as f64,
            100.0 * tui_cpu / wall,
            100.0 * tui_cpu / cpu.max(1e-9),
        );
    }
    if let Some((time, loaded, cached)) = warm_up {
        println!(
            "  RSA-2048 pool warm-up: {pool} keys in {:.1} s ({loaded} loaded from the cache, {:.0} keys/s generated); {cached} keys left in the cache after warm-up",
            time.as_secs_f64(),
            (pool - loaded.min(pool)) as f64 / time.as_secs_f64().max(1e-9),
        );
    }
}

/// Σ over the rows of a run's timeseries.csv of `cpu_percent` × the interval's length.
fn run_window_cpu_s(path: &std::path::Path) -> f64 {
    let mut reader = csv::Reader::from_path(path).expect("timeseries.csv");
    let headers = reader.headers().expect("header").clone();
    let col = |name: &str| headers.iter().position(|h| h == name).expect(name);
    let (elapsed, cpu) = (col("elapsed_s"), col("cpu_percent"));
    let mut before = 0.0;
    let mut total = 0.0;
    for row in reader.records() {
        let row = row.expect("row");
        let at: f64 = row[elapsed].parse().expect("elapsed_s");
        let percent: f64 = row[cpu].parse().expect("cpu_percent");
        total += percent / 100.0 * (at - before);
        before = at;
    }
    total
}

fn stay(args: &Args) {
    let devices = args.devices;
    let rate = args.rate.unwrap_or(500.0);
    let separate = args.mock_process;
    let nofile = fleetstorm::limits::raise_nofile();
    // Each connected device holds one socket, and the in-process mock another.
    let sockets = if separate { devices } else { 2 * devices };
    if sockets + 32 > nofile {
        eprintln!(
            "warning: {sockets} sockets needed, open-file limit {nofile}: some devices will fail"
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (pki, _) = Pki::init(dir.path(), &[], KeyAlgorithm::P256).expect("pki");
    let pki = Arc::new(pki);
    let tls = device_tls(&pki);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let shutdown = CancellationToken::new();
    let mut child = None;
    let mut in_process = None;
    let port = if separate {
        let m = start_mock_process(dir.path(), "p256");
        let port = m.addr.port();
        child = Some(m);
        port
    } else {
        let settings = MockSettings {
            keys: KeyAlgorithm::P256,
            ..MockSettings::default()
        };
        let config = MockConfig::new(pki.clone(), settings).expect("mock config");
        let handle = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            mock::start(config, listener, shutdown.clone())
                .await
                .expect("mock")
        });
        let port = handle.addr.port();
        in_process = Some(handle);
        port
    };
    let mock_pid = child.as_ref().map(|c| c.child.id().to_string());
    let mock_rss = || mock_pid.as_deref().map_or(0, |p| status_kb(p, "VmRSS:"));
    let endpoint = Endpoint {
        host: "127.0.0.1".into(),
        port,
    };
    let rss_before = status_kb("self", "VmRSS:");
    let mock_before = mock_rss();
    let connected = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let spec = DeviceSpec {
        client_id: String::new(),
        template: "FleetProvisioningTemplate".into(),
        parameters: BTreeMap::new(),
        mode: CertificateMode::Csr,
        csr_key: KeyAlgorithm::P256,
        protocol: args.protocol.protocol(),
        profile: Arc::new(fleetstorm::device::Profile {
            payload: args.payload.format(),
            timeouts: Timeouts {
                connect: Duration::from_secs(60),
                subscribe: Duration::from_secs(60),
                create_certificate: Duration::from_secs(60),
                register_thing: Duration::from_secs(60),
            },
            ..fleetstorm::device::Profile::generic()
        }),
        classify: Default::default(),
        after: After {
            action: AfterAction::Stay,
            duration: Duration::from_secs(3600),
            ..After::default()
        },
    };
    let handles = device::Handles {
        connected: Some(connected.clone()),
        ..Default::default()
    };
    let load_before = loadavg();
    let cpu0 = cpu_seconds("self");
    let started = Instant::now();
    let devices_stop = CancellationToken::new();
    let scheduler = {
        let (stop, failed) = (devices_stop.clone(), failed.clone());
        runtime.spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            let start = tokio::time::Instant::now();
            for seq in 0..devices {
                tokio::time::sleep_until(start + Duration::from_secs_f64(seq as f64 / rate)).await;
                let mut spec = spec.clone();
                spec.client_id = format!("stay-{seq:06}");
                spec.parameters = BTreeMap::from([
                    ("DeviceName".into(), spec.client_id.clone()),
                    ("SerialNumber".into(), format!("123456{seq:06}")),
                    ("DeviceLocation".into(), "Berlin".into()),
                ]);
                let (endpoint, tls, stop, failed, handles) = (
                    endpoint.clone(),
                    tls.clone(),
                    stop.clone(),
                    failed.clone(),
                    handles.clone(),
                );
                tasks.spawn(async move {
                    tokio::select! {
                        report = device::provision(&endpoint, &tls, &spec, &handles) => {
                            if let Err(f) = report.outcome
                                && failed.fetch_add(1, Ordering::Relaxed) < 5
                            {
                                eprintln!("{} failed: {} ({})", spec.client_id, f.reason.label(), f.detail);
                            }
                        }
                        _ = stop.cancelled() => {}
                    }
                });
            }
            while tasks.join_next().await.is_some() {}
        })
    };
    // Wait until every device is connected with its own certificate (or failed), or progress stops.
    let mut last = (0, Instant::now());
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let (c, f) = (
            connected.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
        );
        if c + f >= devices {
            break;
        }
        if c + f != last.0 {
            last = (c + f, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(60) {
            eprintln!("no progress for 60 s: {c} connected, {f} failed");
            break;
        }
    }
    let ramp = started.elapsed().as_secs_f64();
    let ramp_cpu = cpu_seconds("self") - cpu0;
    // Let the last claim sessions close on both sides before reading the plateau.
    std::thread::sleep(Duration::from_secs(2));
    let n = connected.load(Ordering::Relaxed);
    let rss = status_kb("self", "VmRSS:");
    let mock_plateau = mock_rss();
    let peak = status_kb("self", "VmHWM:");
    let per = |after: u64, before: u64| {
        after.saturating_sub(before) as f64 * 1024.0 / n.max(1) as f64 / 1000.0
    };
    println!(
        "stay: {devices} devices ({}/{}) at {rate}/s, mock {}: {n} connected, {} failed, ramp {ramp:.1} s ({:.0} µs CPU/flow{}) | load average {load_before} before, {} after",
        args.protocol.protocol().as_str(),
        args.payload.format().as_str(),
        if separate {
            "in its own process"
        } else {
            "in process"
        },
        failed.load(Ordering::Relaxed),
        ramp_cpu * 1e6 / n.max(1) as f64,
        if separate {
            ", client only"
        } else {
            ", devices + mock"
        },
        loadavg(),
    );
    if separate {
        println!(
            "  RSS per connected device: client {:.1} KB, mock {:.1} KB | client RSS {:.1} MiB (before {:.1}, peak {:.1}), mock RSS {:.1} MiB (before {:.1})",
            per(rss, rss_before),
            per(mock_plateau, mock_before),
            rss as f64 / 1024.0,
            rss_before as f64 / 1024.0,
            peak as f64 / 1024.0,
            mock_plateau as f64 / 1024.0,
            mock_before as f64 / 1024.0,
        );
    } else {
        println!(
            "  RSS per connected device: {:.1} KB (client + mock in one process) | RSS {:.1} MiB (before {:.1}, peak {:.1})",
            per(rss, rss_before),
            rss as f64 / 1024.0,
            rss_before as f64 / 1024.0,
            peak as f64 / 1024.0,
        );
    }
    devices_stop.cancel();
    let _ = runtime.block_on(scheduler);
    if let Some(handle) = in_process {
        shutdown.cancel();
        runtime.block_on(handle.join());
    }
    drop(child);
}
