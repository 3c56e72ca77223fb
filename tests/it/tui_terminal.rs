//! The dashboard on a real terminal: `fleetstorm run` inside a detached tmux session (its own
//! server socket), keys sent with `tmux send-keys`, the screen read with `capture-pane`.
//! tmux is a Debian package, installed when missing (tests/common/install.rs).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common;

const BIN: &str = env!("CARGO_BIN_EXE_fleetstorm");

const SCENARIO: &str = r#"
name = "terminal"
[target]
kind = "mock"
[target.mock]
keys = "p256"
[devices]
count = 20000
client_id = "term-{seq:05}"
certificate = "csr"
[devices.parameters]
SerialNumber = "123456{seq:06}"
DeviceName = "term-{seq:05}"
DeviceLocation = "Berlin"
[[schedule]]
executor = "constant-arrival-rate"
rate = 20
duration = "5m"
"#;

struct Tmux {
    bin: PathBuf,
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "fs"]).stdout).into_owned()
    }

    /// Poll the screen (every 100 ms, at most `limit`) until `f` holds.
    fn wait_for(&self, what: &str, limit: Duration, f: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if f(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < limit,
                "timed out waiting for {what}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

fn exit_code(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join("exit")).ok()
}

#[test]
fn q_in_a_real_terminal_stops_the_run_writes_every_file_and_restores_the_screen() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("terminal.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let out = dir.path().join("out");
    let tmux = Tmux {
        bin: common::install::command(
            &["tmux"],
            "tmux",
            "the dashboard is driven in a real terminal",
        ),
        socket: format!("fleetstorm-test-{}", std::process::id()),
    };
    let command = format!(
        "{BIN} run {} --out {}; echo $? > {}",
        scenario.display(),
        out.display(),
        dir.path().join("exit").display()
    );
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "fs",
        "-x",
        "160",
        "-y",
        "50",
        &command,
    ]);
    assert!(started.status.success(), "{started:?}");
    // Keep the pane (and what the program left on it) after it exits.
    tmux.run(&["set-option", "-t", "fs", "remain-on-exit", "on"]);

    let dashboard = tmux.wait_for("the dashboard", Duration::from_secs(60), |s| {
        s.contains("RUNNING") && s.contains("register_thing") && s.contains("p99.9")
    });
    assert!(dashboard.contains("fleetstorm: terminal against embedded mock"));
    // Percentiles update: the cumulative count of the total stage moves between frames.
    let total_count = |s: &str| -> Option<u64> {
        let row = s.lines().find(|l| l.contains("│total "))?;
        row.split('│')
            .nth(2)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let first = tmux.wait_for("a provisioned device", Duration::from_secs(30), |s| {
        total_count(s).is_some_and(|n| n > 0)
    });
    let first = total_count(&first).unwrap();
    tmux.wait_for("the counts to move", Duration::from_secs(30), |s| {
        total_count(s).is_some_and(|n| n > first)
    });

    tmux.run(&["send-keys", "-t", "fs", "q"]);
    let start = Instant::now();
    while exit_code(dir.path()).is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no exit after q; screen:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(exit_code(dir.path()).unwrap().trim(), "130", "interrupted");

    // The dashboard (alternate screen) is gone; the end-of-run table is on the normal screen.
    let after = tmux.screen();
    assert!(
        !after.contains("latency from intended start (ms): last interval"),
        "{after}"
    );
    assert!(after.contains("fleetstorm: terminal against embedded mock"));
    assert!(after.contains("(interrupted)") && after.contains("stage (ms)"));
    assert!(after.contains("report: "), "{after}");
    for file in [
        "summary.json",
        "summary.csv",
        "devices.csv",
        "failures.csv",
        "timeseries.csv",
        "latency.hlog",
        "scenario.toml",
        "report.html",
    ] {
        assert!(out.join(file).is_file(), "{file}");
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["interrupted"], true);
    assert!(summary["devices"]["provisioned"].as_u64().unwrap() > 0);
    // The pane left the alternate screen.
    let mode = tmux.run(&["display-message", "-p", "-t", "fs", "#{alternate_on}"]);
    assert_eq!(String::from_utf8_lossy(&mode.stdout).trim(), "0");
}
