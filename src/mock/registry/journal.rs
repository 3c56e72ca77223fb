//! The registry's journal: `registry.log` in the PKI directory, one JSON line per change.
//!
//! Every change appends the new state of the record it touched (or its removal) to a buffer
//! while the registry's lock is held, so the buffer's order is the order of the changes. A
//! thread writes the buffer out every [`FLUSH_INTERVAL`]: a `kill -9` loses at most that much
//! provisioning. At start the log is replayed, then rewritten as a snapshot (one line per live
//! record, written aside and renamed over it), so it grows with the registry and the changes of
//! one run, not with every run ever made on the directory.
//!
//! A write cut short by `kill -9` leaves a partial last line: it is skipped with a warning.
//! Any other line that does not parse is an error naming the file and line.
//!
//! One mock at a time journals into a directory: the journal is opened under an exclusive
//! `flock` on [`LOCK_FILE`], held for the registry's life. A second mock would replay a log
//! the first is still appending to and rename its snapshot over it; it is refused instead. The
//! kernel releases the lock when its holder dies, `kill -9` included, so a crash leaves no lock
//! to clear by hand.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{
    CertificateRecord, CertificateStatus, GroupRecord, Inner, Names, PolicyVersions, Registry,
    RegistryMode, ThingRecord, TokenRecord, TypeRecord, lock_inner,
};
use crate::iot::policy::PolicyDocument;

/// The journal's file name in the PKI directory.
pub const LOG_FILE: &str = "registry.log";

/// The lock file in the PKI directory (it holds the pid of the mock holding the lock).
pub const LOCK_FILE: &str = "mock.lock";

/// How often buffered changes are written out.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}:{line}: not a registry journal line ({message}); move the file away to start with an empty registry"
    )]
    Corrupt {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(
        "{}: in use by another running fleetstorm mock ({holder}); stop it, or give this one another PKI directory",
        dir.display()
    )]
    InUse { dir: PathBuf, holder: String },
}

/// One change, as written.
#[derive(Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(super) enum Line<'a> {
    Cert {
        #[serde(flatten)]
        record: &'a CertificateRecord,
        #[serde(skip_serializing_if = "str::is_empty")]
        pem: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        token: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        expires: Option<f64>,
    },
    Thing(&'a ThingRecord),
    Policy {
        name: &'a str,
        document: &'a serde_json::Value,
    },
    Group {
        name: &'a str,
        #[serde(flatten)]
        record: &'a GroupRecord,
    },
    ThingType {
        name: &'a str,
        #[serde(flatten)]
        record: &'a TypeRecord,
    },
    PolicyVersions {
        name: &'a str,
        #[serde(flatten)]
        record: &'a PolicyVersions,
    },
    /// A provisioning template as the control plane stores it (opaque to the registry).
    Template {
        name: &'a str,
        record: &'a serde_json::Value,
    },
    DropCert {
        id: &'a str,
    },
    DropThing {
        name: &'a str,
    },
    DropPolicy {
        name: &'a str,
    },
    DropGroup {
        name: &'a str,
    },
    DropThingType {
        name: &'a str,
    },
    DropTemplate {
        name: &'a str,
    },
}

/// One change, as read back.
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Read {
    Cert(CertRead),
    Thing(ThingRecord),
    Policy {
        name: String,
        document: serde_json::Value,
    },
    Group {
        name: String,
        #[serde(flatten)]
        record: GroupRecord,
    },
    ThingType {
        name: String,
        #[serde(flatten)]
        record: TypeRecord,
    },
    PolicyVersions {
        name: String,
        #[serde(flatten)]
        record: PolicyVersions,
    },
    Template {
        name: String,
        record: serde_json::Value,
    },
    DropCert {
        id: String,
    },
    DropThing {
        name: String,
    },
    DropPolicy {
        name: String,
    },
    DropGroup {
        name: String,
    },
    DropThingType {
        name: String,
    },
    DropTemplate {
        name: String,
    },
}

#[derive(Deserialize)]
struct CertRead {
    certificate_id: String,
    status: CertificateStatus,
    created_by: Option<String>,
    policies: Names,
    things: Names,
    created_at: f64,
    #[serde(default)]
    pem: String,
    token: Option<String>,
    expires: Option<f64>,
}

