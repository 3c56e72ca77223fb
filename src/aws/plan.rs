//! `aws setup --dry-run`: the plan, step by step, with the `aws` CLI command that does each by hand.

use super::state::{
    CLAIM_CERT_FILE, CLAIM_KEY_FILE, HOOK_PAYLOAD_VERSION, Names, REGISTRATION_POLICY_ARN,
    ROOT_CA_FILE, SCENARIO_FILE, STATE_FILE, SetupOptions, TRUST_POLICY,
};

/// The plan: each step and the `aws` CLI command that does it by hand.
/// `groups` are the thing groups the template names.
pub fn plan(opts: &SetupOptions, names: &Names, groups: &[String]) -> Vec<(String, String)> {
    let f = opts.conn.cli_flags();
    let out = opts.out.display();
    let template_file = opts
        .template
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "fleet-provisioning-template.json".into());
    let mut steps = Vec::new();
    let role_arn = match &opts.role_arn {
        Some(arn) => {
            steps.push((
                format!("use provisioning role {arn} (no IAM call)"),
                String::new(),
            ));
            arn.clone()
        }
        None => {
            steps.push((
                format!("provisioning role {} (trust iot.amazonaws.com): reuse or create", names.role),
                format!(
                    "aws iam create-role{f} --role-name {} --assume-role-policy-document '{TRUST_POLICY}'",
                    names.role
                ),
            ));
            steps.push((
                "attach the managed policy AWSIoTThingsRegistration".into(),
                format!(
                    "aws iam attach-role-policy{f} --role-name {} --policy-arn {REGISTRATION_POLICY_ARN}",
                    names.role
                ),
            ));
            format!("arn:aws:iam::<account>:role/{}", names.role)
        }
    };
    let hook = opts
        .hook_arn
        .as_ref()
        .map(|a| {
            format!(" --pre-provisioning-hook targetArn={a},payloadVersion={HOOK_PAYLOAD_VERSION}")
        })
        .unwrap_or_default();
    steps.push((
        format!("fleet provisioning template {} from {template_file}: reuse or create", names.template),
        format!(
            "aws iot create-provisioning-template{f} --template-name {} --provisioning-role-arn {role_arn} --template-body file://{template_file} --enabled{hook}",
            names.template
        ),
    ));
    for group in groups {
        steps.push((
            format!("thing group {group} (the template names it): reuse or create"),
            format!("aws iot create-thing-group{f} --thing-group-name {group}"),
        ));
    }
    steps.push((
        format!("claim certificate and key in {out} (key 0600): reuse or create"),
        format!(
            "aws iot create-keys-and-certificate{f} --set-as-active --certificate-pem-outfile {out}/{CLAIM_CERT_FILE} --private-key-outfile {out}/{CLAIM_KEY_FILE}"
        ),
    ));
    steps.push((
        format!(
            "claim policy {} (the seed's, plus create-from-csr): reuse or create",
            names.policy
        ),
        format!(
            "aws iot create-policy{f} --policy-name {} --policy-document file://claim-policy.json",
            names.policy
        ),
    ));
    steps.push((
        "attach the claim policy to the claim certificate".into(),
        format!(
            "aws iot attach-policy{f} --policy-name {} --target <certificate ARN>",
            names.policy
        ),
    ));
    steps.push((
        "look up the device data endpoint".into(),
        format!("aws iot describe-endpoint{f} --endpoint-type iot:Data-ATS"),
    ));
    let ca = match &opts.root_ca {
        Some(p) => format!("use {} as the trust anchor", p.display()),
        None => format!("write Amazon Root CA 1 to {out}/{ROOT_CA_FILE}"),
    };
    steps.push((ca, String::new()));
    steps.push((
        format!("write {out}/{SCENARIO_FILE} and {out}/{STATE_FILE}"),
        String::new(),
    ));
    steps
}

/// Print the dry run: the plan and the equivalent `aws` commands.
pub fn print_plan(opts: &SetupOptions, names: &Names, groups: &[String]) {
    println!(
        "dry run: fleetstorm aws setup would do this (region {}); nothing is sent",
        opts.conn
            .region_hint()
            .unwrap_or_else(|| "from the profile".into())
    );
    for (i, (what, cli)) in plan(opts, names, groups).iter().enumerate() {
        println!("  {}. {what}", i + 1);
        if !cli.is_empty() {
            println!("     $ {cli}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::Connection;
    use std::path::PathBuf;

    #[test]
    fn the_plan_lists_the_cli_commands() {
        let opts = SetupOptions {
            conn: Connection {
                region: Some("eu-west-1".into()),
                ..Connection::default()
            },
            name: "fs".into(),
            out: PathBuf::from("out"),
            template: None,
            hook_arn: Some("arn:aws:lambda:eu-west-1:1:function:h".into()),
            role_arn: None,
            root_ca: None,
            dry_run: true,
        };
        let steps = plan(&opts, &Names::new("fs").unwrap(), &["g1".to_string()]);
        let cli: Vec<&str> = steps
            .iter()
            .map(|(_, c)| c.as_str())
            .filter(|c| !c.is_empty())
            .collect();
        assert!(cli[0].starts_with(
            "aws iam create-role --region eu-west-1 --role-name fs-provisioning-role"
        ));
        assert!(
            cli.iter()
                .any(|c| c.contains("create-provisioning-template")
                    && c.contains("payloadVersion=2020-04-01"))
        );
        assert!(
            cli.iter()
                .any(|c| c.contains("describe-endpoint") && c.contains("iot:Data-ATS"))
        );
        assert!(
            cli.contains(&"aws iot create-thing-group --region eu-west-1 --thing-group-name g1")
        );
    }
}
