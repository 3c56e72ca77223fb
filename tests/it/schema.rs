//! The JSON Schemas editors use (`schema/`, `fleetstorm schema`) agree with the loader: every
//! shipped scenario passes and points at the schema, and what the loader refuses (a misspelled
//! field, a wrong type) the schema refuses too.

use std::path::{Path, PathBuf};

use fleetstorm::mock_settings::MockSettings;
use fleetstorm::scenario::Scenario;
use fleetstorm::schema::SchemaKind;
use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn validator(kind: SchemaKind) -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(&kind.generate()).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

/// TOML text as the JSON value the schema describes.
fn as_json(toml_text: &str) -> Value {
    let doc: toml::Table = toml::from_str(toml_text).unwrap();
    serde_json::to_value(doc).unwrap()
}

/// The schema's complaints about `toml_text`, one line each.
fn schema_errors(validator: &jsonschema::Validator, toml_text: &str) -> Vec<String> {
    validator
        .iter_errors(&as_json(toml_text))
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

fn shipped_scenarios() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("scenarios"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_scenario_passes_the_schema_it_names_on_its_first_line() {
    let validator = validator(SchemaKind::Scenario);
    let scenarios = shipped_scenarios();
    assert!(scenarios.len() >= 5, "{scenarios:?}");
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
        let errors = schema_errors(&validator, &text);
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
    }
    // The Kubernetes example's scenario is shipped too (its folder is rendered from it).
    let example = root().join("deploy/kubernetes/example-scenario.toml");
    let errors = schema_errors(&validator, &std::fs::read_to_string(&example).unwrap());
    assert!(errors.is_empty(), "{}: {errors:#?}", example.display());
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
    for text in &accepted {
        assert_eq!(loads(text), Ok(()), "{text}");
        let errors = schema_errors(&validator, text);
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
    for text in &refused {
        assert!(loads(text).is_err(), "the loader took:\n{text}");
        assert!(
            !schema_errors(&validator, text).is_empty(),
            "the schema took:\n{text}"
        );
    }
}

#[test]
fn the_mock_settings_schema_refuses_what_the_loader_refuses() {
    let validator = validator(SchemaKind::MockSettings);
    let loads = |text: &str| toml::from_str::<MockSettings>(text).map(|_| ());
    for text in [
        "keys = \"p256\"\ntoken_ttl = \"10m\"\n[quotas]\nenabled = true\n",
        "[hooks.FleetProvisioningTemplate]\nkind = \"serial-prefix\"\nprefix = \"123\"\n",
        "[mqtt5]\nserver_keep_alive = \"always\"\n",
    ] {
        assert!(loads(text).is_ok(), "{text}");
        let errors = schema_errors(&validator, text);
        assert!(errors.is_empty(), "{text}\n{errors:#?}");
    }
    for text in [
        "regoin = \"eu-west-1\"\n",
        "[quotas]\nenabeld = true\n",
        "key_pool_size = \"many\"\n",
        "token_ttl = 600\n",
        "[hooks.T]\nkind = \"lambda\"\n",
    ] {
        assert!(loads(text).is_err(), "the loader took:\n{text}");
        assert!(
            !schema_errors(&validator, text).is_empty(),
            "the schema took:\n{text}"
        );
    }
}
