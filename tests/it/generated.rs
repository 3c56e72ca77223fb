//! Files generated from the code and committed, checked here for drift: the JSON Schemas under
//! `schema/` (from the serde types, as `fleetstorm schema` prints them), the CLI reference
//! `docs/reference/cli.md` (from the clap definitions) and the `summary.json` field list
//! `docs/reference/summary.md` (from the Summary model's doc comments).
//!
//! `FLEETSTORM_BLESS=1 cargo test --release --test it generated::` rewrites them all; without it
//! a stale or missing file fails the test, naming the file and that command.

use std::path::Path;

use fleetstorm::schema::SchemaKind;
use serde_json::Value;

const BLESS: &str = "FLEETSTORM_BLESS";
const REGENERATE: &str = "FLEETSTORM_BLESS=1 cargo test --release --test it generated::";

/// Every generated file: path relative to the repository root, and its text.
fn generated() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = SchemaKind::ALL
        .iter()
        .map(|k| (format!("schema/{}", k.file_name()), k.generate()))
        .collect();
    // The commands are those of the build's features: the committed page is the default one.
    if cfg!(feature = "aws") {
        files.push(("docs/reference/cli.md".into(), cli_markdown()));
    }
    files.push(("docs/reference/summary.md".into(), summary_markdown()));
    files
}

/// The files under `root` that differ from `files` (or are missing), each with why.
fn stale(root: &Path, files: &[(String, String)]) -> Vec<String> {
    files
        .iter()
        .filter_map(
            |(path, text)| match std::fs::read_to_string(root.join(path)) {
                Ok(committed) if committed == *text => None,
                Ok(_) => Some(format!("{path}: stale")),
                Err(e) => Some(format!("{path}: {e}")),
            },
        )
        .collect()
}

fn write_all(root: &Path, files: &[(String, String)]) {
    for (path, text) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
    }
}

fn header(what: &str) -> String {
    format!(
        "<!-- Generated {what}; do not edit. Regenerate: {REGENERATE} (tests/it/generated.rs) -->\n\n"
    )
}

/// Every command and flag, from the clap definitions. The build's features decide which
/// commands exist; the committed page is that of the default features (with `aws`).
fn cli_markdown() -> String {
    let options = clap_markdown::MarkdownOptions::new()
        .title("Command-line reference".into())
        .show_footer(false);
    let body = clap_markdown::help_markdown_custom::<fleetstorm::cli::Cli>(&options);
    format!("{}{body}", header("from the clap definitions"))
}

/// One row per field of `summary.json`, with the model's doc comment as its description.
fn summary_markdown() -> String {
    let generator = schemars::generate::SchemaSettings::draft07()
        .for_serialize()
        .into_generator();
    let root = generator
        .into_root_schema_for::<fleetstorm::results::Summary>()
        .to_value();
    let mut rows = Vec::new();
    fields(&root, &root, "", &mut rows);
    let mut out = header("from the Summary model (src/results/summary.rs)");
    out.push_str(
        "# `summary.json` fields\n\n\
         Every run folder's `summary.json`, field by field. A field marked optional is left out \
         when it does not apply; `[]` is each element of a list, `<name>` each key of a map.\n\n\
         | Field | Type | Description |\n| --- | --- | --- |\n",
    );
    for (path, ty, description) in rows {
        out.push_str(&format!("| `{path}` | {ty} | {description} |\n"));
    }
    out
}

/// `schema` with `$ref`, a one-element `allOf` and `anyOf: [T, null]` followed; whether null
/// was one of the choices.
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> (&'a Value, bool) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/definitions/");
        return resolve(root, &root["definitions"][name]);
    }
    if let Some([one]) = schema
        .get("allOf")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
    {
        return resolve(root, one);
    }
    if let Some(choices) = schema.get("anyOf").and_then(Value::as_array) {
        let not_null: Vec<&Value> = choices.iter().filter(|c| c["type"] != "null").collect();
        if let [one] = not_null.as_slice() {
            return (resolve(root, one).0, true);
        }
    }
    if let Some(types) = schema.get("type").and_then(Value::as_array)
        && types.iter().any(|t| t == "null")
    {
        return (schema, true);
    }
    (schema, false)
}

fn type_name(schema: &Value) -> String {
    match schema.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "any".into(),
    }
}

fn fields(root: &Value, schema: &Value, prefix: &str, rows: &mut Vec<(String, String, String)>) {
    let (schema, _) = resolve(root, schema);
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (name, property) in properties {
        let path = format!("{prefix}{name}");
        let description = property
            .get("description")
            .or_else(|| resolve(root, property).0.get("description"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .replace('\n', " ")
            .replace('|', "\\|");
        let (inner, nullable) = resolve(root, property);
        let mut ty = type_name(inner);
        let mut child: Option<(&Value, String)> = None;
        if ty == "array" {
            let (item, _) = resolve(root, &inner["items"]);
            ty = format!("list of {}", type_name(item));
            child = Some((item, format!("{path}[].")));
        } else if ty == "object" && inner.get("properties").is_none() {
            if let Some(values) = inner.get("additionalProperties").filter(|v| v.is_object()) {
                let (value, _) = resolve(root, values);
                ty = format!("map of {}", type_name(value));
                child = Some((value, format!("{path}.<name>.")));
            }
        } else if ty == "object" {
            child = Some((inner, format!("{path}.")));
        }
        if nullable {
            ty.push_str(" or null");
        }
        if !required.contains(&name.as_str()) {
            ty.push_str(", optional");
        }
        rows.push((path, ty, description));
        if let Some((schema, prefix)) = child {
            fields(root, schema, &prefix, rows);
        }
    }
}

#[test]
fn the_committed_generated_files_are_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = generated();
    if std::env::var_os(BLESS).is_some() {
        write_all(root, &files);
        return;
    }
    let stale = stale(root, &files);
    assert!(
        stale.is_empty(),
        "{}\nregenerate with: {REGENERATE}",
        stale.join("\n")
    );
}

/// The check itself: a changed file and a missing one are both reported, a current one not.
#[test]
fn a_stale_or_missing_generated_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let files = generated();
    write_all(dir.path(), &files);
    assert!(stale(dir.path(), &files).is_empty());
    let (schema, _) = &files[0];
    let (page, _) = &files[files.len() - 1];
    let mut text = std::fs::read_to_string(dir.path().join(schema)).unwrap();
    text.push(' ');
    std::fs::write(dir.path().join(schema), text).unwrap();
    std::fs::remove_file(dir.path().join(page)).unwrap();
    let found = stale(dir.path(), &files);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0], format!("{schema}: stale"));
    assert!(found[1].starts_with(&format!("{page}: ")), "{found:?}");
}

/// `fleetstorm schema KIND` prints what the drift test compares with the committed copy.
#[test]
fn the_schema_command_prints_the_generated_schema() {
    for kind in SchemaKind::ALL {
        let name = clap::ValueEnum::to_possible_value(&kind).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
            .args(["schema", name.get_name()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{kind:?}");
        assert_eq!(String::from_utf8(out.stdout).unwrap(), kind.generate());
    }
}
