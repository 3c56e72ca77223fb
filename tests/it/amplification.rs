//! The amplification figures end to end: `scenarios/profile-compare.toml` as shipped (300
//! devices, a hook answering in 0.6–1.4 s) on the embedded mock, each variant a real run of real
//! devices, then `compare` of the two. The Embedded C demo's devices give up on RegisterThing
//! after 1 s and retry with new certificates while the mock completes the registrations they
//! gave up on; the CRT MQTT 5 devices wait and get one certificate each.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fleetstorm::fleet::{self, RunOptions};
use fleetstorm::output::Summary;
use fleetstorm::scenario::Scenario;
use tokio_util::sync::CancellationToken;

/// Run every variant of the shipped scenario into `dir/<variant>`, in turn, as `fleetstorm
/// run` does.
fn run_variants(dir: &Path) -> Vec<(String, PathBuf, Summary)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/profile-compare.toml");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    Scenario::load_variants(&path, &[])
        .unwrap()
        .into_iter()
        .map(|plan| {
            let name = plan.variant.clone().expect("a variant");
            let out = dir.join(&name);
            let options = RunOptions {
                drain: Duration::from_secs(10),
                ..RunOptions::new(&out)
            };
            let summary = runtime
                .block_on(fleet::run(plan, options, CancellationToken::new()))
                .unwrap();
            (name, out, summary)
        })
        .collect()
}

fn devices_csv(out: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    crate::profiles::device_rows(out)
}

#[test]
fn profile_compare_shows_embedded_c_demos_amplification_and_the_mock_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let runs = run_variants(dir.path());
    let names: Vec<&str> = runs.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(names, ["embedded-c-demo", "crt-mqtt5"]);
    for (name, out, s) in &runs {
        let (c, a, n, m) = (
            &s.certificates,
            &s.attempts,
            &s.connects,
            s.mock.as_ref().expect("the embedded mock's report"),
        );
        // The end table says the figures (the figures this test measured, in its output).
        let table = fleetstorm::output::render_table(s);
        eprintln!("{name}:{table}");
        let line = format!(
            "{} certificates issued ({:.2} per provisioned",
            c.issued, c.per_provisioned
        );
        assert!(table.contains(&line), "{table}");
        assert_eq!(s.devices.started, 300, "{name}");
        assert_eq!(s.devices.provisioned + s.devices.failed, 300, "{name}");
        // The identity: PENDING certificates are the orphaned ones less those the mock
        // registered after their device gave up (its ACTIVE beyond the device-side ones).
        let late = m.certificates_active as i64 - c.registered as i64;
        assert!(late >= 0, "{name}: {m:?}");
        assert_eq!(
            m.certificates_pending as i64,
            c.orphaned as i64 - late,
            "{name}: {c:?} {m:?}"
        );
        // One thing per device the mock registered (a retry registers the same name again).
        let things = m.things as u64;
        assert!(
            things >= s.devices.provisioned && things <= 300,
            "{name}: {m:?}"
        );
        assert_eq!(m.registry_at_start.active_certificates, 1, "the claim");
        // timeseries.csv's per-second columns add up to the device-side totals.
        let ts = fleetstorm::results::Timeseries::read(&out.join("timeseries.csv")).unwrap();
        let total = |col: &str| -> f64 { ts.column(col).unwrap().into_iter().flatten().sum() };
        assert_eq!(total("certificates_issued"), c.issued as f64, "{name}");
        assert_eq!(total("connects"), n.total as f64, "{name}");
        assert_eq!(
            total("retries"),
            (a.total - s.devices.started) as f64,
            "{name}"
        );
        // summary.csv carries the figures.
        let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
        assert!(
            csv.contains(&format!("certificates.issued,{},", c.issued)),
            "{csv}"
        );
    }

    let (_, demo_out, demo) = &runs[0];
    assert!(
        demo.certificates.per_provisioned >= 1.5,
        "embedded-c-demo: {:?}",
        demo.certificates
    );
    assert!(demo.devices.failed > 0, "{:?}", demo.failures);
    assert_eq!(demo.attempts.max, 3);
    let mock = demo.mock.as_ref().unwrap();
    assert!(
        mock.certificates_active as u64 > demo.devices.provisioned,
        "registrations completed after their device gave up: {mock:?}"
    );
    // Devices that gave up: failed after their 3rd attempt, with the last attempt's reason,
    // and a total that includes the two 5 s waits between attempts.
    let failed: Vec<_> = devices_csv(demo_out)
        .into_iter()
        .filter(|r| r["outcome"] == "failed")
        .collect();
    assert_eq!(failed.len() as u64, demo.devices.failed);
    for row in &failed {
        assert_eq!(row["attempts"], "3", "{row:?}");
        assert_eq!(row["reason"], "timeout.register_thing", "{row:?}");
        let total: u64 = row["total_us"].parse().unwrap();
        assert!(total >= 10_000_000, "{row:?}");
    }

    let (_, _, crt) = &runs[1];
    assert_eq!(crt.devices.failed, 0, "{:?}", crt.failures);
    assert_eq!(crt.certificates.per_provisioned, 1.0);
    assert_eq!((crt.certificates.orphaned, crt.attempts.max), (0, 1));
    assert_eq!(crt.connects.max_per_client_id_per_s, 1);

    // compare: the baseline is the demo; the CRT client's figures differ beyond noise.
    let dirs: Vec<PathBuf> = runs.iter().map(|r| r.1.clone()).collect();
    let comparison = fleetstorm::compare::compare(&dirs, 1).unwrap();
    for metric in [
        "certificates.per_provisioned",
        "attempts.mean",
        "connects.per_provisioned",
    ] {
        let row = comparison.row(metric).expect(metric);
        eprintln!(
            "compare {metric}: {:?} significant {:?}",
            row.values, row.significant
        );
        assert_eq!(row.significant[1], Some(true), "{metric}: {row:?}");
    }
    let issued = comparison.row("certificates.issued").unwrap();
    assert_eq!(
        issued.values,
        [
            Some(demo.certificates.issued as f64),
            Some(crt.certificates.issued as f64)
        ]
    );
}
