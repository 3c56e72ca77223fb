//! Command-line interface: argument parsing and the thin glue from commands to the library;
//! the two long-running commands' glue is in `run` and `mock_cmd`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::fleet::{self, RunOptions};
use crate::mock::{self, MockConfig, MockSettings};
use crate::pki::{KeyAlgorithm, Pki};
use crate::scenario::{Plan, Scenario};

/// `println!` that ignores a closed stdout (a reader that went away must not kill a server).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod log_filter;
mod mock_cmd;
mod run;
mod tools;

use mock_cmd::run_mock;
use run::run_scenario;
pub use tools::{TEMPLATES, template_text};

/// Exit codes and the map from each error to its code: [`crate::exit`].
pub use crate::exit;
use crate::exit::Code;

#[derive(Debug, Parser)]
#[command(
    name = "fleetstorm",
    version,
    about = "Load tests for AWS IoT Core fleet provisioning by claim"
)]
pub struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `info`, `fleetstorm=debug`. Default: RUST_LOG or `info`.
    #[arg(long, global = true)]
    pub log: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create (or reuse) a PKI directory: root CA, server and claim identities.
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
    },
    /// Run the local AWS IoT Core fleet-provisioning mock endpoint.
    Mock(MockArgs),
    /// Run a scenario: virtual devices on a schedule, measured per stage.
    Run(RunArgs),
    /// Compare run directories against the first (the baseline), flagging differences beyond
    /// run-to-run noise; prints a table and writes compare.csv and, beside it, compare.html.
    Compare {
        /// Run directories; the first is the baseline.
        #[arg(required = true, num_args = 2..)]
        dirs: Vec<PathBuf>,
        /// Where to write the CSV (compare.html goes into the same folder).
        #[arg(long, default_value = "compare.csv")]
        out: PathBuf,
        /// Bootstrap seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Rebuild report.html from a run folder's files; on a variants folder (run folders below
    /// it), the page with every variant overlaid.
    Report {
        /// A run folder (summary.json, timeseries.csv, failures.csv, latency.hlog, scenario.toml)
        /// or a variants results folder.
        dir: PathBuf,
        /// Where to write the page (default: DIR/report.html).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Merge the results folders of a sharded run's shards into one (docs/shards-merge-kubernetes.md).
    Merge(crate::merge::MergeArgs),
    /// The AWS account side: set up and tear down the claim resources, clean up what a run created.
    #[cfg(feature = "aws")]
    Aws {
        #[command(subcommand)]
        command: crate::aws::command::AwsCommand,
    },
    /// Kubernetes: render the manifests of a sharded run.
    K8s {
        #[command(subcommand)]
        command: crate::k8s::K8sCommand,
    },
    /// Check a scenario file without running it.
    Validate {
        scenario: PathBuf,
        /// Override any field: path=value (e.g. devices.count=100, schedule.0.rate=20).
        #[arg(long = "set")]
        sets: Vec<String>,
    },
    /// Write a commented starting scenario, a copy of a shipped one; an existing FILE is not
    /// overwritten (exit 6).
    New {
        file: PathBuf,
        /// The shipped scenario to start from.
        #[arg(long, default_value = "quickstart", value_parser = tools::template_names())]
        from: String,
    },
    /// The built-in device behaviour profiles (`[devices] profile`, docs/profiles.md).
    Profiles {
        #[command(subcommand)]
        command: ProfilesCommand,
    },
    /// Print the JSON Schema of a file kind, for editors (a `#:schema PATH` first line in
    /// Even Better TOML / taplo).
    Schema {
        #[arg(value_enum)]
        kind: crate::schema::SchemaKind,
    },
    /// Print a shell completion script, e.g. `source <(fleetstorm completions bash)`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages, one per command and subcommand, into DIR.
    Man {
        /// Folder to write fleetstorm.1, fleetstorm-run.1, ... into (created when missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    pub scenario: PathBuf,
    /// Target this endpoint instead of the scenario's (HOST or HOST:PORT).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Results directory (default: results/<scenario>-<UTC timestamp>/, or with -2, -3, ...
    /// when taken). An existing DIR must be empty, unless --overwrite.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write into an existing, non-empty --out folder (files of the same name are replaced).
    #[arg(long, requires = "out")]
    pub overwrite: bool,
    /// No live dashboard: one progress line per second.
    #[arg(long)]
    pub no_tui: bool,
    /// Override any scenario field: path=value (repeatable).
    #[arg(long = "set")]
    pub sets: Vec<String>,
    /// Save each provisioned device's certificate and private key (0600) in DIR (DIR/<variant>
    /// for a run of several variants); refused when DIR already holds identities.
    #[arg(long, value_name = "DIR")]
    pub save_identities: Option<PathBuf>,
    /// Time in-flight devices get to finish after Ctrl-C / SIGTERM / SIGHUP (a second signal
    /// aborts them at once).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain: std::time::Duration,
    /// Confirm a run against a non-loopback endpoint (it creates things and certificates there).
    #[arg(long)]
    pub yes: bool,
    /// After each variant, read AWS's own metrics of its window from CloudWatch into
    /// RUN_DIR/cloudwatch.csv and the report (`fleetstorm aws metrics`; the last minutes may
    /// need `fleetstorm aws metrics RUN_DIR` again later).
    #[cfg(feature = "aws")]
    #[arg(long)]
    pub cloudwatch: bool,
    /// Serve live Prometheus metrics (OpenMetrics) at http://ADDR/metrics, e.g. 0.0.0.0:9464;
    /// port 0 picks a free port. The address is printed on stderr.
    #[arg(long, value_name = "ADDR", value_parser = crate::exporter::parse_listen)]
    pub metrics_listen: Option<SocketAddr>,
    /// Keep serving the metrics this long after the run ends, so a last scrape sees the final
    /// counts (a signal ends it early; the results are already written).
    #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration, requires = "metrics_listen")]
    pub metrics_linger: Option<std::time::Duration>,
    /// Run only shard I of N (0-based): the arrivals k with k % N == I, {seq} = k.
    #[arg(long, value_name = "I/N", value_parser = crate::shard::Shard::parse, conflicts_with = "shards")]
    pub shard: Option<crate::shard::Shard>,
    /// Run shard I of N with I from the JOB_COMPLETION_INDEX environment variable (a Kubernetes
    /// Indexed Job's pod index).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub shards: Option<u64>,
    /// Start the schedule at this instant (RFC 3339, e.g. 2026-11-30T12:00:00Z): every shard
    /// given the same one starts together; a late one reports its lag and is not shifted.
    #[arg(long, value_name = "TIME", value_parser = crate::shard::StartAt::parse)]
    pub start_at: Option<crate::shard::StartAt>,
    /// Allow a --start-at more than a day ahead (the run waits until then).
    #[arg(long, requires = "start_at")]
    pub wait_long: bool,
    /// The run ID ({run}); give every shard of one job the same one. Default: random, or for
    /// shards with --start-at, derived from the scenario file and the start time.
    #[arg(long, value_name = "ID", value_parser = parse_run_id)]
    pub run_id: Option<String>,
}

fn parse_run_id(s: &str) -> Result<String, String> {
    if crate::scenario::valid_run_id(s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "--run-id {s:?}: 1 to {} characters of lowercase base32 (a-z, 2-7)",
            crate::scenario::MAX_RUN_ID
        ))
    }
}

