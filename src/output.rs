//! Run outputs: the results files a run writes, and the end-of-run table.
//!
//! Streamed and flushed every second so an interrupted run leaves valid files: `devices.csv`,
//! `failures.csv`, `created.csv`, `timeseries.csv`, `latency.hlog`; `summary.json` and
//! `summary.csv` rewritten atomically every second (`"complete": false`) and at the end
//! (`"complete": true`); the stdout table at the end.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::device::{DeviceReport, FailureClass, Stage};
pub use crate::metrics::LevelCounts;
use crate::metrics::{Percentiles, STAGE_NAMES, StageSet};
use crate::mock::MockReport;
use crate::results::hlog::HlogWriter;
use crate::results::summary::{Measured, derive};
use crate::results::timeseries::TimeseriesRow;
use crate::results::{CreatedRow, DeviceRow, FailureRow};
pub use crate::results::{DeviceCounts, Scheduler, Summary, Throughput};
use crate::scenario::{Plan, Scenario};
pub use created::CreatedContext;
use created::created_csv;
pub use folder::{FolderError, claim_default, claim_given};
pub use identities::{check_identities_folder, save_identity};
pub(crate) use summary_files::write_summary;

mod created;
mod folder;
mod identities;
mod summary_files;

/// A results file that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct OutputError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl OutputError {
    pub fn new(path: &Path, source: std::io::Error) -> OutputError {
        OutputError {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl DeviceRow {
    /// The row of a device that ended: its stages' service times from its report.
    pub fn new(
        seq: u64,
        client_id: &str,
        lag: Duration,
        report: &DeviceReport,
        total: Duration,
        attempts: u32,
    ) -> DeviceRow {
        // A stage's service time; the sum when it ran more than once (per-step subscriptions
        // wait for two SUBACKs).
        let stage = |s: Stage| {
            report
                .stages
                .iter()
                .filter(|t| t.stage == s)
                .map(|t| t.service.as_micros() as u64)
                .reduce(|a, b| a + b)
        };
        let (outcome, reason, thing_name) = match &report.outcome {
            Ok(p) => ("provisioned", String::new(), p.thing_name.clone()),
            Err(f) => ("failed", f.reason.label(), String::new()),
        };
        DeviceRow {
            seq,
            client_id: client_id.to_string(),
            thing_name,
            start_lag_us: lag.as_micros() as u64,
            connect_claim_us: stage(Stage::ConnectClaim),
            subscribe_us: stage(Stage::Subscribe),
            create_certificate_us: stage(Stage::CreateCertificate),
            register_thing_us: stage(Stage::RegisterThing),
            connect_device_us: stage(Stage::ConnectDevice),
            telemetry_publishes: report
                .stages
                .iter()
                .filter(|t| t.stage == Stage::Telemetry)
                .count(),
            total_us: total.as_micros() as u64,
            outcome,
            reason,
            attempts,
        }
    }
}

/// One second of the run.
pub struct Interval<'a> {
    pub elapsed: Duration,
    pub length: Duration,
    pub offered: u64,
    pub started: u64,
    pub completed: u64,
    pub failed: u64,
    pub failed_by_class: &'a BTreeMap<FailureClass, u64>,
    pub in_flight: u64,
    pub connected: u64,
    pub dropped_total: u64,
    pub max_lag: Duration,
    pub stages: &'a StageSet,
    /// What the schedule asked for at the end of the interval (multiplier applied).
    pub target_rate: Option<f64>,
    /// This process's CPU over the interval, percent of one core.
    pub cpu_percent: f64,
    /// The live arrival-rate multiplier (0 while paused).
    pub multiplier: f64,
    /// Certificates issued, connects attempted and whole-flow retries started in the interval.
    pub certificates_issued: u64,
    pub connects: u64,
    pub retries: u64,
}

/// Everything the summary needs.
pub struct Totals<'a> {
    pub scenario: &'a Plan,
    pub run_id: &'a str,
    pub started_at: SystemTime,
    pub duration: Duration,
    pub planned: u64,
    pub started: u64,
    pub provisioned: u64,
    pub failed: u64,
    pub dropped: u64,
    pub max_lag: Duration,
    pub failures: &'a BTreeMap<String, u64>,
    pub stages: &'a StageSet,
    pub endpoint: &'a str,
    pub interrupted: bool,
    pub levels: &'a LevelCounts,
    pub mock: Option<&'a MockReport>,
    pub rate_changes: Vec<crate::results::RateChange>,
    /// False for the summaries written while the run goes on; true for the final one.
    pub complete: bool,
    /// SHA-256 of the scenario file as read (hex), when the run came from a file.
    pub scenario_sha256: Option<&'a str>,
    /// Which shard this is (summary.json's `shard`).
    pub shard: Option<crate::results::ShardSummary>,
    /// What the finished devices did that AWS counts (the amplification figures' counts).
    pub counted: crate::results::summary::Counted,
}

