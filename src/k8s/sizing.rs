//! Resource requests of a shard pod, from the scenario and this project's own measured figures
//! (docs/developer/performance.md). Every figure below names where it was measured; what is derived
//! from them is said to be.

use crate::device::{AfterAction, CertificateMode};
use crate::mock_settings::RegistryMode;
use crate::pki::KeyAlgorithm;
use crate::protocol::Format;
use crate::scenario::{Phase, Plan, Target};

/// CPU per CSR flow, devices + embedded mock in one process: 2.00 ms (1.81–2.17),
/// performance.md "End to end: the CSR path", sustained 60 s at 1,000/s (990 flows/s on 2 cores).
const CPU_CSR_EMBEDDED_S: f64 = 2.00e-3;
/// CPU per keys flow with RSA-2048 keys from the mock's pool, devices + embedded mock: 4.55 ms
/// (4.12–4.57), performance.md "The keys path, RSA-2048 from the pool" (438 flows/s on 2 cores).
const CPU_KEYS_RSA_EMBEDDED_S: f64 = 4.55e-3;
/// CPU per keys flow with P-256 keys, mock 1.00–1.05 ms + client 0.85 ms, performance.md "The
/// mock alone" (two processes, added up).
const CPU_KEYS_P256_EMBEDDED_S: f64 = 1.05e-3 + 0.85e-3;
/// Client CPU per CSR flow against a separate endpoint: 1.03 ms, performance.md "The mock alone".
const CPU_CSR_CLIENT_S: f64 = 1.03e-3;
/// Client CPU per keys flow against AWS (which returns RSA-2048 keys): the P-256 keys flow's
/// 0.85 ms (performance.md "The mock alone") plus ~1.4 ms for loading and first using a new RSA key
/// (a handshake with a new RSA key object 2.36–2.42 ms against 1.0 ms with a reused one,
/// performance.md "The keys path"). Derived, not measured as one flow.
const CPU_KEYS_RSA_CLIENT_S: f64 = 0.85e-3 + 1.4e-3;
/// CBOR payloads cost about 13 % more CPU per flow than JSON (performance.md "MQTT 3.1.1 and
/// MQTT 5, JSON and CBOR").
const CBOR_FACTOR: f64 = 1.13;
/// The machine's speed drifts (a handshake calibrates at 440–930 µs from one minute to the next,
/// performance.md "The machine"): requests carry this much headroom over the figures.
const HEADROOM: f64 = 1.25;

/// RSS of a process that has started but holds few devices: peak RSS 62 MiB at 1,000 devices,
/// performance.md "End to end: the CSR path".
const BASE_BYTES: f64 = 64.0 * 1024.0 * 1024.0;
/// Bytes the process keeps per provisioned device with `registry = "compact"` (the embedded
/// mock's registry entry among it): ~1.1 KB (1,082–1,323), performance.md "A million devices".
const PER_DEVICE_COMPACT: f64 = 1_100.0;
/// The same with the default full registry: ~5.4 KB, performance.md "A million devices".
const PER_DEVICE_FULL: f64 = 5_400.0;
/// Per idle connected device: client 19.1 KB (performance.md "Stay connected", mock apart) ...
const PER_CONNECTED_CLIENT: f64 = 19_100.0;
/// ... and 39.1 KB client + mock with the mock in process (same table).
const PER_CONNECTED_EMBEDDED: f64 = 39_100.0;
/// Per device in flight: the 60 s sustained CSR run at an in-flight cap of 2,000 peaked at
/// 235–287 MiB with 60,000 devices provisioned; less the base and 60,000 × 1.1 KB that leaves
/// ~80 KB per device in flight (derived from that peak, an upper bound).
const PER_IN_FLIGHT: f64 = 80_000.0;
/// Peak RSS of `fleetstorm merge` per device merged: 3,104 bytes (2,960 MiB for 1,000,000
/// devices in 25 shard folders, devices.csv and created.csv as a run against the embedded mock
/// writes them), `benches/merge_memory.sh`, performance.md "Merge memory". The merge
/// holds every row of every folder until it writes them sorted.
const MERGE_PER_DEVICE: f64 = 3_104.0;
/// One pod's CPU when the schedule has no rate to size it by (a burst, a closed-model phase):
/// the measured 2-core configuration.
const CAPACITY_CORES: f64 = 2.0;
/// File descriptors a process holds besides its devices' sockets.
const BASE_FILES: u64 = 64;

/// What one shard pod needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Sizing {
    /// Devices of the largest shard (shard 0).
    pub devices_per_pod: u64,
    /// The highest arrival rate one shard is offered, per second (None: a burst or a
    /// closed-model phase, sized to capacity).
    pub peak_rate_per_pod: Option<f64>,
    /// CPU per flow used, seconds.
    pub cpu_per_flow_s: f64,
    /// Devices one shard keeps connected after provisioning (stay, telemetry).
    pub connected_per_pod: u64,
    /// The shard's in-flight cap.
    pub in_flight_per_pod: u64,
    /// CPU request (and limit), millicores.
    pub cpu_millis: u64,
    /// Memory request (and limit), MiB.
    pub memory_mib: u64,
    /// Open files one shard needs at its peak.
    pub open_files: u64,
    /// Results volume size, GiB.
    pub storage_gib: u64,
    /// Memory of the merge Job, MiB.
    pub merge_memory_mib: u64,
    /// Shards needed to keep each pod at or under its measured 2-core rate.
    pub suggested_shards: u64,
}

