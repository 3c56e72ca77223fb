//! The AWS CLI against a `fleetstorm mock` process: policy versions (AWS's limit of five, the
//! default version devices get), CreateCertificateFromCsr over REST, RegisterCertificate and
//! RegisterCertificateWithoutCA, ListThingPrincipalsV2 and ListPrincipalThings.

use crate::aws_cli::Cli;
use crate::support;

use serde_json::{Value, json};

/// A policy document allowing `action` on everything.
pub(crate) fn policy(action: &str) -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]
    })
    .to_string()
}

#[test]
fn policy_versions_keep_five_a_default_and_refuse_what_aws_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let mock = support::start_mock_with(dir.path(), &["--empty"]);
    let cli = Cli::new(&mock, dir.path());
    let v1 = policy("iot:Connect");
    cli.ok(&[
        "iot",
        "create-policy",
        "--policy-name",
        "p",
        "--policy-document",
        &v1,
    ]);
    // A document that is not a policy, to either create.
    for bad in ["not json", r#"{"Version": "2012-10-17", "Statement": "x"}"#] {
        cli.refused(
            &[
                "iot",
                "create-policy",
                "--policy-name",
                "q",
                "--policy-document",
                bad,
            ],
            "MalformedPolicyException",
        );
        cli.refused(
            &[
                "iot",
                "create-policy-version",
                "--policy-name",
                "p",
                "--policy-document",
                bad,
            ],
            "MalformedPolicyException",
        );
    }
    let v2 = policy("iot:Publish");
    let made = cli.ok(&[
        "iot",
        "create-policy-version",
        "--policy-name",
        "p",
        "--policy-document",
        &v2,
        "--set-as-default",
    ]);
    assert_eq!(made["policyVersionId"], "2");
    assert_eq!(made["isDefaultVersion"], true);
    assert_eq!(
        made["policyArn"],
        "arn:aws:iot:us-east-1:123456789012:policy/p"
    );
    let got = cli.ok(&["iot", "get-policy", "--policy-name", "p"]);
    assert_eq!(got["defaultVersionId"], "2");
    let doc: Value = serde_json::from_str(got["policyDocument"].as_str().unwrap()).unwrap();
    assert_eq!(doc["Statement"][0]["Action"], "iot:Publish");
    let one = cli.ok(&[
        "iot",
        "get-policy-version",
        "--policy-name",
        "p",
        "--policy-version-id",
        "1",
    ]);
    assert_eq!(one["isDefaultVersion"], false);
    assert_eq!(one["policyName"], "p");
    let doc: Value = serde_json::from_str(one["policyDocument"].as_str().unwrap()).unwrap();
    assert_eq!(doc["Statement"][0]["Action"], "iot:Connect");

    // Up to five versions; a sixth is refused until one is deleted.
    for action in ["iot:Subscribe", "iot:Receive", "iot:RetainPublish"] {
        let made = cli.ok(&[
            "iot",
            "create-policy-version",
            "--policy-name",
            "p",
            "--policy-document",
            &policy(action),
        ]);
        assert_eq!(made["isDefaultVersion"], false);
    }
    let sixth = [
        "iot",
        "create-policy-version",
        "--policy-name",
        "p",
        "--policy-document",
        &v1,
    ];
    cli.refused(&sixth, "VersionsLimitExceededException");
    let listed = cli.ok(&["iot", "list-policy-versions", "--policy-name", "p"]);
    let ids: Vec<(&str, bool)> = listed["policyVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["versionId"].as_str().unwrap(),
                v["isDefaultVersion"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ids,
        [
            ("5", false),
            ("4", false),
            ("3", false),
            ("2", true),
            ("1", false)
        ]
    );
    let delete = |id: &str| {
        vec![
            "iot".to_string(),
            "delete-policy-version".into(),
            "--policy-name".into(),
            "p".into(),
            "--policy-version-id".into(),
            id.into(),
        ]
    };
    fn args(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let message = cli.refused(&args(&delete("2")), "DeleteConflictException");
    assert!(message.contains("default version"), "{message}");
    cli.refused(&args(&delete("9")), "ResourceNotFoundException");
    cli.refused(&args(&delete("x")), "InvalidRequestException");
    cli.ok(&args(&delete("5")));
    assert_eq!(
        cli.ok(&sixth)["policyVersionId"],
        "6",
        "IDs are never reused"
    );

    cli.ok(&[
        "iot",
        "set-default-policy-version",
        "--policy-name",
        "p",
        "--policy-version-id",
        "1",
    ]);
    assert_eq!(
        cli.ok(&["iot", "get-policy", "--policy-name", "p"])["defaultVersionId"],
        "1"
    );
    cli.refused(
        &[
            "iot",
            "set-default-policy-version",
            "--policy-name",
            "p",
            "--policy-version-id",
            "5",
        ],
        "ResourceNotFoundException",
    );
    cli.refused(
        &["iot", "list-policy-versions", "--policy-name", "nope"],
        "ResourceNotFoundException",
    );
    // DeletePolicy wants the other versions gone first.
    let delete_policy = ["iot", "delete-policy", "--policy-name", "p"];
    let message = cli.refused(&delete_policy, "DeleteConflictException");
    assert!(
        message.contains("The policy cannot be deleted as versions other than"),
        "{message}"
    );
    for id in ["2", "3", "4", "6"] {
        cli.ok(&args(&delete(id)));
    }
    cli.ok(&delete_policy);
    cli.refused(
        &["iot", "get-policy", "--policy-name", "p"],
        "ResourceNotFoundException",
    );
}

/// A CSR for a new P-256 key.
fn csr_pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["device".to_string()]).unwrap();
    params.serialize_request(&key).unwrap().pem().unwrap()
}

