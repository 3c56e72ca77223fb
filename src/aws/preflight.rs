//! What `aws cleanup` checks before it changes or records anything: that there are credentials,
//! that the endpoint answers as an AWS IoT control plane and for which account and Region, that
//! the progress file was made there, and that the run's `created.csv` belongs there.
//!
//! The account and Region come from the ARNs the control plane answers with (no STS call: the
//! same source `aws setup` uses): the first certificate, thing or policy it lists, or one of the
//! run's own certificates (DescribeCertificate). A wrong `--region` or profile on AWS answers
//! `ResourceNotFoundException` for every certificate of the run, which would read as "already
//! gone": so cleanup goes ahead only when `created.csv`'s ARNs name this account and Region, or
//! one of the run's certificates is found here, or the progress file was made here, or the user
//! says `--yes`.

use aws_sdk_iot::Client;
use aws_sdk_iot::error::DisplayErrorContext;

use super::created::{Certificate, CreatedSet};
use super::pace::{Api, CallError, Pacer};
use super::resume::{Against, PROGRESS_FILE, Resume};
use super::{AwsError, Connection, ErrorClass};

/// How many of the run's certificates DescribeCertificate looks for, at most.
const SAMPLE: usize = 3;

/// A Region and an account, as an ARN names them.
pub type Place = (String, String);

/// `(REGION, ACCOUNT)` of `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`.
pub fn arn_place(arn: &str) -> Option<Place> {
    let mut parts = arn.splitn(6, ':');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("arn"), Some(_), Some(_), Some(region), Some(account), Some(_))
            if !region.is_empty() && !account.is_empty() =>
        {
            Some((region.to_string(), account.to_string()))
        }
        _ => None,
    }
}

fn describe_place((region, account): &Place) -> String {
    format!("account {account}, Region {region}")
}

/// The endpoint as the progress file and messages name it.
pub fn endpoint_label(conn: &Connection) -> String {
    conn.endpoint_url
        .as_deref()
        .map(|u| u.trim_end_matches('/').to_string())
        .unwrap_or_else(|| "default".to_string())
}

/// Resolve the credentials now, so that none at all is one clear message (exit 2) rather than
/// a failed call per item.
pub async fn credentials(config: &aws_config::SdkConfig) -> Result<(), AwsError> {
    use aws_credential_types::provider::ProvideCredentials;
    const HOW: &str = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, pass --profile, or log in with `aws sso login`";
    let Some(provider) = config.credentials_provider() else {
        return Err(AwsError::Usage(format!("no AWS credentials: {HOW}")));
    };
    match provider.provide_credentials().await {
        Ok(_) => Ok(()),
        Err(e) => Err(AwsError::Usage(format!(
            "no AWS credentials ({}): {HOW}",
            DisplayErrorContext(e)
        ))),
    }
}

/// Why a call means the command cannot go on, for the message.
fn why(endpoint: &str, e: &CallError) -> String {
    let code = e.code.as_deref();
    if code == Some("UnknownOperationException")
        || (code.is_none() && matches!(e.status, Some(404 | 405)))
    {
        format!("{endpoint} does not answer as an AWS IoT control plane ({e})")
    } else if matches!(e.status, Some(401 | 403)) || code.is_some_and(|c| c.contains("Denied")) {
        format!("access denied ({e}): check the credentials, --profile and their IAM permissions")
    } else {
        format!("cannot use {endpoint} ({e})")
    }
}

/// A failure before anything was changed: exit 1, nothing recorded.
pub fn before_anything(endpoint: &str, e: &CallError) -> AwsError {
    AwsError::Runtime(format!(
        "cleanup stopped before changing or recording anything: {}",
        why(endpoint, e)
    ))
}

/// A set-up failure in the middle of a cleanup: exit 1; what finished is recorded.
pub fn midway(endpoint: &str, e: &CallError) -> AwsError {
    AwsError::Runtime(format!(
        "cleanup stopped: {}; what finished is recorded in {PROGRESS_FILE} (run it again to go on)",
        why(endpoint, e)
    ))
}