pub(super) fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn from_unix_seconds(s: f64) -> SystemTime {
    UNIX_EPOCH + Duration::try_from_secs_f64(s).unwrap_or_default()
}

impl Inner {
    /// Append `line` to the unwritten journal (nothing without a journal).
    pub(super) fn log_line(&mut self, line: &Line<'_>) {
        if let Some(log) = &mut self.log {
            // Serialising plain records into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *log, line);
            log.push(b'\n');
        }
    }

    pub(super) fn log_cert(
        &mut self,
        record: &CertificateRecord,
        token: Option<(&str, SystemTime)>,
    ) {
        if self.log.is_none() {
            return;
        }
        let pem = match self.mode {
            RegistryMode::Full => record.certificate_pem.as_str(),
            RegistryMode::Compact => "",
        };
        self.log_line(&Line::Cert {
            record,
            pem,
            token: token.map(|(t, _)| t),
            expires: token.map(|(_, e)| unix_seconds(e)),
        });
    }

    /// Log the current state of certificate `id`.
    pub(super) fn log_cert_id(&mut self, id: &str) {
        if self.log.is_none() {
            return;
        }
        if let Some(record) = self.certificates.get(id).cloned() {
            self.log_cert(&record, None);
        }
    }

    /// Log the current state of thing `name`.
    pub(super) fn log_thing(&mut self, name: &str) {
        if self.log.is_none() {
            return;
        }
        if let Some(record) = self.things.get(name).cloned() {
            self.log_line(&Line::Thing(&record));
        }
    }

    pub(super) fn log_policy(&mut self, name: &str, document: &serde_json::Value) {
        self.log_line(&Line::Policy { name, document });
    }

    /// Apply one line read back from the journal.
    fn replay(
        &mut self,
        line: Read,
        pending: &mut std::collections::HashMap<String, (String, f64)>,
    ) -> Result<(), String> {
        let compact = self.mode == RegistryMode::Compact;
        match line {
            Read::Cert(c) => {
                match (c.token, c.expires) {
                    (Some(token), Some(expires)) => {
                        pending.insert(c.certificate_id.clone(), (token, expires));
                    }
                    _ => {
                        pending.remove(&c.certificate_id);
                    }
                }
                let keep_details = !compact || c.status == CertificateStatus::PendingActivation;
                let created_by = match (compact, c.created_by) {
                    (false, Some(by)) => Some(self.creator(&by)),
                    _ => None,
                };
                let record = CertificateRecord {
                    certificate_id: c.certificate_id.clone(),
                    certificate_pem: if keep_details { c.pem } else { String::new() },
                    status: c.status,
                    created_by,
                    policies: self.shared_policies(c.policies),
                    things: c.things,
                    created_at: from_unix_seconds(c.created_at),
                };
                self.certificates.insert(c.certificate_id, record);
            }
            Read::Thing(mut t) => {
                if compact {
                    t.strip();
                }
                self.things.insert(t.thing_name.clone(), t);
            }
            Read::Policy { name, document } => {
                let parsed = PolicyDocument::parse(&document).map_err(|e| e.to_string())?;
                self.forget_versions(&name);
                self.policies.insert(name, (Arc::new(parsed), document));
            }
            Read::Group { name, record } => {
                self.thing_groups.insert(name, record);
            }
            Read::ThingType { name, record } => {
                self.thing_types.insert(name, record);
            }
            Read::PolicyVersions { name, record } => self.replay_versions(name, record),
            Read::Template { name, record } => {
                self.templates.insert(name, Some(record));
            }
            Read::DropGroup { name } => {
                self.thing_groups.remove(&name);
            }
            Read::DropThingType { name } => {
                self.thing_types.remove(&name);
            }
            Read::DropTemplate { name } => {
                self.templates.insert(name, None);
            }
            Read::DropCert { id } => {
                pending.remove(&id);
                self.certificates.remove(&id);
            }
            Read::DropThing { name } => {
                self.things.remove(&name);
            }
            Read::DropPolicy { name } => {
                self.policies.remove(&name);
                self.forget_versions(&name);
            }
        }
        Ok(())
    }

    /// The one shared copy of a policy set equal to `names`.
    pub(super) fn shared_policies(&mut self, names: Names) -> Names {
        match &self.last_policies {
            Some(last) if *last == names => last.clone(),
            _ => {
                self.last_policies = Some(names.clone());
                names
            }
        }
    }