#[test]
fn certificates_from_csrs_and_registered_ones_join_the_registry_as_on_aws() {
    let dir = tempfile::tempdir().unwrap();
    let mock = support::start_mock_with(dir.path(), &["--empty"]);
    let cli = Cli::new(&mock, dir.path());
    std::fs::write(dir.path().join("device.csr"), csr_pem()).unwrap();
    let status = |id: &str| {
        cli.ok(&["iot", "describe-certificate", "--certificate-id", id])["certificateDescription"]
            ["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let from_csr = [
        "iot",
        "create-certificate-from-csr",
        "--certificate-signing-request",
        "file://device.csr",
    ];
    let inactive = cli.ok(&from_csr);
    let id = inactive["certificateId"].as_str().unwrap().to_string();
    assert_eq!(
        inactive["certificateArn"],
        format!("arn:aws:iot:us-east-1:123456789012:cert/{id}")
    );
    assert!(
        inactive["certificatePem"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE")
    );
    assert_eq!(status(&id), "INACTIVE");
    let active: Vec<&str> = from_csr
        .iter()
        .copied()
        .chain(["--set-as-active"])
        .collect();
    let active = cli.ok(&active);
    let active_id = active["certificateId"].as_str().unwrap().to_string();
    assert_ne!(
        active_id, id,
        "the same CSR again is a distinct certificate"
    );
    assert_eq!(status(&active_id), "ACTIVE");
    cli.refused(
        &[
            "iot",
            "create-certificate-from-csr",
            "--certificate-signing-request",
            "not a CSR",
        ],
        "InvalidRequestException",
    );

    // RegisterCertificate: the mock CA's certificate, once deleted, registers again.
    let pem = inactive["certificatePem"].as_str().unwrap().to_string();
    std::fs::write(dir.path().join("issued.pem"), &pem).unwrap();
    let register = [
        "iot",
        "register-certificate",
        "--certificate-pem",
        "file://issued.pem",
    ];
    let message = cli.refused(&register, "ResourceAlreadyExistsException");
    assert!(message.contains("already"), "{message}");
    cli.ok(&["iot", "delete-certificate", "--certificate-id", &id]);
    let registered = cli.ok(&register);
    assert_eq!(registered["certificateId"], id.as_str());
    assert_eq!(status(&id), "INACTIVE", "INACTIVE unless asked");
    cli.ok(&["iot", "delete-certificate", "--certificate-id", &id]);
    let with_ca: Vec<&str> = register
        .iter()
        .copied()
        .chain([
            "--ca-certificate-pem",
            "file://pki/root-ca.pem",
            "--set-as-active",
        ])
        .collect();
    cli.ok(&with_ca);
    assert_eq!(status(&id), "ACTIVE");

    // A certificate of another CA: RegisterCertificate refuses it, WithoutCA takes it.
    let key = rcgen::KeyPair::generate().unwrap();
    let foreign = rcgen::CertificateParams::new(vec!["elsewhere".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.path().join("foreign.pem"), foreign.pem()).unwrap();
    let message = cli.refused(
        &[
            "iot",
            "register-certificate",
            "--certificate-pem",
            "file://foreign.pem",
        ],
        "CertificateValidationException",
    );
    assert!(message.contains("not issued by a CA"), "{message}");
    cli.refused(
        &[
            "iot",
            "register-certificate",
            "--certificate-pem",
            "file://issued.pem",
            "--ca-certificate-pem",
            "file://foreign.pem",
        ],
        "CertificateValidationException",
    );
    let without_ca = [
        "iot",
        "register-certificate-without-ca",
        "--certificate-pem",
        "file://foreign.pem",
        "--status",
        "ACTIVE",
    ];
    let foreign_id = cli.ok(&without_ca)["certificateId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        foreign_id,
        fleetstorm::pki::certificate_id(foreign.der()),
        "the ID is the SHA-256 of the DER"
    );
    assert_eq!(status(&foreign_id), "ACTIVE");
    cli.refused(&without_ca, "ResourceAlreadyExistsException");
    cli.refused(
        &[
            "iot",
            "register-certificate-without-ca",
            "--certificate-pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ],
        "CertificateValidationException",
    );
    cli.refused(
        &[
            "iot",
            "register-certificate-without-ca",
            "--certificate-pem",
            "file://issued.pem",
            "--status",
            "PENDING_TRANSFER",
        ],
        "InvalidRequestException",
    );

    // Principals of a thing, both ways, paged.
    cli.ok(&["iot", "create-thing", "--thing-name", "dev"]);
    let arns: Vec<String> = [&id, &active_id]
        .iter()
        .map(|i| format!("arn:aws:iot:us-east-1:123456789012:cert/{i}"))
        .collect();
    for arn in &arns {
        cli.ok(&[
            "iot",
            "attach-thing-principal",
            "--thing-name",
            "dev",
            "--principal",
            arn,
        ]);
    }
    let mut sorted = arns.clone();
    sorted.sort();
    let v2 = cli.ok(&[
        "iot",
        "list-thing-principals-v2",
        "--thing-name",
        "dev",
        "--page-size",
        "1",
    ]);
    let expected: Vec<Value> = sorted
        .iter()
        .map(|a| json!({"principal": a, "thingPrincipalType": "NON_EXCLUSIVE_THING"}))
        .collect();
    assert_eq!(v2["thingPrincipalObjects"], json!(expected));
    let first = cli.ok(&[
        "iot",
        "list-thing-principals-v2",
        "--thing-name",
        "dev",
        "--max-items",
        "1",
    ]);
    assert_eq!(first["thingPrincipalObjects"].as_array().unwrap().len(), 1);
    assert!(first["NextToken"].is_string(), "{first}");
    let exclusive = cli.ok(&[
        "iot",
        "list-thing-principals-v2",
        "--thing-name",
        "dev",
        "--thing-principal-type",
        "EXCLUSIVE_THING",
    ]);
    assert_eq!(exclusive["thingPrincipalObjects"], json!([]));
    cli.refused(
        &["iot", "list-thing-principals-v2", "--thing-name", "ghost"],
        "ResourceNotFoundException",
    );
    cli.ok(&["iot", "create-thing", "--thing-name", "dev2"]);
    cli.ok(&[
        "iot",
        "attach-thing-principal",
        "--thing-name",
        "dev2",
        "--principal",
        &arns[0],
    ]);
    let things = cli.ok(&[
        "iot",
        "list-principal-things",
        "--principal",
        &arns[0],
        "--page-size",
        "1",
    ]);
    assert_eq!(things["things"], json!(["dev", "dev2"]));
    let first = cli.ok(&[
        "iot",
        "list-principal-things",
        "--principal",
        &arns[0],
        "--max-items",
        "1",
    ]);
    assert_eq!(first["things"], json!(["dev"]));
    assert!(first["NextToken"].is_string(), "{first}");
    cli.refused(
        &[
            "iot",
            "list-principal-things",
            "--principal",
            &format!("arn:aws:iot:us-east-1:123456789012:cert/{}", "0".repeat(64)),
        ],
        "ResourceNotFoundException",
    );
    // A thing with principals attached cannot be deleted.
    let message = cli.refused(
        &["iot", "delete-thing", "--thing-name", "dev"],
        "InvalidRequestException",
    );
    assert!(message.contains("still attached"), "{message}");
}
