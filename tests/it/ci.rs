//! `.ci/prepare` fetches ahead of time what the tests install for themselves; it must list what
//! the tests name, or CI would quietly go back to installing inside the tests.

use std::collections::BTreeSet;
use std::path::Path;

/// The string literals in `text`, in order (no escapes: the arguments read here have none).
fn literals(text: &str) -> impl Iterator<Item = &str> {
    text.split('"').skip(1).step_by(2)
}

/// The text after each `function(` in `source`.
fn calls<'a>(source: &'a str, function: &str) -> Vec<&'a str> {
    let open = format!("{function}(");
    source
        .match_indices(&open)
        .map(|(at, _)| &source[at + open.len()..])
        .collect()
}

/// The string literals given to each call of `function` in `source`, in order: the first
/// `count` arguments, which must be literals.
fn literal_arguments(source: &str, function: &str, count: usize) -> Vec<Vec<String>> {
    calls(source, function)
        .into_iter()
        .map(|call| literals(call).take(count).map(String::from).collect())
        .collect()
}

/// The Debian package of each `install::command(&["cmd", ...], "package", ...)` in `source`:
/// the first literal after the list of commands.
fn installed_packages(source: &str) -> Vec<String> {
    calls(source, "install::command")
        .into_iter()
        .filter_map(|call| {
            let after = &call[call.find("],")? + 2..];
            literals(after).next().map(String::from)
        })
        .collect()
}

fn test_sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    crate::architecture::sources(root, &root.join("tests/it"), &mut out);
    out
}

#[test]
fn literal_arguments_reads_each_call() {
    let source = "let a = python_venv(\n  \"one-venv\",\n  \"tests/one/requirements.txt\", \"import one\");\n\
                  install::command(&[\"tmux\"], \"tmux\", \"why\");\n python_venv(\"two\", \"r2\", \"c\")";
    assert_eq!(
        literal_arguments(source, "python_venv", 2),
        [
            vec!["one-venv".to_string(), "tests/one/requirements.txt".into()],
            vec!["two".to_string(), "r2".into()],
        ]
    );
    assert_eq!(installed_packages(source), ["tmux"]);
    assert_eq!(
        installed_packages(
            "install::command(&[\"chromium\", \"chromium-browser\"], \"chromium\", x)"
        ),
        ["chromium"]
    );
}

#[test]
fn ci_prepare_fetches_every_virtualenv_and_debian_package_the_tests_install() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let prepare = std::fs::read_to_string(root.join(".ci/prepare")).expect(".ci/prepare");
    let run = std::fs::read_to_string(root.join(".ci/run")).expect(".ci/run");
    assert!(run.contains(".ci/prepare"), ".ci/run starts .ci/prepare");
    // Clippy runs as the workspace's compiler in the builds, denying warnings, over every
    // target `cargo clippy --all-targets` covers: the benches' build and the test build. Then
    // the install a user runs.
    for wanted in [
        "export RUSTC_WORKSPACE_WRAPPER",
        "clippy-driver",
        "export CLIPPY_ARGS=\"-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__\"",
        "cargo build --release --benches",
        "cargo test --release",
        // The install a user runs, from the clean clone, and the installed binary alone.
        "cargo install --path . --locked",
        "target/ci-install/bin/fleetstorm validate",
    ] {
        assert!(run.contains(wanted), ".ci/run lacks {wanted}");
    }

    let mut venvs = BTreeSet::new();
    let mut packages = BTreeSet::new();
    for (path, source) in test_sources() {
        if path.ends_with("/ci.rs") {
            continue;
        }
        for call in literal_arguments(&source, "python_venv", 2) {
            assert_eq!(call.len(), 2, "{path}: python_venv with literal arguments");
            venvs.insert(format!("\"{} {}\"", call[0], call[1]));
        }
        packages.extend(installed_packages(&source));
    }
    assert!(
        venvs.len() >= 6,
        "the tests' virtualenvs were found: {venvs:?}"
    );
    assert!(
        packages.len() >= 4,
        "the tests' packages were found: {packages:?}"
    );
    for venv in &venvs {
        assert!(prepare.contains(venv.as_str()), ".ci/prepare lacks {venv}");
    }
    let listed = prepare
        .lines()
        .find_map(|l| l.strip_prefix("packages=("))
        .expect("packages=(...) in .ci/prepare")
        .trim_end_matches(')');
    let listed: BTreeSet<String> = listed.split_whitespace().map(String::from).collect();
    assert_eq!(listed, packages, ".ci/prepare's Debian packages");
}