    /// Every live record as journal lines: the snapshot a log is rewritten to at start.
    fn snapshot(&self, out: &mut impl Write) -> std::io::Result<()> {
        let mut line = |l: &Line<'_>| -> std::io::Result<()> {
            serde_json::to_writer(&mut *out, l)?;
            out.write_all(b"\n")
        };
        for (name, record) in &self.thing_groups {
            line(&Line::Group { name, record })?;
        }
        for (name, record) in &self.thing_types {
            line(&Line::ThingType { name, record })?;
        }
        for (name, (_, document)) in &self.policies {
            line(&Line::Policy { name, document })?;
            if let Some(record) = self.policy_versions.get(name) {
                line(&Line::PolicyVersions { name, record })?;
            }
        }
        for (name, record) in &self.templates {
            match record {
                Some(record) => line(&Line::Template { name, record })?,
                None => line(&Line::DropTemplate { name })?,
            }
        }
        let now_wall = SystemTime::now();
        let now = Instant::now();
        let tokens: std::collections::HashMap<&str, (&str, SystemTime)> = self
            .tokens
            .iter()
            .map(|(token, t)| {
                let left = t.expires_at.saturating_duration_since(now);
                (t.certificate_id.as_str(), (token.as_str(), now_wall + left))
            })
            .collect();
        for record in self.certificates.values() {
            let token = tokens.get(record.certificate_id.as_str()).copied();
            let pem = match self.mode {
                RegistryMode::Full => record.certificate_pem.as_str(),
                RegistryMode::Compact => "",
            };
            line(&Line::Cert {
                record,
                pem,
                token: token.map(|(t, _)| t),
                expires: token.map(|(_, e)| unix_seconds(e)),
            })?;
        }
        for record in self.things.values() {
            line(&Line::Thing(record))?;
        }
        Ok(())
    }
}

impl ThingRecord {
    /// Drop what a compact registry does not keep.
    pub(super) fn strip(&mut self) {
        self.attributes.clear();
        self.thing_groups = Names::default();
        self.thing_type_name = None;
        self.billing_group = None;
    }
}

/// Read `path` into `inner`. Returns the number of lines replayed.
fn load(path: &Path, inner: &mut Inner) -> Result<usize, JournalError> {
    let bytes = fs::read(path).map_err(|source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    // A file ending in a newline splits into a last, empty piece.
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let last = lines.len();
    let mut pending = std::collections::HashMap::new();
    let mut replayed = 0;
    for (i, raw) in lines.into_iter().enumerate() {
        let number = i + 1;
        // The journal writes no blank lines: one in the middle is damage, not a gap to skip
        // (the certificate it stood for would replay without its thing).
        let parsed = if raw.iter().all(u8::is_ascii_whitespace) {
            Err("a blank line".to_string())
        } else {
            serde_json::from_slice::<Read>(raw)
                .map_err(|e| e.to_string())
                .and_then(|line| inner.replay(line, &mut pending))
        };
        match parsed {
            Ok(()) => replayed += 1,
            Err(message) if number == last => {
                // The write `kill -9` cut short.
                tracing::warn!(
                    "{}:{number}: skipping an incomplete last line ({message})",
                    path.display()
                );
            }
            Err(message) => {
                return Err(JournalError::Corrupt {
                    path: path.to_path_buf(),
                    line: number,
                    message,
                });
            }
        }
    }
    // Ownership tokens come back with what is left of their lifetime; a certificate whose token
    // expired while the mock was down is deleted, as the sweep would have done.
    let now_wall = SystemTime::now();
    let now = Instant::now();
    for (certificate_id, (token, expires)) in pending {
        let still_pending = inner
            .certificates
            .get(&certificate_id)
            .is_some_and(|c| c.status == CertificateStatus::PendingActivation);
        if !still_pending {
            continue;
        }
        match from_unix_seconds(expires).duration_since(now_wall) {
            Ok(left) if !left.is_zero() => {
                inner.tokens.insert(
                    token,
                    TokenRecord {
                        certificate_id,
                        expires_at: now + left,
                    },
                );
            }
            _ => {
                inner.certificates.remove(&certificate_id);
            }
        }
    }
    Ok(replayed)
}

/// The writer thread of an open journal.
pub(super) struct Journal {
    path: PathBuf,
    /// The directory's lock, held while the registry lives (closing the file releases it).
    _lock: fs::File,
    stop: Mutex<Option<mpsc::Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Take the exclusive lock on `dir`'s [`LOCK_FILE`] without waiting, and write this process's
/// pid into it; a lock held by another process is [`JournalError::InUse`], naming its pid.
/// (`flock` by hand through rustix, already a dependency, rather than a locking crate: std's
/// `File::try_lock` is newer than this crate's `rust-version`.)
fn lock_dir(dir: &Path) -> Result<fs::File, JournalError> {
    use rustix::fs::{FlockOperation, flock};
    use std::io::{Read as _, Seek as _};
    let path = dir.join(LOCK_FILE);
    let io = |source| JournalError::Io {
        path: path.clone(),
        source,
    };
    // Not truncated on open: the holder's pid stays readable for the refusal's message.
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "its pid is not recorded".to_string(),
                pid => pid.to_string(),
            };
            return Err(JournalError::InUse {
                dir: dir.to_path_buf(),
                holder,
            });
        }
        Err(e) => return Err(io(e.into())),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "pid {}", std::process::id()).map_err(io)?;
    file.flush().map_err(io)?;
    Ok(file)
}

