//! The AWS CLI (`awscli` from PyPI) against a `fleetstorm mock` process's control plane: the
//! seed's set-up commands unchanged except for `--endpoint-url`, then list, update and delete as
//! on AWS, refusals included.
//!
//! The test creates its own virtualenv under `target/awscli-venv` from
//! `tests/aws/requirements.txt` when it is missing. It never skips: without Python or PyPI it
//! fails and says why.

use crate::common;
use crate::support;
use support::start_mock;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fleetstorm::device::{self, DeviceTls, Endpoint};
use serde_json::Value;

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's `aws`, creating the venv on first use.
fn venv_aws() -> PathBuf {
    common::python_venv("awscli-venv", "tests/aws/requirements.txt", "import awscli").join("aws")
}

/// Runs `aws --endpoint-url CONTROL ARGS...` in `dir` with dummy credentials and no config.
struct Cli<'a> {
    aws: PathBuf,
    endpoint_url: String,
    dir: &'a Path,
}

impl Cli<'_> {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.aws)
            .arg("--endpoint-url")
            .arg(&self.endpoint_url)
            .args(args)
            .current_dir(self.dir)
            .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
            .env(
                "AWS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            )
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_DEFAULT_OUTPUT", "json")
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .expect("run aws")
    }

    /// A command that must succeed; its JSON output (`Null` when it prints nothing).
    #[track_caller]
    fn ok(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "aws {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&out.stdout).expect("JSON output")
        }
    }

    /// A command that must fail with AWS error `code`; its message.
    #[track_caller]
    fn refused(&self, args: &[&str], code: &str) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "aws {args:?} succeeded");
        assert!(
            stderr.contains(&format!("An error occurred ({code})")),
            "aws {args:?}: expected {code}, got {stderr}"
        );
        stderr
    }
}

