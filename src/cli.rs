//! Command-line interface: argument parsing and the thin glue from commands to the library.
//! It is over 800 lines: one clap definition and one short glue function per command, the work of
//! each command in its own module.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::fleet::{self, RunOptions};
use crate::mock::{self, MockConfig, MockSettings};
use crate::pki::{KeyAlgorithm, Pki};
use crate::scenario::Scenario;

/// `println!` that ignores a closed stdout (a reader that went away must not kill a server).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Exit codes: part of the public interface.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The run or server failed at runtime.
    pub const RUNTIME: u8 = 1;
    /// Bad command-line usage (clap's own code).
    pub const USAGE: u8 = 2;
    /// A run against a non-loopback endpoint was not confirmed (`--yes` / `confirm_remote`);
    /// nothing was sent. The same code as usage errors: the command line lacked a flag.
    pub const NOT_CONFIRMED: u8 = 2;
    /// A scenario, settings or template file is invalid, or a results file that `report` or
    /// `compare` reads is missing or malformed.
    pub const CONFIG: u8 = 3;
    /// A PEM file, key or PKI directory is unusable.
    pub const PKI: u8 = 4;
    /// The run completed but a threshold failed.
    pub const THRESHOLDS: u8 = 5;
    /// Refused before the run started because it would overwrite results or identities: `--out`
    /// names a folder that is not empty (without `--overwrite`), or the `--save-identities`
    /// folder holds an earlier run's identities. Nothing was sent.
    pub const EXISTS: u8 = 6;
    /// Interrupted (Ctrl-C / SIGTERM / SIGHUP) before finishing; results so far were written.
    pub const INTERRUPTED: u8 = 130;
}

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
    /// Merge the results folders of a sharded run's shards into one (README: Merging shards).
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
    /// Address of the AWS IoT control plane (REST API over plain HTTP; SigV4 not checked), e.g.
    /// 127.0.0.1:8443; port 0 picks a free port. Printed in the ready line.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub control: SocketAddr,
    /// Serve the mock's counters as Prometheus metrics (OpenMetrics) at http://ADDR/metrics;
    /// port 0 picks a free port. Printed in the ready lines.
    #[arg(long, value_name = "ADDR", value_parser = crate::exporter::parse_listen)]
    pub metrics_listen: Option<SocketAddr>,
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

/// An error with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl std::fmt::Display) -> Self {
        Failure {
            code,
            message: message.to_string(),
        }
    }
}

impl From<mock::MockError> for Failure {
    fn from(e: mock::MockError) -> Self {
        let code = match e {
            mock::MockError::Pki(_) | mock::MockError::Tls(_) => exit::PKI,
            mock::MockError::Io(_) => exit::RUNTIME,
            _ => exit::CONFIG,
        };
        Failure::new(code, e)
    }
}

impl From<crate::report::ReportError> for Failure {
    fn from(e: crate::report::ReportError) -> Self {
        let code = if e.is_input() {
            exit::CONFIG
        } else {
            exit::RUNTIME
        };
        Failure::new(code, e)
    }
}

impl From<crate::results::ResultsError> for Failure {
    fn from(e: crate::results::ResultsError) -> Self {
        Failure::new(exit::CONFIG, e)
    }
}

impl From<crate::output::FolderError> for Failure {
    fn from(e: crate::output::FolderError) -> Self {
        let code = if e.is_refusal() {
            exit::EXISTS
        } else {
            exit::RUNTIME
        };
        Failure::new(code, e)
    }
}

impl From<crate::pki::PkiError> for Failure {
    fn from(e: crate::pki::PkiError) -> Self {
        Failure::new(exit::PKI, e)
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
        Command::Compare { dirs, out, seed } => compare_runs(&dirs, &out, seed),
        Command::Report { dir, out } => report(&dir, out.as_deref()),
        Command::Merge(args) => merge_shards(&args),
        Command::K8s { command } => crate::k8s::run(command).map(|()| exit::OK).map_err(|e| {
            use crate::k8s::ErrorKind as K;
            let code = match e.kind {
                K::Usage => exit::USAGE,
                K::Config => exit::CONFIG,
                K::NotConfirmed => exit::NOT_CONFIRMED,
                K::Write => exit::RUNTIME,
            };
            Failure::new(code, e.message)
        }),
        #[cfg(feature = "aws")]
        Command::Aws { command } => runtime().and_then(|rt| {
            rt.block_on(crate::aws::command::run(command))
                .map_err(|e| Failure::new(e.exit_code(), e))
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
    let filter = match filter {
        Some(f) => EnvFilter::new(f),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default)),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(crate::tui::LogWriter::make)
        .try_init();
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Failure::new(
                exit::RUNTIME,
                format!("cannot start the async runtime: {e}"),
            )
        })
}

