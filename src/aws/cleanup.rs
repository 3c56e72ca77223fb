//! `fleetstorm aws cleanup`: remove exactly what a run created, paced, idempotent and resumable.
//!
//! Order: for every certificate, detach its policies and things, set it INACTIVE and delete it;
//! then delete the things (after detaching anything still attached); then the per-device policies
//! the template created, only those named in `created.csv` that now have no target and were not
//! created before the run. NotFound counts as done. Each finished item is appended (and flushed)
//! to `RUN_DIR/cleanup-progress.csv`, which a later cleanup reads to skip it.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use aws_sdk_iot::Client;
use aws_sdk_iot::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_iot::types::CertificateStatus;
use futures_util::StreamExt;

use super::created::{self, Certificate, Created};
use super::pace::{Api, Backoff, CallError, Pacer};
use super::progress::{Counters, Progress};
use super::{AwsError, Connection, HasStatus};

/// The progress file inside a run folder.
pub const PROGRESS_FILE: &str = "cleanup-progress.csv";

/// A policy whose AWS creation date is this much older than the run's first record predates it
/// (the slack covers clock skew between this machine and AWS).
const PREDATES_SLACK_S: f64 = 300.0;

#[derive(Debug, Clone)]
pub struct CleanupOptions {
    pub conn: Connection,
    /// The run folder (with `created.csv`); `None` with `prefix`.
    pub run_dir: Option<PathBuf>,
    /// Things whose names start with this (and their certificates), for a run whose folder is lost.
    pub prefix: Option<String>,
    pub dry_run: bool,
    /// Items in flight at once.
    pub concurrency: usize,
    /// Requests per second per API at most (below the quota defaults anyway).
    pub max_tps: Option<f64>,
}

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
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Deleted => "deleted",
            Outcome::Gone => "gone",
            Outcome::Kept => "kept",
        }
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
    fn parse(s: &str) -> Option<Kind> {
        match s {
            "certificate" => Some(Kind::Certificate),
            "thing" => Some(Kind::Thing),
            "policy" => Some(Kind::Policy),
            _ => None,
        }
    }
}

/// Counts per kind: deleted, gone, kept, failed; plus items skipped as done by an earlier cleanup.
#[derive(Debug, Default)]
pub struct Tally {
    counts: Mutex<std::collections::BTreeMap<(Kind, &'static str), u64>>,
    pub failures: Mutex<Vec<String>>,
}

impl Tally {
    fn add(&self, kind: Kind, what: &'static str) {
        if let Ok(mut c) = self.counts.lock() {
            *c.entry((kind, what)).or_default() += 1;
        }
    }

    pub fn get(&self, kind: Kind, what: &str) -> u64 {
        self.counts
            .lock()
            .map(|c| {
                c.iter()
                    .filter(|((k, w), _)| *k == kind && *w == what)
                    .map(|(_, n)| *n)
                    .sum()
            })
            .unwrap_or(0)
    }

    pub fn failed(&self) -> usize {
        self.failures.lock().map_or(0, |f| f.len())
    }
}

/// The end of a cleanup.
#[derive(Debug)]
pub struct CleanupReport {
    pub tally: Tally,
    pub calls: u64,
    pub throttled: u64,
    pub retried: u64,
}

impl CleanupReport {
    /// The final count, one line per kind.
    pub fn render(&self) -> String {
        let t = &self.tally;
        let mut out = String::from("cleanup:\n");
        for kind in [Kind::Certificate, Kind::Thing, Kind::Policy] {
            out.push_str(&format!(
                "  {:<12} {} deleted, {} already gone, {} kept, {} skipped (done earlier), {} failed\n",
                match kind {
                    Kind::Certificate => "certificates",
                    Kind::Thing => "things",
                    Kind::Policy => "policies",
                },
                t.get(kind, "deleted"),
                t.get(kind, "gone"),
                t.get(kind, "kept"),
                t.get(kind, "skipped"),
                t.get(kind, "failed"),
            ));
        }
        out.push_str(&format!(
            "  {} API calls, {} throttled answers (retried after backing off), {} other retries",
            self.calls, self.throttled, self.retried
        ));
        out
    }
}

/// What to remove.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    pub created: Created,
    /// Finished in an earlier cleanup (from the progress file).
    pub done: BTreeSet<(Kind, String)>,
    /// Policies may be deleted (run-folder mode only: `--prefix` has no record of them).
    pub policies_allowed: bool,
}

