//! Run outputs: the results files a run writes, and the end-of-run table.
//!
//! Streamed and flushed every second so an interrupted run leaves valid files: `devices.csv`,
//! `failures.csv`, `created.csv`, `timeseries.csv`, `latency.hlog`, and at the end
//! `summary.json`, `summary.csv` and the stdout table.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use serde::Serialize;

use crate::device::{DeviceReport, FailureReason, Stage};
pub use crate::metrics::LevelCounts;
use crate::metrics::{
    Percentiles, STAGE_NAMES, StageSet, StageSummary, Threshold, ThresholdInputs, throttle_analysis,
};
use crate::mock::MockReport;
pub use crate::results::{DeviceCounts, Scheduler, Summary, Throughput};
use crate::scenario::Scenario;
use created::created_csv;
pub use created::{CREATED_COLUMNS, CreatedContext, CreatedRow};

mod created;

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

/// One row of `devices.csv`.
#[derive(Debug, Serialize)]
pub struct DeviceRow {
    pub seq: u64,
    pub client_id: String,
    pub thing_name: String,
    pub start_lag_us: u64,
    pub connect_claim_us: Option<u64>,
    pub subscribe_us: Option<u64>,
    pub create_certificate_us: Option<u64>,
    pub register_thing_us: Option<u64>,
    pub connect_device_us: Option<u64>,
    pub telemetry_publishes: usize,
    pub total_us: u64,
    pub outcome: &'static str,
    pub reason: String,
    pub attempts: u32,
}

impl DeviceRow {
    pub fn new(
        seq: u64,
        client_id: &str,
        lag: Duration,
        report: &DeviceReport,
        total: Duration,
        attempts: u32,
    ) -> DeviceRow {
        let stage = |s: Stage| {
            report
                .stages
                .iter()
                .find(|t| t.stage == s)
                .map(|t| t.service.as_micros() as u64)
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

/// `failures.csv`'s columns. The raw rejection columns (`status_code`, `error_code`,
/// `error_message`, empty for failures that were no `…/rejected` response) come last so readers
/// of the first five keep working.
pub const FAILURES_COLUMNS: [&str; 8] = [
    "elapsed_s",
    "seq",
    "client_id",
    "reason",
    "detail",
    "status_code",
    "error_code",
    "error_message",
];

/// One second of the run.
pub struct Interval<'a> {
    pub elapsed: Duration,
    pub length: Duration,
    pub offered: u64,
    pub started: u64,
    pub completed: u64,
    pub failed: u64,
    pub failed_by_class: &'a BTreeMap<String, u64>,
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
}

/// Everything the summary needs.
pub struct Totals<'a> {
    pub scenario: &'a Scenario,
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
    pub rate_changes: Vec<crate::live::RateChange>,
}

pub struct Outputs {
    dir: PathBuf,
    devices: csv::Writer<BufWriter<File>>,
    failures: csv::Writer<BufWriter<File>>,
    created: csv::Writer<BufWriter<File>>,
    /// When created.csv was last flushed: it is flushed on the way, not only every second.
    created_flushed: std::time::Instant,
    timeseries: csv::Writer<BufWriter<File>>,
    hlog: Hlog<BufWriter<File>>,
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

/// `latency.hlog`: an HdrHistogram interval log (V2 deflate-compressed histograms, base64), as
/// HdrHistogram's own tools read it, written with the hdrhistogram crate's log writer.
struct Hlog<W: Write> {
    out: W,
    serializer: V2DeflateSerializer,
    path: PathBuf,
}

impl<W: Write> Hlog<W> {
    /// Write the header: what the values are, the format version, the start and base times
    /// (interval timestamps are seconds since the start) and the column legend.
    fn begin(
        mut out: W,
        path: PathBuf,
        scenario: &str,
        endpoint: &str,
    ) -> Result<Self, OutputError> {
        let mut serializer = V2DeflateSerializer::new();
        let now = SystemTime::now();
        IntervalLogWriterBuilder::new()
            .add_comment(&format!(
                "[fleetstorm {} scenario {scenario} against {endpoint}]",
                env!("CARGO_PKG_VERSION")
            ))
            .add_comment("[Values are microseconds; tag <stage> = latency from intended start, <stage>.service = service time]")
            .add_comment("[Histogram log format version 1.3]")
            .with_start_time(now)
            .with_base_time(now)
            .begin_log_with(&mut out, &mut serializer)
            .map_err(io_err(&path))?;
        let legend =
            r#""StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram""#;
        writeln!(out, "{legend}").map_err(io_err(&path))?;
        Ok(Hlog {
            out,
            serializer,
            path,
        })
    }

