//! The JSON Schemas editors use (`schema/`, `fleetstorm schema`) agree with the loader: every
//! shipped scenario passes and points at the schema, and what the loader refuses (a misspelled
//! field, a wrong type) the schema refuses too.

use std::path::{Path, PathBuf};

use fleetstorm::mock_settings::MockSettings;
use fleetstorm::scenario::Scenario;
use fleetstorm::schema::SchemaKind;
use serde_json::Value;

use crate::common;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A schema checked by the reference validator, Python's `jsonschema` (an implementation
/// independent of the schemars types that generate the schema; installed by the test).
struct Validator {
    schema: Value,
}

fn validator(kind: SchemaKind) -> Validator {
    Validator {
        schema: serde_json::from_str(&kind.generate()).unwrap(),
    }
}

/// TOML text as the JSON value the schema describes.
fn as_json(toml_text: &str) -> Value {
    let doc: toml::Table = toml::from_str(toml_text).unwrap();
    serde_json::to_value(doc).unwrap()
}

impl Validator {
    /// The schema's complaints about each of `toml_texts` (one line each; empty: valid), in one
    /// run of the validator.
    fn errors<S: AsRef<str>>(&self, toml_texts: &[S]) -> Vec<Vec<String>> {
        use std::io::Write as _;
        use std::process::{Command, Stdio};
        let bin = common::python_venv(
            "schema-venv",
            "tests/schema/requirements.txt",
            "import jsonschema",
        );
        let input = serde_json::json!({
            "schema": self.schema,
            "instances": toml_texts.iter().map(|t| as_json(t.as_ref())).collect::<Vec<_>>(),
        });
        let mut child = Command::new(bin.join("python"))
            .arg(root().join("tests/schema/validate.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python in the schema venv");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "validate.py: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let errors: Vec<Vec<String>> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(errors.len(), toml_texts.len());
        errors
    }
}

/// The `.toml` files of the crate's folder `dir`, sorted.
fn toml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

fn shipped_scenarios() -> Vec<PathBuf> {
    toml_files("scenarios")
}

#[test]
fn every_shipped_scenario_passes_the_schema_it_names_on_its_first_line() {
    let validator = validator(SchemaKind::Scenario);
    let scenarios = shipped_scenarios();
    assert!(scenarios.len() >= 5, "{scenarios:?}");
    let mut files = Vec::new();
    for path in &scenarios {
        let text = std::fs::read_to_string(path).unwrap();
        let first = text.lines().next().unwrap_or("");
        assert_eq!(
            first,
            "#:schema ../schema/scenario.json",
            "{}: the first line is taplo's schema directive",
            path.display()
        );
        let target = path.parent().unwrap().join(&first["#:schema ".len()..]);
        assert!(target.is_file(), "{}", target.display());
        files.push((path.clone(), text));
    }
    // The Kubernetes example's scenario is shipped too (its folder is rendered from it).
    let example = root().join("deploy/kubernetes/example-scenario.toml");
    files.push((example.clone(), std::fs::read_to_string(&example).unwrap()));
    let texts: Vec<&str> = files.iter().map(|(_, t)| t.as_str()).collect();
    for ((path, _), errors) in files.iter().zip(validator.errors(&texts)) {
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
    }
}

const MINIMAL: &str = "[devices]\ncount = 10\n\n[[schedule]]\nexecutor = \"burst\"\ncount = 10\n";

/// Whether the loader takes `text` as a scenario file.
fn loads(text: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.toml");
    std::fs::write(&file, text).unwrap();
    Scenario::load(&file, &[])
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn the_scenario_schema_refuses_what_the_loader_refuses() {
    let validator = validator(SchemaKind::Scenario);
    let accepted = [
        MINIMAL.to_string(),
        // `[target]` without `kind` is the embedded mock.
        format!("{MINIMAL}\n[target.mock]\nkeys = \"p256\"\nquotas = {{ enabled = true }}\n"),
        format!("{MINIMAL}\n[devices.timeouts]\nconnect = \"3s\"\n"),
        format!(
            "{MINIMAL}\n[target.mock.faults.register_thing]\nlatency = \"50ms..300ms\"\nerror_rate = 0.1\n"
        ),
        format!("{MINIMAL}\n[[variants]]\nname = \"a\"\nset = {{ \"devices.count\" = 5 }}\n"),
    ];
    for (text, errors) in accepted.iter().zip(validator.errors(&accepted)) {
        assert_eq!(loads(text), Ok(()), "{text}");
        assert!(errors.is_empty(), "{text}\n{errors:#?}");
    }
    let refused = [
        // Misspelled fields, at the top, in a table, in the embedded mock's settings, in a phase.
        MINIMAL.replace("[devices]", "shedule_seed = 3\n[devices]"),
        MINIMAL.replace("count = 10\n\n", "count = 10\nclinet_id = \"d-{seq}\"\n\n"),
        format!("{MINIMAL}\n[target.mock]\nkey_pol_size = 8\n"),
        MINIMAL.replace("executor = \"burst\"", "executor = \"burst\"\nrates = 3"),
        // Wrong types: a string for a number, a number for a duration, an unknown executor.
        MINIMAL.replace("count = 10\n\n", "count = \"ten\"\n\n"),
        format!("{MINIMAL}\n[devices.timeouts]\nconnect = 3\n"),
        MINIMAL.replace("\"burst\"", "\"constant\""),
        // An endpoint target without its host.
        format!(
            "{MINIMAL}\n[target]\nkind = \"endpoint\"\nca = \"a\"\nclaim_cert = \"b\"\nclaim_key = \"c\"\n"
        ),
    ];
    for (text, errors) in refused.iter().zip(validator.errors(&refused)) {
        assert!(loads(text).is_err(), "the loader took:\n{text}");
        assert!(!errors.is_empty(), "the schema took:\n{text}");
    }
}

#[test]
fn the_mock_settings_schema_refuses_what_the_loader_refuses() {
    let validator = validator(SchemaKind::MockSettings);
    let loads = |text: &str| toml::from_str::<MockSettings>(text).map(|_| ());
    let accepted = [
        "keys = \"p256\"\ntoken_ttl = \"10m\"\n[quotas]\nenabled = true\n",
        "[hooks.FleetProvisioningTemplate]\nkind = \"serial-prefix\"\nprefix = \"123\"\n",
        "[mqtt5]\nserver_keep_alive = \"always\"\n",
    ];
    for (text, errors) in accepted.iter().zip(validator.errors(&accepted)) {
        assert!(loads(text).is_ok(), "{text}");
        assert!(errors.is_empty(), "{text}\n{errors:#?}");
    }
    let refused = [
        "regoin = \"eu-west-1\"\n",
        "[quotas]\nenabeld = true\n",
        "key_pool_size = \"many\"\n",
        "token_ttl = 600\n",
        "[hooks.T]\nkind = \"lambda\"\n",
    ];
    for (text, errors) in refused.iter().zip(validator.errors(&refused)) {
        assert!(loads(text).is_err(), "the loader took:\n{text}");
        assert!(!errors.is_empty(), "the schema took:\n{text}");
    }
}

fn shipped_profiles() -> Vec<(PathBuf, String)> {
    toml_files("profiles")
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

/// Whether the loader takes `text` as a whole profile (serde, then the checks serde cannot
/// express).
fn loads_profile(text: &str) -> Result<(), String> {
    let profile: fleetstorm::device::Profile = toml::from_str(text).map_err(|e| e.to_string())?;
    profile.check("profile")
}

#[test]
fn every_built_in_profile_passes_the_profile_schema_and_the_schema_refuses_what_the_loader_refuses()
{
    let validator = validator(SchemaKind::Profile);
    let profiles = shipped_profiles();
    assert_eq!(profiles.len(), 8, "{profiles:?}");
    let generic = profiles
        .iter()
        .find(|(p, _)| p.ends_with("generic.toml"))
        .map(|(_, t)| t.clone())
        .unwrap();
    let refused = [
        // Misspelled fields, at the top and in a table.
        generic.replace("jitter_seed =", "jiter_seed ="),
        generic.replace("new_key =", "new_keys ="),
        // Wrong types: a string for a number, a number for a duration, an unknown jitter, an
        // unknown reaction.
        generic.replace(
            "attempts = 1                # fleetstorm: [devices.retry]",
            "attempts = \"one\" #",
        ),
        generic.replace("interval = \"30s\"", "interval = 30"),
        generic.replace("jitter = \"full\"", "jitter = \"half\""),
        generic.replace("throttled = \"retry\"", "throttled = \"again\""),
    ];
    for (text, original) in refused.iter().zip(std::iter::repeat(&generic)) {
        assert_ne!(text, original, "a replacement missed its text");
    }
    let mut texts: Vec<&str> = profiles.iter().map(|(_, t)| t.as_str()).collect();
    texts.extend(refused.iter().map(String::as_str));
    let errors = validator.errors(&texts);
    for ((path, text), errors) in profiles.iter().zip(&errors) {
        assert_eq!(loads_profile(text), Ok(()), "{}", path.display());
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
    }
    for (text, errors) in refused.iter().zip(&errors[profiles.len()..]) {
        assert!(loads_profile(text).is_err(), "the loader took:\n{text}");
        assert!(!errors.is_empty(), "the schema took:\n{text}");
    }
}
