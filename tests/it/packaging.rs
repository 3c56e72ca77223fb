//! What `cargo package` (and so `cargo install` from the registry) takes: the sources and what
//! they include, the schemas, the licence; no run outputs, build output or fuzz artefacts.
//! `cargo package --list` only lists (no build, no network), so this stays cheap.

use std::process::Command;

#[test]
fn the_package_holds_the_sources_schemas_and_licence_and_no_outputs() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["package", "--list", "--allow-dirty", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8(out.stdout).unwrap();
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
    ] {
        assert!(files.contains(&wanted), "{wanted} not packaged:\n{listed}");
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
