//! `RUN_DIR/cleanup-progress.csv`: what the cleanups of a run finished, and where they ran.
//!
//! The first line names what the file was made against: `against,REGION,ACCOUNT,ENDPOINT`
//! (ENDPOINT last, so it may hold commas: the `--endpoint-url` as given, or `default` for the
//! SDK's endpoint of the Region; ACCOUNT empty when the control plane named none). Then one
//! line per finished item, `KIND,KEY,OUTCOME` (`certificate|thing|policy`,
//! `deleted|gone|kept`), and `policy,NAME,attached` for a policy found attached to one of the
//! run's certificates, written before it is detached, so a cleanup killed after the
//! certificates still deletes it. Appended and flushed line by line; a last line cut short (the
//! process was killed while writing it) is ignored, any other malformed line is an error.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::AwsError;

/// What one item's removal came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Deleted,
    /// Not found: removed earlier (or never created).
    Gone,
    /// A policy left in place (still attached elsewhere, or older than the run).
    Kept,
}

impl Outcome {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Outcome::Deleted => "deleted",
            Outcome::Gone => "gone",
            Outcome::Kept => "kept",
        }
    }

    pub(super) fn parse(s: &str) -> Option<Outcome> {
        [Outcome::Deleted, Outcome::Gone, Outcome::Kept]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// The kind of a removed item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Certificate,
    Thing,
    Policy,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Certificate => "certificate",
            Kind::Thing => "thing",
            Kind::Policy => "policy",
        }
    }
    pub(super) fn parse(s: &str) -> Option<Kind> {
        match s {
            "certificate" => Some(Kind::Certificate),
            "thing" => Some(Kind::Thing),
            "policy" => Some(Kind::Policy),
            _ => None,
        }
    }
}

/// The progress file inside a run folder.
pub const PROGRESS_FILE: &str = "cleanup-progress.csv";

/// Where a cleanup runs: endpoint, Region, account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Against {
    /// The `--endpoint-url` as given (without a trailing `/`), or `default`.
    pub endpoint: String,
    pub region: String,
    /// From the ARNs the control plane answers with; empty when it named none.
    pub account: String,
}

impl Against {
    fn line(&self) -> String {
        format!(
            "against,{},{},{}\n",
            self.region, self.account, self.endpoint
        )
    }

    fn parse(line: &str) -> Option<Against> {
        let mut fields = line.splitn(4, ',');
        match (fields.next(), fields.next(), fields.next(), fields.next()) {
            (Some("against"), Some(region), Some(account), Some(endpoint))
                if !region.is_empty() && !endpoint.is_empty() =>
            {
                Some(Against {
                    endpoint: endpoint.to_string(),
                    region: region.to_string(),
                    account: account.to_string(),
                })
            }
            _ => None,
        }
    }

    /// `endpoint E, Region R, account A` for messages.
    pub fn describe(&self) -> String {
        let account = if self.account.is_empty() {
            "unknown"
        } else {
            &self.account
        };
        format!(
            "endpoint {}, Region {}, account {account}",
            self.endpoint, self.region
        )
    }
}

/// What a progress file holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resume {
    /// What it was made against (`None`: no file, or one written before files named it).
    pub against: Option<Against>,
    /// Items finished.
    pub done: BTreeSet<(Kind, String)>,
    /// Policies found attached to the run's certificates.
    pub attached: BTreeSet<String>,
}

impl Resume {
    /// Whether the file records any work (an `against` line alone records none).
    pub fn is_empty(&self) -> bool {
        self.done.is_empty() && self.attached.is_empty()
    }
}

/// Read a progress file (missing: empty).
pub fn read(path: &Path) -> Result<Resume, AwsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Resume::default()),
        Err(e) => return Err(AwsError::Input(format!("{}: {e}", path.display()))),
    };
    let complete = text.rfind('\n').map_or("", |i| &text[..i]);
    let mut resume = Resume::default();
    let mut items = 0usize;
    for (i, line) in complete.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let bad = |what: &str| {
            AwsError::Input(format!(
                "{}: line {}: {what}, got {line:?}",
                path.display(),
                i + 1
            ))
        };
        if line.starts_with("against,") {
            if items > 0 || resume.against.is_some() {
                return Err(bad("an `against` line only comes first"));
            }
            resume.against = Some(
                Against::parse(line)
                    .ok_or_else(|| bad("expected against,REGION,ACCOUNT,ENDPOINT"))?,
            );
            continue;
        }
        items += 1;
        let parsed = line
            .split_once(',')
            .and_then(|(kind, rest)| Some((Kind::parse(kind)?, rest.rsplit_once(',')?)));
        match parsed {
            Some((Kind::Policy, (name, "attached"))) if !name.is_empty() => {
                resume.attached.insert(name.to_string());
            }
            Some((kind, (key, outcome)))
                if !key.is_empty() && Outcome::parse(outcome).is_some() =>
            {
                resume.done.insert((kind, key.to_string()));
            }
            _ => return Err(bad("expected KIND,KEY,OUTCOME")),
        }
    }
    Ok(resume)
}

