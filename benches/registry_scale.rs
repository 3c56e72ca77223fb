//! Registry scale benchmark: N devices provisioned in one `fleetstorm run` (in process) against
//! the embedded mock, by default with `registry = "compact"`. Prints flows/s and the process's
//! RSS and peak RSS (VmHWM) when the provisioned count passes N/10, N/2 and N, with bytes per
//! device between checkpoints: flat means the registry's memory is bounded per device.
//!
//! cargo bench --bench registry_scale -- [--devices N] [--rate R] [--registry compact|full]
//!                                       [--in-flight M]
//!
//! The issue's figure: `-- --devices 1000000 --rate 3000` (about six minutes at 3,000/s).
//! Devices use CreateCertificateFromCsr with P-256 keys (the cheapest flow), so the run
//! measures the registry and the runner, not RSA generation.

use std::time::{Duration, Instant};

use clap::Parser;
use fleetstorm::fleet::{self, RunOptions};
use fleetstorm::scenario::Scenario;
use tokio_util::sync::CancellationToken;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "Registry scale: RSS per provisioned device against the embedded mock")]
struct Args {
    /// Devices to provision in the one run.
    #[arg(long, default_value_t = 20_000)]
    devices: u64,
    /// Offered arrival rate, devices per second.
    #[arg(long, default_value_t = 3000.0)]
    rate: f64,
    /// What the mock's registry keeps: compact or full.
    #[arg(long, default_value = "compact")]
    registry: String,
    /// The scenario's max_in_flight: high, so a slow stretch delays devices instead of dropping
    /// them (a dropped device never reaches the registry).
    #[arg(long, default_value_t = 50_000)]
    in_flight: u64,
    /// Ignored: cargo bench passes it.
    #[arg(long, hide = true)]
    bench: bool,
}

/// A field of /proc/self/status in KiB.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

struct Checkpoint {
    provisioned: u64,
    at: Duration,
    rss_kib: u64,
    peak_kib: u64,
}

fn main() {
    let args = Args::parse();
    let dir = tempfile::tempdir().expect("temporary directory");
    let n = args.devices;
    let duration_s = (n as f64 / args.rate).ceil().max(1.0);
    let path = dir.path().join("registry-scale.toml");
    std::fs::write(
        &path,
        format!(
            r#"
name = "registry-scale"
max_in_flight = {in_flight}
[target]
kind = "mock"
[target.mock]
keys = "p256"
key_pool_size = 0
registry = "{registry}"
[devices]
count = {n}
client_id = "scale-{{seq:07}}"
certificate = "csr"
[devices.parameters]
SerialNumber = "123456{{seq:07}}"
DeviceName = "scale-{{seq:07}}"
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
            in_flight = args.in_flight,
            registry = args.registry,
            rate = args.rate,
        ),
    )
    .expect("scenario");
    let scenario = Scenario::load(&path, &[]).expect("scenario");
    let marks = [n / 10, n / 2, n];
    let rss_start = status_kib("VmRSS:");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let (summary, mut checkpoints) = runtime.block_on(async {
        let (tx, mut rx) = tokio::sync::watch::channel(std::sync::Arc::default());
        let mut options = RunOptions::new(dir.path().join("out"));
        options.snapshots = Some(tx);
        // The once-a-second snapshot says how many are provisioned; sample memory as each
        // mark is passed.
        let watcher = tokio::spawn(async move {
            let mut points = Vec::new();
            while rx.changed().await.is_ok() {
                let provisioned = rx.borrow_and_update().provisioned;
                while points.len() < marks.len() && provisioned >= marks[points.len()] {
                    points.push(Checkpoint {
                        provisioned,
                        at: started.elapsed(),
                        rss_kib: status_kib("VmRSS:"),
                        peak_kib: status_kib("VmHWM:"),
                    });
                }
            }
            points
        });
        let summary = fleet::run(scenario, options, CancellationToken::new())
            .await
            .expect("run");
        (summary, watcher.await.expect("watcher"))
    });
    let wall = started.elapsed();
    let d = &summary.devices;
    // A mark the last snapshot did not reach (the run ended between snapshots): after the run.
    if checkpoints.len() < marks.len() && d.provisioned >= n {
        checkpoints.push(Checkpoint {
            provisioned: d.provisioned,
            at: wall,
            rss_kib: status_kib("VmRSS:"),
            peak_kib: status_kib("VmHWM:"),
        });
    }
    println!(
        "registry_scale: {n} devices, registry {}, offered {}/s: {} provisioned, {} failed, {} dropped in {:.1} s: {:.0} flows/s (provisioned_per_s {:.0}); RSS {} MiB before the run",
        args.registry,
        args.rate,
        d.provisioned,
        d.failed,
        d.dropped,
        wall.as_secs_f64(),
        d.provisioned as f64 / wall.as_secs_f64(),
        summary.throughput.provisioned_per_s,
        rss_start / 1024
    );
    let mut previous: Option<&Checkpoint> = None;
    for c in &checkpoints {
        let per_device = match previous {
            Some(p) if c.provisioned > p.provisioned => format!(
                "{:.0} B/device since the last checkpoint",
                (c.peak_kib.saturating_sub(p.peak_kib) * 1024) as f64
                    / (c.provisioned - p.provisioned) as f64
            ),
            _ => format!(
                "{:.0} B/device since the start",
                (c.peak_kib.saturating_sub(rss_start) * 1024) as f64 / c.provisioned.max(1) as f64
            ),
        };
        println!(
            "  at {:>8} provisioned ({:6.1} s): RSS {:6} MiB, peak {:6} MiB, {per_device}",
            c.provisioned,
            c.at.as_secs_f64(),
            c.rss_kib / 1024,
            c.peak_kib / 1024
        );
        previous = Some(c);
    }
    if let Some(mock) = &summary.mock {
        println!(
            "  mock registry at the end: {} things, {} certificates",
            mock.registry.things, mock.registry.certificates
        );
    }
}
