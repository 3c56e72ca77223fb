//! `fleetstorm aws setup|teardown|cleanup --dry-run` offline, and the aws commands' input errors.
//!
//! No credentials and no AWS config are visible to the binary; `--endpoint-url` points at a
//! loopback listener of the test, which must see no connection.

use std::net::TcpListener;
use std::path::Path;

use crate::support;

use support::{offline, text};

/// A listener nobody should connect to, and its URL.
fn trap() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    (l, url)
}

fn assert_untouched(l: &TcpListener) {
    match l.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the dry run connected to the endpoint: {other:?}"),
    }
}

fn arn(id: &str) -> String {
    format!("arn:aws:iot:eu-west-1:123456789012:cert/{id}")
}

fn write_created(dir: &Path) {
    let csv = format!(
        "run_id,device,attempt,certificate_id,certificate_arn,thing_name,policy_names,time\n\
         r1,0,1,c0,{},dev-0,pol-0,2026-11-30T06:00:00Z\n\
         r1,1,1,c1,{},,,2026-11-30T06:00:01Z\n\
         r1,1,2,c2,{},dev-1,pol-1;shared,2026-11-30T06:00:02Z\n",
        arn("c0"),
        arn("c1"),
        arn("c2")
    );
    std::fs::write(dir.join("created.csv"), csv).unwrap();
}

#[test]
fn setup_dry_run_prints_the_plan_and_the_aws_commands_offline() {
    let (l, url) = trap();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let out = offline(&[
        "aws",
        "setup",
        "--dry-run",
        "--endpoint-url",
        &url,
        "--region",
        "eu-west-1",
        "--name",
        "fsdry",
        "--hook-arn",
        "arn:aws:lambda:eu-west-1:123456789012:function:FleetProvisioningHook",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "aws iam create-role",
        "--role-name fsdry-provisioning-role",
        "aws iam attach-role-policy",
        "AWSIoTThingsRegistration",
        "aws iot create-provisioning-template",
        "--template-name fsdry-template",
        "--pre-provisioning-hook targetArn=arn:aws:lambda:eu-west-1:123456789012:function:FleetProvisioningHook,payloadVersion=2020-04-01",
        "aws iot create-keys-and-certificate",
        "--set-as-active",
        "aws iot create-policy",
        "--policy-name fsdry-claim-policy",
        "aws iot attach-policy",
        "aws iot describe-endpoint",
        "--endpoint-type iot:Data-ATS",
        &format!("--endpoint-url {url}"),
        "Amazon Root CA 1",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in\n{stdout}"
        );
    }
    assert!(!out_dir.exists(), "a dry run writes nothing");
    assert_untouched(&l);

    // With --role-arn no IAM step is planned.
    let out = offline(&[
        "aws",
        "setup",
        "--dry-run",
        "--role-arn",
        "arn:aws:iam::123456789012:role/given",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("aws iam"), "{stdout}");
    assert!(
        stdout.contains("--provisioning-role-arn arn:aws:iam::123456789012:role/given"),
        "{stdout}"
    );
}

#[test]
fn cleanup_dry_run_lists_what_it_would_delete_offline() {
    let (l, url) = trap();
    let dir = tempfile::tempdir().unwrap();
    write_created(dir.path());
    std::fs::write(
        dir.path().join("cleanup-progress.csv"),
        "certificate,c0,deleted\n",
    )
    .unwrap();
    let out = offline(&[
        "aws",
        "cleanup",
        dir.path().to_str().unwrap(),
        "--dry-run",
        "--endpoint-url",
        &url,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("would remove 3 certificates, 2 things, and up to 3 policies"),
        "{stdout}"
    );
    for expected in [
        "certificate c0: detach policies and things, set INACTIVE, delete (done by an earlier cleanup: skipped)",
        "certificate c1:",
        "certificate c2:",
        "thing dev-0",
        "thing dev-1",
        "policy pol-0",
        "policy shared",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in\n{stdout}"
        );
    }
    assert_untouched(&l);
    let progress = std::fs::read_to_string(dir.path().join("cleanup-progress.csv")).unwrap();
    assert_eq!(
        progress, "certificate,c0,deleted\n",
        "a dry run records nothing"
    );
}

#[test]
fn a_malformed_created_csv_exits_3_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("created.csv"),
        format!(
            "run_id,device,attempt,certificate_id,certificate_arn,thing_name,policy_names,time\n\
             r1,0,1,c0,{},dev-0,,0\n\
             r1,0,one,c1,{},dev-1,,0\n",
            arn("c0"),
            arn("c1")
        ),
    )
    .unwrap();
    let out = offline(&["aws", "cleanup", dir.path().to_str().unwrap(), "--dry-run"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("created.csv") && stderr.contains("line 3"),
        "{stderr}"
    );

    let missing = tempfile::tempdir().unwrap();
    let out = offline(&[
        "aws",
        "cleanup",
        missing.path().to_str().unwrap(),
        "--dry-run",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("created.csv"));
}

#[test]
fn bad_command_lines_exit_2_and_bad_files_3() {
    // Neither RUN_DIR nor --prefix.
    let out = offline(&["aws", "cleanup"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // A bad resource prefix.
    let out = offline(&["aws", "setup", "--dry-run", "--name", "bad name"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // A template that is not JSON: the file and line are named.
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("template.json");
    std::fs::write(&template, "{\n  \"Resources\": {\n}").unwrap();
    let out = offline(&[
        "aws",
        "setup",
        "--dry-run",
        "--template",
        template.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("template.json: line 3"),
        "{}",
        text(&out)
    );
    // A root CA that is not PEM.
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate").unwrap();
    let out = offline(&[
        "aws",
        "setup",
        "--dry-run",
        "--root-ca",
        ca.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    // Teardown with no state file.
    let out = offline(&["aws", "teardown", "--out", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("aws-setup.json"),
        "{}",
        text(&out)
    );
}