/// Appends one line per finished item, flushed at once.
pub struct ProgressLog {
    file: Option<Mutex<std::fs::File>>,
    path: PathBuf,
}

impl ProgressLog {
    /// No file (`--prefix`: nothing to resume).
    pub fn none() -> ProgressLog {
        ProgressLog {
            file: None,
            path: PathBuf::new(),
        }
    }

    /// Append to `path`, first writing `against` when the file is new or empty, and dropping
    /// a torn last line (an item the killed cleanup had not finished recording: it is redone).
    pub fn open(path: &Path, against: &Against) -> Result<Self, AwsError> {
        let io = |e: std::io::Error| AwsError::io(path, e);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        let text = std::fs::read(path).map_err(io)?;
        let whole = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if whole < text.len() {
            file.set_len(whole as u64).map_err(io)?;
        }
        if whole == 0 {
            file.write_all(against.line().as_bytes())
                .and_then(|()| file.flush())
                .map_err(io)?;
        }
        Ok(ProgressLog {
            file: Some(Mutex::new(file)),
            path: path.to_path_buf(),
        })
    }

    fn append(&self, line: String) -> Result<(), String> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let mut f = file
            .lock()
            .map_err(|_| "progress log poisoned".to_string())?;
        f.write_all(line.as_bytes())
            .and_then(|()| f.flush())
            .map_err(|e| format!("{}: {e}", self.path.display()))
    }

    pub fn record(&self, kind: Kind, key: &str, outcome: Outcome) -> Result<(), String> {
        self.append(format!("{},{key},{}\n", kind.as_str(), outcome.as_str()))
    }

    /// A policy found attached to one of the run's certificates.
    pub fn attached(&self, policy: &str) -> Result<(), String> {
        self.append(format!("policy,{policy},attached\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::Code as _;

    fn here() -> Against {
        Against {
            endpoint: "http://127.0.0.1:1,x".into(),
            region: "us-east-1".into(),
            account: "123456789012".into(),
        }
    }

    #[test]
    fn progress_file_skips_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PROGRESS_FILE);
        std::fs::write(&path, "certificate,aa,deleted\nthing,t1,gone\npolicy,p").unwrap();
        let r = read(&path).unwrap();
        assert_eq!(r.done.len(), 2);
        assert!(r.done.contains(&(Kind::Certificate, "aa".into())));
        assert!(r.done.contains(&(Kind::Thing, "t1".into())));
        assert_eq!(r.against, None);
        assert!(read(&dir.path().join("none.csv")).unwrap().is_empty());
    }

    #[test]
    fn a_malformed_progress_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PROGRESS_FILE);
        for text in [
            "certificate,aa,deleted\nbogus\n",
            "certificate,aa,deleted\nthing,t,exploded\n",
            "certificate,aa,deleted\nagainst,r,a,e\n",
        ] {
            std::fs::write(&path, text).unwrap();
            let err = read(&path).unwrap_err();
            assert!(err.to_string().contains("line 2"), "{err}");
            assert_eq!(err.code(), 3);
        }
    }

    #[test]
    fn the_log_names_its_target_first_and_reads_back_with_commas_in_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PROGRESS_FILE);
        let log = ProgressLog::open(&path, &here()).unwrap();
        log.record(Kind::Certificate, "aa", Outcome::Deleted)
            .unwrap();
        log.attached("p,with=comma").unwrap();
        log.record(Kind::Policy, "p,with=comma", Outcome::Kept)
            .unwrap();
        drop(log);
        // A torn line, then a reopen: the torn line is dropped.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"thing,torn")
            .unwrap();
        let log = ProgressLog::open(&path, &here()).unwrap();
        log.record(Kind::Thing, "t", Outcome::Gone).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("against,us-east-1,123456789012,http://127.0.0.1:1,x\n"),
            "{text}"
        );
        assert_eq!(text.matches("against,").count(), 1, "{text}");
        let r = read(&path).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(r.against, Some(here()));
        assert_eq!(r.done.len(), 3, "{:?}", r.done);
        assert!(r.done.contains(&(Kind::Policy, "p,with=comma".into())));
        assert!(r.attached.contains("p,with=comma"));
    }
}