#[derive(Debug, Subcommand)]
pub enum ProfilesCommand {
    /// One line per built-in profile: its name and what it reproduces.
    List,
    /// Print a built-in profile as shipped (its values and their sources).
    Show { name: String },
}

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Create root-ca.pem, server.pem/.key, claim.pem/.key in DIR (an existing DIR is reused as is).
    Init {
        dir: PathBuf,
        /// Extra DNS name or IP for the server certificate (localhost, 127.0.0.1 and ::1 are always in it).
        #[arg(long = "hostname")]
        hostnames: Vec<String>,
        /// Key type of the CA, server and claim identities: p256 or rsa2048.
        #[arg(long, default_value = "p256")]
        key_type: KeyAlgorithm,
    },
}

#[derive(Debug, clap::Args)]
pub struct MockArgs {
    /// Address to listen on, e.g. 127.0.0.1:8883 (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8883")]
    pub listen: SocketAddr,
    /// PKI directory (created with `pki init` defaults when missing).
    #[arg(long, default_value = "pki")]
    pub pki: PathBuf,
    /// Extra provisioning template: NAME=FILE (repeatable).
    #[arg(long = "template", value_parser = parse_template_arg)]
    pub templates: Vec<(String, PathBuf)>,
    /// Mock settings file (TOML): region, account, keys, key_pool_size, token_ttl, templates, ...
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Key type CreateKeysAndCertificate returns: rsa2048 (as AWS, pooled) or p256 (fast).
    #[arg(long)]
    pub keys: Option<KeyAlgorithm>,
    /// Address of the AWS IoT control plane (REST API over plain HTTP; SigV4 checked with
    /// `--credentials`), e.g. 127.0.0.1:8443; port 0 picks a free port. Printed in the ready
    /// line. A non-loopback address needs `--credentials` (or `--insecure-control`).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub control: SocketAddr,
    /// AWS shared credentials file (`[profile]`, `aws_access_key_id`, `aws_secret_access_key`):
    /// the control plane accepts only requests SigV4-signed with one of its keys.
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
    /// Serve the control plane (and `--metrics-listen`) on a non-loopback address without
    /// `--credentials`: anyone who reaches it can create certificates signed by the mock's CA.
    #[arg(long)]
    pub insecure_control: bool,
    /// Serve the mock's counters as Prometheus metrics (OpenMetrics) at http://ADDR/metrics;
    /// port 0 picks a free port. Printed in the ready lines.
    #[arg(long, value_name = "ADDR", value_parser = crate::exporter::parse_listen)]
    pub metrics_listen: Option<SocketAddr>,
    /// Start like a fresh AWS account: no seed template, no policy, the PKI's claim certificate
    /// not registered (create them over the control plane, as on AWS). Without it the mock
    /// preloads them, and its ready lines name them.
    #[arg(long)]
    pub empty: bool,
}

