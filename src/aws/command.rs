//! The `fleetstorm aws ...` command line: flags, and the glue from them to setup, teardown and cleanup.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::cleanup::{CleanupOptions, cleanup};
use super::metrics::{MetricsOptions, metrics};
use super::setup::setup;
use super::state::SetupOptions;
use super::teardown::{TeardownOptions, teardown};
use super::{AwsError, Connection};

#[derive(Debug, Subcommand)]
pub enum AwsCommand {
    /// Create or reuse the provisioning role, template, claim certificate and policy; look up the
    /// endpoint; write a ready-to-run scenario and the record teardown reads.
    Setup(SetupArgs),
    /// Remove what `aws setup` created (and only that), as recorded in OUT/aws-setup.json.
    Teardown(TeardownArgs),
    /// Remove exactly what a run created (RUN_DIR/created.csv): certificates, things, the
    /// template's policies; in the run's account and Region only; paced below the quotas,
    /// idempotent, resumable.
    Cleanup(CleanupArgs),
    /// Read AWS's own per-minute metrics of a run (AWS/IoT in CloudWatch: connects, throttles,
    /// provisioning failures, things registered) into RUN_DIR/cloudwatch.csv, and write the
    /// run's report again with them beside the devices' figures.
    Metrics(MetricsArgs),
}

/// Where and as whom to call AWS.
#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// Control-plane endpoint override (the mock's control port, moto, ...), e.g. http://127.0.0.1:4566.
    #[arg(long, value_name = "URL", value_parser = parse_endpoint_url)]
    pub endpoint_url: Option<String>,
    /// AWS Region (default: AWS_REGION or the profile's).
    #[arg(long)]
    pub region: Option<String>,
    /// Named profile from ~/.aws/config (default: AWS_PROFILE or `default`).
    #[arg(long)]
    pub profile: Option<String>,
}

