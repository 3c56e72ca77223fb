//! Helpers shared by the `aws` integration tests: the binary with dummy or no AWS credentials.

#![allow(dead_code)]

use std::process::{Command, Output};

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