    /// One interval of one tag; an empty histogram writes nothing.
    fn write(
        &mut self,
        tag: &str,
        h: &hdrhistogram::Histogram<u64>,
        start: Duration,
        length: Duration,
    ) -> Result<(), OutputError> {
        if h.is_empty() {
            return Ok(());
        }
        let path = &self.path;
        let bad_tag = || std::io::Error::other(format!("{tag:?} is not a valid interval log tag"));
        let tag = Tag::new(tag).ok_or_else(bad_tag).map_err(io_err(path))?;
        // Without headers set, the builder writes nothing: it only lends the writer for a line.
        IntervalLogWriterBuilder::new()
            .begin_log_with(&mut self.out, &mut self.serializer)
            .map_err(io_err(path))?
            .write_histogram(h, start, length, Some(tag))
            .map_err(|e| OutputError::new(path, std::io::Error::other(e.to_string())))
    }

    fn flush(&mut self) -> Result<(), OutputError> {
        self.out.flush().map_err(io_err(&self.path))
    }
}

impl Outputs {
    pub fn create(dir: &Path, scenario: &Scenario, endpoint: &str) -> Result<Outputs, OutputError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut timeseries = csv::Writer::from_writer(create(dir, "timeseries.csv")?);
        let mut header: Vec<String> = ["elapsed_s", "offered", "started", "completed", "failed"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        header.extend(FailureReason::CLASSES.iter().map(|c| format!("failed_{c}")));
        header.extend(["in_flight", "dropped_total", "start_lag_max_ms"].map(String::from));
        for stage in STAGE_NAMES {
            header.push(format!("{stage}_p50_ms"));
            header.push(format!("{stage}_p99_ms"));
        }
        header.extend(
            [
                "target_rate_per_s",
                "rate_multiplier",
                "connected",
                "cpu_percent",
            ]
            .map(String::from),
        );
        timeseries
            .write_record(&header)
            .map_err(csv_err(&dir.join("timeseries.csv")))?;
        let mut failures = csv::Writer::from_writer(create(dir, "failures.csv")?);
        failures
            .write_record(FAILURES_COLUMNS)
            .map_err(csv_err(&dir.join("failures.csv")))?;
        write_scenario(dir, scenario)?;
        let hlog = create(dir, "latency.hlog")?;
        let hlog = Hlog::begin(hlog, dir.join("latency.hlog"), &scenario.name, endpoint)?;
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
        let (status, code, message) = match raw {
            Some(r) => (
                r.status_code.to_string(),
                r.error_code.as_str(),
                r.error_message.as_str(),
            ),
            None => (String::new(), "", ""),
        };
        self.failures
            .write_record([
                &format!("{:.3}", elapsed.as_secs_f64()),
                &seq.to_string(),
                client_id,
                reason,
                detail,
                &status,
                code,
                message,
            ])
            .map_err(csv_err(&self.dir.join("failures.csv")))
    }

