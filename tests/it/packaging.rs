//! What `cargo package` (and so `cargo install` from the registry) takes: the sources and what
//! they include, the schemas, the licence; no run outputs, build output or fuzz artefacts.
//! `cargo package --list` only lists (no build, no network), so this stays cheap.

use std::process::Command;

/// `cargo ARGS` in the crate's directory (the cargo running the tests); its stdout, and a failed
/// command fails the test with its stderr.
fn cargo(args: &[&str]) -> Vec<u8> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn the_package_holds_the_sources_schemas_and_licence_and_no_outputs() {
    let listed =
        String::from_utf8(cargo(&["package", "--list", "--allow-dirty", "--offline"])).unwrap();
    let files: Vec<&str> = listed.lines().collect();
    for wanted in [
        "Cargo.toml",
        "Cargo.lock",
        "LICENSE",
        "README.md",
        "src/main.rs",
        "src/lib.rs",
        "src/mock/lambda_shim.py",
        "assets/AmazonRootCA1.pem",
        "scenarios/quickstart.toml",
        "schema/scenario.json",
        "schema/mock-settings.json",
        "schema/profile.json",
        "profiles/embedded-c-demo.toml",
        "pricing/aws-iot-core.toml",
    ] {
        assert!(files.contains(&wanted), "{wanted} not packaged:\n{listed}");
    }
    // What the build reads besides the sources: a file an `include_str!` names and the package
    // leaves out breaks `cargo install` from the registry while every local build passes.
    let included = included_files(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(included.len() >= 10, "{included:?}");
    for wanted in &included {
        assert!(
            files.contains(&wanted.as_str()),
            "{wanted} is included by the sources but not packaged"
        );
    }
    for file in &files {
        assert!(
            !["results/", "target/", "fuzz/", "tests/", "benches/", ".ci/"]
                .iter()
                .any(|dir| file.starts_with(dir)),
            "{file} packaged"
        );
    }
}

/// Every file `include_str!` / `include_bytes!` names under `dir`, relative to the crate root.
fn included_files(dir: &std::path::Path) -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .canonicalize()
        .unwrap();
    let mut sources = Vec::new();
    crate::architecture::sources(dir, dir, &mut sources);
    let mut out = Vec::new();
    for (relative_source, text) in &sources {
        let path = dir.join(relative_source);
        for macro_name in ["include_str!(\"", "include_bytes!(\""] {
            for (at, _) in text.match_indices(macro_name) {
                let rest = &text[at + macro_name.len()..];
                let relative = &rest[..rest.find('"').unwrap()];
                let file = path
                    .parent()
                    .unwrap()
                    .join(relative)
                    .canonicalize()
                    .unwrap_or_else(|e| panic!("{}: {relative}: {e}", path.display()));
                let file = file.strip_prefix(&root).unwrap();
                out.push(file.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn included_files_are_found_relative_to_the_including_file() {
    // Under target/ (never packaged): target/.tmpX/inner/a.rs names files three levels up.
    let dir = tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/target")).unwrap();
    std::fs::create_dir(dir.path().join("inner")).unwrap();
    std::fs::write(
        dir.path().join("inner/a.rs"),
        "const X: &str = include_str!(\"../../../Cargo.toml\");\nconst Y: &[u8] = include_bytes!(\"../../../LICENSE\");\n",
    )
    .unwrap();
    assert_eq!(included_files(dir.path()), ["Cargo.toml", "LICENSE"]);
}

/// `rust-version` is a promise: no dependency in the lock file may need a newer Rust than it
/// states (a toolchain of exactly that version cannot be installed here, so the check is on
/// what the dependencies declare, from `cargo metadata`). Every platform's dependencies are
/// checked, so `cargo metadata` fetches from the registry those a build for this machine did not
/// (Windows' and macOS' crates, on a fresh machine; not `--offline`, which fails there).
#[test]
fn no_dependency_needs_a_newer_rust_than_rust_version_states() {
    let metadata = cargo(&["metadata", "--format-version", "1", "--locked"]);
    let meta: serde_json::Value = serde_json::from_slice(&metadata).unwrap();
    let packages = meta["packages"].as_array().unwrap().len();
    assert!(packages > 100, "cargo metadata listed {packages} packages");
    let (ours, too_new) = needing_newer_rust(&meta);
    assert!(
        too_new.is_empty(),
        "rust-version is {ours}, but {too_new:?}"
    );
}

#[test]
fn a_dependency_needing_a_newer_rust_is_named() {
    let meta = serde_json::json!({"packages": [
        {"name": "fleetstorm", "rust_version": "1.88"},
        {"name": "same", "rust_version": "1.88.0"},
        {"name": "older", "rust_version": "1.70"},
        {"name": "unstated", "rust_version": null},
        {"name": "newer", "rust_version": "1.89"},
    ]});
    let (ours, too_new) = needing_newer_rust(&meta);
    assert_eq!(ours, "1.88");
    assert_eq!(too_new, ["newer needs 1.89"]);
}

/// fleetstorm's `rust-version` and the packages in `meta` (cargo metadata) that state a newer one.
fn needing_newer_rust(meta: &serde_json::Value) -> (String, Vec<String>) {
    // "1.88" is 1.88.0: pad to three parts before comparing.
    let version = |v: &str| -> [u64; 3] {
        let mut parts = v.split('.').map(|n| n.parse().unwrap());
        [0; 3].map(|_| parts.next().unwrap_or(0))
    };
    let packages = meta["packages"].as_array().unwrap();
    let ours = packages
        .iter()
        .find(|p| p["name"] == "fleetstorm")
        .and_then(|p| p["rust_version"].as_str())
        .expect("Cargo.toml states no rust-version");
    let too_new = packages
        .iter()
        .filter_map(|p| Some((p["name"].as_str()?, p["rust_version"].as_str()?)))
        .filter(|(_, needs)| version(needs) > version(ours))
        .map(|(name, needs)| format!("{name} needs {needs}"))
        .collect();
    (ours.to_string(), too_new)
}
