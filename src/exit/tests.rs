//! Every kind of every error a command meets, against the map and the table of
//! docs/reference/exit-codes.md.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::*;
use crate::iot::policy::PolicyError;
use crate::iot::template::TemplateError;

fn io() -> std::io::Error {
    std::io::Error::other("x")
}

fn path() -> PathBuf {
    PathBuf::from("f")
}

/// The variant's name; a new variant does not compile here until it is named, and then the
/// test fails until `samples` has one of it (with the code the documented table gives it).
macro_rules! kinds {
    ($ty:ty, $e:expr, { $($pat:pat => $name:literal),+ $(,)? }) => {{
        let kind = |e: &$ty| match e { $($pat => $name),+ };
        let all: BTreeSet<&str> = [$($name),+].into();
        let seen: BTreeSet<&str> = $e.iter().map(|(e, _)| kind(e)).collect();
        assert_eq!(seen, all, "{}: a kind without a sample", stringify!($ty));
    }};
}

fn pki_errors() -> Vec<(PkiError, u8)> {
    vec![
        (
            PkiError::Io {
                path: path(),
                source: io(),
            },
            PKI,
        ),
        (
            PkiError::BadFile {
                path: path(),
                message: "m".into(),
            },
            PKI,
        ),
        (
            PkiError::Incomplete {
                path: path(),
                missing: "claim.pem",
            },
            PKI,
        ),
        (
            PkiError::Generate(rcgen::Error::CouldNotParseCertificate),
            PKI,
        ),
        (
            PkiError::KeyMismatch {
                cert: path(),
                key: path(),
            },
            PKI,
        ),
        (PkiError::NoDirectory(path()), PKI),
    ]
}

fn bind_error() -> BindError {
    BindError {
        what: "--control",
        addr: ([127, 0, 0, 1], 1).into(),
        source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
    }
}

fn mock_errors() -> Vec<(MockError, u8)> {
    let template = || TemplateError {
        pointer: "/x".into(),
        message: "m".into(),
    };
    let policy = || PolicyError {
        pointer: "/x".into(),
        message: "m".into(),
    };
    let names = || ("t".to_string(), "f".to_string());
    vec![
        (MockError::Pki(PkiError::NoDirectory(path())), PKI),
        (
            MockError::Template {
                name: names().0,
                path: names().1,
                source: template(),
            },
            CONFIG,
        ),
        (
            MockError::TemplatePolicy {
                name: names().0,
                path: names().1,
                pointer: "/p".into(),
                source: policy(),
            },
            CONFIG,
        ),
        (MockError::TemplateName("?".into()), CONFIG),
        (
            MockError::Tls(rustls::Error::General("bad key".into())),
            PKI,
        ),
        (
            MockError::Config {
                path: "p".into(),
                message: "m".into(),
            },
            CONFIG,
        ),
        (MockError::Io(io()), RUNTIME),
        (
            MockError::Journal(JournalError::Io {
                path: path(),
                source: io(),
            }),
            RUNTIME,
        ),
        (
            MockError::Journal(JournalError::Corrupt {
                path: path(),
                line: 2,
                message: "m".into(),
            }),
            CONFIG,
        ),
        (
            MockError::Journal(JournalError::InUse {
                dir: path(),
                holder: "pid 7".into(),
            }),
            PKI,
        ),
        (MockError::Bind(bind_error()), RUNTIME),
    ]
}

fn results_errors() -> Vec<(ResultsError, u8)> {
    let json = serde_json::from_str::<u8>("x").unwrap_err();
    vec![
        (
            ResultsError::Read {
                path: path(),
                source: io(),
            },
            CONFIG,
        ),
        (
            ResultsError::Summary {
                path: path(),
                source: json,
            },
            CONFIG,
        ),
        (
            ResultsError::Hlog {
                path: path(),
                detail: "d".into(),
            },
            CONFIG,
        ),
        (
            ResultsError::Invalid {
                path: path(),
                detail: "d".into(),
            },
            CONFIG,
        ),
        (ResultsError::NotARun { path: path() }, CONFIG),
    ]
}

