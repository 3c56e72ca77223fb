//! The command-line contract: `pki init`, refusals of bad templates and settings at mock start.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_fleetstorm");

#[test]
fn pki_init_creates_the_documented_files_and_reuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let first = Command::new(BIN)
        .args(["pki", "init"])
        .arg(&pki)
        .args(["--hostname", "iot.test"])
        .output()
        .unwrap();
    assert!(first.status.success());
    assert!(String::from_utf8_lossy(&first.stdout).contains("created PKI"));
    for f in [
        "root-ca.pem",
        "root-ca.key",
        "server.pem",
        "server.key",
        "claim.pem",
        "claim.key",
    ] {
        assert!(pki.join(f).exists(), "{f}");
    }
    let claim = std::fs::read(pki.join("claim.pem")).unwrap();
    let second = Command::new(BIN)
        .args(["pki", "init"])
        .arg(&pki)
        .output()
        .unwrap();
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stdout).contains("reusing existing PKI"));
    assert_eq!(std::fs::read(pki.join("claim.pem")).unwrap(), claim);
}

#[test]
fn an_invalid_template_is_refused_at_start_with_its_path_and_json_pointer() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("bad.json");
    std::fs::write(
        &template,
        r#"{"Resources":{"thing":{"Type":"AWS::IoT::Thing","Properties":{"ThingName":{"Fn::If":["a","b","c"]}}}}}"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["mock", "--listen", "127.0.0.1:0", "--pki"])
        .arg(dir.path().join("pki"))
        .arg("--template")
        .arg(format!("Bad={}", template.display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.json"), "{stderr}");
    assert!(
        stderr.contains("/Resources/thing/Properties/ThingName"),
        "{stderr}"
    );
}

#[test]
fn a_bad_settings_file_and_a_broken_pem_get_distinct_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mock.toml");
    std::fs::write(&config, "keys = \"p256\"\ntoken_tl = \"1h\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["mock", "--listen", "127.0.0.1:0", "--pki"])
        .arg(dir.path().join("pki"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("mock.toml") && stderr.contains("line 2") && stderr.contains("token_tl"),
        "{stderr}"
    );

    let pki = dir.path().join("pki2");
    assert!(
        Command::new(BIN)
            .args(["pki", "init"])
            .arg(&pki)
            .status()
            .unwrap()
            .success()
    );
    std::fs::write(
        pki.join("claim.key"),
        "-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["mock", "--listen", "127.0.0.1:0", "--pki"])
        .arg(&pki)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("claim.key"));
}

#[test]
fn every_shipped_scenario_validates_and_documents_how_to_run_it() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let out = Command::new(BIN)
            .arg("validate")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(
            text.starts_with('#') && text.contains(&format!("scenarios/{name}")),
            "{name}: starts with a comment saying what it is and how to run it"
        );
        checked += 1;
    }
    assert!(checked >= 5, "{checked} scenarios");
}

/// A taken port is exit 1 naming the flag and the address, whichever listener it is: the MQTT
/// `--listen`, the control plane's `--control` (exit 3, "invalid settings", before), the
/// metrics endpoint of `mock` and of `run`.
#[test]
fn a_taken_port_is_one_exit_code_whichever_listener() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let pki = dir.path().join("pki");
    let pki = pki.to_str().unwrap();
    let scenario = dir.path().join("s.toml");
    std::fs::write(
        &scenario,
        r#"
[target]
kind = "mock"
[target.mock]
keys = "p256"
[devices]
count = 1
client_id = "port-{seq:04}"
certificate = "csr"
[devices.parameters]
SerialNumber = "{seq:06}"
DeviceName = "port-thing-{seq:04}"
DeviceLocation = "Berlin"
[[schedule]]
executor = "constant-arrival-rate"
rate = 1
duration = "1s"
"#,
    )
    .unwrap();
    let out = dir.path().join("out");
    let mock = ["mock", "--keys", "p256", "--pki", pki];
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("--listen", [&mock[..], &["--listen", &addr]].concat()),
        (
            "--control",
            [&mock[..], &["--listen", "127.0.0.1:0", "--control", &addr]].concat(),
        ),
        (
            "--metrics-listen",
            [
                &mock[..],
                &["--listen", "127.0.0.1:0", "--metrics-listen", &addr],
            ]
            .concat(),
        ),
        (
            "--metrics-listen",
            vec![
                "run",
                scenario.to_str().unwrap(),
                "--no-tui",
                "--out",
                out.to_str().unwrap(),
                "--metrics-listen",
                &addr,
            ],
        ),
    ];
    for (flag, args) in cases {
        let o = Command::new(BIN)
            .current_dir(dir.path())
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("{flag} {addr}: cannot listen")),
            "{args:?}: {stderr}"
        );
    }
    assert!(!out.exists(), "the run claimed its results folder");
}