fn parse_template_arg(s: &str) -> Result<(String, PathBuf), String> {
    let (name, file) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=FILE, got {s:?}"))?;
    if !crate::protocol::valid_template_name(name) {
        return Err(format!(
            "invalid template name {name:?} (1-36 characters of [0-9A-Za-z_-])"
        ));
    }
    Ok((name.to_string(), PathBuf::from(file)))
}

/// An error with its exit code: from an error type through [`crate::exit`]'s map, or for a
/// message of the CLI's own (a bad flag value) with the code its constructor names.
#[derive(Debug)]
pub struct CommandFailure {
    pub code: u8,
    pub message: String,
}

impl CommandFailure {
    fn new(code: u8, message: impl std::fmt::Display) -> Self {
        CommandFailure {
            code,
            message: message.to_string(),
        }
    }

    /// A flag value the command cannot use (exit 2).
    pub fn usage(message: impl std::fmt::Display) -> Self {
        CommandFailure::new(exit::USAGE, message)
    }

    /// Something that failed while the command ran (exit 1).
    pub fn runtime(message: impl std::fmt::Display) -> Self {
        CommandFailure::new(exit::RUNTIME, message)
    }
}

impl<E: Code + std::fmt::Display> From<E> for CommandFailure {
    fn from(e: E) -> Self {
        CommandFailure::new(e.code(), e)
    }
}

