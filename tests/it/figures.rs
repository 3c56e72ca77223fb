//! Honest figures: telemetry latency per publish from its own due time, provisioning
//! throughput over the provisioning window, and a sustainable rate only for runs with rate
//! levels to judge.

use std::path::Path;
use std::time::Duration;

use fleetstorm::fleet::{self, RunOptions};
use fleetstorm::results::Summary;
use fleetstorm::scenario::Scenario;
use tokio_util::sync::CancellationToken;

const BASE: &str = r#"
name = "figures"
seed = 5
[target]
kind = "mock"
[target.mock]
keys = "p256"
[devices]
count = 10
client_id = "f-{seq:03}"
certificate = "csr"
[devices.parameters]
SerialNumber = "123456{seq:06}"
DeviceName = "thing-{seq:03}"
DeviceLocation = "Berlin"
[[schedule]]
executor = "constant-arrival-rate"
rate = 20
duration = "500ms"
"#;

async fn run(dir: &Path, extra: &str) -> Summary {
    let path = dir.join("s.toml");
    std::fs::write(&path, format!("{BASE}{extra}")).unwrap();
    let s = Scenario::load(&path, &[]).unwrap();
    let options = RunOptions {
        drain: Duration::from_secs(5),
        ..RunOptions::new(dir.join("out"))
    };
    let summary = fleet::run(s, options, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(summary.devices.provisioned, 10, "{:?}", summary.failures);
    summary
}

#[tokio::test]
async fn telemetry_latency_and_throughput_leave_out_what_the_devices_did_after_provisioning() {
    let dir = tempfile::tempdir().unwrap();
    // Each device publishes every 100 ms for 1.5 s once provisioned.
    let s = run(
        dir.path(),
        "[devices.after]\naction = \"telemetry\"\nduration = \"1500ms\"\ninterval = \"100ms\"\n",
    )
    .await;
    let telemetry = &s.stages["telemetry"];
    assert!(telemetry.latency.count >= 100, "{telemetry:?}");
    // Timed from each publish's own due time: a publish on a loopback mock takes milliseconds;
    // from the device's intended start the median would be about 750 ms.
    assert!(telemetry.latency.p50_ms < 100.0, "{telemetry:?}");
    assert!(telemetry.latency.p50_ms >= telemetry.service.p50_ms);
    // The provisioning window (about 0.5 s of arrivals) leaves out the 1.5 s of telemetry.
    let t = &s.throughput;
    assert!(t.provisioning_window_s > 0.4, "{t:?}");
    assert!(
        t.provisioning_window_s + 1.4 <= s.duration_s,
        "{t:?} {}",
        s.duration_s
    );
    let window_rate = 10.0 / t.provisioning_window_s;
    assert!((t.provisioned_per_s - window_rate).abs() < 1e-6, "{t:?}");
    assert!(
        (t.provisioned_per_s_whole_run - 10.0 / s.duration_s).abs() < 1e-6,
        "{t:?}"
    );
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("out").join("summary.json")).unwrap(),
    )
    .unwrap();
    for key in [
        "provisioned_per_s",
        "provisioning_window_s",
        "provisioned_per_s_whole_run",
    ] {
        assert!(
            json["throughput"][key].as_f64().is_some(),
            "throughput.{key}"
        );
    }
}

#[tokio::test]
async fn a_plain_run_has_no_sustainable_rate_to_report() {
    let dir = tempfile::tempdir().unwrap();
    let s = run(dir.path(), "").await;
    assert_eq!(s.sustainable_rate_per_s, None);
    let page = fleetstorm::report::regenerate(&dir.path().join("out"), None).unwrap();
    let html = std::fs::read_to_string(page).unwrap();
    assert!(
        !html.contains("sustainable rate"),
        "a card for a run without levels"
    );
    assert!(html.contains("throughput"));
}

/// The run's cost prices what its devices counted: each of the 10 devices connected twice for
/// under a minute, and sent and received what the guard's plan of one device says (the claim
/// connection's CONNECT, SUBSCRIBE, two requests with their responses and PUBACKs; its own
/// CONNECT; 15 telemetry publishes); against the mock it is what the run would cost on AWS.
#[tokio::test]
async fn the_cost_prices_the_connection_minutes_and_messages_the_devices_counted() {
    use fleetstorm::results::cost::{Prices, planned_device};
    let dir = tempfile::tempdir().unwrap();
    let s = run(
        dir.path(),
        "[devices.after]\naction = \"telemetry\"\nduration = \"1500ms\"\ninterval = \"100ms\"\n",
    )
    .await;
    let after = fleetstorm::device::After {
        action: fleetstorm::device::AfterAction::Telemetry,
        duration: Duration::from_millis(1500),
        interval: Duration::from_millis(100),
        ..Default::default()
    };
    let planned = planned_device(false, &after).times(10);
    let c = &s.cost;
    assert_eq!(
        (c.connectivity.quantity, c.messaging.quantity),
        (planned.connection_minutes, planned.messages),
        "{c:?}"
    );
    assert_eq!(
        planned.connection_minutes, 20,
        "two connections of under a minute each"
    );
    let p = Prices::shipped();
    let registry = 10 * p.registry.per_registration.unwrap_or(0);
    assert_eq!(c.registry.quantity, registry);
    let by_hand = 20.0 * p.connectivity.per_million / 1e6
        + planned.messages as f64 * p.messaging.per_million / 1e6
        + registry as f64 * p.registry.per_million / 1e6;
    assert!((c.total - by_hand).abs() < 1e-15, "{c:?}");
    assert_eq!(
        (c.label.as_str(), c.currency.as_str()),
        ("would cost on AWS", "USD")
    );
    let table = fleetstorm::output::render_table(&s);
    assert!(
        table.contains("  cost: $") && table.contains("would cost on AWS"),
        "{table}"
    );
}
