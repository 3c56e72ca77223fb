//! Shell completions and man pages come from the clap definitions: bash can load the
//! completion script, every shell gets one, and the man pages render each command with its flags.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_fleetstorm");

fn stdout_of(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn bash_sources_the_completion_script_and_registers_fleetstorm() {
    let script = format!("source <({BIN} completions bash) && complete -p fleetstorm");
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("complete") && stdout.trim_end().ends_with(" fleetstorm"),
        "{stdout}"
    );
}

/// The check above fails on a script bash cannot load (it would pass on nothing registered).
#[test]
fn a_broken_completion_script_fails_the_bash_check() {
    let out = Command::new("bash")
        .args([
            "--norc",
            "--noprofile",
            "-c",
            "source <(echo '_fleetstorm() {') && complete -p fleetstorm",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn every_shell_gets_a_script_naming_the_commands() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let script = stdout_of(&["completions", shell]);
        for word in ["fleetstorm", "validate", "no-tui"] {
            assert!(script.contains(word), "{shell}: no {word:?}");
        }
    }
}

#[test]
fn man_writes_one_page_per_command_that_renders_its_flags() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man");
    let printed = stdout_of(&["man", "--out", out.to_str().unwrap()]);
    assert!(printed.contains("man pages"), "{printed}");
    for page in [
        "fleetstorm.1",
        "fleetstorm-run.1",
        "fleetstorm-pki-init.1",
        "fleetstorm-new.1",
    ] {
        assert!(out.join(page).is_file(), "{page} missing: {printed}");
    }
    let run = std::fs::read_to_string(out.join("fleetstorm-run.1")).unwrap();
    assert!(
        run.starts_with(".ie") || run.contains(".TH"),
        "not roff: {run}"
    );
    assert!(run.contains(".TH fleetstorm-run 1"), "{run}");
    assert!(run.contains("\\-\\-no\\-tui"), "{run}");
    assert!(run.contains("\\-\\-save\\-identities"), "{run}");
    // Rendered as a reader sees it, when man is installed.
    if let Ok(rendered) = Command::new("man")
        .arg("-l")
        .arg(out.join("fleetstorm-run.1"))
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        && rendered.status.success()
    {
        let text = String::from_utf8_lossy(&rendered.stdout);
        assert!(
            text.contains("fleetstorm-run") && text.contains("--no-tui"),
            "{text}"
        );
    }
}