fn folder_errors() -> Vec<(FolderError, u8)> {
    vec![
        (
            FolderError::NotEmpty {
                path: path(),
                first: "a".into(),
            },
            EXISTS,
        ),
        (FolderError::NotAFolder { path: path() }, EXISTS),
        (FolderError::IdentityExists { file: path() }, EXISTS),
        (
            FolderError::Io {
                path: path(),
                source: io(),
            },
            RUNTIME,
        ),
    ]
}

fn compare_errors() -> Vec<(CompareError, u8)> {
    let mut out = vec![
        (CompareError::TooFewRuns(1), CONFIG),
        (
            CompareError::Write {
                path: path(),
                source: io(),
            },
            RUNTIME,
        ),
    ];
    out.extend(
        results_errors()
            .into_iter()
            .map(|(e, c)| (CompareError::Results(e), c)),
    );
    out
}

fn report_errors() -> Vec<(ReportError, u8)> {
    let mut out = vec![
        (
            ReportError::Chart {
                chart: "c".into(),
                detail: "d".into(),
            },
            RUNTIME,
        ),
        (
            ReportError::Write {
                path: path(),
                source: io(),
            },
            RUNTIME,
        ),
    ];
    out.extend(
        compare_errors()
            .into_iter()
            .map(|(e, c)| (ReportError::Compare(e), c)),
    );
    out.extend(
        results_errors()
            .into_iter()
            .map(|(e, c)| (ReportError::Results(e), c)),
    );
    out
}

fn run_errors() -> Vec<(RunError, u8)> {
    let mut out = vec![
        (RunError::Tls(rustls::Error::General("bad key".into())), PKI),
        (RunError::Output(OutputError::new(&path(), io())), RUNTIME),
        (RunError::Other("o".into()), RUNTIME),
    ];
    out.extend(pki_errors().into_iter().map(|(e, c)| (RunError::Pki(e), c)));
    out.extend(
        mock_errors()
            .into_iter()
            .map(|(e, c)| (RunError::Mock(e), c)),
    );
    out
}

fn merge_errors() -> Vec<(MergeError, u8)> {
    let mut out = vec![
        (MergeError::Refused("r".into()), USAGE),
        (MergeError::Output(OutputError::new(&path(), io())), RUNTIME),
        (
            MergeError::Report(ReportError::Write {
                path: path(),
                source: io(),
            }),
            RUNTIME,
        ),
    ];
    out.extend(
        results_errors()
            .into_iter()
            .map(|(e, c)| (MergeError::Results(e), c)),
    );
    out.extend(
        folder_errors()
            .into_iter()
            .map(|(e, c)| (MergeError::Folder(e), c)),
    );
    out
}

fn render_errors() -> Vec<(RenderError, u8)> {
    [
        (K8sKind::Usage, USAGE),
        (K8sKind::Config, CONFIG),
        (K8sKind::NotConfirmed, NOT_CONFIRMED),
        (K8sKind::Write, RUNTIME),
    ]
    .into_iter()
    .map(|(kind, code)| {
        (
            RenderError {
                kind,
                message: "m".into(),
            },
            code,
        )
    })
    .collect()
}

fn assert_codes<E: Code + std::fmt::Debug>(command: &str, samples: &[(E, u8)]) {
    for (e, code) in samples {
        assert_eq!(e.code(), *code, "{command}: {e:?}");
        assert!(
            TABLE.iter().any(|(c, _)| c == code),
            "{code} is not in the table"
        );
    }
}

