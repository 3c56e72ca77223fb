//! `fleetstorm k8s render --mock`: one standalone mock in the cluster for every shard, its PKI
//! and control-plane credentials passed through Secrets the manifests only name. The manifests
//! are validated strictly (tests/it/k8s.rs's validator), and the commands the pods would run are
//! run here, on loopback, with the Secrets' and ConfigMap's paths mapped to local files.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::MockProcess;
use crate::k8s::{BIN, args_of, documents, kind_named, render, stdout_of, validate};

const NAME: &str = "lab";

/// A mock-target scenario whose `[target.mock]` the in-cluster mock must take over.
const SCENARIO: &str = "name = \"lab\"\nseed = 3\n\n[target]\nkind = \"mock\"\n\n[target.mock]\nkeys = \"p256\"\ntoken_ttl = \"90s\"\n\n[target.mock.hooks.FleetProvisioningTemplate]\nkind = \"http\"\nurl = \"embedded\"\nprefix = \"123456\"\nlatency = \"5ms..20ms\"\n\n[devices]\ncount = 12\ncertificate = \"csr\"\n[devices.parameters]\nSerialNumber = \"{pick:123456=3,999999=1}{seq:06}\"\nDeviceLocation = \"Berlin\"\nDeviceName = \"lab-{seq:03}\"\n\n[[schedule]]\nexecutor = \"constant-arrival-rate\"\nrate = 40\nduration = \"300ms\"\n";

fn scenario_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("lab.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn flags<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "--shards",
        "1",
        "--start-at",
        "2026-12-01T10:00:00Z",
        "--run-id",
        "kmock",
        "--name",
        NAME,
    ];
    v.extend_from_slice(extra);
    v
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|a| a.as_str().expect("a string").to_string())
        .collect()
}

#[test]
fn render_mock_runs_one_mock_for_every_shard_with_its_secrets_named_not_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = scenario_file(dir.path(), SCENARIO);
    let out = dir.path().join("out");
    let args = flags(&[
        "--mock",
        "--control-secret",
        "lab-control",
        "--yes",
        "--wait-long",
        "--out",
        out.to_str().unwrap(),
    ]);
    stdout_of(&render(&scenario, &args));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "kustomization.yaml")
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.contains(&"mock-deployment.yaml".into())
            && names.contains(&"mock-service.yaml".into()),
        "{names:?}"
    );
    let kustomization = std::fs::read_to_string(out.join("kustomization.yaml")).unwrap();
    for name in &names {
        assert!(
            kustomization.contains(&format!("- {name}")),
            "{kustomization}"
        );
    }
    let (ok, text) = validate(&files);
    assert!(ok, "{text}");

    let docs: Vec<Value> = files
        .iter()
        .flat_map(|f| documents(&std::fs::read_to_string(f).unwrap()))
        .collect();
    let mock = kind_named(&docs, "Deployment", "lab-mock");
    let mock_args = args_of(mock);
    for wanted in [
        "--listen=0.0.0.0:8883",
        "--control=0.0.0.0:8443",
        "--credentials=/etc/fleetstorm/control/credentials",
        "--config=/etc/fleetstorm/mock-settings.toml",
    ] {
        assert!(mock_args.contains(&wanted.to_string()), "{mock_args:?}");
    }
    assert_eq!(mock["spec"]["replicas"], 1);
    assert_eq!(mock["spec"]["strategy"]["type"], "Recreate");
    let volumes = &mock["spec"]["template"]["spec"]["volumes"];
    let secrets: Vec<&str> = volumes
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["secret"]["secretName"].as_str())
        .collect();
    assert_eq!(secrets, ["fleetstorm-pki", "lab-control"]);
    // The Secrets are named, never filled in: no key material or key names in any manifest.
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for leak in ["aws_secret_access_key", "BEGIN", "PRIVATE KEY"] {
            assert!(!text.contains(leak), "{} holds {leak}", f.display());
        }
    }
    let service = kind_named(&docs, "Service", "lab-mock");
    let ports: Vec<&str> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(ports, ["mqtt", "control", "metrics"]);

    // The shards connect to the mock's Service with the PKI Secret's claim identity and CA.
    let job = kind_named(&docs, "Job", NAME);
    let shard_args = args_of(job);
    for wanted in [
        "--endpoint=lab-mock:8883",
        "--set=target.pki=/etc/fleetstorm/pki",
        "--yes",
    ] {
        assert!(shard_args.contains(&wanted.to_string()), "{shard_args:?}");
    }
    let shard_secrets: Vec<&str> = job["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["secret"]["secretName"].as_str())
        .collect();
    assert_eq!(shard_secrets, ["fleetstorm-pki"]);

    // The ConfigMap carries the scenario's [target.mock] as the mock's settings file.
    let config = kind_named(&docs, "ConfigMap", "lab-scenario");
    let settings: fleetstorm::mock_settings::MockSettings =
        toml::from_str(config["data"]["mock-settings.toml"].as_str().unwrap()).unwrap();
    assert_eq!(settings.token_ttl, std::time::Duration::from_secs(90));
    assert_eq!(settings.key_pool_size, 0, "CSR devices only: no RSA pool");
    assert!(
        settings.hooks.contains_key("FleetProvisioningTemplate"),
        "{settings:?}"
    );

    // Without --control-secret the control plane stays on the pod's loopback, unexposed.
    let stream = stdout_of(&render(&scenario, &flags(&["--mock", "--yes"])));
    let docs = documents(&stream);
    let mock_args = args_of(kind_named(&docs, "Deployment", "lab-mock"));
    assert!(
        mock_args.contains(&"--control=127.0.0.1:8443".to_string())
            && !mock_args.iter().any(|a| a.starts_with("--credentials")),
        "{mock_args:?}"
    );
    let ports = &kind_named(&docs, "Service", "lab-mock")["spec"]["ports"];
    assert_eq!(ports.as_array().unwrap().len(), 1, "{ports}");
    assert!(stream.contains("kubectl port-forward deployment/lab-mock 8443"));
    assert!(stream.contains("fleetstorm pki init pki --hostname lab-mock"));
}

