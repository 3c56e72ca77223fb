//! `fleetstorm aws cleanup`: remove exactly what a run created, paced, idempotent and resumable.
//!
//! First [`preflight`](super::preflight): credentials, an AWS IoT control plane, the run's account
//! and Region, a progress file made there; nothing is changed or recorded before. Then, for every
//! certificate, detach its policies and things, set it INACTIVE and delete it; then delete the
//! things (after detaching anything still attached); then the policies the template created
//! (named in `created.csv` or found attached to the run's certificates), only those that now have
//! no target and were not created before the run. `ResourceNotFoundException` from a
//! Describe/Get or Delete of the item counts as done ("gone"); nothing else does. Each finished
//! item is appended (and flushed) to `RUN_DIR/cleanup-progress.csv` ([`resume`](super::resume)),
//! which a later cleanup reads to skip it. A set-up error (access denied, refused connection, an
//! answer that is not the control plane's) stops the whole command at once.
//!
//! It is over 800 lines because the three phases (certificates, things, policies) share one paced,
//! retried worker loop and its bookkeeping; the checks before it (`preflight`) and the progress
//! file (`resume`) already live apart.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use aws_sdk_iot::Client;
use aws_sdk_iot::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_iot::types::CertificateStatus;
use futures_util::StreamExt;

use super::created::{self, Certificate, CreatedSet};
use super::pace::{Api, Backoff, CallError, Pacer};
use super::preflight;
use super::progress::{Counters, Progress};
use super::resume::{self, Against, PROGRESS_FILE, ProgressLog, Resume};
pub use super::resume::{Kind, Outcome};
use super::{AwsError, Connection, HasStatus};

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
    /// Go ahead although the account and Region could not be confirmed as the run's.
    pub yes: bool,
    /// Set aside a progress file made against another endpoint, Region or account.
    pub restart_progress: bool,
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
    pub created: CreatedSet,
    /// What earlier cleanups of the run finished and found (from the progress file).
    pub resume: Resume,
    /// Policies may be deleted (run-folder mode only: `--prefix` has no record of them).
    pub policies_allowed: bool,
}

/// Read `RUN_DIR/created.csv` and `RUN_DIR/cleanup-progress.csv`.
pub fn load_run(run_dir: &Path) -> Result<Targets, AwsError> {
    let records = created::read(&run_dir.join(created::FILE_NAME))?;
    let resume = resume::read(&run_dir.join(PROGRESS_FILE))?;
    Ok(Targets {
        created: CreatedSet::from_records(&records),
        resume,
        policies_allowed: true,
    })
}

/// Shared by every worker of one cleanup.
struct Ctx<'a> {
    iot: &'a Client,
    pacer: &'a Pacer,
    log: &'a ProgressLog,
    tally: &'a Tally,
    counters: &'a Counters,
    endpoint: &'a str,
    /// The set-up error that stopped the cleanup; no item starts after it.
    stopped: Mutex<Option<AwsError>>,
    /// Policies found attached to the run's certificates (candidates for the policy phase).
    attached: Mutex<BTreeSet<String>>,
}

impl Ctx<'_> {
    fn is_stopped(&self) -> bool {
        self.stopped.lock().map_or(true, |s| s.is_some())
    }

    /// Record a policy found on one of the run's certificates, before it is detached.
    fn found_policy(&self, policy: &str) {
        if let Ok(mut a) = self.attached.lock()
            && a.insert(policy.to_string())
            && let Err(e) = self.log.attached(policy)
        {
            tracing::info!(target: crate::tui::CONSOLE, "fleetstorm: cleanup: {e}");
        }
    }

    fn finish(&self, kind: Kind, key: &str, result: Result<Outcome, CallError>) {
        let result = match result {
            Err(e) if preflight::stops(&e) => {
                if let Ok(mut s) = self.stopped.lock()
                    && s.is_none()
                {
                    *s = Some(preflight::midway(self.endpoint, &e));
                }
                Err(e.to_string())
            }
            other => other.map_err(|e| e.to_string()),
        };
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
        tracing::info!(target: crate::tui::CONSOLE, "fleetstorm: cleanup: {line}");
        if let Ok(mut f) = self.tally.failures.lock() {
            f.push(line);
        }
    }
}