/// Read `RUN_DIR/created.csv` and `RUN_DIR/cleanup-progress.csv`.
pub fn load_run(run_dir: &Path) -> Result<Targets, AwsError> {
    let records = created::read(&run_dir.join(created::FILE_NAME))?;
    let done = read_progress(&run_dir.join(PROGRESS_FILE))?;
    Ok(Targets {
        created: Created::from_records(&records),
        done,
        policies_allowed: true,
    })
}

/// The items a progress file lists as finished. A last line cut short (the process was killed
/// while writing it) is ignored; any other malformed line is an error naming the line.
pub fn read_progress(path: &Path) -> Result<BTreeSet<(Kind, String)>, AwsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(AwsError::Input(format!("{}: {e}", path.display()))),
    };
    let complete = text.rfind('\n').map_or("", |i| &text[..i]);
    let mut done = BTreeSet::new();
    for (i, line) in complete.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let mut fields = line.splitn(3, ',');
        let parsed = match (fields.next(), fields.next(), fields.next()) {
            (Some(kind), Some(key), Some(_outcome)) => Kind::parse(kind).map(|k| (k, key)),
            _ => None,
        };
        let Some((kind, key)) = parsed else {
            return Err(AwsError::Input(format!(
                "{}: line {}: expected KIND,KEY,OUTCOME, got {line:?}",
                path.display(),
                i + 1
            )));
        };
        done.insert((kind, key.to_string()));
    }
    Ok(done)
}

/// Appends one line per finished item, flushed at once.
struct ProgressLog {
    file: Option<Mutex<std::fs::File>>,
    path: PathBuf,
}

impl ProgressLog {
    fn open(path: Option<PathBuf>) -> Result<Self, AwsError> {
        let Some(path) = path else {
            return Ok(ProgressLog {
                file: None,
                path: PathBuf::new(),
            });
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| AwsError::io(&path, e))?;
        Ok(ProgressLog {
            file: Some(Mutex::new(file)),
            path,
        })
    }

    fn record(&self, kind: Kind, key: &str, outcome: Outcome) -> Result<(), String> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let line = format!("{},{key},{}\n", kind.as_str(), outcome.as_str());
        let mut f = file
            .lock()
            .map_err(|_| "progress log poisoned".to_string())?;
        f.write_all(line.as_bytes())
            .and_then(|()| f.flush())
            .map_err(|e| format!("{}: {e}", self.path.display()))
    }
}

/// Shared by every worker of one cleanup.
struct Ctx<'a> {
    iot: &'a Client,
    pacer: &'a Pacer,
    log: &'a ProgressLog,
    tally: &'a Tally,
    counters: &'a Counters,
}

impl Ctx<'_> {
    fn finish(&self, kind: Kind, key: &str, result: Result<Outcome, String>) {
        self.counters.finished.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(outcome) => {
                self.tally.add(kind, outcome.as_str());
                if let Err(e) = self.log.record(kind, key, outcome) {
                    self.fail(kind, key, e);
                }
            }
            Err(e) => self.fail(kind, key, e),
        }
    }

    fn fail(&self, kind: Kind, key: &str, message: String) {
        self.tally.add(kind, "failed");
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        let line = format!("{} {key}: {message}", kind.as_str());
        crate::tui::log_line(format!("fleetstorm: cleanup: {line}"));
        if let Ok(mut f) = self.tally.failures.lock() {
            f.push(line);
        }
    }
}

