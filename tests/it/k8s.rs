//! Kubernetes: the Containerfile, the kustomize base in deploy/kubernetes/ and `fleetstorm k8s
//! render`. No cluster is available here, so every manifest is validated strictly against the
//! Kubernetes API schema by `kubernetes-validate` (PyPI, bundled schemas, installed into a test
//! venv): an unknown field or a wrong type fails, which the negative cases below prove.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Deserialize as _;
use serde_json::Value;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_fleetstorm");
/// The oldest version where backoffLimitPerIndex is GA, and the validator's newest.
const VERSIONS: [&str; 2] = ["1.33.0", "1.37.0"];
const BASE_FLAGS: [&str; 10] = [
    "--shards",
    "8",
    "--start-at",
    "2026-12-01T10:00:00Z",
    "--run-id",
    "kbase",
    "--image",
    "fleetstorm:0.1.0",
    "--out",
    "OUT",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn venv_bin() -> PathBuf {
    common::python_venv(
        "k8s-validate-venv",
        "tests/k8s/requirements.txt",
        "import kubernetes_validate, yaml",
    )
}

/// Run the validator strictly on `files` against each of [`VERSIONS`]: (all passed, output).
/// A kind without a schema only warns and passes, so a warning counts as a failure here.
pub(crate) fn validate(files: &[PathBuf]) -> (bool, String) {
    let validator = venv_bin().join("kubernetes-validate");
    let mut ok = true;
    let mut text = String::new();
    for version in VERSIONS {
        let out = Command::new(&validator)
            .args(["--strict", "--kubernetes-version", version])
            .args(files)
            .output()
            .expect("run kubernetes-validate");
        let both = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ok &= out.status.success() && !both.contains("WARN") && !both.contains("ERROR");
        text.push_str(&both);
    }
    (ok, text)
}

pub(crate) fn render(scenario: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["k8s", "render"])
        .arg(scenario)
        .args(args)
        .output()
        .expect("run fleetstorm")
}

pub(crate) fn stdout_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "render failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("UTF-8")
}

/// The documents of a YAML stream, as JSON values.
pub(crate) fn documents(stream: &str) -> Vec<Value> {
    yaml_serde::Deserializer::from_str(stream)
        .map(|d| Value::deserialize(d).expect("YAML document"))
        .collect()
}

pub(crate) fn kind_named<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {docs:#?}"))
}

pub(crate) fn args_of(job: &Value) -> Vec<String> {
    job["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("every arg a string").to_string())
        .collect()
}

fn deploy_dir() -> PathBuf {
    root().join("deploy/kubernetes")
}

fn yaml_files(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|f| (f.ends_with(".yaml") || f.ends_with(".yml")) && f != "kustomization.yaml")
        .collect();
    files.sort();
    files
}

#[test]
fn the_kustomize_base_validates_strictly_lists_every_file_and_is_what_render_writes() {
    let dir = deploy_dir();
    let files = yaml_files(&dir);
    assert_eq!(files.len(), 5, "{files:?}");

    // kustomization.yaml lists every resource file that exists, and only those.
    let kustomization: Value = yaml_serde::from_str(
        &std::fs::read_to_string(dir.join("kustomization.yaml")).expect("kustomization.yaml"),
    )
    .expect("kustomization YAML");
    assert_eq!(kustomization["kind"], "Kustomization");
    let mut listed: Vec<String> = kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("a path").to_string())
        .collect();
    listed.sort();
    assert_eq!(listed, files, "kustomization.yaml resources vs files");

    let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
    let (ok, text) = validate(&paths);
    assert!(ok, "deploy/kubernetes does not validate strictly:\n{text}");
    assert_eq!(
        text.matches("passed for resource").count(),
        5 * VERSIONS.len()
    );

    // The base is exactly what `k8s render` writes for its scenario (example-scenario.toml).
    let tmp = tempfile::tempdir().expect("tempdir");
    let out_dir = tmp.path().join("base");
    let flags: Vec<&str> = BASE_FLAGS
        .iter()
        .map(|f| {
            if *f == "OUT" {
                out_dir.to_str().unwrap()
            } else {
                f
            }
        })
        .collect();
    stdout_of(&render(&dir.join("example-scenario.toml"), &flags));
    let mut rendered = yaml_files(&out_dir);
    rendered.push("kustomization.yaml".into());
    for f in rendered {
        let want = std::fs::read_to_string(out_dir.join(&f)).expect("rendered file");
        let have = std::fs::read_to_string(dir.join(&f)).unwrap_or_default();
        assert!(
            want == have,
            "deploy/kubernetes/{f} differs from what `fleetstorm k8s render deploy/kubernetes/example-scenario.toml {}` writes: render it again",
            BASE_FLAGS.join(" ")
        );
    }
}