/// `--endpoint-url`: an `http://` or `https://` URL with a host (checked here, so a bad one is a
/// usage error before anything is read or sent, not a failed call per item).
pub fn parse_endpoint_url(text: &str) -> Result<String, String> {
    let uri: hyper::Uri = text
        .parse()
        .map_err(|e| format!("not a URL ({e}); expected e.g. http://127.0.0.1:4566"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(text.to_string()),
        (Some("http" | "https"), _) => Err("the URL has no host".into()),
        _ => Err("expected an http:// or https:// URL, e.g. http://127.0.0.1:4566".into()),
    }
}

impl From<ConnectionArgs> for Connection {
    fn from(a: ConnectionArgs) -> Self {
        Connection {
            endpoint_url: a.endpoint_url,
            region: a.region,
            profile: a.profile,
        }
    }
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    #[command(flatten)]
    pub conn: ConnectionArgs,
    /// Resource name prefix: PREFIX-provisioning-role, PREFIX-template, PREFIX-claim-policy;
    /// the scenario's thing names start with it too.
    #[arg(long, default_value = "fleetstorm")]
    pub name: String,
    /// Folder for the claim certificate and key, root CA, scenario and state file.
    #[arg(long, default_value = "aws-setup")]
    pub out: PathBuf,
    /// Provisioning template body (default: the seed tutorial's template).
    #[arg(long, value_name = "FILE")]
    pub template: Option<PathBuf>,
    /// Pre-provisioning hook Lambda for the template.
    #[arg(long, value_name = "ARN")]
    pub hook_arn: Option<String>,
    /// Use this provisioning role and make no IAM call (against the mock: any role ARN).
    #[arg(long, value_name = "ARN")]
    pub role_arn: Option<String>,
    /// Trust anchor for the scenario instead of Amazon Root CA 1 (against the mock: its CA).
    #[arg(long, value_name = "FILE")]
    pub root_ca: Option<PathBuf>,
    /// Print the plan and the equivalent `aws` CLI commands; send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct TeardownArgs {
    #[command(flatten)]
    pub conn: ConnectionArgs,
    /// The folder `aws setup` wrote.
    #[arg(long, default_value = "aws-setup")]
    pub out: PathBuf,
    /// List what would be removed; send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// The run's results folder (with created.csv).
    #[arg(required_unless_present = "prefix", conflicts_with = "prefix")]
    pub run_dir: Option<PathBuf>,
    #[command(flatten)]
    pub conn: ConnectionArgs,
    /// Instead of RUN_DIR: things whose names start with PREFIX, and their certificates
    /// (policies are kept: there is no record of which ones the run created).
    #[arg(long)]
    pub prefix: Option<String>,
    /// List what would be removed; send nothing (with --prefix, only the read-only listing).
    #[arg(long)]
    pub dry_run: bool,
    /// Items worked on at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// At most this many requests per second per API (the defaults are 80 % of each quota).
    #[arg(long, value_name = "TPS")]
    pub max_tps: Option<f64>,
    /// Go ahead although cleanup cannot confirm that this is the run's account and Region
    /// (created.csv names none and none of the run's certificates is found here).
    #[arg(long)]
    pub yes: bool,
    /// RUN_DIR/cleanup-progress.csv was made against another endpoint, Region or account: set
    /// it aside (as cleanup-progress.csv.old) and check every item again here.
    #[arg(long)]
    pub restart_progress: bool,
}

#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// The run's results folder (summary.json gives the window).
    pub run_dir: PathBuf,
    #[command(flatten)]
    pub conn: ConnectionArgs,
    /// `TemplateName` of RegisterThingFailed (default: the run's `devices.template`).
    #[arg(long, value_name = "NAME")]
    pub template: Option<String>,
    /// `ClaimCertificateId` of ApproximateNumberOfThingsRegistered (default: the ID of the
    /// run's claim certificate, when its file can be read).
    #[arg(long, value_name = "ID")]
    pub claim_certificate_id: Option<String>,
    /// Print the queries (as the `aws cloudwatch get-metric-data` command); send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

impl MetricsArgs {
    pub fn options(self) -> MetricsOptions {
        MetricsOptions {
            conn: self.conn.into(),
            run_dir: self.run_dir,
            template: self.template,
            claim_certificate_id: self.claim_certificate_id,
            dry_run: self.dry_run,
        }
    }
}

/// Run an `aws` subcommand; `Ok(exit code)`.
pub async fn run(command: AwsCommand) -> Result<u8, AwsError> {
    match command {
        AwsCommand::Setup(a) => {
            let opts = SetupOptions {
                conn: a.conn.into(),
                name: a.name,
                out: a.out,
                template: a.template,
                hook_arn: a.hook_arn,
                role_arn: a.role_arn,
                root_ca: a.root_ca,
                dry_run: a.dry_run,
            };
            if let Some(report) = setup(&opts).await? {
                let s = &report.state;
                println!(
                    "fleetstorm aws setup: account {}, region {}",
                    if s.account.is_empty() {
                        "?"
                    } else {
                        &s.account
                    },
                    s.region
                );
                for line in &report.lines {
                    println!("  {line}");
                }
                println!("next: fleetstorm run {}", report.scenario.display());
            }
            Ok(0)
        }
        AwsCommand::Teardown(a) => {
            let opts = TeardownOptions {
                conn: a.conn.into(),
                out: a.out,
                dry_run: a.dry_run,
            };
            for line in teardown(&opts).await? {
                println!("  {line}");
            }
            Ok(0)
        }
        AwsCommand::Cleanup(a) => {
            if a.max_tps.is_some_and(|t| t.is_nan() || t <= 0.0) {
                return Err(AwsError::Usage("--max-tps: must be above 0".into()));
            }
            let opts = CleanupOptions {
                conn: a.conn.into(),
                run_dir: a.run_dir,
                prefix: a.prefix,
                dry_run: a.dry_run,
                concurrency: a.concurrency,
                max_tps: a.max_tps,
                yes: a.yes,
                restart_progress: a.restart_progress,
            };
            let report = cleanup(&opts).await?;
            if opts.dry_run {
                return Ok(0);
            }
            println!("{}", report.render());
            let failed = report.tally.failed();
            if failed > 0 {
                return Err(AwsError::Runtime(format!(
                    "cleanup: {failed} item(s) failed (listed above); run it again to retry them"
                )));
            }
            Ok(0)
        }
        AwsCommand::Metrics(a) => {
            for line in metrics(&a.options()).await?.lines {
                println!("fleetstorm aws metrics: {line}");
            }
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls_are_checked_like_any_flag() {
        assert!(parse_endpoint_url("http://127.0.0.1:4566").is_ok());
        assert!(parse_endpoint_url("https://iot.eu-west-1.amazonaws.com/").is_ok());
        for bad in ["not a url", "127.0.0.1:4566", "ftp://host", "http://", ""] {
            assert!(parse_endpoint_url(bad).is_err(), "{bad:?}");
        }
    }
}