/// Run a cleanup. Prints the plan (dry run) or a progress bar on stderr, and returns the counts.
pub async fn cleanup(opts: &CleanupOptions) -> Result<CleanupReport, AwsError> {
    if opts.concurrency == 0 {
        return Err(AwsError::Usage("--concurrency: must be at least 1".into()));
    }
    let mut targets = match (&opts.run_dir, &opts.prefix) {
        (Some(dir), None) => load_run(dir)?,
        (None, Some(_)) => Targets::default(),
        _ => {
            return Err(AwsError::Usage(
                "give either RUN_DIR or --prefix PREFIX".into(),
            ));
        }
    };
    if opts.dry_run && opts.prefix.is_none() {
        print_plan(&targets);
        return Ok(empty_report());
    }
    let config = opts.conn.load().await?;
    let iot = Client::new(&config);
    let pacer = Pacer::new(
        super::pace::DEFAULT_FRACTION,
        opts.max_tps,
        Backoff::default(),
    );
    if let Some(prefix) = &opts.prefix {
        targets.created = list_prefix(&iot, &pacer, prefix).await?;
        if opts.dry_run {
            print_plan(&targets);
            return Ok(empty_report());
        }
    }
    let log = ProgressLog::open(opts.run_dir.as_ref().map(|d| d.join(PROGRESS_FILE)))?;
    let tally = Tally::default();
    let counters = Arc::new(Counters::default());
    let ctx = Ctx {
        iot: &iot,
        pacer: &pacer,
        log: &log,
        tally: &tally,
        counters: &counters,
    };
    let c = &targets.created;
    let skip = |kind: Kind, key: &str| targets.done.contains(&(kind, key.to_string()));
    let certs: Vec<&Certificate> = c
        .certificates
        .iter()
        .filter(|x| !skip(Kind::Certificate, &x.id))
        .collect();
    let things: Vec<&String> = c.things.iter().filter(|t| !skip(Kind::Thing, t)).collect();
    let policies: Vec<&String> = if targets.policies_allowed {
        c.policies
            .iter()
            .filter(|p| !skip(Kind::Policy, p))
            .collect()
    } else {
        Vec::new()
    };
    for (kind, n) in [
        (Kind::Certificate, c.certificates.len() - certs.len()),
        (Kind::Thing, c.things.len() - things.len()),
        (
            Kind::Policy,
            c.policies.len().saturating_sub(policies.len()),
        ),
    ] {
        for _ in 0..n {
            if targets.policies_allowed || kind != Kind::Policy {
                tally.add(kind, "skipped");
            }
        }
    }
    let total = (certs.len() + things.len() + policies.len()) as u64;
    let bar = Progress::start(total, counters.clone());
    let n = opts.concurrency;
    futures_util::stream::iter(certs)
        .for_each_concurrent(n, |cert| {
            let ctx = &ctx;
            async move {
                let known = c.certificate_things.get(&cert.id);
                let known: Vec<&str> = known.into_iter().flatten().map(String::as_str).collect();
                let r = remove_certificate(ctx.iot, ctx.pacer, cert, &known).await;
                ctx.finish(Kind::Certificate, &cert.id, r.map_err(|e| e.to_string()));
            }
        })
        .await;
    futures_util::stream::iter(things)
        .for_each_concurrent(n, |thing| {
            let ctx = &ctx;
            async move {
                let r = remove_thing(ctx.iot, ctx.pacer, thing).await;
                ctx.finish(Kind::Thing, thing, r.map_err(|e| e.to_string()));
            }
        })
        .await;
    let earliest = c.earliest;
    futures_util::stream::iter(policies)
        .for_each_concurrent(n, |policy| {
            let ctx = &ctx;
            async move {
                let r = remove_policy(ctx.iot, ctx.pacer, policy, earliest).await;
                ctx.finish(Kind::Policy, policy, r);
            }
        })
        .await;
    bar.finish().await;
    Ok(CleanupReport {
        tally,
        calls: pacer.calls.load(Ordering::Relaxed),
        throttled: pacer.throttled.load(Ordering::Relaxed),
        retried: pacer.retried.load(Ordering::Relaxed),
    })
}

fn empty_report() -> CleanupReport {
    CleanupReport {
        tally: Tally::default(),
        calls: 0,
        throttled: 0,
        retried: 0,
    }
}

/// The dry run's list: everything a cleanup would remove, in order.
fn print_plan(t: &Targets) {
    let c = &t.created;
    let done = |kind: Kind, key: &str| {
        if t.done.contains(&(kind, key.to_string())) {
            " (done by an earlier cleanup: skipped)"
        } else {
            ""
        }
    };
    println!(
        "dry run: would remove {} certificates, {} things{}; nothing is sent",
        c.certificates.len(),
        c.things.len(),
        if t.policies_allowed {
            format!(", and up to {} policies", c.policies.len())
        } else {
            String::new()
        }
    );
    for cert in &c.certificates {
        println!(
            "  certificate {}: detach policies and things, set INACTIVE, delete{}",
            cert.id,
            done(Kind::Certificate, &cert.id)
        );
    }
    for thing in &c.things {
        println!(
            "  thing {thing}: detach principals, delete{}",
            done(Kind::Thing, thing)
        );
    }
    if t.policies_allowed {
        for policy in &c.policies {
            println!(
                "  policy {policy}: delete if it has no other target and is not older than the run{}",
                done(Kind::Policy, policy)
            );
        }
    } else if !c.certificates.is_empty() {
        println!("  policies: kept (--prefix has no record of which policies the run created)");
    }
}

