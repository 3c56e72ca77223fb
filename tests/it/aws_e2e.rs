//! End to end against the mock: `aws setup` over the mock's control plane, `run` over MQTT with
//! what setup created, `aws cleanup` until the registry holds none of the run's things or
//! certificates; a second cleanup does nothing; a cleanup killed halfway resumes and finishes.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::support;

use support::{Mock, command, fleetstorm, start_mock, text};
const ROLE: &str = "arn:aws:iam::123456789012:role/fleetstorm-e2e";

/// Things and certificate IDs in the mock's registry, over its control plane.
fn registry(control: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let held = rt.block_on(crate::aws_cleanup::registry(control));
    (held.things, held.certificates)
}

/// (certificate IDs, thing names) in a run's created.csv.
fn created(run: &Path) -> (BTreeSet<String>, BTreeSet<String>) {
    let records = fleetstorm::aws::created::read(&run.join("created.csv")).unwrap();
    let c = fleetstorm::aws::created::CreatedSet::from_records(&records);
    (c.certificates.into_iter().map(|c| c.id).collect(), c.things)
}

/// A cleanup that found everything done by an earlier one: every count line says 0 removed.
pub fn assert_nothing_removed(o: &Output) {
    let stdout = String::from_utf8_lossy(&o.stdout);
    let counts: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains(" deleted, "))
        .collect();
    assert_eq!(counts.len(), 3, "{}", text(o));
    for line in counts {
        assert!(line.contains(" 0 deleted, 0 already gone"), "{}", text(o));
    }
}

pub(crate) fn run(mock: &Mock, scenario: &Path, out: &Path, devices: u32) {
    let o = fleetstorm(&[
        "run",
        scenario.to_str().unwrap(),
        "--endpoint",
        &mock.mqtt.to_string(),
        "--out",
        out.to_str().unwrap(),
        "--no-tui",
        "--set",
        &format!("devices.count={devices}"),
        "--set",
        "schedule.0.rate=50",
    ]);
    assert!(o.status.success(), "{}", text(&o));
}

/// `fleetstorm aws setup` against the mock's control plane (any role ARN, the mock's CA).
pub(crate) fn setup(mock: &Mock, out: &Path, name: &str) -> Output {
    let ca = mock.pki.join("root-ca.pem");
    fleetstorm(&[
        "aws",
        "setup",
        "--endpoint-url",
        &mock.control,
        "--role-arn",
        ROLE,
        "--root-ca",
        ca.to_str().unwrap(),
        "--name",
        name,
        "--out",
        out.to_str().unwrap(),
    ])
}

