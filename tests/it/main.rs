//! The integration tests, one module per former `tests/<name>.rs` file, in ONE test binary:
//! each of those files compiled and linked its own binary against the whole library, which made
//! the test build several minutes longer (cold, 2 cores) than one binary holding them all.
//! `cargo test --release --test it run::` runs what `--test run` ran
//! (docs/developer/tests-and-ci.md).
//!
//! The `aws_*` modules drive `fleetstorm aws`, so they need the default `aws` feature.

mod amplification;
mod architecture;
#[cfg(feature = "aws")]
mod aws_account;
#[cfg(feature = "aws")]
mod aws_cleanup;
#[cfg(feature = "aws")]
mod aws_cli;
#[cfg(feature = "aws")]
mod aws_dry_run;
#[cfg(feature = "aws")]
mod aws_e2e;
#[cfg(feature = "aws")]
mod aws_metrics;
#[cfg(feature = "aws")]
mod aws_moto;
#[cfg(feature = "aws")]
mod aws_policies_certs;
#[cfg(feature = "aws")]
mod aws_things;
mod chaos;
mod ci;
mod classify;
mod cli;
#[path = "../common/mod.rs"]
mod common;
mod compare;
mod control_plane;
mod created;
mod docs_links;
mod figures;
mod fuzz_regressions;
mod generated;
mod guard;
mod http_limits;
mod k8s;
mod k8s_mock;
mod merge;
mod mock;
mod mosquitto;
mod mqtt5_mock;
mod mqtt5_run;
mod new;
mod packaging;
mod profiles;
mod prometheus;
mod registry;
mod report;
mod run;
mod run_hooks;
mod run_safety;
mod schedule_limits;
mod schema;
mod sdk_interop;
mod shard;
mod shell;
#[cfg(feature = "aws")]
#[path = "../aws/support.rs"]
mod support;
mod tui;
mod tui_terminal;
mod validate;