/// A burst of keys-path devices with CBOR payloads that stay connected: sized to capacity.
const HERD: &str = r#"name = "herd"
max_in_flight = 2000
[target]
kind = "mock"
[target.mock]
keys = "p256"
registry = "compact"
[devices]
count = 40000
client_id = "herd-{seq:06}"
certificate = "keys"
payload = "cbor"
[devices.after]
action = "stay"
duration = "60s"
[[schedule]]
executor = "burst"
count = 40000
"#;

#[test]
fn rendered_manifests_validate_strictly_for_mock_and_endpoint_targets() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let herd = tmp.path().join("herd.toml");
    std::fs::write(&herd, HERD).unwrap();
    let scenarios = root().join("scenarios");
    let cases: Vec<(PathBuf, Vec<&str>)> = vec![
        (
            scenarios.join("quickstart.toml"),
            vec!["--shards", "3", "--namespace", "load-tests"],
        ),
        (
            scenarios.join("aws-seed-parity.toml"),
            vec![
                "--shards",
                "4",
                "--endpoint",
                "abc123-ats.iot.eu-west-1.amazonaws.com",
                "--yes",
                "--claim-secret",
                "my-claim",
                "--name",
                "seed-parity",
                "--start-in",
                "5m",
            ],
        ),
        (
            herd.clone(),
            vec![
                "--shards",
                "4",
                "--image",
                "registry.example.com/fleetstorm:1",
            ],
        ),
        (
            scenarios.join("stay-connected.toml"),
            vec!["--shards", "2", "--set", "devices.count=2000"],
        ),
    ];
    let mut files = Vec::new();
    for (i, (scenario, args)) in cases.iter().enumerate() {
        let stream = stdout_of(&render(scenario, args));
        let docs = documents(&stream);
        let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "ConfigMap",
                "PersistentVolumeClaim",
                "Service",
                "Job",
                "Job"
            ],
            "{}",
            scenario.display()
        );
        let path = tmp.path().join(format!("rendered-{i}.yaml"));
        std::fs::write(&path, &stream).unwrap();
        files.push(path);

        let job = &docs[3];
        let name = job["metadata"]["name"].as_str().unwrap();
        let shards: u64 = args[1].parse().unwrap();
        assert_eq!(job["spec"]["completionMode"], "Indexed");
        assert_eq!(job["spec"]["completions"], shards);
        assert_eq!(job["spec"]["parallelism"], shards);
        let run = args_of(job);
        assert_eq!(run[..2], ["run", "/etc/fleetstorm/scenario.toml"]);
        assert!(run.contains(&format!("--shards={shards}")), "{run:?}");
        assert!(
            run.iter().any(|a| a.starts_with("--start-at=20")),
            "{run:?}"
        );
        assert!(
            run.contains(&format!(
                "--out=/results/{name}/shard-$(JOB_COMPLETION_INDEX)"
            )),
            "{run:?}"
        );
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        let c = &pod["containers"][0];
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
        assert_eq!(c["resources"]["requests"], c["resources"]["limits"]);
        let merge = kind_named(&docs, "Job", &format!("{name}-merge"));
        assert_eq!(merge["spec"]["suspend"], true);
        let merge_args = args_of(merge);
        assert_eq!(merge_args.len(), 1 + shards as usize + 1, "{merge_args:?}");
        assert_eq!(
            merge_args.last().unwrap(),
            &format!("--out=/results/{name}/merged")
        );

        let claim = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "claim");
        if i == 1 {
            // The endpoint target: the claim identity from the Secret, the paths overridden.
            assert_eq!(claim.unwrap()["secret"]["secretName"], "my-claim");
            for set in [
                "--set=target.claim_cert=/etc/fleetstorm/claim/claim.pem",
                "--set=target.claim_key=/etc/fleetstorm/claim/claim.key",
                "--set=target.ca=/etc/fleetstorm/claim/root-ca.pem",
                "--endpoint=abc123-ats.iot.eu-west-1.amazonaws.com",
                "--yes",
            ] {
                assert!(run.contains(&set.to_string()), "{set} not in {run:?}");
            }
        } else {
            assert!(claim.is_none(), "a mock target needs no claim Secret");
        }
        if i == 0 {
            assert!(
                docs.iter()
                    .all(|d| d["metadata"]["namespace"] == "load-tests")
            );
        }
        if i == 2 {
            // A burst is sized to the measured 2-core capacity, 10,000 connected per pod.
            assert_eq!(c["resources"]["requests"]["cpu"], "2000m");
            assert!(
                stream.contains("10000 connected after provisioning"),
                "{stream}"
            );
        }
    }
    let (ok, text) = validate(&files);
    assert!(ok, "rendered manifests do not validate strictly:\n{text}");
    assert_eq!(
        text.matches("passed for resource").count(),
        5 * cases.len() * VERSIONS.len()
    );

    // Strictness: the same Job with an unknown field, or with a wrong type, fails.
    let docs = documents(&std::fs::read_to_string(&files[0]).unwrap());
    let job = docs[3].clone();
    let mut unknown = job.clone();
    unknown["spec"]["template"]["spec"]["containers"][0]["bogusField"] = Value::from(1);
    let mut wrong_type = job.clone();
    wrong_type["spec"]["parallelism"] = Value::from("three");
    for (what, doc, expect) in [
        ("an unknown field", unknown, "'bogusField' was unexpected"),
        ("a wrong type", wrong_type, "is not of type 'integer'"),
    ] {
        let path = tmp.path().join("negative.yaml");
        std::fs::write(&path, yaml_serde::to_string(&doc).unwrap()).unwrap();
        let (ok, text) = validate(std::slice::from_ref(&path));
        assert!(!ok, "{what} passed validation:\n{text}");
        assert!(text.contains(expect), "{what}: {text}");
    }
    let path = tmp.path().join("positive.yaml");
    std::fs::write(&path, yaml_serde::to_string(&job).unwrap()).unwrap();
    let (ok, text) = validate(&[path]);
    assert!(ok, "the unmodified Job fails: {text}");
}