/// Size a shard pod of `scenario` split `shards` ways.
pub fn size(scenario: &Plan, shards: u64) -> Sizing {
    let shards = shards.max(1);
    let embedded = matches!(scenario.target, Target::Mock { .. });
    let devices = scenario.devices.count;
    let devices_per_pod = devices.div_ceil(shards);
    let peak_rate = peak_rate(scenario);
    let peak_rate_per_pod = peak_rate.map(|r| r / shards as f64);
    let cpu_per_flow_s = cpu_per_flow(scenario);
    let stays = scenario.devices.after.action != AfterAction::Disconnect;
    let connected_per_pod = if stays { devices_per_pod } else { 0 };
    let in_flight_per_pod = (scenario.max_in_flight as u64).div_ceil(shards).max(1);

    let cores = match peak_rate_per_pod {
        Some(rate) => (rate * cpu_per_flow_s * HEADROOM).clamp(0.25, 16.0),
        None => CAPACITY_CORES,
    };
    let cpu_millis = round_up((cores * 1000.0).ceil() as u64, 250);

    let per_device = match &scenario.target {
        Target::Mock { mock, .. } if mock.registry == RegistryMode::Full => PER_DEVICE_FULL,
        _ => PER_DEVICE_COMPACT,
    };
    let per_connected = if embedded {
        PER_CONNECTED_EMBEDDED
    } else {
        PER_CONNECTED_CLIENT
    };
    let bytes = BASE_BYTES
        + per_device * devices_per_pod as f64
        + per_connected * connected_per_pod as f64
        + PER_IN_FLIGHT * in_flight_per_pod.min(devices_per_pod) as f64;
    let memory_mib = round_up((bytes * HEADROOM / 1024.0 / 1024.0).ceil() as u64, 64);

    let sockets = if embedded { 2 } else { 1 };
    let open_files = BASE_FILES + sockets * (connected_per_pod + in_flight_per_pod);

    // devices.csv, created.csv and failures.csv rows (~1 KiB a device, an estimate), twice
    // (shards and merged), plus the histograms, timeseries and report of each folder.
    let results_bytes = devices as f64 * 2048.0 + (shards + 1) as f64 * 64.0 * 1024.0 * 1024.0;
    let storage_gib = ((results_bytes / 1024f64.powi(3)).ceil() as u64).max(1);
    let merge_bytes = (BASE_BYTES + MERGE_PER_DEVICE * devices as f64) * HEADROOM;
    let merge_memory_mib = round_up((merge_bytes / 1024.0 / 1024.0).ceil() as u64, 64);
    let suggested_shards = match peak_rate {
        Some(rate) => ((rate * cpu_per_flow_s * HEADROOM) / CAPACITY_CORES).ceil() as u64,
        None => 1,
    }
    .max(1);
    Sizing {
        devices_per_pod,
        peak_rate_per_pod,
        cpu_per_flow_s,
        connected_per_pod,
        in_flight_per_pod,
        cpu_millis,
        memory_mib,
        open_files,
        storage_gib,
        merge_memory_mib,
        suggested_shards,
    }
}

/// The pods of a run of every `[[variants]]` entry (run one after the other on the same pods):
/// each resource the most any variant needs, the results volume all of them together.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    /// What the pods get: the figures of the variant needing the most CPU (then memory), with
    /// memory, open files, the merge Job's memory and the suggested shard count the largest of
    /// any variant's and the volume the sum of theirs.
    pub pods: Sizing,
    /// Each variant's own sizing, in run order (one unnamed entry without variants).
    pub variants: Vec<(Option<String>, Sizing)>,
}

/// Size the pods of `scenarios` (a scenario's variants, as `Scenario::load_variants` gives
/// them) split `shards` ways; `None` without a scenario.
pub fn size_all(scenarios: &[Plan], shards: u64) -> Option<Fitted> {
    let variants: Vec<(Option<String>, Sizing)> = scenarios
        .iter()
        .map(|s| (s.variant.clone(), size(s, shards)))
        .collect();
    let most = |f: fn(&Sizing) -> u64| variants.iter().map(|(_, s)| f(s)).max().unwrap_or(0);
    let mut pods = variants
        .iter()
        .map(|(_, s)| s)
        .max_by_key(|s| (s.cpu_millis, s.memory_mib))
        .cloned()?;
    pods.memory_mib = most(|s| s.memory_mib);
    pods.open_files = most(|s| s.open_files);
    pods.merge_memory_mib = most(|s| s.merge_memory_mib);
    pods.suggested_shards = most(|s| s.suggested_shards);
    pods.storage_gib = variants
        .iter()
        .map(|(_, s)| s.storage_gib)
        .sum::<u64>()
        .max(1);
    Some(Fitted { pods, variants })
}

