//! `fleetstorm aws teardown`: remove what `aws setup` created (and only that), from its state file.

use std::path::PathBuf;

use aws_sdk_iot::Client;

use super::cleanup::{Outcome, remove_certificate};
use super::created::Certificate;
use super::pace::{Api, Backoff, CallError, Pacer};
use super::state::{REGISTRATION_POLICY_ARN, Resource, STATE_FILE, SetupState};
use super::{AwsError, Connection};

#[derive(Debug, Clone)]
pub struct TeardownOptions {
    pub conn: Connection,
    /// The folder setup wrote (with `aws-setup.json`).
    pub out: PathBuf,
    pub dry_run: bool,
}

fn runtime(e: CallError) -> AwsError {
    AwsError::Runtime(e.to_string())
}

/// Remove what setup created; returns one line per resource.
pub async fn teardown(opts: &TeardownOptions) -> Result<Vec<String>, AwsError> {
    let state = SetupState::read(&opts.out)?.ok_or_else(|| {
        AwsError::Input(format!(
            "{}: not found: nothing recorded to tear down",
            opts.out.join(STATE_FILE).display()
        ))
    })?;
    let created = |r: &Option<Resource>| r.as_ref().filter(|r| r.created).cloned();
    let certs: Vec<Resource> = state
        .certificates
        .iter()
        .filter(|c| c.created)
        .cloned()
        .collect();
    if opts.dry_run {
        println!("dry run: fleetstorm aws teardown would remove (nothing is sent):");
        for c in &certs {
            println!(
                "  claim certificate {}: detach, set INACTIVE, delete",
                c.name
            );
        }
        if let Some(p) = created(&state.policy) {
            println!(
                "  claim policy {} (if nothing else is attached to it)",
                p.name
            );
        }
        if let Some(t) = created(&state.template) {
            println!("  provisioning template {}", t.name);
        }
        for g in state.thing_groups.iter().filter(|g| g.created) {
            println!("  thing group {}", g.name);
        }
        if let Some(r) = created(&state.role) {
            println!(
                "  IAM role {} (detach AWSIoTThingsRegistration, delete)",
                r.name
            );
        }
        println!(
            "  files in {}: {}",
            opts.out.display(),
            state.files.join(", ")
        );
        return Ok(Vec::new());
    }
    let mut conn = opts.conn.clone();
    if conn.endpoint_url.is_none() {
        conn.endpoint_url = state.endpoint_url.clone();
    }
    if conn.region.is_none() && !state.region.is_empty() {
        conn.region = Some(state.region.clone());
    }
    let config = conn.load().await?;
    let iot = Client::new(&config);
    let pacer = Pacer::new(1.0, None, Backoff::default());
    let mut lines = Vec::new();
    let word = |o: Option<()>| {
        if o.is_some() {
            "deleted"
        } else {
            "already gone"
        }
    };

    for c in &certs {
        let cert = Certificate {
            id: c.name.clone(),
            arn: c.arn.clone(),
        };
        let outcome = remove_certificate(&iot, &pacer, &cert, &[])
            .await
            .map_err(runtime)?;
        let w = if outcome == Outcome::Deleted {
            "deleted"
        } else {
            "already gone"
        };
        lines.push(format!("{w} claim certificate {}", c.name));
    }
    if let Some(p) = created(&state.policy) {
        let targets = pacer
            .call(Api::ListTargetsForPolicy, &[], || {
                iot.list_targets_for_policy().policy_name(&p.name).send()
            })
            .await
            .map_err(runtime)?;
        let others = targets.as_ref().map_or(0, |t| t.targets().len());
        if others > 0 {
            lines.push(format!(
                "kept claim policy {}: still attached to {others} other target(s)",
                p.name
            ));
        } else {
            let r = pacer
                .call(Api::DeletePolicy, &[], || {
                    iot.delete_policy().policy_name(&p.name).send()
                })
                .await
                .map_err(runtime)?;
            lines.push(format!("{} claim policy {}", word(r.map(|_| ())), p.name));
        }
    }
    if let Some(t) = created(&state.template) {
        let r = pacer
            .call(Api::Other, &[], || {
                iot.delete_provisioning_template()
                    .template_name(&t.name)
                    .send()
            })
            .await
            .map_err(runtime)?;
        lines.push(format!(
            "{} provisioning template {}",
            word(r.map(|_| ())),
            t.name
        ));
    }
    for g in state.thing_groups.iter().filter(|g| g.created) {
        // DeleteThingGroup answers success for a group that is gone already.
        pacer
            .call(Api::Other, &[], || {
                iot.delete_thing_group().thing_group_name(&g.name).send()
            })
            .await
            .map_err(runtime)?;
        lines.push(format!("deleted thing group {}", g.name));
    }
    if let Some(role) = created(&state.role) {
        let iam = aws_sdk_iam::Client::new(&config);
        pacer
            .call(Api::Other, &[], || {
                iam.detach_role_policy()
                    .role_name(&role.name)
                    .policy_arn(REGISTRATION_POLICY_ARN)
                    .send()
            })
            .await
            .map_err(runtime)?;
        let r = pacer
            .call(Api::Other, &[], || {
                iam.delete_role().role_name(&role.name).send()
            })
            .await
            .map_err(runtime)?;
        lines.push(format!("{} IAM role {}", word(r.map(|_| ())), role.name));
    }
    for file in state.files.iter().map(String::as_str).chain([STATE_FILE]) {
        let path = opts.out.join(file);
        match std::fs::remove_file(&path) {
            Ok(()) => lines.push(format!("removed {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(AwsError::io(&path, e)),
        }
    }
    Ok(lines)
}