pub fn main(cli: Cli) -> ExitCode {
    // A run's embedded mock would log every request; keep the terminal for the run's own output.
    let default_filter = match cli.command {
        Command::Run(_) => "warn",
        _ => "info",
    };
    init_tracing(cli.log.as_deref(), default_filter);
    let result = match cli.command {
        Command::Pki {
            command:
                PkiCommand::Init {
                    dir,
                    hostnames,
                    key_type,
                },
        } => pki_init(&dir, &hostnames, key_type),
        Command::Mock(args) => runtime().and_then(|rt| rt.block_on(run_mock(args))),
        Command::Run(args) => runtime().and_then(|rt| rt.block_on(run_scenario(args))),
        Command::Validate { scenario, sets } => validate(&scenario, &sets),
        Command::New { file, from } => tools::new(&file, &from),
        Command::Profiles { command } => tools::profiles(command),
        Command::Schema { kind } => tools::schema(kind),
        Command::Completions { shell } => tools::completions(shell),
        Command::Man { out } => tools::man(&out),
        Command::Compare { dirs, out, seed } => compare_runs(&dirs, &out, seed),
        Command::Report { dir, out } => report(&dir, out.as_deref()),
        Command::Merge(args) => merge_shards(&args),
        Command::K8s { command } => crate::k8s::run(command)
            .map(|()| exit::OK)
            .map_err(CommandFailure::from),
        #[cfg(feature = "aws")]
        Command::Aws { command } => runtime().and_then(|rt| {
            rt.block_on(crate::aws::command::run(command))
                .map_err(CommandFailure::from)
        }),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("fleetstorm: error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

fn init_tracing(filter: Option<&str>, default: &str) {
    use tracing_subscriber::EnvFilter;
    let spec = match filter {
        Some(f) => f.to_string(),
        None => std::env::var(EnvFilter::DEFAULT_ENV)
            .ok()
            .filter(|s| EnvFilter::try_new(s).is_ok())
            .unwrap_or_else(|| default.to_string()),
    };
    let filter = EnvFilter::new(log_filter::with_wire_caps(&spec));
    crate::tui::init_logging(filter, std::io::IsTerminal::is_terminal(&std::io::stderr()));
}

fn runtime() -> Result<tokio::runtime::Runtime, CommandFailure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CommandFailure::runtime(format!("cannot start the async runtime: {e}")))
}

fn pki_init(dir: &Path, hostnames: &[String], alg: KeyAlgorithm) -> Result<u8, CommandFailure> {
    let (pki, created) = Pki::init(dir, hostnames, alg)?;
    if created {
        out!("created PKI in {} ({})", dir.display(), alg.as_str());
    } else {
        out!("reusing existing PKI in {} (unchanged)", dir.display());
    }
    out!("  trust anchor: {}", pki.root_ca_path().display());
    out!(
        "  claim:        {} {}",
        pki.claim_cert_path().display(),
        pki.claim_key_path().display()
    );
    Ok(exit::OK)
}

fn compare_runs(dirs: &[PathBuf], out: &Path, seed: u64) -> Result<u8, CommandFailure> {
    if dirs.len() < 2 {
        return Err(crate::compare::CompareError::TooFewRuns(dirs.len()).into());
    }
    let runs = crate::results::read_runs(dirs)?;
    let comparison = crate::compare::compare_runs(&runs, seed)?;
    out!("{}", comparison.render_table());
    comparison.write_csv(out)?;
    out!("  comparison: {}", out.display());
    let html = out.with_file_name("compare.html");
    crate::report::write_compare_report(&html, runs, &comparison)?;
    out!("  comparison page: {}", html.display());
    Ok(exit::OK)
}

fn report(dir: &Path, out: Option<&Path>) -> Result<u8, CommandFailure> {
    let path = crate::report::regenerate(dir, out)?;
    out!("report: {}", path.display());
    for note in crate::results::incomplete_notes(dir) {
        out!("  note: {note}");
    }
    Ok(exit::OK)
}

fn merge_shards(args: &crate::merge::MergeArgs) -> Result<u8, CommandFailure> {
    let merged = crate::merge::merge(&args.dirs, &args.out, args.options())?;
    out!("{}", crate::merge::render(&merged));
    Ok(if merged.summary.thresholds_ok() {
        exit::OK
    } else {
        exit::THRESHOLDS
    })
}

/// The line that says where a report went; a report that could not be written is logged and
/// changes nothing else (the results files are already written).
fn report_after_run(what: &str, result: Result<PathBuf, crate::report::ReportError>) -> String {
    match result {
        Ok(path) => format!("  {what}: {}", path.display()),
        Err(e) => {
            tracing::info!(
                target: crate::tui::CONSOLE,
                "fleetstorm: {what} not written: {e}"
            );
            String::new()
        }
    }
}

fn validate(path: &Path, sets: &[String]) -> Result<u8, CommandFailure> {
    let scenario = Scenario::load(path, sets)?;
    let (arrivals, last) = scenario.arrival_span();
    let span = last.unwrap_or_default();
    out!(
        "{}: ok: scenario {:?}, {} devices planned, {} arrivals scheduled over {:.1} s, {} thresholds",
        path.display(),
        scenario.name,
        scenario.devices.count,
        arrivals,
        span.as_secs_f64(),
        scenario.thresholds.len()
    );
    Ok(exit::OK)
}
