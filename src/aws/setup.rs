//! `fleetstorm aws setup`: the seed tutorial's manual `aws iot` / `aws iam` set-up, idempotent, plus a ready scenario.
//!
//! Creates or reuses, in order: the provisioning role (IAM; skipped with `--role-arn`), the fleet
//! provisioning template, the claim certificate and key (key mode 0600), the claim policy
//! (attached to the certificate), and looks up the `iot:Data-ATS` endpoint. It writes the root
//! CA, a scenario targeting the endpoint, and `aws-setup.json`, the record of what it created
//! that [`super::teardown`] reads.

use std::path::{Path, PathBuf};

use aws_sdk_iot::Client;

use super::AwsError;
use super::pace::{Api, Backoff, CallError, Pacer};
use super::state::{
    CLAIM_CERT_FILE, CLAIM_KEY_FILE, HOOK_PAYLOAD_VERSION, Names, REGISTRATION_POLICY_ARN,
    ROOT_CA_FILE, Resource, SCENARIO_FILE, STATE_FILE, SetupOptions, SetupState, TRUST_POLICY,
};
use crate::iot::template::{MAX_TEMPLATE_CHARS, SEED_TEMPLATE_JSON, Template};

/// The template body to use, checked: JSON, at most 10,240 characters, a valid template.
pub fn template_body(file: Option<&Path>) -> Result<(String, Template), AwsError> {
    let (body, name) = match file {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|e| AwsError::Input(format!("{}: {e}", path.display())))?,
            path.display().to_string(),
        ),
        None => (SEED_TEMPLATE_JSON.to_string(), "seed template".into()),
    };
    if let Err(e) = serde_json::from_str::<serde_json::Value>(&body) {
        return Err(AwsError::Input(format!(
            "{name}: line {}, column {}: {e}",
            e.line(),
            e.column()
        )));
    }
    if body.chars().count() > MAX_TEMPLATE_CHARS {
        return Err(AwsError::Input(format!(
            "{name}: {} characters; AWS takes at most {MAX_TEMPLATE_CHARS}",
            body.chars().count()
        )));
    }
    let template = Template::parse(&body).map_err(|e| AwsError::Input(format!("{name}: {e}")))?;
    Ok((body, template))
}

/// The thing groups a template body names literally (`ThingGroups` lists of strings of its
/// `AWS::IoT::Thing` resources), in order, once each. Groups computed from parameters are not
/// known before a device provisions.
pub fn template_groups(body: &str) -> Vec<String> {
    let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let mut groups: Vec<String> = Vec::new();
    let resources = json.get("Resources").and_then(|r| r.as_object());
    for resource in resources.into_iter().flat_map(|r| r.values()) {
        if resource.get("Type").and_then(|t| t.as_str()) != Some("AWS::IoT::Thing") {
            continue;
        }
        let listed = resource
            .pointer("/Properties/ThingGroups")
            .and_then(|g| g.as_array());
        for name in listed.into_iter().flatten().filter_map(|g| g.as_str()) {
            if !groups.iter().any(|g| g == name) {
                groups.push(name.to_string());
            }
        }
    }
    groups
}

/// Reuse each thing group the template names, or create it; the groups as recorded (`created`
/// also when an earlier setup created it) and one line each.
async fn ensure_groups(
    iot: &Client,
    pacer: &Pacer,
    groups: &[String],
    previous: &[Resource],
    lines: &mut Vec<String>,
) -> Result<Vec<Resource>, AwsError> {
    let mut out = Vec::new();
    for name in groups {
        let described = pacer
            .call(Api::Other, &[], || {
                iot.describe_thing_group().thing_group_name(name).send()
            })
            .await
            .map_err(runtime)?;
        let (arn, created_now) = match described {
            Some(d) => (d.thing_group_arn().unwrap_or_default().to_string(), false),
            None => {
                let made = pacer
                    .call(Api::Other, &[], || {
                        iot.create_thing_group().thing_group_name(name).send()
                    })
                    .await
                    .map_err(runtime)?;
                let arn = made
                    .as_ref()
                    .and_then(|m| m.thing_group_arn())
                    .unwrap_or_default()
                    .to_string();
                (arn, true)
            }
        };
        let before = previous.iter().any(|p| p.created && p.name == *name);
        lines.push(format!("{} thing group         {name}", verb(created_now)));
        out.push(Resource {
            name: name.clone(),
            arn,
            created: created_now || before,
        });
    }
    Ok(out)
}

