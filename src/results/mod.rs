//! A results folder, read once for `report` and `compare`, with its errors.
//!
//! A run folder's `summary.json`, `timeseries.csv`, `failures.csv`, `latency.hlog` and
//! `scenario.toml`, or the run folders of a variants folder.

/// A results-file row type and its `COLUMNS` (the field names in order: the file's header),
/// from one declaration, so the columns are declared once for the writer and the readers.
macro_rules! csv_row {
    (
        $(#[$meta:meta])*
        pub struct $name:ident $(<$lt:lifetime>)? {
            $($(#[$field_meta:meta])* pub $field:ident: $ty:ty,)*
        }
    ) => {
        $(#[$meta])*
        pub struct $name $(<$lt>)? {
            $($(#[$field_meta])* pub $field: $ty,)*
        }

        impl $(<$lt>)? $name $(<$lt>)? {
            /// The file's columns, in order.
            pub const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),*];
        }
    };
}
use csv_row;

pub mod cloudwatch;
pub mod cost;
pub mod created;
pub mod devices;
pub mod failures;
pub mod hlog;
pub mod summary;
pub mod timeseries;

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;

pub use created::CreatedRow;
pub use devices::DeviceRow;
pub use failures::FailureRow;
pub use hlog::{TimedInterval, TimedLog, parse_timed};
pub use summary::{
    DeviceCounts, MergedFrom, RateChange, Scheduler, ShardSummary, Summary, Throughput,
};
pub use timeseries::Timeseries;

/// A results file that is missing or malformed (exit code 3).
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: malformed summary: {source}", path.display())]
    Summary {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: malformed interval log: {detail}", path.display())]
    Hlog { path: PathBuf, detail: String },
    #[error("{}: {detail}", path.display())]
    Invalid { path: PathBuf, detail: String },
    #[error(
        "{}: not a run folder (no summary.json in it, nor in any folder directly below it)",
        path.display()
    )]
    NotARun { path: PathBuf },
}

/// Interval histograms per `latency.hlog` tag, in time order.
pub type Intervals = BTreeMap<String, Vec<Histogram<u64>>>;

/// One run folder, read. The files a run writes as it goes may be missing (a run from an older
/// version, a folder copied in part): they are `None` here, and each user decides what it needs.
#[derive(Debug)]
pub struct RunResults {
    pub dir: PathBuf,
    /// The variant name, else the folder name.
    pub label: String,
    pub summary: Summary,
    pub timeseries: Option<Timeseries>,
    pub intervals: Option<Intervals>,
    /// `failures.csv`: (elapsed seconds, reason) per failure and dropped arrival.
    pub failures: Option<Vec<(f64, String)>>,
    /// `scenario.toml`, the scenario as run.
    pub scenario: Option<String>,
}

/// A CSV file the run streams, up to its last whole line: a run killed mid-write (`kill -9`)
/// can leave a last line cut short, and a finished run's files always end with a newline.
pub(crate) fn open(path: &Path) -> Result<std::io::Cursor<Vec<u8>>, ResultsError> {
    let mut bytes = read_bytes(path)?;
    if !bytes.ends_with(b"\n")
        && let Some(last) = bytes.iter().rposition(|&b| b == b'\n')
    {
        bytes.truncate(last + 1);
    }
    Ok(std::io::Cursor::new(bytes))
}

/// A streamed CSV file (see [`open`]) and its header.
pub(crate) type CsvReader = csv::Reader<std::io::Cursor<Vec<u8>>>;

/// A streamed CSV file opened (see [`open`]), with its header read.
pub(crate) fn open_csv(path: &Path) -> Result<(CsvReader, Vec<String>), ResultsError> {
    let mut reader = csv::Reader::from_reader(open(path)?);
    let header = reader
        .headers()
        .map_err(|e| ResultsError::Invalid {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?
        .iter()
        .map(str::to_string)
        .collect();
    Ok((reader, header))
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, ResultsError> {
    std::fs::read(path).map_err(|source| ResultsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// `latency.hlog` with each interval's time (see [`parse_timed`]).
pub fn read_hlog(path: &Path) -> Result<TimedLog, ResultsError> {
    parse_timed(path, &read_bytes(path)?)
}

/// A missing file as `None`; any other error stays one.
fn optional<T>(result: Result<T, ResultsError>) -> Result<Option<T>, ResultsError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(ResultsError::Read { source, .. }) if source.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn read_summary(path: &Path) -> Result<Summary, ResultsError> {
    let mut summary: Summary =
        serde_json::from_slice(&read_bytes(path)?).map_err(|source| ResultsError::Summary {
            path: path.to_path_buf(),
            source,
        })?;
    summary.out_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(summary)
}

impl RunResults {
    pub fn read(dir: &Path) -> Result<RunResults, ResultsError> {
        let summary = read_summary(&dir.join("summary.json"))?;
        let timeseries = optional(Timeseries::read(&dir.join("timeseries.csv")))?;
        let path = dir.join("latency.hlog");
        let intervals = match optional(read_bytes(&path))? {
            Some(bytes) => Some(parse_hlog(&path, &bytes)?),
            None => None,
        };
        let failures = optional(failures::read(&dir.join(failures::FILE_NAME)))?;
        let scenario = optional(std::fs::read_to_string(dir.join("scenario.toml")).map_err(
            |source| ResultsError::Read {
                path: dir.join("scenario.toml"),
                source,
            },
        ))?;
        let label = summary
            .variant
            .clone()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| {
                dir.file_name().map_or_else(
                    || dir.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                )
            });
        Ok(RunResults {
            dir: dir.to_path_buf(),
            label,
            summary,
            timeseries,
            intervals,
            failures,
            scenario,
        })
    }

    /// The error for a results file of this run that a command needs and the run does not have.
    pub fn missing(&self, file: &str) -> ResultsError {
        ResultsError::Read {
            path: self.dir.join(file),
            source: std::io::Error::new(ErrorKind::NotFound, "no such file"),
        }
    }

    /// Per `latency.hlog` tag, the interval histograms merged (the log is required).
    pub fn merged(&self) -> Result<BTreeMap<String, Histogram<u64>>, ResultsError> {
        let intervals = self
            .intervals
            .as_ref()
            .ok_or_else(|| self.missing("latency.hlog"))?;
        let mut merged = BTreeMap::new();
        for (tag, intervals) in intervals {
            let mut h = crate::metrics::histogram();
            for interval in intervals {
                h.add(interval).map_err(|e| ResultsError::Hlog {
                    path: self.dir.join("latency.hlog"),
                    detail: format!("tag {tag}: {e:?}"),
                })?;
            }
            merged.insert(tag.clone(), h);
        }
        Ok(merged)
    }

    /// The scenario's bootstrap `seed` from `scenario.toml` (1 when absent).
    pub fn seed(&self) -> u64 {
        self.scenario
            .as_deref()
            .and_then(|text| text.parse::<toml::Table>().ok())
            .and_then(|t| t.get("seed").and_then(toml::Value::as_integer))
            .map_or(1, |s| s as u64)
    }
}

/// The notes on incomplete runs (`"complete": false`: killed, or still running) in a run folder
/// or the run folders directly below it; a folder that cannot be read gives none (the command
/// reading it says why).
pub fn incomplete_notes(dir: &Path) -> Vec<String> {
    let note = |dir: &Path| {
        let summary = read_summary(&dir.join("summary.json")).ok()?;
        let label = dir.file_name()?.to_string_lossy().into_owned();
        summary.incomplete_note(&label)
    };
    if dir.join("summary.json").is_file() {
        return note(dir).into_iter().collect();
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs.iter().filter_map(|d| note(d)).collect()
}

/// Read run folders in the order given.
pub fn read_runs(dirs: &[PathBuf]) -> Result<Vec<RunResults>, ResultsError> {
    dirs.iter().map(|d| RunResults::read(d)).collect()
}

/// What a folder given to `fleetstorm report` holds.
#[derive(Debug)]
pub enum Folder {
    Run(Box<RunResults>),
    /// The run folders directly below it, in the order they ran.
    Variants(Vec<RunResults>),
}

/// A run folder (any run file in it: a missing `summary.json` is then named as such), else the
/// run folders directly below it.
pub fn read_folder(dir: &Path) -> Result<Folder, ResultsError> {
    let run_files = [
        "summary.json",
        "timeseries.csv",
        "latency.hlog",
        "failures.csv",
    ];
    if run_files.iter().any(|f| dir.join(f).exists()) {
        return Ok(Folder::Run(Box::new(RunResults::read(dir)?)));
    }
    if !dir.is_dir() {
        return Err(ResultsError::Read {
            path: dir.to_path_buf(),
            source: std::io::Error::new(ErrorKind::NotFound, "no such folder"),
        });
    }
    let entries = std::fs::read_dir(dir).map_err(|source| ResultsError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut runs = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.join("summary.json").is_file() {
            runs.push(RunResults::read(&path)?);
        }
    }
    if runs.is_empty() {
        return Err(ResultsError::NotARun {
            path: dir.to_path_buf(),
        });
    }
    runs.sort_by(|a, b| (&a.summary.started_at, &a.dir).cmp(&(&b.summary.started_at, &b.dir)));
    Ok(Folder::Variants(runs))
}

/// The interval histograms of an HdrHistogram interval log, per tag, in time order. A last line
/// cut short (a run killed mid-write) is ignored.
fn parse_hlog(path: &Path, bytes: &[u8]) -> Result<Intervals, ResultsError> {
    let mut tagged: BTreeMap<String, Vec<(std::time::Duration, Histogram<u64>)>> = BTreeMap::new();
    for i in hlog::parse_timed(path, bytes)?.intervals {
        tagged
            .entry(i.tag)
            .or_default()
            .push((i.start, i.histogram));
    }
    Ok(tagged
        .into_iter()
        .map(|(tag, mut v)| {
            v.sort_by_key(|(start, _)| *start);
            (tag, v.into_iter().map(|(_, h)| h).collect())
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUMMARY: &str = r#"{"variant": "fast", "devices": {"failed": 2}, "throughput": {"provisioned_per_s": 9.5},
        "success_rate": 95.0, "stages": {"register_thing": {"count": 3, "p99_ms": 12.5}}, "unknown": 1}"#;

    #[test]
    fn a_run_without_its_streamed_files_reads_and_names_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("summary.json"), SUMMARY).unwrap();
        let run = RunResults::read(dir.path()).unwrap();
        assert_eq!(run.label, "fast");
        assert_eq!(run.summary.devices.failed, 2);
        assert_eq!(run.summary.stages["register_thing"].latency.p99_ms, 12.5);
        assert_eq!(run.summary.stages["register_thing"].service.count, 0);
        assert!(run.timeseries.is_none() && run.intervals.is_none() && run.failures.is_none());
        assert_eq!(run.seed(), 1);
        let err = run.merged().unwrap_err();
        assert!(matches!(err, ResultsError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("latency.hlog"), "{err}");

        std::fs::write(
            dir.path().join("failures.csv"),
            "elapsed_s,reason\n1.5,x\nsoon,y\n",
        )
        .unwrap();
        let err = RunResults::read(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("failures.csv") && err.contains("line 3") && err.contains("`elapsed_s`"),
            "{err}"
        );
    }

    #[test]
    fn a_csv_line_cut_short_by_a_kill_is_ignored_and_an_incomplete_run_is_noted() {
        let dir = tempfile::tempdir().unwrap();
        let summary = SUMMARY.replace(
            "\"unknown\": 1",
            "\"complete\": false, \"duration_s\": 12.0",
        );
        std::fs::write(dir.path().join("summary.json"), summary).unwrap();
        std::fs::write(
            dir.path().join("failures.csv"),
            "elapsed_s,seq,client_id,reason\n1.5,1,a,x\n2.5,2,b,y\n3.",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("timeseries.csv"),
            "elapsed_s,offered,started,completed,failed\n1.0,1,1,1,0\n2.0,1,",
        )
        .unwrap();
        let run = RunResults::read(dir.path()).unwrap();
        assert_eq!(run.failures.as_ref().unwrap().len(), 2);
        assert!(!run.summary.complete);
        let notes = incomplete_notes(dir.path());
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("INCOMPLETE") && notes[0].contains("12 s"),
            "{notes:?}"
        );
        // An older summary without the field was written at the end: complete.
        std::fs::write(dir.path().join("summary.json"), SUMMARY).unwrap();
        assert!(RunResults::read(dir.path()).unwrap().summary.complete);
        assert!(incomplete_notes(dir.path()).is_empty());
    }

    #[test]
    fn a_variants_folder_reads_its_runs_in_the_order_they_ran() {
        let parent = tempfile::tempdir().unwrap();
        for (name, started) in [("b", "2026-01-01T00:00:00Z"), ("a", "2026-01-02T00:00:00Z")] {
            let dir = parent.path().join(name);
            std::fs::create_dir_all(&dir).unwrap();
            let summary = SUMMARY.replace(
                "\"variant\": \"fast\"",
                &format!("\"started_at\": \"{started}\""),
            );
            std::fs::write(dir.join("summary.json"), summary).unwrap();
        }
        std::fs::create_dir_all(parent.path().join("not-a-run")).unwrap();
        let Folder::Variants(runs) = read_folder(parent.path()).unwrap() else {
            panic!("not read as a variants folder");
        };
        let labels: Vec<&str> = runs.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["b", "a"]);
        let err = read_folder(&parent.path().join("not-a-run")).unwrap_err();
        assert!(matches!(err, ResultsError::NotARun { .. }), "{err:?}");
    }
}
