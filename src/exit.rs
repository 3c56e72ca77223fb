//! Exit codes, part of the public interface, and the one map from every error type to its code,
//! whichever command meets it (a mock's TLS error exits the same under `mock` as under `run`).
//!
//! Only the CLI uses this module: error types stay free of exit codes, and a new variant of any
//! of them does not compile until its arm here says its code. [`TABLE`] is the table of
//! docs/reference/exit-codes.md, which a test checks word for word.

use crate::compare::CompareError;
use crate::fleet::RunError;
use crate::http::BindError;
use crate::k8s::{ErrorKind as K8sKind, RenderError};
use crate::merge::MergeError;
use crate::mock::MockError;
use crate::mock::registry::journal::JournalError;
use crate::output::{FolderError, OutputError};
use crate::pki::PkiError;
use crate::report::ReportError;
use crate::results::ResultsError;
use crate::scenario::ScenarioError;

/// Success.
pub const OK: u8 = 0;
/// The run or server failed at runtime; a listen address could not be bound (a taken port).
pub const RUNTIME: u8 = 1;
/// Bad command-line usage (clap's own code).
pub const USAGE: u8 = 2;
/// A run against a non-loopback endpoint was not confirmed (`--yes` / `confirm_remote`);
/// nothing was sent. The same code as usage errors: the command line lacked a flag.
pub const NOT_CONFIRMED: u8 = 2;
/// A scenario, settings, template or registry journal file is invalid, or a results file is
/// missing or malformed.
pub const CONFIG: u8 = 3;
/// A PEM file, key or PKI directory is unusable (including a TLS configuration made from it, and
/// a PKI directory whose registry another running mock holds).
pub const PKI: u8 = 4;
/// The run completed but a threshold failed.
pub const THRESHOLDS: u8 = 5;
/// Refused before the run started because it would overwrite results or identities: `--out`
/// names a folder that is not empty (without `--overwrite`), or the `--save-identities`
/// folder holds an earlier run's identities. Nothing was sent. `new`: its FILE exists.
pub const EXISTS: u8 = 6;
/// Interrupted (Ctrl-C / SIGTERM / SIGHUP) before finishing; results so far were written.
pub const INTERRUPTED: u8 = 130;

/// Each code with what it means, per command where they differ: the table of
/// docs/reference/exit-codes.md.
pub const TABLE: &[(u8, &str)] = &[
    (OK, "success"),
    (
        RUNTIME,
        "runtime failure, or a listen address (`mock --listen`, `--control`, `--metrics-listen` \
         of `run` and `mock`) cannot be bound, e.g. a taken port (the address named); \
         `aws`: an AWS call failed for good (or some cleanup items failed: run it again), the \
         endpoint is not an AWS IoT control plane, access is denied or the connection refused",
    ),
    (
        USAGE,
        "bad command line, or a run against a non-loopback endpoint without `--yes` / \
         `confirm_remote` (nothing was sent); `merge`: the folders do not merge (different \
         scenarios, overlapping shards, missing or incomplete shards without `--partial`, \
         different runs without `--mixed-runs`, a variants folder); `aws`: bad flags \
         (`--endpoint-url` included), no credentials, or a cleanup refused (not confirmed to be \
         the run's account and Region, or a progress file made elsewhere); `mock`: `--control` \
         or `--metrics-listen` on a non-loopback address without `--credentials` or \
         `--insecure-control` (refused before anything is bound)",
    ),
    (
        CONFIG,
        "invalid scenario / settings / template file or a damaged `registry.log`, or an \
         unreadable or malformed results file (the message names the file, line and field); \
         `merge`: a shard's `latency.hlog` holds other counts than its `summary.json`; `aws`: an \
         unreadable or malformed `created.csv` (an empty or header-less one too), \
         `cleanup-progress.csv`, `aws-setup.json` or template file; `mock`: an unreadable or \
         malformed `--credentials` file",
    ),
    (
        PKI,
        "unusable PEM file, key or PKI directory (a TLS configuration made from them included; \
         a PKI directory whose registry another running mock holds); \
         `aws`: an unusable `--root-ca`",
    ),
    (
        THRESHOLDS,
        "the run finished but a threshold failed (`merge`: the merged figures fail one)",
    ),
    (
        EXISTS,
        "refused because it would overwrite: `--out` names a non-empty folder (without \
         `--overwrite`) or the `--save-identities` folder holds an earlier run's identities \
         (nothing was sent, no results folder made); `new`: FILE already exists",
    ),
    (
        INTERRUPTED,
        "interrupted by Ctrl-C, SIGTERM or SIGHUP (in-flight devices were drained, or aborted by \
         a second signal, and every result file was written)",
    ),
];

