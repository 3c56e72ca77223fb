//! Rejections end to end: failures.csv keeps the raw codes, and `[target.classify]` decides the
//! label (here the embedded mock's serial-prefix hook denies half of the devices).

use std::time::Duration;

use fleetstorm::fleet::{self, RunOptions};
use fleetstorm::scenario::Scenario;
use tokio_util::sync::CancellationToken;

const DENIED_HALF: &str = r#"
seed = 5
[target]
kind = "mock"
[target.mock]
keys = "p256"
[target.mock.hooks.FleetProvisioningTemplate]
kind = "serial-prefix"
prefix = "123456"
[devices]
count = 20
client_id = "c-{run}-{seq:03}"
certificate = "csr"
[devices.parameters]
SerialNumber = "{pick:123456=1,999999=1}{seq:06}"
DeviceName = "c-{run}-{seq:03}-thing"
DeviceLocation = "Berlin"
[[schedule]]
executor = "burst"
count = 20
[[variants]]
name = "defaults"
[[variants]]
name = "mapped"
set = { "target.classify.hook_denied" = [] }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_keep_the_raw_codes_and_the_scenario_decides_the_class() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.toml");
    std::fs::write(&path, DENIED_HALF).unwrap();
    let variants = Scenario::load_variants(&path, &[]).unwrap();
    let run_id = fleetstorm::scenario::new_run_id();
    let mut labels = Vec::new();
    for scenario in variants {
        let out = dir.path().join(scenario.variant.clone().unwrap());
        let options = RunOptions {
            drain: Duration::from_secs(5),
            run_id: run_id.clone(),
            ..RunOptions::new(&out)
        };
        let summary = fleet::run(scenario, options, CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(summary.run_id, run_id);
        assert!(summary.devices.failed > 0 && summary.devices.provisioned > 0);
        labels.push(summary.failures.keys().cloned().collect::<Vec<_>>());

        let mut reader = csv::Reader::from_path(out.join("failures.csv")).unwrap();
        let headers = reader.headers().unwrap().clone();
        assert_eq!(&headers, fleetstorm::results::FailureRow::COLUMNS);
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len() as u64, summary.devices.failed);
        for row in &rows {
            assert_eq!((&row[5], &row[6]), ("403", "AccessDenied"), "{row:?}");
            assert_eq!(&row[7], &row[4], "the message is the detail");
        }
        // Every certificate of the run is in created.csv, denied ones without a thing.
        let created = std::fs::read_to_string(out.join("created.csv")).unwrap();
        let certificates = created
            .lines()
            .skip(1)
            .filter(|l| l.contains(",,,"))
            .count();
        assert_eq!(certificates, 20, "{created}");
        assert!(created.lines().skip(1).all(|l| l.starts_with(&run_id)));
    }
    assert_eq!(labels[0], ["hook_denied"]);
    assert_eq!(labels[1], ["rejected.register_thing.403.AccessDenied"]);
}