/// The account in an ARN (`arn:PARTITION:SERVICE:REGION:ACCOUNT:...`).
pub fn arn_account(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| !a.is_empty())
}

/// The Region in an ARN.
pub fn arn_region(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|a| !a.is_empty())
}

/// The scenario setup writes: the seed's parameters for the seed template, `PREFIX-{uuid}` for
/// each parameter of another template; thing names then start with the prefix (`cleanup --prefix`).
pub fn scenario_text(
    names: &Names,
    template: &Template,
    seed: bool,
    endpoint: (&str, u16),
    ca: &str,
) -> String {
    let prefix = &names.prefix;
    let parameters: Vec<(String, String)> = if seed {
        vec![
            ("SerialNumber".into(), "123456{seq:06}".into()),
            ("DeviceName".into(), format!("{prefix}-{{uuid}}")),
            ("DeviceLocation".into(), "{pick:Berlin=3,Seattle=1}".into()),
        ]
    } else {
        template
            .parameter_names()
            .map(|p| (p.to_string(), format!("{prefix}-{{uuid}}")))
            .collect()
    };
    let mut params = String::new();
    for (k, v) in parameters {
        params.push_str(&format!("{k} = {}\n", toml_string(&v)));
    }
    format!(
        r#"# Written by `fleetstorm aws setup`: a gentle run of the seed's 20 devices against the
# endpoint, template and claim certificate that setup created.
#
#   fleetstorm run {scenario}
#   fleetstorm aws cleanup RESULTS_DIR      # removes what the run created
#
# Change the load with --set devices.count=N --set schedule.0.rate=R (mind the account's
# 10 TPS RegisterThing / CreateKeysAndCertificate quotas).

name = {name}
seed = 1

[target]
kind = "endpoint"
host = {host}
port = {port}
ca = {ca}
claim_cert = "{CLAIM_CERT_FILE}"
claim_key = "{CLAIM_KEY_FILE}"

[devices]
count = 20
client_id = "{prefix}-{{uuid}}"
template = {template}
certificate = "csr"
csr_key = "p256"

[devices.parameters]
{params}
[[schedule]]
executor = "constant-arrival-rate"
rate = 2
duration = "10s"
"#,
        scenario = SCENARIO_FILE,
        name = toml_string(prefix),
        host = toml_string(endpoint.0),
        port = endpoint.1,
        ca = toml_string(ca),
        template = toml_string(&names.template),
    )
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// `host[:port]` from DescribeEndpoint (AWS answers a bare host: port 8883).
pub fn split_endpoint(address: &str) -> (String, u16) {
    match address.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(p) => (host.to_string(), p),
            Err(_) => (address.to_string(), 8883),
        },
        _ => (address.to_string(), 8883),
    }
}

/// What setup did, for the printed summary.
#[derive(Debug)]
pub struct SetupReport {
    pub state: SetupState,
    /// One line per resource: "created ..." / "reused ...".
    pub lines: Vec<String>,
    pub scenario: PathBuf,
}

fn verb(created_now: bool) -> &'static str {
    if created_now { "created" } else { "reused " }
}

fn runtime(e: CallError) -> AwsError {
    AwsError::Runtime(e.to_string())
}

/// Reuse the role `name` or create it (trust `iot.amazonaws.com`); either way the managed
/// registration policy is attached (attaching twice is harmless). `(role, created now)`.
pub async fn ensure_role(
    iam: &aws_sdk_iam::Client,
    pacer: &Pacer,
    name: &str,
) -> Result<(Resource, bool), AwsError> {
    let existing = pacer
        .call(Api::Other, &[], || iam.get_role().role_name(name).send())
        .await
        .map_err(runtime)?;
    let (arn, created) = match existing.as_ref().and_then(|r| r.role()) {
        Some(role) => (role.arn().to_string(), false),
        None => {
            let made = pacer
                .call(Api::Other, &[], || {
                    iam.create_role()
                        .role_name(name)
                        .assume_role_policy_document(TRUST_POLICY)
                        .description("fleetstorm: AWS IoT fleet provisioning role")
                        .send()
                })
                .await
                .map_err(runtime)?;
            let arn = made
                .as_ref()
                .and_then(|m| m.role())
                .map(|r| r.arn().to_string())
                .ok_or_else(|| AwsError::Runtime("CreateRole: no role in the answer".into()))?;
            (arn, true)
        }
    };
    pacer
        .call(Api::Other, &[], || {
            iam.attach_role_policy()
                .role_name(name)
                .policy_arn(REGISTRATION_POLICY_ARN)
                .send()
        })
        .await
        .map_err(runtime)?;
    Ok((
        Resource {
            name: name.to_string(),
            arn,
            created,
        },
        created,
    ))
}