    /// Write one second of data, flush every file, and return the progress line.
    pub fn interval(&mut self, i: Interval<'_>) -> Result<String, OutputError> {
        let mut row = vec![
            format!("{:.1}", i.elapsed.as_secs_f64()),
            i.offered.to_string(),
            i.started.to_string(),
            i.completed.to_string(),
            i.failed.to_string(),
        ];
        row.extend(
            FailureReason::CLASSES
                .iter()
                .map(|c| i.failed_by_class.get(*c).copied().unwrap_or(0).to_string()),
        );
        row.push(i.in_flight.to_string());
        row.push(i.dropped_total.to_string());
        row.push(format!("{:.3}", i.max_lag.as_secs_f64() * 1000.0));
        for h in &i.stages.stages {
            let p = Percentiles::of(&h.latency);
            row.push(format!("{:.3}", p.p50_ms));
            row.push(format!("{:.3}", p.p99_ms));
        }
        row.push(i.target_rate.map(|r| format!("{r:.3}")).unwrap_or_default());
        row.push(format!("{:.2}", i.multiplier));
        row.push(i.connected.to_string());
        row.push(format!("{:.1}", i.cpu_percent));
        let ts = self.dir.join("timeseries.csv");
        self.timeseries.write_record(&row).map_err(csv_err(&ts))?;
        let start = i.elapsed.saturating_sub(i.length);
        for (name, h) in STAGE_NAMES.iter().zip(&i.stages.stages) {
            self.hlog.write(name, &h.latency, start, i.length)?;
            self.hlog
                .write(&format!("{name}.service"), &h.service, start, i.length)?;
        }
        self.flush()?;
        let reg = Percentiles::of(
            &i.stages.stages[crate::metrics::stage_index(Stage::RegisterThing)].latency,
        );
        Ok(format!(
            "[{:>5.0}s] offered {:>4}/s started {:>4} provisioned {:>4} failed {:>3} in flight {:>5} dropped {:>5} | register_thing p99 {:.1} ms | cpu {:.0} %",
            i.elapsed.as_secs_f64(),
            i.offered,
            i.started,
            i.completed,
            i.failed,
            i.in_flight,
            i.dropped_total,
            reg.p99_ms,
            i.cpu_percent
        ))
    }

    fn flush(&mut self) -> Result<(), OutputError> {
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
        self.hlog.flush()
    }

