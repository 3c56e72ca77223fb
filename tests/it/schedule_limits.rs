//! Schedules cost memory by devices, not by rate × duration: `validate` and `run` answer absurd
//! schedules at once, under a memory limit, and refuse what no run could offer.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::output_text as text;

const BIN: &str = env!("CARGO_BIN_EXE_fleetstorm");

/// Address space the command may use: plenty for `validate` (it needs well under 128 MiB), far
/// too little for a schedule built arrival by arrival.
const LIMIT_KIB: u64 = 256 * 1024;

fn quickstart() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/quickstart.toml"
    ))
}

/// Run fleetstorm with `args` under the memory limit (`ulimit -v`); its output and how long it
/// took.
fn limited(args: &[&str]) -> (Output, Duration) {
    let begun = Instant::now();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {LIMIT_KIB} && exec \"$0\" \"$@\""))
        .arg(BIN)
        .args(args)
        .output()
        .unwrap();
    (out, begun.elapsed())
}

#[test]
fn validate_refuses_a_rate_of_1e9_for_6h_at_once_in_bounded_memory() {
    let file = quickstart().to_str().unwrap();
    let (out, took) = limited(&[
        "validate",
        file,
        "--set",
        "schedule.0.rate=1e9",
        "--set",
        "schedule.0.duration=6h",
    ]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert!(
        all.contains("schedule[0].rate") && all.contains("at most 1000000/s"),
        "{all}"
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn validate_plans_the_largest_allowed_schedule_in_bounded_memory() {
    let file = quickstart().to_str().unwrap();
    // 1,000,000/s for 6 h is 21,600,000,000 arrivals: 345 GB as a vector of offsets.
    let (out, took) = limited(&[
        "validate",
        file,
        "--set",
        "schedule.0.rate=1e6",
        "--set",
        "schedule.0.duration=6h",
        "--set",
        "devices.count=100000000000",
    ]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("21600000000 arrivals scheduled over 21600.0 s"),
        "{all}"
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
    // A burst of 1e12 for 50 devices: 50 arrivals.
    let (out, took) = limited(&[
        "validate",
        file,
        "--set",
        r#"schedule.0={executor = "burst", count = 1000000000000}"#,
    ]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains(" 50 arrivals scheduled over 0.0 s"), "{all}");
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn a_schedule_longer_than_a_month_is_refused_naming_the_phase() {
    let file = quickstart().to_str().unwrap();
    let (out, _) = limited(&["validate", file, "--set", "schedule.0.duration=1000days"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert!(
        all.contains("schedule[0]: ") && all.contains("31 days"),
        "{all}"
    );
    let (out, _) = limited(&[
        "validate",
        file,
        "--set",
        r#"schedule.0={executor = "step", start_rate = 1, rate_step = 1000, step_duration = "1s", steps = 5000}"#,
    ]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert!(
        all.contains("schedule[0].rate_step: the last step"),
        "{all}"
    );
}

#[test]
fn run_refuses_an_absurd_rate_before_creating_anything() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let file = quickstart().to_str().unwrap();
    let (out, took) = limited(&[
        "run",
        file,
        "--set",
        "schedule.0.rate=1e9",
        "--set",
        "schedule.0.duration=6h",
        "--out",
        results.to_str().unwrap(),
    ]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert!(all.contains("schedule[0].rate"), "{all}");
    assert!(!results.exists());
    assert!(took < Duration::from_secs(1), "{took:?}");
}
