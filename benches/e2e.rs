//! End-to-end load benchmark: `fleetstorm run` in process (devices + embedded mock on the same
//! 2 cores), printing flows/s, CPU per flow and peak RSS.
//!
//! cargo bench --bench e2e -- [--devices N] [--rate R] [--mode csr|keys] [--in-flight M]
//!
//! Run one size per invocation: peak RSS is the process's high-water mark.

use std::time::Instant;

use fleetstorm::fleet::{self, RunOptions};
use fleetstorm::scenario::Scenario;
use tokio_util::sync::CancellationToken;

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn main() {
    let devices: u64 = arg("--devices", 1000);
    let rate: f64 = arg("--rate", 3000.0);
    let in_flight: u64 = arg("--in-flight", 2000);
    let mode: String = arg("--mode", "csr".to_string());
    fleetstorm::limits::raise_nofile();
    let dir = tempfile::tempdir().expect("tempdir");
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
[target.mock]
keys = "p256"
[devices]
count = {devices}
client_id = "e2e-{{seq:06}}"
certificate = "{mode}"
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
"#
        ),
    )
    .expect("scenario");
    let scenario = Scenario::load(&path, &[]).expect("scenario");
    let rss_before = status_kb("VmRSS:");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cpu0 = cpu_seconds();
    let started = Instant::now();
    let summary = runtime
        .block_on(fleet::run(
            scenario,
            RunOptions::new(dir.path().join("out")),
            CancellationToken::new(),
        ))
        .expect("run");
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let peak = status_kb("VmHWM:");
    let d = &summary.devices;
    println!(
        "e2e: {} devices ({mode}, offered {rate}/s, in-flight cap {in_flight}): {} provisioned, {} failed, {} dropped in {:.2} s",
        devices, d.provisioned, d.failed, d.dropped, wall
    );
    println!(
        "  throughput {:.0} flows/s | CPU {:.0} µs/flow (devices + mock) | peak RSS {:.1} MiB (baseline {:.1} MiB) | total p50 {:.1} ms, p99 {:.1} ms",
        summary.throughput.provisioned_per_s,
        cpu * 1e6 / d.provisioned.max(1) as f64,
        peak as f64 / 1024.0,
        rss_before as f64 / 1024.0,
        summary.stages["total"].latency.p50_ms,
        summary.stages["total"].latency.p99_ms,
    );
}