/// Run setup (or print its plan with `dry_run`).
pub async fn setup(opts: &SetupOptions) -> Result<Option<SetupReport>, AwsError> {
    let names = Names::new(&opts.name)?;
    let (body, template) = template_body(opts.template.as_deref())?;
    let ca_pem = match &opts.root_ca {
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .map_err(|e| AwsError::Pem(format!("--root-ca {}: {e}", path.display())))?;
            crate::pki::certs(path, &pem).map_err(|e| AwsError::Pem(e.to_string()))?;
            Some(pem)
        }
        None => None,
    };
    let groups = template_groups(&body);
    if opts.dry_run {
        super::plan::print_plan(opts, &names, &groups);
        return Ok(None);
    }
    std::fs::create_dir_all(&opts.out).map_err(|e| AwsError::io(&opts.out, e))?;
    let previous = SetupState::read(&opts.out)?.unwrap_or_default();
    let was_created =
        |r: &Option<Resource>, name: &str| r.as_ref().is_some_and(|r| r.created && r.name == name);
    let config = opts.conn.load().await?;
    let region = config.region().map(|r| r.to_string()).unwrap_or_default();
    let iot = Client::new(&config);
    let pacer = Pacer::new(1.0, None, Backoff::default());
    let mut lines = Vec::new();

    // 1. Role.
    let (role, role_new) = match &opts.role_arn {
        Some(arn) => (
            Resource {
                name: arn.rsplit('/').next().unwrap_or(arn).to_string(),
                arn: arn.clone(),
                created: false,
            },
            false,
        ),
        None => ensure_role(&aws_sdk_iam::Client::new(&config), &pacer, &names.role).await?,
    };
    let role = Resource {
        created: role.created || was_created(&previous.role, &role.name),
        ..role
    };
    let role_verb = if opts.role_arn.is_some() {
        "given  "
    } else {
        verb(role_new)
    };
    lines.push(format!("{role_verb} provisioning role   {}", role.arn));

    // 2. Template.
    let described = pacer
        .call(Api::Other, &[], || {
            iot.describe_provisioning_template()
                .template_name(&names.template)
                .send()
        })
        .await
        .map_err(runtime)?;
    let template_new = match described {
        Some(d) => {
            let same = d
                .template_body()
                .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok())
                == serde_json::from_str::<serde_json::Value>(&body).ok();
            if !same {
                lines.push(format!(
                    "warning: template {} exists with another body; it was kept (teardown, or pick another --name)",
                    names.template
                ));
            }
            false
        }
        None => {
            create_template(&iot, &pacer, opts, &names, &body, &role.arn, role_new).await?;
            true
        }
    };
    let template_arn = format!("provisioningtemplate/{}", names.template);
    let template_res = Resource {
        name: names.template.clone(),
        arn: template_arn,
        created: template_new || was_created(&previous.template, &names.template),
    };
    lines.push(format!(
        "{} template            {}",
        verb(template_new),
        names.template
    ));
    let thing_groups =
        ensure_groups(&iot, &pacer, &groups, &previous.thing_groups, &mut lines).await?;

    // 3. Claim certificate.
    let cert_path = opts.out.join(CLAIM_CERT_FILE);
    let key_path = opts.out.join(CLAIM_KEY_FILE);
    let mut certificates = previous.certificates.clone();
    let mut current = None;
    if let Some(last) = certificates.last()
        && cert_path.exists()
        && key_path.exists()
    {
        let d = pacer
            .call(Api::Other, &[], || {
                iot.describe_certificate().certificate_id(&last.name).send()
            })
            .await
            .map_err(runtime)?;
        let active = d
            .and_then(|d| d.certificate_description)
            .and_then(|c| c.status)
            .is_some_and(|s| s == aws_sdk_iot::types::CertificateStatus::Active);
        if active {
            current = Some(last.clone());
        }
    }
    let cert_new = current.is_none();
    let cert = match current {
        Some(c) => c,
        None => {
            let made = pacer
                .call(Api::Other, &[], || {
                    iot.create_keys_and_certificate().set_as_active(true).send()
                })
                .await
                .map_err(runtime)?
                .ok_or_else(|| AwsError::Runtime("CreateKeysAndCertificate: not found".into()))?;
            let (Some(id), Some(arn), Some(pem), Some(key)) = (
                made.certificate_id(),
                made.certificate_arn(),
                made.certificate_pem(),
                made.key_pair().and_then(|k| k.private_key()),
            ) else {
                return Err(AwsError::Runtime(
                    "CreateKeysAndCertificate: incomplete answer".into(),
                ));
            };
            let c = Resource {
                name: id.to_string(),
                arn: arn.to_string(),
                created: true,
            };
            // Record the certificate before anything else can fail, so teardown finds it.
            certificates.push(c.clone());
            let partial = SetupState {
                certificates: certificates.clone(),
                thing_groups: thing_groups.clone(),
                role: Some(role.clone()),
                template: Some(template_res.clone()),
                ..previous.clone()
            };
            partial.write(&opts.out)?;
            crate::pki::write_file(&cert_path, pem.as_bytes(), false)
                .and_then(|()| crate::pki::write_file(&key_path, key.as_bytes(), true))
                .map_err(|e| AwsError::Runtime(e.to_string()))?;
            c
        }
    };
    lines.push(format!(
        "{} claim certificate   {} ({})",
        verb(cert_new),
        cert.name,
        cert_path.display()
    ));
    // The claim policy names the Region and account the certificate lives in.
    let account = arn_account(&cert.arn).unwrap_or("").to_string();
    let region = arn_region(&cert.arn).map_or(region, str::to_string);

    // 4. Claim policy, attached.
    let got = pacer
        .call(Api::Other, &[], || {
            iot.get_policy().policy_name(&names.policy).send()
        })
        .await
        .map_err(runtime)?;
    let policy_new = got.is_none();
    if policy_new {
        let ctx = crate::iot::policy::ArnContext::new(region.clone(), account.clone());
        let document = crate::iot::policy::claim_policy_json(&ctx, &names.template).to_string();
        pacer
            .call(Api::Other, &[], || {
                iot.create_policy()
                    .policy_name(&names.policy)
                    .policy_document(&document)
                    .send()
            })
            .await
            .map_err(runtime)?;
    }
    pacer
        .call(Api::Other, &[], || {
            iot.attach_policy()
                .policy_name(&names.policy)
                .target(&cert.arn)
                .send()
        })
        .await
        .map_err(runtime)?
        .ok_or_else(|| AwsError::Runtime("AttachPolicy: certificate or policy not found".into()))?;
    let policy = Resource {
        name: names.policy.clone(),
        arn: format!("arn:aws:iot:{region}:{account}:policy/{}", names.policy),
        created: policy_new || was_created(&previous.policy, &names.policy),
    };
    lines.push(format!(
        "{} claim policy        {} (attached)",
        verb(policy_new),
        policy.name
    ));

    // 5. Endpoint, CA, scenario.
    let endpoint = pacer
        .call(Api::Other, &[], || {
            iot.describe_endpoint().endpoint_type("iot:Data-ATS").send()
        })
        .await
        .map_err(runtime)?
        .and_then(|e| e.endpoint_address)
        .ok_or_else(|| AwsError::Runtime("DescribeEndpoint: no endpoint address".into()))?;
    lines.push(format!(
        "looked up  endpoint            {endpoint} (iot:Data-ATS)"
    ));
    let mut files = vec![
        CLAIM_CERT_FILE.to_string(),
        CLAIM_KEY_FILE.to_string(),
        SCENARIO_FILE.to_string(),
    ];
    let ca_ref = match (&opts.root_ca, ca_pem) {
        (Some(path), _) => std::path::absolute(path)
            .unwrap_or_else(|_| path.clone())
            .display()
            .to_string(),
        (None, _) => {
            let path = opts.out.join(ROOT_CA_FILE);
            std::fs::write(&path, super::AMAZON_ROOT_CA_1).map_err(|e| AwsError::io(&path, e))?;
            files.push(ROOT_CA_FILE.to_string());
            ROOT_CA_FILE.to_string()
        }
    };
    let (host, port) = split_endpoint(&endpoint);
    let scenario = opts.out.join(SCENARIO_FILE);
    let text = scenario_text(
        &names,
        &template,
        opts.template.is_none(),
        (&host, port),
        &ca_ref,
    );
    std::fs::write(&scenario, text).map_err(|e| AwsError::io(&scenario, e))?;
    lines.push(format!(
        "wrote      scenario            {}",
        scenario.display()
    ));

    let state = SetupState {
        region,
        account,
        endpoint_url: opts.conn.endpoint_url.clone(),
        role: Some(role),
        template: Some(template_res),
        policy: Some(policy),
        certificates,
        thing_groups,
        endpoint,
        files,
    };
    state.write(&opts.out)?;
    lines.push(format!(
        "wrote      state               {}",
        opts.out.join(STATE_FILE).display()
    ));
    Ok(Some(SetupReport {
        state,
        lines,
        scenario,
    }))
}