/// [`TABLE`] as the Markdown table of docs/reference/exit-codes.md.
pub fn markdown() -> String {
    let mut out = String::from("| Exit code | Meaning |\n| --- | --- |\n");
    for (code, meaning) in TABLE {
        out.push_str(&format!("| `{code}` | {meaning} |\n"));
    }
    out
}

/// An error type's exit code.
pub trait Code {
    fn code(&self) -> u8;
}

impl Code for PkiError {
    fn code(&self) -> u8 {
        match self {
            PkiError::Io { .. }
            | PkiError::BadFile { .. }
            | PkiError::Incomplete { .. }
            | PkiError::Generate(_)
            | PkiError::KeyMismatch { .. }
            | PkiError::NoDirectory(_) => PKI,
        }
    }
}

/// rustls refuses the certificates or key of a PKI directory.
impl Code for rustls::Error {
    fn code(&self) -> u8 {
        PKI
    }
}

impl Code for BindError {
    fn code(&self) -> u8 {
        RUNTIME
    }
}

impl Code for JournalError {
    fn code(&self) -> u8 {
        match self {
            JournalError::Io { .. } => RUNTIME,
            JournalError::Corrupt { .. } => CONFIG,
            JournalError::InUse { .. } => PKI,
        }
    }
}

impl Code for MockError {
    fn code(&self) -> u8 {
        match self {
            MockError::Pki(e) => e.code(),
            MockError::Tls(e) => e.code(),
            MockError::Template { .. }
            | MockError::TemplatePolicy { .. }
            | MockError::TemplateName(_)
            | MockError::Config { .. } => CONFIG,
            MockError::Io(_) => RUNTIME,
            MockError::Journal(e) => e.code(),
            MockError::Bind(e) => e.code(),
        }
    }
}

impl Code for RunError {
    fn code(&self) -> u8 {
        match self {
            RunError::Mock(e) => e.code(),
            RunError::Pki(e) => e.code(),
            RunError::Tls(e) => e.code(),
            RunError::Output(e) => e.code(),
            RunError::Other(_) => RUNTIME,
        }
    }
}

impl Code for ScenarioError {
    fn code(&self) -> u8 {
        CONFIG
    }
}

/// Writing a results file failed.
impl Code for OutputError {
    fn code(&self) -> u8 {
        RUNTIME
    }
}

impl Code for FolderError {
    fn code(&self) -> u8 {
        match self {
            FolderError::NotEmpty { .. }
            | FolderError::NotAFolder { .. }
            | FolderError::IdentityExists { .. } => EXISTS,
            FolderError::Io { .. } => RUNTIME,
        }
    }
}

impl Code for ResultsError {
    fn code(&self) -> u8 {
        match self {
            ResultsError::Read { .. }
            | ResultsError::Summary { .. }
            | ResultsError::Hlog { .. }
            | ResultsError::Invalid { .. }
            | ResultsError::NotARun { .. } => CONFIG,
        }
    }
}

impl Code for CompareError {
    fn code(&self) -> u8 {
        match self {
            CompareError::TooFewRuns(_) => CONFIG,
            CompareError::Results(e) => e.code(),
            CompareError::Write { .. } => RUNTIME,
        }
    }
}

impl Code for ReportError {
    fn code(&self) -> u8 {
        match self {
            ReportError::Results(e) => e.code(),
            ReportError::Compare(e) => e.code(),
            ReportError::Chart { .. } | ReportError::Write { .. } => RUNTIME,
        }
    }
}

impl Code for MergeError {
    fn code(&self) -> u8 {
        match self {
            MergeError::Results(e) => e.code(),
            MergeError::Refused(_) => USAGE,
            MergeError::Folder(e) => e.code(),
            MergeError::Output(e) => e.code(),
            // The merged results are written; the page is not.
            MergeError::Report(_) => RUNTIME,
        }
    }
}

impl Code for RenderError {
    fn code(&self) -> u8 {
        match self.kind {
            K8sKind::Usage => USAGE,
            K8sKind::Config => CONFIG,
            K8sKind::NotConfirmed => NOT_CONFIRMED,
            K8sKind::Write => RUNTIME,
        }
    }
}

#[cfg(feature = "aws")]
impl Code for crate::aws::AwsError {
    fn code(&self) -> u8 {
        use crate::aws::AwsError as E;
        match self {
            E::Usage(_) => USAGE,
            E::Input(_) => CONFIG,
            E::Pem(_) => PKI,
            E::Runtime(_) => RUNTIME,
        }
    }
}

#[cfg(test)]
mod tests;