#[test]
fn the_scenario_survives_as_a_configmap_value_byte_for_byte() {
    let body = "[devices]\ncount = 10\nclient_id = \"b-{seq}\"\ncertificate = \"csr\"\n[[schedule]]\nexecutor = \"burst\"\ncount = 10\n";
    let texts = [
        body.to_string(),
        // No final newline, several trailing blank lines, trailing spaces and tabs.
        body.trim_end().to_string(),
        format!("{body}\n\n\n"),
        body.replace('\n', "   \n")
            .replace("count = 10", "count\t=\t10"),
        // CRLF line endings.
        body.replace('\n', "\r\n"),
        // Leading blank line and indentation, YAML-looking comments, non-ASCII.
        format!(
            "\n   # ---\n# ...\n# key: value\n# Gr\u{00fc}\u{00df}e \u{2713} \"quotes\" 'single' \\backslash\nname = \"z\u{00fc}rich-\u{2713}\"\n{body}"
        ),
        format!("  {}", body.replace('\n', "\n  ")),
    ];
    let tmp = tempfile::tempdir().expect("tempdir");
    let python = venv_bin().join("python");
    for (i, text) in texts.iter().enumerate() {
        let scenario = tmp.path().join(format!("s{i}.toml"));
        std::fs::write(&scenario, text).unwrap();
        let stream = stdout_of(&render(&scenario, &["--shards", "2"]));
        let docs = documents(&stream);
        assert_eq!(
            docs[0]["data"]["scenario.toml"].as_str(),
            Some(text.as_str()),
            "case {i}: yaml_serde reads back another text"
        );
        // An independent YAML reader (PyYAML, as the validator uses) reads the same bytes.
        let rendered = tmp.path().join(format!("r{i}.yaml"));
        std::fs::write(&rendered, &stream).unwrap();
        let out = Command::new(&python)
            .args([
                "-c",
                "import sys, yaml; d = next(yaml.safe_load_all(open(sys.argv[1], encoding='utf-8'))); sys.stdout.buffer.write(d['data']['scenario.toml'].encode('utf-8'))",
            ])
            .arg(&rendered)
            .output()
            .expect("python");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            *text,
            "case {i}: PyYAML reads back another text"
        );
    }
}