fn pki_init(dir: &Path, hostnames: &[String], alg: KeyAlgorithm) -> Result<u8, Failure> {
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

async fn run_mock(args: MockArgs) -> Result<u8, Failure> {
    let mut settings = match &args.config {
        Some(path) => MockSettings::from_file(path)?,
        None => MockSettings::default(),
    };
    settings.templates.extend(args.templates.iter().cloned());
    if let Some(keys) = args.keys {
        settings.keys = keys;
    }
    let (pki, created) = Pki::init(&args.pki, &[], KeyAlgorithm::P256)?;
    if created {
        eprintln!("created PKI in {}", args.pki.display());
    }
    let mut config = MockConfig::new(Arc::new(pki), settings)?;
    config.write_registry = true;
    config.control = Some(args.control);
    let metrics = crate::exporter::bind_optional(args.metrics_listen)
        .await
        .map_err(|e| Failure::new(exit::RUNTIME, e))?;
    let listener = crate::mock::listen(args.listen).map_err(|e| {
        Failure::new(
            exit::RUNTIME,
            format!("cannot listen on {}: {e}", args.listen),
        )
    })?;
    let shutdown = CancellationToken::new();
    let templates: Vec<String> = config.templates.keys().cloned().collect();
    let key_type = config.settings.keys;
    let handle = mock::start(config, listener, shutdown.clone()).await?;
    let metrics = metrics.map(|l| l.serve(crate::exporter::mock::registry(handle.observer())));
    out!(
        "fleetstorm mock listening on {} control http://{} (ca {}, claim {} {})",
        handle.addr,
        handle
            .control_addr
            .map_or_else(|| "-".to_string(), |a| a.to_string()),
        handle.root_ca_path.display(),
        handle.claim_cert_path.display(),
        handle.claim_key_path.display()
    );
    out!(
        "  templates: {}; keys: {} ({} pooled)",
        templates.join(", "),
        key_type.as_str(),
        handle.key_pool().pooled
    );
    if let Some(server) = &metrics {
        out!("  metrics: {}", server.url());
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();

    let signal = crate::signals::shutdown_signal().await;
    eprintln!("{signal}: stopping");
    let report = handle.stop().await;
    drop(metrics);
    let s = &report.stats;
    out!(
        "fleetstorm mock stopped: {} connections ({} TLS failures, {} refused, {} policy disconnects, {} protocol errors, {} takeovers)",
        s.connections,
        s.tls_failures,
        s.connack_refused,
        s.policy_disconnects,
        s.protocol_errors,
        s.takeovers
    );
    out!(
        "  CreateKeysAndCertificate {}/{} rejected, CreateCertificateFromCsr {}/{} rejected, RegisterThing {}/{} rejected",
        s.create_keys_accepted,
        s.create_keys_rejected,
        s.create_from_csr_accepted,
        s.create_from_csr_rejected,
        s.register_thing_accepted,
        s.register_thing_rejected
    );
    for (template, h) in &report.hooks {
        out!(
            "  hook {template}: {} invocations, {} allowed, {} denied, {} errors, {} malformed, {} timeouts, {} cold starts",
            h.invocations,
            h.allowed,
            h.denied,
            h.errors,
            h.malformed,
            h.timeouts,
            h.cold_starts
        );
    }
    out!(
        "  keys: {} ({} from pool, {} generated inline, {} generated in the background in {:.1} s CPU, {} cached for next start)",
        report.key_type,
        report.keys.served_from_pool,
        report.keys.generated_inline,
        report.keys.generated_background,
        report.keys.background_cpu_s,
        report.cached_keys
    );
    out!(
        "  registry: {} things, {} certificates ({} active, {} pending){}",
        report.registry.things,
        report.registry.certificates,
        report.registry.active_certificates,
        report.registry.pending_certificates,
        report
            .registry_file
            .as_ref()
            .map(|p| format!(", written to {}", p.display()))
            .unwrap_or_default()
    );
    Ok(exit::OK)
}

fn compare_runs(dirs: &[PathBuf], out: &Path, seed: u64) -> Result<u8, Failure> {
    if dirs.len() < 2 {
        let e = crate::compare::CompareError::TooFewRuns(dirs.len());
        return Err(Failure::new(exit::CONFIG, e));
    }
    let runs = crate::results::read_runs(dirs)?;
    let comparison = crate::compare::compare_runs(&runs, seed).map_err(|e| {
        let code = match e {
            crate::compare::CompareError::Write { .. } => exit::RUNTIME,
            _ => exit::CONFIG,
        };
        Failure::new(code, e)
    })?;
    out!("{}", comparison.render_table());
    comparison
        .write_csv(out)
        .map_err(|e| Failure::new(exit::RUNTIME, e))?;
    out!("  comparison: {}", out.display());
    let html = out.with_file_name("compare.html");
    crate::report::write_compare_report(&html, runs, &comparison)?;
    out!("  comparison page: {}", html.display());
    Ok(exit::OK)
}

fn report(dir: &Path, out: Option<&Path>) -> Result<u8, Failure> {
    let path = crate::report::regenerate(dir, out)?;
    out!("report: {}", path.display());
    for note in crate::results::incomplete_notes(dir) {
        out!("  note: {note}");
    }
    Ok(exit::OK)
}

fn merge_shards(args: &crate::merge::MergeArgs) -> Result<u8, Failure> {
    use crate::merge::MergeError as E;
    let merged =
        crate::merge::merge(&args.dirs, &args.out, args.options()).map_err(|e| match e {
            E::Results(e) => e.into(),
            E::Folder(e) => e.into(),
            E::Refused(why) => Failure::new(exit::USAGE, why),
            e => Failure::new(exit::RUNTIME, e),
        })?;
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
            crate::tui::log_line(format!("fleetstorm: {what} not written: {e}"));
            String::new()
        }
    }
}