fn round_up(v: u64, step: u64) -> u64 {
    v.div_ceil(step).max(1) * step
}

/// CPU per flow for this scenario's target, certificate path and payload.
fn cpu_per_flow(scenario: &Plan) -> f64 {
    let csr = scenario.devices.certificate == CertificateMode::Csr;
    let base = match (&scenario.target, csr) {
        (Target::Mock { .. }, true) => CPU_CSR_EMBEDDED_S,
        (Target::Mock { mock, .. }, false) if mock.keys == KeyAlgorithm::P256 => {
            CPU_KEYS_P256_EMBEDDED_S
        }
        (Target::Mock { .. }, false) => CPU_KEYS_RSA_EMBEDDED_S,
        (Target::Endpoint { .. }, true) => CPU_CSR_CLIENT_S,
        (Target::Endpoint { .. }, false) => CPU_KEYS_RSA_CLIENT_S,
    };
    if scenario.profile.payload == Format::Cbor {
        base * CBOR_FACTOR
    } else {
        base
    }
}

/// The highest arrival rate the schedule offers (None when a burst or a closed-model phase has
/// no rate: those are sized to capacity).
fn peak_rate(scenario: &Plan) -> Option<f64> {
    let mut peak: f64 = 0.0;
    for (_, phase) in scenario.phases() {
        let rate = match *phase {
            Phase::ConstantArrivalRate { rate, .. } => rate,
            Phase::RampingArrivalRate {
                start_rate,
                ref stages,
            } => stages.iter().map(|s| s.target).fold(start_rate, f64::max),
            Phase::Step {
                start_rate,
                rate_step,
                steps,
                ..
            } => start_rate + rate_step * f64::from(steps.saturating_sub(1)),
            Phase::Burst { .. } | Phase::RampingConcurrency { .. } => return None,
        };
        peak = peak.max(rate);
    }
    Some(peak)
}

/// With several variants, the lines saying what each needs and that the pods fit them all
/// (none for a scenario without variants).
pub fn explain_variants(f: &Fitted) -> Vec<String> {
    if f.variants.len() < 2 {
        return Vec::new();
    }
    let mut lines = vec![format!(
        "{} variants run one after the other on the same pods: each pod gets the most any variant needs (below), the volume room for them all.",
        f.variants.len()
    )];
    for (name, s) in &f.variants {
        let rate = match s.peak_rate_per_pod {
            Some(r) => format!("peak {r:.1}/s per shard"),
            None => "burst or closed model".into(),
        };
        lines.push(format!(
            "  variant {}: {} devices per pod, {rate}: CPU {}m, memory {} MiB, open files ~{}, merge {} MiB.",
            name.as_deref().unwrap_or("-"),
            s.devices_per_pod,
            s.cpu_millis,
            s.memory_mib,
            s.open_files,
            s.merge_memory_mib
        ));
    }
    lines
}

/// The comment block the rendered manifests carry: the figures and how they were used.
pub fn explain(s: &Sizing, shards: u64) -> Vec<String> {
    let rate = match s.peak_rate_per_pod {
        Some(r) => format!("peak offered rate {r:.1}/s per shard"),
        None => "a burst or closed-model phase: sized to the measured 2-core capacity".into(),
    };
    let mut lines = vec![
        format!(
            "Sizing per shard pod ({shards} shards): {} devices, {rate}, in-flight cap {}, {} connected after provisioning.",
            s.devices_per_pod, s.in_flight_per_pod, s.connected_per_pod
        ),
        format!(
            "CPU {}m = rate x {:.2} ms CPU per flow x {HEADROOM} headroom (min 250m). Memory {} MiB = ({} MiB base + per device + per connected + per in-flight) x {HEADROOM}.",
            s.cpu_millis,
            s.cpu_per_flow_s * 1e3,
            s.memory_mib,
            BASE_BYTES as u64 / 1024 / 1024
        ),
        "Figures measured on a 2-core x86-64 machine (fleetstorm docs/developer/performance.md): CSR flow 2.00 ms CPU devices + embedded mock".into(),
        "(990 flows/s sustained on 2 cores), 1.03 ms client only; keys flow RSA-2048 4.55 ms embedded; 1.1 KB per provisioned device".into(),
        "(compact registry; 5.4 KB full), 19.1 KB per connected device (39.1 KB with the mock in process); ~80 KB per device in flight (derived).".into(),
        format!(
            "Open files: about {} at the peak; fleetstorm raises its soft limit to the hard limit, which the container runtime sets (Kubernetes cannot).",
            s.open_files
        ),
        format!(
            "Merge Job memory {} MiB = ({} MiB + {} bytes per device merged, measured: benches/merge_memory.sh) x {HEADROOM}.",
            s.merge_memory_mib,
            BASE_BYTES as u64 / 1024 / 1024,
            MERGE_PER_DEVICE as u64
        ),
    ];
    if s.suggested_shards > shards {
        lines.push(format!(
            "NOTE: the peak rate needs about {} shards to stay at or under 2 cores per pod.",
            s.suggested_shards
        ));
    }
    lines
}
