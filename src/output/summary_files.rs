//! `summary.json` and `summary.csv`, written whole and atomically: each is written to a temporary
//! file in the run folder and renamed over the old one, so a reader (or a `kill -9` at any
//! moment) sees the previous version or the new one, never a half-written file. A run rewrites
//! both every interval with `"complete": false`, and once more at the end with `true`.

use std::io::Write;
use std::path::Path;

use super::{OutputError, Summary, io_err};

/// Write `bytes` to `path` through a temporary file beside it and a rename. The temporary file
/// (`.<name>.XXXXXX`) is made by the tempfile crate (a unique name, removed on error), with the
/// mode every other results file gets (0666 less the umask), not tempfile's private 0600.
pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(|| "file".to_string(), |n| n.to_string_lossy().into_owned());
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix);
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut file = builder.tempfile_in(dir).map_err(io_err(path))?;
    file.write_all(bytes).map_err(io_err(path))?;
    file.persist(path)
        .map_err(|e| OutputError::new(path, e.error))?;
    Ok(())
}

/// `summary.json` and `summary.csv` (one row per stage, then one per amplification figure) of
/// `summary`, in `dir`.
pub(crate) fn write_summary(dir: &Path, summary: &Summary) -> Result<(), OutputError> {
    let path = dir.join("summary.json");
    let json = serde_json::to_vec_pretty(summary)
        .map_err(|e| OutputError::new(&path, std::io::Error::other(e)))?;
    write_atomically(&path, &json)?;
    let path = dir.join("summary.csv");
    let csv_err = |e: csv::Error| OutputError::new(&path, std::io::Error::other(e));
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "stage",
        "count",
        "mean_ms",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "p999_ms",
        "max_ms",
        "service_p50_ms",
        "service_p99_ms",
    ])
    .map_err(csv_err)?;
    for (name, s) in &summary.stages {
        let l = &s.latency;
        w.write_record([
            name.clone(),
            l.count.to_string(),
            format!("{:.3}", l.mean_ms),
            format!("{:.3}", l.p50_ms),
            format!("{:.3}", l.p90_ms),
            format!("{:.3}", l.p99_ms),
            format!("{:.3}", l.p999_ms),
            format!("{:.3}", l.max_ms),
            format!("{:.3}", s.service.p50_ms),
            format!("{:.3}", s.service.p99_ms),
        ])
        .map_err(csv_err)?;
    }
    // The amplification figures, one row each: the figure's name, its value in `count`.
    let (c, a, n) = (&summary.certificates, &summary.attempts, &summary.connects);
    let figures = [
        ("certificates.issued", c.issued.to_string()),
        ("certificates.registered", c.registered.to_string()),
        (
            "certificates.per_provisioned",
            format!("{:.3}", c.per_provisioned),
        ),
        ("certificates.orphaned", c.orphaned.to_string()),
        ("attempts.total", a.total.to_string()),
        ("attempts.mean", format!("{:.3}", a.mean)),
        ("attempts.max", a.max.to_string()),
        ("connects.total", n.total.to_string()),
        (
            "connects.per_provisioned",
            format!("{:.3}", n.per_provisioned),
        ),
        (
            "connects.max_per_client_id_per_s",
            n.max_per_client_id_per_s.to_string(),
        ),
    ];
    for (name, value) in figures {
        let mut row = vec![name.to_string(), value];
        row.resize(10, String::new());
        w.write_record(&row).map_err(csv_err)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| OutputError::new(&path, e.into_error()))?;
    write_atomically(&path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_replaces_the_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("summary.json");
        write_atomically(&path, b"{\"a\": 1}").unwrap();
        write_atomically(&path, b"{\"a\": 2}").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\": 2}");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["summary.json"]);
        let err = write_atomically(&dir.path().join("missing/summary.json"), b"x").unwrap_err();
        assert!(err.to_string().contains("missing/summary.json"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn the_summary_files_get_the_mode_of_every_other_results_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |name: &str| {
            std::fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        // How devices.csv and the others are made: File::create, 0666 less the umask.
        std::fs::File::create(dir.path().join("devices.csv")).unwrap();
        write_atomically(&dir.path().join("summary.json"), b"{}").unwrap();
        assert_eq!(mode("summary.json"), mode("devices.csv"));
    }
}