#[test]
fn every_error_kind_of_every_command_has_the_documented_code() {
    kinds!(PkiError, pki_errors(), {
        PkiError::Io { .. } => "Io",
        PkiError::BadFile { .. } => "BadFile",
        PkiError::Incomplete { .. } => "Incomplete",
        PkiError::Generate(_) => "Generate",
        PkiError::KeyMismatch { .. } => "KeyMismatch",
        PkiError::NoDirectory(_) => "NoDirectory",
    });
    kinds!(MockError, mock_errors(), {
        MockError::Pki(_) => "Pki",
        MockError::Template { .. } => "Template",
        MockError::TemplatePolicy { .. } => "TemplatePolicy",
        MockError::TemplateName(_) => "TemplateName",
        MockError::Tls(_) => "Tls",
        MockError::Config { .. } => "Config",
        MockError::Io(_) => "Io",
        MockError::Journal(JournalError::Io { .. }) => "JournalIo",
        MockError::Journal(JournalError::Corrupt { .. }) => "JournalCorrupt",
        MockError::Journal(JournalError::InUse { .. }) => "JournalInUse",
        MockError::Bind(_) => "Bind",
    });
    kinds!(RunError, run_errors(), {
        RunError::Mock(_) => "Mock",
        RunError::Pki(_) => "Pki",
        RunError::Tls(_) => "Tls",
        RunError::Output(_) => "Output",
        RunError::Other(_) => "Other",
    });
    kinds!(ResultsError, results_errors(), {
        ResultsError::Read { .. } => "Read",
        ResultsError::Summary { .. } => "Summary",
        ResultsError::Hlog { .. } => "Hlog",
        ResultsError::Invalid { .. } => "Invalid",
        ResultsError::NotARun { .. } => "NotARun",
    });
    kinds!(FolderError, folder_errors(), {
        FolderError::NotEmpty { .. } => "NotEmpty",
        FolderError::NotAFolder { .. } => "NotAFolder",
        FolderError::IdentityExists { .. } => "IdentityExists",
        FolderError::Io { .. } => "Io",
    });
    kinds!(CompareError, compare_errors(), {
        CompareError::TooFewRuns(_) => "TooFewRuns",
        CompareError::Results(_) => "Results",
        CompareError::Write { .. } => "Write",
    });
    kinds!(ReportError, report_errors(), {
        ReportError::Results(_) => "Results",
        ReportError::Compare(_) => "Compare",
        ReportError::Chart { .. } => "Chart",
        ReportError::Write { .. } => "Write",
    });
    kinds!(MergeError, merge_errors(), {
        MergeError::Results(_) => "Results",
        MergeError::Refused(_) => "Refused",
        MergeError::Folder(_) => "Folder",
        MergeError::Output(_) => "Output",
        MergeError::Report(_) => "Report",
    });
    kinds!(RenderError, render_errors(), {
        RenderError { kind: K8sKind::Usage, .. } => "Usage",
        RenderError { kind: K8sKind::Config, .. } => "Config",
        RenderError { kind: K8sKind::NotConfirmed, .. } => "NotConfirmed",
        RenderError { kind: K8sKind::Write, .. } => "Write",
    });

    // By command: what each one meets.
    assert_codes("pki init, mock", &pki_errors());
    assert_codes("mock", &mock_errors());
    assert_codes("run", &run_errors());
    assert_codes("run, mock (--metrics-listen)", &[(bind_error(), RUNTIME)]);
    assert_codes(
        "run, validate",
        &[(
            ScenarioError {
                file: "s".into(),
                message: "m".into(),
            },
            CONFIG,
        )],
    );
    assert_codes("run (--out), merge (--out)", &folder_errors());
    assert_codes("compare, report, run", &results_errors());
    assert_codes("compare, run", &compare_errors());
    assert_codes("compare, report", &report_errors());
    assert_codes("merge", &merge_errors());
    assert_codes("k8s render", &render_errors());
    assert_codes("run", &[(OutputError::new(&path(), io()), RUNTIME)]);
    #[cfg(feature = "aws")]
    {
        use crate::aws::AwsError as E;
        kinds!(E, aws_errors(), {
            E::Usage(_) => "Usage",
            E::Input(_) => "Input",
            E::Pem(_) => "Pem",
            E::Runtime(_) => "Runtime",
        });
        assert_codes("aws", &aws_errors());
    }
}