pub struct Outputs {
    dir: PathBuf,
    devices: csv::Writer<BufWriter<File>>,
    failures: csv::Writer<BufWriter<File>>,
    created: csv::Writer<BufWriter<File>>,
    /// When created.csv was last flushed: it is flushed on the way, not only every second.
    created_flushed: std::time::Instant,
    timeseries: csv::Writer<BufWriter<File>>,
    hlog: HlogWriter<BufWriter<File>>,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::new(path, source)
}

fn csv_err(path: &Path) -> impl Fn(csv::Error) -> OutputError + '_ {
    move |e| OutputError::new(path, std::io::Error::other(e))
}

fn create(dir: &Path, name: &str) -> Result<BufWriter<File>, OutputError> {
    let path = dir.join(name);
    Ok(BufWriter::new(File::create(&path).map_err(io_err(&path))?))
}

/// `scenario.toml`: the scenario exactly as run (after `--set` and the variant's overrides), for
/// the report and for running it again.
fn write_scenario(dir: &Path, scenario: &Scenario) -> Result<(), OutputError> {
    let path = dir.join("scenario.toml");
    let text = toml::to_string_pretty(scenario)
        .map_err(|e| OutputError::new(&path, std::io::Error::other(e)))?;
    let variant = scenario
        .variant
        .as_ref()
        .map(|v| format!(", variant {v:?}"))
        .unwrap_or_default();
    let header = format!(
        "# The scenario as run (scenario {:?}{variant}), after --set and variant overrides.\n",
        scenario.name
    );
    std::fs::write(&path, header + &text).map_err(io_err(&path))
}

impl Outputs {
    pub fn create(dir: &Path, scenario: &Plan, endpoint: &str) -> Result<Outputs, OutputError> {
        Outputs::create_at(dir, scenario, endpoint, SystemTime::now())
    }