#[test]
fn the_seed_set_up_and_the_aws_cli_work_against_the_mock_as_on_aws() {
    let aws = venv_aws();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let mock = start_mock(work);
    for file in [
        "fleet-provisioning-template.json",
        "fleet-provisioning-policy.json",
    ] {
        std::fs::copy(manifest_dir().join("tests/aws").join(file), work.join(file)).unwrap();
    }
    let cli = Cli {
        aws,
        endpoint_url: mock.control.clone(),
        dir: work,
    };

    // The mock starts with the seed's template and claim policy built in; a fresh account has
    // neither, so remove them first (the built-in claim certificate keeps working otherwise).
    let claim_id = fleetstorm::pki::certificate_id(
        &fleetstorm::pki::certs(
            &mock.pki.join("claim.pem"),
            &std::fs::read_to_string(mock.pki.join("claim.pem")).unwrap(),
        )
        .unwrap()[0],
    );
    let builtin_claim = format!("arn:aws:iot:us-east-1:123456789012:cert/{claim_id}");
    cli.ok(&[
        "iot",
        "delete-provisioning-template",
        "--template-name",
        "FleetProvisioningTemplate",
    ]);
    cli.refused(
        &[
            "iot",
            "delete-policy",
            "--policy-name",
            "fleet-provisioning_Policy",
        ],
        "DeleteConflictException",
    );
    cli.ok(&[
        "iot",
        "detach-policy",
        "--policy-name",
        "fleet-provisioning_Policy",
        "--target",
        &builtin_claim,
    ]);
    cli.ok(&[
        "iot",
        "delete-policy",
        "--policy-name",
        "fleet-provisioning_Policy",
    ]);

    // The seed's set-up, command for command (only --endpoint-url added).
    cli.ok(&[
        "iot",
        "create-provisioning-template",
        "--template-name",
        "FleetProvisioningTemplate",
        "--provisioning-role-arn",
        "arn:aws:iam::123456789012:role/FleetProvisioningRole",
        "--template-body",
        "file://./fleet-provisioning-template.json",
        "--enabled",
    ]);
    let thing_name = "provision-claim";
    let result = cli.ok(&[
        "iot",
        "create-keys-and-certificate",
        "--set-as-active",
        "--public-key-outfile",
        &format!("{thing_name}.public.key"),
        "--private-key-outfile",
        &format!("{thing_name}.private.key"),
        "--certificate-pem-outfile",
        &format!("{thing_name}.certificate.pem"),
    ]);
    let certificate_arn = result["certificateArn"].as_str().unwrap().to_string();
    for suffix in ["public.key", "private.key", "certificate.pem"] {
        let text = std::fs::read_to_string(work.join(format!("{thing_name}.{suffix}"))).unwrap();
        assert!(text.starts_with("-----BEGIN"), "{suffix}: {text}");
    }
    cli.ok(&[
        "iot",
        "create-policy",
        "--policy-name",
        "fleet-provisioning_Policy",
        "--policy-document",
        "file://./fleet-provisioning-policy.json",
    ]);
    cli.ok(&[
        "iot",
        "attach-policy",
        "--policy-name",
        "fleet-provisioning_Policy",
        "--target",
        &certificate_arn,
    ]);
    let endpoint = cli.ok(&[
        "iot",
        "describe-endpoint",
        "--endpoint-type",
        "iot:Data-ATS",
    ]);
    assert_eq!(endpoint["endpointAddress"], mock.mqtt.ip().to_string());

    // Two devices provision over MQTT with what the CLI wrote.
    let read = |name: &str| std::fs::read_to_string(work.join(name)).unwrap();
    let tls = DeviceTls::new(
        &std::fs::read_to_string(mock.pki.join("root-ca.pem")).unwrap(),
        &read("provision-claim.certificate.pem"),
        &read("provision-claim.private.key"),
        false,
    )
    .unwrap();
    let endpoint = Endpoint {
        host: endpoint["endpointAddress"].as_str().unwrap().to_string(),
        port: mock.mqtt.port(),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut certificates = BTreeMap::new();
    for name in ["FPC-device-1", "FPC-device-2"] {
        let report = runtime.block_on(device::provision(
            &endpoint,
            &tls,
            &common::seed_device(name, "FleetProvisioningTemplate"),
            &device::Handles::default(),
        ));
        let p = report.outcome.unwrap_or_else(|e| panic!("{name}: {e:?}"));
        certificates.insert(name, p.certificate_id);
    }

    // list-things and list-thing-principals show them.
    let things = cli.ok(&["iot", "list-things"]);
    let names: Vec<&str> = things["things"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["thingName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["FPC-device-1", "FPC-device-2"]);
    let id = &certificates["FPC-device-1"];
    let arn = format!("arn:aws:iot:us-east-1:123456789012:cert/{id}");
    let principals = cli.ok(&[
        "iot",
        "list-thing-principals",
        "--thing-name",
        "FPC-device-1",
    ]);
    assert_eq!(principals["principals"], serde_json::json!([arn]));

    // Refusals as on AWS: the thing while attached, the certificate while ACTIVE, then while
    // attached to the thing.
    let message = cli.refused(
        &["iot", "delete-thing", "--thing-name", "FPC-device-1"],
        "InvalidRequestException",
    );
    assert!(
        message.contains("still attached to one or more principals"),
        "{message}"
    );
    let message = cli.refused(
        &["iot", "delete-certificate", "--certificate-id", id],
        "CertificateStateException",
    );
    assert!(message.contains("deactivated"), "{message}");
    cli.ok(&[
        "iot",
        "update-certificate",
        "--certificate-id",
        id,
        "--new-status",
        "INACTIVE",
    ]);
    let described = cli.ok(&["iot", "describe-certificate", "--certificate-id", id]);
    assert_eq!(described["certificateDescription"]["status"], "INACTIVE");
    let message = cli.refused(
        &["iot", "delete-certificate", "--certificate-id", id],
        "DeleteConflictException",
    );
    assert!(
        message.contains(&format!(
            "Things must be detached before deletion (arn: {arn})"
        )),
        "{message}"
    );

    // Detach everything, then both deletes go through.
    cli.ok(&[
        "iot",
        "detach-thing-principal",
        "--thing-name",
        "FPC-device-1",
        "--principal",
        &arn,
    ]);
    cli.refused(
        &["iot", "delete-certificate", "--certificate-id", id],
        "DeleteConflictException",
    );
    let attached = cli.ok(&["iot", "list-attached-policies", "--target", &arn]);
    for p in attached["policies"].as_array().unwrap() {
        let policy = p["policyName"].as_str().unwrap();
        cli.ok(&[
            "iot",
            "detach-policy",
            "--policy-name",
            policy,
            "--target",
            &arn,
        ]);
    }
    cli.ok(&["iot", "delete-certificate", "--certificate-id", id]);
    cli.ok(&["iot", "delete-thing", "--thing-name", "FPC-device-1"]);
    cli.refused(
        &["iot", "describe-thing", "--thing-name", "FPC-device-1"],
        "ResourceNotFoundException",
    );
    cli.refused(
        &["iot", "describe-certificate", "--certificate-id", id],
        "ResourceNotFoundException",
    );
    let things = cli.ok(&["iot", "list-things"]);
    assert_eq!(things["things"].as_array().unwrap().len(), 1, "{things}");
    // The CLI follows the pages itself: three certificates remain (built-in claim, the CLI's
    // claim, FPC-device-2's), listed whole even one per page.
    let listed = cli.ok(&["iot", "list-certificates", "--max-items", "10"]);
    assert_eq!(
        listed["certificates"].as_array().unwrap().len(),
        3,
        "{listed}"
    );
    let one = cli.ok(&["iot", "list-certificates", "--page-size", "1"]);
    assert_eq!(one["certificates"].as_array().unwrap().len(), 1);
    assert!(one["nextMarker"].is_string(), "{one}");
}