#[test]
fn setup_run_cleanup_against_the_mock() {
    let dir = tempfile::tempdir().unwrap();
    let mock = start_mock(dir.path());
    let (things_at_start, certs_at_start) = registry(&mock.control);
    let setup_dir = dir.path().join("setup");
    let first = setup(&mock, &setup_dir, "e2e");
    assert!(first.status.success(), "{}", text(&first));
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        stdout.contains("created template            e2e-template"),
        "{stdout}"
    );
    let second = setup(&mock, &setup_dir, "e2e");
    assert!(second.status.success(), "{}", text(&second));
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(stdout.contains("reused  template"), "{stdout}");
    assert!(stdout.contains("reused  claim certificate"), "{stdout}");
    let scenario = setup_dir.join("scenario.toml");

    // A run provisions over MQTT with the template and claim certificate from the control plane.
    let (things_before, certs_before) = registry(&mock.control);
    let run_dir = dir.path().join("run1");
    run(&mock, &scenario, &run_dir, 12);
    let (run_certs, run_things) = created(&run_dir);
    assert_eq!(run_things.len(), 12, "every device registered a thing");
    let (things, certs) = registry(&mock.control);
    assert!(run_things.is_subset(&things) && run_certs.is_subset(&certs));

    let url = mock.control.as_str();
    let o = fleetstorm(&[
        "aws",
        "cleanup",
        run_dir.to_str().unwrap(),
        "--endpoint-url",
        url,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let (things, certs) = registry(&mock.control);
    assert!(things.is_disjoint(&run_things), "{things:?}");
    assert!(certs.is_disjoint(&run_certs), "{certs:?}");
    assert_eq!(things, things_before);
    assert_eq!(certs, certs_before, "the claim certificate stays");

    // A second cleanup does nothing.
    let o = fleetstorm(&[
        "aws",
        "cleanup",
        run_dir.to_str().unwrap(),
        "--endpoint-url",
        url,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_nothing_removed(&o);

    // A cleanup killed halfway resumes and finishes.
    let run_dir = dir.path().join("run2");
    run(&mock, &scenario, &run_dir, 30);
    let (run_certs, run_things) = created(&run_dir);
    let mut slow = command(&[
        "aws",
        "cleanup",
        run_dir.to_str().unwrap(),
        "--endpoint-url",
        url,
        "--max-tps",
        "10",
        "--concurrency",
        "2",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let progress = run_dir.join("cleanup-progress.csv");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lines = std::fs::read_to_string(&progress).map_or(0, |t| t.lines().count());
        if lines >= 5 {
            break;
        }
        assert!(Instant::now() < deadline, "no progress within 60 s");
        assert!(
            slow.try_wait().unwrap().is_none(),
            "cleanup ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    slow.kill().unwrap();
    slow.wait().unwrap();
    let done_before = std::fs::read_to_string(&progress).unwrap().lines().count();
    assert!(
        done_before < run_certs.len() + run_things.len(),
        "killed halfway"
    );
    let o = fleetstorm(&[
        "aws",
        "cleanup",
        run_dir.to_str().unwrap(),
        "--endpoint-url",
        url,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("skipped (done earlier)"));
    let (things, certs) = registry(&mock.control);
    assert!(things.is_disjoint(&run_things), "{things:?}");
    assert!(certs.is_disjoint(&run_certs), "{certs:?}");

    // Teardown removes what setup created; the run's cleanup never touched it.
    let o = fleetstorm(&["aws", "teardown", "--out", setup_dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(registry(&mock.control), (things_at_start, certs_at_start));
}

/// What runs today without created.csv: setup over REST, a run over MQTT with what setup made,
/// cleanup by thing-name prefix, teardown; the registry ends as it started.
#[test]
fn setup_run_cleanup_by_prefix_and_teardown_against_the_mock() {
    let dir = tempfile::tempdir().unwrap();
    let mock = start_mock(dir.path());
    let start = registry(&mock.control);
    let setup_dir = dir.path().join("setup");
    let o = setup(&mock, &setup_dir, "pfx");
    assert!(o.status.success(), "{}", text(&o));
    let run_dir = dir.path().join("run");
    run(&mock, &setup_dir.join("scenario.toml"), &run_dir, 8);
    let (things, certs) = registry(&mock.control);
    let new_things: BTreeSet<String> = things.difference(&start.0).cloned().collect();
    assert_eq!(new_things.len(), 8, "{things:?}");
    assert!(
        new_things.iter().all(|t| t.starts_with("pfx-")),
        "{new_things:?}"
    );
    // 8 device certificates and the claim certificate.
    assert_eq!(certs.difference(&start.1).count(), 9);

    let url = mock.control.as_str();
    let o = fleetstorm(&["aws", "cleanup", "--prefix", "pfx-", "--endpoint-url", url]);
    assert!(o.status.success(), "{}", text(&o));
    let (things, certs) = registry(&mock.control);
    assert_eq!(things, start.0);
    assert_eq!(
        certs.difference(&start.1).count(),
        1,
        "only the claim certificate is left"
    );

    let o = fleetstorm(&["aws", "teardown", "--out", setup_dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(registry(&mock.control), start);
    assert!(!setup_dir.join("aws-setup.json").exists());
}
