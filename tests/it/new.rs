//! `fleetstorm new FILE --from NAME` writes a copy of a shipped scenario that validates where it
//! is written, and never overwrites a file.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::output_text as text;

const BIN: &str = env!("CARGO_BIN_EXE_fleetstorm");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

#[test]
fn new_writes_a_scenario_that_validates_and_says_what_to_run_next() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mine.toml");
    let file = file.to_str().unwrap();
    let out = run(&["new", file]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("wrote {file}")), "{stdout}");
    assert!(
        stdout.contains(&format!("fleetstorm validate {file}"))
            && stdout.contains(&format!("fleetstorm run {file}")),
        "{stdout}"
    );
    let written = std::fs::read_to_string(file).unwrap();
    let shipped = fleetstorm::cli::template_text("quickstart").unwrap();
    assert_eq!(written, shipped);
    assert!(
        written.starts_with("# quickstart:"),
        "commented, without the schema directive whose path is relative to scenarios/"
    );
    let out = run(&["validate", file]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn every_template_validates_once_written_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    for (name, _) in fleetstorm::cli::TEMPLATES {
        let file = dir.path().join(format!("{name}.toml"));
        let file = file.to_str().unwrap();
        let out = run(&["new", file, "--from", *name]);
        assert!(out.status.success(), "{name}: {}", text(&out));
        let out = run(&["validate", file]);
        assert!(out.status.success(), "{name}: {}", text(&out));
    }
}

#[test]
fn new_refuses_to_overwrite_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("taken.toml");
    std::fs::write(&file, "# mine\n").unwrap();
    let out = run(&["new", file.to_str().unwrap(), "--from", "throttle-probe"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(text(&out).contains("already exists"), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "# mine\n");
}

#[test]
fn an_unknown_template_is_a_usage_error_listing_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.toml");
    let out = run(&["new", file.to_str().unwrap(), "--from", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("quickstart"), "{}", text(&out));
    assert!(!file.exists());
}

/// The templates are the shipped scenarios, every one of them, by file stem.
#[test]
fn the_templates_are_every_shipped_scenario() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut stems: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    stems.sort();
    let mut names: Vec<String> = fleetstorm::cli::TEMPLATES
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    names.sort();
    assert_eq!(names, stems, "src/cli/tools.rs TEMPLATES");
    for (name, text) in fleetstorm::cli::TEMPLATES {
        let file = std::fs::read_to_string(dir.join(format!("{name}.toml"))).unwrap();
        assert_eq!(*text, file, "{name}");
    }
}
