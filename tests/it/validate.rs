//! `fleetstorm validate` says what is wrong before anything runs: the `--set` argument that does
//! not fit, a template the mock target does not have.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_fleetstorm");

fn validate(file: &std::path::Path, sets: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("validate").arg(file);
    for set in sets {
        cmd.args(["--set", set]);
    }
    cmd.output().unwrap()
}

fn quickstart() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/quickstart.toml")
}

#[test]
fn a_set_error_names_the_set_argument() {
    let out = validate(&quickstart(), &["devices.count=abc"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("quickstart.toml: --set devices.count=abc: invalid type"),
        "{stderr}"
    );
    assert!(!stderr.contains("line "), "{stderr}");
}

#[test]
fn validate_refuses_a_template_the_mock_target_does_not_have() {
    let out = validate(&quickstart(), &["devices.template=NoSuchTemplate"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("devices.template: the mock target has no template \"NoSuchTemplate\""),
        "{stderr}"
    );
    let out = validate(&quickstart(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