/// CreateProvisioningTemplate; a role created moments ago may not be assumable yet (IAM is
/// eventually consistent), so then InvalidRequestException is retried for up to a minute.
async fn create_template(
    iot: &Client,
    pacer: &Pacer,
    opts: &SetupOptions,
    names: &Names,
    body: &str,
    role_arn: &str,
    role_new: bool,
) -> Result<(), AwsError> {
    let hook = match &opts.hook_arn {
        Some(arn) => Some(
            aws_sdk_iot::types::ProvisioningHook::builder()
                .target_arn(arn)
                .payload_version(HOOK_PAYLOAD_VERSION)
                .build()
                .map_err(|e| AwsError::Usage(format!("--hook-arn: {e}")))?,
        ),
        None => None,
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let r = pacer
            .call(Api::Other, &[], || {
                iot.create_provisioning_template()
                    .template_name(&names.template)
                    .template_body(body)
                    .provisioning_role_arn(role_arn)
                    .enabled(true)
                    .set_pre_provisioning_hook(hook.clone())
                    .send()
            })
            .await;
        match r {
            Ok(_) => return Ok(()),
            Err(e)
                if role_new
                    && e.code.as_deref() == Some("InvalidRequestException")
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            }
            Err(e) => return Err(runtime(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::Code as _;

    #[test]
    fn names_follow_the_prefix_and_are_checked() {
        let n = Names::new("fs-test").unwrap();
        assert_eq!(n.template, "fs-test-template");
        assert_eq!(n.role, "fs-test-provisioning-role");
        assert!(Names::new("").is_err());
        assert!(Names::new("has space").is_err());
        assert_eq!(Names::new(&"x".repeat(28)).unwrap_err().code(), 2);
    }

    #[test]
    fn the_written_scenario_is_valid() {
        let names = Names::new("fsx").unwrap();
        let (_, template) = template_body(None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let text = scenario_text(
            &names,
            &template,
            true,
            ("a1b2-ats.iot.eu-west-1.amazonaws.com", 8883),
            ROOT_CA_FILE,
        );
        let path = dir.path().join(SCENARIO_FILE);
        std::fs::write(&path, &text).unwrap();
        let s =
            crate::scenario::Scenario::load(&path, &[]).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(s.devices.template, "fsx-template");
        assert_eq!(s.devices.count, 20);
        match s.target.clone() {
            crate::scenario::Target::Endpoint { host, port, ca, .. } => {
                assert_eq!(host, "a1b2-ats.iot.eu-west-1.amazonaws.com");
                assert_eq!(port, 8883);
                assert_eq!(ca, dir.path().join(ROOT_CA_FILE));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bad_template_file_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        std::fs::write(&path, "{\n  \"Resources\": \n}").unwrap();
        let err = template_body(Some(&path)).unwrap_err();
        assert!(err.to_string().contains("t.json: line 3"), "{err}");
        assert_eq!(err.code(), 3);
    }

    #[test]
    fn the_seed_template_names_one_group_and_computed_groups_are_skipped() {
        let (body, _) = template_body(None).unwrap();
        assert_eq!(template_groups(&body), ["fleet-provisioning-group"]);
        let computed = r#"{"Resources": {"t": {"Type": "AWS::IoT::Thing", "Properties": {
            "ThingGroups": ["a", {"Ref": "G"}, "a", "b"]}}, "p": {"Type": "AWS::IoT::Policy",
            "Properties": {"ThingGroups": ["not-a-thing"]}}}}"#;
        assert_eq!(template_groups(computed), ["a", "b"]);
    }

    #[test]
    fn endpoints_and_arns_split() {
        assert_eq!(
            split_endpoint("abc-ats.iot.us-east-1.amazonaws.com"),
            ("abc-ats.iot.us-east-1.amazonaws.com".into(), 8883)
        );
        assert_eq!(
            split_endpoint("127.0.0.1:40001"),
            ("127.0.0.1".into(), 40001)
        );
        assert_eq!(
            arn_account("arn:aws:iot:us-east-1:123456789012:cert/ab"),
            Some("123456789012")
        );
        assert_eq!(
            arn_region("arn:aws:iot:us-east-1:123456789012:cert/ab"),
            Some("us-east-1")
        );
    }
}