/// The first calls: ListCertificates, then ListThings and ListPolicies while the account has
/// none; the first ARN listed names the account and Region. `None`: the account lists nothing.
/// Any answer but a page (a bare 404, `UnknownOperationException`, access denied, a refused
/// connection) stops the command.
pub async fn identify(
    iot: &Client,
    pacer: &Pacer,
    endpoint: &str,
) -> Result<Option<Place>, AwsError> {
    let fail = |e: CallError| before_anything(endpoint, &e);
    let page = pacer
        .call(Api::ListCertificates, &[], || {
            iot.list_certificates().page_size(1).send()
        })
        .await
        .map_err(fail)?;
    let mut arn = page.and_then(|p| {
        p.certificates()
            .iter()
            .find_map(|c| c.certificate_arn().map(str::to_string))
    });
    if arn.is_none() {
        let page = pacer
            .call(Api::ListThings, &[], || {
                iot.list_things().max_results(1).send()
            })
            .await
            .map_err(fail)?;
        arn = page.and_then(|p| {
            p.things()
                .iter()
                .find_map(|t| t.thing_arn().map(str::to_string))
        });
    }
    if arn.is_none() {
        let page = pacer
            .call(Api::ListPolicies, &[], || {
                iot.list_policies().page_size(1).send()
            })
            .await
            .map_err(fail)?;
        arn = page.and_then(|p| {
            p.policies()
                .iter()
                .find_map(|t| t.policy_arn().map(str::to_string))
        });
    }
    Ok(arn.as_deref().and_then(arn_place))
}

/// Refuse a progress file made against another endpoint or Region (no network needed) unless
/// `restart`; the account is compared in [`check_account`] once it is known.
pub fn check_progress_target(
    resume: &Resume,
    endpoint: &str,
    region: &str,
    restart: bool,
) -> Result<(), AwsError> {
    if resume.is_empty() || restart {
        return Ok(());
    }
    match &resume.against {
        Some(a) if a.endpoint == endpoint && a.region == region => Ok(()),
        other => Err(progress_elsewhere(
            other.as_ref(),
            &format!("endpoint {endpoint}, Region {region}"),
        )),
    }
}

fn progress_elsewhere(made: Option<&Against>, here: &str) -> AwsError {
    let made = made.map_or_else(
        || "an unnamed endpoint (an older fleetstorm did not record it)".to_string(),
        Against::describe,
    );
    AwsError::Usage(format!(
        "{PROGRESS_FILE} was made against {made}; this cleanup runs against {here}, where the items it lists as done were never checked. Run against the same endpoint, Region and profile, or pass --restart-progress to set the file aside and check every item again"
    ))
}

/// The account and Region of the created.csv's certificate ARNs (`None`: no ARN in it); two
/// places in one file are refused.
pub fn expected_place(created: &CreatedSet) -> Result<Option<Place>, AwsError> {
    let places: std::collections::BTreeSet<Place> = created
        .certificates
        .iter()
        .filter_map(|c| arn_place(&c.arn))
        .collect();
    let mut it = places.iter();
    match (it.next(), it.next()) {
        (None, _) => Ok(None),
        (Some(p), None) => Ok(Some(p.clone())),
        (Some(a), Some(b)) => Err(AwsError::Input(format!(
            "created.csv: certificate ARNs name two places ({} and {}); one run goes to one account and Region",
            describe_place(a),
            describe_place(b)
        ))),
    }
}

/// What the account check found.
pub struct Checked {
    /// Lines that say what cleanup found and will do.
    pub lines: Vec<String>,
}

/// Check that this control plane is the run's account and Region; see the module text.
#[allow(clippy::too_many_arguments)]
pub async fn check_account(
    iot: &Client,
    pacer: &Pacer,
    created: &CreatedSet,
    remaining: &[&Certificate],
    resume: &Resume,
    here: &Against,
    listed: Option<&Place>,
    yes: bool,
) -> Result<Checked, AwsError> {
    let endpoint = here.endpoint.as_str();
    if !resume.is_empty()
        && let Some(made) = &resume.against
        && made.account != here.account
        && !made.account.is_empty()
        && !here.account.is_empty()
    {
        return Err(progress_elsewhere(Some(made), &here.describe()));
    }
    let expected = expected_place(created)?;
    let mismatch = |e: &Place, h: &Place| {
        AwsError::Usage(format!(
            "created.csv names {}, but {endpoint} answers for {}: nothing was changed. Check --region, --profile and --endpoint-url",
            describe_place(e),
            describe_place(h)
        ))
    };
    let mut lines = Vec::new();
    if let (Some(e), Some(h)) = (&expected, listed) {
        if e != h {
            return Err(mismatch(e, h));
        }
        lines.push(format!(
            "checked:  created.csv names {}, as this control plane's ARNs do",
            describe_place(e)
        ));
        return Ok(Checked { lines });
    }
    let mut found = 0;
    for cert in remaining.iter().take(SAMPLE) {
        let got = pacer
            .call(Api::DescribeCertificate, &[], || {
                iot.describe_certificate().certificate_id(&cert.id).send()
            })
            .await
            .map_err(|e| before_anything(endpoint, &e))?;
        let Some(got) = got else { continue };
        let arn = got
            .certificate_description()
            .and_then(|d| d.certificate_arn())
            .unwrap_or_default();
        if let (Some(e), Some(h)) = (&expected, arn_place(arn))
            && *e != h
        {
            return Err(mismatch(e, &h));
        }
        found += 1;
    }
    let checked = remaining.len().min(SAMPLE);
    if found > 0 {
        lines.push(format!(
            "checked:  {found} of {checked} of the run's certificates looked up (DescribeCertificate) are here"
        ));
    } else if !resume.is_empty() && resume.against.as_ref() == Some(here) {
        lines.push(format!(
            "checked:  {PROGRESS_FILE} was made against this endpoint, Region and account"
        ));
    } else if yes {
        lines.push(format!(
            "checked:  NOT confirmed that this is the run's account and Region ({}); going ahead as --yes says",
            unconfirmed(expected.as_ref(), checked)
        ));
    } else {
        return Err(AwsError::Usage(format!(
            "not confirmed that {} is the run's account and Region: {}. A wrong --region, --profile or --endpoint-url answers \"not found\" for everything, which would read as already removed. Nothing was changed; check them, or pass --yes to go ahead",
            here.describe(),
            unconfirmed(expected.as_ref(), checked)
        )));
    }
    Ok(Checked { lines })
}

