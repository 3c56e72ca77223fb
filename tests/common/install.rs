//! Debian packages some tests drive (headless `chromium`, `tmux`), installed when missing.
//!
//! So `cargo test --release` passes on a fresh Debian machine, as the SDK test builds its own
//! virtualenv. Where installing is impossible the test fails and says what to install.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The path of the first of `commands` on PATH, installing Debian's `package` first when none is
/// there (as root, or through `sudo -n`). Panics, naming the package, when it cannot be had.
/// `purpose` says what the test needs it for.
pub fn command(commands: &[&str], package: &str, purpose: &str) -> PathBuf {
    if let Some(path) = find(commands) {
        return path;
    }
    // One installer at a time across test threads and test binaries (flock on the same file
    // conflicts even between two opens in one process); whoever waited looks again first.
    let lock_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("apt-install.lock");
    // rustix's flock rather than std's `File::lock`, which is newer than the crate's MSRV.
    let lock = File::create(&lock_path)
        .and_then(|f| {
            rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)?;
            Ok(f)
        })
        .unwrap_or_else(|e| panic!("lock {}: {e}", lock_path.display()));
    if let Some(path) = find(commands) {
        return path;
    }
    eprintln!(
        "{purpose}: `{}` is missing; trying to install Debian's {package}",
        commands[0]
    );
    let outcome = install(package);
    drop(lock);
    match (find(commands), outcome) {
        (Some(path), _) => path,
        (None, result) => panic!(
            "\n\n*** `{}` is required: {purpose}. It is missing and could not be installed{}.\n\
             *** Install Debian's package: apt-get install -y --no-install-recommends {package}\n\
             *** (.ci/prepare does this).\n\n",
            commands[0],
            match result {
                Err(why) => format!(" ({why})"),
                Ok(()) => format!(" (apt-get installed {package}, yet it is not on PATH)"),
            }
        ),
    }
}

fn find(commands: &[&str]) -> Option<PathBuf> {
    commands.iter().find_map(|name| {
        let out = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .ok()?;
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
    })
}

/// `apt-get install`, with `apt-get update` first if the install fails (fresh machines have no
/// package lists).
fn install(package: &str) -> Result<(), String> {
    let succeeds = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if find(&["apt-get"]).is_none() {
        return Err("this machine has no apt-get".into());
    }
    let sudo: &[&str] = if Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
    {
        &[]
    } else if succeeds("sudo", &["-n", "true"]) {
        &["sudo", "-n"]
    } else {
        return Err("not root, and sudo is missing or wants a password".into());
    };
    let apt = |args: &[&str]| -> Result<(), String> {
        let mut argv = sudo.to_vec();
        // Wait for another apt (another checkout's tests, the system's updater) to finish.
        argv.extend(["env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]);
        argv.extend(["-o", "DPkg::Lock::Timeout=600"]);
        argv.extend(args);
        let out = Command::new(argv[0])
            .args(&argv[1..])
            .output()
            .map_err(|e| format!("apt-get {}: {e}", args.join(" ")))?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        Err(format!(
            "apt-get {} failed ({}): {}",
            args.join(" "),
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        ))
    };
    let install = ["install", "-y", "--no-install-recommends", package];
    if apt(&install).is_ok() {
        return Ok(());
    }
    apt(&["update"])?;
    apt(&install)
}
