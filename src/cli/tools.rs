//! The commands around the harness rather than in it: `schema`, `completions`, `man` and `new`,
//! all made from what the program already holds (the serde types, the clap definitions, the
//! shipped scenarios), so they cannot drift from it.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

use super::{Cli, CommandFailure, exit};
use crate::scenario::{Scenario, Target};
use crate::schema::SchemaKind;

/// The shipped scenarios, by file stem: the templates of `fleetstorm new`. One source of truth
/// with `scenarios/`; a test checks every file there is listed.
pub const TEMPLATES: &[(&str, &str)] = &[
    (
        "quickstart",
        include_str!("../../scenarios/quickstart.toml"),
    ),
    (
        "aws-seed-parity",
        include_str!("../../scenarios/aws-seed-parity.toml"),
    ),
    (
        "aws-throttle-probe",
        include_str!("../../scenarios/aws-throttle-probe.toml"),
    ),
    (
        "bad-serials",
        include_str!("../../scenarios/bad-serials.toml"),
    ),
    (
        "hook-compare",
        include_str!("../../scenarios/hook-compare.toml"),
    ),
    (
        "profile-compare",
        include_str!("../../scenarios/profile-compare.toml"),
    ),
    (
        "protocol-compare",
        include_str!("../../scenarios/protocol-compare.toml"),
    ),
    (
        "stay-connected",
        include_str!("../../scenarios/stay-connected.toml"),
    ),
    (
        "throttle-probe",
        include_str!("../../scenarios/throttle-probe.toml"),
    ),
];

/// `--from`'s parser: one of [`TEMPLATES`]' names (listed in `--help` and the completions).
pub fn template_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(TEMPLATES.iter().map(|(name, _)| *name))
}

/// The schema directive of a shipped scenario: a path relative to `scenarios/`, wrong anywhere
/// else, so `new` leaves it out.
const SCHEMA_DIRECTIVE: &str = "#:schema ";

pub(super) fn schema(kind: SchemaKind) -> Result<u8, CommandFailure> {
    print(&kind.generate())
}

pub(super) fn profiles(command: super::ProfilesCommand) -> Result<u8, CommandFailure> {
    use crate::device::profile;
    match command {
        super::ProfilesCommand::List => {
            let width = profile::names().map(str::len).max().unwrap_or(0);
            for name in profile::names() {
                let p = crate::device::Profile::builtin(name).expect("a built-in");
                out!("{name:width$}  {}", p.description);
            }
            Ok(exit::OK)
        }
        super::ProfilesCommand::Show { name } => match profile::builtin_text(&name) {
            Some(text) => print(text),
            None => Err(CommandFailure::usage(format!(
                "profiles show: {}",
                profile::unknown(&name)
            ))),
        },
    }
}

pub(super) fn completions(shell: clap_complete::Shell) -> Result<u8, CommandFailure> {
    let mut text = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "fleetstorm", &mut text);
    print(&String::from_utf8_lossy(&text))
}

/// Write one man page per command and subcommand into `dir` (created when missing).
pub(super) fn man(dir: &Path) -> Result<u8, CommandFailure> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CommandFailure::runtime(format!("{}: {e}", dir.display())))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .map_err(|e| CommandFailure::runtime(format!("{}: {e}", dir.display())))?;
    let mut pages: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| CommandFailure::runtime(format!("{}: {e}", dir.display())))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "1"))
        .collect();
    pages.sort();
    out!("wrote {} man pages in {}", pages.len(), dir.display());
    out!("  read one: man {}", dir.join("fleetstorm-run.1").display());
    Ok(exit::OK)
}

/// The template's text as `new` writes it: without the schema directive.
pub fn template_text(name: &str) -> Option<String> {
    let (_, text) = TEMPLATES.iter().find(|(n, _)| *n == name)?;
    Some(
        text.lines()
            .filter(|line| !line.starts_with(SCHEMA_DIRECTIVE))
            .map(|line| format!("{line}\n"))
            .collect(),
    )
}

pub(super) fn new(file: &Path, from: &str) -> Result<u8, CommandFailure> {
    let text = template_text(from)
        .ok_or_else(|| CommandFailure::usage(format!("no template {from:?}")))?;
    let mut created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(file)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => CommandFailure::new(
                exit::EXISTS,
                format!(
                    "{}: already exists; not overwritten (pick another name or remove it)",
                    file.display()
                ),
            ),
            _ => CommandFailure::runtime(format!("{}: {e}", file.display())),
        })?;
    created
        .write_all(text.as_bytes())
        .map_err(|e| CommandFailure::runtime(format!("{}: {e}", file.display())))?;
    out!("wrote {} (from the {from} scenario)", file.display());
    // The files an endpoint target names are relative to the scenario file: say which are not
    // there yet, so the first run does not fail on them.
    if let Ok(Target::Endpoint {
        ca,
        claim_cert,
        claim_key,
        ..
    }) = Scenario::load(file, &[]).map(|plan| plan.target.clone())
    {
        for path in [ca, claim_cert, claim_key].iter().filter(|p| !p.exists()) {
            out!(
                "  note: {} does not exist yet (`fleetstorm aws setup` writes it; the path is relative to the scenario file)",
                path.display()
            );
        }
    }
    out!(
        "  editor support: `fleetstorm schema scenario > scenario.schema.json`, then make `#:schema scenario.schema.json` the file's first line"
    );
    out!("  next: fleetstorm validate {}", file.display());
    out!("  then: fleetstorm run {}", file.display());
    Ok(exit::OK)
}

/// Write `text` to stdout; a closed stdout (`| head`) is not an error.
fn print(text: &str) -> Result<u8, CommandFailure> {
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(exit::OK)
}
