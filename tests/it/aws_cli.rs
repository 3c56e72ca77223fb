//! The AWS CLI (`awscli` from PyPI) against a `fleetstorm mock` process's control plane: the
//! seed's set-up commands unchanged except for `--endpoint-url` against `fleetstorm mock
//! --empty`, a device of the official Python SDK provisioning with what they made, then list,
//! update and delete as on AWS, refusals included.
//!
//! The tests create their virtualenvs under `target/awscli-venv` (from
//! `tests/aws/requirements.txt`) and `target/sdk-venv` when they are missing. They never skip:
//! without Python or PyPI they fail and say why.

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
pub(crate) fn venv_aws() -> PathBuf {
    common::python_venv("awscli-venv", "tests/aws/requirements.txt", "import awscli").join("aws")
}

/// Runs `aws --endpoint-url CONTROL ARGS...` in `dir` with dummy credentials and no config.
pub(crate) struct Cli<'a> {
    pub aws: PathBuf,
    pub endpoint_url: String,
    pub dir: &'a Path,
    /// The secret access key signed with (of access key `AKIDEXAMPLE`).
    pub secret: &'static str,
}

/// The secret `Cli` signs with unless told otherwise.
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

impl<'a> Cli<'a> {
    /// The CLI against `mock`'s control plane, run in `dir`.
    pub fn new(mock: &support::Mock, dir: &'a Path) -> Cli<'a> {
        Cli {
            aws: venv_aws(),
            endpoint_url: mock.control.clone(),
            dir,
            secret: SECRET,
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.aws)
            .arg("--endpoint-url")
            .arg(&self.endpoint_url)
            .args(args)
            .current_dir(self.dir)
            .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
            .env("AWS_SECRET_ACCESS_KEY", self.secret)
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
    pub fn ok(&self, args: &[&str]) -> Value {
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
    pub fn refused(&self, args: &[&str], code: &str) -> String {
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

/// The seed tutorial's create-provisioning-template, as written there (the role ARN filled in).
const CREATE_TEMPLATE: &[&str] = &[
    "iot",
    "create-provisioning-template",
    "--template-name",
    "FleetProvisioningTemplate",
    "--provisioning-role-arn",
    "arn:aws:iam::123456789012:role/FleetProvisioningRole",
    "--template-body",
    "file://./fleet-provisioning-template.json",
    "--enabled",
];

/// The seed tutorial's create-policy, as written there.
const CREATE_POLICY: &[&str] = &[
    "iot",
    "create-policy",
    "--policy-name",
    "fleet-provisioning_Policy",
    "--policy-document",
    "file://./fleet-provisioning-policy.json",
];

/// The seed tutorial's set-up and files, copied into `work`; the CLI against `mock`.
fn tutorial<'a>(mock: &support::Mock, work: &'a Path) -> Cli<'a> {
    for file in [
        "fleet-provisioning-template.json",
        "fleet-provisioning-policy.json",
    ] {
        std::fs::copy(manifest_dir().join("tests/aws").join(file), work.join(file)).unwrap();
    }
    Cli::new(mock, work)
}

/// Against `fleetstorm mock --empty`, a fresh account: the seed tutorial's set-up runs command
/// for command, then the official Python SDK and fleetstorm's devices provision with what it
/// made; list, update and delete then behave as on AWS.
#[test]
fn the_seed_set_up_and_the_aws_cli_work_against_an_empty_mock_as_on_aws() {
    let python = crate::sdk_interop::venv_python();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let mock = support::start_mock_with(work, &["--empty"]);
    assert!(
        mock.ready[0].contains("empty account: no policy, no claim certificate"),
        "{:?}",
        mock.ready
    );
    assert_eq!(
        mock.ready.last().unwrap().split(';').next(),
        Some("  templates: none")
    );
    let cli = tutorial(&mock, work);
    for (listing, key) in [
        ("list-provisioning-templates", "templates"),
        ("list-policies", "policies"),
        ("list-certificates", "certificates"),
    ] {
        let listed = cli.ok(&["iot", listing]);
        assert_eq!(listed[key], serde_json::json!([]), "{listing}: {listed}");
    }
    // The PKI's claim certificate is not registered: it cannot connect.
    let pki_claim = DeviceTls::new(
        &std::fs::read_to_string(mock.pki.join("root-ca.pem")).unwrap(),
        &std::fs::read_to_string(mock.pki.join("claim.pem")).unwrap(),
        &std::fs::read_to_string(mock.pki.join("claim.key")).unwrap(),
        false,
    )
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let refused = runtime.block_on(device::provision(
        &Endpoint {
            host: mock.mqtt.ip().to_string(),
            port: mock.mqtt.port(),
        },
        &pki_claim,
        &common::seed_device("unregistered-claim", "FleetProvisioningTemplate"),
        &device::Handles::default(),
    ));
    assert!(
        refused.outcome.is_err(),
        "the unregistered claim provisioned"
    );

    // The seed's set-up, command for command (only --endpoint-url added).
    cli.ok(CREATE_TEMPLATE);
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
    cli.ok(CREATE_POLICY);
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

    // The official Python SDK provisions a device at the endpoint DescribeEndpoint gave, with
    // the claim certificate and key the CLI wrote.
    let host = endpoint["endpointAddress"].as_str().unwrap().to_string();
    let sdk_work = work.join("sdk");
    std::fs::create_dir_all(&sdk_work).unwrap();
    let out = Command::new(&python)
        .arg(manifest_dir().join("tests/sdk/fleet_provision.py"))
        .args(["--endpoint", &host, "--port", &mock.mqtt.port().to_string()])
        .arg("--ca")
        .arg(mock.pki.join("root-ca.pem"))
        .arg("--cert")
        .arg(work.join("provision-claim.certificate.pem"))
        .arg("--key")
        .arg(work.join("provision-claim.private.key"))
        .args(["--mode", "keys", "--template", "FleetProvisioningTemplate"])
        .args([
            "--params",
            r#"{"DeviceName":"FPC-device-sdk","SerialNumber":"123456001","DeviceLocation":"Berlin"}"#,
        ])
        .arg("--workdir")
        .arg(&sdk_work)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let verdict: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("SDK script: {stdout}\n{}", common::output_text(&out)));
    assert_eq!(verdict["ok"], true, "{verdict}");
    assert_eq!(verdict["stage"], "done", "{verdict}");
    assert_eq!(verdict["thingName"], "FPC-device-sdk", "{verdict}");

    // Two devices of fleetstorm's provision the same way.
    let read = |name: &str| std::fs::read_to_string(work.join(name)).unwrap();
    let tls = DeviceTls::new(
        &std::fs::read_to_string(mock.pki.join("root-ca.pem")).unwrap(),
        &read("provision-claim.certificate.pem"),
        &read("provision-claim.private.key"),
        false,
    )
    .unwrap();
    let endpoint = Endpoint {
        host,
        port: mock.mqtt.port(),
    };
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
    assert_eq!(names, ["FPC-device-1", "FPC-device-2", "FPC-device-sdk"]);
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
    assert_eq!(things["things"].as_array().unwrap().len(), 2, "{things}");
    // The CLI follows the pages itself: three certificates remain (the CLI's claim,
    // FPC-device-2's, FPC-device-sdk's), listed whole even one per page.
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

/// Without `--empty` the mock preloads the seed's template and the claim certificate's policy:
/// the ready lines name them, and the tutorial's creates of the same names collide with a
/// message that says `--empty` exists.
#[test]
fn a_preloading_mock_names_what_it_preloaded_and_a_colliding_create_points_at_empty() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let mock = start_mock(work);
    let claim_id = fleetstorm::pki::certificate_id(
        &fleetstorm::pki::certs(
            &mock.pki.join("claim.pem"),
            &std::fs::read_to_string(mock.pki.join("claim.pem")).unwrap(),
        )
        .unwrap()[0],
    );
    assert_eq!(
        mock.ready[1].trim_end(),
        format!(
            "  preloaded: template FleetProvisioningTemplate; policy fleet-provisioning_Policy attached to the claim certificate {claim_id} (ACTIVE); --empty starts without them"
        )
    );
    let cli = tutorial(&mock, work);
    let message = cli.refused(CREATE_TEMPLATE, "ResourceAlreadyExistsException");
    assert!(message.contains("fleetstorm mock --empty"), "{message}");
    let message = cli.refused(CREATE_POLICY, "ResourceAlreadyExistsException");
    assert!(message.contains("fleetstorm mock --empty"), "{message}");
    // A name the mock did not preload collides without the note.
    let create_other = [
        "iot",
        "create-policy",
        "--policy-name",
        "other_Policy",
        "--policy-document",
        "file://./fleet-provisioning-policy.json",
    ];
    cli.ok(&create_other);
    let message = cli.refused(&create_other, "ResourceAlreadyExistsException");
    assert!(!message.contains("--empty"), "{message}");
}

/// With `--credentials FILE` the control plane checks SigV4: the AWS CLI signing with the file's
/// key works, with another secret or key it gets AWS's error and exit code, and an unsigned
/// request is refused.
#[test]
fn with_credentials_the_control_plane_accepts_only_requests_signed_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let file = work.join("mock-credentials");
    std::fs::write(
        &file,
        format!("[default]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = {SECRET}\n"),
    )
    .unwrap();
    let mock =
        support::start_mock_with(work, &["--empty", "--credentials", file.to_str().unwrap()]);
    let mut cli = tutorial(&mock, work);
    // The tutorial's commands work with the keys unchanged (a body, a path, a query string).
    cli.ok(CREATE_TEMPLATE);
    cli.ok(CREATE_POLICY);
    let endpoint = cli.ok(&[
        "iot",
        "describe-endpoint",
        "--endpoint-type",
        "iot:Data-ATS",
    ]);
    assert_eq!(endpoint["endpointAddress"], "127.0.0.1");
    let listed = cli.ok(&["iot", "list-policies", "--page-size", "1"]);
    assert_eq!(listed["policies"].as_array().unwrap().len(), 1, "{listed}");

    // The right key with a wrong secret: AWS's code, and the exit code awscli v1 gives a
    // service error (255).
    cli.secret = "not-the-secret";
    let out = cli.run(&["iot", "list-policies"]);
    assert_eq!(
        out.status.code(),
        Some(255),
        "{}",
        common::output_text(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("An error occurred (InvalidSignatureException) when calling the ListPolicies operation: The request signature we calculated does not match"),
        "{stderr}"
    );
    // A key the mock was not given.
    let out = Command::new(&cli.aws)
        .args(["--endpoint-url", &mock.control, "iot", "list-policies"])
        .env("AWS_ACCESS_KEY_ID", "AKIDUNKNOWN")
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(255),
        "{}",
        common::output_text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("(UnrecognizedClientException)"),
        "{}",
        common::output_text(&out)
    );

    // An unsigned request, as curl sends it.
    let response = common::unsigned_get(mock.control.trim_start_matches("http://"), "/policies");
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("x-amzn-errortype: missingauthenticationtokenexception:"),
        "{response}"
    );
    assert!(
        response.ends_with(r#"{"message":"Missing Authentication Token"}"#),
        "{response}"
    );
}

/// A control plane on a non-loopback address without credentials is refused before anything
/// is bound (the test binds nothing but loopback: the refusal comes first).
#[test]
fn a_non_loopback_control_plane_without_credentials_exits_2_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let out = support::offline(&[
        "mock",
        "--listen",
        "127.0.0.1:0",
        "--control",
        "0.0.0.0:0",
        "--pki",
        pki.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", support::text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--control 0.0.0.0:0: not a loopback address")
            && stderr.contains("--credentials FILE")
            && stderr.contains("--insecure-control"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "{}", support::text(&out));
    // Refused before the PKI directory is even created.
    assert!(!pki.exists());
}