fn validate(path: &Path, sets: &[String]) -> Result<u8, Failure> {
    let scenario = Scenario::load(path, sets).map_err(|e| Failure::new(exit::CONFIG, e))?;
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

fn parse_endpoint(s: &str) -> Result<(String, Option<u16>), Failure> {
    crate::guard::parse_endpoint(s).map_err(|e| Failure::new(exit::USAGE, e))
}

async fn run_scenario(args: RunArgs) -> Result<u8, Failure> {
    let shard = match (args.shard, args.shards) {
        (None, Some(n)) => {
            let index = std::env::var_os(crate::shard::INDEX_VAR);
            let index = index.as_ref().map(|v| v.to_string_lossy());
            Some(
                crate::shard::Shard::from_index_var(n, index.as_deref())
                    .map_err(|e| Failure::new(exit::USAGE, e))?,
            )
        }
        (shard, _) => shard,
    };
    let scenarios = Scenario::load_variants(&args.scenario, &args.sets)
        .map_err(|e| Failure::new(exit::CONFIG, e))?;
    let name = scenarios
        .first()
        .map(|s| s.name.clone())
        .unwrap_or_default();
    let seed = scenarios.first().map_or(1, |s| s.seed);
    let endpoint = args.endpoint.as_deref().map(parse_endpoint).transpose()?;
    match crate::guard::check(&scenarios, endpoint.as_ref(), args.yes) {
        crate::guard::Decision::Local => {}
        crate::guard::Decision::Confirmed(plan) => eprint!("{}", plan.render()),
        crate::guard::Decision::Refused(plan) => {
            eprint!("{}", plan.render());
            return Err(Failure::new(
                exit::NOT_CONFIRMED,
                "not confirmed: nothing was sent. Run again with --yes, or set confirm_remote = true in the scenario's [target]",
            ));
        }
    }
    if let Some(dir) = &args.save_identities {
        crate::output::check_identities_folder(dir)?;
    }
    let metrics_listener = crate::exporter::bind_optional(args.metrics_listen)
        .await
        .map_err(|e| Failure::new(exit::RUNTIME, e))?;
    let out_dir = match &args.out {
        Some(dir) => crate::output::claim_given(dir, args.overwrite)?,
        None => {
            // Shards of one job share the start time: their folders differ only in the suffix.
            let at = args
                .start_at
                .map_or_else(std::time::SystemTime::now, |t| t.0);
            let stamp = humantime::format_rfc3339_seconds(at)
                .to_string()
                .replace(':', "");
            let suffix = shard.unwrap_or_default().folder_suffix();
            crate::output::claim_default(
                &PathBuf::from("results").join(format!("{name}-{stamp}{suffix}")),
            )?
        }
    };
    let scenario_sha256 = std::fs::read(&args.scenario).ok().map(|bytes| {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&bytes))
    });
    let limit = crate::limits::raise_nofile();
    let run_id = crate::shard::run_id(
        args.run_id.as_deref(),
        shard,
        args.start_at,
        scenario_sha256.as_deref(),
        &scenarios,
    );
    eprintln!(
        "fleetstorm run {name} (run ID {run_id}{}): {} devices planned{}; open-file limit {limit} (about {} devices in flight); results in {}",
        shard
            .map(|s| format!(", shard {} of {}", s.index, s.count))
            .unwrap_or_default(),
        scenarios
            .first()
            .map_or(0, |s| shard.unwrap_or_default().share(s.devices.count)),
        if scenarios.len() > 1 {
            format!(" per variant, {} variants", scenarios.len())
        } else {
            String::new()
        },
        limit.saturating_sub(64) / 2,
        out_dir.display()
    );
    let metrics = metrics_listener.map(|listener| {
        let source = crate::exporter::RunMetrics::new();
        let server = listener.serve(source.registry());
        eprintln!("fleetstorm: metrics at {}", server.url());
        (source, server)
    });
    let stop = CancellationToken::new();
    let abort = CancellationToken::new();
    {
        let (stop, abort) = (stop.clone(), abort.clone());
        let mut signals = crate::signals::Signals::new();
        tokio::spawn(async move {
            let signal = signals.recv().await;
            crate::tui::log_line(format!(
                "{signal}: stopping arrivals, draining in-flight devices (again to abort them)"
            ));
            stop.cancel();
            let signal = signals.recv().await;
            crate::tui::log_line(format!(
                "{signal} again: aborting in-flight devices, writing the results"
            ));
            abort.cancel();
        });
    }
    let controls = crate::live::Controls::new();
    let dashboard = if !args.no_tui && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        let keys = crate::tui::StopKeys {
            stop: stop.clone(),
            abort: Some(abort.clone()),
        };
        match crate::tui::Dashboard::start(controls.clone(), keys) {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("no live dashboard ({e}): printing progress lines instead");
                None
            }
        }
    } else {
        None
    };
    // While the dashboard owns the terminal, tables wait until it gives it back.
    let mut tables = Vec::new();
    let result = run_variants(
        scenarios,
        &args,
        &out_dir,
        endpoint,
        RunContext {
            run_id,
            controls,
            snapshots: dashboard.as_ref().map(|d| d.snapshots.clone()),
            stop: stop.clone(),
            abort: abort.clone(),
            scenario_sha256,
            metrics: metrics.as_ref().map(|(source, _)| source.clone()),
            tables: dashboard.is_some().then_some(&mut tables),
            shard,
            start_at: args.start_at,
        },
    )
    .await;
    if let Some(d) = dashboard {
        d.finish().await;
    }
    for t in tables {
        out!("{t}");
    }
    let (all_ok, dirs, variants) = result?;
    if variants && !dirs.is_empty() {
        let runs = crate::results::read_runs(&dirs);
        let comparison = if dirs.len() > 1 {
            let runs = runs.as_ref().map_err(|e| Failure::new(exit::RUNTIME, e))?;
            let comparison = crate::compare::compare_runs(runs, seed)
                .map_err(|e| Failure::new(exit::RUNTIME, e))?;
            out!("{}", comparison.render_table());
            let csv = out_dir.join("compare.csv");
            comparison
                .write_csv(&csv)
                .map_err(|e| Failure::new(exit::RUNTIME, e))?;
            out!("  comparison: {}", csv.display());
            Some(comparison)
        } else {
            None
        };
        out!(
            "{}",
            report_after_run(
                "variants report",
                runs.map_err(Into::into).and_then(|runs| {
                    crate::report::write_variants_report(&out_dir, runs, comparison.as_ref(), None)
                }),
            )
        );
    }
    let code = if stop.is_cancelled() {
        exit::INTERRUPTED
    } else if all_ok {
        exit::OK
    } else {
        exit::THRESHOLDS
    };
    if let Some((_, server)) = metrics {
        // The first signal after a completed run ends the linger, the second after a stop.
        let signal = if stop.is_cancelled() { &abort } else { &stop };
        crate::exporter::linger(server, args.metrics_linger, signal).await;
    }
    Ok(code)
}