#[test]
fn render_mock_refuses_what_one_mock_in_the_cluster_cannot_be() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = scenario_file(dir.path(), SCENARIO);
    let refused = |scenario: &Path, extra: &[&str], code: i32, wanted: &str| {
        let out = render(scenario, &flags(extra));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{extra:?}: {stderr}");
        assert!(out.stdout.is_empty(), "nothing rendered");
        assert!(stderr.contains(wanted), "{extra:?}: {stderr}");
    };
    // The pods' runs go to a non-loopback endpoint: confirmed with --yes, as any such run.
    refused(&scenario, &["--mock"], 2, "--yes");
    refused(&scenario, &["--control-secret", "c"], 2, "--mock");
    refused(
        &scenario,
        &["--mock", "--yes", "--endpoint", "h:8883"],
        2,
        "--endpoint",
    );
    refused(
        &scenario,
        &["--mock", "--yes", "--control-secret", "Bad_Name"],
        2,
        "--control-secret",
    );
    // One mock serves every variant: their mock settings must agree.
    let variants = scenario_file(
        dir.path(),
        &format!(
            "{SCENARIO}\n[[variants]]\nname = \"a\"\n\n[[variants]]\nname = \"b\"\nset = {{ \"target.mock.token_ttl\" = \"10s\" }}\n"
        ),
    );
    refused(&variants, &["--mock", "--yes"], 3, "variant \"b\"");
    let endpoint = scenario_file(
        dir.path(),
        "name = \"e\"\n[target]\nkind = \"endpoint\"\nhost = \"abc-ats.iot.eu-west-1.amazonaws.com\"\nca = \"ca.pem\"\nclaim_cert = \"c.pem\"\nclaim_key = \"c.key\"\n[devices]\ncount = 2\n[[schedule]]\nexecutor = \"constant-arrival-rate\"\nrate = 1\nduration = \"2s\"\n",
    );
    refused(&endpoint, &["--mock", "--yes"], 2, "targets an endpoint");
}