/// Run a cleanup. Prints the plan (dry run) or what it found and will do, then a progress bar
/// on stderr, and returns the counts.
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
    if opts.prefix.is_none() && targets.created.is_empty() {
        println!("cleanup: created.csv lists nothing: nothing to remove, nothing sent");
        return Ok(empty_report());
    }
    let config = opts.conn.load().await?;
    let region = config.region().map(|r| r.to_string()).unwrap_or_default();
    let endpoint = preflight::endpoint_label(&opts.conn);
    preflight::check_progress_target(&targets.resume, &endpoint, &region, opts.restart_progress)?;
    preflight::credentials(&config).await?;
    let iot = Client::new(&config);
    let pacer = Pacer::new(
        super::pace::DEFAULT_FRACTION,
        opts.max_tps,
        Backoff::default(),
    );
    let listed = preflight::identify(&iot, &pacer, &endpoint).await?;
    let here = Against {
        endpoint: endpoint.clone(),
        region,
        account: listed.as_ref().map(|p| p.1.clone()).unwrap_or_default(),
    };
    let mut lines = vec![format!("cleanup against {}", here.describe())];
    if let Some(prefix) = &opts.prefix {
        targets.created = list_prefix(&iot, &pacer, prefix).await?;
        if opts.dry_run {
            print_plan(&targets);
            return Ok(empty_report());
        }
        lines.push(format!(
            "removing: {} things whose names start with {prefix:?} and their {} certificates (policies kept)",
            targets.created.things.len(),
            targets.created.certificates.len()
        ));
    }
    let log = match &opts.run_dir {
        Some(dir) => {
            let path = dir.join(PROGRESS_FILE);
            let elsewhere = targets.resume.against.as_ref() != Some(&here);
            if opts.restart_progress && elsewhere && path.exists() {
                let aside = dir.join(format!("{PROGRESS_FILE}.old"));
                std::fs::rename(&path, &aside).map_err(|e| AwsError::io(&path, e))?;
                lines.push(format!(
                    "progress: {} set aside as {} (--restart-progress): every item is checked again",
                    path.display(),
                    aside.display()
                ));
                targets.resume = Resume::default();
            }
            Some(path)
        }
        None => None,
    };
    let c = &targets.created;
    let done = |kind: Kind, key: &str| targets.resume.done.contains(&(kind, key.to_string()));
    let certs: Vec<&Certificate> = c
        .certificates
        .iter()
        .filter(|x| !done(Kind::Certificate, &x.id))
        .collect();
    let things: Vec<&String> = c.things.iter().filter(|t| !done(Kind::Thing, t)).collect();
    if opts.prefix.is_none() {
        let checked = preflight::check_account(
            &iot,
            &pacer,
            c,
            &certs,
            &targets.resume,
            &here,
            listed.as_ref(),
            opts.yes,
        )
        .await?;
        lines.extend(checked.lines);
        lines.push(format!(
            "removing: {} certificates and {} things of the run, then the policies the template attached to them that the run created and nothing else uses ({} items done by an earlier cleanup: skipped)",
            certs.len(),
            things.len(),
            targets.resume.done.len()
        ));
    }
    for line in &lines {
        println!("{line}");
    }
    let log = match log {
        Some(path) => ProgressLog::open(&path, &here)?,
        None => ProgressLog::none(),
    };
    let tally = Tally::default();
    let counters = Arc::new(Counters::default());
    let ctx = Ctx {
        iot: &iot,
        pacer: &pacer,
        log: &log,
        tally: &tally,
        counters: &counters,
        endpoint: &endpoint,
        stopped: Mutex::new(None),
        attached: Mutex::new(BTreeSet::new()),
    };
    for _ in 0..(c.certificates.len() - certs.len()) {
        tally.add(Kind::Certificate, "skipped");
    }
    for _ in 0..(c.things.len() - things.len()) {
        tally.add(Kind::Thing, "skipped");
    }
    let total =
        (certs.len() + things.len() + c.policies.len() + targets.resume.attached.len()) as u64;
    let bar = Progress::start(total, counters.clone());
    let n = opts.concurrency;
    futures_util::stream::iter(certs)
        .for_each_concurrent(n, |cert| {
            let ctx = &ctx;
            async move {
                if ctx.is_stopped() {
                    return;
                }
                let known = c.certificate_things.get(&cert.id);
                let known: Vec<&str> = known.into_iter().flatten().map(String::as_str).collect();
                let found = |policy: &str| ctx.found_policy(policy);
                let r = remove_certificate_noting(ctx.iot, ctx.pacer, cert, &known, &found).await;
                ctx.finish(Kind::Certificate, &cert.id, r);
            }
        })
        .await;
    futures_util::stream::iter(things)
        .for_each_concurrent(n, |thing| {
            let ctx = &ctx;
            async move {
                if ctx.is_stopped() {
                    return;
                }
                let r = remove_thing(ctx.iot, ctx.pacer, thing).await;
                ctx.finish(Kind::Thing, thing, r);
            }
        })
        .await;
    let mut candidates = c.policies.clone();
    candidates.extend(targets.resume.attached.iter().cloned());
    candidates.extend(ctx.attached.lock().map(|a| a.clone()).unwrap_or_default());
    let policies: Vec<String> = if targets.policies_allowed {
        candidates
            .into_iter()
            .filter(|p| {
                let skip = done(Kind::Policy, p);
                if skip {
                    tally.add(Kind::Policy, "skipped");
                }
                !skip
            })
            .collect()
    } else {
        Vec::new()
    };
    let earliest = c.earliest;
    futures_util::stream::iter(&policies)
        .for_each_concurrent(n, |policy| {
            let ctx = &ctx;
            async move {
                if ctx.is_stopped() {
                    return;
                }
                let r = remove_policy(ctx.iot, ctx.pacer, policy, earliest).await;
                ctx.finish(Kind::Policy, policy, r);
            }
        })
        .await;
    bar.finish().await;
    if let Some(e) = ctx.stopped.into_inner().ok().flatten() {
        return Err(e);
    }
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
    let policies: BTreeSet<&String> = c.policies.iter().chain(&t.resume.attached).collect();
    let done = |kind: Kind, key: &str| {
        if t.resume.done.contains(&(kind, key.to_string())) {
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
            format!(
                ", and up to {} policies (and those ListAttachedPolicies finds on the certificates)",
                policies.len()
            )
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
        for policy in policies {
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
async fn list_prefix(iot: &Client, pacer: &Pacer, prefix: &str) -> Result<CreatedSet, AwsError> {
    let fail = |e: CallError| AwsError::Runtime(e.to_string());
    let mut created = CreatedSet::default();
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
/// things it is recorded with, detached even where ListPrincipalThings lists none.
pub async fn remove_certificate(
    iot: &Client,
    pacer: &Pacer,
    cert: &Certificate,
    known_things: &[&str],
) -> Result<Outcome, CallError> {
    remove_certificate_noting(iot, pacer, cert, known_things, &|_| {}).await
}

/// [`remove_certificate`], telling `found` each policy attached to it before detaching it.
async fn remove_certificate_noting(
    iot: &Client,
    pacer: &Pacer,
    cert: &Certificate,
    known_things: &[&str],
    found: &(dyn Fn(&str) + Sync),
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
        found(policy);
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
    // A REVOKED certificate cannot go to INACTIVE; it can be deleted as it is. Not found here
    // goes on to DeleteCertificate, whose answer decides.
    let updated = pacer
        .call(Api::UpdateCertificate, &[], || {
            iot.update_certificate()
                .certificate_id(&cert.id)
                .new_status(CertificateStatus::Inactive)
                .send()
        })
        .await;
    match updated {
        Ok(_) => {}
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
) -> Result<Outcome, CallError> {
    let Some(got) = pacer
        .call(Api::GetPolicy, &[], || {
            iot.get_policy().policy_name(policy).send()
        })
        .await?
    else {
        return Ok(Outcome::Gone);
    };
    if let (Some(created), Some(earliest)) = (got.creation_date(), earliest)
        && (created.as_secs_f64()) < earliest - PREDATES_SLACK_S
    {
        return Ok(Outcome::Kept);
    }
    // Not found here goes on to DeletePolicy, whose answer decides.
    let targets = pacer
        .call(Api::ListTargetsForPolicy, &[], || {
            iot.list_targets_for_policy()
                .policy_name(policy)
                .page_size(1)
                .send()
        })
        .await?;
    if targets.is_some_and(|t| !t.targets().is_empty()) {
        return Ok(Outcome::Kept);
    }
    let deleted = pacer
        .call(Api::DeletePolicy, &[], || {
            iot.delete_policy().policy_name(policy).send()
        })
        .await?;
    Ok(if deleted.is_some() {
        Outcome::Deleted
    } else {
        Outcome::Gone
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_ids_come_from_arns() {
        assert_eq!(
            certificate_id("arn:aws:iot:us-east-1:123456789012:cert/abc"),
            Some("abc")
        );
        assert_eq!(certificate_id("us-east-1:cognito-id"), None);
    }
}