/// What the variants of one `run` share.
struct RunContext<'a> {
    run_id: String,
    controls: Arc<crate::live::Controls>,
    snapshots: Option<tokio::sync::watch::Sender<Arc<crate::live::Snapshot>>>,
    stop: CancellationToken,
    /// A second signal: abort the drain.
    abort: CancellationToken,
    /// SHA-256 (hex) of the scenario file.
    scenario_sha256: Option<String>,
    /// `--metrics-listen`: the endpoint's source each variant's series attach to.
    metrics: Option<crate::exporter::RunMetrics>,
    /// Collect the end-of-run tables here instead of printing them (dashboard on screen).
    tables: Option<&'a mut Vec<String>>,
    /// `--shard` / `--shards`: every variant runs this shard's devices.
    shard: Option<crate::shard::Shard>,
    /// `--start-at`: when the first variant starts (the next ones follow it).
    start_at: Option<crate::shard::StartAt>,
}

/// Run each variant in turn; (thresholds all passed, result folders, several variants).
async fn run_variants(
    scenarios: Vec<Scenario>,
    args: &RunArgs,
    out_dir: &Path,
    endpoint: Option<(String, Option<u16>)>,
    mut ctx: RunContext<'_>,
) -> Result<(bool, Vec<PathBuf>, bool), Failure> {
    let stop = ctx.stop.clone();
    let mut all_ok = true;
    let mut dirs = Vec::new();
    let variants = scenarios.len() > 1;
    for scenario in scenarios {
        if stop.is_cancelled() {
            break;
        }
        let dir = match (&scenario.variant, variants) {
            (Some(v), true) => out_dir.join(v),
            _ => out_dir.to_path_buf(),
        };
        if let Some(v) = &scenario.variant {
            crate::tui::log_line(format!("variant {v}: results in {}", dir.display()));
        }
        let options = RunOptions {
            progress: ctx.snapshots.is_none(),
            controls: ctx.controls.clone(),
            snapshots: ctx.snapshots.clone(),
            endpoint: endpoint.clone(),
            drain: args.drain,
            // Variants of one run share the seed (so thing names): each saves in its own folder.
            save_identities: args
                .save_identities
                .as_ref()
                .map(|d| match &scenario.variant {
                    Some(v) if variants => d.join(v),
                    _ => d.clone(),
                }),
            run_id: ctx.run_id.clone(),
            abort: ctx.abort.clone(),
            scenario_sha256: ctx.scenario_sha256.clone(),
            metrics: ctx.metrics.clone(),
            shard: ctx.shard,
            start_at: ctx.start_at.take(),
            ..RunOptions::new(dir.clone())
        };
        let summary = fleet::run(scenario, options, stop.clone())
            .await
            .map_err(|e| {
                let code = match e {
                    fleet::RunError::Mock(mock::MockError::Pki(_))
                    | fleet::RunError::Pki(_)
                    | fleet::RunError::Tls(_) => exit::PKI,
                    fleet::RunError::Mock(_) => exit::CONFIG,
                    _ => exit::RUNTIME,
                };
                Failure::new(code, e)
            })?;
        let mut table = crate::output::render_table(&summary);
        table.push_str(&report_after_run(
            "report",
            crate::report::write_run_report(&dir, None),
        ));
        match ctx.tables.as_mut() {
            Some(tables) => tables.push(table),
            None => out!("{table}"),
        }
        all_ok &= summary.thresholds_ok();
        dirs.push(dir);
    }
    Ok((all_ok, dirs, variants))
}