/// Things whose names start with `prefix`, and the certificates attached to them.
async fn list_prefix(iot: &Client, pacer: &Pacer, prefix: &str) -> Result<Created, AwsError> {
    let fail = |e: CallError| AwsError::Runtime(e.to_string());
    let mut created = Created::default();
    let names = all_pages(
        pacer,
        Api::ListThings,
        |t| iot.list_things().max_results(250).set_next_token(t).send(),
        |page| {
            let names = page.things().iter().filter_map(|t| t.thing_name());
            (
                names.map(str::to_string).collect(),
                page.next_token().map(str::to_string),
            )
        },
    )
    .await
    .map_err(fail)?;
    created
        .things
        .extend(names.into_iter().filter(|n| n.starts_with(prefix)));
    for thing in created.things.clone() {
        for principal in thing_principals(iot, pacer, &thing).await.map_err(fail)? {
            if let Some(id) = certificate_id(&principal) {
                created
                    .certificate_things
                    .entry(id.to_string())
                    .or_default()
                    .insert(thing.clone());
                created.certificates.insert(Certificate {
                    id: id.to_string(),
                    arn: principal,
                });
            }
        }
    }
    Ok(created)
}

/// The certificate ID in a certificate ARN (`arn:aws:iot:REGION:ACCOUNT:cert/ID`).
pub fn certificate_id(arn: &str) -> Option<&str> {
    arn.split_once(":cert/")
        .map(|(_, id)| id)
        .filter(|id| !id.is_empty())
}

/// Every principal attached to `thing` (empty when the thing is gone).
async fn thing_principals(
    iot: &Client,
    pacer: &Pacer,
    thing: &str,
) -> Result<Vec<String>, CallError> {
    all_pages(
        pacer,
        Api::ListThingPrincipals,
        |t| {
            iot.list_thing_principals()
                .thing_name(thing)
                .set_next_token(t)
                .send()
        },
        |page| {
            (
                page.principals().to_vec(),
                page.next_token().map(str::to_string),
            )
        },
    )
    .await
}

/// Every item of a paginated list call (`fetch` gets the page token; `split` takes a page's
/// items and the next token). A list whose subject is gone is empty.
async fn all_pages<P, E, R, F, Fut>(
    pacer: &Pacer,
    api: Api,
    mut fetch: F,
    split: impl Fn(&P) -> (Vec<String>, Option<String>),
) -> Result<Vec<String>, CallError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<P, SdkError<E, R>>>,
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: HasStatus + std::fmt::Debug,
{
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let t = token.clone();
        let Some(page) = pacer.call(api, &[], || fetch(t.clone())).await? else {
            break;
        };
        let (more, next) = split(&page);
        items.extend(more);
        token = next;
        if token.is_none() {
            break;
        }
    }
    Ok(items)
}

/// Detach every policy and thing from `cert`, deactivate it and delete it. `known_things`: the
/// things it is recorded with, detached even where ListPrincipalThings is not served (the mock).
pub async fn remove_certificate(
    iot: &Client,
    pacer: &Pacer,
    cert: &Certificate,
    known_things: &[&str],
) -> Result<Outcome, CallError> {
    // AWS's MQTT responses carry no ARN: created.csv has one only when the run knew the account
    // and Region. Otherwise DescribeCertificate gives it (NotFound: removed earlier).
    let described;
    let arn = if cert.arn.is_empty() {
        let found = pacer
            .call(Api::DescribeCertificate, &[], || {
                iot.describe_certificate().certificate_id(&cert.id).send()
            })
            .await?;
        let Some(found) = found else {
            return Ok(Outcome::Gone);
        };
        described = found
            .certificate_description()
            .and_then(|d| d.certificate_arn())
            .unwrap_or_default()
            .to_string();
        described.as_str()
    } else {
        cert.arn.as_str()
    };
    let policies = all_pages(
        pacer,
        Api::ListAttachedPolicies,
        |m| {
            iot.list_attached_policies()
                .target(arn)
                .page_size(250)
                .set_marker(m)
                .send()
        },
        |page| {
            let names = page.policies().iter().filter_map(|p| p.policy_name());
            (
                names.map(str::to_string).collect(),
                page.next_marker().map(str::to_string),
            )
        },
    )
    .await?;
    for policy in &policies {
        pacer
            .call(Api::DetachPolicy, &[], || {
                iot.detach_policy().policy_name(policy).target(arn).send()
            })
            .await?;
    }
    let mut things = all_pages(
        pacer,
        Api::ListPrincipalThings,
        |t| {
            iot.list_principal_things()
                .principal(arn)
                .set_next_token(t)
                .send()
        },
        |page| {
            (
                page.things().to_vec(),
                page.next_token().map(str::to_string),
            )
        },
    )
    .await?;
    things.extend(known_things.iter().map(|t| t.to_string()));
    things.sort();
    things.dedup();
    for thing in &things {
        pacer
            .call(Api::DetachThingPrincipal, &[], || {
                iot.detach_thing_principal()
                    .thing_name(thing)
                    .principal(arn)
                    .send()
            })
            .await?;
    }
    // A REVOKED certificate cannot go to INACTIVE; it can be deleted as it is.
    let updated = pacer
        .call(Api::UpdateCertificate, &[], || {
            iot.update_certificate()
                .certificate_id(&cert.id)
                .new_status(CertificateStatus::Inactive)
                .send()
        })
        .await;
    match updated {
        Ok(None) => return Ok(Outcome::Gone),
        Ok(Some(_)) => {}
        Err(e) if e.code.as_deref() == Some("CertificateStateException") => {}
        Err(e) => return Err(e),
    }
    let deleted = pacer
        .call(
            Api::DeleteCertificate,
            &["CertificateStateException"],
            || iot.delete_certificate().certificate_id(&cert.id).send(),
        )
        .await?;
    Ok(if deleted.is_some() {
        Outcome::Deleted
    } else {
        Outcome::Gone
    })
}

