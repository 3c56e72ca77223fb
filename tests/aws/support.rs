//! Helpers shared by the `aws` integration tests: the binary with dummy or no AWS credentials.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_fleetstorm");

/// `fleetstorm ARGS` with dummy credentials, region us-east-1, no profile files and no
/// instance-metadata lookups: with `--endpoint-url` to loopback nothing leaves the machine.
pub fn command(args: &[&str]) -> Command {
    let mut c = offline_command(args);
    c.env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1");
    c
}

/// `fleetstorm ARGS` with no AWS credentials, region, profile or config at all.
pub fn offline_command(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            c.env_remove(k);
        }
    }
    c.env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    c
}

pub fn fleetstorm(args: &[&str]) -> Output {
    command(args).output().expect("run fleetstorm")
}

pub fn offline(args: &[&str]) -> Output {
    offline_command(args).output().expect("run fleetstorm")
}

/// Exit code, stdout and stderr, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A `fleetstorm mock` process with its control plane, both on ephemeral loopback ports.
pub struct Mock {
    child: Child,
    _stdout: BufReader<std::process::ChildStdout>,
    pub mqtt: std::net::SocketAddr,
    pub control: String,
    pub pki: PathBuf,
    /// The ready lines, from "fleetstorm mock listening on" to "  templates: ...".
    pub ready: Vec<String>,
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first `ADDR` after `key` in `line` (an `IP:PORT`).
fn addr_after(line: &str, key: &str) -> Option<String> {
    let rest = &line[line.find(key)? + key.len()..];
    let addr: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    (!addr.is_empty()).then_some(addr)
}

pub fn start_mock(dir: &Path) -> Mock {
    start_mock_with(dir, &[])
}

/// [`start_mock`] with more `fleetstorm mock` flags (`--empty`).
pub fn start_mock_with(dir: &Path, flags: &[&str]) -> Mock {
    let pki = dir.join("pki");
    let mut args = vec![
        "mock",
        "--listen",
        "127.0.0.1:0",
        "--control",
        "127.0.0.1:0",
        "--keys",
        "p256",
        "--pki",
        pki.to_str().unwrap(),
    ];
    args.extend_from_slice(flags);
    let mut child = command(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    // "fleetstorm mock listening on MQTTADDR control http://CTRLADDR (ca ...)"
    let mut ready = String::new();
    stdout.read_line(&mut ready).unwrap();
    let mqtt = addr_after(&ready, "listening on")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{ready}"));
    let control = addr_after(&ready, "control http://").unwrap_or_else(|| panic!("{ready}"));
    // The ready lines end with "  templates: ...".
    let mut lines = vec![ready];
    while !lines.last().is_some_and(|l| l.starts_with("  templates:")) {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            panic!("the mock's ready lines end early: {lines:?}");
        }
        lines.push(line);
    }
    Mock {
        child,
        _stdout: stdout,
        ready: lines,
        mqtt,
        control: format!("http://{control}"),
        pki,
    }
}