    /// [`Outputs::create`] for a run whose time origin is `start` (the interval log's start
    /// and base time; `--start-at`).
    pub fn create_at(
        dir: &Path,
        scenario: &Plan,
        endpoint: &str,
        start: SystemTime,
    ) -> Result<Outputs, OutputError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut timeseries = csv::Writer::from_writer(create(dir, "timeseries.csv")?);
        let header: Vec<String> = crate::results::timeseries::columns()
            .into_iter()
            .map(|c| c.name)
            .collect();
        timeseries
            .write_record(&header)
            .map_err(csv_err(&dir.join("timeseries.csv")))?;
        let mut failures = csv::Writer::from_writer(create(dir, "failures.csv")?);
        failures
            .write_record(FailureRow::COLUMNS)
            .map_err(csv_err(&dir.join("failures.csv")))?;
        write_scenario(dir, scenario.scenario())?;
        let hlog_path = dir.join(crate::results::hlog::FILE_NAME);
        let title = format!("scenario {} against {endpoint}", scenario.name);
        let hlog = HlogWriter::begin(create(dir, crate::results::hlog::FILE_NAME)?, &title, start)
            .map_err(io_err(&hlog_path))?;
        Ok(Outputs {
            dir: dir.to_path_buf(),
            devices: csv::Writer::from_writer(create(dir, "devices.csv")?),
            failures,
            created: created_csv(create(dir, "created.csv")?)
                .map_err(csv_err(&dir.join("created.csv")))?,
            created_flushed: std::time::Instant::now(),
            timeseries,
            hlog,
        })
    }

    /// A certificate issued or a thing registered: a `created.csv` row. Flushed with the rest
    /// every second and, while rows come in, every quarter of a second: what a `kill -9`
    /// loses is then well under the promised second even when the one-second tick runs late.
    pub fn created(&mut self, row: &CreatedRow) -> Result<(), OutputError> {
        let path = || self.dir.join("created.csv");
        self.created.serialize(row).map_err(csv_err(&path()))?;
        if self.created_flushed.elapsed() >= Duration::from_millis(250) {
            self.created.flush().map_err(io_err(&path()))?;
            self.created_flushed = std::time::Instant::now();
        }
        Ok(())
    }

    pub fn device(&mut self, row: &DeviceRow) -> Result<(), OutputError> {
        self.devices
            .serialize(row)
            .map_err(csv_err(&self.dir.join("devices.csv")))
    }

    pub fn failure(
        &mut self,
        seq: u64,
        client_id: &str,
        reason: &str,
        detail: &str,
        raw: Option<&crate::protocol::ErrorResponse>,
        elapsed: Duration,
    ) -> Result<(), OutputError> {
        let row = FailureRow {
            elapsed_s: elapsed.as_secs_f64(),
            seq,
            client_id,
            reason,
            detail,
            status_code: raw.map(|r| r.status_code),
            error_code: raw.map_or("", |r| r.error_code.as_str()),
            error_message: raw.map_or("", |r| r.error_message.as_str()),
        };
        self.failures
            .write_record(row.cells())
            .map_err(csv_err(&self.dir.join("failures.csv")))
    }

    /// Write one second of data and flush every file.
    pub fn interval(&mut self, i: &Interval<'_>) -> Result<(), OutputError> {
        let row = TimeseriesRow {
            elapsed_s: i.elapsed.as_secs_f64(),
            offered: i.offered,
            started: i.started,
            completed: i.completed,
            failed: i.failed,
            failed_by_class: FailureClass::FAILED
                .iter()
                .map(|c| i.failed_by_class.get(c).copied().unwrap_or(0))
                .collect(),
            in_flight: i.in_flight,
            dropped_total: i.dropped_total,
            start_lag_max_ms: i.max_lag.as_secs_f64() * 1000.0,
            stage_ms: i
                .stages
                .stages
                .iter()
                .map(|h| {
                    let p = Percentiles::of(&h.latency);
                    (p.p50_ms, p.p99_ms)
                })
                .collect(),
            target_rate_per_s: i.target_rate,
            rate_multiplier: i.multiplier,
            connected: i.connected,
            cpu_percent: i.cpu_percent,
            certificates_issued: i.certificates_issued,
            connects: i.connects,
            retries: i.retries,
        };
        let ts = self.dir.join("timeseries.csv");
        self.timeseries
            .write_record(row.cells())
            .map_err(csv_err(&ts))?;
        let start = i.elapsed.saturating_sub(i.length);
        let hlog = self.dir.join(crate::results::hlog::FILE_NAME);
        for (name, h) in STAGE_NAMES.iter().zip(&i.stages.stages) {
            self.hlog
                .write(name, &h.latency, start, i.length)
                .map_err(io_err(&hlog))?;
            self.hlog
                .write(&format!("{name}.service"), &h.service, start, i.length)
                .map_err(io_err(&hlog))?;
        }
        self.flush()?;
        Ok(())
    }

    /// Flush every file (done every second, and before the final summary).
    pub fn flush(&mut self) -> Result<(), OutputError> {
        let d = &self.dir;
        self.devices
            .flush()
            .map_err(io_err(&d.join("devices.csv")))?;
        self.failures
            .flush()
            .map_err(io_err(&d.join("failures.csv")))?;
        self.created
            .flush()
            .map_err(io_err(&d.join("created.csv")))?;
        self.timeseries
            .flush()
            .map_err(io_err(&d.join("timeseries.csv")))?;
        self.hlog
            .flush()
            .map_err(io_err(&d.join(crate::results::hlog::FILE_NAME)))
    }

    /// Write `summary.json` and `summary.csv` (atomically: see `summary_files`) and return the
    /// summary.
    pub fn summary(&self, t: Totals<'_>) -> Result<Summary, OutputError> {
        let devices = DeviceCounts {
            planned: t.planned,
            started: t.started,
            provisioned: t.provisioned,
            failed: t.failed,
            dropped: t.dropped,
        };
        let measured = Measured {
            devices: &devices,
            failures: t.failures,
            stages: STAGE_NAMES
                .iter()
                .zip(&t.stages.stages)
                .map(|(name, h)| (name.to_string(), Some(&h.latency), Some(&h.service)))
                .collect(),
            duration_s: t.duration.as_secs_f64(),
            window_s: t.stages.provisioning_window().map(|w| w.as_secs_f64()),
            levels: t.levels,
            counted: t.counted,
            on_aws: crate::guard::is_aws_endpoint(t.endpoint),
        };
        let d = derive(&measured, &t.scenario.thresholds, &t.scenario.analysis);
        let summary = Summary {
            scenario: t.scenario.name.clone(),
            run_id: t.run_id.to_string(),
            sustainable_rate_per_s: d.sustainable_rate_per_s,
            throttle: d.throttle,
            variant: t.scenario.variant.clone(),
            started_at: humantime::format_rfc3339_millis(t.started_at).to_string(),
            duration_s: t.duration.as_secs_f64(),
            endpoint: t.endpoint.to_string(),
            interrupted: t.interrupted,
            devices,
            throughput: d.throughput,
            success_rate: d.success_rate,
            stages: d.stages,
            certificates: d.certificates,
            attempts: d.attempts,
            connects: d.connects,
            cost: d.cost,
            failures: t.failures.clone(),
            thresholds: d.thresholds,
            scheduler: Scheduler {
                max_start_lag_ms: t.max_lag.as_secs_f64() * 1000.0,
            },
            mock: t.mock.cloned(),
            rate_changes: t.rate_changes,
            out_dir: self.dir.clone(),
            complete: t.complete,
            scenario_sha256: t.scenario_sha256.map(str::to_string),
            shard: t.shard,
            merged_from: Vec::new(),
            shards_missing: Vec::new(),
        };
        summary_files::write_summary(&self.dir, &summary)?;
        Ok(summary)
    }
}