/// Detach whatever is still attached to `thing` and delete it.
pub async fn remove_thing(iot: &Client, pacer: &Pacer, thing: &str) -> Result<Outcome, CallError> {
    for principal in thing_principals(iot, pacer, thing).await? {
        pacer
            .call(Api::DetachThingPrincipal, &[], || {
                iot.detach_thing_principal()
                    .thing_name(thing)
                    .principal(&principal)
                    .send()
            })
            .await?;
    }
    // AWS refuses to delete a thing whose principals are still detaching (InvalidRequest).
    let deleted = pacer
        .call(Api::DeleteThing, &["InvalidRequestException"], || {
            iot.delete_thing().thing_name(thing).send()
        })
        .await?;
    Ok(if deleted.is_some() {
        Outcome::Deleted
    } else {
        Outcome::Gone
    })
}

/// Delete `policy` unless it is older than the run (`earliest`, seconds since the epoch) or
/// still has a target.
async fn remove_policy(
    iot: &Client,
    pacer: &Pacer,
    policy: &str,
    earliest: Option<f64>,
) -> Result<Outcome, String> {
    let Some(got) = pacer
        .call(Api::GetPolicy, &[], || {
            iot.get_policy().policy_name(policy).send()
        })
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(Outcome::Gone);
    };
    if let (Some(created), Some(earliest)) = (got.creation_date(), earliest)
        && (created.as_secs_f64()) < earliest - PREDATES_SLACK_S
    {
        return Ok(Outcome::Kept);
    }
    let Some(targets) = pacer
        .call(Api::ListTargetsForPolicy, &[], || {
            iot.list_targets_for_policy()
                .policy_name(policy)
                .page_size(1)
                .send()
        })
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(Outcome::Gone);
    };
    if !targets.targets().is_empty() {
        return Ok(Outcome::Kept);
    }
    let deleted = pacer
        .call(Api::DeletePolicy, &[], || {
            iot.delete_policy().policy_name(policy).send()
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(if deleted.is_some() {
        Outcome::Deleted
    } else {
        Outcome::Gone
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::Code as _;

    #[test]
    fn progress_file_skips_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PROGRESS_FILE);
        std::fs::write(&path, "certificate,aa,deleted\nthing,t1,gone\npolicy,p").unwrap();
        let done = read_progress(&path).unwrap();
        assert_eq!(done.len(), 2);
        assert!(done.contains(&(Kind::Certificate, "aa".into())));
        assert!(done.contains(&(Kind::Thing, "t1".into())));
        assert!(
            read_progress(&dir.path().join("none.csv"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_malformed_progress_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PROGRESS_FILE);
        std::fs::write(&path, "certificate,aa,deleted\nbogus\n").unwrap();
        let err = read_progress(&path).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert_eq!(err.code(), 3);
    }

    #[test]
    fn the_progress_log_appends_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PROGRESS_FILE);
        let log = ProgressLog::open(Some(path.clone())).unwrap();
        log.record(Kind::Certificate, "aa", Outcome::Deleted)
            .unwrap();
        log.record(Kind::Policy, "p", Outcome::Kept).unwrap();
        drop(log);
        let log = ProgressLog::open(Some(path.clone())).unwrap();
        log.record(Kind::Thing, "t", Outcome::Gone).unwrap();
        assert_eq!(read_progress(&path).unwrap().len(), 3);
    }

    #[test]
    fn certificate_ids_come_from_arns() {
        assert_eq!(
            certificate_id("arn:aws:iot:us-east-1:123456789012:cert/abc"),
            Some("abc")
        );
        assert_eq!(certificate_id("us-east-1:cognito-id"), None);
    }
}