#[test]
fn render_refuses_what_the_pods_could_not_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let quickstart = root().join("scenarios/quickstart.toml");
    let with_template = tmp.path().join("t.toml");
    std::fs::write(
        &with_template,
        "[target]\nkind = \"mock\"\n[target.mock.templates]\nmine = \"mine.json\"\n[devices]\ncount = 4\nclient_id = \"t-{seq}\"\ntemplate = \"mine\"\n[[schedule]]\nexecutor = \"burst\"\ncount = 4\n",
    )
    .unwrap();
    std::fs::write(tmp.path().join("mine.json"), "{}").unwrap();
    let cases: Vec<(&Path, Vec<&str>, u8, &str)> = vec![
        (&quickstart, vec!["--shards", "0"], 2, "--shards 0"),
        (&quickstart, vec!["--shards", "51"], 2, "devices.count"),
        (
            &quickstart,
            vec!["--shards", "2", "--start-at", "tomorrow"],
            2,
            "--start-at",
        ),
        (
            &quickstart,
            vec!["--shards", "2", "--name", "Bad_Name"],
            2,
            "--name",
        ),
        (
            &quickstart,
            vec!["--shards", "2", "--run-id", "a b"],
            2,
            "--run-id",
        ),
        (
            &quickstart,
            vec!["--shards", "2", "--run-id", "k8s"],
            2,
            "lowercase base32",
        ),
        (
            &quickstart,
            vec!["--shards", "2", "--set", "devices.count=abc"],
            3,
            "devices.count=abc",
        ),
        (
            &with_template,
            vec!["--shards", "2"],
            3,
            "target.mock.templates.mine",
        ),
        (
            &quickstart,
            vec!["--shards", "2", "--start-at", "9999-01-01T00:00:00Z"],
            2,
            "add --wait-long",
        ),
    ];
    for (scenario, args, code, needle) in cases {
        let out = render(scenario, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(i32::from(code)),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed manifests");
    }
    // A remote endpoint without --yes: refused like `run`, the plan shown, nothing rendered.
    let out = render(
        &root().join("scenarios/aws-seed-parity.toml"),
        &[
            "--shards",
            "2",
            "--endpoint",
            "abc123-ats.iot.eu-west-1.amazonaws.com",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not confirmed"));
}

/// A mock scenario of `count` devices at `rate`/s for 100 s, then `tail`.
fn load_of(count: u64, rate: u64, tail: &str) -> String {
    format!(
        "name = \"v\"\n[target]\nkind = \"mock\"\n[target.mock]\nregistry = \"compact\"\n[devices]\ncount = {count}\nclient_id = \"v-{{seq}}\"\ncertificate = \"csr\"\n[[schedule]]\nexecutor = \"constant-arrival-rate\"\nrate = {rate}\nduration = \"100s\"\n{tail}"
    )
}

fn resources(docs: &[Value], name: &str) -> Value {
    kind_named(docs, "Job", name)["spec"]["template"]["spec"]["containers"][0]["resources"].clone()
}

/// Every `[[variants]]` entry is sized and checked: a scenario whose second variant is the big
/// one gets that variant's pods (and its warning), one whose second variant runs a command hook
/// or has fewer devices than shards is refused, as that variant alone would be.
#[test]
fn render_sizes_and_checks_every_variant() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let path = tmp.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let flags = ["--shards", "4", "--run-id", "vars", "--name", "v"];
    let alone = write("alone.toml", &load_of(400_000, 4000, ""));
    let variants = write(
        "variants.toml",
        &load_of(
            1000,
            10,
            "[[variants]]\nname = \"small\"\n[[variants]]\nname = \"big\"\nset = { \"devices.count\" = 400000, \"schedule.0.rate\" = 4000 }\n",
        ),
    );
    let (a, v) = (render(&alone, &flags), render(&variants, &flags));
    let (a_docs, v_docs) = (documents(&stdout_of(&a)), documents(&stdout_of(&v)));
    let big = resources(&a_docs, "v");
    assert_eq!(big["requests"]["cpu"], "2500m", "{big}");
    assert_eq!(resources(&v_docs, "v"), big);
    assert_eq!(resources(&v_docs, "v-merge"), resources(&a_docs, "v-merge"));
    for out in [&a, &v] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("needs about 5 shards"), "{stderr}");
    }
    let header = stdout_of(&v);
    assert!(
        header.contains("# 2 variants run one after the other"),
        "{header}"
    );
    assert!(
        header.contains("#   variant big: 100000 devices per pod"),
        "{header}"
    );
    let storage = |docs: &[Value]| {
        let pvc = kind_named(docs, "PersistentVolumeClaim", "v-results");
        let size = pvc["spec"]["resources"]["requests"]["storage"]
            .as_str()
            .unwrap();
        size.trim_end_matches("Gi").parse::<u64>().unwrap()
    };
    assert!(storage(&v_docs) > storage(&a_docs));

    let refused = |path: &Path, flags: &[&str], code: i32, needles: &[&str]| {
        let out = render(path, flags);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{stderr}");
        for n in needles {
            assert!(stderr.contains(n), "{n:?} not in: {stderr}");
        }
        assert!(out.stdout.is_empty());
    };
    let hooked = write(
        "hooked.toml",
        &load_of(
            1000,
            10,
            "[[variants]]\nname = \"plain\"\n[[variants]]\nname = \"hooked\"\n[variants.set]\n\"target.mock.hooks.FleetProvisioningTemplate.kind\" = \"command\"\n\"target.mock.hooks.FleetProvisioningTemplate.command\" = [\"python3\", \"hook.py\"]\n",
        ),
    );
    refused(
        &hooked,
        &flags,
        3,
        &[
            "(variant \"hooked\")",
            "target.mock.hooks.FleetProvisioningTemplate.command",
        ],
    );
    let few = write(
        "few.toml",
        &load_of(
            1000,
            10,
            "[[variants]]\nname = \"plain\"\n[[variants]]\nname = \"few\"\nset = { \"devices.count\" = 3 }\n",
        ),
    );
    refused(
        &few,
        &flags,
        2,
        &["--shards 4", "variant \"few\"'s 3 devices"],
    );
}