/// The cost line of the end table: the total and what it is made of.
fn cost_line(c: &crate::results::cost::Cost) -> String {
    use crate::results::cost::{amount, render};
    format!(
        "{}: {} connection-minutes ${}, {} messages ${}, {} registry operations ${}",
        render(c),
        c.connectivity.quantity,
        amount(c.connectivity.cost),
        c.messaging.quantity,
        amount(c.messaging.cost),
        c.registry.quantity,
        amount(c.registry.cost)
    )
}

/// The end-of-run table (k6-style).
pub fn render_table(s: &Summary) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let d = &s.devices;
    let _ = writeln!(
        out,
        "\nfleetstorm: {} against {}{}",
        s.scenario,
        s.endpoint,
        if s.interrupted { " (interrupted)" } else { "" }
    );
    let _ = writeln!(
        out,
        "  devices: {} planned, {} started, {} provisioned, {} failed, {} dropped in {:.1} s",
        d.planned, d.started, d.provisioned, d.failed, d.dropped, s.duration_s
    );
    let _ = writeln!(
        out,
        "  throughput: {:.2} provisioned/s over {:.1} s of provisioning ({:.2}/s over the whole run), success rate {:.2} %, max start lag {:.1} ms",
        s.throughput.provisioned_per_s,
        s.throughput.provisioning_window_s,
        s.throughput.provisioned_per_s_whole_run,
        s.success_rate,
        s.scheduler.max_start_lag_ms
    );
    let (c, a, n) = (&s.certificates, &s.attempts, &s.connects);
    let _ = writeln!(
        out,
        "  amplification: {} certificates issued ({:.2} per provisioned, {} orphaned), attempts mean {:.2} max {}, {} connects ({:.2} per provisioned), at most {} connects/s per client ID",
        c.issued,
        c.per_provisioned,
        c.orphaned,
        a.mean,
        a.max,
        n.total,
        n.per_provisioned,
        n.max_per_client_id_per_s
    );
    let _ = writeln!(out, "  cost: {}", cost_line(&s.cost));
    if let Some(m) = &s.mock {
        let _ = writeln!(
            out,
            "  mock: the run added {} things, {} ACTIVE and {} PENDING_ACTIVATION certificates",
            m.things, m.certificates_active, m.certificates_pending
        );
    }
    let _ = writeln!(
        out,
        "\n  {:<20} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}   {:>11}",
        "stage (ms)", "count", "mean", "p50", "p90", "p99", "p99.9", "max", "service p50"
    );
    for name in STAGE_NAMES {
        if let Some(st) = s.stages.get(name).filter(|st| st.latency.count > 0) {
            let l = &st.latency;
            let _ = writeln!(
                out,
                "  {:<20} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}   {:>11.2}",
                name,
                l.count,
                l.mean_ms,
                l.p50_ms,
                l.p90_ms,
                l.p99_ms,
                l.p999_ms,
                l.max_ms,
                st.service.p50_ms
            );
        }
    }
    if !s.failures.is_empty() {
        let _ = writeln!(out, "\n  failures:");
        let mut f: Vec<_> = s.failures.iter().collect();
        f.sort_by(|a, b| b.1.cmp(a.1));
        for (reason, n) in f {
            let _ = writeln!(out, "    {n:>7}  {reason}");
        }
    }
    if let Some(th) = &s.throttle
        && th.levels.len() > 1
    {
        let _ = writeln!(out, "\n  rate levels (throttle-limit finder):");
        for l in &th.levels {
            let _ = writeln!(
                out,
                "    offered {:>8.2}/s: {:>6} arrivals, {:>6.1} % completed, {:>6.2} % throttled  {}",
                l.target_per_s,
                l.offered,
                l.completion_ratio * 100.0,
                l.throttled_fraction * 100.0,
                if l.sustainable {
                    "ok"
                } else {
                    "NOT sustainable"
                }
            );
        }
        let _ = writeln!(
            out,
            "  sustainable rate: {}{}",
            s.sustainable_rate_per_s
                .map_or("none of the levels".to_string(), |r| format!("{r:.2}/s")),
            th.throttling_stage
                .as_ref()
                .map(|st| format!(" (throttling stage: {st})"))
                .unwrap_or_default()
        );
    }
    if !s.thresholds.is_empty() {
        let _ = writeln!(out, "\n  thresholds:");
        for t in &s.thresholds {
            let value = t.value.map_or("no data".to_string(), |v| format!("{v:.3}"));
            let _ = writeln!(
                out,
                "    {} {} (value {value})",
                if t.ok { "PASS" } else { "FAIL" },
                t.expr
            );
        }
    }
    let _ = writeln!(out, "\n  results: {}", s.out_dir.display());
    out
}
