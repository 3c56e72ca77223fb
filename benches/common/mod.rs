//! Shared by the benches: `fleetstorm mock` as a child process, and process figures from /proc.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// User + system CPU seconds of /proc/<which>/stat (`self`, `thread-self` or a pid).
pub fn cpu_seconds(which: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{which}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// `fleetstorm mock` as a child process, killed when dropped.
pub struct MockProcess {
    pub child: Child,
    pub addr: std::net::SocketAddr,
    /// Kept open for the mock's later output.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for MockProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `fleetstorm mock` on 127.0.0.1 (a free port) with `pki_dir` and `keys`, and wait for
/// its ready line.
pub fn start_mock_process(pki_dir: &std::path::Path, keys: &str) -> MockProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
        .args([
            "--log",
            "warn",
            "mock",
            "--listen",
            "127.0.0.1:0",
            "--keys",
            keys,
            "--pki",
        ])
        .arg(pki_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start fleetstorm mock");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("ready line");
    let addr = line
        .strip_prefix("fleetstorm mock listening on ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected ready line: {line:?}"));
    MockProcess {
        child,
        addr,
        _stdout: stdout,
    }
}