/// What the pods run, run here: the init container's copy, the mock with the ConfigMap's
/// settings and the Secrets' files, then a shard against it. Paths map to local files and every
/// address to loopback.
#[test]
fn the_rendered_mock_and_shard_commands_provision_against_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let scenario = scenario_file(d, SCENARIO);
    let stream = stdout_of(&render(
        &scenario,
        &flags(&["--mock", "--control-secret", "lab-control", "--yes"]),
    ));
    let docs = documents(&stream);
    let mock = kind_named(&docs, "Deployment", "lab-mock");
    let config = kind_named(&docs, "ConfigMap", "lab-scenario");

    // The Secrets, as a user makes them: `pki init --hostname lab-mock` and a credentials file.
    let secret = d.join("pki-secret");
    let made = Command::new(BIN)
        .args(["pki", "init"])
        .arg(&secret)
        .args(["--hostname", "lab-mock"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let credentials = d.join("credentials");
    std::fs::write(
        &credentials,
        "[default]\naws_access_key_id = AKIDLAB\naws_secret_access_key = labsecret\n",
    )
    .unwrap();
    let settings = d.join("mock-settings.toml");
    std::fs::write(
        &settings,
        config["data"]["mock-settings.toml"].as_str().unwrap(),
    )
    .unwrap();
    let pki = d.join("pki");
    std::fs::create_dir(&pki).unwrap();
    let map = |arg: &str| -> String {
        arg.replace("/etc/fleetstorm/pki", secret.to_str().unwrap())
            .replace("/var/lib/fleetstorm/pki", pki.to_str().unwrap())
            .replace(
                "/etc/fleetstorm/mock-settings.toml",
                settings.to_str().unwrap(),
            )
            .replace(
                "/etc/fleetstorm/control/credentials",
                credentials.to_str().unwrap(),
            )
            .replace("0.0.0.0:8883", "127.0.0.1:0")
            .replace("0.0.0.0:8443", "127.0.0.1:0")
            .replace("0.0.0.0:9464", "127.0.0.1:0")
    };

    // The init container's command copies the Secret into the writable PKI folder.
    let init = &mock["spec"]["template"]["spec"]["initContainers"][0];
    let command: Vec<String> = strings(&init["command"]).iter().map(|a| map(a)).collect();
    let copied = Command::new(&command[0])
        .args(&command[1..])
        .output()
        .unwrap();
    assert!(copied.status.success(), "{copied:?}");
    for file in [
        "root-ca.pem",
        "root-ca.key",
        "server.pem",
        "server.key",
        "claim.pem",
        "claim.key",
    ] {
        assert!(pki.join(file).is_file(), "{file} copied");
    }

    let mock_args: Vec<String> = args_of(mock).iter().map(|a| map(a)).collect();
    let process = MockProcess::start(&mock_args, Stdio::inherit());
    assert!(
        process.ready.contains("control http://127.0.0.1:"),
        "{}",
        process.ready
    );
    // Its control plane takes only SigV4 with the Secret's keys: an unsigned request is refused.
    let control: std::net::SocketAddr = process
        .ready
        .split("control http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("{}", process.ready));
    let answer = crate::common::unsigned_get(&control.to_string(), "/things");
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        answer.contains("MissingAuthenticationTokenException"),
        "{answer}"
    );

    // A shard, as the Job's pod runs it, against the mock.
    let job = kind_named(&docs, "Job", NAME);
    let scenario_copy = d.join("scenario.toml");
    std::fs::write(
        &scenario_copy,
        config["data"]["scenario.toml"].as_str().unwrap(),
    )
    .unwrap();
    let results = d.join("results");
    let shard_args: Vec<String> = args_of(job)
        .iter()
        .map(|a| {
            map(a)
                .replace(
                    "/etc/fleetstorm/scenario.toml",
                    scenario_copy.to_str().unwrap(),
                )
                .replace("/results", results.to_str().unwrap())
                .replace("$(JOB_COMPLETION_INDEX)", "0")
                .replace(
                    "lab-mock:8883",
                    &format!("127.0.0.1:{}", process.addr.port()),
                )
        })
        // Not the 30 s a Prometheus scrape is given after the run.
        .filter(|a| !a.starts_with("--metrics-linger="))
        // Start now rather than at the rendered instant.
        .map(|a| match a.starts_with("--start-at=") {
            true => format!(
                "--start-at={}",
                humantime::format_rfc3339_seconds(std::time::SystemTime::now())
            ),
            false => a,
        })
        .collect();
    let run = Command::new(BIN)
        .args(&shard_args)
        .env("JOB_COMPLETION_INDEX", "0")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", crate::common::output_text(&run));
    let summary: Value =
        serde_json::from_slice(&std::fs::read(results.join("lab/shard-0/summary.json")).unwrap())
            .unwrap();
    // The hook of the scenario's [target.mock] ran in the mock: serials without its prefix were
    // denied, the others provisioned.
    let provisioned = summary["devices"]["provisioned"].as_u64().unwrap();
    let denied = summary["failures"]["hook_denied"].as_u64().unwrap_or(0);
    assert!(provisioned > 0 && denied > 0, "{summary}");
    assert_eq!(provisioned + denied, 12, "{summary}");
    drop(process);
}