    /// Write the summary files and return the summary.
    pub fn finish(mut self, t: Totals<'_>) -> Result<Summary, OutputError> {
        self.flush()?;
        let stages: BTreeMap<String, StageSummary> = STAGE_NAMES
            .iter()
            .zip(&t.stages.stages)
            .map(|(name, h)| {
                (
                    name.to_string(),
                    StageSummary {
                        latency: Percentiles::of(&h.latency),
                        service: Percentiles::of(&h.service),
                    },
                )
            })
            .collect();
        let secs = t.duration.as_secs_f64().max(1e-9);
        let finished = t.provisioned + t.failed + t.dropped;
        let success_rate = if finished == 0 {
            0.0
        } else {
            100.0 * t.provisioned as f64 / finished as f64
        };
        let whole_run = t.provisioned as f64 / secs;
        let window = t.stages.provisioning_window().unwrap_or(t.duration);
        let throughput = t.provisioned as f64 / window.as_secs_f64().max(1e-9);
        let inputs = ThresholdInputs {
            stages: &stages,
            success_rate_percent: success_rate,
            throughput_per_s: throughput,
            failed: t.failed,
            dropped: t.dropped,
        };
        let thresholds = t
            .scenario
            .thresholds
            .iter()
            .filter_map(|e| Threshold::parse(e).ok())
            .map(|th| th.evaluate(&inputs))
            .collect();
        let throttle = throttle_analysis(&t.scenario.analysis, t.levels, t.failures);
        let sustainable_rate_per_s = throttle.as_ref().and_then(|th| th.sustainable_rate());
        let summary = Summary {
            scenario: t.scenario.name.clone(),
            run_id: t.run_id.to_string(),
            sustainable_rate_per_s,
            throttle,
            variant: t.scenario.variant.clone(),
            started_at: humantime::format_rfc3339_millis(t.started_at).to_string(),
            duration_s: t.duration.as_secs_f64(),
            endpoint: t.endpoint.to_string(),
            interrupted: t.interrupted,
            devices: DeviceCounts {
                planned: t.planned,
                started: t.started,
                provisioned: t.provisioned,
                failed: t.failed,
                dropped: t.dropped,
            },
            throughput: Throughput {
                provisioned_per_s: throughput,
                provisioning_window_s: window.as_secs_f64(),
                provisioned_per_s_whole_run: whole_run,
            },
            success_rate,
            stages,
            failures: t.failures.clone(),
            thresholds,
            scheduler: Scheduler {
                max_start_lag_ms: t.max_lag.as_secs_f64() * 1000.0,
            },
            mock: t.mock.cloned(),
            rate_changes: t.rate_changes,
            out_dir: self.dir.clone(),
        };
        let path = self.dir.join("summary.json");
        let json = serde_json::to_vec_pretty(&summary)
            .map_err(|e| OutputError::new(&path, std::io::Error::other(e)))?;
        std::fs::write(&path, json).map_err(io_err(&path))?;
        let path = self.dir.join("summary.csv");
        let mut w = csv::Writer::from_path(&path).map_err(csv_err(&path))?;
        w.write_record([
            "stage",
            "count",
            "mean_ms",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "p999_ms",
            "max_ms",
            "service_p50_ms",
            "service_p99_ms",
        ])
        .map_err(csv_err(&path))?;
        for (name, s) in &summary.stages {
            let l = &s.latency;
            w.write_record([
                name.clone(),
                l.count.to_string(),
                format!("{:.3}", l.mean_ms),
                format!("{:.3}", l.p50_ms),
                format!("{:.3}", l.p90_ms),
                format!("{:.3}", l.p99_ms),
                format!("{:.3}", l.p999_ms),
                format!("{:.3}", l.max_ms),
                format!("{:.3}", s.service.p50_ms),
                format!("{:.3}", s.service.p99_ms),
            ])
            .map_err(csv_err(&path))?;
        }
        w.flush().map_err(io_err(&path))?;
        Ok(summary)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

    #[test]
    fn the_interval_log_reads_back_with_hdrhistograms_reader() {
        let mut hlog = Hlog::begin(Vec::new(), "latency.hlog".into(), "s", "127.0.0.1:1").unwrap();
        let mut written = Vec::new();
        for (second, tag, values) in [
            (0, "register_thing", vec![1_000u64, 2_000, 250_000]),
            (0, "register_thing.service", vec![900]),
            (1, "register_thing", vec![3_000; 7]),
            (1, "connect_claim", vec![]),
        ] {
            let mut h = crate::metrics::histogram();
            for v in &values {
                h.record(*v).unwrap();
            }
            let start = Duration::from_secs(second);
            hlog.write(tag, &h, start, Duration::from_secs(1)).unwrap();
            if !h.is_empty() {
                written.push((tag, start, h));
            }
        }
        hlog.flush().unwrap();
        let text = String::from_utf8(hlog.out).unwrap();
        assert!(
            text.contains("#[Histogram log format version 1.3]"),
            "{text}"
        );
        assert!(text.contains("#[StartTime: "), "{text}");

        let mut deserializer = Deserializer::new();
        let mut read = Vec::new();
        for entry in IntervalLogIterator::new(text.as_bytes()) {
            let LogEntry::Interval(i) = entry.unwrap() else {
                continue;
            };
            let raw = base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                i.encoded_histogram(),
            )
            .unwrap();
            let h: hdrhistogram::Histogram<u64> =
                deserializer.deserialize(&mut raw.as_slice()).unwrap();
            assert_eq!(i.duration(), Duration::from_secs(1));
            read.push((
                i.tag().unwrap().as_str().to_string(),
                i.start_timestamp(),
                h,
            ));
        }
        assert_eq!(read.len(), written.len(), "{text}");
        for ((tag, start, h), (read_tag, read_start, read_h)) in written.iter().zip(&read) {
            assert_eq!(read_tag, tag);
            assert_eq!(read_start, start);
            assert_eq!(read_h.len(), h.len(), "{tag}");
            assert_eq!(read_h.max(), h.max(), "{tag}");
            assert_eq!(read_h, h, "{tag}");
        }
    }
}