impl Registry {
    /// The registry journaled in `dir` (`registry.log`): what an earlier mock on this directory
    /// recorded, and from now on every change, written out at least every [`FLUSH_INTERVAL`].
    pub fn open(dir: &Path, mode: RegistryMode) -> Result<Registry, JournalError> {
        let path = dir.join(LOG_FILE);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| JournalError::Io { path, source }
        };
        let lock = lock_dir(dir)?;
        let mut inner = Inner {
            mode,
            ..Inner::default()
        };
        if path.exists() {
            let lines = load(&path, &mut inner)?;
            tracing::info!(
                "{}: {lines} changes replayed: {} certificates, {} things",
                path.display(),
                inner.certificates.len(),
                inner.things.len()
            );
        }
        let aside = dir.join(format!("{LOG_FILE}.new"));
        {
            let file = fs::File::create(&aside).map_err(io(&aside))?;
            let mut out = BufWriter::new(file);
            inner.snapshot(&mut out).map_err(io(&aside))?;
            let file = out.into_inner().map_err(|e| io(&aside)(e.into_error()))?;
            file.sync_all().map_err(io(&aside))?;
        }
        fs::rename(&aside, &path).map_err(io(&path))?;
        let file = fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        inner.log = Some(Vec::new());
        let inner = Arc::new(Mutex::new(inner));
        let (stop, stopped) = mpsc::channel();
        let thread = {
            let inner = inner.clone();
            let shown = path.clone();
            std::thread::Builder::new()
                .name("registry-journal".into())
                .spawn(move || write_out(&inner, file, &shown, &stopped))
                .map_err(io(&path))?
        };
        Ok(Registry {
            inner,
            journal: Some(Journal {
                path,
                _lock: lock,
                stop: Mutex::new(Some(stop)),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// The journal's file, when the registry has one.
    pub fn journal_path(&self) -> Option<&Path> {
        self.journal.as_ref().map(|j| j.path.as_path())
    }

    /// Write out what is buffered and stop the journal's thread; later changes are not
    /// journaled. Blocks for at most one write.
    pub fn close_journal(&self) {
        let Some(journal) = &self.journal else {
            return;
        };
        let stop = journal
            .stop
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(stop);
        let thread = journal
            .thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// The journal thread: write the buffer out every interval until told to stop (or the registry
/// is gone), then once more and sync.
fn write_out(inner: &Mutex<Inner>, mut file: fs::File, path: &Path, stop: &mpsc::Receiver<()>) {
    let mut failing = false;
    loop {
        let last = !matches!(
            stop.recv_timeout(FLUSH_INTERVAL),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        let buffer = {
            let mut inner = lock_inner(inner);
            let buffer = inner.log.as_mut().map(std::mem::take).unwrap_or_default();
            if last {
                inner.log = None;
            }
            buffer
        };
        if !buffer.is_empty() {
            match file.write_all(&buffer) {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!("{}: cannot write the registry journal: {e}", path.display());
                }
                Err(_) => {}
            }
        }
        if last {
            let _ = file.sync_data();
            return;
        }
    }
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