#[cfg(feature = "aws")]
fn aws_errors() -> Vec<(crate::aws::AwsError, u8)> {
    use crate::aws::AwsError as E;
    vec![
        (E::Usage("u".into()), USAGE),
        (E::Input("i".into()), CONFIG),
        (E::Pem("p".into()), PKI),
        (E::Runtime("r".into()), RUNTIME),
    ]
}

#[test]
fn run_and_mock_agree_on_every_mock_error() {
    for (mock, code) in mock_errors() {
        let shown = mock.to_string();
        let run = RunError::Mock(mock);
        assert_eq!(run.code(), code, "{shown}");
    }
    // The two that disagreed: a TLS configuration the PKI cannot make, and an I/O failure.
    let tls = || rustls::Error::General("bad key".into());
    assert_eq!(MockError::Tls(tls()).code(), PKI);
    assert_eq!(RunError::Mock(MockError::Tls(tls())).code(), PKI);
    assert_eq!(RunError::Tls(tls()).code(), PKI);
    assert_eq!(RunError::Mock(MockError::Io(io())).code(), RUNTIME);
    // One code for a taken port, whichever listener.
    assert_eq!(MockError::Bind(bind_error()).code(), bind_error().code());
}

/// The page that shows [`TABLE`] to users, relative to the crate root.
const PAGE: &str = "docs/reference/exit-codes.md";

/// Whether a Markdown page shows [`TABLE`] as it is: its exit-code table (from the header line
/// up to the first line that is no table row) must be [`markdown`]'s, no row more or less.
fn check_table(page: &str) -> Result<(), String> {
    let table = markdown();
    let header = table.lines().next().unwrap_or_default();
    let shown: String = page
        .lines()
        .skip_while(|line| *line != header)
        .take_while(|line| line.starts_with('|'))
        .flat_map(|line| [line, "\n"])
        .collect();
    if shown.is_empty() {
        return Err(format!(
            "{PAGE} has no exit-code table; it should read:\n\n{table}"
        ));
    }
    if shown != table {
        return Err(format!(
            "{PAGE}'s exit-code table differs from src/exit.rs; it should read:\n\n{table}"
        ));
    }
    Ok(())
}

#[test]
fn the_documented_exit_code_table_is_the_map() {
    let page = std::fs::read_to_string(format!("{}/{PAGE}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{PAGE}: {e}"));
    if let Err(stale) = check_table(&page) {
        panic!("{stale}");
    }
    let codes: BTreeSet<u8> = TABLE.iter().map(|(c, _)| *c).collect();
    assert_eq!(codes.len(), TABLE.len(), "a code listed twice");
    for code in [
        OK,
        RUNTIME,
        USAGE,
        NOT_CONFIRMED,
        CONFIG,
        PKI,
        THRESHOLDS,
        EXISTS,
        INTERRUPTED,
    ] {
        assert!(codes.contains(&code), "{code} is not in the table");
    }
}

#[test]
fn a_stale_exit_code_table_should_be_refused() {
    let page = |table: &str| format!("# Exit codes\n\nIntro.\n\n{table}\nAfter.\n");
    let current = markdown();
    assert_eq!(check_table(&page(&current)), Ok(()));

    // One meaning reworded.
    let reworded = current.replace("| success |", "| all went well |");
    assert_ne!(reworded, current);
    // A code the map no longer has, or one it has that the page lacks.
    let extra = format!("{current}| `7` | something else |\n");
    let last_row = current.lines().last().unwrap();
    let missing = current.replace(&format!("{last_row}\n"), "");
    for stale in [reworded, extra, missing, String::new()] {
        let err = check_table(&page(&stale)).expect_err(&stale);
        assert!(err.contains("it should read"), "{err}");
    }
}