fn unconfirmed(expected: Option<&Place>, checked: usize) -> String {
    let names = match expected {
        Some(p) => format!("created.csv names {}", describe_place(p)),
        None => "created.csv names no account or Region (the run did not know them)".to_string(),
    };
    if checked == 0 {
        format!("{names}, and no certificate of the run is left to look up")
    } else {
        format!("{names}, and none of the {checked} certificates of the run looked up is here")
    }
}

/// Whether a failed call means the whole command must stop.
pub fn stops(e: &CallError) -> bool {
    e.class == ErrorClass::SetUp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::Code as _;

    #[test]
    fn arns_name_their_region_and_account() {
        assert_eq!(
            arn_place("arn:aws:iot:eu-west-1:123456789012:cert/ab"),
            Some(("eu-west-1".into(), "123456789012".into()))
        );
        assert_eq!(arn_place("arn:aws:iot:eu-west-1::cert/ab"), None);
        assert_eq!(arn_place("not an arn"), None);
    }

    fn created(arns: &[&str]) -> CreatedSet {
        let mut c = CreatedSet::default();
        for (i, arn) in arns.iter().enumerate() {
            c.certificates.insert(Certificate {
                id: format!("c{i}"),
                arn: arn.to_string(),
            });
        }
        c
    }

    #[test]
    fn created_csv_names_one_place_or_is_refused() {
        assert_eq!(expected_place(&created(&["", ""])).unwrap(), None);
        assert_eq!(
            expected_place(&created(&["arn:aws:iot:r1:1:cert/a", ""])).unwrap(),
            Some(("r1".into(), "1".into()))
        );
        let err = expected_place(&created(&[
            "arn:aws:iot:r1:1:cert/a",
            "arn:aws:iot:r2:1:cert/b",
        ]))
        .unwrap_err();
        assert_eq!(err.code(), 3, "{err}");
    }

    #[test]
    fn a_progress_file_from_elsewhere_is_refused_unless_restarted() {
        let mut resume = Resume {
            against: Some(Against {
                endpoint: "http://127.0.0.1:1".into(),
                region: "us-east-1".into(),
                account: "1".into(),
            }),
            ..Resume::default()
        };
        // No work recorded: nothing to refuse.
        assert!(check_progress_target(&resume, "other", "us-east-1", false).is_ok());
        resume
            .done
            .insert((super::super::cleanup::Kind::Thing, "t".into()));
        assert!(check_progress_target(&resume, "http://127.0.0.1:1", "us-east-1", false).is_ok());
        let err =
            check_progress_target(&resume, "http://127.0.0.1:1", "eu-west-1", false).unwrap_err();
        assert_eq!(err.code(), 2);
        assert!(err.to_string().contains("Region us-east-1"), "{err}");
        assert!(err.to_string().contains("--restart-progress"), "{err}");
        assert!(check_progress_target(&resume, "http://127.0.0.1:2", "us-east-1", false).is_err());
        assert!(check_progress_target(&resume, "http://127.0.0.1:2", "us-east-1", true).is_ok());
        resume.against = None;
        assert!(check_progress_target(&resume, "http://127.0.0.1:1", "us-east-1", false).is_err());
    }
}