/// The final stage of a Containerfile: the lines after its last FROM.
fn stages(containerfile: &str) -> Vec<Vec<String>> {
    // Join continuation lines, drop comments.
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in containerfile.lines() {
        let t = line.trim();
        if t.starts_with('#') || t.is_empty() {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(t);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<Vec<String>> = Vec::new();
    for line in lines {
        if line.to_ascii_uppercase().starts_with("FROM ") {
            stages.push(Vec::new());
        }
        if let Some(stage) = stages.last_mut() {
            stage.push(line);
        }
    }
    stages
}

#[test]
fn the_containerfile_builds_the_tested_binary_runs_it_non_root_and_bakes_in_no_keys() {
    let text = std::fs::read_to_string(root().join("Containerfile")).expect("Containerfile");
    let stages = stages(&text);
    assert_eq!(stages.len(), 2, "a builder and a runtime stage");
    let (builder, runtime) = (&stages[0], &stages[1]);
    assert!(builder[0].contains(" AS builder"), "{}", builder[0]);

    // The builder builds the package's `fleetstorm` binary with the release profile, the
    // profile the test suite runs with (.ci/run: cargo test --release), from Cargo.lock.
    let build = builder
        .iter()
        .find(|l| l.contains("cargo build"))
        .expect("a cargo build step");
    for flag in ["--release", "--locked", "--bin fleetstorm"] {
        assert!(build.contains(flag), "{flag} missing: {build}");
    }
    assert!(
        build.contains("cp target/release/fleetstorm "),
        "the release binary is what gets copied: {build}"
    );
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(root().join("Cargo.toml")).unwrap()).unwrap();
    assert_eq!(manifest["package"]["name"].as_str(), Some("fleetstorm"));
    assert!(
        root().join("src/main.rs").exists(),
        "the fleetstorm binary target"
    );
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap_or_default();
    assert!(
        ci.contains("cargo test --release"),
        "the tests run the release profile"
    );

    // The runtime stage runs the binary as a numeric non-root user.
    let user = runtime
        .iter()
        .rfind(|l| l.starts_with("USER "))
        .expect("USER in the runtime stage");
    let uid: u32 = user[5..]
        .split(':')
        .next()
        .unwrap()
        .trim()
        .parse()
        .expect("a numeric user");
    assert_ne!(uid, 0, "non-root");
    assert_eq!(
        u64::from(uid),
        fleetstorm::k8s::RUN_AS_USER,
        "the manifests' runAsUser"
    );
    let entrypoint = runtime
        .iter()
        .find(|l| l.starts_with("ENTRYPOINT "))
        .expect("ENTRYPOINT");
    assert_eq!(entrypoint, "ENTRYPOINT [\"/usr/local/bin/fleetstorm\"]");
    assert!(
        runtime
            .iter()
            .any(|l| l == "COPY --from=builder /usr/local/bin/fleetstorm /usr/local/bin/fleetstorm")
    );

    // No key material is copied or added in any stage, and the build context excludes it.
    for line in stages.iter().flatten() {
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("COPY ") || upper.starts_with("ADD ") {
            for bad in [
                ".pem",
                ".key",
                ".crt",
                "claim",
                "pki",
                "aws-setup",
                "secret",
            ] {
                assert!(!line.to_lowercase().contains(bad), "{line}");
            }
        }
        assert!(!upper.starts_with("ADD "), "ADD fetches or unpacks: {line}");
    }
    let ignore =
        std::fs::read_to_string(root().join(".containerignore")).expect(".containerignore");
    let rules: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for rule in [
        ".git",
        "target/",
        "results/",
        "fuzz/target/",
        "pki/",
        "aws-setup/",
        "**/*.key",
        "**/*.pem",
    ] {
        assert!(rules.contains(&rule), "{rule} not in .containerignore");
    }
    // The one PEM the binary embeds (include_str!) is public and re-included.
    let embedded = std::fs::read_to_string(root().join("src/aws/mod.rs")).unwrap();
    assert!(embedded.contains("include_str!(\"../../assets/AmazonRootCA1.pem\")"));
    assert!(rules.contains(&"!assets/AmazonRootCA1.pem"));
}

/// The 1,000,000-device plan of docs/shards-merge-kubernetes.md (A: the harness against the
/// embedded mock, B: a million connected, C: AWS at raised quotas) is what the sizing computes.
#[test]
fn the_documented_million_device_plan_is_what_the_sizing_computes() {
    use fleetstorm::k8s::sizing::size;
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("million.toml");
    std::fs::write(
        &path,
        "max_in_flight = 40000\n[target]\nkind = \"mock\"\n[target.mock]\nregistry = \"compact\"\n[devices]\ncount = 1000000\nclient_id = \"m-{seq}\"\ncertificate = \"csr\"\n[[schedule]]\nexecutor = \"constant-arrival-rate\"\nrate = 20000\nduration = \"50s\"\n",
    )
    .unwrap();
    let load = |sets: &[&str]| {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        fleetstorm::scenario::Scenario::load(&path, &sets).expect("scenario")
    };
    let a = size(&load(&[]), 25);
    assert_eq!(
        (a.devices_per_pod, a.cpu_millis, a.memory_mib),
        (40_000, 2000, 320)
    );
    assert_eq!((a.storage_gib, a.suggested_shards), (4, 25));
    // The merge Job: (64 MiB + 1,000,000 x 3,104 bytes measured) x 1.25.
    assert_eq!(a.merge_memory_mib, 3840);
    assert!((3000..3500).contains(&a.open_files), "{}", a.open_files);

    let stay = [
        "devices.after.action=stay",
        "devices.after.duration=10m",
        "schedule.0.rate=5000",
        "schedule.0.duration=200s",
    ];
    let b = size(&load(&stay), 125);
    assert_eq!((b.devices_per_pod, b.connected_per_pod), (8000, 8000));
    assert_eq!((b.cpu_millis, b.memory_mib), (250, 512));
    assert!(b.open_files < 20_000, "{}", b.open_files);

    let mut aws: Vec<&str> = vec![
        "target.kind=\"endpoint\"",
        "target.host=\"abc-ats.iot.eu-west-1.amazonaws.com\"",
        "target.ca=\"ca.pem\"",
        "target.claim_cert=\"claim.pem\"",
        "target.claim_key=\"claim.key\"",
        "schedule.0.rate=1000",
        "schedule.0.duration=1000s",
        "max_in_flight=4000",
    ];
    let path_text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        path_text.replace("[target.mock]\nregistry = \"compact\"\n", ""),
    )
    .unwrap();
    let c = size(&load(&aws), 2);
    assert_eq!((c.cpu_millis, c.memory_mib), (750, 960));
    aws[5] = "schedule.0.rate=10";
    aws[6] = "schedule.0.duration=100000s";
    aws[7] = "max_in_flight=2000";
    let c1 = size(&load(&aws), 1);
    assert_eq!((c1.cpu_millis, c1.memory_mib), (250, 1600));
}
